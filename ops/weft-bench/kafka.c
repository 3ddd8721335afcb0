/*
 * kafka.c - Kafka clients of the bench: preloading topics, and the result collector thread.
 *
 * Part of weft-bench (ops/weft-bench/main.c says what it measures); runs
 * in the benchmark process, never in weft.
 */
#include "bench.h"

/* ---- Kafka -------------------------------------------------------------- */

rd_kafka_conf_t *conf_new(void)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char err[256];
    if (rd_kafka_conf_set(c, "bootstrap.servers", fx.brokers, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        die("%s", err);
    return c;
}

void conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        die("%s=%s: %s", k, v, err);
}

atomic_long dr_errors;

void preload_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        atomic_fetch_add(&dr_errors, 1);
}

rd_kafka_t *producer_new(int linger_ms, int idempotent,
                         void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *))
{
    rd_kafka_conf_t *c = conf_new();
    char v[32];
    snprintf(v, sizeof(v), "%d", linger_ms);
    conf_set(c, "linger.ms", v);
    conf_set(c, "queue.buffering.max.messages", "1000000");
    conf_set(c, "batch.num.messages", "10000");
    if (idempotent)
        conf_set(c, "enable.idempotence", "true");
    if (dr)
        rd_kafka_conf_set_dr_msg_cb(c, dr);
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (!rk)
        die("producer: %s", err);
    return rk;
}

/* One ~200-byte binary-mode CloudEvent with id PREFIX-SEQ, to partition
 * seq % parts (parts > 0: the preloads spread evenly, so no partition
 * outgrows what the mock broker keeps) or by its key (parts 0). */
void produce_event(rd_kafka_t *rk, const char *topic, int parts, const char *prefix, long seq)
{
    char id[64], key[16], value[256];
    snprintf(id, sizeof(id), "%s-%ld", prefix, seq);
    snprintf(key, sizeof(key), "k%ld", seq % 1024);
    int n = snprintf(value, sizeof(value), "{\"seq\":%ld,\"pad\":\"", seq);
    while (n < 196)
        value[n++] = 'x';
    memcpy(value + n, "\"}", 3);
    n += 2;
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_PARTITION(parts > 0 ? (int32_t)(seq % parts) : RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_VALUE(value, (size_t)n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADER("ce_specversion", "1.0", 3), RD_KAFKA_V_HEADER("ce_id", id, -1),
            RD_KAFKA_V_HEADER("ce_source", "/bench", 6),
            RD_KAFKA_V_HEADER("ce_type", "bench.event", 11),
            RD_KAFKA_V_HEADER("content-type", "application/json", 16), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return;
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            die("produce to %s: %s", topic, rd_kafka_err2str(e));
        rd_kafka_poll(rk, 10);
    }
}

int topic_partitions(rd_kafka_t *rk, const char *topic)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && !md->topics[0].err)
        n = md->topics[0].partition_cnt;
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return n;
}

