/*
 * weft-bench.c - the benchmark behind ops/bench: weft against its ceilings,
 * side by side, in one run, on one private local stack.
 *
 * Runs (each on its own empty Kafka broker - Apache Kafka by default, the
 * mock with WEFT_KAFKA=mock - same partition count, events of ~200 bytes in
 * binary CloudEvents mode, preloaded before the run starts):
 *
 *   ceiling     a raw consume -> produce passthrough without weft: librdkafka
 *               consumer group, idempotent producer, offsets stored after
 *               delivery (once per partition per loop, like weft);
 *   weft-so     weft run, ledger on, the no-op shared object (noop.so);
 *   weft-exec   weft run, ledger on, the no-op exec-runtime program;
 *   fork-exec   consume, fork+exec a no-op process per event (2 at a time),
 *               produce the result;
 *   latency     publish time -> result arrival through weft (noop.so) at a
 *               low paced load and at half weft-so's measured rate (or
 *               --half-rate), after the same two loads through a raw
 *               passthrough (latency-floor, floor-half: the broker path
 *               alone, with the same publisher and collector);
 *   backlog     weft run against a preloaded backlog (default 1M events):
 *               the dispatcher's peak RSS while it works through it.
 *
 * Throughput is measured on the result topic, from the first result to the
 * last (so consumer-group joins and pool starts are not counted), and CPU
 * per event from /proc (utime + stime) of the dispatcher and of every
 * PostgreSQL process of the stack, over the whole run. Each weft run
 * starts with an empty ledger (TRUNCATE) after a CHECKPOINT, so no run
 * pays for the rows, vacuum or checkpoint of the runs before it, and with
 * only its own trigger enabled, so it does not work on what an earlier
 * run left in its topic. The default sizes give every run ~10 s of work
 * or more here; preloads are spread evenly over the partitions.
 * Everything prints as one table, or one JSON object with --json.
 *
 * This is a program that prints figures, not a test: nothing here fails
 * because the machine is slow. Exit codes: 0 done, 1 a run could not
 * complete (stack, weft or broker failure), 2 bad arguments.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <nats/nats.h>

#include "fixture.h"

extern char **environ;

/* ---- options ------------------------------------------------------------ */

static struct {
    int json;
    long n_ceiling;
    long n_weft;
    long n_exec;
    long n_fork;
    long n_backlog;
    long n_js;
    long n_js_weft;
    int pool_size;
    int partitions;
    int low_rate;
    int half_rate;
    int lat_seconds;
    int lat_partitions;
    int backlog_seconds;
    int pairs;
    const char *only;
    const char *perf_dir;
    const char *weft_set_extra;
} opt = {
    /* Each run has at least ~10 s of work on this 2-core machine. */
    .n_ceiling = 1000000,
    .n_weft = 400000,
    .n_exec = 200000,
    .n_fork = 4000,
    .n_backlog = 1000000,
    .n_js = 500000,
    .n_js_weft = 200000,
    .pool_size = 2,
    .partitions = 0,
    .low_rate = 200,
    .lat_seconds = 10,
    .lat_partitions = 4,
    .backlog_seconds = 30,
    .pairs = 3,
};

static fx_t fx;
static char functions_dir[600];
static char bench_topics[1024]; /* the topics, for a fresh broker */
static char broker_desc[128];   /* which broker the table measured */

/* fetch.wait.max.ms of every consumer of the bench (the collector, the
 * passthroughs, and weft's own through weft_set). A real broker answers a
 * fetch as soon as data arrives, so there the setting only bounds idle
 * polling (librdkafka's default, 500 ms); librdkafka's mock cluster instead
 * holds every empty fetch for the full MaxWait (rdkafka_mock_handlers.c:
 * "If there was no data, delay up to MaxWait"), so a message produced
 * meanwhile waits up to this long at each consumer it passes. 1 ms keeps
 * that artifact out of the mock's latency figures at the cost of ~1,000
 * empty fetches per second per idle consumer, which the mock answers
 * cheaply (and Apache Kafka's JVM would not). Set in main. */
static const char *fetch_wait_ms = "500";
static char weft_set[256];

static int on_mock(void)
{
    return strcmp(fx.kafka_kind, "mock") == 0;
}

/* ---- small helpers ------------------------------------------------------ */

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "bench: %s", prefix);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("error: ", fmt, ap);
    va_end(ap);
    fx_down(&fx);
    exit(1);
}

/* From /proc/PID/stat: the parent (ppid, may be NULL) and utime + stime in
 * microseconds (cpu_us, may be NULL); with reaped, also the CPU of its
 * children that have exited and been waited for (cutime + cstime). 0, or
 * -1 when pid is gone. */
static int proc_stat_ex(pid_t pid, pid_t *ppid, uint64_t *cpu_us, int reaped)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the comm: state(3) ppid(4) ... utime(14) stime(15). */
    char *p = strrchr(buf, ')');
    int pp = -1;
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                     &pp, &ut, &st, &cut, &cst) != 5)
        return -1;
    if (ppid)
        *ppid = pp;
    if (!reaped)
        cut = cst = 0;
    if (cpu_us)
        *cpu_us = (ut + st + cut + cst) * 1000000ull / (unsigned long long)sysconf(_SC_CLK_TCK);
    return 0;
}

static int proc_stat(pid_t pid, pid_t *ppid, uint64_t *cpu_us)
{
    return proc_stat_ex(pid, ppid, cpu_us, 0);
}

static uint64_t proc_cpu_us(pid_t pid)
{
    uint64_t us = 0;
    return proc_stat(pid, NULL, &us) == 0 ? us : 0;
}

/* The whole machine's CPU time from /proc/stat's first line, in clock
 * ticks: busy (everything but idle and iowait) and in all. */
typedef struct {
    uint64_t busy, all;
} machine_cpu_t;

static machine_cpu_t machine_cpu(void)
{
    machine_cpu_t m = {0, 0};
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                    &v[4], &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            m.all += v[i];
        m.busy = m.all - v[3] - v[4];
    }
    if (f)
        fclose(f);
    return m;
}

/* Cores kept busy since `from`, on average, by every process together. */
static double machine_busy_cores(machine_cpu_t from)
{
    machine_cpu_t to = machine_cpu();
    if (to.all <= from.all)
        return NAN;
    return (double)(to.busy - from.busy) / (double)(to.all - from.all) *
           (double)sysconf(_SC_NPROCESSORS_ONLN);
}

/* CPU of the stack's PostgreSQL: the postmaster, its live children and
 * the children it has reaped (a backend that disconnected, an autovacuum
 * worker that finished), so the sum never goes down between two reads. */
static uint64_t pg_cpu_us(void)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/postgres.pid", fx.state_dir);
    FILE *f = fopen(path, "r");
    int pm = 0;
    if (!f || fscanf(f, "%d", &pm) != 1) {
        if (f)
            fclose(f);
        return 0;
    }
    fclose(f);
    uint64_t total = 0;
    if (proc_stat_ex(pm, NULL, &total, 1) != 0)
        total = 0;
    DIR *dir = opendir("/proc");
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL) {
        pid_t pid = (pid_t)atoi(de->d_name), pp;
        uint64_t us;
        if (pid > 0 && proc_stat(pid, &pp, &us) == 0 && pp == pm)
            total += us;
    }
    if (dir)
        closedir(dir);
    return total;
}

