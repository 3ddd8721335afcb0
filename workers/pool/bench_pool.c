/*
 * bench_pool.c - weft-bench-pool: what a worker pool costs, in figures.
 *
 *   weft-bench-pool [--quick] [--functions-dir DIR] [--throughput-only]
 *                   [--depths 1,4,8,16]
 *
 * Measures, on this machine, with the real pool, worker binary and example
 * functions (<build>/functions):
 *
 *   cold start     an ondemand pool at zero workers -> first result (ms,
 *                  median of N), for noop.so and for the exec runtime's
 *                  upper.py (a Python interpreter start included);
 *   warm overhead  one invocation at a time through a warm pool of one
 *                  worker running noop.so: the round trip (us), i.e. what
 *                  weft adds per event;
 *   throughput     events/s through a static pool of one worker per core
 *                  running noop.so, a window of invocations in flight,
 *                  with pipelining off (depth 1) and at the default depth,
 *                  and the CPU time per event of this process plus the
 *                  workers (what the dispatcher and its pool would burn);
 *                  the same for upper.py (exec runtime); --depths measures
 *                  noop.so at each listed depth instead;
 *   fork+exec      events/s when every event starts a process instead
 *                  (posix_spawn of weft-bench-noop, event on its stdin,
 *                  waitpid), as many at once as there are cores; and the
 *                  pool/fork+exec ratio.
 *
 * A program that prints figures, not a test: nothing is asserted. Runs as
 * a plain single-threaded process playing the dispatcher (epoll loop,
 * signalfd for SIGCHLD), like tests/test_pool.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "exe.h"
#include "loop.h"
#include "pool.h"

extern char **environ;

static struct {
    weft_loop_t loop;
    weft_pool_t *pool;
    char worker[PATH_MAX];
    char noop_process[PATH_MAX];
    char functions[PATH_MAX];
    uint64_t done;
    uint64_t failed;
} g;

static uint64_t now_us(void)
{
    return weft_clock_mono_us();
}

static void on_done(void *opaque, const weft_outcome_t *out, void *ctx)
{
    (void)opaque;
    (void)ctx;
    g.done++;
    if (out->kind != WEFT_OUTCOME_OK)
        g.failed++;
}

static void on_child(weft_loop_t *loop, pid_t pid, int status)
{
    (void)loop;
    if (g.pool)
        weft_pool_reaped(g.pool, pid, status);
}

static void loop_once(int timeout_ms)
{
    weft_loop_run_once(&g.loop, timeout_ms);
    weft_pool_tick(g.pool, now_us() / 1000);
}

static Io__Cloudevents__V1__CloudEvent g_ev = IO__CLOUDEVENTS__V1__CLOUD_EVENT__INIT;
static const char g_data[] = "{\"name\":\"ada lovelace\",\"tags\":[\"math\",\"engines\"]}";

static void submit_one(void)
{
    char err[256];
    if (weft_pool_submit(g.pool, &g_ev, "bench", 1, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft-bench-pool: submit: %s\n", err);
        exit(1);
    }
}

static void wait_done(uint64_t want)
{
    while (g.done < want)
        loop_once(100);
}

static weft_pool_t *new_pool(weft_pool_mode_t mode, const char *file, const char *runtime, int size,
                             int depth)
{
    char entry[PATH_MAX + 64], err[256];
    snprintf(entry, sizeof(entry), "%s/%s", g.functions, file);
    weft_pool_config_t cfg = {
        .function = file,
        .runtime = runtime,
        .entry = entry,
        .mode = mode,
        .size = size,
        .max_concurrency = size,
        .idle_timeout_ms = 60000,
        .quiet = 1,
        .timeout_ms = 30000,
        .worker_path = g.worker,
        .pipeline_depth = depth,
    };
    weft_pool_t *pool = weft_pool_new(&cfg, g.loop.epfd, on_done, NULL, err, sizeof(err));
    if (!pool) {
        fprintf(stderr, "weft-bench-pool: %s\n", err);
        exit(1);
    }
    return pool;
}

static void destroy_pool(void)
{
    weft_pool_destroy(g.pool, 2000);
    g.pool = NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

/* Ondemand pool at zero -> first result, median of n, in us. */
static uint64_t cold_start(const char *file, const char *runtime, int n)
{
    uint64_t *t = calloc((size_t)n, sizeof(*t));
    for (int i = 0; i < n; i++) {
        g.pool = new_pool(WEFT_POOL_ONDEMAND, file, runtime, 1, 0);
        uint64_t want = g.done + 1, t0 = now_us();
        submit_one();
        wait_done(want);
        t[i] = now_us() - t0;
        destroy_pool();
    }
    uint64_t med = pct(t, (size_t)n, 0.5);
    free(t);
    return med;
}

