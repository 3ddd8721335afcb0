/*
 * broker.h - the broker interface of the dispatcher: one pipeline, several
 * adapters (Kafka, JetStream, core NATS) behind the same calls.
 *
 * An adapter consumes messages for the triggers of the catalog, finishes
 * them when the dispatcher is done with them, and produces results and
 * dead letters. What "finish" means is the adapter's business:
 *
 *   Kafka      ACK: the message is finished in its partition's tracker and
 *              the contiguous finished prefix is stored for commit (never
 *              past an unfinished message). NAK is not used: retries wait
 *              in the dispatcher.
 *   JetStream  ACK: AckSync (off the loop thread). NAK: NakWithDelay, the
 *              server redelivers after the delay. Messages held by the
 *              dispatcher get in-progress acks, so AckWait never expires
 *              under a running function.
 *   core NATS  nothing to acknowledge: at-most-once. NAK is not used:
 *              retries wait in the dispatcher, as on Kafka.
 *   RELEASE    (all) let go without acknowledging: the broker redelivers
 *              (Kafka after a restart/rebalance, JetStream after AckWait).
 *
 * Every call is made from the dispatcher's loop thread. Adapters that use
 * threads (nats.c does) hand work to the loop through their wake fd; their
 * callbacks never touch dispatcher state.
 */
#ifndef WEFT_BROKER_H
#define WEFT_BROKER_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "envelope.h"

/* Where a trigger consumes, and where results and dead letters go. */
typedef enum { WEFT_BROKER_KAFKA = 0, WEFT_BROKER_JETSTREAM, WEFT_BROKER_NATS } weft_broker_t;

/* The catalog (catalog.h) is only passed through here. */
typedef struct weft_catalog weft_catalog_t;
typedef struct weft_trigger weft_trigger_t;

/* One consumed message. Pointers stay valid until the message is finished. */
typedef struct weft_bmsg {
    weft_broker_t broker;
    const char *topic; /* Kafka topic, NATS subject */
    int32_t partition; /* Kafka; -1 on NATS */
    int64_t offset;    /* Kafka offset; JetStream stream sequence; core NATS: local count */
    int64_t timestamp_ms;
    const void *key; /* Kafka message key; NULL on NATS */
    size_t key_len;
    const void *value;
    size_t value_len;
    weft_header_t *hdrs; /* as on the wire (NATS: ce- names, percent-encoded values) */
    size_t n_hdrs;
    const char *trigger; /* JetStream: the trigger whose consumer delivered it */
    const char *stream;  /* JetStream: the stream */
    int64_t delivered;   /* JetStream: delivery count (1 = first) */
    /* 1: a retry is a NAK with delay and the broker redelivers (JetStream);
     * 0: the dispatcher holds the message and waits itself (Kafka, core
     * NATS: nothing would redeliver it). */
    int redeliver;
    void *raw;   /* private to the adapter */
    void *track; /* private to the adapter */
} weft_bmsg_t;

typedef enum {
    WEFT_FINISH_ACK = 0, /* done: acknowledge / commit */
    WEFT_FINISH_NAK,     /* redeliver after delay_ms (messages with redeliver set) */
    WEFT_FINISH_RELEASE, /* let go without acknowledging (shutdown) */
} weft_finish_t;

/* One message to produce. Headers use Kafka's CloudEvents names (ce_id,
 * ce_type, ..., content-type); a NATS adapter maps them to ce- headers. */
typedef struct weft_emit {
    weft_broker_t broker; /* where: kafka, jetstream or nats */
    const char *topic;
    const void *key;
    size_t key_len;
    const void *value;
    size_t len;
    const weft_header_t *hdrs;
    size_t n_hdrs;
    const char *msg_id; /* JetStream Nats-Msg-Id (the event id); NULL: none */
    /* A dead letter: headers the target broker cannot carry are left out
     * (and named) instead of refusing the whole message. */
    int drop_bad_headers;
} weft_emit_t;

typedef struct weft_adapter_cbs {
    /* The broker acknowledged (err NULL) or refused a produced message.
     * retriable says whether producing it again may succeed. Called from
     * weft_adapter_serve, on the loop thread. */
    void (*delivered)(void *opaque, void *msg_opaque, const char *err, int retriable);
    void *opaque;
} weft_adapter_cbs_t;

typedef struct weft_adapter weft_adapter_t;

typedef struct weft_adapter_ops {
    int (*wake_fd)(weft_adapter_t *a);
    /* Consume what the catalog's triggers need (subscribe, create consumers). */
    int (*sync)(weft_adapter_t *a, const weft_catalog_t *cat, char *errstr, size_t errlen);
    size_t (*consume)(weft_adapter_t *a, weft_bmsg_t *out, size_t max, int *fatal);
    void (*finish)(weft_adapter_t *a, weft_bmsg_t *m, weft_finish_t how, int delay_ms);
    int (*produce)(weft_adapter_t *a, const weft_emit_t *em, void *msg_opaque, int *retriable,
                   char *errstr, size_t errlen);
    void (*serve)(weft_adapter_t *a);
    int (*pause)(weft_adapter_t *a, int pause);
    int (*hold)(weft_adapter_t *a, const weft_trigger_t *const *trigs, size_t n);
    size_t (*outq)(const weft_adapter_t *a);
    size_t (*max_bytes)(weft_adapter_t *a, const char *topic);
    void (*close)(weft_adapter_t *a, int timeout_ms);
    void (*destroy)(weft_adapter_t *a);
    /* May be NULL (the adapter has no fatal state). */
    int (*fatal)(weft_adapter_t *a, char *why, size_t len);
} weft_adapter_ops_t;

