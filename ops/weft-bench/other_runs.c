/*
 * other_runs.c - fork+exec per event, and the JetStream runs.
 *
 * Part of weft-bench (ops/weft-bench/main.c says what it measures); runs
 * in the benchmark process, never in weft.
 */
#include "bench.h"

/* ---- run 4: fork+exec per event -------------------------------------------- */

void run_fork(void)
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

natsConnection *js_connect(jsCtx **js)
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

void js_stream(jsCtx *js, const char *name, const char *subject)
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
void run_js_ceiling(void)
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

void run_weft_js(void)
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
