/*
 * retention.c - the dispatcher's retention sweep: old terminal rows of the
 * ledger, the dead letters, the sagas and the replays are deleted a small
 * batch at a time (the statement is store/retention.c's).
 *
 * Runs on the dispatcher loop thread, on a PostgreSQL connection of its
 * own that nothing else uses, so a batch (or a lock it waits for) never
 * holds up the loop or the ledger's claims and records: the statement is
 * sent and its answer read when the socket says so.
 *
 * Invariants: at most one statement in flight; one dispatcher of a group
 * sweeps at a time, the one whose sweep connection holds the session's
 * advisory lock (the others try again every RETRY_LOCK_MS, so one takes
 * over within a minute when it stops); a batch goes every BEHIND_MS while
 * a table still had a full batch of old rows, else every IDLE_MS; one log
 * line a minute at most, and only when something was deleted.
 */
#include "internal.h"

#define BEHIND_MS 1000
#define IDLE_MS 60000
#define RETRY_LOCK_MS 60000
#define RECONNECT_MS 10000
#define LOG_EVERY_MS 60000

static dsp_t *dsp_of(weft_io_t *io)
{
    return (dsp_t *)((char *)io - offsetof(dsp_t, ret.io));
}

static void ret_log(dsp_t *d)
{
    ret_t *r = &d->ret;
    const weft_retention_counts_t *c = &r->unlogged;
    if (c->ledger + c->dead_letters + c->sagas + c->replays == 0)
        return;
    weft_info("retention deleted ledger=%lld dead_letters=%lld sagas=%lld replays=%lld "
              "batches=%llu",
              (long long)c->ledger, (long long)c->dead_letters, (long long)c->sagas,
              (long long)c->replays, (unsigned long long)r->batches_unlogged);
    memset(&r->unlogged, 0, sizeof(r->unlogged));
    r->batches_unlogged = 0;
    r->logged_at = dsp_now_ms();
}

/* The connection failed or was lost: the lock went with it. */
static void ret_lost(dsp_t *d, const char *why)
{
    ret_t *r = &d->ret;
    weft_warn("postgresql unavailable for the retention connection, retrying: %s", why);
    weft_pgresult_free(r->res);
    r->res = NULL;
    dsp_conn_drop(d, &r->pg, &r->io, &r->events, &r->retry_at);
    r->retry_at = dsp_now_ms() + RECONNECT_MS;
    r->leader = 0;
    r->state = RS_IDLE;
}