/* CPU microseconds per event between two readings; NAN (printed "-")
 * when there is nothing to divide or the readings went backwards. */
static double cpu_per_event(uint64_t before, uint64_t after, long events)
{
    if (events <= 0 || after < before)
        return NAN;
    return (double)(after - before) / (double)events;
}

/* VmHWM or VmRSS of pid in KiB. */
static long proc_mem_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            v = atol(line + fl + 1);
    if (f)
        fclose(f);
    return v;
}

/* Gives the heap the bench no longer uses back and starts its own peak
 * RSS (VmHWM) over from there, so the ceiling's RSS is the passthrough's,
 * not the peak of the preload and of every run the bench did before it. */
static void reset_own_peak_rss(void)
{
    malloc_trim(0);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f || fputs("5", f) < 0)
        say("warning: cannot reset the peak RSS: %s", strerror(errno));
    if (f)
        fclose(f);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    if (i > 0)
        i--;
    if (i >= n)
        i = n - 1;
    return (double)sorted[i] / 1000.0;
}

/* ---- Kafka -------------------------------------------------------------- */

static rd_kafka_conf_t *conf_new(void)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char err[256];
    if (rd_kafka_conf_set(c, "bootstrap.servers", fx.brokers, err, sizeof(err)) !=
        RD_KAFKA_CONF_OK)
        die("%s", err);
    return c;
}

static void conf_set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char err[256];
    if (rd_kafka_conf_set(c, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        die("%s=%s: %s", k, v, err);
}

static atomic_long dr_errors;

static void preload_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        atomic_fetch_add(&dr_errors, 1);
}

static rd_kafka_t *producer_new(int linger_ms, int idempotent, void (*dr)(rd_kafka_t *,
                                                                        const rd_kafka_message_t *,
                                                                        void *))
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
static void produce_event(rd_kafka_t *rk, const char *topic, int parts, const char *prefix,
                          long seq)
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

static int topic_partitions(rd_kafka_t *rk, const char *topic)
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

static void preload(const char *topic, long n)
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

typedef struct collector {
    pthread_t th;
    char topic[128];
    atomic_int stop;
    atomic_int ready; /* every partition read to its end once */
    atomic_long count;
    atomic_uint_fast64_t first_us, last_us;
    /* latency: publish times by sequence, per id prefix */
    const char *lat_prefix;
    _Atomic uint64_t *pub_us;
    uint64_t *lat_us; /* filled by the thread: arrival - publish */
    atomic_long n_lat;
    long lat_cap;
} collector_t;

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
            rd_kafka_header_get_last(h, "ce_weftinputid", &v, &vl) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
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

static collector_t *collector_start(const char *topic, const char *lat_prefix, long lat_cap)
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
static long collector_wait(collector_t *c, long n, int idle_ms, int max_s)
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

static void collector_stop(collector_t *c)
{
    atomic_store(&c->stop, 1);
    pthread_join(c->th, NULL);
    free((void *)c->pub_us);
    free(c->lat_us);
    free(c);
}

/* ---- results -------------------------------------------------------------- */

typedef struct row {
    const char *name;
    const char *what;
    long events;
    double seconds;
    double eps;
    double disp_cpu_us; /* per event; the passthrough's own CPU for the ceiling */
    double pg_cpu_us;
    long rss_kib;
    double p50, p99, p999; /* ms; NAN when not measured */
    double offered;        /* latency runs: offered events/s */
    long lat_n;
    double busy; /* latency runs: cores busy on the whole machine; NAN when not measured */
} row_t;

static row_t rows[16];
static int n_rows;

static void row_init(row_t *r, const char *name, const char *what)
{
    memset(r, 0, sizeof(*r));
    r->name = name;
    r->what = what;
    r->p50 = r->p99 = r->p999 = NAN;
    r->disp_cpu_us = r->pg_cpu_us = NAN;
    r->rss_kib = -1;
    r->busy = NAN;
}

static row_t *row_add(const char *name, const char *what)
{
    row_t *r = &rows[n_rows++];
    row_init(r, name, what);
    return r;
}

static row_t *row_find(const char *name)
{
    for (int i = 0; i < n_rows; i++)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    return NULL;
}

static int want(const char *name)
{
    if (!opt.only)
        return 1;
    char buf[256];
    snprintf(buf, sizeof(buf), ",%s,", opt.only);
    char needle[64];
    snprintf(needle, sizeof(needle), ",%s,", name);
    return strstr(buf, needle) != NULL;
}

/* ---- run 1: the passthrough ceiling --------------------------------------- */

typedef struct pt {
    rd_kafka_t *consumer;
    long delivered;
    int64_t *done_off; /* per partition: highest delivered offset + 1 */
    int parts;
    uint64_t last_us;
} pt_t;

static void pt_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    pt_t *pt = opaque;
    if (m->err)
        die("passthrough delivery failed: %s", rd_kafka_err2str(m->err));
    intptr_t tag = (intptr_t)m->_private;
    int part = (int)(tag >> 40);
    int64_t off = tag & ((1ll << 40) - 1);
    if (part < pt->parts && off + 1 > pt->done_off[part])
        pt->done_off[part] = off + 1;
    pt->delivered++;
    pt->last_us = now_us();
}

/* A passthrough's consumer: its own group, offsets stored only by hand
 * (after the copy's delivery report), the bench's fetch wait. */
static rd_kafka_conf_t *passthrough_consumer_conf(const char *group)
{
    rd_kafka_conf_t *cc = conf_new();
    conf_set(cc, "group.id", group);
    conf_set(cc, "enable.auto.offset.store", "false");
    conf_set(cc, "auto.offset.reset", "earliest");
    conf_set(cc, "session.timeout.ms", "6000");
    conf_set(cc, "heartbeat.interval.ms", "500");
    conf_set(cc, "fetch.wait.max.ms", fetch_wait_ms);
    return cc;
}

/* Every Kafka run after the first starts on a new, empty broker with the
 * same topics (ops/stack kafka-down deletes Apache Kafka's data). The mock
 * keeps every message it was sent (up to ~5 MiB a partition): after the
 * ceiling run it held ~600 MiB, and this virtual machine's kernel memory
 * monitor (kdamond) then stalled it for 20-30 ms every ~0.54 s, which
 * became the low-load p99 of every later run (the floor's 4 -> 15-20 ms).
 * Apache Kafka keeps them on disk, but its log segments, page cache and
 * consumer groups would still carry one run's traces into the next. */
static void kafka_run_begin(void)
{
    static int kafka_runs;
    if (kafka_runs++ == 0)
        return;
    uint64_t t0 = now_us();
    if (fx_kafka_fresh(&fx, bench_topics) != 0)
        die("could not replace the Kafka broker (see %s/stack.out)", fx.state_dir);
    say("a fresh %s broker at %s in %.1f s", fx.kafka_kind, fx.brokers,
        (double)(now_us() - t0) / 1e6);
}

