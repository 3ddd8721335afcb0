/*
 * pool.h - pools of worker processes, supervised from the dispatcher
 * process, in php-fpm's three modes:
 *
 *   static    `size` workers, always (respawned after any end);
 *   dynamic   `size` workers at start, then between min_spare and
 *             max_spare idle ones: when fewer than min_spare are idle (or
 *             invocations wait), workers are started in rounds of 1, 2, 4,
 *             8 ... per second up to max_spawn_rate; above max_spare one
 *             idle worker is retired per second;
 *   ondemand  no worker until an invocation waits; a worker idle for
 *             idle_timeout_ms exits (scale to zero).
 *
 * In every mode at most max_concurrency workers exist, so at most that many
 * invocations run at once; the rest wait in the pool's FIFO.
 *
 * Pipelining. A worker runs one invocation at a time, but under a backlog
 * it may hold up to pipeline_depth of them: the running one plus a short
 * FIFO behind it, sent ahead (several frames in one send) so that it finds
 * its next invocation already buffered instead of sleeping for a round
 * trip; the pool reads every buffered Result in one read. For a cheap
 * function that divides the per-event cost (syscalls, wakeups, context
 * switches) by several. The rules:
 *   - an idle ready worker always gets work first, one invocation; only
 *     when every ready worker is busy and invocations still wait are they
 *     queued behind running ones (when a Result arrives or on tick, never
 *     from weft_pool_submit, which only hands work to idle workers). There
 *     is no batching window: a lone event goes out at once.
 *   - a worker gets more work queued behind its running invocation only
 *     right after it delivered Results (so it is alive and answering), once
 *     its FIFO has drained to half the depth, and only its fair share of
 *     what waits. Frames over 64 KiB are never queued behind another one,
 *     and at most 256 KiB of frames wait on one worker.
 *   - a slow function is not pipelined: a worker holds at most about 5 ms
 *     of expected work (PIPELINE_BUDGET_US in pool.c), judged from the
 *     pool's moving average of service times (over ~8 Results; nothing is
 *     pipelined before the first Result). A 10 ms function runs one call
 *     per worker as before; a 1 ms one at most 6 deep. An event thus never
 *     waits long behind another on one worker while another worker could
 *     have taken it. What was queued behind a call that turns out slow
 *     still waits for it (it is not taken back): the price of pipelining a
 *     function whose cost varies; the average then stops the pipelining.
 *   - invocations queued on workers are not "waiting" for scaling (a new
 *     worker could not take them): dynamic and ondemand pools grow on the
 *     pool's own FIFO, as before.
 *   - Results must come back in FIFO order (each carries the seq of the
 *     oldest invocation the worker holds); anything else is a bad frame.
 *   - timeout_ms counts from the moment the worker can start the
 *     invocation: when it is handed to an idle worker, or when the Result
 *     of the invocation before it on that worker arrived. Time spent
 *     queued behind another invocation is never charged.
 *   - when a worker crashes, times out, sends a bad frame or is stopped,
 *     its running invocation gets the outcome it always did (CRASH); the
 *     invocations queued behind it never ran: they go back to the front of
 *     the pool's FIFO, in order, without a callback, and run on another
 *     worker (the attempt number sent to the function is unchanged).
 *   - max_requests counts what a worker was handed, so a worker never
 *     holds invocations beyond its last one; a worker is retired only with
 *     an empty FIFO.
 *
 * Workers are started with posix_spawn() of the small weft-worker binary
 * (never a plain fork() of the threaded dispatcher, see dispatcher/DESIGN.md "Processes and fork safety"),
 * each with one channel: a SOCK_STREAM socketpair whose worker end becomes
 * fd 3 in the worker. Frames are weft.v1.Invoke / weft.v1.Result
 * (schemas/frames.proto), each prefixed by a 4-byte big-endian length.
 * Once the function is loaded (and weft_init ran), the worker sends a ready
 * frame: a Result with seq 0. Invocations (seq >= 1) go only to ready
 * workers, so loading time never counts against a deadline. A worker not
 * ready 30 s after its start is terminated.
 *
 * A worker starts with fds 0 (/dev/null), 1 and 2 (the dispatcher's
 * stderr) and 3 only, an environment of PATH=/usr/bin:/bin and LANG=C.UTF-8
 * plus the function's allow-list (cfg->env), an empty signal mask and
 * default dispositions, in its own process group (a Ctrl-C aimed at the
 * dispatcher does not kill invocations in flight; the pool signals the
 * whole group, so an exec program and its children go with the worker),
 * optionally as another user/group, with PR_SET_NO_NEW_PRIVS,
 * PR_SET_PDEATHSIG(SIGKILL) and no core dumps.
 *
 * A worker is recycled (asked to exit, then replaced) after max_requests
 * invocations. Abnormal ends (crashes, timeouts, bad frames, deaths before
 * ready) are counted: crash_storm_count of them within
 * crash_storm_window_ms quarantine the pool for quarantine_ms: one error
 * line is logged, no worker is started, queued and new invocations are
 * answered with CRASH reason "quarantined" (and retry_after_ms = the time
 * left); then the pool starts again by itself.
 *
 * All functions run on the dispatcher's loop thread (PDEATHSIG is tied to
 * the thread that spawns); nothing here blocks but weft_pool_destroy.
 * The pool registers its channel fds with the caller's epoll instance
 * (data.ptr = weft_io_t *), and expects:
 *   - weft_pool_reaped() for every child reaped by the caller's
 *     waitpid(-1, ..., WNOHANG) loop;
 *   - weft_pool_tick() at least every 50 ms (deadlines, respawn backoff).
 */
