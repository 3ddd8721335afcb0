/*
 * kafka.c - Kafka adapter over librdkafka.
 *
 * Runs in the dispatcher; librdkafka starts its own threads, which is why
 * the dispatcher only ever posix_spawn()s its workers. Every
 * callback here runs on the dispatcher loop thread, from
 * weft_kafka_consume / weft_kafka_serve.
 *
 * Invariants: enable.auto.offset.store=false, so only offsets the
 * dispatcher stores (the contiguous finished prefix of a partition) are
 * ever committed; the producer is idempotent (enable.idempotence=true,
 * acks=all), so a retried produce does not duplicate on the broker.
 */
#include "kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"
#include "log.h"

/* The producer's handles of the topics it produces to, made once each. */
#define KTOPIC_BUCKETS 64
typedef struct ktopic {
    rd_kafka_topic_t *rkt;
    int64_t max_bytes; /* its max.message.bytes; 0: not asked; -1: asked, unknown */
    struct ktopic *next;
    char name[]; /* the handle's topic */
} ktopic_t;

struct weft_kafka {
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    rd_kafka_queue_t *cq; /* consumer queue */
    rd_kafka_queue_t *pq; /* producer main queue (delivery reports) */
    int wake[2];
    weft_kafka_cbs_t cbs;
    int subscribed;
    int closed;
    ktopic_t *topics[KTOPIC_BUCKETS];
    int64_t broker_max_bytes; /* its message.max.bytes; 0: not asked; -1: asked, unknown */
    int64_t producer_max_bytes; /* the producer's message.max.bytes; 0: not read yet */
    /* The delivery report being served is a refusal that producing the
     * same message again cannot mend (too large). */
    int dr_permanent;
};

typedef struct set_ctx {
    rd_kafka_conf_t *conf;
    const char *only; /* "consumer." or "producer." */
    const char *skip;
    char *errstr;
    size_t errlen;
    int failed;
} set_ctx_t;

/* librdkafka properties that only a consumer or only a producer knows
 * (the other one warns at start that it ignores them): a plain kafka.KEY
 * goes only to the client that uses it. */
static int client_only(const char *k, const char *client)
{
    static const char *const consumer[] = {
        "group.id",           "group.instance.id",        "session.timeout.ms",
        "heartbeat.interval.ms", "max.poll.interval.ms",  "auto.offset.reset",
        "enable.auto.commit", "auto.commit.interval.ms",  "enable.auto.offset.store",
        "queued.min.messages", "queued.max.messages.kbytes", "fetch.wait.max.ms",
        "fetch.min.bytes",    "fetch.max.bytes",          "max.partition.fetch.bytes",
        "fetch.error.backoff.ms", "isolation.level",      "partition.assignment.strategy",
        "check.crcs",         "allow.auto.create.topics", "enable.partition.eof",
    };
    static const char *const producer[] = {
        "linger.ms",          "queue.buffering.max.ms",   "queue.buffering.max.messages",
        "queue.buffering.max.kbytes", "batch.num.messages", "batch.size",
        "acks",               "request.required.acks",    "enable.idempotence",
        "message.timeout.ms", "delivery.timeout.ms",      "compression.codec",
        "compression.type",   "retries",                  "message.send.max.retries",
        "transactional.id",   "partitioner",              "max.in.flight",
    };
    int is_consumer = strcmp(client, "consumer.") == 0;
    const char *const *list = is_consumer ? consumer : producer;
    size_t n = is_consumer ? sizeof(consumer) / sizeof(*consumer)
                           : sizeof(producer) / sizeof(*producer);
    for (size_t i = 0; i < n; i++)
        if (strcmp(k, list[i]) == 0)
            return 1;
    return 0;
}

