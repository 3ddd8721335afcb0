/*
 * nats_headers.h - the CloudEvents binding to NATS headers (pure
 * functions): header validity, percent-encoding of attribute values, and
 * the mapping of weft's header names to NATS's.
 */
#ifndef WEFT_NATS_HEADERS_H
#define WEFT_NATS_HEADERS_H

#include <stddef.h>

/* 1 when a header name can go on the wire: 1..255 printable ASCII bytes
 * without ':' or space. */
int weft_nats_header_name_valid(const char *name);

/* 1 when a header value can go on the wire as it is: no CR, LF or NUL. */
int weft_nats_header_value_valid(const void *value, size_t len);

/* Percent-encodes len bytes of value into a new NUL-terminated string
 * (malloc()ed; NULL when out of memory). */
char *weft_nats_pct_encode(const void *value, size_t len);

/* Decodes %XX sequences into a new NUL-terminated string (malloc()ed) of
 * *out_len bytes. NULL when a % is not followed by two hex digits, when
 * the result would hold a NUL byte, or when out of memory. */
char *weft_nats_pct_decode(const char *value, size_t len, size_t *out_len);

/* Maps one header as weft produces it to the header that goes on the wire
 * to NATS: a CloudEvents attribute named as on Kafka ("ce_x", the raw
 * value) becomes "ce-x" with a percent-encoded value; "content-type"
 * becomes "Content-Type"; any other header, "ce-x" included (already in
 * NATS's wire form), is copied when its name and value are valid. *name_out and *value_out are
 * malloc()ed. Returns 0, or -1 with errstr when the header cannot be sent (CR, LF or NUL in a
 * non-CloudEvents value, an invalid name) or memory runs out. */
int weft_nats_header_encode(const char *name, const void *value, size_t len, char **name_out,
                            char **value_out, char *errstr, size_t errlen);

#endif