static void wait_ready(int workers)
{
    weft_pool_stats_t st;
    do {
        loop_once(10);
        weft_pool_stats(g.pool, &st);
    } while (st.idle < workers);
}

/* One invocation at a time through a warm pool of one. */
static void warm(int n, uint64_t *p50, uint64_t *p99, double *mean)
{
    uint64_t *t = calloc((size_t)n, sizeof(*t));
    g.pool = new_pool(WEFT_POOL_STATIC, "noop.so", NULL, 1, 0);
    wait_ready(1);
    uint64_t total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t want = g.done + 1, t0 = now_us();
        submit_one();
        wait_done(want);
        t[i] = now_us() - t0;
        total += t[i];
    }
    destroy_pool();
    *mean = (double)total / n;
    *p50 = pct(t, (size_t)n, 0.5);
    *p99 = pct(t, (size_t)n, 0.99);
    free(t);
}

static uint64_t cpu_us(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* events/s through a static pool with a window of invocations in flight;
 * *cpu gets the CPU time per event (us) of this process and the pool's
 * workers (reaped by destroy, so counted in RUSAGE_CHILDREN). */
static double throughput(const char *file, const char *runtime, int workers, int n, int window,
                         int depth, double *cpu)
{
    g.pool = new_pool(WEFT_POOL_STATIC, file, runtime, workers, depth);
    wait_ready(workers);
    uint64_t c0 = cpu_us(RUSAGE_SELF) + cpu_us(RUSAGE_CHILDREN);
    uint64_t base = g.done, submitted = 0, t0 = now_us();
    while (g.done - base < (uint64_t)n) {
        while (submitted < (uint64_t)n && submitted - (g.done - base) < (uint64_t)window) {
            submit_one();
            submitted++;
        }
        loop_once(100);
    }
    double secs = (double)(now_us() - t0) / 1e6;
    destroy_pool();
    if (cpu)
        *cpu = (double)(cpu_us(RUSAGE_SELF) + cpu_us(RUSAGE_CHILDREN) - c0) / n;
    return n / secs;
}

/* One process per event: posix_spawn, the event on stdin, waitpid. */
static double fork_exec(int n, int parallel)
{
    sigset_t none;
    sigemptyset(&none);
    uint64_t t0 = now_us();
    int left = n;
    while (left > 0) {
        pid_t pids[64];
        int k = parallel < left ? parallel : left;
        for (int i = 0; i < k; i++) {
            int p[2];
            if (pipe2(p, O_CLOEXEC) < 0) {
                perror("pipe2");
                exit(1);
            }
            posix_spawn_file_actions_t fa;
            posix_spawnattr_t attr;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_adddup2(&fa, p[0], 0);
            posix_spawnattr_init(&attr);
            posix_spawnattr_setsigmask(&attr, &none);
            posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
            char *argv[] = {g.noop_process, NULL};
            int rc = posix_spawn(&pids[i], g.noop_process, &fa, &attr, argv, environ);
            posix_spawn_file_actions_destroy(&fa);
            posix_spawnattr_destroy(&attr);
            close(p[0]);
            if (rc != 0) {
                fprintf(stderr, "posix_spawn(%s): %s\n", g.noop_process, strerror(rc));
                exit(1);
            }
            ssize_t w = write(p[1], g_data, sizeof(g_data) - 1);
            (void)w;
            close(p[1]);
        }
        for (int i = 0; i < k; i++) {
            int st;
            while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
                ;
        }
        left -= k;
    }
    return n / ((double)(now_us() - t0) / 1e6);
}

int main(int argc, char **argv)
{
    int quick = 0, tp_only = 0, depths[16], n_depths = 0;
    const char *fdir = NULL;
    static const char usage[] = "usage: weft-bench-pool [--quick] [--functions-dir DIR] "
                                "[--throughput-only] [--depths 1,4,8,16]\n";
    static const struct option opts[] = {{"quick", no_argument, NULL, 'q'},
                                         {"functions-dir", required_argument, NULL, 'f'},
                                         {"throughput-only", no_argument, NULL, 't'},
                                         {"depths", required_argument, NULL, 'd'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "qf:td:h", opts, NULL)) != -1) {
        switch (c) {
        case 'q':
            quick = 1;
            break;
        case 'f':
            fdir = optarg;
            break;
        case 't':
            tp_only = 1;
            break;
        case 'd':
            for (char *p = optarg, *end; *p && n_depths < 16; p = *end ? end + 1 : end) {
                long v = strtol(p, &end, 10);
                if (end == p || v < 1 || v > WEFT_POOL_MAX_PIPELINE_DEPTH ||
                    (*end && *end != ',')) {
                    fprintf(stderr, "weft-bench-pool: bad --depths %s\n", optarg);
                    return 2;
                }
                depths[n_depths++] = (int)v;
            }
            break;
        case 'h':
            printf("%s", usage);
            return 0;
        default:
            fprintf(stderr, "%s", usage);
            return 2;
        }
    }
    char dir[PATH_MAX];
    weft_exe_dir(dir, sizeof(dir));
    snprintf(g.worker, sizeof(g.worker), "%.4000s/weft-worker", dir);
    snprintf(g.noop_process, sizeof(g.noop_process), "%.4000s/weft-bench-noop", dir);
    if (fdir)
        snprintf(g.functions, sizeof(g.functions), "%s", fdir);
    else
        snprintf(g.functions, sizeof(g.functions), "%.4000s/../functions", dir);

    static const int signals[] = {SIGCHLD};
    char err[256];
    if (weft_loop_open(&g.loop, signals, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft-bench-pool: %s\n", err);
        return 1;
    }
    g.loop.on_child = on_child;

    g_ev.id = "bench-1";
    g_ev.source = "/weft/bench";
    g_ev.spec_version = "1.0";
    g_ev.type = "org.weft.bench";
    g_ev.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    g_ev.binary_data.data = (uint8_t *)g_data;
    g_ev.binary_data.len = sizeof(g_data) - 1;

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int workers = cores > 0 && cores < 64 ? (int)cores : 2;
    int n_cold = quick ? 5 : 21, n_warm = quick ? 2000 : 20000, n_tp = quick ? 20000 : 200000;
    int n_exec = quick ? 2000 : 20000, n_fork = quick ? 500 : 3000;

    printf("weft-bench-pool: %d cores, %d workers for throughput, event of %zu bytes\n", (int)cores,
           workers, sizeof(g_data) - 1);
    fflush(stdout);
    if (n_depths) {
        for (int i = 0; i < n_depths; i++) {
            double cpu;
            double tp = throughput("noop.so", NULL, workers, n_tp, 256, depths[i], &cpu);
            printf("  throughput, static pool of %d, noop.so, pipeline depth %2d  %8.0f events/s  "
                   "%6.2f us CPU/event  (%d events)\n",
                   workers, depths[i], tp, cpu, n_tp);
            fflush(stdout);
        }
        return g.failed ? 1 : 0;
    }
    if (!tp_only) {
        uint64_t cold_so = cold_start("noop.so", NULL, n_cold);
        printf("  cold start, ondemand pool at zero -> first result, noop.so   %8.2f ms  (median "
               "of %d)\n",
               (double)cold_so / 1000.0, n_cold);
        fflush(stdout);
        uint64_t cold_py = cold_start("upper.py", "exec", n_cold);
        printf("  cold start, ondemand pool at zero -> first result, upper.py  %8.2f ms  (median "
               "of %d)\n",
               (double)cold_py / 1000.0, n_cold);
        fflush(stdout);
        uint64_t p50, p99;
        double mean;
        warm(n_warm, &p50, &p99, &mean);
        printf("  warm invocation round trip, noop.so, one at a time         %8.1f us  (p50 %llu "
               "us, p99 %llu us, %d calls)\n",
               mean, (unsigned long long)p50, (unsigned long long)p99, n_warm);
        fflush(stdout);
    }
    double cpu1, cpud;
    double tp1 = throughput("noop.so", NULL, workers, n_tp, 256, 1, &cpu1);
    printf("  throughput, static pool of %d, noop.so, depth 1            %8.0f events/s  "
           "%6.2f us CPU/event  (%d events)\n",
           workers, tp1, cpu1, n_tp);
    fflush(stdout);
    double tp = throughput("noop.so", NULL, workers, n_tp, 256, 0, &cpud);
    printf("  throughput, static pool of %d, noop.so, depth %-2d (default)  %8.0f events/s  "
           "%6.2f us CPU/event  (%d events)\n",
           workers, WEFT_POOL_DEFAULT_PIPELINE_DEPTH, tp, cpud, n_tp);
    printf("  pipelining: %.1fx the events/s, %.1fx less CPU per event\n", tp / tp1, cpu1 / cpud);
    fflush(stdout);
    if (tp_only)
        return g.failed ? 1 : 0;
    double tp_py = throughput("upper.py", "exec", workers, n_exec, 256, 0, NULL);
    printf("  throughput, static pool of %d, upper.py (exec runtime)     %8.0f events/s  (%d "
           "events)\n",
           workers, tp_py, n_exec);
    fflush(stdout);
    double fe = fork_exec(n_fork, workers);
    printf("  fork+exec of a no-op process per event, %d at a time        %8.0f events/s  (%d "
           "events)\n",
           workers, fe, n_fork);
    printf("  pool / fork+exec                                           %8.1fx\n", tp / fe);
    if (g.failed)
        printf("  (%llu invocations did not answer ok)\n", (unsigned long long)g.failed);
    return g.failed ? 1 : 0;
}