static int set_one(const char *key, const char *value, void *opaque)
{
    set_ctx_t *sc = opaque;
    const char *k = key + strlen("kafka.");
    if (strncmp(k, sc->skip, strlen(sc->skip)) == 0)
        return 0;
    /* Plain keys: not the ones only the other client knows. */
    if (strncmp(k, sc->only, strlen(sc->only)) != 0 && client_only(k, sc->skip))
        return 0;
    if (strncmp(k, sc->only, strlen(sc->only)) == 0)
        k += strlen(sc->only);
    char err[512];
    if (rd_kafka_conf_set(sc->conf, k, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(sc->errstr, sc->errlen, "kafka config %s: %s", key, err);
        sc->failed = 1;
        return 1;
    }
    return 0;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    weft_log(level <= 3 ? WEFT_LOG_ERROR : level <= 4 ? WEFT_LOG_WARN : WEFT_LOG_DEBUG,
             "kafka %s: %s", fac, buf);
}

/* A topic the broker does not have. With auto-creation off (as on most
 * production clusters) it is an operator's mistake that creating the topic
 * mends: the message is held and retried, never given up on. */
static int unknown_topic(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
}

static void unknown_topic_error(char *errstr, size_t errlen, const char *topic)
{
    snprintf(errstr, errlen,
             "topic=%s does not exist on the broker (create it; auto-creation is off): "
             "held, retrying",
             topic);
}

/* The broker refused the message for its size: the same bytes will be
 * refused again, whatever the wait. */
static int size_refused(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE;
}

int weft_kafka_dr_permanent(const weft_kafka_t *k)
{
    return k->dr_permanent;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    weft_kafka_t *k = opaque;
    char err[512];
    if (m->err && unknown_topic(m->err))
        unknown_topic_error(err, sizeof(err), rd_kafka_topic_name(m->rkt));
    else if (m->err)
        snprintf(err, sizeof(err), "%s topic=%s", rd_kafka_err2str(m->err),
                 rd_kafka_topic_name(m->rkt));
    k->dr_permanent = size_refused(m->err);
    k->cbs.delivered(k->cbs.opaque, m->_private, m->err ? err : NULL);
    k->dr_permanent = 0;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    weft_kafka_t *k = opaque;
    int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            weft_info("partition assigned topic=%s partition=%d", parts->elems[i].topic,
                      (int)parts->elems[i].partition);
            k->cbs.assigned(k->cbs.opaque, parts->elems[i].topic, parts->elems[i].partition);
        }
        if (cooperative)
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        else
            rd_kafka_assign(rk, parts);
        return;
    }
    /* Revoked: the dispatcher stores what is finished (the callback), then
     * it is committed while we still own the partitions. */
    for (int i = 0; i < parts->cnt; i++) {
        weft_info("partition revoked topic=%s partition=%d", parts->elems[i].topic,
                  (int)parts->elems[i].partition);
        k->cbs.revoked(k->cbs.opaque, parts->elems[i].topic, parts->elems[i].partition);
    }
    rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
    if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
        weft_warn("commit on revoke failed: %s", rd_kafka_err2str(cerr));
    if (cooperative)
        rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
        rd_kafka_assign(rk, NULL);
}

int weft_kafka_conf_apply(void *conf, const weft_config_t *cfg, const char *client, char *errstr,
                          size_t errlen)
{
    int consumer = strcmp(client, "consumer.") == 0;
    set_ctx_t sc = {conf, client, consumer ? "producer." : "consumer.", errstr, errlen, 0};
    weft_config_each(cfg, "kafka.", set_one, &sc);
    return sc.failed ? -1 : 0;
}

static rd_kafka_conf_t *make_conf(const weft_config_t *cfg, const char *only, char *errstr,
                                  size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (weft_kafka_conf_apply(conf, cfg, only, errstr, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    return conf;
}

static int conf_default(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                        size_t errlen)
{
    char cur[256];
    size_t sz = sizeof(cur);
    /* Keep a user's explicit setting; fill in ours otherwise. */
    if (rd_kafka_conf_get(conf, key, cur, &sz) == RD_KAFKA_CONF_OK && sz > 1 &&
        strcmp(key, "group.id") == 0)
        return 0;
    char err[256];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errlen, "kafka config %s: %s", key, err);
        return -1;
    }
    return 0;
}

static int conf_force(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                      size_t errlen)
{
    char err[256];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errlen, "kafka config %s: %s", key, err);
        return -1;
    }
    return 0;
}