#ifndef WEFT_POOL_H
#define WEFT_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "channel.h"
#include "cloudevents.pb-c.h"

typedef struct weft_pool weft_pool_t;

typedef enum {
    WEFT_OUTCOME_OK = 0,
    WEFT_OUTCOME_RETRY = 1, /* function asked for a retry */
    WEFT_OUTCOME_FAIL = 2,  /* function failed permanently */
    WEFT_OUTCOME_DROP = 3,  /* function dropped the event */
    WEFT_OUTCOME_CRASH = 4, /* the worker ended abnormally; retryable */
} weft_outcome_kind_t;

typedef struct weft_outcome {
    weft_outcome_kind_t kind;
    const uint8_t *data; /* result bytes (OK), valid during the callback */
    size_t len;
    const char *content_type; /* never NULL */
    const char *error;        /* never NULL; "" on OK */
    /* Why the worker ended for CRASH: "timeout", "signal:N", "exited",
     * "bad_frame", "memory", "config", "quarantined"; "" otherwise.
     *   timeout   the deadline passed; reported at once, the worker is then
     *             SIGTERMed and SIGKILLed after 1 s.
     *   signal:N  the worker died of signal N while running the function.
     *   exited    the worker exited mid-call (any code but those below).
     *   memory    the worker could not allocate what the invocation needs
     *             (exit code WEFT_WORKER_EXIT_NOMEM); a function killed by
     *             RLIMIT_AS usually shows as signal:N instead.
     *   config    the worker could not load the function (it exited with
     *             WEFT_WORKER_EXIT_CONFIG before its ready frame): the
     *             function never ran.
     *   bad_frame the worker sent something that is not a valid Result for
     *             the running invocation; it was killed. (exec runtime: the
     *             program's reply was not a reply frame; the program was
     *             restarted, the worker kept.)
     *   quarantined the pool is quarantined after a crash storm; the
     *             function did not run; retry_after_ms says when the pool
     *             starts again.
     * The exec runtime also reports "exited" / "signal:N" when the
     * program (not the worker) ended in the middle of the invocation.
     * When a worker dies before it is ready and no other worker of the pool
     * is ready, every queued invocation is answered at once with CRASH and
     * that worker's reason ("config", "signal:N", ...; error "worker could
     * not start: ...") instead of waiting for a respawn that is likely to
     * fail the same way.
     * With kind FAIL, reason "result_too_large" means the function returned
     * OK with more than max_result_bytes: the worker replaces that result by
     * a FAIL whose error starts with WEFT_POOL_RESULT_TOO_LARGE (so the
     * worker stays alive and the event is dead-lettered at once: running it
     * again would produce the same result). Otherwise "". */
    const char *reason;
    uint32_t retry_after_ms;
    pid_t pid; /* the worker that ran it; 0 when none did */
} weft_outcome_t;

/* Exit codes, the result-size default and the error prefix the worker
 * shares with the pool: channel.h. */