static void run_ceiling(row_t *r)
{
    const char *in = "bench.pt.in", *out = "bench.pt.out";
    long n = opt.n_ceiling;
    kafka_run_begin();
    preload(in, n);
    reset_own_peak_rss();
    pt_t pt = {0};
    rd_kafka_conf_t *pc = conf_new();
    conf_set(pc, "enable.idempotence", "true");
    conf_set(pc, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_dr_msg_cb(pc, pt_dr);
    rd_kafka_conf_set_opaque(pc, &pt);
    char err[256];
    rd_kafka_t *prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    rd_kafka_conf_t *cc = passthrough_consumer_conf("weft-bench-passthrough");
    /* The same prefetch bound weft's dispatcher runs with. */
    conf_set(cc, "queued.max.messages.kbytes", "16384");
    rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (!prod || !cons)
        die("passthrough clients: %s", err);
    rd_kafka_poll_set_consumer(cons);
    pt.consumer = cons;
    pt.parts = topic_partitions(cons, in);
    pt.done_off = calloc((size_t)pt.parts, sizeof(int64_t));
    int64_t *stored = calloc((size_t)pt.parts, sizeof(int64_t));
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(cons, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    uint64_t cpu0 = 0, first = 0, pg0 = pg_cpu_us();
    long consumed = 0;
    uint64_t deadline = now_us() + 600ull * 1000000;
    while (pt.delivered < n && now_us() < deadline) {
        for (int i = 0; i < 10000; i++) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, i == 0 ? 5 : 0);
            if (!m)
                break;
            if (m->err) {
                rd_kafka_message_destroy(m);
                continue;
            }
            if (!first) {
                first = now_us();
                struct rusage ru;
                getrusage(RUSAGE_SELF, &ru);
                cpu0 = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
                       (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
            }
            rd_kafka_headers_t *h = NULL;
            rd_kafka_headers_t *hc = NULL;
            if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
                hc = rd_kafka_headers_copy(h);
            intptr_t tag = ((intptr_t)m->partition << 40) | (intptr_t)m->offset;
            for (;;) {
                rd_kafka_resp_err_t e = rd_kafka_producev(
                    prod, RD_KAFKA_V_TOPIC(out), RD_KAFKA_V_KEY(m->key, m->key_len),
                    RD_KAFKA_V_VALUE(m->payload, m->len),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hc),
                    RD_KAFKA_V_OPAQUE((void *)tag), RD_KAFKA_V_END);
                if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                    break;
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    die("passthrough produce: %s", rd_kafka_err2str(e));
                rd_kafka_poll(prod, 5);
            }
            consumed++;
            rd_kafka_message_destroy(m);
        }
        rd_kafka_poll(prod, 0);
        /* Store each partition's delivered position once per loop. */
        rd_kafka_topic_partition_list_t *l = NULL;
        for (int p = 0; p < pt.parts; p++) {
            if (pt.done_off[p] > stored[p]) {
                if (!l)
                    l = rd_kafka_topic_partition_list_new(16);
                rd_kafka_topic_partition_list_add(l, in, p)->offset = pt.done_off[p];
                stored[p] = pt.done_off[p];
            }
        }
        if (l) {
            rd_kafka_offsets_store(cons, l);
            rd_kafka_topic_partition_list_destroy(l);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t cpu1 = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
                    (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
    uint64_t pg1 = pg_cpu_us();
    r->events = pt.delivered;
    r->seconds = (double)(pt.last_us - first) / 1e6;
    r->eps = r->seconds > 0 ? (double)pt.delivered / r->seconds : 0;
    r->disp_cpu_us = (double)(cpu1 - cpu0) / (double)pt.delivered;
    r->pg_cpu_us = cpu_per_event(pg0, pg1, pt.delivered);
    r->rss_kib = proc_mem_kib(getpid(), "VmHWM");
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_flush(prod, 10000);
    rd_kafka_destroy(prod);
    free(pt.done_off);
    free(stored);
    if (pt.delivered < n)
        die("passthrough delivered only %ld of %ld", pt.delivered, n);
    say("ceiling: %ld events in %.2f s = %.0f events/s", r->events, r->seconds, r->eps);
}

/* ---- runs 2, 3 and the backlog: weft run ---------------------------------- */

/* Every weft run starts from the same state: an empty ledger and a fresh
 * checkpoint. Otherwise a run inherits the rows of the runs before it
 * (over 1.5M after the backlog), an autovacuum of them and a checkpoint's
 * full-page writes, and its figures depend on its place in the order
 * (weft-js, last, measured 129 us of PostgreSQL CPU per event after the
 * others against ~28 alone). */
static void fresh_ledger(void)
{
    char *a = fx_sql(&fx, "TRUNCATE weft.ledger, weft.dead_letters");
    char *b = a ? fx_sql(&fx, "CHECKPOINT") : NULL;
    if (!a || !b)
        say("warning: could not empty the ledger before the run");
    free(a);
    free(b);
}

/* Only the run's own trigger is enabled: a run that ends with events
 * left in its topic (the backlog, a latency load weft did not keep up
 * with) must not hand them to the next run's dispatcher, which would
 * work on them beside its own (measured: weft-js at the end of a full
 * run took 123 us of dispatcher CPU per event, 42 alone). */
static void only_trigger(const char *trigger)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "UPDATE weft.triggers SET enabled = (name = '%s')", trigger);
    char *r = fx_sql(&fx, sql);
    if (!r)
        die("cannot enable only trigger %s", trigger);
    free(r);
}

static pid_t weft_start(const char *log, const char *trigger)
{
    only_trigger(trigger);
    fresh_ledger();
    char set[2048];
    snprintf(set, sizeof(set), "%s%s%s", weft_set, opt.weft_set_extra ? ";" : "",
             opt.weft_set_extra ? opt.weft_set_extra : "");
    pid_t pid = fx_run_start(&fx, log, set);
    if (pid <= 0)
        die("cannot start weft run");
    /* A setting weft refuses (a bad --set, say) ends it at once: say so
     * with its own words instead of waiting for results that cannot come. */
    for (int i = 0; i < 20; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            char path[700], line[1024], last[1024] = "";
            snprintf(path, sizeof(path), "%s/%s", fx.state_dir, log);
            FILE *f = fopen(path, "r");
            while (f && fgets(line, sizeof(line), f))
                if (strstr(line, " error "))
                    snprintf(last, sizeof(last), "%s", line);
            if (f)
                fclose(f);
            die("weft run for %s exited with %d at start: %s", log,
                WIFEXITED(st) ? WEXITSTATUS(st) : -1, last[0] ? last : "(no error logged)\n");
        }
        usleep(50000);
    }
    return pid;
}

static void weft_stop(pid_t pid)
{
    int rc = fx_run_stop(pid, 30000);
    if (rc != 0)
        say("warning: weft run exited with %d (see %s)", rc, fx.state_dir);
}

/* With --perf DIR: `perf record -g` of the dispatcher into DIR/RUN.perf.data
 * for the length of a run (`perf report -i FILE` to read it). */
static pid_t perf_start(const char *run, pid_t target)
{
    if (!opt.perf_dir)
        return 0;
    char out[700], pidarg[16];
    snprintf(out, sizeof(out), "%s/%s.perf.data", opt.perf_dir, run);
    snprintf(pidarg, sizeof(pidarg), "%d", (int)target);
    char *argv[] = {"perf", "record", "-q", "-g", "-F", "499", "-p", pidarg, "-o", out, NULL};
    pid_t pid;
    if (posix_spawnp(&pid, "perf", NULL, NULL, argv, environ) != 0) {
        say("warning: cannot start perf");
        return 0;
    }
    say("perf record of the dispatcher -> %s", out);
    return pid;
}

