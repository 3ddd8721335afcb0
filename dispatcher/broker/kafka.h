/*
 * kafka.h - the Kafka adapter: one consumer-group consumer and one
 * idempotent producer. librdkafka types stay inside kafka.c.
 */
#ifndef WEFT_KAFKA_H
#define WEFT_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "broker.h"
#include "config.h"
#include "envelope.h"

typedef struct weft_kafka weft_kafka_t;

/* One consumed message (broker.h). Pointers stay valid until
 * weft_kafka_msg_free. */
typedef weft_bmsg_t weft_kmsg_t;

typedef struct weft_kafka_cbs {
    /* Partitions assigned / revoked (rebalance). Called from
     * weft_kafka_consume. On revoke, offsets stored from the callback are
     * committed before the partition is given up. */
    void (*assigned)(void *opaque, const char *topic, int32_t partition);
    void (*revoked)(void *opaque, const char *topic, int32_t partition);
    /* Delivery report of a produced message: err is NULL on success. */
    void (*delivered)(void *opaque, void *msg_opaque, const char *err);
    void *opaque;
} weft_kafka_cbs_t;

/* The one place that decides which of weft's kafka.* settings reach a
 * librdkafka client: client is "consumer." or "producer."; a plain
 * kafka.KEY goes to both unless only the other client knows KEY, and
 * kafka.<client>.KEY goes to that client only. Applies them to conf (an
 * rd_kafka_conf_t *) over what the caller set before. 0, or -1 with
 * errstr naming the setting librdkafka refused. */
int weft_kafka_conf_apply(void *conf, const weft_config_t *cfg, const char *client, char *errstr,
                          size_t errlen);

/* Creates the clients from the config (kafka.*, kafka.consumer.*,
 * kafka.producer.*). wake_fd becomes readable when either client has
 * something to serve. */
weft_kafka_t *weft_kafka_new(const weft_config_t *cfg, const weft_kafka_cbs_t *cbs,
                             char *errstr, size_t errlen);
int weft_kafka_wake_fd(const weft_kafka_t *k);

/* A producer only (for CLI commands): kafka.* and kafka.producer.* keys. */
weft_kafka_t *weft_kafka_producer_new(const weft_config_t *cfg, const weft_kafka_cbs_t *cbs,
                                      char *errstr, size_t errlen);
/* The producer's effective librdkafka setting key, into out: 0, or -1
 * when librdkafka does not know the key or out is too small for it. */
int weft_kafka_producer_setting(weft_kafka_t *k, const char *key, char *out, size_t len);
/* Makes the producer's handle of a topic it will produce to, so the
 * topic's metadata is asked for now rather than with its first message
 * (weft_kafka_produce makes the handle itself otherwise). 0, or -1 when
 * librdkafka refuses the name or memory runs out. */
int weft_kafka_producer_prepare(weft_kafka_t *k, const char *topic);
/* Learns the size limits of the topics (made producer handles if not
 * yet): each topic's max.message.bytes and, once, the broker's
 * message.max.bytes, with one DescribeConfigs request waited for up to
 * timeout_ms. A topic already known is not asked again. 0, or -1 with
 * errstr (the limits learnt stay; the rest stay unknown). */
int weft_kafka_describe_limits(weft_kafka_t *k, const char *const *topics, size_t n, int timeout_ms,
                               char *errstr, size_t errlen);
/* The largest record the producer, the broker and topic take (the
 * smallest of the limits known), in bytes as Kafka counts a record
 * batch; 0 when none is known. */
int64_t weft_kafka_max_bytes(weft_kafka_t *k, const char *topic);
/* Inside the delivered callback: whether the refusal being reported is
 * for good (the message's size), so producing it again cannot help. */
int weft_kafka_dr_permanent(const weft_kafka_t *k);
/* Waits up to timeout_ms for every produced message's delivery report.
 * Returns the number still undelivered. */
int weft_kafka_flush(weft_kafka_t *k, int timeout_ms);

int weft_kafka_subscribe(weft_kafka_t *k, const char **topics, size_t n, char *errstr,
                         size_t errlen);

/* Reads up to max messages without blocking; returns the count. Consumer
 * errors are logged (fatal ones set *fatal). */
size_t weft_kafka_consume(weft_kafka_t *k, weft_kmsg_t *out, size_t max, int *fatal);
/* 1 when librdkafka raised a fatal error on the consumer or the producer
 * (a fenced static group member, an idempotent producer's fatal error):
 * the handle is unusable from then on; why holds librdkafka's text. An
 * atomic read, no call to the broker. */
int weft_kafka_fatal(weft_kafka_t *k, char *why, size_t len);
void weft_kafka_msg_free(weft_kmsg_t *m);

/* Fills km from a librdkafka message (rd_kafka_message_t *) it then owns:
 * coordinates, key, value and headers point into the message until
 * weft_kafka_msg_free. */
void weft_kafka_msg_fill(weft_kmsg_t *km, void *rkmessage);

/* Stores next_offset (the next offset to consume) for commit. */
int weft_kafka_store(weft_kafka_t *k, const char *topic, int32_t partition, int64_t next_offset);

/* Produces asynchronously; the delivered callback reports the outcome.
 * Kafka headers are binary, so values are passed as they are (a dead
 * letter carries its original headers byte for byte). Returns 0, or -1
 * with errstr when the message cannot even be queued (retriable when
 * *retriable is set). */
int weft_kafka_produce(weft_kafka_t *k, const char *topic, const void *key, size_t key_len,
                       const void *value, size_t len, const weft_header_t *hdrs, size_t n_hdrs,
                       void *msg_opaque, int *retriable, char *errstr, size_t errlen);

/* Serves delivery reports. */
void weft_kafka_serve(weft_kafka_t *k);

/* Pauses (pause=1) or resumes one assigned partition. librdkafka drops
 * what it prefetched for a paused partition and, on resume, fetches from
 * after the last message handed out. Whether a pause outlives a revoke and
 * a new assignment depends on the version: the caller sets the state of
 * every newly assigned partition. */
int weft_kafka_pause_partition(weft_kafka_t *k, const char *topic, int32_t partition, int pause);

/* Messages queued in the producer and not yet delivered. */
int weft_kafka_outq(const weft_kafka_t *k);

/* Commits stored offsets synchronously. */
int weft_kafka_commit(weft_kafka_t *k);

/* Commits, closes the consumer (leaving the group) and flushes the
 * producer up to timeout_ms; delivery callbacks may run. Every consumed
 * message must be freed (weft_kafka_msg_free) before weft_kafka_destroy:
 * librdkafka waits for them. */
void weft_kafka_close(weft_kafka_t *k, int timeout_ms);

/* Closes (if not yet) and frees. NULL is a no-op. */
void weft_kafka_destroy(weft_kafka_t *k, int timeout_ms);

#endif
