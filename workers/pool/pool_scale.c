/*
 * pool_scale.c - the pool's scaling (static, dynamic and ondemand, after
 * php-fpm's process manager) and the crash-storm brake (quarantine).
 *
 * Runs in the dispatcher, on its loop thread only: one maintenance pass
 * from tick, submit and reaped.
 *
 * Invariants: a dynamic pool starts workers in rounds ROUND_MS apart,
 * doubling while idle workers are short (up to max_spawn_rate), and
 * retires at most one surplus idle worker per round; the maintenance pass
 * never calls back; a quarantined pool answers its queue instead of
 * running it.
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

/* ---- scaling and the crash-storm brake ------------------------------------ */

counts_t pool_count(const weft_pool_t *pool)
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

/* php-fpm's maintenance, run from tick, submit and reaped. Never calls
 * back. */
void pool_scale(weft_pool_t *pool, uint64_t now)
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
void note_crash(weft_pool_t *pool, uint64_t now)
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
void answer_quarantined(weft_pool_t *pool, uint64_t now)
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