struct weft_adapter {
    const weft_adapter_ops_t *ops;
    const char *name;
};

/* The adapters. Constructors return NULL with errstr filled. */
weft_adapter_t *weft_adapter_kafka_new(const weft_config_t *cfg, const weft_adapter_cbs_t *cbs,
                                       char *errstr, size_t errlen);
/* JetStream and core NATS share one connection (nats.url). */
weft_adapter_t *weft_adapter_nats_new(const weft_config_t *cfg, const weft_adapter_cbs_t *cbs,
                                      char *errstr, size_t errlen);

static inline int weft_adapter_wake_fd(weft_adapter_t *a)
{
    return a->ops->wake_fd(a);
}
static inline int weft_adapter_sync(weft_adapter_t *a, const weft_catalog_t *cat, char *errstr,
                                    size_t errlen)
{
    return a->ops->sync(a, cat, errstr, errlen);
}
/* Reads up to max messages without blocking; returns the count. */
static inline size_t weft_adapter_consume(weft_adapter_t *a, weft_bmsg_t *out, size_t max,
                                          int *fatal)
{
    return a->ops->consume(a, out, max, fatal);
}
/* Ends the dispatcher's use of m (its pointers die here). */
static inline void weft_adapter_finish(weft_adapter_t *a, weft_bmsg_t *m, weft_finish_t how,
                                       int delay_ms)
{
    a->ops->finish(a, m, how, delay_ms);
}
/* Produces asynchronously: the delivered callback reports the outcome,
 * later, from weft_adapter_serve (never from inside this call). Returns 0,
 * or -1 with errstr when it cannot even be queued (*retriable: try later;
 * else the message can never be sent, e.g. a header value with CR/LF). */
static inline int weft_adapter_produce(weft_adapter_t *a, const weft_emit_t *em, void *msg_opaque,
                                       int *retriable, char *errstr, size_t errlen)
{
    return a->ops->produce(a, em, msg_opaque, retriable, errstr, errlen);
}
/* What a message weighs against a broker's size limit: value, key and
 * each header's name and value with room for its framing (a Kafka
 * record's varints, a NATS header line's ": " and CRLF). */
static inline size_t weft_emit_size(const weft_emit_t *em)
{
    size_t n = em->len + em->key_len;
    for (size_t i = 0; i < em->n_hdrs; i++)
        n += strlen(em->hdrs[i].name) + em->hdrs[i].len + 10;
    return n;
}
/* The largest weft_emit_size the broker takes on topic: the smallest of
 * the limits the adapter learnt when it synced (Kafka: the producer's
 * message.max.bytes, the broker's and the topic's; NATS: the server's
 * max_payload), less the broker's own framing. 0: no limit known. */
static inline size_t weft_adapter_max_bytes(weft_adapter_t *a, const char *topic)
{
    return a->ops->max_bytes ? a->ops->max_bytes(a, topic) : 0;
}
/* Delivery reports and periodic work; once per loop iteration. */
static inline void weft_adapter_serve(weft_adapter_t *a)
{
    a->ops->serve(a);
}
/* Stops / resumes fetching (backpressure). */
static inline int weft_adapter_pause(weft_adapter_t *a, int pause)
{
    return a->ops->pause(a, pause);
}
/* Stops fetching what feeds these triggers (each at its max_inflight),
 * and resumes what fed the triggers of the previous call that are not in
 * this one: Kafka pauses the partitions of their topics (a topic that
 * feeds several triggers pauses when any of them is held), JetStream stops
 * the trigger's consumer, core NATS holds the subject's deliveries. The
 * set holds across rebalances and is independent of pause(): a partition
 * is paused while either says so. The adapter keeps no pointer to trigs. */
static inline int weft_adapter_hold(weft_adapter_t *a, const weft_trigger_t *const *trigs, size_t n)
{
    return a->ops->hold(a, trigs, n);
}
/* Produced messages not yet acknowledged by the broker. */
static inline size_t weft_adapter_outq(const weft_adapter_t *a)
{
    return a->ops->outq(a);
}
/* Stops consuming and flushes produced messages up to timeout_ms;
 * delivered callbacks may run. Messages still held must be finished
 * (RELEASE) before weft_adapter_destroy. */
static inline void weft_adapter_close(weft_adapter_t *a, int timeout_ms)
{
    a->ops->close(a, timeout_ms);
}
/* 1 when the adapter's client failed for good (why says how): the
 * dispatcher must stop and exit 1 so that its supervisor restarts it.
 * Cheap (no call to the broker): asked once per loop turn. */
static inline int weft_adapter_fatal(weft_adapter_t *a, char *why, size_t len)
{
    return a->ops->fatal ? a->ops->fatal(a, why, len) : 0;
}
/* NULL is a no-op. */
static inline void weft_adapter_destroy(weft_adapter_t *a)
{
    if (a)
        a->ops->destroy(a);
}

#endif
