/*
 * encode.h - CloudEvents binary-mode headers, the encoding direction of
 * the codec (envelope.h decodes): every event weft writes in binary mode
 * (result events, dead letters, saga events, `weft publish`) gets its
 * ce_ headers here, and every event weft publishes again (`weft replay`,
 * `weft dlq redrive`) gets weft's own headers here.
 *
 * Headers come out in the Kafka binding (ce_ names, values as they are);
 * the NATS adapter maps them to ce- names with percent-encoded values
 * (nats_headers.h).
 */
#ifndef WEFT_ENCODE_H
#define WEFT_ENCODE_H

#include <stddef.h>

#include "envelope.h"

/* Longest attribute name a header is built for (CloudEvents suggests at
 * most 20 characters; weft's CLI allows 64), and the storage for its
 * header name with prefix and NUL. */
#define WEFT_CE_ATTR_NAME_MAX 64
#define WEFT_CE_HEADER_NAME_MAX (WEFT_CE_ATTR_NAME_MAX + 8)

typedef char weft_ce_hname_t[WEFT_CE_HEADER_NAME_MAX];

/* A context attribute to write: its name ("id", "weftreason") and value. */
typedef struct weft_ce_pair {
    const char *attr;
    const char *value;
} weft_ce_pair_t;

/* Appends the binary-mode headers of attrs, in their order, to hdrs from
 * index *n (advanced) up to cap: "content-type" for datacontenttype,
 * "ce_<attr>" for every other. A pair with a NULL value is left out, and
 * so is one past cap or with a name over WEFT_CE_ATTR_NAME_MAX bytes.
 * names[i] receives pair i's header name and must live as long as hdrs;
 * values are not copied. Returns the number of headers appended. */
size_t weft_ce_binary_headers(const weft_ce_pair_t *attrs, size_t n_attrs, weft_header_t *hdrs,
                              size_t *n, size_t cap, weft_ce_hname_t *names);

typedef enum { WEFT_REPUBLISH_REPLAY = 0, WEFT_REPUBLISH_REDRIVE } weft_republish_t;

/* Appends weft's headers for an event published again to hdrs from *n
 * (advanced; room for 4 more is the caller's): weft-key = key, the
 * replay's or re-drive's id and the trigger it is for (trigger NULL: every
 * trigger; replay writes the trigger first, re-drive the id, as they
 * always have), and weft-generation = gen unless gen is NULL or "0". On
 * NATS the key is percent-encoded, as ce- values are (a key joins its
 * parts with 0x1f, which a NATS header cannot carry): *owned is then the
 * malloc()ed encoding, to free after the publish (else NULL). 0, or -1
 * out of memory. */
int weft_ce_republish_headers(weft_republish_t kind, weft_binding_t binding, const char *key,
                              const char *id, const char *trigger, const char *gen,
                              weft_header_t *hdrs, size_t *n, char **owned);

#endif
