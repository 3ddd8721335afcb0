/*
 * broker_kafka.c - the Kafka adapter behind the broker interface
 * (broker.h): kafka.c's consumer and producer plus the per-partition
 * trackers that decide which offset may be stored.
 *
 * Runs on the dispatcher loop thread; librdkafka's callbacks land here
 * from weft_kafka_consume / weft_kafka_serve, on that thread too.
 *
 * NOTES
 * Finishing a message marks it done in its partition's tracker; the
 * contiguous finished prefix is stored once per partition per loop
 * iteration (serve), never past an unfinished message. On revoke, what is
 * finished is stored before librdkafka commits and gives the partition
 * up; the revoked partition's messages still in flight run to their end,
 * but their offsets are no longer ours to store.
 *
 * Pausing is per partition: a partition is paused while the dispatcher
 * pauses everything (its global bounds) or while a trigger its topic
 * feeds is held at its max_inflight (hold). What a partition's pause
 * state is after a revoke and a new assignment depends on the client:
 * librdkafka 2.0.2 keeps the application's pause (so a partition revoked
 * while paused and released meanwhile would come back paused for good),
 * the Java client and newer documentation say it is forgotten. So the
 * state of a newly assigned partition is unknown (-1) and set explicitly,
 * paused or resumed, right after the poll that assigned it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "catalog.h"
#include "kafka.h"
#include "log.h"
#include "tracker.h"

typedef struct part {
    char *topic;
    int32_t partition;
    weft_tracker_t *tr;
    int64_t store_pos; /* committable position not yet stored, or -1 */
    int revoked;
    int paused; /* as librdkafka has it; -1: unknown (just assigned) */
    int refs;
    struct part *next;
} part_t;

typedef struct kadapter {
    weft_adapter_t base;
    weft_kafka_t *k;
    weft_adapter_cbs_t cbs;
    part_t *parts;
    char **topics; /* the current subscription */
    size_t n_topics;
    int closing;
    int all_paused; /* pause(): every partition */
    char **held;    /* hold(): topics whose partitions are paused */
    size_t n_held;
    int reapply; /* a partition's pause state may differ from what is wanted */
} kadapter_t;

/* The slot of a consumed message, kept in weft_bmsg_t.track. */
typedef struct ktrack {
    part_t *part;
    int64_t slot;
} ktrack_t;

