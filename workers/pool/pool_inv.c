/*
 * pool_inv.c - the pool's invocations: the pool's FIFO, each worker's
 * pipeline (a FIFO whose first element is the running invocation), and
 * the outcome each invocation gets.
 *
 * Runs in the dispatcher, on its loop thread only.
 *
 * Invariants: every submitted invocation gets exactly one callback, through
 * inv_finish or report_crash; pool->queued counts the pool's FIFO,
 * pool->pipelined the invocations queued on workers, pool->running the
 * workers with an invocation; an invocation queued behind a running one
 * keeps its frame, and goes back to the pool's FIFO untouched when its
 * worker is lost.
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

/* ---- invocations ---------------------------------------------------------- */

void inv_free(pool_inv_t *inv)
{
    if (inv) {
        free(inv->frame);
        free(inv);
    }
}

void inv_finish(weft_pool_t *pool, pool_inv_t *inv, const weft_outcome_t *out)
{
    pool->n_invocations++;
    pool->done(inv->opaque, out, pool->ctx);
    inv_free(inv);
}

void report_crash(weft_pool_t *pool, pool_inv_t *inv, pid_t pid, const char *reason,
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
pool_inv_t *queue_take(weft_pool_t *pool)
{
    pool_inv_t *inv = pool->head;
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    return inv;
}

pool_inv_t *queue_pop(weft_pool_t *pool)
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
void worker_push(pool_worker_t *wk, pool_inv_t *inv, uint64_t now)
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
pool_inv_t *worker_pop(pool_worker_t *wk, uint64_t now)
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
void worker_requeue(pool_worker_t *wk)
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
pool_inv_t *worker_detach(pool_worker_t *wk)
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
