/*
 * weft-kafka-mock.c - librdkafka's mock Kafka cluster as a standalone process.
 *
 * The local stack (ops/stack) and the integration tests need a Kafka broker
 * that starts in milliseconds, binds 127.0.0.1 on free ports and lives in
 * its own process, so that killing the dispatcher under test does not take
 * the broker with it. librdkafka ships such a broker in-process
 * (rdkafka_mock.h); this program hosts it and does nothing else.
 *
 * Once the cluster listens and the requested topics exist, it prints exactly
 * one line "bootstrap=HOST:PORT[,HOST:PORT...]" on stdout and, with
 * --bootstrap-file, writes the same string (newline-terminated) to that file
 * atomically (temp file + rename). It then sleeps until SIGTERM or SIGINT,
 * destroys the cluster, removes the bootstrap file and exits 0.
 *
 * NOTES
 *   - State is in memory only: a restart is a fresh, empty cluster on new
 *     ports.
 *   - Topics that are not named on the command line are created by the mock
 *     on the first metadata request that allows auto-creation (producers do
 *     by default; librdkafka consumers do not unless allow.auto.create.topics
 *     is true). The mock gives such topics its built-in default of 4
 *     partitions: librdkafka 2.0 has no public call to change it.
 *   - The mock's group coordinator waits 3 s before the first rebalance of
 *     a group, and when the last member leaves it waits session.timeout.ms
 *     minus 1 s before the next join completes: consumers used against it
 *     should set a short session.timeout.ms (for example 6000).
 *   - SIGUSR1 takes every broker down (connections closed, new ones
 *     refused), SIGUSR2 brings them back up: the "broker down" fault for
 *     tests that cannot reach the mock API of another process.
 *   - Signal handlers only set flags; the signals stay blocked except inside
 *     sigsuspend(), so no wake-up is lost and the work happens in main().
 *   - Exit codes: 0 after SIGTERM/SIGINT, 1 when the cluster cannot be
 *     started, 2 on bad arguments.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MOCK_MAX_BROKERS 32
#define MOCK_MAX_PARTITIONS 10000
#define MOCK_AUTO_PARTITIONS 4 /* librdkafka's mock default, not settable */
#define TOPIC_NAME_MAX 249

static volatile sig_atomic_t stop_requested, down_requested, up_requested;

static void on_signal(int signo)
{
    if (signo == SIGUSR1)
        down_requested = 1;
    else if (signo == SIGUSR2)
        up_requested = 1;
    else
        stop_requested = 1;
}

/*
 * The mock cluster serves API calls (rd_kafka_mock_topic_create() and the
 * like) as ops posted to its own thread, which sleeps in poll() on its
 * sockets and a wake-up pipe. In librdkafka 2.0 that wake-up is sometimes
 * lost, and the call then waits for the thread's 1 s poll timeout: three
 * topics could take two seconds to create. The thread serves its op queue
 * whenever poll() returns for any reason, so while a call is in flight a
 * helper thread knocks on the broker listeners (connect, then reset) every
 * POKE_INTERVAL_MS. Calls that are served at once never see a knock.
 */
#define POKE_INTERVAL_MS 10

typedef struct poker {
    struct sockaddr_storage addr[MOCK_MAX_BROKERS];
    socklen_t addrlen[MOCK_MAX_BROKERS];
    int cnt;
    atomic_int done;
    pthread_t thr;
    int running;
} poker_t;

/* Resolve "HOST:PORT[,HOST:PORT...]" (numeric, as the mock reports it). */
static void poker_init(poker_t *pk, const char *bootstraps)
{
    char buf[4096], *save = NULL, *tok;

    memset(pk, 0, sizeof(*pk));
    snprintf(buf, sizeof(buf), "%s", bootstraps);
    for (tok = strtok_r(buf, ",", &save); tok && pk->cnt < MOCK_MAX_BROKERS;
         tok = strtok_r(NULL, ",", &save)) {
        struct addrinfo hints = {0}, *res;
        char *colon = strrchr(tok, ':');

        if (!colon)
            continue;
        *colon = '\0';
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        if (getaddrinfo(tok, colon + 1, &hints, &res) != 0)
            continue;
        memcpy(&pk->addr[pk->cnt], res->ai_addr, res->ai_addrlen);
        pk->addrlen[pk->cnt] = res->ai_addrlen;
        pk->cnt++;
        freeaddrinfo(res);
    }
}

