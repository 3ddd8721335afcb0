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
 *
 * This file is the interface and the pool's life (new, submit, stats,
 * reaped, tick, destroy) and the worker's environment; beside it,
 * pool_inv.c (invocations), pool_channel.c (a worker's channel),
 * pool_process.c (a worker's process, dispatching) and pool_scale.c
 * (scaling and the crash-storm brake), sharing pool_internal.h.
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
#include "pool_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define POOL_SANITIZED 1
#endif
#endif

/* The house log line, ending in the pool's fields. It is written with one
 * write() so it does not interleave with the workers' own lines on the
 * shared stderr. */
void plog(const weft_pool_t *pool, pid_t pid, weft_log_level_t level, const char *fmt, ...)
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