void preload(const char *topic, long n)
{
    uint64_t t0 = now_us();
    rd_kafka_t *rk = producer_new(20, 0, preload_dr);
    int parts = topic_partitions(rk, topic);
    if (parts < 1)
        die("preloading %s: cannot read its partition count", topic);
    atomic_store(&dr_errors, 0);
    for (long i = 0; i < n; i++) {
        produce_event(rk, topic, parts, "e", i);
        if ((i & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 300000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("preloading %s: flush timed out", topic);
    if (atomic_load(&dr_errors))
        die("preloading %s: %ld messages failed", topic, atomic_load(&dr_errors));
    /* The mock broker trims a partition's oldest messages beyond ~5 MiB
     * and a consumer then starts at the first one left, so a run would
     * wait for results that cannot come: refuse instead. */
    for (int p = 0; p < parts; p++) {
        int64_t lo = 0, hi = 0;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            lo > 0)
            die("preloading %s: the broker trimmed %lld messages of partition %d (the mock "
                "keeps ~5 MiB per partition); use fewer events",
                topic, (long long)lo, p);
    }
    rd_kafka_destroy(rk);
    say("preloaded %ld events into %s in %.1f s", n, topic, (double)(now_us() - t0) / 1e6);
}

/* ---- the result collector: reads a topic from the start, in a thread ---- */

static void *collect_main(void *arg)
{
    collector_t *c = arg;
    rd_kafka_conf_t *conf = conf_new();
    conf_set(conf, "group.id", "weft-bench-collector");
    conf_set(conf, "enable.auto.commit", "false");
    conf_set(conf, "fetch.wait.max.ms", fetch_wait_ms);
    conf_set(conf, "enable.partition.eof", "true");
    char err[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk)
        die("collector: %s", err);
    rd_kafka_poll_set_consumer(rk);
    int parts = topic_partitions(rk, c->topic);
    if (parts <= 0)
        die("collector: no partitions for %s", c->topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int p = 0; p < parts; p++)
        rd_kafka_topic_partition_list_add(l, c->topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    size_t plen = c->lat_prefix ? strlen(c->lat_prefix) : 0;
    char *at_end = calloc((size_t)parts, 1);
    int n_at_end = 0;
    while (!atomic_load(&c->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 20);
        if (!m)
            continue;
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->partition >= 0 &&
                m->partition < parts && !at_end[m->partition]) {
                at_end[m->partition] = 1;
                if (++n_at_end == parts)
                    atomic_store(&c->ready, 1);
            }
            rd_kafka_message_destroy(m);
            continue;
        }
        uint64_t t = now_us();
        if (atomic_fetch_add(&c->count, 1) == 0)
            atomic_store(&c->first_us, t);
        atomic_store(&c->last_us, t);
        rd_kafka_headers_t *h;
        const void *v;
        size_t vl;
        if (c->lat_prefix && rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(h, "ce_weftinputid", &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            vl > plen + 1 && memcmp(v, c->lat_prefix, plen) == 0 &&
            ((const char *)v)[plen] == '-') {
            char num[24];
            size_t k = vl - plen - 1 < sizeof(num) - 1 ? vl - plen - 1 : sizeof(num) - 1;
            memcpy(num, (const char *)v + plen + 1, k);
            num[k] = '\0';
            long seq = atol(num);
            if (seq >= 0 && seq < c->lat_cap) {
                uint64_t pub = atomic_load(&c->pub_us[seq]);
                long i = atomic_load(&c->n_lat);
                if (pub && i < c->lat_cap) {
                    c->lat_us[i] = t - pub;
                    atomic_store(&c->n_lat, i + 1);
                }
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(at_end);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

collector_t *collector_start(const char *topic, const char *lat_prefix, long lat_cap)
{
    collector_t *c = calloc(1, sizeof(*c));
    snprintf(c->topic, sizeof(c->topic), "%s", topic);
    c->lat_prefix = lat_prefix;
    if (lat_prefix) {
        c->lat_cap = lat_cap;
        c->pub_us = calloc((size_t)lat_cap, sizeof(*c->pub_us));
        c->lat_us = calloc((size_t)lat_cap, sizeof(*c->lat_us));
    }
    pthread_create(&c->th, NULL, collect_main, c);
    return c;
}

/* Waits until n results arrived or no result came for idle_ms. */
long collector_wait(collector_t *c, long n, int idle_ms, int max_s)
{
    long last = -1;
    uint64_t last_change = now_us(), start = now_us();
    for (;;) {
        long k = atomic_load(&c->count);
        if (k >= n)
            return k;
        if (k != last) {
            last = k;
            last_change = now_us();
        }
        if (now_us() - last_change > (uint64_t)idle_ms * 1000 ||
            now_us() - start > (uint64_t)max_s * 1000000)
            return k;
        usleep(20000);
    }
}

void collector_stop(collector_t *c)
{
    atomic_store(&c->stop, 1);
    pthread_join(c->th, NULL);
    free((void *)c->pub_us);
    free(c->lat_us);
    free(c);
}
