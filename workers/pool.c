/*
 * pool.c - static pools of weft-worker processes (see pool.h).
 *
 * Runs in the dispatcher process, on its loop thread only.
 *
 * Why posix_spawn and not a forking supervisor: the dispatcher holds
 * librdkafka, nats.c and libpq threads, so fork() there could leave locks held
 * forever in the child and would copy every secret in memory into function
 * code. posix_spawn (vfork + exec inside glibc) is safe in a threaded process
 * and the worker starts from a clean image, an empty environment, no
 * inherited fds beyond 0-3 and default signal dispositions and mask (the
 * dispatcher blocks signals for signalfd; a blocked SIGTERM would survive
 * exec and make workers unkillable by SIGTERM).
 *
 * Each worker sits in its own process group so that a Ctrl-C aimed at the
 * dispatcher does not kill invocations in flight: the dispatcher decides
 * when workers stop. PR_SET_PDEATHSIG in the worker covers the dispatcher
 * dying hard; note it fires when the *spawning thread* ends, which is why
 * all of this runs on the long-lived loop thread.
 *
 * Invariants:
 *  - a worker runs at most one invocation at a time, and its Result must
 *    carry that invocation's seq; anything else is a bad frame and the
 *    worker is killed;
 *  - every submitted invocation gets exactly one callback (unless the pool
 *    is destroyed first), and never from inside weft_pool_submit;
 *  - a pid is signalled only while it is ours and unreaped: the slot's pid
 *    is cleared before anything else when the caller reports it reaped, so
 *    a recycled pid is never hit;
 *  - epoll registrations point at slots of a fixed array that lives as long
 *    as the pool. A slot is reused for the next worker, so an event already
 *    fetched for the previous channel may arrive for the new one; the handler
 *    therefore trusts read()/send() results, never the event bits.
 */
#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "frames.pb-c.h"
#include "weft_io.h"

#define CHANNEL_FD 3
#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 5000u
#define KILL_GRACE_MS 1000u
/* A worker must send its ready frame within this time after the spawn:
 * weft_init of a heavy function may take a while, but not forever. */
#define STARTUP_TIMEOUT_MS 30000u
#define MAX_WORKERS 4096
/* Room in a Result frame beyond the data: error (1 KiB), content type,
 * field tags and lengths. */
#define FRAME_SLACK (64u * 1024u)
#define READ_CHUNK (64u * 1024u)
/* An idle worker's input buffer is released above this size. */
#define INBUF_KEEP (256u * 1024u)

#if defined(__SANITIZE_ADDRESS__)
#define POOL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define POOL_SANITIZED 1
#endif
#endif

typedef struct pool_inv {
    struct pool_inv *next;
    uint64_t seq;
    uint8_t *frame; /* the Invoke frame until fully written, then NULL */
    size_t frame_len;
    void *opaque;
} pool_inv_t;

typedef struct pool_worker {
    weft_io_t io; /* first: the epoll data.ptr is the slot */
    weft_pool_t *pool;
    pid_t pid; /* 0: no process in this slot */
    uint64_t started_ms;
    int ready;       /* sent its ready frame: the function is loaded */
    uint64_t served; /* Results received from this process */
    pool_inv_t *inv; /* running invocation; NULL when idle */
    size_t out_off;  /* bytes of inv->frame already sent */
    uint32_t ep_events;
    weft_frame_buf_t in;
    uint64_t deadline_ms; /* 0: none */
    int stopping;         /* SIGTERM sent, waiting to reap */
    int killed;           /* SIGKILL sent */
    uint64_t kill_at_ms;
    uint64_t respawn_at_ms;
} pool_worker_t;