/* Called once per submitted invocation, from weft_pool_tick,
 * weft_pool_reaped or the channel handler (never from inside
 * weft_pool_submit). The callback may call weft_pool_submit; it must not
 * call weft_pool_destroy. */
typedef void (*weft_pool_done_fn)(void *opaque, const weft_outcome_t *out, void *ctx);

typedef enum {
    WEFT_POOL_STATIC = 0,
    WEFT_POOL_DYNAMIC = 1,
    WEFT_POOL_ONDEMAND = 2,
} weft_pool_mode_t;

/* Defaults applied to zero fields of weft_pool_config_t. */
#define WEFT_POOL_DEFAULT_MAX_SPARE 3
#define WEFT_POOL_DEFAULT_SPAWN_RATE 32
#define WEFT_POOL_DEFAULT_IDLE_TIMEOUT_MS 10000u
#define WEFT_POOL_DEFAULT_CRASH_STORM 10
#define WEFT_POOL_DEFAULT_CRASH_WINDOW_MS 10000u
#define WEFT_POOL_DEFAULT_QUARANTINE_MS 30000u
#define WEFT_POOL_MAX_WORKERS 4096
#define WEFT_POOL_MAX_ENV 256
/* pipeline_depth when the configuration says 0. Measured with
 * `weft-bench-pool --depths 1,2,4,8,16,32` on 2 cores: noop.so, static pool
 * of 2, 200000 events, a backlog of 256; events/s and CPU per event of the
 * pool plus its workers, two runs:
 *      depth 1     28-32 k/s   37-42 us
 *      depth 4     45-74 k/s   13-18 us
 *      depth 8    95-141 k/s  6.6-8.8 us
 *      depth 16  135-201 k/s  5.0-6.5 us
 *      depth 32  175-183 k/s  4.7-5.0 us
 * 16 takes nearly all of the gain (about 7x less CPU per event than depth
 * 1); beyond it the sends and reads are already amortised, and a deeper
 * FIFO only lengthens the wait of an event queued behind others (bounded
 * anyway by the 5 ms budget above) and what goes back to the queue when a
 * worker is lost. */
#define WEFT_POOL_DEFAULT_PIPELINE_DEPTH 16
#define WEFT_POOL_MAX_PIPELINE_DEPTH 64

typedef struct weft_pool_config {
    const char *function;           /* function name, for logs */
    const char *runtime;            /* "shared_object" (NULL) or "exec" */
    const char *entry;              /* path of the shared object / program */
    const char *symbol;             /* exported symbol; NULL = "weft_handle" */
    weft_pool_mode_t mode;          /* static (0), dynamic, ondemand */
    int size;                       /* static: workers; dynamic: workers at start
                                     * (kept within [min_spare, max]); ondemand:
                                     * ignored. >= 1 for static. */
    int max_concurrency;            /* most workers = most parallel invocations;
                                     * 0 = size. A static pool runs
                                     * min(size, max_concurrency) workers. */
    int min_spare;                  /* dynamic: idle workers wanted at least */
    int max_spare;                  /* dynamic: idle workers kept at most;
                                     * 0 = max(min_spare, 3) */
    int max_spawn_rate;             /* dynamic: cap of the doubling spawn rate
                                     * per second; 0 = 32 */
    uint32_t idle_timeout_ms;       /* ondemand: idle worker exits; 0 = 10 s */
    uint32_t max_requests;          /* recycle a worker after N invocations;
                                     * 0 = never */
    int crash_storm_count;          /* abnormal ends that quarantine the pool;
                                     * 0 = 10, < 0 = no brake */
    uint32_t crash_storm_window_ms; /* ... within this window; 0 = 10 s */
    uint32_t quarantine_ms;         /* cool-down; 0 = 30 s */
    const char *const *env;         /* allow-list: "NAME=VALUE" sets, "NAME"
                                     * copies the dispatcher's value (if set;
                                     * never for WEFT_* and PG* names) */
    size_t n_env;
    const char *run_as_user;     /* NULL: the dispatcher's user */
    const char *run_as_group;    /* NULL: the user's primary group */
    int quiet;                   /* log only warnings and errors */
    uint32_t timeout_ms;         /* per invocation, wall clock, counted from the
                                  * moment a worker can start it (see
                                  * "Pipelining"); 0 = no deadline */
    uint32_t memory_mb;          /* RLIMIT_AS per worker; 0 = unlimited */
    uint32_t max_result_bytes;   /* 0 = WEFT_POOL_DEFAULT_MAX_RESULT */
    const char *worker_path;     /* the weft-worker binary */
    int pipeline_depth;          /* most invocations one worker holds at once
                                  * under a backlog (1 running + the rest
                                  * queued behind it); 0 =
                                  * WEFT_POOL_DEFAULT_PIPELINE_DEPTH, 1 = no
                                  * pipelining; at most
                                  * WEFT_POOL_MAX_PIPELINE_DEPTH */
    uint32_t pipeline_budget_us; /* the expected work one worker may hold
                                  * when pipelining (the pool's moving
                                  * average of service times, times the
                                  * invocations it holds); 0 = 5000 us */
} weft_pool_config_t;