static void perf_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGINT);
    int st;
    waitpid(pid, &st, 0);
}

/* One weft run into r, logged as log (and recorded by --perf as log when
 * perf is set). */
static void run_weft(row_t *r, const char *log, int perf_it, const char *trigger, const char *in,
                     const char *out, long n)
{
    const char *name = r->name;
    kafka_run_begin();
    preload(in, n);
    collector_t *c = collector_start(out, NULL, 0);
    uint64_t pg0 = pg_cpu_us();
    pid_t pid = weft_start(log, trigger);
    pid_t perf = perf_it ? perf_start(log, pid) : 0;
    long got = collector_wait(c, n, 30000, 1800);
    perf_stop(perf);
    uint64_t cpu = proc_cpu_us(pid), pg1 = pg_cpu_us();
    long rss = proc_mem_kib(pid, "VmHWM");
    r->events = got;
    r->seconds = (double)(atomic_load(&c->last_us) - atomic_load(&c->first_us)) / 1e6;
    r->eps = r->seconds > 0 ? (double)(got - 1) / r->seconds : 0;
    r->disp_cpu_us = (double)cpu / (double)(got ? got : 1);
    r->pg_cpu_us = cpu_per_event(pg0, pg1, got);
    r->rss_kib = rss;
    weft_stop(pid);
    collector_stop(c);
    if (got < n)
        die("%s: only %ld of %ld results arrived", name, got, n);
    say("%s: %ld events in %.2f s = %.0f events/s", name, got, r->seconds, r->eps);
}

/* ---- runs 1 and 2, in interleaved pairs ---------------------------------- */

#define MAX_PAIRS 9
static row_t pair_ceil[MAX_PAIRS], pair_so[MAX_PAIRS];
static int n_pairs;

/* Both runs of a pair are wanted, so they run in opt.pairs pairs. */
static int paired(void)
{
    return want("ceiling") && want("weft-so");
}

static double pair_ratio(int i)
{
    return pair_ceil[i].eps > 0 ? pair_so[i].eps / pair_ceil[i].eps : 0;
}

/* This machine's speed drifts by tens of percent from one run to the next
 * (the ceiling measured 137,565 to 193,777 events/s in three full runs of
 * one day), so a ratio of one ceiling run and one weft run is as noisy as
 * either. With both runs wanted they go in --pairs interleaved pairs, each
 * run on a fresh broker; the table shows the pair with the median ratio
 * and lists every pair's. */
static void run_ceiling_and_weft_so(void)
{
    int n = paired() ? opt.pairs : 1;
    for (int i = 0; i < n; i++) {
        char log[32];
        if (i == 0)
            snprintf(log, sizeof(log), "weft-so");
        else
            snprintf(log, sizeof(log), "weft-so.%d", i + 1);
        row_init(&pair_ceil[i], "ceiling", "raw consume -> produce passthrough, no weft");
        row_init(&pair_so[i], "weft-so", "weft run, ledger on, no-op shared object (noop.so)");
        if (want("ceiling"))
            run_ceiling(&pair_ceil[i]);
        if (want("weft-so"))
            run_weft(&pair_so[i], log, i == 0, "bench-so", "bench.so.in", "bench.so.out",
                     opt.n_weft);
        n_pairs++;
        if (paired())
            say("pair %d of %d: weft-so / ceiling = %.3fx", i + 1, n, pair_ratio(i));
    }
    int order[MAX_PAIRS];
    for (int i = 0; i < n_pairs; i++) {
        int j = i;
        for (; j > 0 && pair_ratio(order[j - 1]) > pair_ratio(i); j--)
            order[j] = order[j - 1];
        order[j] = i;
    }
    int m = order[(n_pairs - 1) / 2];
    if (want("ceiling"))
        rows[n_rows++] = pair_ceil[m];
    if (want("weft-so"))
        rows[n_rows++] = pair_so[m];
}

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
    say("latency %s at %.0f events/s: p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms (%ld events)",
        prefix, rate, r->p50, r->p99, r->p999, k);
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

static void run_latency(void)
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
        row_t *hi = row_add("latency-half", so && so->eps > 0
                                                ? "publish -> result, half of weft-so's rate"
                                                : "publish -> result, at --half-rate");
        pid_t perf = perf_start("latency-half", pid);
        latency_weft(pid, "hi", half, hi);
        perf_stop(perf);
    }
    weft_stop(pid);
}

static void run_backlog(void)
{
    const char *in = "bench.bl.in";
    kafka_run_begin();
    preload(in, opt.n_backlog);
    collector_t *c = collector_start("bench.bl.out", NULL, 0);
    pid_t pid = weft_start("backlog", "bench-bl");
    long peak_rss = 0;
    uint64_t end = now_us() + (uint64_t)opt.backlog_seconds * 1000000;
    while (now_us() < end && atomic_load(&c->count) < opt.n_backlog) {
        long rss = proc_mem_kib(pid, "VmRSS");
        if (rss > peak_rss)
            peak_rss = rss;
        usleep(100000);
    }
    long hwm = proc_mem_kib(pid, "VmHWM");
    row_t *r = row_add("backlog", "weft run against a preloaded backlog: peak RSS");
    r->events = atomic_load(&c->count);
    r->seconds = opt.backlog_seconds;
    r->rss_kib = hwm > peak_rss ? hwm : peak_rss;
    weft_stop(pid);
    collector_stop(c);
    say("backlog: %ld events waiting, %ld processed in %d s, dispatcher peak RSS %.1f MiB",
        opt.n_backlog, r->events, opt.backlog_seconds, (double)r->rss_kib / 1024.0);
}

/* ---- run 4: fork+exec per event -------------------------------------------- */

