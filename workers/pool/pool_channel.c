/*
 * pool_channel.c - a worker's channel: invocation frames out (gathered
 * into one sendmsg), Ready and Result frames in, closing the channel to
 * retire a worker, and terminating a worker that breaks the protocol.
 *
 * Runs in the dispatcher, on its loop thread only (worker_io is the
 * channel's epoll handler).
 *
 * Invariants: each Result must carry the seq of the worker's running
 * invocation, anything else is a bad frame and the worker is terminated;
 * a slot is reused for the next worker, so an event fetched for the
 * previous channel may arrive for the new one: the handler trusts
 * read()/send() results, never the event bits.
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

void channel_close(pool_worker_t *wk)
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
void worker_terminate(pool_worker_t *wk, uint64_t now)
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
void worker_retire(pool_worker_t *wk, uint64_t now, const char *why)
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
void worker_flush(pool_worker_t *wk)
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
int worker_read(pool_worker_t *wk)
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

void worker_io(weft_io_t *io, uint32_t events)
{
    pool_worker_t *wk = (pool_worker_t *)io;
    (void)events;
    worker_flush(wk);
    int results = worker_read(wk);
    /* Results free workers; this one may also take more work behind the
     * invocation it is now running (pipelining). */
    pool_dispatch(wk->pool, results ? wk : NULL);
}
