/*
 * pgwatch.c - PostgreSQL connections the loop never waits for: their
 * sockets in the loop's epoll set, a connection made step by step from the
 * loop (store/pgconn.h holds the libpq side), and the catalog connection
 * (LISTEN weft_catalog, heartbeat, saga deadlines).
 *
 * Runs on the dispatcher loop thread. Invariant: a lost connection is made
 * again without blocking the loop; a (re)connection that has not finished
 * within CONNECT_TIMEOUT_MS is given up and tried again.
 */
#include "internal.h"

/* ---- connections to PostgreSQL ---------------------------------------- */

/* Registers io for events in the loop's epoll set (*cur: what it is
 * registered for, 0 when it is not). */
void dsp_io_watch(dsp_t *d, weft_io_t *io, uint32_t *cur, uint32_t events)
{
    weft_loop_watch(&d->loop, io, cur, events);
}

void dsp_io_unwatch(dsp_t *d, weft_io_t *io, uint32_t *cur)
{
    weft_loop_unwatch(&d->loop, io, cur);
}

/* Starts making *pg anew without waiting for it; the socket is watched
 * for writing, as libpq asks first, and *deadline set. 0; -1 with why. */
int dsp_conn_start(dsp_t *d, weft_pg_conn_t **pg, weft_io_t *io, uint32_t *cur, uint64_t *deadline,
                   char *why, size_t len)
{
    dsp_io_unwatch(d, io, cur);
    if (weft_pgconn_start(pg, weft_config_str(d->cfg, "pg.conninfo"), why, len) != 0)
        return -1;
    *deadline = dsp_now_ms() + CONNECT_TIMEOUT_MS;
    io->fd = weft_pgconn_socket(*pg);
    dsp_io_watch(d, io, cur, EPOLLOUT);
    return 0;
}

/* One step of a connection being made: 1 up; 0 in progress (the socket
 * is watched for what libpq waits for); -1 failed. libpq may change the
 * socket between steps, so it is registered afresh each time. */
int dsp_conn_poll(dsp_t *d, weft_pg_conn_t *pg, weft_io_t *io, uint32_t *cur)
{
    uint32_t events = 0;
    int rc = weft_pgconn_poll(pg, &events);
    dsp_io_unwatch(d, io, cur);
    if (rc < 0)
        return -1;
    io->fd = weft_pgconn_socket(pg);
    if (rc > 0)
        return 1;
    dsp_io_watch(d, io, cur, events);
    return 0;
}

/* A connection that failed or took too long goes; the next attempt starts
 * a second later. */
void dsp_conn_drop(dsp_t *d, weft_pg_conn_t **pg, weft_io_t *io, uint32_t *cur, uint64_t *retry_at)
{
    dsp_io_unwatch(d, io, cur);
    weft_pgconn_close(*pg);
    *pg = NULL;
    *retry_at = dsp_now_ms() + 1000;
}

/* The heartbeat is the only statement sent on the catalog connection
 * without waiting for it: a command in progress there is one. libpq says
 * so until its last result is read, and never on a lost connection. */
int dsp_hb_in_flight(const dsp_t *d)
{
    return weft_pgconn_in_command(d->pg);
}

static void pg_connect_failed(dsp_t *d, const char *why)
{
    weft_warn("postgresql unavailable, retrying: %s", why);
    dsp_conn_drop(d, &d->pg, &d->pg_io, &d->pg_events, &d->pg_retry_at);
}

/* A step of the catalog connection's reconnection (from dsp_on_pg). Once up
 * it LISTENs again, and the catalog is reloaded: changes made while it
 * was away sent notifications nobody heard. */
void dsp_pg_connect_step(dsp_t *d)
{
    char why[512];
    int rc = dsp_conn_poll(d, d->pg, &d->pg_io, &d->pg_events);
    if (rc == 0)
        return;
    if (rc < 0) {
        snprintf(why, sizeof(why), "%s", weft_pgconn_error(d->pg));
        pg_connect_failed(d, why);
        return;
    }
    char lerr[480];
    if (weft_catalog_listen(d->pg, lerr, sizeof(lerr)) != 0) {
        snprintf(why, sizeof(why), "LISTEN: %s", lerr);
        pg_connect_failed(d, why);
        return;
    }
    weft_info("postgresql connection restored");
    d->catalog_dirty = 1;
    dsp_io_watch(d, &d->pg_io, &d->pg_events, EPOLLIN);
}

/* The catalog connection is up and free for a statement: a heartbeat
 * still in flight is waited for first (statements on one connection run
 * one after another). A lost connection is made again without waiting
 * for it (dsp_on_pg carries it on); meanwhile this says no. */
int dsp_pg_usable(dsp_t *d)
{
    uint64_t now = dsp_now_ms();
    if (weft_pgconn_pending(d->pg)) {
        if (now >= d->pg_connect_deadline)
            pg_connect_failed(d, "timed out connecting");
        return 0;
    }
    if (weft_pgconn_ok(d->pg)) {
        dsp_hb_collect(d, 1);
        return weft_pgconn_ok(d->pg);
    }
    char why[512];
    if (now >= d->pg_retry_at && dsp_conn_start(d, &d->pg, &d->pg_io, &d->pg_events,
                                                &d->pg_connect_deadline, why, sizeof(why)) != 0)
        pg_connect_failed(d, why);
    return 0;
}