/* Pool state for `weft status` and tests; a snapshot. */
typedef struct weft_pool_stats {
    weft_pool_mode_t mode;
    int max_workers;
    int workers;  /* processes alive: starting + idle + busy + stopping */
    int starting; /* spawned, function not loaded yet */
    int idle;
    int busy;
    int stopping;     /* asked to exit or killed, not reaped yet */
    size_t queued;    /* waiting to start: in the pool's FIFO or behind a
                       * running invocation on a worker */
    size_t pipelined; /* of which queued on a worker (pipelining) */
    size_t running;
    int pipeline_depth; /* configured depth (after the default) */
    int quarantined;
    uint64_t quarantine_left_ms;
    uint64_t invocations; /* outcomes delivered, of every kind */
    uint64_t crashes;     /* abnormal ends */
    uint64_t timeouts;
    uint64_t recycles; /* workers retired after max_requests */
    uint64_t idle_exits;
    uint64_t spawns;
    uint64_t quarantines;
} weft_pool_stats_t;

/* "static", "dynamic", "ondemand". */
const char *weft_pool_mode_name(weft_pool_mode_t mode);
/* 0 and *mode set, or -1 for an unknown name. */
int weft_pool_mode_parse(const char *name, weft_pool_mode_t *mode);

/* Starts the pool's initial workers (static: all of them; dynamic: size;
 * ondemand: none). Copies everything it needs from cfg. Fails for bad
 * arguments, a missing worker binary or a failed spawn; a function that
 * cannot be loaded is not detected here (see reason "config"). */
weft_pool_t *weft_pool_new(const weft_pool_config_t *cfg, int epfd, weft_pool_done_fn done,
                           void *ctx, char *errstr, size_t errlen);

/* Queues an invocation (FIFO); it goes at once to an idle ready worker if
 * there is one, else it waits for a worker (see "Pipelining"). The event is
 * serialized before return (the caller keeps ownership of ev). opaque comes
 * back in the done callback. Returns 0, or -1 with errstr filled. */
int weft_pool_submit(weft_pool_t *pool, const Io__Cloudevents__V1__CloudEvent *ev,
                     const char *trigger, uint32_t attempt, void *opaque, char *errstr,
                     size_t errlen);

/* Invocations queued or running. */
size_t weft_pool_inflight(const weft_pool_t *pool);

/* Fills *st. NULL pool: zeroes. */
void weft_pool_stats(const weft_pool_t *pool, weft_pool_stats_t *st);

/* Returns 1 when pid was one of this pool's workers (and handles its end:
 * callback for its invocation; after an abnormal end no worker is started
 * for a backoff of 50 ms doubling to 5 s, reset by every Result). */
int weft_pool_reaped(weft_pool_t *pool, pid_t pid, int status);

/* Deadlines, respawns, scaling, idle exits, quarantine. now_ms from
 * CLOCK_MONOTONIC. */
void weft_pool_tick(weft_pool_t *pool, uint64_t now_ms);

/* Asks workers to exit (closes every channel, so idle workers exit 0 on
 * EOF; SIGTERMs the busy ones), waits up to grace_ms, then SIGKILLs the rest.
 * Reaps every worker itself (waitpid on each pid), blocking for up to about
 * grace_ms: meant for shutdown. Queued and running invocations are dropped
 * without callbacks. NULL is a no-op. Call it from the loop, never from a
 * done callback, and not with epoll events of this pool still to handle. */
void weft_pool_destroy(weft_pool_t *pool, uint32_t grace_ms);

#endif
