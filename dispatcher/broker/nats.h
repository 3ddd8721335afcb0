/*
 * nats.h - NATS for weft: a small synchronous client for CLI commands
 * (publish one message to a core NATS subject, or to JetStream waiting for
 * the PubAck), and the CloudEvents <-> NATS header codec shared with the
 * dispatcher's adapter (broker_nats.c). nats.c types stay inside.
 *
 * CloudEvents over NATS, binary mode: every attribute is a header named
 * "ce-" + attribute name; values are percent-encoded (bytes outside
 * printable ASCII 0x21-0x7E, space, '"' and '%' become %XX, as in the HTTP
 * binding) and decoded on receive; datacontenttype is "Content-Type".
 * Structured mode: Content-Type application/cloudevents+json, the event
 * as the payload. Header names and values never carry CR, LF or NUL on the
 * wire: a header that would is rejected before publishing.
 */
#ifndef WEFT_NATS_H
#define WEFT_NATS_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "envelope.h"
#include "nats_headers.h"

typedef struct weft_nats weft_nats_t;

/* Connects to url (e.g. nats://127.0.0.1:4222), waiting up to timeout_ms.
 * Returns NULL with errstr filled. */
/* Initialises nats.c once per process, before its first connection:
 * without lock spinning. nats.c's default spins up to 2000 times on a
 * contended mutex before it sleeps; with the JetStream ack threads that
 * was most of the dispatcher's CPU on a 2-core machine. Call it before
 * any other nats.c call (natsOptions_Create opens the library with the
 * default); calling it again is harmless. */
void weft_nats_lib_open(void);

weft_nats_t *weft_nats_connect(const char *url, int timeout_ms, char *errstr, size_t errlen);

/* Publishes one message to a core NATS subject and flushes it to the
 * server (at-most-once: no acknowledgement exists). Headers are encoded
 * with weft_nats_header_encode. Returns 0, or -1 with errstr. */
int weft_nats_publish(weft_nats_t *nc, const char *subject, const weft_header_t *hdrs,
                      size_t n_hdrs, const void *data, size_t len, char *errstr, size_t errlen);

/* Publishes one message to JetStream and waits up to timeout_ms for the
 * PubAck. msg_id (may be NULL) becomes Nats-Msg-Id, replacing any in hdrs:
 * the server drops a second message with the same id within the stream's
 * duplicate window.
 * On success *seq (may be NULL) is the stream sequence and *duplicate
 * (may be NULL) says the server had it already. Returns 0, or -1 with
 * errstr (no stream for the subject, timeout, ...). */
int weft_nats_js_publish(weft_nats_t *nc, const char *subject, const char *msg_id,
                         const weft_header_t *hdrs, size_t n_hdrs, const void *data, size_t len,
                         int timeout_ms, uint64_t *seq, int *duplicate, char *errstr,
                         size_t errlen);

/* Closes and frees. NULL is a no-op. */
void weft_nats_destroy(weft_nats_t *nc);

/* Reads the messages of subject in stream in order, from start_seq (or,
 * when start_time_ms > 0, from the first message at or after that time),
 * with an ordered consumer that acknowledges nothing and leaves no durable
 * state. *pending (may be NULL): messages of the subject from there on,
 * when it was created. NULL with errstr on error. */
typedef struct weft_nats_reader weft_nats_reader_t;
weft_nats_reader_t *weft_nats_reader_new(weft_nats_t *nc, const char *stream, const char *subject,
                                         uint64_t start_seq, int64_t start_time_ms,
                                         uint64_t *pending, char *errstr, size_t errlen);
/* The next message: 1 and *out (broker JETSTREAM, offset = stream sequence,
 * timestamp_ms, headers as on the wire), valid until the next call, and
 * *pending (may be NULL): messages of the subject after it; 0 when none
 * came within timeout_ms; -1 with errstr. */
int weft_nats_reader_next(weft_nats_reader_t *r, int timeout_ms, weft_bmsg_t *out,
                          uint64_t *pending, char *errstr, size_t errlen);
void weft_nats_reader_destroy(weft_nats_reader_t *r);

/* 1 while the connection is up. */
int weft_nats_connected(weft_nats_t *nc);

/* The first sequence of stream stored at or after time_ms (UTC), or the
 * last sequence + 1 when there is none. A binary search over sequences
 * with js_GetMsg (a stored message carries its time), not a consumer
 * started by time: nats-server 2.9.10's file store maps a time to a
 * sequence wrongly (measured: 6 of 20 such consumers, started between two
 * groups of messages, found none). 0 or -1 with errstr. */
int weft_nats_stream_seq_for_time(weft_nats_t *nc, const char *stream, int64_t time_ms,
                                  uint64_t *seq, char *errstr, size_t errlen);

/* The stream's last sequence. 0 or -1 with errstr. */
int weft_nats_stream_last_seq(weft_nats_t *nc, const char *stream, uint64_t *last, char *errstr,
                              size_t errlen);
/* A durable consumer's backlog: messages not delivered yet (*pending) and
 * delivered but not acknowledged (*ack_pending). 0 or -1 with errstr. */
int weft_nats_consumer_lag(weft_nats_t *nc, const char *stream, const char *durable,
                           uint64_t *pending, int64_t *ack_pending, char *errstr, size_t errlen);

#endif
