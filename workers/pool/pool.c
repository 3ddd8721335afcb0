/*
 * pool.c - pools of weft-worker processes: static, dynamic and ondemand
 * (see pool.h).
 *
 * Runs in the dispatcher process, on its loop thread only.
 *
 * Why posix_spawn and not a forking supervisor: the dispatcher holds
 * librdkafka, nats.c and libpq threads, so fork() there could leave locks held
 * forever in the child and would copy every secret in memory into function
 * code. posix_spawn (vfork + exec inside glibc) is safe in a threaded process
 * and the worker starts from a clean image, an environment built here from
 * the function's allow-list, no inherited fds beyond 0-3 and default signal
 * dispositions and mask (the dispatcher blocks signals for signalfd; a
 * blocked SIGTERM would survive exec and make workers unkillable by SIGTERM).
 *
 * Each worker sits in its own process group so that a Ctrl-C aimed at the
 * dispatcher does not kill invocations in flight: the dispatcher decides
 * when workers stop, and it signals the whole group, so the program of an
 * exec function (and whatever that program started) ends with its worker.
 * PR_SET_PDEATHSIG in the worker covers the dispatcher dying hard; note it
 * fires when the *spawning thread* ends, which is why all of this runs on
 * the long-lived loop thread.
 *
 * Scaling follows php-fpm's process manager: one maintenance pass per tick
 * decides what to start and what to retire; dynamic pools start workers in
 * rounds one second apart whose size doubles while idle workers are short
 * (1, 2, 4 ... up to max_spawn_rate), so a burst grows the pool quickly
 * without a fork storm, and retire at most one surplus idle worker per
 * second. Workers stopped on purpose (idle, recycled, surplus, quarantine)
 * get EOF on their channel and exit 0; they are "retiring" and their end is
 * never counted as a crash.
 *
 * Invariants:
 *  - at most max_workers processes exist at any time (a slot is only
 *    reused once its previous process was reaped), so at most that many
 *    invocations run at once;
 *  - a worker runs at most one invocation at a time; it may hold more
 *    (pipelining, see pool.h): wk->inv is a FIFO whose first element is
 *    the running invocation, and each Result must carry the seq of that
 *    first element; anything else is a bad frame and the worker is killed;
 *  - invocations queued behind a running one keep their frame until they
 *    start (they go back to the pool's FIFO, untouched, when their worker
 *    is lost); a running invocation's frame is freed once it is sent;
 *  - pool->queued counts the pool's FIFO, pool->pipelined the invocations
 *    queued on workers, pool->running the workers with an invocation;
 *  - every submitted invocation gets exactly one callback (unless the pool
 *    is destroyed first), and never from inside weft_pool_submit: a
 *    quarantined pool answers its queue from tick, reaped or the channel
 *    handler;
 *  - a pid (and its process group) is signalled only while it is ours and
 *    unreaped: the slot's pid is cleared before anything else when the
 *    caller reports it reaped, so a recycled pid is never hit;
 *  - epoll registrations point at slots of a fixed array that lives as long
 *    as the pool. A slot is reused for the next worker, so an event already
 *    fetched for the previous channel may arrive for the new one; the handler
 *    therefore trusts read()/send() results, never the event bits.
 */
#include "pool.h"

#include <ctype.h>
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
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"
#include "log.h"
#include "frames.pb-c.h"
#include "weft_io.h"

#define BACKOFF_MIN_MS 50u
#define BACKOFF_MAX_MS 5000u
#define KILL_GRACE_MS 1000u
/* A retiring worker gets this long to exit on EOF (an exec program gets
 * 1 s of it to exit) before SIGTERM. */
#define RETIRE_GRACE_MS 2000u
/* php-fpm's maintenance period: one dynamic spawn round or one surplus
 * retirement per second. */
#define ROUND_MS 1000u
/* A worker must send its ready frame within this time after the spawn:
 * weft_init of a heavy function may take a while, but not forever. */
#define STARTUP_TIMEOUT_MS 30000u
/* Room in a Result frame beyond the data: error (1 KiB), content type,
 * field tags and lengths. */
#define FRAME_SLACK (64u * 1024u)
#define READ_CHUNK (64u * 1024u)
/* An idle worker's input buffer is released above this size. */
#define INBUF_KEEP (256u * 1024u)
/* Pipelining (pool.h): a worker holds at most about this much expected
 * work (the pool's moving average of service times, times the invocations
 * it holds), so a slow function is not pipelined and nothing waits long
 * behind one of its calls while another worker could have run it. The
 * default of pipeline_budget_us. */
#define PIPELINE_BUDGET_US 5000u
/* Frames larger than this are never queued behind another invocation,
 * and the frames queued behind one invocation stay under
 * PIPELINE_MAX_BYTES: memory kept for requeueing stays small. */
#define PIPELINE_MAX_FRAME (64u * 1024u)
#define PIPELINE_MAX_BYTES (256u * 1024u)
/* Frames gathered into one sendmsg(). */
#define FLUSH_IOV 64

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
    uint8_t *frame; /* the Invoke frame; freed once sent while running */
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
    uint64_t handed; /* invocations handed to this process */
    pool_inv_t *inv; /* FIFO: the running invocation first, then those
                      * queued behind it; NULL when idle */
    pool_inv_t *inv_tail;
    int n_inv;
    size_t queued_bytes;   /* frame bytes of the FIFO behind the first */
    pool_inv_t *unsent;    /* first invocation not completely sent, or NULL */
    size_t out_off;        /* bytes of unsent->frame already sent */
    uint64_t run_start_us; /* when the running invocation could start */
    uint32_t ep_events;
    weft_buf_t in;
    uint64_t deadline_ms; /* 0: none */
    uint64_t idle_since_ms;
    int stopping;        /* channel closed, waiting for the process to end */
    int retiring;        /* stopped on purpose: its end is not a crash */
    int term_sent;       /* SIGTERM sent */
    int killed;          /* SIGKILL sent */
    uint64_t term_at_ms; /* retiring: SIGTERM due */
    uint64_t kill_at_ms; /* SIGKILL due once SIGTERM was sent */
} pool_worker_t;

struct weft_pool {
    char *function;
    char *runtime;
    char *entry;
    char *symbol;
    char *worker_path;
    char *run_as_user;
    char *run_as_group;
    char **envp; /* NULL-terminated, owned */
    weft_pool_mode_t mode;
    int n_static;    /* static: workers kept */
    int n_start;     /* workers started with the pool */
    int max_workers; /* slots */
    int min_spare, max_spare, max_spawn_rate;
    uint32_t idle_timeout_ms;
    uint32_t max_requests;
    int storm_count; /* 0: no brake */
    uint32_t storm_window_ms;
    uint32_t quarantine_ms;
    int quiet;
    uint32_t timeout_ms;
    uint32_t memory_mb;
    uint32_t max_result_bytes;
    int epfd;
    weft_pool_done_fn done;
    void *ctx;
    pool_worker_t *workers;
    pool_inv_t *head, *tail; /* FIFO of invocations waiting for a worker */
    size_t queued;
    size_t running;     /* workers with an invocation running */
    size_t pipelined;   /* invocations queued behind a running one */
    int depth;          /* pipeline_depth */
    uint64_t budget_us; /* pipeline_budget_us */
    uint64_t svc16;     /* moving average of service times, 1/16 us */
    int svc_known;      /* one Result measured at least */
    uint64_t next_seq;
    uint32_t backoff_ms;    /* next hold after an abnormal end */
    uint64_t hold_until_ms; /* no worker is started before this */
    int spawn_failed;       /* posix_spawn failed: tick answers the queue */
    char spawn_error[256];
    int spawn_rate; /* dynamic: size of the next round */
    uint64_t next_round_ms;
    uint64_t next_retire_ms;
    uint64_t *storm; /* ring of the last storm_count abnormal ends */
    int storm_n, storm_pos;
    int quarantined;
    uint64_t quarantine_until_ms;
    /* totals for weft_pool_stats */
    uint64_t n_invocations, n_crashes, n_timeouts, n_recycles, n_idle_exits, n_spawns,
        n_quarantines;
};

