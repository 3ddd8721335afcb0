/*
 * latency.c - latency: publish time to result arrival, through weft and through a raw passthrough.
 *
 * Part of weft-bench (ops/weft-bench/main.c says what it measures); runs
 * in the benchmark process, never in weft.
 */
#include "bench.h"

/* Publishes at rate events/s for seconds, ids PREFIX-SEQ, and records the
 * latency of each result. */
static void latency_run(const char *in, const char *out, const char *prefix, double rate,
                        int seconds, row_t *r)
{
    long n = (long)(rate * seconds);
    if (n < 1)
        n = 1;
    collector_t *c = collector_start(out, prefix, n);
    /* Above 1,000 events/s the publisher batches for 1 ms, as any producer
     * at that rate would: one produce request per event would cost the
     * mock broker more CPU than weft gets (2 cores for everything). The
     * publish time is still taken per event, before the batching. */
    rd_kafka_t *rk = producer_new(rate > 1000 ? 1 : 0, 0, preload_dr);
    /* Neither client's start-up is the fabric's latency: the collector
     * first reads to the end of its topic, and the publisher sends one
     * untimed event (id "pubwarm-0") so that its broker connection and the
     * topic's metadata are in place. Without this the first events waited
     * up to librdkafka's 1 s topic scan in the publisher (a new producer
     * learns a topic it produces to by name only then), which at 200
     * events/s was 10% of a run and set its p99. */
    produce_event(rk, in, 0, "pubwarm", 0);
    if (rd_kafka_flush(rk, 30000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("latency %s: the publisher's first event was not delivered in 30 s", prefix);
    for (int waited = 0; !atomic_load(&c->ready); waited += 10) {
        if (waited > 30000)
            die("latency %s: the collector did not reach the end of %s in 30 s", prefix, out);
        usleep(10000);
    }
    machine_cpu_t m0 = machine_cpu();
    uint64_t t0 = now_us();
    for (long i = 0; i < n; i++) {
        uint64_t due = t0 + (uint64_t)((double)i * 1e6 / rate);
        uint64_t now = now_us();
        /* Sleep in steps of 1 ms or more: at 22,000 events/s a sleep per
         * event cost the publisher ~22,000 wakeups a second on the cores
         * the run measures. Events due meanwhile go out together; each
         * is stamped when it is actually published. */
        if (due > now)
            usleep((useconds_t)(due - now < 1000 ? 1000 : due - now));
        atomic_store(&c->pub_us[i], now_us());
        produce_event(rk, in, 0, prefix, i);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 30000);
    rd_kafka_destroy(rk);
    long deadline_wait = 0;
    while (atomic_load(&c->n_lat) < n && deadline_wait++ < 1500)
        usleep(20000);
    r->busy = machine_busy_cores(m0);
    long k = atomic_load(&c->n_lat);
    qsort(c->lat_us, (size_t)k, sizeof(uint64_t), cmp_u64);
    r->offered = rate;
    r->lat_n = k;
    r->events = k;
    r->p50 = pct(c->lat_us, (size_t)k, 50);
    r->p99 = pct(c->lat_us, (size_t)k, 99);
    r->p999 = pct(c->lat_us, (size_t)k, 99.9);
    collector_stop(c);
    if (k < n)
        say("warning: %s: %ld of %ld results arrived", prefix, k, n);
    say("latency %s at %.0f events/s: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms (%ld events)", prefix,
        rate, r->p50, r->p99, r->p999, k);
}

/* The latency floor of the broker path without weft: consume, copy the
 * message with ce_weftinputid = ce_id (what the collector keys on), produce
 * it with weft's producer settings, store the offset after its delivery
 * report. Two consumer hops and two produce hops, like a weft event. */
typedef struct ptlat {
    pthread_t th;
    atomic_int stop;
} ptlat_t;

static void ptlat_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        return;
    rd_kafka_t *cons = m->_private;
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t vl;
    /* The source coordinates ride in the copy's x-src header. */
    if (rd_kafka_message_headers((rd_kafka_message_t *)m, &h) ||
        rd_kafka_header_get_last(h, "x-src", &v, &vl) || vl >= 32)
        return;
    char buf[32];
    memcpy(buf, v, vl);
    buf[vl] = '\0';
    int part = 0;
    long long off = 0;
    if (sscanf(buf, "%d:%lld", &part, &off) != 2)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, "bench.ptl.in", part)->offset = off + 1;
    rd_kafka_offsets_store(cons, l);
    rd_kafka_topic_partition_list_destroy(l);
}