static void run_fork(void)
{
    const char *in = "bench.fork.in", *out = "bench.fork.out";
    long n = opt.n_fork;
    kafka_run_begin();
    preload(in, n);
    char prog[700];
    snprintf(prog, sizeof(prog), "%s/weft-bench-noop", fx.bin_dir);
    if (access(prog, X_OK) != 0)
        die("%s is missing (build weft-bench-noop)", prog);
    rd_kafka_conf_t *cc = conf_new();
    conf_set(cc, "group.id", "weft-bench-fork");
    conf_set(cc, "auto.offset.reset", "earliest");
    conf_set(cc, "session.timeout.ms", "6000");
    conf_set(cc, "heartbeat.interval.ms", "500");
    char err[256];
    rd_kafka_t *cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    rd_kafka_t *prod = producer_new(5, 1, preload_dr);
    rd_kafka_poll_set_consumer(cons);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, in, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(cons, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    long done = 0;
    uint64_t first = 0;
    pid_t slots[2] = {0, 0};
    rd_kafka_message_t *held[2] = {NULL, NULL};
    while (done < n) {
        for (int s = 0; s < 2; s++) {
            if (slots[s])
                continue;
            rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, 10);
            if (!m)
                continue;
            if (m->err) {
                rd_kafka_message_destroy(m);
                continue;
            }
            if (!first)
                first = now_us();
            int fds[2];
            if (pipe(fds) != 0)
                die("pipe: %s", strerror(errno));
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
            posix_spawn_file_actions_addclose(&fa, fds[1]);
            char *argv[] = {prog, NULL};
            int rc = posix_spawn(&slots[s], prog, &fa, NULL, argv, environ);
            posix_spawn_file_actions_destroy(&fa);
            close(fds[0]);
            if (rc != 0)
                die("posix_spawn: %s", strerror(rc));
            ssize_t w = write(fds[1], m->payload, m->len);
            (void)w;
            close(fds[1]);
            held[s] = m;
        }
        int st;
        pid_t p = waitpid(-1, &st, 0);
        for (int s = 0; s < 2; s++) {
            if (p > 0 && slots[s] == p) {
                rd_kafka_message_t *m = held[s];
                rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(out), RD_KAFKA_V_KEY(m->key, m->key_len),
                                  RD_KAFKA_V_VALUE(m->payload, m->len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
                rd_kafka_message_destroy(m);
                held[s] = NULL;
                slots[s] = 0;
                done++;
            }
        }
        rd_kafka_poll(prod, 0);
    }
    rd_kafka_flush(prod, 30000);
    uint64_t last = now_us();
    row_t *r = row_add("fork-exec", "consume, fork+exec a no-op process per event, produce");
    r->events = done;
    r->seconds = (double)(last - first) / 1e6;
    r->eps = (double)done / r->seconds;
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_destroy(prod);
    say("fork-exec: %ld events in %.2f s = %.0f events/s", done, r->seconds, r->eps);
}

/* ---- run 5: JetStream ------------------------------------------------------ */

static natsConnection *js_connect(jsCtx **js)
{
    natsConnection *nc = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    /* With 4,096 unacknowledged a publish waits for an ack, by default
     * only 200 ms: nats-server syncing its file store on a busy machine
     * took longer once and ended a full run in the JetStream preload. */
    jo.PublishAsync.StallWait = 30000;
    if (natsConnection_ConnectTo(&nc, fx.nats) != NATS_OK ||
        natsConnection_JetStream(js, nc, &jo) != NATS_OK)
        die("cannot connect to nats-server at %s: %s", fx.nats, nats_GetLastError(NULL));
    return nc;
}

static void js_stream(jsCtx *js, const char *name, const char *subject)
{
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    const char *subs[1] = {subject};
    cfg.Subjects = subs;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    if (js_AddStream(&si, js, &cfg, NULL, &jerr) != NATS_OK)
        die("creating stream %s: %s (%d)", name, nats_GetLastError(NULL), (int)jerr);
    jsStreamInfo_Destroy(si);
}

/* One ~200-byte binary-mode CloudEvent over NATS: ce- headers. */
static void js_publish_event(jsCtx *js, const char *subject, const char *prefix, long seq)
{
    char id[64], value[256];
    snprintf(id, sizeof(id), "%s-%ld", prefix, seq);
    int n = snprintf(value, sizeof(value), "{\"seq\":%ld,\"pad\":\"", seq);
    while (n < 196)
        value[n++] = 'x';
    memcpy(value + n, "\"}", 3);
    n += 2;
    natsMsg *m = NULL;
    if (natsMsg_Create(&m, subject, NULL, value, n) != NATS_OK ||
        natsMsgHeader_Set(m, "ce-specversion", "1.0") != NATS_OK ||
        natsMsgHeader_Set(m, "ce-id", id) != NATS_OK ||
        natsMsgHeader_Set(m, "ce-source", "/bench") != NATS_OK ||
        natsMsgHeader_Set(m, "ce-type", "bench.event") != NATS_OK ||
        natsMsgHeader_Set(m, "content-type", "application/json") != NATS_OK ||
        natsMsgHeader_Set(m, "Nats-Msg-Id", id) != NATS_OK)
        die("building a NATS message: %s", nats_GetLastError(NULL));
    if (js_PublishMsgAsync(js, &m, NULL) != NATS_OK)
        die("publishing to %s: %s", subject, nats_GetLastError(NULL));
}

static void js_preload(jsCtx *js, const char *subject, long n)
{
    uint64_t t0 = now_us();
    for (long i = 0; i < n; i++)
        js_publish_event(js, subject, "e", i);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 120000;
    if (js_PublishAsyncComplete(js, &po) != NATS_OK)
        die("preloading %s: %s", subject, nats_GetLastError(NULL));
    natsMsgList pending = {0};
    if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK && pending.Count > 0)
        die("preloading %s: %d messages not acknowledged", subject, pending.Count);
    natsMsgList_Destroy(&pending);
    say("preloaded %ld events into JetStream subject %s in %.1f s", n, subject,
        (double)(now_us() - t0) / 1e6);
}

/* The JetStream ceiling: a durable pull consumer fetching batches, each
 * message republished (headers copied, Nats-Msg-Id = ce-id) with async
 * publishes, the batch's PubAcks awaited, then each source message acked. */
