/*
 * pool_internal.h - what the pieces of the pool supervisor share: the
 * pool's state, its workers' slots, the invocation FIFOs, the limits, and
 * the functions one piece calls in another. Not a public header: pool.h
 * is the interface.
 *
 * pool.c is the interface and the pool's life (new, submit, reaped, tick,
 * destroy, the worker's environment); pool_inv.c the invocations (the
 * pool's FIFO, each worker's pipeline, outcomes); pool_channel.c a
 * worker's channel (frames out and in); pool_process.c a worker's process
 * (spawn, signals, the log of its end) and dispatching invocations to
 * workers; pool_scale.c the scaling modes and the crash-storm brake. All
 * of it runs in the dispatcher, on its loop thread only (see pool.c).
 */
#ifndef WEFT_POOL_INTERNAL_H
#define WEFT_POOL_INTERNAL_H

#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "frame.h"
#include "log.h"
#include "pool.h"
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

static inline uint64_t now_us(void)
{
    return weft_clock_mono_us();
}

static inline uint64_t now_ms(void)
{
    return weft_clock_mono_ms();
}

static inline uint32_t next_backoff(weft_pool_t *pool)
{
    uint32_t d = pool->backoff_ms;
    pool->backoff_ms = d * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : d * 2;
    return d;
}

typedef struct counts {
    int live, starting, idle, busy, stopping;
} counts_t;

static inline int imin(int a, int b)
{
    return a < b ? a : b;
}

/* pool.c */
void plog(const weft_pool_t *pool, pid_t pid, weft_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* pool_inv.c */
void inv_free(pool_inv_t *inv);
void inv_finish(weft_pool_t *pool, pool_inv_t *inv, const weft_outcome_t *out);
void report_crash(weft_pool_t *pool, pool_inv_t *inv, pid_t pid, const char *reason,
                  uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
pool_inv_t *queue_take(weft_pool_t *pool);
pool_inv_t *queue_pop(weft_pool_t *pool);
void worker_push(pool_worker_t *wk, pool_inv_t *inv, uint64_t now);
pool_inv_t *worker_pop(pool_worker_t *wk, uint64_t now);
void worker_requeue(pool_worker_t *wk);
pool_inv_t *worker_detach(pool_worker_t *wk);

/* pool_channel.c */
void channel_close(pool_worker_t *wk);
void worker_terminate(pool_worker_t *wk, uint64_t now);
void worker_retire(pool_worker_t *wk, uint64_t now, const char *why);
void worker_flush(pool_worker_t *wk);
int worker_read(pool_worker_t *wk);
void worker_io(weft_io_t *io, uint32_t events);

/* pool_process.c */
void worker_signal(pool_worker_t *wk, int sig);
int worker_spawn(weft_pool_t *pool, pool_worker_t *wk, uint64_t now, char *errstr, size_t errlen);
int spawn_some(weft_pool_t *pool, int n, uint64_t now);
void log_end(const weft_pool_t *pool, const pool_worker_t *wk, pid_t pid, int status, uint64_t now);
int worker_idle(const pool_worker_t *wk);
void pool_dispatch(weft_pool_t *pool, pool_worker_t *more);

/* pool_scale.c */
counts_t pool_count(const weft_pool_t *pool);
void pool_scale(weft_pool_t *pool, uint64_t now);
void note_crash(weft_pool_t *pool, uint64_t now);
void answer_quarantined(weft_pool_t *pool, uint64_t now);

#endif