static void *poker_main(void *arg)
{
    poker_t *pk = arg;
    const struct timespec interval = {0, POKE_INTERVAL_MS * 1000000L};
    const struct linger reset = {1, 0};
    int i, fd;

    for (;;) {
        nanosleep(&interval, NULL);
        if (atomic_load(&pk->done))
            break;
        for (i = 0; i < pk->cnt; i++) {
            fd = socket(pk->addr[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0)
                continue;
            /* Reset on close: no TIME_WAIT left behind by the knocks. */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
            (void)connect(fd, (struct sockaddr *)&pk->addr[i], pk->addrlen[i]);
            close(fd);
        }
    }
    return NULL;
}

/* Around every mock API call; without a thread the call is only slower. */
static void poker_begin(poker_t *pk)
{
    atomic_store(&pk->done, 0);
    pk->running = pk->cnt > 0 && pthread_create(&pk->thr, NULL, poker_main, pk) == 0;
}

static void poker_end(poker_t *pk)
{
    atomic_store(&pk->done, 1);
    if (pk->running)
        pthread_join(pk->thr, NULL);
    pk->running = 0;
}

static void brokers_set(rd_kafka_mock_cluster_t *mcluster, poker_t *pk, int brokers, int up)
{
    int id;

    poker_begin(pk);
    for (id = 1; id <= brokers; id++) {
        rd_kafka_resp_err_t err = up ? rd_kafka_mock_broker_set_up(mcluster, id)
                                     : rd_kafka_mock_broker_set_down(mcluster, id);
        if (err)
            fprintf(stderr, "weft-kafka-mock: rd_kafka_mock_broker_set_%s(%d) failed: %s\n",
                    up ? "up" : "down", id, rd_kafka_err2str(err));
    }
    poker_end(pk);
    fprintf(stderr, "weft-kafka-mock: %d broker(s) %s\n", brokers, up ? "up" : "down");
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: weft-kafka-mock [OPTIONS] [TOPIC[:PARTITIONS] ...]\n"
            "\n"
            "Run librdkafka's mock Kafka cluster on 127.0.0.1 until SIGTERM/SIGINT.\n"
            "Prints one line 'bootstrap=HOST:PORT[,...]' on stdout once ready.\n"
            "\n"
            "options:\n"
            "  -b, --brokers N          number of brokers (default 1, max %d)\n"
            "  -p, --partitions N       partitions of topics named without :N (default 4)\n"
            "  -f, --bootstrap-file F   also write the bootstrap string to F (atomically);\n"
            "                           F is removed again on exit\n"
            "  -d, --debug CONTEXTS     librdkafka debug contexts, e.g. 'mock,protocol'\n"
            "  -h, --help               show this help\n"
            "\n"
            "signals: SIGTERM/SIGINT stop; SIGUSR1 takes all brokers down, SIGUSR2 up.\n"
            "\n"
            "Topics not named here are auto-created with %d partitions when a\n"
            "producer (or a consumer with allow.auto.create.topics=true) asks for them.\n",
            MOCK_MAX_BROKERS, MOCK_AUTO_PARTITIONS);
}

