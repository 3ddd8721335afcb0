/*
 * envelope.h - CloudEvents 1.0 decoding for messages that arrive on a
 * broker: Kafka binary mode (ce_* headers, value = data), structured mode
 * (application/cloudevents+json and application/cloudevents+protobuf), and
 * plain messages without CloudEvents attributes.
 *
 * The decoded event is a protobuf-c io.cloudevents.v1.CloudEvent so it can
 * go to a worker as is. Everything it points to is owned by the envelope.
 */
#ifndef WEFT_ENVELOPE_H
#define WEFT_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include "cloudevents.pb-c.h"
#include "wire.h"

typedef struct weft_header {
    const char *name;
    const void *value;
    size_t len;
} weft_header_t;

typedef enum {
    WEFT_ENV_PLAIN = 0,
    WEFT_ENV_BINARY,
    WEFT_ENV_JSON,
    WEFT_ENV_PROTOBUF,
} weft_env_mode_t;

typedef enum {
    WEFT_ENV_OK = 0,
    WEFT_ENV_MALFORMED = -1,   /* bad CloudEvent: dead-letter, reason "malformed" */
    WEFT_ENV_UNSUPPORTED = -2, /* e.g. batch mode: dead-letter, reason "unsupported" */
} weft_env_status_t;

typedef struct weft_arena weft_arena_t;

typedef struct weft_envelope {
    Io__Cloudevents__V1__CloudEvent *ce;
    weft_env_mode_t mode;
    /* private */
    Io__Cloudevents__V1__CloudEvent own;
    Io__Cloudevents__V1__CloudEvent *unpacked;
    weft_arena_t *arena;
    size_t attrs_cap;
} weft_envelope_t;

/* Decodes a message. For a plain message, plain_id and plain_source become
 * the event's id and source (they name the broker coordinates). On error
 * the envelope is still valid for weft_envelope_free and errstr says why. */
weft_env_status_t weft_envelope_decode(weft_envelope_t *env, const weft_header_t *hdrs,
                                       size_t n_hdrs, const void *value, size_t len,
                                       const char *plain_id, const char *plain_source, char *errstr,
                                       size_t errlen);

/* The protocol binding of a message's headers: Kafka (ce_ prefix, values
 * as they are) or NATS (ce- prefix, percent-encoded values). */
typedef enum { WEFT_BINDING_KAFKA = 0, WEFT_BINDING_NATS } weft_binding_t;

/* weft_envelope_decode for a message of the given binding. */
weft_env_status_t weft_envelope_decode_binding(weft_envelope_t *env, weft_binding_t binding,
                                               const weft_header_t *hdrs, size_t n_hdrs,
                                               const void *value, size_t len, const char *plain_id,
                                               const char *plain_source, char *errstr,
                                               size_t errlen);

/* An attribute as a string ("id", "source", "type", "specversion",
 * "subject", "time", "datacontenttype", or an extension); NULL if absent
 * or without text. The text is weft_ce_attr_text's (ce_attr.h), the one
 * the exec protocol carries and the C ABI hands the function. */
const char *weft_envelope_attr(weft_envelope_t *env, const char *name);

/* Data bytes (binary or text). */
const uint8_t *weft_envelope_data(const weft_envelope_t *env, size_t *len);

void weft_envelope_free(weft_envelope_t *env);

#endif