static void run_js_ceiling(void)
{
    long n = opt.n_js;
    jsCtx *js = NULL;
    natsConnection *nc = js_connect(&js);
    js_stream(js, "BENCH_PT_IN", "bench.jspt.in");
    js_stream(js, "BENCH_PT_OUT", "bench.jspt.out");
    js_preload(js, "bench.jspt.in", n);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "BENCH_PT_IN";
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.MaxAckPending = 10000;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    if (js_PullSubscribe(&sub, js, "bench.jspt.in", "bench-pt", NULL, &so, &jerr) != NATS_OK)
        die("pull subscribe: %s (%d)", nats_GetLastError(NULL), (int)jerr);
    long done = 0;
    uint64_t first = 0, last = 0;
    uint64_t cpu0 = 0;
    uint64_t pg0 = pg_cpu_us();
    uint64_t deadline = now_us() + 600ull * 1000000;
    while (done < n && now_us() < deadline) {
        natsMsgList list = {0};
        natsStatus st = natsSubscription_Fetch(&list, sub, 512, 1000, &jerr);
        if (st == NATS_TIMEOUT)
            continue;
        if (st != NATS_OK)
            die("fetch: %s", nats_GetLastError(NULL));
        if (!first) {
            first = now_us();
            struct rusage ru;
            getrusage(RUSAGE_SELF, &ru);
            cpu0 = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
                   (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
        }
        for (int i = 0; i < list.Count; i++) {
            natsMsg *in = list.Msgs[i];
            natsMsg *out = NULL;
            if (natsMsg_Create(&out, "bench.jspt.out", NULL, natsMsg_GetData(in),
                               natsMsg_GetDataLength(in)) != NATS_OK)
                die("natsMsg_Create: %s", nats_GetLastError(NULL));
            const char **keys = NULL;
            int nk = 0;
            if (natsMsgHeader_Keys(in, &keys, &nk) == NATS_OK) {
                for (int k = 0; k < nk; k++) {
                    const char *v = NULL;
                    if (natsMsgHeader_Get(in, keys[k], &v) == NATS_OK && v)
                        natsMsgHeader_Set(out, keys[k], v);
                }
                free((void *)keys);
            }
            if (js_PublishMsgAsync(js, &out, NULL) != NATS_OK)
                die("publish: %s", nats_GetLastError(NULL));
        }
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = 30000;
        if (js_PublishAsyncComplete(js, &po) != NATS_OK)
            die("waiting for PubAcks: %s", nats_GetLastError(NULL));
        for (int i = 0; i < list.Count; i++)
            if (natsMsg_Ack(list.Msgs[i], NULL) != NATS_OK)
                die("ack: %s", nats_GetLastError(NULL));
        done += list.Count;
        last = now_us();
        natsMsgList_Destroy(&list);
    }
    natsConnection_Flush(nc);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint64_t cpu1 = (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
                    (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
    row_t *r = row_add("js-ceiling", "JetStream pull -> publish (PubAck) -> ack passthrough");
    r->events = done;
    r->seconds = (double)(last - first) / 1e6;
    r->eps = r->seconds > 0 ? (double)done / r->seconds : 0;
    r->disp_cpu_us = (double)(cpu1 - cpu0) / (double)(done ? done : 1);
    r->pg_cpu_us = cpu_per_event(pg0, pg_cpu_us(), done);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (done < n)
        die("JetStream passthrough handled only %ld of %ld", done, n);
    say("js-ceiling: %ld events in %.2f s = %.0f events/s", done, r->seconds, r->eps);
}

/* weft on JetStream: a jetstream trigger (durable pull consumer, results
 * published with Nats-Msg-Id and PubAck awaited, AckSync after that). The
 * results are counted by a core NATS subscription on the result subject. */
typedef struct js_count {
    atomic_long n;
    atomic_uint_fast64_t first_us, last_us;
} js_count_t;

static void js_count_cb(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    js_count_t *c = closure;
    uint64_t t = now_us();
    if (atomic_fetch_add(&c->n, 1) == 0)
        atomic_store(&c->first_us, t);
    atomic_store(&c->last_us, t);
    natsMsg_Destroy(msg);
}

static void run_weft_js(void)
{
    long n = opt.n_js_weft;
    jsCtx *js = NULL;
    natsConnection *nc = js_connect(&js);
    js_preload(js, "bench.js.in", n);
    js_count_t cnt = {0};
    natsSubscription *sub = NULL;
    if (natsConnection_Subscribe(&sub, nc, "bench.jsout.results", js_count_cb, &cnt) != NATS_OK ||
        natsSubscription_SetPendingLimits(sub, -1, -1) != NATS_OK)
        die("subscribing to bench.jsout.results: %s", nats_GetLastError(NULL));
    uint64_t pg0 = pg_cpu_us();
    pid_t pid = weft_start("weft-js", "bench-js");
    pid_t perf = perf_start("weft-js", pid);
    long last = -1;
    uint64_t last_change = now_us();
    while (atomic_load(&cnt.n) < n && now_us() - last_change < 30000000ull) {
        long k = atomic_load(&cnt.n);
        if (k != last) {
            last = k;
            last_change = now_us();
        }
        usleep(20000);
    }
    perf_stop(perf);
    long got = atomic_load(&cnt.n);
    uint64_t cpu = proc_cpu_us(pid), pg1 = pg_cpu_us();
    row_t *r = row_add("weft-js", "weft run on JetStream, ledger on, noop.so");
    r->events = got;
    r->seconds = (double)(atomic_load(&cnt.last_us) - atomic_load(&cnt.first_us)) / 1e6;
    r->eps = r->seconds > 0 ? (double)(got - 1) / r->seconds : 0;
    r->disp_cpu_us = (double)cpu / (double)(got ? got : 1);
    r->pg_cpu_us = cpu_per_event(pg0, pg1, got);
    r->rss_kib = proc_mem_kib(pid, "VmHWM");
    weft_stop(pid);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    if (got < n)
        die("weft-js: only %ld of %ld results arrived", got, n);
    say("weft-js: %ld events in %.2f s = %.0f events/s", got, r->seconds, r->eps);
}

/* ---- setup ------------------------------------------------------------------ */

static void write_migration(void)
{
    char dir[400], path[500];
    snprintf(dir, sizeof(dir), "%s/bench-migrations", fx.state_dir);
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/9001_bench.sql", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        die("%s: %s", path, strerror(errno));
    fprintf(f,
            "INSERT INTO weft.functions (name, runtime, entry, timeout_ms, pool_size)\n"
            "VALUES ('bench-noop', 'shared_object', 'noop.so', 5000, %d),\n"
            "       ('bench-noop-exec', 'exec', '%s/noop_exec', 5000, %d);\n"
            "INSERT INTO weft.triggers (name, topic, function, result_topic, dead_letter_topic)\n"
            "VALUES ('bench-so', 'bench.so.in', 'bench-noop', 'bench.so.out', 'bench.dlq'),\n"
            "       ('bench-exec', 'bench.ex.in', 'bench-noop-exec', 'bench.ex.out', "
            "'bench.dlq'),\n"
            "       ('bench-lat', 'bench.lat.in', 'bench-noop', 'bench.lat.out', 'bench.dlq'),\n"
            "       ('bench-bl', 'bench.bl.in', 'bench-noop', 'bench.bl.out', 'bench.dlq');\n"
            "INSERT INTO weft.triggers (name, source, topic, stream, function, result_topic,\n"
            "                           dead_letter_topic)\n"
            "VALUES ('bench-js', 'jetstream', 'bench.js.in', 'BENCH_JS_IN', 'bench-noop',\n"
            "        'bench.jsout.results', 'bench.jsout.dlq');\n",
            opt.pool_size, functions_dir, opt.pool_size);
    fclose(f);
    const char *args[] = {"migrate", "--dir", dir, NULL};
    char out[4096];
    if (fx_weft(&fx, out, sizeof(out), args) != 0)
        die("weft migrate failed:\n%s", out);
}

static int parts_for(long n)
{
    /* The mock broker keeps at most 5 MiB per partition (older messages
     * are dropped): ~330 bytes per event on its log, with room to spare.
     * Apache Kafka keeps them all (retention is a week): 4 partitions. */
    if (!on_mock())
        return 4;
    long p = (n * 400) / (4l << 20) + 1;
    return p < 4 ? 4 : (int)p;
}

/* "Apache Kafka 4.1.1 (KRaft, 1 node)" from ops/kafka/pom.xml, or the mock. */
static void describe_broker(void)
{
    if (on_mock()) {
        snprintf(broker_desc, sizeof(broker_desc),
                 "weft-kafka-mock (librdkafka's mock cluster, in memory)");
        return;
    }
    char path[700], buf[8192], version[32] = "?";
    snprintf(path, sizeof(path), "%s/ops/kafka/pom.xml", fx.src_dir);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
    buf[n] = '\0';
    if (f)
        fclose(f);
    const char *v = strstr(buf, "<kafka.version>");
    if (v)
        sscanf(v + strlen("<kafka.version>"), "%31[^<]", version);
    snprintf(broker_desc, sizeof(broker_desc), "Apache Kafka %s (KRaft, %d node%s)", version,
             fx.kafka_nodes, fx.kafka_nodes == 1 ? "" : "s");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weft-bench [--json] [--only RUN,...] [--events-ceiling N] [--events-weft N]\n"
            "                  [--events-exec N] [--events-fork N] [--events-js N]\n"
            "                  [--events-weft-js N] [--backlog N]\n"
            "                  [--backlog-seconds S] [--low-rate R] [--half-rate R]\n"
            "                  [--latency-seconds S] [--latency-partitions N]\n"
            "                  [--pool-size N] [--pairs N] [--perf DIR] [--set 'K=V;...']\n"
            "\n"
            "Runs: ceiling, weft-so, weft-exec, fork-exec, latency, backlog, js-ceiling,\n"
            "weft-js (default: all).\n"
            "--pool-size N: workers in each no-op function's pool (default 2).\n"
            "--pairs N: with both ceiling and weft-so, run them N times in turn (1-9,\n"
            "default 3); the table shows the pair with the median weft-so/ceiling ratio\n"
            "and lists every pair's.\n"
            "--half-rate R: the second latency load when weft-so is not run (default:\n"
            "half of weft-so's measured rate; without either, no second load).\n"
            "--set 'K=V;K=V': more weft settings for the weft runs, after the bench's own\n"
            "(e.g. --set kafka.producer.linger.ms=5 to see what batching results buys).\n"
            "--perf DIR: record the dispatcher with `perf record -g` during weft-so,\n"
            "weft-exec, weft-js and latency-half into DIR/RUN.perf.data.\n"
            "Broker: Apache Kafka (ops/stack's default); WEFT_KAFKA=mock measures\n"
            "weft-kafka-mock instead. The table says which one it measured.\n"
            "Needs WEFT_BIN_DIR, WEFT_FUNCTIONS_DIR and WEFT_SOURCE_DIR (ops/bench sets them).\n");
}

/* The ceiling a run is compared with: JetStream runs with the JetStream
 * passthrough, everything else with the Kafka one. */
static row_t *ceiling_for(const row_t *r)
{
    int js = strncmp(r->name, "weft-js", 7) == 0 || strncmp(r->name, "js-", 3) == 0;
    return row_find(js ? "js-ceiling" : "ceiling");
}

static void print_table(void)
{
    row_t *fork_r = row_find("fork-exec");
    printf("\nbroker: %s\n", broker_desc);
    printf("\n%-13s %10s %9s %8s %8s %9s %9s %8s %8s %8s %8s %6s  %s\n", "run", "events/s",
           "vs ceil", "vs fork", "events", "seconds", "cpu/ev", "pg/ev", "p50", "p99", "p99.9",
           "busy", "RSS");
    printf("%-13s %10s %9s %8s %8s %9s %9s %8s %8s %8s %8s %6s  %s\n", "", "", "", "", "", "",
           "(us)", "(us)", "(ms)", "(ms)", "(ms)", "(core)", "(MiB)");
    for (int i = 0; i < n_rows; i++) {
        row_t *r = &rows[i];
        row_t *ceil_r = ceiling_for(r);
        char eps[32] = "-", vc[32] = "-", vf[32] = "-", cpu[32] = "-", pg[32] = "-", p50[32] = "-",
             p99[32] = "-", p999[32] = "-", rss[32] = "-", secs[32] = "-", busy[32] = "-";
        if (r->eps > 0)
            snprintf(eps, sizeof(eps), "%.0f", r->eps);
        else if (r->offered > 0)
            snprintf(eps, sizeof(eps), "(%.0f)", r->offered);
        if (r->eps > 0 && ceil_r && ceil_r->eps > 0)
            snprintf(vc, sizeof(vc), "%.3fx", r->eps / ceil_r->eps);
        if (r->eps > 0 && fork_r && fork_r->eps > 0)
            snprintf(vf, sizeof(vf), "%.1fx", r->eps / fork_r->eps);
        if (r->seconds > 0)
            snprintf(secs, sizeof(secs), "%.2f", r->seconds);
        if (!isnan(r->disp_cpu_us))
            snprintf(cpu, sizeof(cpu), "%.1f", r->disp_cpu_us);
        if (!isnan(r->pg_cpu_us))
            snprintf(pg, sizeof(pg), "%.1f", r->pg_cpu_us);
        if (!isnan(r->p50)) {
            snprintf(p50, sizeof(p50), "%.2f", r->p50);
            snprintf(p99, sizeof(p99), "%.2f", r->p99);
            snprintf(p999, sizeof(p999), "%.2f", r->p999);
        }
        if (r->rss_kib >= 0)
            snprintf(rss, sizeof(rss), "%.1f", (double)r->rss_kib / 1024.0);
        if (!isnan(r->busy))
            snprintf(busy, sizeof(busy), "%.2f", r->busy);
        printf("%-13s %10s %9s %8s %8ld %9s %9s %8s %8s %8s %8s %6s  %s\n", r->name, eps, vc, vf,
               r->events, secs, cpu, pg, p50, p99, p999, busy, rss);
    }
    printf("\n");
    for (int i = 0; i < n_rows; i++)
        printf("  %-13s %s\n", rows[i].name, rows[i].what);
    printf("  (events/s in parentheses: the offered load of a latency run)\n"
           "  cpu/ev: CPU of the dispatcher (for the ceiling: of the passthrough) per event;\n"
           "  pg/ev: CPU of all PostgreSQL processes per event; RSS: peak (VmHWM).\n"
           "  busy: cores kept busy on the whole machine (every process) during a\n"
           "  latency run, out of %d.\n"
           "  %d cores; partitions per input topic: %d (latency topics: %d); workers per\n"
           "  no-op pool: %d.\n",
           (int)sysconf(_SC_NPROCESSORS_ONLN), (int)sysconf(_SC_NPROCESSORS_ONLN), opt.partitions,
           opt.lat_partitions, opt.pool_size);
    if (n_pairs > 1 && paired()) {
        printf("  weft-so / ceiling in %d interleaved pairs (events/s), the table's is the\n"
               "  median:",
               n_pairs);
        for (int i = 0; i < n_pairs; i++)
            printf("%s %.3fx (%.0f / %.0f)", i ? "," : "", pair_ratio(i), pair_so[i].eps,
                   pair_ceil[i].eps);
        printf("\n");
    }
}

static void json_num(const char *k, double v, int last)
{
    if (isnan(v))
        printf("\"%s\":null%s", k, last ? "" : ",");
    else
        printf("\"%s\":%.3f%s", k, v, last ? "" : ",");
}

static void print_json(void)
{
    row_t *fork_r = row_find("fork-exec");
    printf("{\"broker\":\"%s\",\"broker_kind\":\"%s\",", broker_desc, fx.kafka_kind);
    printf("\"cores\":%d,\"partitions\":%d,\"latency_partitions\":%d,\"pool_size\":%d,",
           (int)sysconf(_SC_NPROCESSORS_ONLN), opt.partitions, opt.lat_partitions, opt.pool_size);
    printf("\"pairs\":[");
    for (int i = 0; i < n_pairs && paired(); i++) {
        printf("%s{", i ? "," : "");
        json_num("ceiling_events_per_s", pair_ceil[i].eps, 0);
        json_num("weft_so_events_per_s", pair_so[i].eps, 0);
        json_num("vs_ceiling", pair_ratio(i), 1);
        printf("}");
    }
    printf("],\"runs\":[");
    for (int i = 0; i < n_rows; i++) {
        row_t *r = &rows[i];
        row_t *ceil_r = ceiling_for(r);
        printf("%s{\"run\":\"%s\",\"what\":\"%s\",\"events\":%ld,", i ? "," : "", r->name, r->what,
               r->events);
        json_num("seconds", r->seconds > 0 ? r->seconds : NAN, 0);
        json_num("events_per_s", r->eps > 0 ? r->eps : NAN, 0);
        json_num("vs_ceiling",
                 r->eps > 0 && ceil_r && ceil_r->eps > 0 ? r->eps / ceil_r->eps : NAN, 0);
        json_num("vs_fork_exec",
                 r->eps > 0 && fork_r && fork_r->eps > 0 ? r->eps / fork_r->eps : NAN, 0);
        json_num("offered_per_s", r->offered > 0 ? r->offered : NAN, 0);
        json_num("cpu_us_per_event", r->disp_cpu_us, 0);
        json_num("pg_cpu_us_per_event", r->pg_cpu_us, 0);
        json_num("p50_ms", r->p50, 0);
        json_num("p99_ms", r->p99, 0);
        json_num("p999_ms", r->p999, 0);
        json_num("machine_busy_cores", r->busy, 0);
        json_num("peak_rss_mib", r->rss_kib >= 0 ? (double)r->rss_kib / 1024.0 : NAN, 1);
        printf("}");
    }
    printf("]}\n");
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"json", no_argument, NULL, 'j'},
        {"only", required_argument, NULL, 'o'},
        {"perf", required_argument, NULL, 'p'},
        {"set", required_argument, NULL, 's'},
        {"events-ceiling", required_argument, NULL, 'c'},
        {"events-weft", required_argument, NULL, 'w'},
        {"events-exec", required_argument, NULL, 'x'},
        {"events-fork", required_argument, NULL, 'f'},
        {"backlog", required_argument, NULL, 'b'},
        {"events-js", required_argument, NULL, 'J'},
        {"events-weft-js", required_argument, NULL, 'K'},
        {"backlog-seconds", required_argument, NULL, 'B'},
        {"low-rate", required_argument, NULL, 'r'},
        {"half-rate", required_argument, NULL, 'H'},
        {"pool-size", required_argument, NULL, 'P'},
        {"latency-seconds", required_argument, NULL, 'L'},
        {"latency-partitions", required_argument, NULL, 'Q'},
        {"pairs", required_argument, NULL, 'A'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        char *end = NULL;
        long v = optarg ? strtol(optarg, &end, 10) : 0;
        int numeric = optarg && end && *end == '\0' && v > 0;
        switch (c) {
        case 'j': opt.json = 1; break;
        case 'o': opt.only = optarg; break;
        case 'p': opt.perf_dir = optarg; break;
        case 's': opt.weft_set_extra = optarg; break;
        case 'h': usage(stdout); return 0;
        default:
            if (c == '?' || !numeric) {
                if (c != '?')
                    fprintf(stderr, "weft-bench: not a positive integer: %s\n", optarg);
                usage(stderr);
                return 2;
            }
            switch (c) {
            case 'c': opt.n_ceiling = v; break;
            case 'w': opt.n_weft = v; break;
            case 'x': opt.n_exec = v; break;
            case 'f': opt.n_fork = v; break;
            case 'b': opt.n_backlog = v; break;
            case 'J': opt.n_js = v; break;
            case 'K': opt.n_js_weft = v; break;
            case 'B': opt.backlog_seconds = (int)v; break;
            case 'r': opt.low_rate = (int)v; break;
            case 'H': opt.half_rate = (int)v; break;
            case 'P': opt.pool_size = v > 256 ? 256 : (int)v; break;
            case 'L': opt.lat_seconds = (int)v; break;
            case 'Q': opt.lat_partitions = v > 1000 ? 1000 : (int)v; break;
            case 'A':
                if (v > MAX_PAIRS) {
                    fprintf(stderr, "weft-bench: --pairs is at most %d, not %ld\n", MAX_PAIRS, v);
                    return 2;
                }
                opt.pairs = (int)v;
                break;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft-bench: unexpected argument: %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    const char *fd = getenv("WEFT_FUNCTIONS_DIR");
    snprintf(functions_dir, sizeof(functions_dir), "%s", fd ? fd : "build/functions");
    signal(SIGPIPE, SIG_IGN);

    /* The fixture reads WEFT_KAFKA too; the partition counts depend on it. */
    const char *kind = getenv("WEFT_KAFKA");
    snprintf(fx.kafka_kind, sizeof(fx.kafka_kind), "%s", kind && *kind ? kind : "apache");
    /* Partitions enough for the largest preload of the runs asked for. */
    long biggest = 1;
    if (want("ceiling") && opt.n_ceiling > biggest)
        biggest = opt.n_ceiling;
    if (want("weft-so") && opt.n_weft > biggest)
        biggest = opt.n_weft;
    if (want("weft-exec") && opt.n_exec > biggest)
        biggest = opt.n_exec;
    opt.partitions = parts_for(biggest);
    int bl_parts = want("backlog") ? parts_for(opt.n_backlog) : 4;
    char *topics = bench_topics;
    snprintf(bench_topics, sizeof(bench_topics),
             "bench.pt.in:%d bench.pt.out:%d bench.so.in:%d bench.so.out:%d bench.ex.in:%d "
             "bench.ex.out:%d bench.lat.in:%d bench.lat.out:%d bench.fork.in:%d "
             "bench.fork.out:%d bench.bl.in:%d bench.bl.out:%d bench.ptl.in:%d "
             "bench.ptl.out:%d bench.dlq:1",
             opt.partitions, opt.partitions, opt.partitions, opt.partitions, opt.partitions,
             opt.partitions, opt.lat_partitions, opt.lat_partitions, opt.partitions, opt.partitions,
             bl_parts, opt.partitions, opt.lat_partitions, opt.lat_partitions);
    say("starting a private stack (partitions per topic: %d, latency topics: %d, backlog "
        "topic: %d)",
        opt.partitions, opt.lat_partitions, bl_parts);
    if (fx_up(&fx, topics) != 0)
        return 1;
    describe_broker();
    if (on_mock())
        fetch_wait_ms = "1";
    snprintf(weft_set, sizeof(weft_set),
             "kafka.session.timeout.ms=6000;kafka.heartbeat.interval.ms=500;"
             "kafka.consumer.fetch.wait.max.ms=%s;log.level=info",
             fetch_wait_ms);
    say("broker: %s", broker_desc);
    const char *margs[] = {"migrate", NULL};
    char out[4096];
    if (fx_weft(&fx, out, sizeof(out), margs) != 0)
        die("weft migrate failed:\n%s", out);
    write_migration();
    {
        /* The jetstream trigger's streams exist before any weft run. */
        jsCtx *js = NULL;
        natsConnection *nc = js_connect(&js);
        js_stream(js, "BENCH_JS_IN", "bench.js.in");
        js_stream(js, "BENCH_JS_OUT", "bench.jsout.>");
        jsCtx_Destroy(js);
        natsConnection_Destroy(nc);
    }

    if (want("ceiling") || want("weft-so"))
        run_ceiling_and_weft_so();
    if (want("weft-exec")) {
        row_t *r = row_add("weft-exec", "weft run, ledger on, no-op exec program");
        run_weft(r, "weft-exec", 1, "bench-exec", "bench.ex.in", "bench.ex.out", opt.n_exec);
    }
    if (want("fork-exec"))
        run_fork();
    if (want("latency"))
        run_latency();
    if (want("backlog"))
        run_backlog();
    if (want("js-ceiling"))
        run_js_ceiling();
    if (want("weft-js"))
        run_weft_js();

    if (opt.json)
        print_json();
    else
        print_table();
    fx_down(&fx);
    return 0;
}