static part_t *part_find(kadapter_t *ka, const char *topic, int32_t partition)
{
    for (part_t *p = ka->parts; p; p = p->next)
        if (!p->revoked && p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

static void part_unref(kadapter_t *ka, part_t *p)
{
    if (--p->refs > 0)
        return;
    for (part_t **pp = &ka->parts; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    weft_tracker_destroy(p->tr);
    free(p->topic);
    free(p);
}

static void on_assigned(void *opaque, const char *topic, int32_t partition)
{
    kadapter_t *ka = opaque;
    if (part_find(ka, topic, partition))
        return;
    part_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->topic = strdup(topic)) || !(p->tr = weft_tracker_new())) {
        weft_error("out of memory tracking topic=%s partition=%d", topic, (int)partition);
        if (p) {
            free(p->topic);
            free(p);
        }
        return;
    }
    p->partition = partition;
    p->store_pos = -1;
    p->refs = 1;
    p->paused = -1;
    p->next = ka->parts;
    ka->parts = p;
    ka->reapply = 1;
}

static int topic_held(const kadapter_t *ka, const char *topic)
{
    for (size_t i = 0; i < ka->n_held; i++)
        if (strcmp(ka->held[i], topic) == 0)
            return 1;
    return 0;
}

/* Brings every owned partition's pause state to what is wanted. A call
 * librdkafka refuses is tried again on the next loop iteration. */
static int apply_pauses(kadapter_t *ka)
{
    int rc = 0;
    ka->reapply = 0;
    for (part_t *p = ka->parts; p; p = p->next) {
        if (p->revoked || ka->closing)
            continue;
        int want = ka->all_paused || topic_held(ka, p->topic);
        if (want == p->paused)
            continue;
        if (weft_kafka_pause_partition(ka->k, p->topic, p->partition, want) != 0) {
            ka->reapply = 1;
            rc = -1;
            continue;
        }
        p->paused = want;
        weft_debug("%s topic=%s partition=%d", want ? "paused" : "resumed", p->topic,
                   (int)p->partition);
    }
    return rc;
}

/* Stores the position a partition reached since the last call: once per
 * partition per loop iteration, not once per finished message. */
static void store_position(kadapter_t *ka, part_t *p)
{
    if (p->store_pos >= 0 && !p->revoked && !ka->closing)
        weft_kafka_store(ka->k, p->topic, p->partition, p->store_pos);
    p->store_pos = -1;
}

static void store_positions(kadapter_t *ka)
{
    for (part_t *p = ka->parts; p; p = p->next)
        store_position(ka, p);
}

static void on_revoked(void *opaque, const char *topic, int32_t partition)
{
    kadapter_t *ka = opaque;
    part_t *p = part_find(ka, topic, partition);
    if (p) {
        store_position(ka, p);
        p->revoked = 1;
        part_unref(ka, p);
    }
}

static void on_delivered(void *opaque, void *msg_opaque, const char *err)
{
    kadapter_t *ka = opaque;
    ka->cbs.delivered(ka->cbs.opaque, msg_opaque, err, !err || !weft_kafka_dr_permanent(ka->k));
}

static int k_wake_fd(weft_adapter_t *a)
{
    return weft_kafka_wake_fd(((kadapter_t *)a)->k);
}

/* Record batch and record framing Kafka counts against its limits
 * beyond what weft_emit_size counts. */
#define KAFKA_FRAMING 128

/* Learns the size limits of the topics results and dead letters go to
 * (kafka.c asks each topic once), and says what they are. */
static void sync_limits(kadapter_t *ka, const weft_catalog_t *cat)
{
    const char **sinks = calloc(2 * cat->n_trigs + 1, sizeof(*sinks));
    size_t n = 0;
    if (!sinks)
        return;
    for (size_t i = 0; i < cat->n_trigs; i++) {
        const weft_trigger_t *t = &cat->trigs[i];
        if (t->result_topic && t->result_broker == WEFT_BROKER_KAFKA)
            sinks[n++] = t->result_topic;
        if (t->dead_letter_topic && t->dead_letter_broker == WEFT_BROKER_KAFKA)
            sinks[n++] = t->dead_letter_topic;
    }
    char err[512];
    if (n && weft_kafka_describe_limits(ka->k, sinks, n, 10000, err, sizeof(err)) != 0)
        weft_warn("cannot learn every topic's size limit (the producer's and broker's apply): %s",
                  err);
    for (size_t i = 0; i < n; i++) {
        int dup = 0;
        for (size_t x = 0; x < i && !dup; x++)
            dup = strcmp(sinks[x], sinks[i]) == 0;
        if (!dup)
            weft_info("size limit topic=%s max_bytes=%lld", sinks[i],
                      (long long)weft_kafka_max_bytes(ka->k, sinks[i]));
    }
    free(sinks);
}

static size_t k_max_bytes(weft_adapter_t *a, const char *topic)
{
    int64_t lim = weft_kafka_max_bytes(((kadapter_t *)a)->k, topic);
    return lim > KAFKA_FRAMING ? (size_t)(lim - KAFKA_FRAMING) : 0;
}

static int k_sync(weft_adapter_t *a, const weft_catalog_t *cat, char *errstr, size_t errlen)
{
    kadapter_t *ka = (kadapter_t *)a;
    /* Ask for the metadata of the topics results and dead letters go to
     * now, not when the first one is produced. */
    for (size_t i = 0; i < cat->n_trigs; i++) {
        const weft_trigger_t *t = &cat->trigs[i];
        if (t->result_topic && t->result_broker == WEFT_BROKER_KAFKA &&
            weft_kafka_producer_prepare(ka->k, t->result_topic) != 0)
            weft_warn("cannot prepare result topic=%s trigger=%s", t->result_topic, t->name);
        if (t->dead_letter_topic && t->dead_letter_broker == WEFT_BROKER_KAFKA &&
            weft_kafka_producer_prepare(ka->k, t->dead_letter_topic) != 0)
            weft_warn("cannot prepare dead-letter topic=%s trigger=%s", t->dead_letter_topic,
                      t->name);
    }
    sync_limits(ka, cat);
    const char *topics[512];
    size_t n = weft_catalog_topics(cat, WEFT_BROKER_KAFKA, topics, 512);
    int same = n == ka->n_topics;
    for (size_t i = 0; same && i < n; i++) {
        int found = 0;
        for (size_t k = 0; k < ka->n_topics && !found; k++)
            found = strcmp(topics[i], ka->topics[k]) == 0;
        same = found;
    }
    if (same && ka->topics)
        return 0;
    if (weft_kafka_subscribe(ka->k, topics, n, errstr, errlen) != 0)
        return -1;
    for (size_t i = 0; i < ka->n_topics; i++)
        free(ka->topics[i]);
    free(ka->topics);
    ka->topics = calloc(n ? n : 1, sizeof(char *));
    ka->n_topics = 0;
    for (size_t i = 0; ka->topics && i < n; i++)
        if ((ka->topics[ka->n_topics] = strdup(topics[i])) != NULL)
            ka->n_topics++;
    for (size_t i = 0; i < n; i++)
        weft_info("subscribed topic=%s", topics[i]);
    return 0;
}

/* Consumed messages become tracker slots here; a message of a partition
 * that is not (or no longer) ours, or an offset seen again after a seek
 * backwards while the first copy is still in flight, is dropped: it will
 * be redelivered to whoever owns the partition. */
static size_t k_consume(weft_adapter_t *a, weft_bmsg_t *out, size_t max, int *fatal)
{
    kadapter_t *ka = (kadapter_t *)a;
    size_t n = weft_kafka_consume(ka->k, out, max, fatal), kept = 0;
    if (ka->reapply)
        apply_pauses(ka);
    for (size_t i = 0; i < n; i++) {
        weft_bmsg_t *m = &out[i];
        part_t *p = part_find(ka, m->topic, m->partition);
        ktrack_t *t = p ? malloc(sizeof(*t)) : NULL;
        int64_t slot = t ? weft_tracker_add(p->tr, m->offset) : -1;
        if (slot < 0) {
            if (!p)
                weft_debug("message for unassigned partition topic=%s partition=%d", m->topic,
                           (int)m->partition);
            else if (t)
                weft_debug("duplicate offset topic=%s partition=%d offset=%lld", m->topic,
                           (int)m->partition, (long long)m->offset);
            else
                weft_error("out of memory, dropping local copy topic=%s partition=%d "
                           "offset=%lld",
                           m->topic, (int)m->partition, (long long)m->offset);
            free(t);
            weft_kafka_msg_free(m);
            continue;
        }
        t->part = p;
        t->slot = slot;
        p->refs++;
        m->broker = WEFT_BROKER_KAFKA;
        m->track = t;
        if (kept != i)
            out[kept] = *m;
        kept++;
    }
    return kept;
}

static void k_finish(weft_adapter_t *a, weft_bmsg_t *m, weft_finish_t how, int delay_ms)
{
    (void)delay_ms;
    kadapter_t *ka = (kadapter_t *)a;
    ktrack_t *t = m->track;
    if (t) {
        part_t *p = t->part;
        /* A released message keeps its slot unfinished: the offset will
         * not pass it, and it is redelivered after a restart. */
        if (how != WEFT_FINISH_RELEASE && !p->revoked) {
            int64_t pos = weft_tracker_done(p->tr, t->slot);
            if (pos >= 0)
                p->store_pos = pos;
        }
        part_unref(ka, p);
        free(t);
    }
    weft_kafka_msg_free(m);
}

static int k_produce(weft_adapter_t *a, const weft_emit_t *em, void *msg_opaque, int *retriable,
                     char *errstr, size_t errlen)
{
    kadapter_t *ka = (kadapter_t *)a;
    return weft_kafka_produce(ka->k, em->topic, em->key, em->key_len, em->value, em->len, em->hdrs,
                              em->n_hdrs, msg_opaque, retriable, errstr, errlen);
}

static void k_serve(weft_adapter_t *a)
{
    kadapter_t *ka = (kadapter_t *)a;
    weft_kafka_serve(ka->k);
    store_positions(ka);
    if (ka->reapply)
        apply_pauses(ka);
}

static int k_pause(weft_adapter_t *a, int pause)
{
    kadapter_t *ka = (kadapter_t *)a;
    ka->all_paused = pause;
    return apply_pauses(ka);
}

static void free_held(kadapter_t *ka)
{
    for (size_t i = 0; i < ka->n_held; i++)
        free(ka->held[i]);
    free(ka->held);
    ka->held = NULL;
    ka->n_held = 0;
}

static int k_hold(weft_adapter_t *a, const weft_trigger_t *const *trigs, size_t n)
{
    kadapter_t *ka = (kadapter_t *)a;
    free_held(ka);
    ka->held = calloc(n ? n : 1, sizeof(char *));
    if (!ka->held)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (trigs[i]->broker == WEFT_BROKER_KAFKA && !topic_held(ka, trigs[i]->topic) &&
            (ka->held[ka->n_held] = strdup(trigs[i]->topic)) != NULL)
            ka->n_held++;
    return apply_pauses(ka);
}

static size_t k_outq(const weft_adapter_t *a)
{
    int n = weft_kafka_outq(((const kadapter_t *)a)->k);
    return n > 0 ? (size_t)n : 0;
}

static void k_close(weft_adapter_t *a, int timeout_ms)
{
    kadapter_t *ka = (kadapter_t *)a;
    store_positions(ka);
    ka->closing = 1;
    weft_kafka_close(ka->k, timeout_ms);
}

static void k_destroy(weft_adapter_t *a)
{
    kadapter_t *ka = (kadapter_t *)a;
    /* librdkafka waits for every message it handed out: the dispatcher
     * finished (released) them all before this. */
    weft_kafka_destroy(ka->k, 0);
    while (ka->parts) {
        part_t *p = ka->parts;
        ka->parts = p->next;
        weft_tracker_destroy(p->tr);
        free(p->topic);
        free(p);
    }
    for (size_t i = 0; i < ka->n_topics; i++)
        free(ka->topics[i]);
    free(ka->topics);
    free_held(ka);
    free(ka);
}

static int k_fatal(weft_adapter_t *a, char *why, size_t len)
{
    return weft_kafka_fatal(((kadapter_t *)a)->k, why, len);
}

static const weft_adapter_ops_t kafka_ops = {
    .wake_fd = k_wake_fd,
    .sync = k_sync,
    .consume = k_consume,
    .finish = k_finish,
    .produce = k_produce,
    .serve = k_serve,
    .pause = k_pause,
    .hold = k_hold,
    .outq = k_outq,
    .max_bytes = k_max_bytes,
    .close = k_close,
    .destroy = k_destroy,
    .fatal = k_fatal,
};

weft_adapter_t *weft_adapter_kafka_new(const weft_config_t *cfg, const weft_adapter_cbs_t *cbs,
                                       char *errstr, size_t errlen)
{
    kadapter_t *ka = calloc(1, sizeof(*ka));
    if (!ka) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    ka->base.ops = &kafka_ops;
    ka->base.name = "kafka";
    ka->cbs = *cbs;
    weft_kafka_cbs_t kcbs = {on_assigned, on_revoked, on_delivered, ka};
    ka->k = weft_kafka_new(cfg, &kcbs, errstr, errlen);
    if (!ka->k) {
        free(ka);
        return NULL;
    }
    return &ka->base;
}
