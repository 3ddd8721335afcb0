/*
 * pgconn.c - PostgreSQL connections the loop never waits for: epoll
 * registration, PQconnectStart/PQconnectPoll driven from the loop, and the
 * catalog connection (LISTEN weft_catalog, heartbeat, saga deadlines).
 *
 * Runs on the dispatcher loop thread. Invariant: a lost connection is made
 * again without blocking the loop; a (re)connection that has not finished
 * within CONNECT_TIMEOUT_MS is given up and tried again.
 */
#include "internal.h"

/* ---- connections to PostgreSQL ---------------------------------------- */

/* Registers io for events in the loop's epoll set (*cur: what it is
 * registered for, 0 when it is not). */
void io_watch(dsp_t *d, weft_io_t *io, uint32_t *cur, uint32_t events)
{
    weft_loop_watch(&d->loop, io, cur, events);
}

void io_unwatch(dsp_t *d, weft_io_t *io, uint32_t *cur)
{
    weft_loop_unwatch(&d->loop, io, cur);
}

/* Whether the connection is being made (PQconnectStart, and
 * PQconnectPoll from the loop since): neither up nor failed. */
int conn_pending(const PGconn *pg)
{
    ConnStatusType st = PQstatus(pg);
    return pg && st != CONNECTION_OK && st != CONNECTION_BAD;
}

/* Starts making *pg anew without waiting for it; the socket is watched
 * for writing, as libpq asks first, and *deadline set. 0; -1 with why. */
int conn_start(dsp_t *d, PGconn **pg, weft_io_t *io, uint32_t *cur, uint64_t *deadline, char *why,
               size_t len)
{
    io_unwatch(d, io, cur);
    PQfinish(*pg);
    *pg = PQconnectStart(weft_config_str(d->cfg, "pg.conninfo"));
    if (!*pg || PQstatus(*pg) == CONNECTION_BAD) {
        snprintf(why, len, "%s", *pg ? PQerrorMessage(*pg) : "out of memory");
        return -1;
    }
    *deadline = now_ms() + CONNECT_TIMEOUT_MS;
    io->fd = PQsocket(*pg);
    io_watch(d, io, cur, EPOLLOUT);
    return 0;
}

/* One step of a connection being made: 1 up; 0 in progress (the socket
 * is watched for what libpq waits for); -1 failed. libpq may change the
 * socket between steps, so it is registered afresh each time. */
int conn_poll(dsp_t *d, PGconn *pg, weft_io_t *io, uint32_t *cur)
{
    PostgresPollingStatusType st = PQconnectPoll(pg);
    io_unwatch(d, io, cur);
    if (st == PGRES_POLLING_FAILED)
        return -1;
    io->fd = PQsocket(pg);
    if (st == PGRES_POLLING_OK)
        return 1;
    io_watch(d, io, cur, st == PGRES_POLLING_WRITING ? EPOLLOUT : EPOLLIN);
    return 0;
}

/* A connection that failed or took too long goes; the next attempt starts
 * a second later. */
void conn_drop(dsp_t *d, PGconn **pg, weft_io_t *io, uint32_t *cur, uint64_t *retry_at)
{
    io_unwatch(d, io, cur);
    PQfinish(*pg);
    *pg = NULL;
    *retry_at = now_ms() + 1000;
}

/* The heartbeat is the only statement sent on the catalog connection
 * without waiting for it: a command in progress there is one. libpq says
 * so until its last result is read, and never on a lost connection. */
int hb_in_flight(const dsp_t *d)
{
    return PQtransactionStatus(d->pg) == PQTRANS_ACTIVE;
}

static void pg_connect_failed(dsp_t *d, const char *why)
{
    weft_warn("postgresql unavailable, retrying: %s", why);
    conn_drop(d, &d->pg, &d->pg_io, &d->pg_events, &d->pg_retry_at);
}

/* A step of the catalog connection's reconnection (from on_pg). Once up
 * it LISTENs again, and the catalog is reloaded: changes made while it
 * was away sent notifications nobody heard. */
void pg_connect_step(dsp_t *d)
{
    char why[512];
    int rc = conn_poll(d, d->pg, &d->pg_io, &d->pg_events);
    if (rc == 0)
        return;
    if (rc < 0) {
        snprintf(why, sizeof(why), "%s", PQerrorMessage(d->pg));
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
    io_watch(d, &d->pg_io, &d->pg_events, EPOLLIN);
}

/* The catalog connection is up and free for a statement: a heartbeat
 * still in flight is waited for first (statements on one connection run
 * one after another). A lost connection is made again without waiting
 * for it (on_pg carries it on); meanwhile this says no. */
int pg_usable(dsp_t *d)
{
    uint64_t now = now_ms();
    if (conn_pending(d->pg)) {
        if (now >= d->pg_connect_deadline)
            pg_connect_failed(d, "timed out connecting");
        return 0;
    }
    if (PQstatus(d->pg) == CONNECTION_OK) {
        hb_collect(d, 1);
        return PQstatus(d->pg) == CONNECTION_OK;
    }
    char why[512];
    if (now >= d->pg_retry_at && conn_start(d, &d->pg, &d->pg_io, &d->pg_events,
                                            &d->pg_connect_deadline, why, sizeof(why)) != 0)
        pg_connect_failed(d, why);
    return 0;
}
