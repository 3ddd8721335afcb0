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

#include "bench.h"

/* ---- options ------------------------------------------------------------ */

bench_opt_t opt = {
    /* Each run has at least ~10 s of work on this 2-core machine. */
    .n_ceiling = 1000000,  .n_weft = 400000, .n_exec = 200000,    .n_fork = 4000,
    .n_backlog = 1000000,  .n_js = 500000,   .n_js_weft = 200000, .pool_size = 2,
    .partitions = 0,       .low_rate = 200,  .lat_seconds = 10,   .lat_partitions = 4,
    .backlog_seconds = 30, .pairs = 3,
};

fx_t fx;
char functions_dir[600];
char bench_topics[1024]; /* the topics, for a fresh broker */
char broker_desc[128];   /* which broker the table measured */

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
const char *fetch_wait_ms = "500";
char weft_set[256];

static int on_mock(void)
{
    return strcmp(fx.kafka_kind, "mock") == 0;
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
        case 'j':
            opt.json = 1;
            break;
        case 'o':
            opt.only = optarg;
            break;
        case 'p':
            opt.perf_dir = optarg;
            break;
        case 's':
            opt.weft_set_extra = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            if (c == '?' || !numeric) {
                if (c != '?')
                    fprintf(stderr, "weft-bench: not a positive integer: %s\n", optarg);
                usage(stderr);
                return 2;
            }
            switch (c) {
            case 'c':
                opt.n_ceiling = v;
                break;
            case 'w':
                opt.n_weft = v;
                break;
            case 'x':
                opt.n_exec = v;
                break;
            case 'f':
                opt.n_fork = v;
                break;
            case 'b':
                opt.n_backlog = v;
                break;
            case 'J':
                opt.n_js = v;
                break;
            case 'K':
                opt.n_js_weft = v;
                break;
            case 'B':
                opt.backlog_seconds = (int)v;
                break;
            case 'r':
                opt.low_rate = (int)v;
                break;
            case 'H':
                opt.half_rate = (int)v;
                break;
            case 'P':
                opt.pool_size = v > 256 ? 256 : (int)v;
                break;
            case 'L':
                opt.lat_seconds = (int)v;
                break;
            case 'Q':
                opt.lat_partitions = v > 1000 ? 1000 : (int)v;
                break;
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