static void *ptlat_main(void *arg)
{
    ptlat_t *pl = arg;
    rd_kafka_conf_t *pc = conf_new();
    conf_set(pc, "enable.idempotence", "true");
    conf_set(pc, "linger.ms", "0");
    rd_kafka_conf_set_dr_msg_cb(pc, ptlat_dr);
    rd_kafka_conf_t *cc = passthrough_consumer_conf("weft-bench-ptlat");
    char err[256];
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (!prod || !cons)
        die("latency passthrough clients: %s", err);
    /* A topic handle, as weft produces through: it asks for the topic's
     * metadata at once instead of at librdkafka's next 1 s scan. */
    rd_kafka_topic_t *out = rd_kafka_topic_new(prod, "bench.ptl.out", NULL);
    rd_kafka_poll_set_consumer(cons);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, "bench.ptl.in", RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(cons, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    while (!atomic_load(&pl->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 1);
        rd_kafka_poll(prod, 0);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        rd_kafka_headers_t *h = NULL, *hc = rd_kafka_headers_new(8);
        const void *v;
        size_t vl;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(hc);
            hc = rd_kafka_headers_copy(h);
            if (rd_kafka_header_get_last(h, "ce_id", &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR)
                rd_kafka_header_add(hc, "ce_weftinputid", -1, v, (ssize_t)vl);
        }
        char src[32];
        snprintf(src, sizeof(src), "%d:%lld", (int)m->partition, (long long)m->offset);
        rd_kafka_header_add(hc, "x-src", -1, src, -1);
        if (rd_kafka_producev(prod, RD_KAFKA_V_RKT(out), RD_KAFKA_V_KEY(m->key, m->key_len),
                              RD_KAFKA_V_VALUE(m->payload, m->len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hc),
                              RD_KAFKA_V_OPAQUE(cons),
                              RD_KAFKA_V_END) != RD_KAFKA_RESP_ERR_NO_ERROR)
            rd_kafka_headers_destroy(hc);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_flush(prod, 5000);
    rd_kafka_topic_destroy(out);
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_destroy(prod);
    return NULL;
}

/* A latency run through weft, with the CPU the dispatcher and PostgreSQL
 * spent per event while it ran (idle polling included: at a low rate
 * that is most of it). */
static void latency_weft(pid_t pid, const char *prefix, double rate, row_t *r)
{
    uint64_t cpu0 = proc_cpu_us(pid), pg0 = pg_cpu_us();
    latency_run("bench.lat.in", "bench.lat.out", prefix, rate, opt.lat_seconds, r);
    uint64_t cpu1 = proc_cpu_us(pid), pg1 = pg_cpu_us();
    r->disp_cpu_us = cpu_per_event(cpu0, cpu1, r->events);
    r->pg_cpu_us = cpu_per_event(pg0, pg1, r->events);
}

void run_latency(void)
{
    row_t *so = row_find("weft-so");
    double half = so && so->eps > 0 ? so->eps / 2 : opt.half_rate;
    kafka_run_begin();
    /* The broker path alone first, with the same collector and pacing. */
    ptlat_t pl = {0};
    pthread_create(&pl.th, NULL, ptlat_main, &pl);
    row_t warm = {0};
    latency_run("bench.ptl.in", "bench.ptl.out", "ptwarm", 20, 5, &warm);
    row_t *pt = row_add("latency-floor", "publish -> copy through a raw passthrough, low load");
    latency_run("bench.ptl.in", "bench.ptl.out", "pt", opt.low_rate, opt.lat_seconds, pt);
    if (half > 0) {
        row_t *pth = row_add("floor-half", "publish -> copy through the passthrough, half load");
        latency_run("bench.ptl.in", "bench.ptl.out", "pthi", half, opt.lat_seconds, pth);
    }
    atomic_store(&pl.stop, 1);
    pthread_join(pl.th, NULL);

    pid_t pid = weft_start("latency", "bench-lat");
    /* Warm up: wait for the group join and the pool. */
    latency_run("bench.lat.in", "bench.lat.out", "warm", 20, 5, &warm);
    row_t *lo = row_add("latency-low", "publish -> result through weft, low load");
    latency_weft(pid, "lo", opt.low_rate, lo);
    if (half > 0) {
        row_t *hi =
            row_add("latency-half", so && so->eps > 0 ? "publish -> result, half of weft-so's rate"
                                                      : "publish -> result, at --half-rate");
        pid_t perf = perf_start("latency-half", pid);
        latency_weft(pid, "hi", half, hi);
        perf_stop(perf);
    }
    weft_stop(pid);
}