static uint64_t now_us(void)
{
    return weft_clock_mono_us();
}

static uint64_t now_ms(void)
{
    return weft_clock_mono_ms();
}

static void plog(const weft_pool_t *pool, pid_t pid, weft_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The house log line, ending in the pool's fields. It is written with one
 * write() so it does not interleave with the workers' own lines on the
 * shared stderr. */
static void plog(const weft_pool_t *pool, pid_t pid, weft_log_level_t level, const char *fmt, ...)
{
    if (pool->quiet && level <= WEFT_LOG_INFO)
        return;
    char suffix[128];
    int n = snprintf(suffix, sizeof(suffix), " function=%.60s", pool->function);
    if (pid > 0)
        snprintf(suffix + n, sizeof(suffix) - (size_t)n, " pid=%ld", (long)pid);
    va_list ap;
    va_start(ap, fmt);
    weft_log_vline(level, "pool", (long)getpid(), suffix, fmt, ap);
    va_end(ap);
}

static uint32_t next_backoff(weft_pool_t *pool)
{
    uint32_t d = pool->backoff_ms;
    pool->backoff_ms = d * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d * 2;
    return d;
}

const char *weft_pool_mode_name(weft_pool_mode_t mode)
{
    switch (mode) {
    case WEFT_POOL_DYNAMIC:
        return "dynamic";
    case WEFT_POOL_ONDEMAND:
        return "ondemand";
    default:
        return "static";
    }
}

int weft_pool_mode_parse(const char *name, weft_pool_mode_t *mode)
{
    static const weft_pool_mode_t all[] = {WEFT_POOL_STATIC, WEFT_POOL_DYNAMIC, WEFT_POOL_ONDEMAND};
    for (size_t i = 0; name && i < 3; i++) {
        if (strcmp(name, weft_pool_mode_name(all[i])) == 0) {
            *mode = all[i];
            return 0;
        }
    }
    return -1;
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
    pool->n_invocations++;
    pool->done(inv->opaque, out, pool->ctx);
    inv_free(inv);
}

static void report_crash(weft_pool_t *pool, pool_inv_t *inv, pid_t pid, const char *reason,
                         uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void report_crash(weft_pool_t *pool, pool_inv_t *inv, pid_t pid, const char *reason,
                         uint32_t retry_after_ms, const char *fmt, ...)
{
    char error[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, sizeof(error), fmt, ap);
    va_end(ap);
    weft_outcome_t out = {
        .kind = WEFT_OUTCOME_CRASH,
        .content_type = "",
        .error = error,
        .reason = reason,
        .retry_after_ms = retry_after_ms,
        .pid = pid,
    };
    inv_finish(pool, inv, &out);
}

/* Detaches the whole queue (callbacks may submit again). */
static pool_inv_t *queue_take(weft_pool_t *pool)
{
    pool_inv_t *inv = pool->head;
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    return inv;
}

static pool_inv_t *queue_pop(weft_pool_t *pool)
{
    pool_inv_t *inv = pool->head;
    if (inv) {
        pool->head = inv->next;
        if (!pool->head)
            pool->tail = NULL;
        inv->next = NULL;
        pool->queued--;
    }
    return inv;
}

/* The worker's running invocation can start now: its deadline counts from
 * here (pool.h, "Pipelining"). */
static void worker_start_clock(pool_worker_t *wk, uint64_t now)
{
    wk->run_start_us = now;
    wk->deadline_ms = wk->pool->timeout_ms ? now / 1000u + wk->pool->timeout_ms : 0;
}

/* Hands inv to wk: it runs at once on an idle worker, else it queues
 * behind what the worker holds. The caller flushes. */
static void worker_push(pool_worker_t *wk, pool_inv_t *inv, uint64_t now)
{
    weft_pool_t *pool = wk->pool;
    inv->next = NULL;
    if (wk->inv) {
        wk->inv_tail->next = inv;
        wk->queued_bytes += inv->frame_len;
        pool->pipelined++;
    } else {
        wk->inv = inv;
        pool->running++;
        worker_start_clock(wk, now);
    }
    wk->inv_tail = inv;
    wk->n_inv++;
    if (!wk->unsent) {
        wk->unsent = inv;
        wk->out_off = 0;
    }
}

/* The running invocation got its Result: takes it off the worker (the
 * caller reports it); the next one in the worker's FIFO starts now. */
static pool_inv_t *worker_pop(pool_worker_t *wk, uint64_t now)
{
    weft_pool_t *pool = wk->pool;
    pool_inv_t *inv = wk->inv;
    /* Service time as the pool sees it (it includes the time the Result
     * waited to be read; with several read at once the first carries the
     * wait, the others ~0, so the average stays right). Moving average
     * over about 8 Results, in 1/16 us. */
    uint64_t took = now > wk->run_start_us ? now - wk->run_start_us : 0;
    if (took > 60000000u)
        took = 60000000u;
    if (wk->served == 0) {
        /* A worker's first call pays for page faults and lazy binding:
         * not a sample. */
    } else if (!pool->svc_known) {
        pool->svc16 = took * 16u;
        pool->svc_known = 1;
    } else {
        pool->svc16 = pool->svc16 - pool->svc16 / 8u + took * 2u;
    }
    wk->inv = inv->next;
    inv->next = NULL;
    wk->n_inv--;
    if (wk->inv) {
        pool->pipelined--;
        wk->queued_bytes -= wk->inv->frame_len;
        if (wk->unsent != wk->inv) { /* completely sent: never needed again */
            free(wk->inv->frame);
            wk->inv->frame = NULL;
        }
        worker_start_clock(wk, now);
    } else {
        wk->inv_tail = NULL;
        wk->deadline_ms = 0;
        pool->running--;
    }
    return inv;
}

/* The worker is lost or stopped: the invocations queued behind its running
 * one never ran. They go back to the front of the pool's FIFO, in their
 * order, with their frames as they were packed: no callback, and the
 * attempt the function sees is unchanged. */
static void worker_requeue(pool_worker_t *wk)
{
    weft_pool_t *pool = wk->pool;
    pool_inv_t *first = wk->inv ? wk->inv->next : NULL;
    if (!first)
        return;
    pool_inv_t *last = wk->inv_tail;
    size_t n = (size_t)wk->n_inv - 1;
    wk->inv->next = NULL;
    wk->inv_tail = wk->inv;
    wk->n_inv = 1;
    wk->queued_bytes = 0;
    if (wk->unsent && wk->unsent != wk->inv) {
        wk->unsent = NULL;
        wk->out_off = 0;
    }
    pool->pipelined -= n;
    last->next = pool->head;
    pool->head = first;
    if (!pool->tail)
        pool->tail = last;
    pool->queued += n;
    plog(pool, wk->pid, WEFT_LOG_INFO,
         "%zu invocations queued on the worker go back to the pool queue", n);
}

/* Takes the running invocation off a worker that is lost (the caller
 * reports it); those queued behind it go back to the pool's FIFO. */
static pool_inv_t *worker_detach(pool_worker_t *wk)
{
    pool_inv_t *inv = wk->inv;
    if (!inv)
        return NULL;
    worker_requeue(wk);
    wk->inv = wk->inv_tail = NULL;
    wk->n_inv = 0;
    wk->unsent = NULL;
    wk->out_off = 0;
    wk->deadline_ms = 0;
    wk->pool->running--;
    return inv;
}

/* ---- processes: signals --------------------------------------------------- */

/* The worker leads its own process group: signalling the group reaches an
 * exec program and its children too. */
static void worker_signal(pool_worker_t *wk, int sig)
{
    if (wk->pid <= 0)
        return;
    if (kill(-wk->pid, sig) != 0)
        (void)kill(wk->pid, sig);
}

/* ---- channel -------------------------------------------------------------- */

static void worker_set_events(pool_worker_t *wk, uint32_t events)
{
    if (wk->io.fd < 0 || wk->ep_events == events)
        return;
    struct epoll_event ee = {.events = events, .data.ptr = &wk->io};
    if (epoll_ctl(wk->pool->epfd, EPOLL_CTL_MOD, wk->io.fd, &ee) < 0)
        plog(wk->pool, wk->pid, WEFT_LOG_ERROR, "epoll_ctl() failed: %s", strerror(errno));
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
    weft_buf_free(&wk->in);
    /* Nothing more is sent: the running invocation's frame is not needed
     * (those queued behind it are requeued with theirs). */
    if (wk->inv) {
        free(wk->inv->frame);
        wk->inv->frame = NULL;
        if (wk->unsent == wk->inv) {
            wk->unsent = wk->inv->next;
            wk->out_off = 0;
        }
    }
}

/* Stops using a worker at once: its channel is closed (so it gets
 * EOF/EPIPE and no late frame of it is ever read), its group gets SIGTERM
 * now and SIGKILL from tick after the grace. An invocation still attached
 * is reported when the process is reaped, with the real cause of its end. */
static void worker_terminate(pool_worker_t *wk, uint64_t now)
{
    worker_requeue(wk);
    channel_close(wk);
    wk->stopping = 1;
    if (wk->pid > 0 && !wk->term_sent) {
        worker_signal(wk, SIGTERM);
        wk->term_sent = 1;
        wk->kill_at_ms = now + KILL_GRACE_MS;
    }
}

/* Stops a worker that did nothing wrong (idle, recycled, surplus,
 * quarantine): EOF on its channel makes it exit 0; SIGTERM follows only if
 * it has not after RETIRE_GRACE_MS. */
static void worker_retire(pool_worker_t *wk, uint64_t now, const char *why)
{
    if (wk->stopping || wk->pid <= 0)
        return;
    plog(wk->pool, wk->pid, WEFT_LOG_INFO, "stopping worker: %s", why);
    worker_requeue(wk); /* only idle workers are retired; this is a guard */
    channel_close(wk);
    wk->stopping = 1;
    wk->retiring = 1;
    wk->term_at_ms = now + RETIRE_GRACE_MS;
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
    plog(wk->pool, wk->pid, WEFT_LOG_WARN, "bad frame from worker, terminating it: %s", why);
    pid_t pid = wk->pid;
    pool_inv_t *inv = worker_detach(wk);
    worker_terminate(wk, now_ms());
    if (inv)
        report_crash(wk->pool, inv, pid, "bad_frame", 0, "bad frame from worker: %s", why);
}

static void pool_dispatch(weft_pool_t *pool, pool_worker_t *more);
static void pool_scale(weft_pool_t *pool, uint64_t now);
static void note_crash(weft_pool_t *pool, uint64_t now);
static void answer_quarantined(weft_pool_t *pool, uint64_t now);

/* Marks n more bytes as sent; a running invocation's frame is freed once
 * it is completely sent. */
static void worker_sent(pool_worker_t *wk, size_t n)
{
    while (n && wk->unsent) {
        pool_inv_t *inv = wk->unsent;
        size_t left = inv->frame_len - wk->out_off;
        if (n < left) {
            wk->out_off += n;
            return;
        }
        n -= left;
        wk->unsent = inv->next;
        wk->out_off = 0;
        if (inv == wk->inv) {
            free(inv->frame);
            inv->frame = NULL;
        }
    }
}

/* Sends every frame the worker holds and has not received yet, gathered
 * into as few sendmsg() calls as the socket buffer allows. */
static void worker_flush(pool_worker_t *wk)
{
    while (wk->unsent && wk->io.fd >= 0) {
        struct iovec iov[FLUSH_IOV];
        int n = 0;
        size_t off = wk->out_off;
        for (pool_inv_t *inv = wk->unsent; inv && n < FLUSH_IOV; inv = inv->next) {
            iov[n].iov_base = inv->frame + off;
            iov[n].iov_len = inv->frame_len - off;
            off = 0;
            n++;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(wk->io.fd, &mh, MSG_NOSIGNAL);
        if (w > 0) {
            worker_sent(wk, (size_t)w);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* Frames may be larger than the socket buffer. */
            worker_set_events(wk, EPOLLIN | EPOLLOUT);
            return;
        }
        plog(wk->pool, wk->pid, WEFT_LOG_WARN, "send() failed on worker channel: %s",
             strerror(w < 0 ? errno : EPIPE));
        worker_terminate(wk, now_ms());
        return;
    }
    worker_set_events(wk, EPOLLIN);
}

/* Reasons a worker may put in Result.crash; anything else is a bad frame. */
static int known_crash_reason(const char *r)
{
    if (strcmp(r, "exited") == 0 || strcmp(r, "bad_frame") == 0 || strcmp(r, "memory") == 0)
        return 1;
    if (strncmp(r, "signal:", 7) != 0 || !r[7] || strlen(r) > 10)
        return 0;
    for (const char *p = r + 7; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    return 1;
}

/* A whole Result frame is at wk->in.data + off. */
static void worker_on_frame(pool_worker_t *wk, size_t off, size_t plen)
{
    weft_pool_t *pool = wk->pool;
    Weft__V1__Result *res =
        weft__v1__result__unpack(NULL, plen, wk->in.data + off + WEFT_FRAME_HEADER);
    uint64_t now_u = now_us(), now = now_u / 1000u;

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
        wk->idle_since_ms = now;
        uint64_t took = now - wk->started_ms;
        if (took >= 1000)
            plog(pool, wk->pid, WEFT_LOG_INFO, "worker ready after %.3f s", (double)took / 1000.0);
        return;
    }
    if (!wk->inv || wk->unsent == wk->inv) {
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
    const char *crash = res->crash ? res->crash : "";
    if (*crash && !known_crash_reason(crash)) {
        weft__v1__result__free_unpacked(res, NULL);
        bad_frame(wk, "unknown crash reason in Result");
        return;
    }

    pool_inv_t *inv = worker_pop(wk, now_u);
    wk->served++;
    wk->idle_since_ms = now;

    char error[256];
    weft_outcome_t out = {
        .kind = (weft_outcome_kind_t)res->disposition,
        .content_type = res->content_type ? res->content_type : "",
        .error = res->error ? res->error : "",
        .reason = "",
        .pid = wk->pid,
    };
    if (*crash) {
        /* The function (an exec program) ended abnormally; the worker
         * survived and restarts it. */
        out.kind = WEFT_OUTCOME_CRASH;
        out.reason = crash;
        out.content_type = "";
    } else {
        pool->backoff_ms = BACKOFF_MIN_MS;
        switch (res->disposition) {
        case WEFT__V1__RESULT__DISPOSITION__OK:
            out.error = "";
            if (res->data.len > pool->max_result_bytes) {
                /* The worker enforces the limit; this only guards the pool. */
                snprintf(error, sizeof(error),
                         WEFT_POOL_RESULT_TOO_LARGE
                         "result of %zu bytes exceeds max_result_bytes %u",
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
            if (strncmp(out.error, WEFT_POOL_RESULT_TOO_LARGE,
                        strlen(WEFT_POOL_RESULT_TOO_LARGE)) == 0)
                out.reason = "result_too_large";
            break;
        default:
            break;
        }
    }
    if (pool->max_requests && wk->served >= pool->max_requests) {
        char why[64];
        snprintf(why, sizeof(why), "recycled after %" PRIu64 " invocations", wk->served);
        worker_retire(wk, now, why);
        pool->n_recycles++;
    }
    int crashed = *crash != '\0';
    inv_finish(pool, inv, &out);
    weft__v1__result__free_unpacked(res, NULL);
    if (crashed)
        note_crash(pool, now);
    answer_quarantined(pool, now);
}

/* Reads everything the worker has sent, one recv() for as much as is
 * buffered, and handles every whole frame in it. Returns the number of
 * invocation Results handled. */
static int worker_read(pool_worker_t *wk)
{
    size_t max_payload = (size_t)wk->pool->max_result_bytes + FRAME_SLACK;
    size_t off = 0; /* bytes of wk->in handled */
    int results = 0;

    while (wk->io.fd >= 0) {
        size_t plen = 0;
        int pk = weft_frame_peek(wk->in.data + off, wk->in.len - off, max_payload, &plen);
        if (pk < 0) {
            bad_frame(wk, "frame longer than %zu bytes", max_payload);
            return results;
        }
        if (pk == 1) {
            int ready = wk->ready;
            worker_on_frame(wk, off, plen);
            off += WEFT_FRAME_HEADER + plen;
            results += ready;
            continue; /* the loop stops if the frame closed the channel */
        }
        if (off) {
            weft_buf_consume(&wk->in, off);
            off = 0;
        }
        size_t want = READ_CHUNK;
        if (wk->in.len >= WEFT_FRAME_HEADER && WEFT_FRAME_HEADER + plen - wk->in.len > want)
            want = WEFT_FRAME_HEADER + plen - wk->in.len; /* one allocation per big frame */
        if (weft_buf_reserve(&wk->in, want) < 0) {
            plog(wk->pool, wk->pid, WEFT_LOG_ERROR, "out of memory reading a %zu byte frame", plen);
            pid_t pid = wk->pid;
            pool_inv_t *inv = worker_detach(wk);
            worker_terminate(wk, now_ms());
            if (inv)
                report_crash(wk->pool, inv, pid, "memory", 0,
                             "dispatcher out of memory for a result");
            return results;
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
            plog(wk->pool, wk->pid, WEFT_LOG_WARN,
                 "worker closed its channel in the middle of a frame");
        worker_terminate(wk, now_ms());
        return results;
    }
    if (wk->io.fd < 0)
        return results; /* channel_close freed the buffer */
    if (off)
        weft_buf_consume(&wk->in, off);
    if (wk->in.len == 0)
        weft_buf_trim(&wk->in, INBUF_KEEP);
    return results;
}

static void worker_io(weft_io_t *io, uint32_t events)
{
    pool_worker_t *wk = (pool_worker_t *)io;
    (void)events;
    worker_flush(wk);
    int results = worker_read(wk);
    /* Results free workers; this one may also take more work behind the
     * invocation it is now running (pipelining). */
    pool_dispatch(wk->pool, results ? wk : NULL);
}

/* ---- processes: start and end --------------------------------------------- */

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
    if (sv[1] <= WEFT_CHANNEL_FD) {
        int fd = fcntl(sv[1], F_DUPFD_CLOEXEC, WEFT_CHANNEL_FD + 1);
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
    char *argv[24];
    int ac = 0;
    argv[ac++] = pool->worker_path;
    argv[ac++] = "--runtime";
    argv[ac++] = pool->runtime;
    argv[ac++] = "--entry";
    argv[ac++] = pool->entry;
    argv[ac++] = "--symbol";
    argv[ac++] = pool->symbol;
    argv[ac++] = "--function";
    argv[ac++] = pool->function;
    argv[ac++] = "--max-result-bytes";
    argv[ac++] = max_result;
    argv[ac++] = "--memory-mb";
    argv[ac++] = memory;
    argv[ac++] = "--ppid";
    argv[ac++] = ppid;
    if (pool->run_as_user) {
        argv[ac++] = "--run-as-user";
        argv[ac++] = pool->run_as_user;
    }
    if (pool->run_as_group) {
        argv[ac++] = "--run-as-group";
        argv[ac++] = pool->run_as_group;
    }
    if (pool->quiet)
        argv[ac++] = "--quiet";
    argv[ac] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t empty, dfl;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, sv[1], WEFT_CHANNEL_FD);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    posix_spawn_file_actions_addclosefrom_np(&fa, WEFT_CHANNEL_FD + 1);
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
    int rc = posix_spawn(&pid, pool->worker_path, &fa, &attr, argv, pool->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(sv[1]);
    if (rc != 0) {
        snprintf(errstr, errlen, "posix_spawn(%s) failed: %s", pool->worker_path, strerror(rc));
        close(sv[0]);
        return -1;
    }

    pool->n_spawns++;
    wk->pid = pid;
    wk->io.fd = sv[0];
    wk->started_ms = now;
    wk->idle_since_ms = now;
    wk->served = 0;
    wk->ready = 0;
    wk->stopping = wk->retiring = wk->term_sent = wk->killed = 0;
    wk->term_at_ms = wk->kill_at_ms = 0;
    wk->out_off = 0;
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &wk->io};
    if (epoll_ctl(pool->epfd, EPOLL_CTL_ADD, sv[0], &ee) < 0) {
        plog(pool, pid, WEFT_LOG_ERROR, "epoll_ctl() failed: %s", strerror(errno));
        worker_terminate(wk, now);
        return 0; /* the process exists: it is reaped like any other */
    }
    wk->ep_events = EPOLLIN;
    plog(pool, pid, WEFT_LOG_INFO, "worker started");
    return 0;
}

/* Starts up to n workers in free slots; returns how many started. */
static int spawn_some(weft_pool_t *pool, int n, uint64_t now)
{
    int started = 0;
    for (int i = 0; i < pool->max_workers && started < n; i++) {
        pool_worker_t *wk = &pool->workers[i];
        if (wk->pid > 0)
            continue;
        char err[256];
        if (worker_spawn(pool, wk, now, err, sizeof(err)) < 0) {
            plog(pool, 0, WEFT_LOG_ERROR, "%s", err);
            snprintf(pool->spawn_error, sizeof(pool->spawn_error), "%s", err);
            pool->spawn_failed = 1;
            pool->hold_until_ms = now + next_backoff(pool);
            break;
        }
        started++;
    }
    return started;
}

static void log_end(const weft_pool_t *pool, const pool_worker_t *wk, pid_t pid, int status,
                    uint64_t now)
{
    double secs = (double)(now - wk->started_ms) / 1000.0;
    if (WIFEXITED(status))
        plog(pool, pid, WEXITSTATUS(status) == 0 || wk->retiring ? WEFT_LOG_INFO : WEFT_LOG_WARN,
             "worker exited with code %d after %.3f s", WEXITSTATUS(status), secs);
    else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        int ours = (wk->term_sent && sig == SIGTERM) || (wk->killed && sig == SIGKILL);
        plog(pool, pid, ours ? WEFT_LOG_INFO : WEFT_LOG_WARN,
             "worker killed by signal %d after %.3f s", sig, secs);
    } else
        plog(pool, pid, WEFT_LOG_WARN, "worker ended with status 0x%x after %.3f s",
             (unsigned)status, secs);
}

static int worker_idle(const pool_worker_t *wk)
{
    return wk->pid > 0 && wk->io.fd >= 0 && wk->ready && !wk->inv && !wk->stopping;
}

/* Running an invocation, and fit to take more behind it. */
static int worker_busy(const pool_worker_t *wk)
{
    return wk->pid > 0 && wk->io.fd >= 0 && wk->ready && wk->inv && !wk->stopping;
}

/* How many invocations wk may hold now (pipelining, pool.h). */
static int worker_depth(const weft_pool_t *pool, const pool_worker_t *wk)
{
    if (pool->depth <= 1 || !pool->svc_known)
        return 1;
    uint64_t per = pool->svc16 / 16u;
    uint64_t fit = 1u + pool->budget_us / (per ? per : 1u);
    int d = fit < (uint64_t)pool->depth ? (int)fit : pool->depth;
    if (pool->max_requests && pool->max_requests - wk->served < (uint64_t)d)
        d = (int)(pool->max_requests - wk->served); /* never beyond its last */
    return d;
}

/* Hands waiting invocations to workers: one to each idle ready worker
 * first; then, if invocations still wait and `more` (a worker that has just
 * delivered Results, so it is alive and fast) has drained to half its
 * depth, queues a fair share of them behind its running invocation. Only
 * that worker: one whose invocation has been running for a while may be
 * stuck in it, and what is queued behind it would wait. */
static void pool_dispatch(weft_pool_t *pool, pool_worker_t *more)
{
    if (pool->quarantined || !pool->head)
        return;
    uint64_t now = now_us();
    int busy = 0;
    for (int i = 0; i < pool->max_workers && pool->head; i++) {
        pool_worker_t *wk = &pool->workers[i];
        if (worker_idle(wk)) {
            worker_push(wk, queue_pop(pool), now);
            worker_flush(wk);
        }
    }
    if (!more || !pool->head || !worker_busy(more))
        return;
    int depth = worker_depth(pool, more);
    if (more->n_inv > depth / 2)
        return;
    for (int i = 0; i < pool->max_workers; i++)
        busy += worker_busy(&pool->workers[i]);
    /* A fair share, so that one worker does not take a short backlog
     * while the others run dry. */
    size_t share = (pool->queued + (size_t)busy - 1) / (size_t)busy;
    int added = 0;
    while (pool->head && more->n_inv < depth && (size_t)added < share &&
           pool->head->frame_len <= PIPELINE_MAX_FRAME &&
           more->queued_bytes + pool->head->frame_len <= PIPELINE_MAX_BYTES) {
        worker_push(more, queue_pop(pool), now);
        added++;
    }
    if (added)
        worker_flush(more);
}

/* ---- scaling and the crash-storm brake ------------------------------------ */

typedef struct counts {
    int live, starting, idle, busy, stopping;
} counts_t;

static counts_t pool_count(const weft_pool_t *pool)
{
    counts_t c = {0};
    for (int i = 0; i < pool->max_workers; i++) {
        const pool_worker_t *wk = &pool->workers[i];
        if (wk->pid <= 0)
            continue;
        if (wk->stopping)
            c.stopping++;
        else if (!wk->ready)
            c.starting++;
        else if (wk->inv)
            c.busy++;
        else
            c.idle++;
    }
    c.live = c.starting + c.idle + c.busy;
    return c;
}

static int imin(int a, int b)
{
    return a < b ? a : b;
}

/* php-fpm's maintenance, run from tick, submit and reaped. Never calls
 * back. */
static void pool_scale(weft_pool_t *pool, uint64_t now)
{
    if (pool->quarantined) {
        for (int i = 0; i < pool->max_workers; i++)
            if (worker_idle(&pool->workers[i]))
                worker_retire(&pool->workers[i], now, "pool quarantined");
        return;
    }
    counts_t c = pool_count(pool);
    int waiting = (int)(pool->queued > (size_t)INT32_MAX ? INT32_MAX : pool->queued);
    int room = pool->max_workers - c.live - c.stopping; /* free slots */
    int can_spawn = now >= pool->hold_until_ms && room > 0;

    switch (pool->mode) {
    case WEFT_POOL_STATIC:
        if (can_spawn && c.live < pool->n_static)
            spawn_some(pool, imin(pool->n_static - c.live, room), now);
        break;
    case WEFT_POOL_ONDEMAND: {
        int need = waiting - c.idle - c.starting;
        if (can_spawn && need > 0)
            spawn_some(pool, imin(need, room), now);
        for (int i = 0; i < pool->max_workers; i++) {
            pool_worker_t *wk = &pool->workers[i];
            if (worker_idle(wk) && now - wk->idle_since_ms >= pool->idle_timeout_ms) {
                char why[64];
                snprintf(why, sizeof(why), "idle for %" PRIu64 " ms", now - wk->idle_since_ms);
                worker_retire(wk, now, why);
                pool->n_idle_exits++;
            }
        }
        break;
    }
    case WEFT_POOL_DYNAMIC: {
        int deficit = pool->min_spare + waiting - c.idle - c.starting;
        if (deficit > 0 && c.live < pool->max_workers) {
            if (can_spawn && now >= pool->next_round_ms) {
                int n = imin(imin(pool->spawn_rate, deficit), room);
                int got = spawn_some(pool, n, now);
                if (got > 1 || pool->spawn_rate > 1)
                    plog(pool, 0, WEFT_LOG_INFO,
                         "spawning %d workers (round of %d; %d idle, %d busy, %d waiting)", got,
                         pool->spawn_rate, c.idle, c.busy, waiting);
                pool->spawn_rate = imin(pool->spawn_rate * 2, pool->max_spawn_rate);
                pool->next_round_ms = now + ROUND_MS;
            }
        } else if (deficit <= 0) {
            pool->spawn_rate = 1;
        }
        if (c.idle > pool->max_spare && waiting == 0 && now >= pool->next_retire_ms) {
            pool_worker_t *oldest = NULL;
            for (int i = 0; i < pool->max_workers; i++) {
                pool_worker_t *wk = &pool->workers[i];
                if (worker_idle(wk) && (!oldest || wk->idle_since_ms < oldest->idle_since_ms))
                    oldest = wk;
            }
            if (oldest) {
                worker_retire(oldest, now, "more idle workers than max_spare");
                pool->n_idle_exits++;
            }
            pool->next_retire_ms = now + ROUND_MS;
        }
        break;
    }
    }
}

static void enter_quarantine(weft_pool_t *pool, uint64_t now, uint64_t span_ms)
{
    pool->quarantined = 1;
    pool->quarantine_until_ms = now + pool->quarantine_ms;
    pool->n_quarantines++;
    pool->storm_n = pool->storm_pos = 0;
    plog(pool, 0, WEFT_LOG_ERROR,
         "crash storm: %d abnormal ends within %.3f s, pool quarantined for %.3f s "
         "(no workers started, invocations answered with reason quarantined)",
         pool->storm_count, (double)span_ms / 1000.0, (double)pool->quarantine_ms / 1000.0);
    pool_scale(pool, now); /* retires the idle workers */
    for (int i = 0; i < pool->max_workers; i++) {
        pool_worker_t *wk = &pool->workers[i];
        if (wk->pid > 0 && !wk->ready && !wk->stopping)
            worker_retire(wk, now, "pool quarantined");
    }
}

/* An abnormal end: a worker that crashed, timed out, spoke garbage or died
 * before it was ready, or an exec program that died mid-invocation. */
static void note_crash(weft_pool_t *pool, uint64_t now)
{
    pool->n_crashes++;
    if (pool->storm_count <= 0 || pool->quarantined)
        return;
    pool->storm[pool->storm_pos] = now;
    pool->storm_pos = (pool->storm_pos + 1) % pool->storm_count;
    if (pool->storm_n < pool->storm_count)
        pool->storm_n++;
    if (pool->storm_n < pool->storm_count)
        return;
    uint64_t oldest = pool->storm[pool->storm_pos]; /* the ring is full */
    if (now - oldest <= pool->storm_window_ms)
        enter_quarantine(pool, now, now - oldest);
}

/* Answers the queue of a quarantined pool. Only where callbacks are
 * allowed (tick, reaped, the channel handler). */
static void answer_quarantined(weft_pool_t *pool, uint64_t now)
{
    if (!pool->quarantined || !pool->head)
        return;
    uint64_t left = pool->quarantine_until_ms > now ? pool->quarantine_until_ms - now : 0;
    pool_inv_t *inv = queue_take(pool);
    while (inv) {
        pool_inv_t *next = inv->next;
        report_crash(pool, inv, 0, "quarantined", (uint32_t)left,
                     "pool quarantined after a crash storm; it starts again in %" PRIu64 " ms",
                     left);
        inv = next;
    }
}

/* ---- API ------------------------------------------------------------------ */

static int env_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_'))
            return 0;
    return 1;
}

/* Names whose value is never copied from the dispatcher: weft's own
 * configuration and libpq's, where credentials live. A function that
 * needs such a variable gets it only as an explicit NAME=VALUE. */
static int env_protected(const char *name, size_t n)
{
    return (n >= 5 && strncmp(name, "WEFT_", 5) == 0) || (n >= 2 && strncmp(name, "PG", 2) == 0);
}

/* Sets NAME=VALUE in envp (replacing an earlier NAME). */
static int env_put(char ***envp, size_t *n, const char *name, size_t nlen, const char *value)
{
    char *kv;
    if (asprintf(&kv, "%.*s=%s", (int)nlen, name, value) < 0)
        return -1;
    for (size_t i = 0; i < *n; i++) {
        if (strncmp((*envp)[i], kv, nlen + 1) == 0) {
            free((*envp)[i]);
            (*envp)[i] = kv;
            return 0;
        }
    }
    char **nv = realloc(*envp, (*n + 2) * sizeof(*nv));
    if (!nv) {
        free(kv);
        return -1;
    }
    *envp = nv;
    nv[(*n)++] = kv;
    nv[*n] = NULL;
    return 0;
}

static int build_env(weft_pool_t *pool, const weft_pool_config_t *cfg, char *errstr, size_t errlen)
{
    size_t n = 0;
    pool->envp = calloc(1, sizeof(char *));
    if (!pool->envp || env_put(&pool->envp, &n, "PATH", 4, "/usr/bin:/bin") < 0 ||
        env_put(&pool->envp, &n, "LANG", 4, "C.UTF-8") < 0)
        goto nomem;
#ifdef POOL_SANITIZED
    /* Sanitizer builds only: let the test runner's options reach workers. */
    static const char *const san[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = getenv(san[i]);
        if (v && strlen(v) < 400 && env_put(&pool->envp, &n, san[i], strlen(san[i]), v) < 0)
            goto nomem;
    }
#endif
    if (cfg->n_env > WEFT_POOL_MAX_ENV) {
        snprintf(errstr, errlen, "env has %zu entries, at most %d", cfg->n_env, WEFT_POOL_MAX_ENV);
        return -1;
    }
    for (size_t i = 0; i < cfg->n_env; i++) {
        const char *e = cfg->env[i];
        const char *eq = e ? strchr(e, '=') : NULL;
        size_t nlen = e ? (eq ? (size_t)(eq - e) : strlen(e)) : 0;
        if (!e || !env_name_ok(e, nlen)) {
            snprintf(errstr, errlen, "env entry \"%.64s\" is not NAME or NAME=VALUE",
                     e ? e : "(null)");
            return -1;
        }
        if (eq) {
            if (env_put(&pool->envp, &n, e, nlen, eq + 1) < 0)
                goto nomem;
            continue;
        }
        if (env_protected(e, nlen)) {
            plog(pool, 0, WEFT_LOG_WARN,
                 "env %s is not copied into workers: weft's and libpq's "
                 "variables never are (give NAME=VALUE to set one)",
                 e);
            continue;
        }
        const char *v = getenv(e);
        if (v && env_put(&pool->envp, &n, e, nlen, v) < 0)
            goto nomem;
    }
    return 0;
nomem:
    snprintf(errstr, errlen, "out of memory");
    return -1;
}

weft_pool_t *weft_pool_new(const weft_pool_config_t *cfg, int epfd, weft_pool_done_fn done,
                           void *ctx, char *errstr, size_t errlen)
{
    if (!cfg || !done || epfd < 0) {
        snprintf(errstr, errlen, "invalid pool arguments");
        return NULL;
    }
    if (cfg->mode != WEFT_POOL_STATIC && cfg->mode != WEFT_POOL_DYNAMIC &&
        cfg->mode != WEFT_POOL_ONDEMAND) {
        snprintf(errstr, errlen, "unknown pool mode %d", (int)cfg->mode);
        return NULL;
    }
    int max = cfg->max_concurrency > 0 ? cfg->max_concurrency : cfg->size;
    if (cfg->mode == WEFT_POOL_STATIC && (cfg->size < 1 || cfg->size > WEFT_POOL_MAX_WORKERS)) {
        snprintf(errstr, errlen, "pool size %d out of range 1..%d", cfg->size,
                 WEFT_POOL_MAX_WORKERS);
        return NULL;
    }
    if (max < 1 || max > WEFT_POOL_MAX_WORKERS || cfg->size < 0) {
        snprintf(errstr, errlen, "max_concurrency %d out of range 1..%d", max,
                 WEFT_POOL_MAX_WORKERS);
        return NULL;
    }
    if (cfg->min_spare < 0 || cfg->max_spare < 0 || cfg->max_spawn_rate < 0) {
        snprintf(errstr, errlen, "min_spare, max_spare and max_spawn_rate must not be negative");
        return NULL;
    }
    if (cfg->pipeline_depth < 0 || cfg->pipeline_depth > WEFT_POOL_MAX_PIPELINE_DEPTH) {
        snprintf(errstr, errlen, "pipeline_depth %d out of range 0..%d", cfg->pipeline_depth,
                 WEFT_POOL_MAX_PIPELINE_DEPTH);
        return NULL;
    }
    if (cfg->max_spare && cfg->max_spare < cfg->min_spare) {
        snprintf(errstr, errlen, "max_spare %d is below min_spare %d", cfg->max_spare,
                 cfg->min_spare);
        return NULL;
    }
    const char *runtime = cfg->runtime && *cfg->runtime ? cfg->runtime : "shared_object";
    if (strcmp(runtime, "shared_object") != 0 && strcmp(runtime, "exec") != 0) {
        snprintf(errstr, errlen, "unsupported runtime %s", runtime);
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
    pool->runtime = strdup(runtime);
    pool->entry = strdup(cfg->entry);
    pool->symbol = strdup(cfg->symbol && *cfg->symbol ? cfg->symbol : "weft_handle");
    pool->worker_path = strdup(cfg->worker_path);
    if (cfg->run_as_user && *cfg->run_as_user)
        pool->run_as_user = strdup(cfg->run_as_user);
    if (cfg->run_as_group && *cfg->run_as_group)
        pool->run_as_group = strdup(cfg->run_as_group);
    pool->mode = cfg->mode;
    pool->max_workers = max;
    pool->n_static = cfg->size < max ? cfg->size : max;
    pool->min_spare = imin(cfg->min_spare, max);
    pool->max_spare = cfg->max_spare ? cfg->max_spare
                                     : (cfg->min_spare > WEFT_POOL_DEFAULT_MAX_SPARE
                                            ? cfg->min_spare
                                            : WEFT_POOL_DEFAULT_MAX_SPARE);
    pool->max_spawn_rate = cfg->max_spawn_rate ? cfg->max_spawn_rate : WEFT_POOL_DEFAULT_SPAWN_RATE;
    pool->spawn_rate = 1;
    switch (cfg->mode) {
    case WEFT_POOL_STATIC:
        pool->n_start = pool->n_static;
        break;
    case WEFT_POOL_DYNAMIC: /* php-fpm's start_servers, within the bounds */
        pool->n_start = cfg->size < pool->min_spare ? pool->min_spare : cfg->size;
        pool->n_start = imin(pool->n_start, max);
        break;
    default:
        pool->n_start = 0;
        break;
    }
    pool->idle_timeout_ms =
        cfg->idle_timeout_ms ? cfg->idle_timeout_ms : WEFT_POOL_DEFAULT_IDLE_TIMEOUT_MS;
    pool->max_requests = cfg->max_requests;
    pool->depth = cfg->pipeline_depth ? cfg->pipeline_depth : WEFT_POOL_DEFAULT_PIPELINE_DEPTH;
    pool->budget_us = cfg->pipeline_budget_us ? cfg->pipeline_budget_us : PIPELINE_BUDGET_US;
    pool->storm_count = cfg->crash_storm_count == 0  ? WEFT_POOL_DEFAULT_CRASH_STORM
                        : cfg->crash_storm_count < 0 ? 0
                                                     : cfg->crash_storm_count;
    pool->storm_window_ms =
        cfg->crash_storm_window_ms ? cfg->crash_storm_window_ms : WEFT_POOL_DEFAULT_CRASH_WINDOW_MS;
    pool->quarantine_ms = cfg->quarantine_ms ? cfg->quarantine_ms : WEFT_POOL_DEFAULT_QUARANTINE_MS;
    pool->quiet = cfg->quiet;
    pool->timeout_ms = cfg->timeout_ms;
    pool->memory_mb = cfg->memory_mb;
    pool->max_result_bytes =
        cfg->max_result_bytes ? cfg->max_result_bytes : WEFT_POOL_DEFAULT_MAX_RESULT;
    pool->epfd = epfd;
    pool->done = done;
    pool->ctx = ctx;
    pool->backoff_ms = BACKOFF_MIN_MS;
    pool->workers = calloc((size_t)max, sizeof(*pool->workers));
    pool->storm = calloc((size_t)(pool->storm_count ? pool->storm_count : 1), sizeof(uint64_t));
    if (!pool->function || !pool->runtime || !pool->entry || !pool->symbol || !pool->worker_path ||
        !pool->workers || !pool->storm ||
        (cfg->run_as_user && *cfg->run_as_user && !pool->run_as_user) ||
        (cfg->run_as_group && *cfg->run_as_group && !pool->run_as_group)) {
        snprintf(errstr, errlen, "out of memory");
        weft_pool_destroy(pool, 0);
        return NULL;
    }
    for (int i = 0; i < max; i++) {
        pool->workers[i].io.handle = worker_io;
        pool->workers[i].io.fd = -1;
        pool->workers[i].pool = pool;
    }
    if (build_env(pool, cfg, errstr, errlen) < 0) {
        weft_pool_destroy(pool, 0);
        return NULL;
    }
    uint64_t now = now_ms();
    for (int i = 0; i < pool->n_start; i++) {
        if (worker_spawn(pool, &pool->workers[i], now, errstr, errlen) < 0) {
            weft_pool_destroy(pool, 0);
            return NULL;
        }
    }
    pool->next_round_ms = now + ROUND_MS;
    pool->next_retire_ms = now + ROUND_MS;
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
    /* A quarantined pool answers from the next tick, never from here. */
    pool_dispatch(pool, NULL);
    pool_scale(pool, now_ms());
    return 0;
}

size_t weft_pool_inflight(const weft_pool_t *pool)
{
    return pool ? pool->queued + pool->pipelined + pool->running : 0;
}

void weft_pool_stats(const weft_pool_t *pool, weft_pool_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    if (!pool)
        return;
    counts_t c = pool_count(pool);
    uint64_t now = now_ms();
    st->mode = pool->mode;
    st->max_workers = pool->max_workers;
    st->workers = c.live + c.stopping;
    st->starting = c.starting;
    st->idle = c.idle;
    st->busy = c.busy;
    st->stopping = c.stopping;
    st->queued = pool->queued + pool->pipelined;
    st->pipelined = pool->pipelined;
    st->running = pool->running;
    st->pipeline_depth = pool->depth;
    st->quarantined = pool->quarantined;
    st->quarantine_left_ms =
        pool->quarantined && pool->quarantine_until_ms > now ? pool->quarantine_until_ms - now : 0;
    st->invocations = pool->n_invocations;
    st->crashes = pool->n_crashes;
    st->timeouts = pool->n_timeouts;
    st->recycles = pool->n_recycles;
    st->idle_exits = pool->n_idle_exits;
    st->spawns = pool->n_spawns;
    st->quarantines = pool->n_quarantines;
}

/* A worker died before it was ready. If no worker of the pool is ready
 * either, the queue would wait for a respawn that may fail the same way (a
 * missing .so, a weft_init that fails): answer the queued invocations now,
 * so the dispatcher can retry or dead-letter them instead of stalling. */
static void fail_queue_if_none_ready(weft_pool_t *pool, const char *reason, const char *error)
{
    for (int i = 0; i < pool->max_workers; i++)
        if (pool->workers[i].ready && !pool->workers[i].stopping)
            return;
    pool_inv_t *inv = queue_take(pool);
    while (inv) {
        pool_inv_t *next = inv->next;
        report_crash(pool, inv, 0, reason, 0, "worker could not start: %s", error);
        inv = next;
    }
}

int weft_pool_reaped(weft_pool_t *pool, pid_t pid, int status)
{
    if (!pool || pid <= 0)
        return 0;
    pool_worker_t *wk = NULL;
    for (int i = 0; i < pool->max_workers; i++) {
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
    int retiring = wk->retiring;
    int config = early && WIFEXITED(status) && WEXITSTATUS(status) == WEFT_WORKER_EXIT_CONFIG;
    channel_close(wk);
    wk->stopping = wk->retiring = wk->term_sent = wk->killed = wk->ready = 0;
    pool_inv_t *inv = worker_detach(wk);
    if (config) {
        pool->backoff_ms = BACKOFF_MAX_MS;
        pool->hold_until_ms = now + BACKOFF_MAX_MS;
        plog(pool, pid, WEFT_LOG_ERROR,
             "configuration error: worker cannot load the function, next attempt in %u ms "
             "entry=%s",
             BACKOFF_MAX_MS, pool->entry);
    } else if (!retiring || inv) {
        pool->hold_until_ms = now + next_backoff(pool);
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
        report_crash(pool, inv, pid, reason, 0, "%s during the invocation", error);
    if (!retiring || inv)
        note_crash(pool, now);
    if (early && !retiring)
        fail_queue_if_none_ready(pool, reason, error);
    answer_quarantined(pool, now);
    pool_scale(pool, now);
    pool_dispatch(pool, NULL);
    return 1;
}

void weft_pool_tick(weft_pool_t *pool, uint64_t now)
{
    if (!pool)
        return;
    if (pool->quarantined && now >= pool->quarantine_until_ms) {
        pool->quarantined = 0;
        pool->backoff_ms = BACKOFF_MIN_MS;
        pool->hold_until_ms = 0;
        pool->spawn_rate = 1;
        pool->next_round_ms = 0;
        plog(pool, 0, WEFT_LOG_INFO, "quarantine over after %u ms, starting workers again",
             pool->quarantine_ms);
    }
    for (int i = 0; i < pool->max_workers; i++) {
        pool_worker_t *wk = &pool->workers[i];
        if (wk->inv && wk->deadline_ms && now >= wk->deadline_ms && wk->io.fd >= 0 &&
            wk->n_inv > 1) {
            /* Results already written count before the verdict: the
             * running invocation may be done, and the one after it barely
             * started (its clock starts when that Result is read). */
            worker_read(wk);
        }
        if (wk->inv && wk->deadline_ms && now >= wk->deadline_ms) {
            plog(pool, wk->pid, WEFT_LOG_WARN,
                 "invocation timed out after %u ms, terminating worker seq=%" PRIu64,
                 pool->timeout_ms, wk->inv->seq);
            pid_t pid = wk->pid;
            pool_inv_t *inv = worker_detach(wk);
            worker_terminate(wk, now);
            pool->n_timeouts++;
            report_crash(pool, inv, pid, "timeout", 0, "function did not answer within %u ms",
                         pool->timeout_ms);
        }
        if (wk->pid > 0 && !wk->ready && !wk->stopping &&
            now >= wk->started_ms + STARTUP_TIMEOUT_MS) {
            plog(pool, wk->pid, WEFT_LOG_WARN, "worker not ready %u ms after start, terminating it",
                 STARTUP_TIMEOUT_MS);
            worker_terminate(wk, now);
        }
        if (wk->pid > 0 && wk->stopping && !wk->term_sent && now >= wk->term_at_ms) {
            plog(pool, wk->pid, WEFT_LOG_WARN,
                 "worker still running %u ms after it was asked to exit, "
                 "sending SIGTERM",
                 RETIRE_GRACE_MS);
            worker_signal(wk, SIGTERM);
            wk->term_sent = 1;
            wk->kill_at_ms = now + KILL_GRACE_MS;
        }
        if (wk->pid > 0 && wk->term_sent && !wk->killed && now >= wk->kill_at_ms) {
            plog(pool, wk->pid, WEFT_LOG_WARN,
                 "worker still running %u ms after SIGTERM, sending SIGKILL", KILL_GRACE_MS);
            worker_signal(wk, SIGKILL);
            wk->killed = 1;
        }
    }
    if (pool->spawn_failed) {
        pool->spawn_failed = 0;
        int any = 0;
        for (int i = 0; i < pool->max_workers; i++)
            any |= pool->workers[i].pid > 0 && !pool->workers[i].stopping;
        if (!any)
            fail_queue_if_none_ready(pool, "config", pool->spawn_error);
    }
    answer_quarantined(pool, now);
    pool_dispatch(pool, NULL);
    pool_scale(pool, now);
    pool_dispatch(pool, NULL);
}

/* Blocks for at most grace_ms plus the SIGKILL round: only for shutdown.
 * Closing the channel is all an idle worker needs (it exits 0 on EOF, which
 * also lets its atexit handlers and sanitizers run); a busy one is inside the
 * function and its group gets SIGTERM. Either way SIGKILL ends what is left
 * after the grace. */
void weft_pool_destroy(weft_pool_t *pool, uint32_t grace_ms)
{
    if (!pool)
        return;
    if (pool->workers) {
        for (int i = 0; i < pool->max_workers; i++) {
            pool_worker_t *wk = &pool->workers[i];
            int busy = wk->inv != NULL || (wk->stopping && !wk->retiring);
            channel_close(wk);
            if (wk->pid > 0 && busy && !wk->term_sent) {
                worker_signal(wk, SIGTERM);
                wk->term_sent = 1;
            }
            wk->stopping = 1;
        }
        uint64_t deadline = now_ms() + grace_ms;
        for (;;) {
            int left = 0;
            for (int i = 0; i < pool->max_workers; i++) {
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
        for (int i = 0; i < pool->max_workers; i++) {
            pool_worker_t *wk = &pool->workers[i];
            if (wk->pid <= 0)
                continue;
            worker_signal(wk, SIGKILL);
            wk->killed = 1;
            int st;
            pid_t r;
            do
                r = waitpid(wk->pid, &st, 0);
            while (r < 0 && errno == EINTR);
            if (r == wk->pid)
                log_end(pool, wk, wk->pid, st, now_ms());
            wk->pid = 0;
        }
        for (int i = 0; i < pool->max_workers; i++) {
            pool_inv_t *inv = pool->workers[i].inv;
            while (inv) {
                pool_inv_t *next = inv->next;
                inv_free(inv);
                inv = next;
            }
            pool->workers[i].inv = NULL;
        }
    }
    while (pool->head) {
        pool_inv_t *next = pool->head->next;
        inv_free(pool->head);
        pool->head = next;
    }
    if (pool->envp)
        for (char **e = pool->envp; *e; e++)
            free(*e);
    free(pool->envp);
    free(pool->storm);
    free(pool->workers);
    free(pool->function);
    free(pool->runtime);
    free(pool->entry);
    free(pool->symbol);
    free(pool->worker_path);
    free(pool->run_as_user);
    free(pool->run_as_group);
    free(pool);
}