static int make_producer(weft_kafka_t *k, const weft_config_t *cfg, char *errstr,
                         size_t errlen)
{
    rd_kafka_conf_t *pc = make_conf(cfg, "producer.", errstr, errlen);
    if (!pc)
        return -1;
    /* linger.ms=0: a result is sent as soon as it is produced, no batching
     * window holds a lone event. Under load, batches still form on their
     * own: results queue up while the idempotent producer's (at most 5)
     * requests are in flight, and go out together in the next one. */
    if (conf_default(pc, "linger.ms", "0", errstr, errlen) ||
        conf_force(pc, "enable.idempotence", "true", errstr, errlen) ||
        conf_force(pc, "acks", "all", errstr, errlen)) {
        rd_kafka_conf_destroy(pc);
        return -1;
    }
    /* make_conf applied user keys before our default; re-apply linger.ms
     * if the user gave it. */
    const char *lg = weft_config_get(cfg, "kafka.producer.linger.ms", NULL);
    if (!lg)
        lg = weft_config_get(cfg, "kafka.linger.ms", NULL);
    if (lg && conf_force(pc, "linger.ms", lg, errstr, errlen)) {
        rd_kafka_conf_destroy(pc);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(pc, dr_cb);
    rd_kafka_conf_set_opaque(pc, k);
    char err[512];
    k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    if (!k->producer) {
        rd_kafka_conf_destroy(pc);
        snprintf(errstr, errlen, "creating kafka producer: %s", err);
        return -1;
    }
    k->pq = rd_kafka_queue_get_main(k->producer);
    rd_kafka_queue_io_event_enable(k->pq, k->wake[1], "p", 1);
    return 0;
}

/* The handle without clients: callbacks, the wake pipe, and the one
 * setting every client needs. */
static weft_kafka_t *kafka_alloc(const weft_config_t *cfg, const weft_kafka_cbs_t *cbs,
                                 char *errstr, size_t errlen)
{
    weft_kafka_t *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    k->cbs = *cbs;
    k->wake[0] = k->wake[1] = -1;
    if (pipe2(k->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(errstr, errlen, "pipe2() failed: %s", strerror(errno));
        free(k);
        return NULL;
    }
    if (!weft_config_str(cfg, "kafka.bootstrap.servers")) {
        snprintf(errstr, errlen,
                 "kafka.bootstrap.servers is not set (config file or WEFT_KAFKA_BROKERS)");
        weft_kafka_destroy(k, 0);
        return NULL;
    }
    return k;
}

weft_kafka_t *weft_kafka_producer_new(const weft_config_t *cfg, const weft_kafka_cbs_t *cbs,
                                      char *errstr, size_t errlen)
{
    weft_kafka_t *k = kafka_alloc(cfg, cbs, errstr, errlen);
    if (!k)
        return NULL;
    if (make_producer(k, cfg, errstr, errlen) != 0) {
        weft_kafka_destroy(k, 0);
        return NULL;
    }
    return k;
}

int weft_kafka_producer_setting(weft_kafka_t *k, const char *key, char *out, size_t len)
{
    size_t sz = len;
    /* librdkafka truncates a value that does not fit and says its size */
    if (rd_kafka_conf_get(rd_kafka_conf(k->producer), key, out, &sz) != RD_KAFKA_CONF_OK ||
        sz > len)
        return -1;
    return 0;
}

int weft_kafka_flush(weft_kafka_t *k, int timeout_ms)
{
    rd_kafka_flush(k->producer, timeout_ms);
    return rd_kafka_outq_len(k->producer);
}

weft_kafka_t *weft_kafka_new(const weft_config_t *cfg, const weft_kafka_cbs_t *cbs,
                             char *errstr, size_t errlen)
{
    weft_kafka_t *k = kafka_alloc(cfg, cbs, errstr, errlen);
    if (!k)
        return NULL;

    /* Consumer: a defaulted config, then the user's kafka.* on top, then
     * the settings weft's guarantees depend on, which cannot be changed. */
    rd_kafka_conf_t *cc = rd_kafka_conf_new();
    /* The assignor stays librdkafka's eager default (range,roundrobin).
     * cooperative-sticky re-emitted far fewer results in
     * test_rebalance_under_load (376 and 2,041 copies against 5,863 to
     * 11,124; no second result id with either), but Debian's librdkafka
     * 2.0.2 can crash or hang in rd_kafka_consumer_close while a
     * cooperative rebalance is under way (librdkafka issues 4312, fixed in
     * 2.2.0, and 4527, fixed in 2.4.0), and a dispatcher stopped during a
     * rolling deploy is exactly that. Set kafka.partition.assignment.strategy
     * with a newer librdkafka. */
    if (conf_default(cc, "group.id", weft_config_str(cfg, "kafka.group.id"), errstr, errlen) ||
        conf_default(cc, "auto.offset.reset", "earliest", errstr, errlen) ||
        conf_default(cc, "auto.commit.interval.ms", "1000", errstr, errlen) ||
        /* The prefetch queue is memory the dispatcher's own byte bound
         * (dispatcher.max_inflight_bytes) does not count: 16 MiB keeps the
         * two together well under 256 MiB (DESIGN.md "Backpressure"). */
        conf_default(cc, "queued.max.messages.kbytes", "16384", errstr, errlen) ||
        /* librdkafka reads a fetch response into one buffer of its size,
         * up to 50 MB by default. jemalloc serves blocks over 8 MiB from
         * an arena that returns them to the kernel at once, so every big
         * fetch faulted its pages in again: under ops/bench the broker
         * thread took ~4,000 page faults/s (11-16 us each on a virtual
         * machine). 2 MiB responses reuse freed blocks and still carry
         * some 7,000 events of 200 bytes each. */
        conf_default(cc, "fetch.max.bytes", "2097152", errstr, errlen) ||
        conf_default(cc, "fetch.wait.max.ms", "10", errstr, errlen)) {
        rd_kafka_conf_destroy(cc);
        goto fail;
    }
    if (weft_kafka_conf_apply(cc, cfg, "consumer.", errstr, errlen) != 0) {
        rd_kafka_conf_destroy(cc);
        goto fail;
    }
    if (conf_force(cc, "enable.auto.offset.store", "false", errstr, errlen) ||
        conf_force(cc, "enable.auto.commit", "true", errstr, errlen) ||
        conf_force(cc, "enable.partition.eof", "false", errstr, errlen)) {
        rd_kafka_conf_destroy(cc);
        goto fail;
    }
    rd_kafka_conf_set_log_cb(cc, log_cb);
    rd_kafka_conf_set_rebalance_cb(cc, rebalance_cb);
    rd_kafka_conf_set_opaque(cc, k);
    char err[512];
    k->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (!k->consumer) {
        rd_kafka_conf_destroy(cc);
        snprintf(errstr, errlen, "creating kafka consumer: %s", err);
        goto fail;
    }
    rd_kafka_poll_set_consumer(k->consumer);
    k->cq = rd_kafka_queue_get_consumer(k->consumer);

    if (make_producer(k, cfg, errstr, errlen) != 0)
        goto fail;
    rd_kafka_queue_io_event_enable(k->cq, k->wake[1], "c", 1);
    return k;
fail:
    weft_kafka_destroy(k, 0);
    return NULL;
}

int weft_kafka_wake_fd(const weft_kafka_t *k)
{
    return k->wake[0];
}

int weft_kafka_subscribe(weft_kafka_t *k, const char **topics, size_t n, char *errstr,
                         size_t errlen)
{
    if (n == 0) {
        if (k->subscribed)
            rd_kafka_unsubscribe(k->consumer);
        k->subscribed = 0;
        return 0;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(k->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        snprintf(errstr, errlen, "rd_kafka_subscribe() failed: %s", rd_kafka_err2str(err));
        return -1;
    }
    k->subscribed = 1;
    return 0;
}

static void drain_wake(weft_kafka_t *k)
{
    char buf[64];
    while (read(k->wake[0], buf, sizeof(buf)) > 0)
        ;
}

void weft_kafka_msg_fill(weft_kmsg_t *km, void *rkmessage)
{
    rd_kafka_message_t *m = rkmessage;
    memset(km, 0, sizeof(*km));
    km->raw = m;
    km->topic = rd_kafka_topic_name(m->rkt);
    km->partition = m->partition;
    km->offset = m->offset;
    km->timestamp_ms = rd_kafka_message_timestamp(m, NULL);
    km->key = m->key;
    km->key_len = m->key_len;
    km->value = m->payload;
    km->value_len = m->len;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
        size_t cnt = rd_kafka_header_cnt(hdrs);
        km->hdrs = calloc(cnt ? cnt : 1, sizeof(weft_header_t));
        for (size_t i = 0; km->hdrs && i < cnt; i++) {
            const char *name;
            const void *val;
            size_t sz;
            if (rd_kafka_header_get_all(hdrs, i, &name, &val, &sz))
                break;
            km->hdrs[km->n_hdrs].name = name;
            km->hdrs[km->n_hdrs].value = val;
            km->hdrs[km->n_hdrs].len = sz;
            km->n_hdrs++;
        }
    }
}

size_t weft_kafka_consume(weft_kafka_t *k, weft_kmsg_t *out, size_t max, int *fatal)
{
    drain_wake(k);
    size_t n = 0;
    while (n < max) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(k->consumer, 0);
        if (!m)
            break;
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                rd_kafka_message_destroy(m);
                continue;
            }
            int is_fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
            weft_log(is_fatal ? WEFT_LOG_ERROR : WEFT_LOG_WARN, "kafka consumer: %s topic=%s",
                     rd_kafka_message_errstr(m), m->rkt ? rd_kafka_topic_name(m->rkt) : "-");
            if (is_fatal && fatal)
                *fatal = 1;
            rd_kafka_message_destroy(m);
            continue;
        }
        weft_kafka_msg_fill(&out[n], m);
        n++;
    }
    return n;
}