/* Strict decimal parse into [min, max]; returns 0 or -1. */
static int parse_int(const char *s, int min, int max, int *out)
{
    char *end;
    long v;

    if (!*s)
        return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* Kafka's own rule: 1..249 characters of [a-zA-Z0-9._-], not "." or "..". */
static int topic_name_valid(const char *name, size_t len)
{
    size_t i;

    if (len == 0 || len > TOPIC_NAME_MAX)
        return 0;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return 0;
    for (i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/*
 * Split "NAME[:PARTITIONS]" into name (copied into buf) and partition count.
 * Returns 0 or -1 with a message in errstr.
 */
static int parse_topic(const char *arg, int default_parts, char *buf, size_t bufsz, int *parts,
                       char *errstr, size_t errsz)
{
    const char *colon = strrchr(arg, ':');
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);

    if (!topic_name_valid(arg, len) || len >= bufsz) {
        snprintf(errstr, errsz, "invalid topic name in '%s' (1-%d characters of [a-zA-Z0-9._-])",
                 arg, TOPIC_NAME_MAX);
        return -1;
    }
    memcpy(buf, arg, len);
    buf[len] = '\0';

    *parts = default_parts;
    if (colon && parse_int(colon + 1, 1, MOCK_MAX_PARTITIONS, parts) < 0) {
        snprintf(errstr, errsz, "invalid partition count in '%s' (1-%d)", arg, MOCK_MAX_PARTITIONS);
        return -1;
    }
    return 0;
}

/* Write "content\n" to path via a temp file in the same directory + rename(). */
static int write_file_atomic(const char *path, const char *content, char *errstr, size_t errsz)
{
    char tmp[PATH_MAX];
    FILE *fp;
    int n;

    n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        snprintf(errstr, errsz, "bootstrap file path too long: %s", path);
        return -1;
    }
    fp = fopen(tmp, "w");
    if (!fp) {
        snprintf(errstr, errsz, "fopen(%s) failed: %s", tmp, strerror(errno));
        return -1;
    }
    if (fprintf(fp, "%s\n", content) < 0 || fflush(fp) != 0 || fsync(fileno(fp)) != 0) {
        snprintf(errstr, errsz, "write(%s) failed: %s", tmp, strerror(errno));
        fclose(fp);
        unlink(tmp);
        return -1;
    }
    if (fclose(fp) != 0) {
        snprintf(errstr, errsz, "fclose(%s) failed: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        snprintf(errstr, errsz, "rename(%s, %s) failed: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int debug_valid(const char *debug, char *errstr, size_t errsz)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int ok = rd_kafka_conf_set(conf, "debug", debug, errstr, errsz) == RD_KAFKA_CONF_OK;

    rd_kafka_conf_destroy(conf);
    return ok;
}

/*
 * The mock cluster needs an rd_kafka_t for its bookkeeping; a producer with
 * no bootstrap servers never connects anywhere by itself.
 */
static rd_kafka_t *host_handle_new(const char *debug, char *errstr, size_t errsz)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;

    /* Level 4 hides the notice about the missing bootstrap.servers. */
    if (rd_kafka_conf_set(conf, "client.id", "weft-kafka-mock", errstr, errsz) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", debug ? "7" : "4", errstr, errsz) !=
            RD_KAFKA_CONF_OK ||
        (debug && rd_kafka_conf_set(conf, "debug", debug, errstr, errsz) != RD_KAFKA_CONF_OK)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errsz);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"partitions", required_argument, NULL, 'p'},
        {"bootstrap-file", required_argument, NULL, 'f'},
        {"debug", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int brokers = 1, partitions = 4;
    const char *bootstrap_file = NULL, *debug = NULL;
    char errstr[PATH_MAX + 512], name[TOPIC_NAME_MAX + 1];
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mcluster;
    const char *bootstraps;
    poker_t pk;
    struct sigaction sa;
    sigset_t block, old;
    int opt, i, parts, status = 0;

    while ((opt = getopt_long(argc, argv, "b:p:f:d:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            if (parse_int(optarg, 1, MOCK_MAX_BROKERS, &brokers) < 0) {
                fprintf(stderr, "weft-kafka-mock: invalid --brokers '%s' (1-%d)\n", optarg,
                        MOCK_MAX_BROKERS);
                return 2;
            }
            break;
        case 'p':
            if (parse_int(optarg, 1, MOCK_MAX_PARTITIONS, &partitions) < 0) {
                fprintf(stderr, "weft-kafka-mock: invalid --partitions '%s' (1-%d)\n", optarg,
                        MOCK_MAX_PARTITIONS);
                return 2;
            }
            break;
        case 'f':
            if (!*optarg) {
                fprintf(stderr, "weft-kafka-mock: empty --bootstrap-file\n");
                return 2;
            }
            bootstrap_file = optarg;
            break;
        case 'd':
            if (!debug_valid(optarg, errstr, sizeof(errstr))) {
                fprintf(stderr, "weft-kafka-mock: invalid --debug '%s': %s\n", optarg, errstr);
                return 2;
            }
            debug = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }

    /* Validate every topic before starting anything. */
    for (i = optind; i < argc; i++) {
        if (parse_topic(argv[i], partitions, name, sizeof(name), &parts, errstr, sizeof(errstr)) <
            0) {
            fprintf(stderr, "weft-kafka-mock: %s\n", errstr);
            return 2;
        }
    }

    /*
     * Block our signals before librdkafka starts its threads, so they
     * inherit the mask and only sigsuspend() below ever receives them.
     */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &block, &old) != 0) {
        fprintf(stderr, "weft-kafka-mock: sigprocmask() failed: %s\n", strerror(errno));
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigdelset(&old, SIGTERM);
    sigdelset(&old, SIGINT);
    sigdelset(&old, SIGUSR1);
    sigdelset(&old, SIGUSR2);

    rk = host_handle_new(debug, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "weft-kafka-mock: rd_kafka_new() failed: %s\n", errstr);
        return 1;
    }
    mcluster = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mcluster) {
        fprintf(stderr, "weft-kafka-mock: rd_kafka_mock_cluster_new() failed\n");
        rd_kafka_destroy(rk);
        return 1;
    }

    bootstraps = rd_kafka_mock_cluster_bootstraps(mcluster);
    poker_init(&pk, bootstraps);

    poker_begin(&pk);
    for (i = optind; i < argc; i++) {
        rd_kafka_resp_err_t err;

        parse_topic(argv[i], partitions, name, sizeof(name), &parts, errstr, sizeof(errstr));
        err = rd_kafka_mock_topic_create(mcluster, name, parts, 1);
        if (err) {
            fprintf(stderr, "weft-kafka-mock: rd_kafka_mock_topic_create(%s, %d) failed: %s\n",
                    name, parts, rd_kafka_err2str(err));
            status = 1;
            break;
        }
    }
    poker_end(&pk);
    if (status)
        goto out;

    if (bootstrap_file &&
        write_file_atomic(bootstrap_file, bootstraps, errstr, sizeof(errstr)) < 0) {
        fprintf(stderr, "weft-kafka-mock: %s\n", errstr);
        bootstrap_file = NULL;
        status = 1;
        goto out;
    }
    if (printf("bootstrap=%s\n", bootstraps) < 0 || fflush(stdout) != 0)
        fprintf(stderr, "weft-kafka-mock: writing to stdout failed: %s\n", strerror(errno));
    if (partitions != MOCK_AUTO_PARTITIONS)
        fprintf(stderr,
                "weft-kafka-mock: note: auto-created topics get %d partitions, not %d; "
                "name topics on the command line to choose\n",
                MOCK_AUTO_PARTITIONS, partitions);

    while (!stop_requested) {
        sigsuspend(&old);
        if (down_requested) {
            down_requested = 0;
            brokers_set(mcluster, &pk, brokers, 0);
        }
        if (up_requested) {
            up_requested = 0;
            brokers_set(mcluster, &pk, brokers, 1);
        }
    }

out:
    if (bootstrap_file)
        unlink(bootstrap_file);
    rd_kafka_mock_cluster_destroy(mcluster);
    rd_kafka_destroy(rk);
    return status;
}
