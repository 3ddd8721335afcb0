/*
 * exec_proto.h - the exec runtime's wire format, shared by weft-worker
 * (runtime_exec.c) and `weft invoke` (invoke.c).
 *
 * A frame, in both directions, is
 *
 *     <length in ASCII decimal digits> "\n" <exactly length bytes> "\n"
 *
 * and the payload is one JSON object. Requests carry the CloudEvent in the
 * CloudEvents 1.0 JSON format plus weft's fields; replies carry the
 * disposition and the result. workers/proto/EXEC_PROTOCOL.md is the reference;
 * this header only states what the C side guarantees:
 *
 *   - a request payload is compact JSON, valid UTF-8, without any raw
 *     newline, so a reader may also take it as one line;
 *   - nothing here trusts a reply: every read is bounded by the length it
 *     was given and nesting is limited.
 *
 * Nothing here does I/O, logs or exits.
 */
#ifndef WEFT_EXEC_PROTO_H
#define WEFT_EXEC_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "frame.h"
#include "frames.pb-c.h"
#include "json.h" /* validation, UTF-8, base64: shared with the dispatcher */
#include "buf.h"
#include "weft_function.h"

/* Longest length line a reader accepts: 10 digits and the newline. */
#define WEFT_EXEC_LEN_DIGITS 10

/* Appends the request payload for inv (no length prefix, no trailing
 * newline) to out. 0, or -1 when out of memory. */
int weft_exec_request(const Weft__V1__Invoke *inv, weft_buf_t *out);

/* Parses a reply payload into *res (res->data is malloc()ed, the caller
 * frees it) and returns the disposition (WEFT_OK .. WEFT_DROP), or -1 with
 * errstr filled when the reply is malformed. */
int weft_exec_reply_parse(const uint8_t *p, size_t len, weft_result_t *res, char *errstr,
                          size_t errlen);

/* Appends s as a JSON string; invalid UTF-8 bytes become U+FFFD. 0 or -1. */
int weft_exec_json_string(weft_buf_t *b, const void *s, size_t len);

/* Appends valid JSON text [p, p+len) without insignificant whitespace. */
int weft_exec_json_compact(weft_buf_t *b, const uint8_t *p, size_t len);

/* Transitional names for workers/invoke.c, which another change moves to
 * the CLI: remove once it says weft_buf_*. */
#define weft_exec_buf_put weft_buf_append
#define weft_exec_buf_puts weft_buf_puts
#define weft_exec_buf_printf weft_buf_printf

#endif