static void ret_flush(dsp_t *d)
{
    ret_t *r = &d->ret;
    int rc = weft_pgconn_flush(r->pg);
    if (rc < 0) {
        char e[512];
        snprintf(e, sizeof(e), "%s", weft_pgconn_error(r->pg));
        ret_lost(d, e);
        return;
    }
    dsp_io_watch(d, &r->io, &r->events, rc == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* The statement in flight is over; r->res is its last result. */
static void ret_answered(dsp_t *d)
{
    ret_t *r = &d->ret;
    uint64_t now = dsp_now_ms();
    rstate_t was = r->state;
    r->state = RS_IDLE;
    if (!r->res) {
        weft_warn("retention statement failed: %s", weft_pgconn_error(r->pg));
        r->next_at = now + IDLE_MS;
        return;
    }
    if (was == RS_LOCK) {
        char err[512];
        int won = weft_retention_lock_result(r->res, err, sizeof(err));
        if (won > 0) {
            r->leader = 1;
            r->next_at = now;
            weft_debug("retention: this dispatcher sweeps for the group");
        } else {
            if (won < 0)
                weft_warn("%s", err);
            r->next_at = now + RETRY_LOCK_MS;
        }
    } else {
        weft_retention_counts_t c;
        char err[512];
        if (weft_retention_sweep_result(r->res, &c, err, sizeof(err)) != 0) {
            weft_warn("%s", err);
            r->next_at = now + IDLE_MS;
        } else {
            int64_t saga_batch = r->rt.batch / 10 > 0 ? r->rt.batch / 10 : 1;
            int behind = c.ledger >= r->rt.batch || c.dead_letters >= r->rt.batch ||
                         c.sagas >= saga_batch || c.replays >= saga_batch;
            r->next_at = now + (behind ? BEHIND_MS : IDLE_MS);
            r->unlogged.ledger += c.ledger;
            r->unlogged.dead_letters += c.dead_letters;
            r->unlogged.sagas += c.sagas;
            r->unlogged.replays += c.replays;
            if (c.ledger + c.dead_letters + c.sagas + c.replays > 0)
                r->batches_unlogged++;
            if (r->logged_at == 0 || now - r->logged_at >= LOG_EVERY_MS)
                ret_log(d);
        }
    }
    weft_pgresult_free(r->res);
    r->res = NULL;
}

static void ret_on_io(weft_io_t *io, uint32_t events)
{
    dsp_t *d = dsp_of(io);
    ret_t *r = &d->ret;
    if (!r->pg)
        return;
    if (weft_pgconn_pending(r->pg)) {
        int rc = dsp_conn_poll(d, r->pg, &r->io, &r->events);
        if (rc < 0) {
            char e[512];
            snprintf(e, sizeof(e), "%s", weft_pgconn_error(r->pg));
            ret_lost(d, e);
        } else if (rc > 0) {
            char e[512];
            if (weft_pgconn_nonblocking(r->pg, e, sizeof(e)) != 0) {
                ret_lost(d, e);
                return;
            }
            dsp_io_watch(d, &r->io, &r->events, EPOLLIN);
            r->state = RS_IDLE;
            r->leader = 0;
            r->next_at = dsp_now_ms();
        }
        return;
    }
    if (events & EPOLLOUT) {
        ret_flush(d);
        if (!r->pg)
            return;
    }
    if (weft_pgconn_read(r->pg) != 0) {
        char e[512];
        snprintf(e, sizeof(e), "%s", weft_pgconn_error(r->pg));
        ret_lost(d, e);
        return;
    }
    while (weft_pgconn_result_ready(r->pg)) {
        weft_pg_result_t *res = weft_pgconn_result(r->pg);
        if (!res) {
            if (r->state != RS_IDLE)
                ret_answered(d);
            return;
        }
        /* The lock's answer has several results (the SETs, then the
         * SELECT, or the first error): the last one counts. */
        weft_pgresult_free(r->res);
        r->res = res;
    }
}

int dsp_retention_setup(dsp_t *d, char *err, size_t errlen)
{
    ret_t *r = &d->ret;
    r->io.fd = -1;
    r->io.handle = ret_on_io;
    if (weft_retention_config(d->cfg, &r->rt, err, errlen) != 0)
        return -1;
    r->enabled = weft_retention_enabled(&r->rt);
    r->next_at = dsp_now_ms();
    return 0;
}

/* From the loop, every turn: connects, takes the lock, sends the next
 * batch when it is due; never waits. */
void dsp_retention_tick(dsp_t *d)
{
    ret_t *r = &d->ret;
    if (!r->enabled || d->stopping)
        return;
    uint64_t now = dsp_now_ms();
    char why[512];
    if (weft_pgconn_pending(r->pg)) {
        if (now >= r->connect_deadline)
            ret_lost(d, "timed out connecting");
        return;
    }
    if (!weft_pgconn_ok(r->pg)) {
        if (now >= r->retry_at && dsp_conn_start(d, &r->pg, &r->io, &r->events,
                                                 &r->connect_deadline, why, sizeof(why)) != 0)
            ret_lost(d, why);
        return;
    }
    if (r->state != RS_IDLE || now < r->next_at)
        return;
    int rc = r->leader ? weft_retention_sweep_send(r->pg, &r->rt, why, sizeof(why))
                       : weft_retention_lock_send(r->pg, why, sizeof(why));
    if (rc != 0) {
        ret_lost(d, why);
        return;
    }
    r->state = r->leader ? RS_SWEEP : RS_LOCK;
    ret_flush(d);
}

/* At shutdown: a batch in flight is cancelled (it changes nothing), what
 * was deleted since the last line is logged, and the lock goes with the
 * connection. */
void dsp_retention_close(dsp_t *d)
{
    ret_t *r = &d->ret;
    if (r->pg && r->state != RS_IDLE && weft_pgconn_ok(r->pg))
        weft_pgconn_cancel(r->pg);
    ret_log(d);
    weft_pgresult_free(r->res);
    r->res = NULL;
    dsp_io_unwatch(d, &r->io, &r->events);
    weft_pgconn_close(r->pg);
    r->pg = NULL;
}