struct weft_pool {
    char *function;
    char *entry;
    char *symbol;
    char *worker_path;
    int size;
    uint32_t timeout_ms;
    uint32_t memory_mb;
    uint32_t max_result_bytes;
    int epfd;
    weft_pool_done_fn done;
    void *ctx;
    pool_worker_t *workers;
    pool_inv_t *head, *tail; /* FIFO of invocations waiting for a worker */
    size_t queued;
    size_t running;
    uint64_t next_seq;
    uint32_t backoff_ms; /* next respawn delay */
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void plog(const weft_pool_t *pool, pid_t pid, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* House log format; one write() per line so it does not interleave with the
 * workers' own lines on the shared stderr. */
static void plog(const weft_pool_t *pool, pid_t pid, const char *level, const char *fmt, ...)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s pool[%ld] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level, (long)getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if ((size_t)n >= sizeof(line) - 128)
        n = (int)sizeof(line) - 128;
    n += snprintf(line + n, sizeof(line) - (size_t)n, " function=%.60s", pool->function);
    if (pid > 0)
        n += snprintf(line + n, sizeof(line) - (size_t)n, " pid=%ld", (long)pid);
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

static uint32_t next_backoff(weft_pool_t *pool)
{
    uint32_t d = pool->backoff_ms;
    pool->backoff_ms = d * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d * 2;
    return d;
}

/* ---- invocations ---------------------------------------------------------- */

static void inv_free(pool_inv_t *inv)
{
    if (inv) {
        free(inv->frame);
        free(inv);
    }
}

static void inv_finish(weft_pool_t *pool, pool_inv_t *inv, const weft_outcome_t *out)
{
    pool->done(inv->opaque, out, pool->ctx);
    inv_free(inv);
}

static void report_crash(weft_pool_t *pool, pool_inv_t *inv, const char *reason, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));

static void report_crash(weft_pool_t *pool, pool_inv_t *inv, const char *reason, const char *fmt,
                         ...)
{
    char error[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, sizeof(error), fmt, ap);
    va_end(ap);
    weft_outcome_t out = {
        .kind = WEFT_OUTCOME_CRASH,
        .content_type = "",
        .error = error,
        .reason = reason,
    };
    inv_finish(pool, inv, &out);
}

/* Takes the running invocation off a worker; the caller reports it. */
static pool_inv_t *worker_detach(pool_worker_t *wk)
{
    pool_inv_t *inv = wk->inv;
    if (inv) {
        wk->inv = NULL;
        wk->deadline_ms = 0;
        wk->pool->running--;
    }
    return inv;
}

/* ---- channel -------------------------------------------------------------- */

static void worker_set_events(pool_worker_t *wk, uint32_t events)
{
    if (wk->io.fd < 0 || wk->ep_events == events)
        return;
    struct epoll_event ee = {.events = events, .data.ptr = &wk->io};
    if (epoll_ctl(wk->pool->epfd, EPOLL_CTL_MOD, wk->io.fd, &ee) < 0)
        plog(wk->pool, wk->pid, "error", "epoll_ctl() failed: %s", strerror(errno));
    else
        wk->ep_events = events;
}

static void channel_close(pool_worker_t *wk)
{
    if (wk->io.fd >= 0) {
        (void)epoll_ctl(wk->pool->epfd, EPOLL_CTL_DEL, wk->io.fd, NULL);
        close(wk->io.fd);
        wk->io.fd = -1;
    }
    wk->ep_events = 0;
    weft_frame_buf_free(&wk->in);
    if (wk->inv) {
        free(wk->inv->frame);
        wk->inv->frame = NULL;
    }
}

/* Stops using a worker: its channel is closed (so it gets EOF/EPIPE and no
 * late frame of it is ever read), it gets SIGTERM now and SIGKILL from tick
 * after the grace. An invocation still attached is reported when the
 * process is reaped, with the real cause of its end. */
static void worker_terminate(pool_worker_t *wk, uint64_t now)
{
    channel_close(wk);
    if (wk->pid > 0 && !wk->stopping) {
        (void)kill(wk->pid, SIGTERM);
        wk->stopping = 1;
        wk->kill_at_ms = now + KILL_GRACE_MS;
    }
}

static void bad_frame(pool_worker_t *wk, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bad_frame(pool_worker_t *wk, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    plog(wk->pool, wk->pid, "warn", "bad frame from worker, terminating it: %s", why);
    pool_inv_t *inv = worker_detach(wk);
    worker_terminate(wk, now_ms());
    if (inv)
        report_crash(wk->pool, inv, "bad_frame", "bad frame from worker: %s", why);
}

static void pool_dispatch(weft_pool_t *pool);

static void worker_flush(pool_worker_t *wk)
{
    pool_inv_t *inv = wk->inv;
    if (!inv || !inv->frame || wk->io.fd < 0)
        return;
    while (wk->out_off < inv->frame_len) {
        ssize_t w =
            send(wk->io.fd, inv->frame + wk->out_off, inv->frame_len - wk->out_off, MSG_NOSIGNAL);
        if (w > 0) {
            wk->out_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* Frames may be larger than the socket buffer. */
            worker_set_events(wk, EPOLLIN | EPOLLOUT);
            return;
        }
        plog(wk->pool, wk->pid, "warn", "send() failed on worker channel: %s",
             strerror(w < 0 ? errno : EPIPE));
        worker_terminate(wk, now_ms());
        return;
    }
    free(inv->frame);
    inv->frame = NULL;
    worker_set_events(wk, EPOLLIN);
}

/* A whole Result frame is at the start of wk->in. */
static void worker_on_frame(pool_worker_t *wk, size_t plen)
{
    weft_pool_t *pool = wk->pool;
    Weft__V1__Result *res = weft__v1__result__unpack(NULL, plen, wk->in.data + WEFT_FRAME_HEADER);
    weft_frame_buf_consume(&wk->in, WEFT_FRAME_HEADER + plen);

    if (!res) {
        bad_frame(wk, "cannot decode a Result of %zu bytes", plen);
        return;
    }
    if (!wk->ready) {
        uint64_t got = res->seq;
        weft__v1__result__free_unpacked(res, NULL);
        if (got != 0) {
            bad_frame(wk, "Result seq %" PRIu64 " before the ready frame", got);
            return;
        }
        wk->ready = 1;
        uint64_t took = now_ms() - wk->started_ms;
        if (took >= 1000)
            plog(pool, wk->pid, "info", "worker ready after %.3f s", (double)took / 1000.0);
        pool_dispatch(pool);
        return;
    }
    if (!wk->inv || wk->inv->frame) {
        uint64_t got = res->seq;
        weft__v1__result__free_unpacked(res, NULL);
        bad_frame(wk, "Result seq %" PRIu64 " with no invocation running", got);
        return;
    }
    if (res->seq != wk->inv->seq) {
        uint64_t got = res->seq;
        weft__v1__result__free_unpacked(res, NULL);
        bad_frame(wk, "Result seq %" PRIu64 ", expected %" PRIu64, got, wk->inv->seq);
        return;
    }
    if ((unsigned)res->disposition > WEFT__V1__RESULT__DISPOSITION__DROP) {
        int d = (int)res->disposition;
        weft__v1__result__free_unpacked(res, NULL);
        bad_frame(wk, "unknown disposition %d", d);
        return;
    }

    pool_inv_t *inv = worker_detach(wk);
    wk->served++;
    pool->backoff_ms = BACKOFF_MIN_MS;

    char error[256];
    weft_outcome_t out = {
        .kind = (weft_outcome_kind_t)res->disposition,
        .content_type = res->content_type ? res->content_type : "",
        .error = res->error ? res->error : "",
        .reason = "",
    };
    switch (res->disposition) {
    case WEFT__V1__RESULT__DISPOSITION__OK:
        out.error = "";
        if (res->data.len > pool->max_result_bytes) {
            /* The worker enforces the limit; this only guards the pool. */
            snprintf(error, sizeof(error),
                     WEFT_POOL_RESULT_TOO_LARGE "result of %zu bytes exceeds max_result_bytes %u",
                     res->data.len, pool->max_result_bytes);
            out.kind = WEFT_OUTCOME_FAIL;
            out.error = error;
            out.reason = "result_too_large";
        } else {
            out.data = res->data.data;
            out.len = res->data.len;
        }
        break;
    case WEFT__V1__RESULT__DISPOSITION__RETRY:
        out.retry_after_ms = res->retry_after_ms;
        break;
    case WEFT__V1__RESULT__DISPOSITION__FAIL:
        if (strncmp(out.error, WEFT_POOL_RESULT_TOO_LARGE, strlen(WEFT_POOL_RESULT_TOO_LARGE)) == 0)
            out.reason = "result_too_large";
        break;
    default:
        break;
    }
    inv_finish(pool, inv, &out);
    weft__v1__result__free_unpacked(res, NULL);
    pool_dispatch(pool);
}

static void worker_read(pool_worker_t *wk)
{
    size_t max_payload = (size_t)wk->pool->max_result_bytes + FRAME_SLACK;

    while (wk->io.fd >= 0) {
        size_t plen = 0;
        int pk = weft_frame_peek(wk->in.data, wk->in.len, max_payload, &plen);
        if (pk < 0) {
            bad_frame(wk, "frame longer than %zu bytes", max_payload);
            return;
        }
        if (pk == 1) {
            worker_on_frame(wk, plen);
            continue;
        }
        size_t want = READ_CHUNK;
        if (wk->in.len >= WEFT_FRAME_HEADER && WEFT_FRAME_HEADER + plen - wk->in.len > want)
            want = WEFT_FRAME_HEADER + plen - wk->in.len; /* one allocation per big frame */
        if (weft_frame_buf_reserve(&wk->in, want) < 0) {
            plog(wk->pool, wk->pid, "error", "out of memory reading a %zu byte frame", plen);
            pool_inv_t *inv = worker_detach(wk);
            worker_terminate(wk, now_ms());
            if (inv)
                report_crash(wk->pool, inv, "memory", "dispatcher out of memory for a result");
            return;
        }
        ssize_t r = recv(wk->io.fd, wk->in.data + wk->in.len, wk->in.cap - wk->in.len, 0);
        if (r > 0) {
            wk->in.len += (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        /* EOF or reset: the worker is exiting, or closed fd 3 and must not
         * be trusted further. Its invocation is reported once it is reaped. */
        if (wk->in.len)
            plog(wk->pool, wk->pid, "warn", "worker closed its channel in the middle of a frame");
        worker_terminate(wk, now_ms());
        return;
    }
    if (wk->in.len == 0)
        weft_frame_buf_trim(&wk->in, INBUF_KEEP);
}

static void worker_io(weft_io_t *io, uint32_t events)
{
    pool_worker_t *wk = (pool_worker_t *)io;
    (void)events;
    worker_flush(wk);
    worker_read(wk);
}

/* ---- processes ------------------------------------------------------------ */

static int worker_spawn(weft_pool_t *pool, pool_worker_t *wk, uint64_t now, char *errstr,
                        size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
        snprintf(errstr, errlen, "socketpair() failed: %s", strerror(errno));
        return -1;
    }
    /* The worker reads its end with plain blocking reads. */
    int fl = fcntl(sv[1], F_GETFL);
    if (fl >= 0)
        (void)fcntl(sv[1], F_SETFL, fl & ~O_NONBLOCK);
    /* The file actions write fds 0, 1 and 3: the worker end must not sit on
     * one of them (it can when the caller runs with low fds closed). */
    if (sv[1] <= CHANNEL_FD) {
        int fd = fcntl(sv[1], F_DUPFD_CLOEXEC, CHANNEL_FD + 1);
        close(sv[1]);
        if (fd < 0) {
            snprintf(errstr, errlen, "fcntl(F_DUPFD) failed: %s", strerror(errno));
            close(sv[0]);
            return -1;
        }
        sv[1] = fd;
    }

    char max_result[24], memory[24], ppid[24];
    snprintf(max_result, sizeof(max_result), "%u", pool->max_result_bytes);
    snprintf(memory, sizeof(memory), "%u", pool->memory_mb);
    snprintf(ppid, sizeof(ppid), "%ld", (long)getpid());
    /* clang-format off */
    char *argv[] = {
        pool->worker_path,
        "--runtime", "shared_object",
        "--entry", pool->entry,
        "--symbol", pool->symbol,
        "--function", pool->function,
        "--max-result-bytes", max_result,
        "--memory-mb", memory,
        "--ppid", ppid,
        NULL,
    };
    /* clang-format on */
    char *envp[8] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};
#ifdef POOL_SANITIZED
    /* Sanitizer builds only: let the test runner's options reach workers. */
    size_t ne = 2;
    static const char *const san[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    char sanbuf[3][512];
    for (size_t i = 0; i < 3; i++) {
        const char *v = getenv(san[i]);
        if (v && strlen(v) < 400) {
            snprintf(sanbuf[i], sizeof(sanbuf[i]), "%s=%s", san[i], v);
            envp[ne++] = sanbuf[i];
        }
    }
    envp[ne] = NULL;
#endif

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t empty, dfl;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, sv[1], CHANNEL_FD);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    posix_spawn_file_actions_addclosefrom_np(&fa, CHANNEL_FD + 1);
    sigemptyset(&empty);
    sigemptyset(&dfl);
    static const int defaults[] = {SIGTERM, SIGINT,  SIGCHLD, SIGPIPE, SIGHUP,
                                   SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        sigaddset(&dfl, defaults[i]);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);

    pid_t pid;
    int rc = posix_spawn(&pid, pool->worker_path, &fa, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(sv[1]);
    if (rc != 0) {
        snprintf(errstr, errlen, "posix_spawn(%s) failed: %s", pool->worker_path, strerror(rc));
        close(sv[0]);
        return -1;
    }

    wk->pid = pid;
    wk->io.fd = sv[0];
    wk->started_ms = now;
    wk->served = 0;
    wk->ready = 0;
    wk->stopping = wk->killed = 0;
    wk->out_off = 0;
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &wk->io};
    if (epoll_ctl(pool->epfd, EPOLL_CTL_ADD, sv[0], &ee) < 0) {
        plog(pool, pid, "error", "epoll_ctl() failed: %s", strerror(errno));
        worker_terminate(wk, now);
        return 0; /* the process exists: it is reaped like any other */
    }
    wk->ep_events = EPOLLIN;
    plog(pool, pid, "info", "worker started");
    return 0;
}

static void log_end(const weft_pool_t *pool, const pool_worker_t *wk, pid_t pid, int status,
                    uint64_t now)
{
    double secs = (double)(now - wk->started_ms) / 1000.0;
    if (WIFEXITED(status))
        plog(pool, pid, WEXITSTATUS(status) == 0 ? "info" : "warn",
             "worker exited with code %d after %.3f s", WEXITSTATUS(status), secs);
    else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        int ours = (wk->stopping && sig == SIGTERM) || (wk->killed && sig == SIGKILL);
        plog(pool, pid, ours ? "info" : "warn", "worker killed by signal %d after %.3f s", sig,
             secs);
    } else
        plog(pool, pid, "warn", "worker ended with status 0x%x after %.3f s", (unsigned)status,
             secs);
}

static int worker_idle(const pool_worker_t *wk)
{
    return wk->pid > 0 && wk->io.fd >= 0 && wk->ready && !wk->inv && !wk->stopping;
}

static void pool_dispatch(weft_pool_t *pool)
{
    for (int i = 0; i < pool->size && pool->head; i++) {
        pool_worker_t *wk = &pool->workers[i];
        if (!worker_idle(wk))
            continue;
        pool_inv_t *inv = pool->head;
        pool->head = inv->next;
        if (!pool->head)
            pool->tail = NULL;
        inv->next = NULL;
        pool->queued--;
        pool->running++;
        wk->inv = inv;
        wk->out_off = 0;
        wk->deadline_ms = pool->timeout_ms ? now_ms() + pool->timeout_ms : 0;
        worker_flush(wk);
    }
}

/* ---- API ------------------------------------------------------------------ */

weft_pool_t *weft_pool_new(const weft_pool_config_t *cfg, int epfd, weft_pool_done_fn done,
                           void *ctx, char *errstr, size_t errlen)
{
    if (!cfg || !done || epfd < 0) {
        snprintf(errstr, errlen, "invalid pool arguments");
        return NULL;
    }
    if (cfg->size < 1 || cfg->size > MAX_WORKERS) {
        snprintf(errstr, errlen, "pool size %d out of range 1..%d", cfg->size, MAX_WORKERS);
        return NULL;
    }
    if (cfg->runtime && strcmp(cfg->runtime, "shared_object") != 0) {
        snprintf(errstr, errlen, "unsupported runtime %s", cfg->runtime);
        return NULL;
    }
    if (!cfg->entry || !*cfg->entry || !cfg->worker_path || !*cfg->worker_path) {
        snprintf(errstr, errlen, "pool needs an entry and a worker path");
        return NULL;
    }
    /* posix_spawn reports a failed exec only on some platforms (glibc does,
     * valgrind's and musl's fallbacks may not): check up front. */
    if (access(cfg->worker_path, X_OK) != 0) {
        snprintf(errstr, errlen, "worker binary %s: %s", cfg->worker_path, strerror(errno));
        return NULL;
    }
    if (cfg->max_result_bytes > WEFT_FRAME_MAX - FRAME_SLACK) {
        snprintf(errstr, errlen, "max_result_bytes %u exceeds %zu", cfg->max_result_bytes,
                 WEFT_FRAME_MAX - FRAME_SLACK);
        return NULL;
    }

    weft_pool_t *pool = calloc(1, sizeof(*pool));
    if (!pool) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    pool->function = strdup(cfg->function && *cfg->function ? cfg->function : "unnamed");
    pool->entry = strdup(cfg->entry);
    pool->symbol = strdup(cfg->symbol && *cfg->symbol ? cfg->symbol : "weft_handle");
    pool->worker_path = strdup(cfg->worker_path);
    pool->size = cfg->size;
    pool->timeout_ms = cfg->timeout_ms;
    pool->memory_mb = cfg->memory_mb;
    pool->max_result_bytes =
        cfg->max_result_bytes ? cfg->max_result_bytes : WEFT_POOL_DEFAULT_MAX_RESULT;
    pool->epfd = epfd;
    pool->done = done;
    pool->ctx = ctx;
    pool->backoff_ms = BACKOFF_MIN_MS;
    pool->workers = calloc((size_t)cfg->size, sizeof(*pool->workers));
    if (!pool->function || !pool->entry || !pool->symbol || !pool->worker_path || !pool->workers) {
        snprintf(errstr, errlen, "out of memory");
        weft_pool_destroy(pool, 0);
        return NULL;
    }
    for (int i = 0; i < cfg->size; i++) {
        pool->workers[i].io.handle = worker_io;
        pool->workers[i].io.fd = -1;
        pool->workers[i].pool = pool;
    }
    uint64_t now = now_ms();
    for (int i = 0; i < cfg->size; i++) {
        if (worker_spawn(pool, &pool->workers[i], now, errstr, errlen) < 0) {
            weft_pool_destroy(pool, 0);
            return NULL;
        }
    }
    return pool;
}

int weft_pool_submit(weft_pool_t *pool, const Io__Cloudevents__V1__CloudEvent *ev,
                     const char *trigger, uint32_t attempt, void *opaque, char *errstr,
                     size_t errlen)
{
    if (!pool || !ev) {
        snprintf(errstr, errlen, "invalid submit arguments");
        return -1;
    }
    pool_inv_t *inv = calloc(1, sizeof(*inv));
    if (!inv) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    Weft__V1__Invoke msg = WEFT__V1__INVOKE__INIT;
    inv->seq = ++pool->next_seq;
    msg.seq = inv->seq;
    msg.event = (Io__Cloudevents__V1__CloudEvent *)ev; /* pack only reads it */
    msg.deadline_ms = pool->timeout_ms;
    msg.attempt = attempt;
    msg.trigger = (char *)(trigger ? trigger : "");
    inv->frame = weft_frame_pack(&msg.base, &inv->frame_len);
    if (!inv->frame) {
        snprintf(errstr, errlen, "cannot serialize the event: %s",
                 errno == EMSGSIZE ? "too large" : "out of memory");
        free(inv);
        return -1;
    }
    inv->opaque = opaque;
    if (pool->tail)
        pool->tail->next = inv;
    else
        pool->head = inv;
    pool->tail = inv;
    pool->queued++;
    pool_dispatch(pool);
    return 0;
}

size_t weft_pool_inflight(const weft_pool_t *pool)
{
    return pool ? pool->queued + pool->running : 0;
}

/* A worker died before it was ready. If no worker of the pool is ready
 * either, the queue would wait for a respawn that may fail the same way (a
 * missing .so, a weft_init that fails): answer the queued invocations now,
 * so the dispatcher can retry or dead-letter them instead of stalling. The
 * queue is detached first because callbacks may submit again. */
static void fail_queue_if_none_ready(weft_pool_t *pool, const char *reason, const char *error)
{
    for (int i = 0; i < pool->size; i++)
        if (pool->workers[i].ready && !pool->workers[i].stopping)
            return;
    pool_inv_t *inv = pool->head;
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    while (inv) {
        pool_inv_t *next = inv->next;
        report_crash(pool, inv, reason, "worker could not start: %s", error);
        inv = next;
    }
}

int weft_pool_reaped(weft_pool_t *pool, pid_t pid, int status)
{
    if (!pool || pid <= 0)
        return 0;
    pool_worker_t *wk = NULL;
    for (int i = 0; i < pool->size; i++) {
        if (pool->workers[i].pid == pid) {
            wk = &pool->workers[i];
            break;
        }
    }
    if (!wk)
        return 0;
    uint64_t now = now_ms();
    /* The pid is free for reuse from now on: never signal it again. */
    wk->pid = 0;
    /* A Result written just before the end still counts. */
    if (wk->io.fd >= 0)
        worker_read(wk);
    log_end(pool, wk, pid, status, now);

    int early = !wk->ready;
    int config = early && WIFEXITED(status) && WEXITSTATUS(status) == WEFT_WORKER_EXIT_CONFIG;
    channel_close(wk);
    wk->stopping = wk->killed = wk->ready = 0;
    pool_inv_t *inv = worker_detach(wk);
    if (config) {
        pool->backoff_ms = BACKOFF_MAX_MS;
        wk->respawn_at_ms = now + BACKOFF_MAX_MS;
        plog(pool, pid, "error",
             "configuration error: worker cannot load the function, next attempt in %u ms "
             "entry=%s",
             BACKOFF_MAX_MS, pool->entry);
    } else {
        wk->respawn_at_ms = now + next_backoff(pool);
    }

    char reason[32], error[160];
    if (WIFSIGNALED(status)) {
        snprintf(reason, sizeof(reason), "signal:%d", WTERMSIG(status));
        snprintf(error, sizeof(error), "worker killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    } else if (config) {
        snprintf(reason, sizeof(reason), "config");
        snprintf(error, sizeof(error),
                 "worker cannot load the function (exit code %d), see the "
                 "worker log",
                 WEFT_WORKER_EXIT_CONFIG);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == WEFT_WORKER_EXIT_NOMEM) {
        snprintf(reason, sizeof(reason), "memory");
        snprintf(error, sizeof(error), "worker ran out of memory (exit code %d)",
                 WEFT_WORKER_EXIT_NOMEM);
    } else {
        snprintf(reason, sizeof(reason), "exited");
        snprintf(error, sizeof(error), "worker exited with code %d",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
    if (inv)
        report_crash(pool, inv, reason, "%s during the invocation", error);
    if (early)
        fail_queue_if_none_ready(pool, reason, error);
    return 1;
}

void weft_pool_tick(weft_pool_t *pool, uint64_t now)
{
    if (!pool)
        return;
    for (int i = 0; i < pool->size; i++) {
        pool_worker_t *wk = &pool->workers[i];
        if (wk->inv && wk->deadline_ms && now >= wk->deadline_ms) {
            plog(pool, wk->pid, "warn",
                 "invocation timed out after %u ms, terminating worker seq=%" PRIu64,
                 pool->timeout_ms, wk->inv->seq);
            pool_inv_t *inv = worker_detach(wk);
            worker_terminate(wk, now);
            report_crash(pool, inv, "timeout", "function did not answer within %u ms",
                         pool->timeout_ms);
        }
        if (wk->pid > 0 && !wk->ready && !wk->stopping &&
            now >= wk->started_ms + STARTUP_TIMEOUT_MS) {
            plog(pool, wk->pid, "warn", "worker not ready %u ms after start, terminating it",
                 STARTUP_TIMEOUT_MS);
            worker_terminate(wk, now);
        }
        if (wk->pid > 0 && wk->stopping && !wk->killed && now >= wk->kill_at_ms) {
            plog(pool, wk->pid, "warn", "worker still running %u ms after SIGTERM, sending SIGKILL",
                 KILL_GRACE_MS);
            (void)kill(wk->pid, SIGKILL);
            wk->killed = 1;
        }
        if (wk->pid == 0 && now >= wk->respawn_at_ms) {
            char err[256];
            if (worker_spawn(pool, wk, now, err, sizeof(err)) < 0) {
                wk->respawn_at_ms = now + next_backoff(pool);
                plog(pool, 0, "error", "%s", err);
            }
        }
    }
    pool_dispatch(pool);
}

/* Blocks for at most grace_ms plus the SIGKILL round: only for shutdown.
 * Closing the channel is all an idle worker needs (it exits 0 on EOF, which
 * also lets its atexit handlers and sanitizers run); a busy one is inside the
 * function and gets SIGTERM. Either way SIGKILL ends what is left after the
 * grace. */
void weft_pool_destroy(weft_pool_t *pool, uint32_t grace_ms)
{
    if (!pool)
        return;
    if (pool->workers) {
        for (int i = 0; i < pool->size; i++) {
            pool_worker_t *wk = &pool->workers[i];
            int busy = wk->inv != NULL || wk->stopping;
            channel_close(wk);
            if (wk->pid > 0 && busy)
                (void)kill(wk->pid, SIGTERM);
            wk->stopping = 1;
        }
        uint64_t deadline = now_ms() + grace_ms;
        for (;;) {
            int left = 0;
            for (int i = 0; i < pool->size; i++) {
                pool_worker_t *wk = &pool->workers[i];
                if (wk->pid <= 0)
                    continue;
                int st;
                pid_t r = waitpid(wk->pid, &st, WNOHANG);
                if (r == wk->pid) {
                    log_end(pool, wk, wk->pid, st, now_ms());
                    wk->pid = 0;
                } else if (r < 0 && errno == ECHILD) {
                    wk->pid = 0; /* reaped elsewhere */
                } else {
                    left++;
                }
            }
            if (!left || now_ms() >= deadline)
                break;
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        for (int i = 0; i < pool->size; i++) {
            pool_worker_t *wk = &pool->workers[i];
            if (wk->pid <= 0)
                continue;
            (void)kill(wk->pid, SIGKILL);
            int st;
            pid_t r;
            do
                r = waitpid(wk->pid, &st, 0);
            while (r < 0 && errno == EINTR);
            if (r == wk->pid)
                log_end(pool, wk, wk->pid, st, now_ms());
            wk->pid = 0;
        }
        for (int i = 0; i < pool->size; i++)
            inv_free(pool->workers[i].inv);
    }
    while (pool->head) {
        pool_inv_t *next = pool->head->next;
        inv_free(pool->head);
        pool->head = next;
    }
    free(pool->workers);
    free(pool->function);
    free(pool->entry);
    free(pool->symbol);
    free(pool->worker_path);
    free(pool);
}