int weft_kafka_fatal(weft_kafka_t *k, char *why, size_t len)
{
    rd_kafka_t *rk[2] = {k->consumer, k->producer};
    for (int i = 0; i < 2; i++) {
        char e[512];
        rd_kafka_resp_err_t err = rk[i] ? rd_kafka_fatal_error(rk[i], e, sizeof(e)) : 0;
        if (err) {
            snprintf(why, len, "%s: %s (%s)", i ? "producer" : "consumer", e,
                     rd_kafka_err2name(err));
            return 1;
        }
    }
    return 0;
}

void weft_kafka_msg_free(weft_kmsg_t *m)
{
    if (!m)
        return;
    free(m->hdrs);
    if (m->raw)
        rd_kafka_message_destroy(m->raw);
    memset(m, 0, sizeof(*m));
}

int weft_kafka_store(weft_kafka_t *k, const char *topic, int32_t partition, int64_t next_offset)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = next_offset;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(k->consumer, l);
    if (!err)
        err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        weft_warn("storing offset failed topic=%s partition=%d offset=%lld: %s", topic,
                  (int)partition, (long long)next_offset, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

/* The producer's handle of a topic, made on first use (NULL: no memory,
 * or librdkafka refused the name). Making it with rd_kafka_topic_new asks
 * the cluster for the topic's metadata at once. Producing by name alone
 * (RD_KAFKA_V_TOPIC) makes the topic inside librdkafka without asking:
 * its first message then waits for the next topic scan, once a second,
 * before the topic's partitions are known. */
static rd_kafka_topic_t *producer_topic(weft_kafka_t *k, const char *topic)
{
    ktopic_t **pp = &k->topics[weft_fnv1a_str(WEFT_FNV1A_INIT, topic) & (KTOPIC_BUCKETS - 1)];
    for (ktopic_t *t = *pp; t; t = t->next)
        if (strcmp(t->name, topic) == 0)
            return t->rkt;
    size_t len = strlen(topic);
    ktopic_t *t = malloc(sizeof(*t) + len + 1);
    if (!t)
        return NULL;
    t->max_bytes = 0;
    t->rkt = rd_kafka_topic_new(k->producer, topic, NULL);
    if (!t->rkt) {
        free(t);
        return NULL;
    }
    memcpy(t->name, topic, len + 1);
    t->next = *pp;
    *pp = t;
    return t->rkt;
}

int weft_kafka_producer_prepare(weft_kafka_t *k, const char *topic)
{
    return producer_topic(k, topic) ? 0 : -1;
}

/* ---- size limits -------------------------------------------------------- */

static ktopic_t *ktopic_find(weft_kafka_t *k, const char *topic)
{
    ktopic_t *t = k->topics[weft_fnv1a_str(WEFT_FNV1A_INIT, topic) & (KTOPIC_BUCKETS - 1)];
    while (t && strcmp(t->name, topic) != 0)
        t = t->next;
    return t;
}

/* A message larger than the broker takes is refused for good, so the
 * limits are learnt before anything is produced: the producer's own
 * message.max.bytes, the broker's message.max.bytes and each topic's
 * max.message.bytes (DescribeConfigs; a topic without its own value
 * reports the broker's default). Waits up to timeout_ms: it runs at start
 * and on catalog reloads, where the loop waits anyway. A topic is asked
 * once (again only if it did not exist yet): a broker that cannot answer
 * (an old one, the mock) costs one wait, not one per reload, and the
 * refusal of a message for its size is handled when it is reported. */
int weft_kafka_describe_limits(weft_kafka_t *k, const char *const *topics, size_t n, int timeout_ms,
                               char *errstr, size_t errlen)
{
    rd_kafka_ConfigResource_t **res = calloc(n + 1, sizeof(*res));
    size_t nres = 0;
    char errbuf[256], bid[16];
    if (!res) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        ktopic_t *t = producer_topic(k, topics[i]) ? ktopic_find(k, topics[i]) : NULL;
        if (t && t->max_bytes == 0) {
            t->max_bytes = -1; /* asked */
            res[nres++] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topics[i]);
        }
    }
    int32_t broker = -1;
    if (k->broker_max_bytes == 0) {
        k->broker_max_bytes = -1;
        broker = rd_kafka_controllerid(k->producer, timeout_ms);
    }
    if (broker >= 0) {
        snprintf(bid, sizeof(bid), "%d", (int)broker);
        res[nres++] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_BROKER, bid);
    }
    if (nres == 0) {
        free(res);
        return 0;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(k->producer);
    rd_kafka_AdminOptions_t *opt =
        rd_kafka_AdminOptions_new(k->producer, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
    rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, errbuf, sizeof(errbuf));
    rd_kafka_DescribeConfigs(k->producer, res, nres, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    const rd_kafka_DescribeConfigs_result_t *r =
        ev ? rd_kafka_event_DescribeConfigs_result(ev) : NULL;
    int rc = 0;
    if (!r || rd_kafka_event_error(ev)) {
        snprintf(errstr, errlen, "rd_kafka_DescribeConfigs() failed: %s",
                 ev ? rd_kafka_event_error_string(ev) : "no answer in time");
        rc = -1;
    } else {
        size_t cnt;
        const rd_kafka_ConfigResource_t **got = rd_kafka_DescribeConfigs_result_resources(r, &cnt);
        for (size_t i = 0; i < cnt; i++) {
            int is_topic = rd_kafka_ConfigResource_type(got[i]) == RD_KAFKA_RESOURCE_TOPIC;
            const char *name = rd_kafka_ConfigResource_name(got[i]);
            ktopic_t *t = is_topic ? ktopic_find(k, name) : NULL;
            rd_kafka_resp_err_t err = rd_kafka_ConfigResource_error(got[i]);
            if (err) {
                snprintf(errstr, errlen, "describing %s %s: %s", is_topic ? "topic" : "broker",
                         name, rd_kafka_ConfigResource_error_string(got[i]));
                if (t && unknown_topic(err))
                    t->max_bytes = 0; /* asked again once it exists */
                rc = -1;
                continue;
            }
            const char *want = is_topic ? "max.message.bytes" : "message.max.bytes";
            size_t ne;
            const rd_kafka_ConfigEntry_t **e = rd_kafka_ConfigResource_configs(got[i], &ne);
            int64_t v = 0;
            for (size_t x = 0; x < ne && !v; x++)
                if (strcmp(rd_kafka_ConfigEntry_name(e[x]), want) == 0 &&
                    rd_kafka_ConfigEntry_value(e[x]))
                    v = strtoll(rd_kafka_ConfigEntry_value(e[x]), NULL, 10);
            if (v > 0 && is_topic && t)
                t->max_bytes = v;
            else if (v > 0 && !is_topic)
                k->broker_max_bytes = v;
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_ConfigResource_destroy_array(res, nres);
    free(res);
    return rc;
}

int64_t weft_kafka_max_bytes(weft_kafka_t *k, const char *topic)
{
    char v[32];
    if (k->producer_max_bytes == 0 &&
        weft_kafka_producer_setting(k, "message.max.bytes", v, sizeof(v)) == 0)
        k->producer_max_bytes = strtoll(v, NULL, 10);
    int64_t lim = k->producer_max_bytes;
    if (k->broker_max_bytes > 0 && (lim <= 0 || k->broker_max_bytes < lim))
        lim = k->broker_max_bytes;
    ktopic_t *t = ktopic_find(k, topic);
    if (t && t->max_bytes > 0 && (lim <= 0 || t->max_bytes < lim))
        lim = t->max_bytes;
    return lim;
}

int weft_kafka_produce(weft_kafka_t *k, const char *topic, const void *key, size_t key_len,
                       const void *value, size_t len, const weft_header_t *hdrs, size_t n_hdrs,
                       void *msg_opaque, int *retriable, char *errstr, size_t errlen)
{
    *retriable = 0;
    rd_kafka_topic_t *rkt = producer_topic(k, topic);
    if (!rkt) {
        snprintf(errstr, errlen, "no producer topic handle for topic=%s: %s", topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    rd_kafka_headers_t *h = rd_kafka_headers_new(n_hdrs);
    for (size_t i = 0; i < n_hdrs; i++) {
        rd_kafka_header_add(h, hdrs[i].name, -1, hdrs[i].value, (ssize_t)hdrs[i].len);
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        k->producer, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        *retriable = err == RD_KAFKA_RESP_ERR__QUEUE_FULL || unknown_topic(err);
        if (unknown_topic(err))
            unknown_topic_error(errstr, errlen, topic);
        else
            snprintf(errstr, errlen, "rd_kafka_producev() failed topic=%s: %s", topic,
                     rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

void weft_kafka_serve(weft_kafka_t *k)
{
    drain_wake(k);
    rd_kafka_poll(k->producer, 0);
}

int weft_kafka_pause_partition(weft_kafka_t *k, const char *topic, int32_t partition, int pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(k->consumer, l)
                                    : rd_kafka_resume_partitions(k->consumer, l);
    if (!err)
        err = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (err) {
        weft_warn("%s failed topic=%s partition=%d: %s", pause ? "pause" : "resume", topic,
                  (int)partition, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

int weft_kafka_outq(const weft_kafka_t *k)
{
    return rd_kafka_outq_len(k->producer);
}

int weft_kafka_commit(weft_kafka_t *k)
{
    rd_kafka_resp_err_t err = rd_kafka_commit(k->consumer, NULL, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        weft_warn("commit failed: %s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

void weft_kafka_close(weft_kafka_t *k, int timeout_ms)
{
    if (!k || k->closed)
        return;
    k->closed = 1;
    if (k->consumer) {
        weft_kafka_commit(k);
        rd_kafka_consumer_close(k->consumer);
    }
    if (k->producer) {
        rd_kafka_resp_err_t err = rd_kafka_flush(k->producer, timeout_ms);
        if (err)
            weft_warn("producer flush: %d messages not delivered", rd_kafka_outq_len(k->producer));
    }
}

void weft_kafka_destroy(weft_kafka_t *k, int timeout_ms)
{
    if (!k)
        return;
    weft_kafka_close(k, timeout_ms);
    if (k->cq)
        rd_kafka_queue_destroy(k->cq);
    if (k->pq)
        rd_kafka_queue_destroy(k->pq);
    for (size_t b = 0; b < KTOPIC_BUCKETS; b++) {
        for (ktopic_t *t = k->topics[b], *next; t; t = next) {
            next = t->next;
            rd_kafka_topic_destroy(t->rkt);
            free(t);
        }
    }
    if (k->consumer)
        rd_kafka_destroy(k->consumer);
    if (k->producer)
        rd_kafka_destroy(k->producer);
    if (k->wake[0] >= 0)
        close(k->wake[0]);
    if (k->wake[1] >= 0)
        close(k->wake[1]);
    free(k);
}
