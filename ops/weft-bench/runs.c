/*
 * runs.c - the passthrough ceiling, the weft runs (so, exec), their interleaved pairs, the backlog.
 *
 * Part of weft-bench (ops/weft-bench/main.c says what it measures); runs
 * in the benchmark process, never in weft.
 */
#include "bench.h"

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
rd_kafka_conf_t *passthrough_consumer_conf(const char *group)
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
void kafka_run_begin(void)
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
                    RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_HEADERS(hc), RD_KAFKA_V_OPAQUE((void *)tag), RD_KAFKA_V_END);
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

pid_t weft_start(const char *log, const char *trigger)
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

void weft_stop(pid_t pid)
{
    int rc = fx_run_stop(pid, 30000);
    if (rc != 0)
        say("warning: weft run exited with %d (see %s)", rc, fx.state_dir);
}

/* With --perf DIR: `perf record -g` of the dispatcher into DIR/RUN.perf.data
 * for the length of a run (`perf report -i FILE` to read it). */
pid_t perf_start(const char *run, pid_t target)
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

void perf_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGINT);
    int st;
    waitpid(pid, &st, 0);
}

/* One weft run into r, logged as log (and recorded by --perf as log when
 * perf is set). */
void run_weft(row_t *r, const char *log, int perf_it, const char *trigger, const char *in,
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

row_t pair_ceil[MAX_PAIRS], pair_so[MAX_PAIRS];
int n_pairs;

/* Both runs of a pair are wanted, so they run in opt.pairs pairs. */
int paired(void)
{
    return want("ceiling") && want("weft-so");
}

double pair_ratio(int i)
{
    return pair_ceil[i].eps > 0 ? pair_so[i].eps / pair_ceil[i].eps : 0;
}

/* This machine's speed drifts by tens of percent from one run to the next
 * (the ceiling measured 137,565 to 193,777 events/s in three full runs of
 * one day), so a ratio of one ceiling run and one weft run is as noisy as
 * either. With both runs wanted they go in --pairs interleaved pairs, each
 * run on a fresh broker; the table shows the pair with the median ratio
 * and lists every pair's. */
void run_ceiling_and_weft_so(void)
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

void run_backlog(void)
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
