/*
 * ledgerconn.c - the ledger's own connections: per stage (claim, record,
 * saga transition) up to LEDGER_CONNS_MAX connections, each with at most
 * one batch in flight, and the DSP_STAGE table that sets the stages apart.
 *
 * Runs on the dispatcher loop thread. Invariants: keys in flight are
 * distinct, so concurrent batches never touch the same row; a batch whose
 * connection fails goes back to the front of its queue and is sent again.
 */
#include "internal.h"

/* ---- the ledger's connections ------------------------------------------ */

/* What sets the stages apart, by lstage_t (the type is in internal.h). */
const lstage_def_t DSP_STAGE[] = {
    [LS_CLAIM] = {"ledger claim", LEDGER_BATCH, 1, dsp_send_claims, dsp_claims_done},
    [LS_RECORD] = {"ledger record", LEDGER_BATCH, 1, dsp_send_records, dsp_records_done},
    [LS_SAGA] = {"saga transition", SAGA_BATCH, 0, dsp_send_sagas, dsp_sagas_done},
};

static const char *lc_name(const lconn_t *lc)
{
    return DSP_STAGE[lc->stage].name;
}

static void lc_watch(dsp_t *d, lconn_t *lc, uint32_t events)
{
    dsp_io_watch(d, &lc->io, &lc->events, events);
}

static void lc_unwatch(dsp_t *d, lconn_t *lc)
{
    dsp_io_unwatch(d, &lc->io, &lc->events);
}

/* The connection is up: its session is set up and the loop watches it.
 * Left to itself, the planner hashes the whole ledger for each record
 * batch while it is small to medium (measured: ~10x the cost at 50k
 * rows, growing with the ledger); weft_ledger_prepare sets the session
 * up so that every batch probes the primary key. 0, or -1 with err. */
static int lc_up(dsp_t *d, lconn_t *lc, char *err, size_t errlen)
{
    if (DSP_STAGE[lc->stage].ledger && weft_ledger_prepare(lc->pg, err, errlen) != 0)
        return -1;
    if (weft_pgconn_nonblocking(lc->pg, err, errlen) != 0) {
        return -1;
    }
    lc_unwatch(d, lc);
    lc->io.fd = weft_pgconn_socket(lc->pg);
    lc_watch(d, lc, EPOLLIN);
    return 0;
}

static void lc_connect_failed(dsp_t *d, lconn_t *lc, const char *why)
{
    weft_warn("postgresql unavailable for the %s connection, retrying: %s", lc_name(lc), why);
    dsp_conn_drop(d, &lc->pg, &lc->io, &lc->events, &lc->retry_at);
}

/* A step of the connection's connecting (from dsp_lc_on_io). */
static void lc_connect_step(dsp_t *d, lconn_t *lc)
{
    char err[512];
    int rc = dsp_conn_poll(d, lc->pg, &lc->io, &lc->events);
    if (rc == 0)
        return;
    if (rc < 0) {
        snprintf(err, sizeof(err), "%s", weft_pgconn_error(lc->pg));
        lc_connect_failed(d, lc, err);
        return;
    }
    if (lc_up(d, lc, err, sizeof(err)) != 0) {
        lc_connect_failed(d, lc, err);
        return;
    }
    weft_info("postgresql connected for the %s connection", lc_name(lc));
}

/* Connects the stage's connection at start-up, waiting for it. 0, or -1
 * with err. */
int dsp_lc_connect_now(dsp_t *d, lconn_t *lc, char *err, size_t errlen)
{
    lc->pg = weft_pgconn_connect(weft_config_str(d->cfg, "pg.conninfo"), err, errlen);
    if (!lc->pg) {
        return -1;
    }
    return lc_up(d, lc, err, errlen);
}

/* 1 when the stage's connection is up. A lost (or not yet opened) one is
 * made without waiting for it (dsp_lc_on_io carries it on); meanwhile, and
 * for a second after a failure, this says no. */
static int lc_usable(dsp_t *d, lconn_t *lc)
{
    if (weft_pgconn_ok(lc->pg))
        return 1;
    char why[512];
    if (!weft_pgconn_pending(lc->pg) && dsp_now_ms() >= lc->retry_at &&
        dsp_conn_start(d, &lc->pg, &lc->io, &lc->events, &lc->connect_deadline, why, sizeof(why)) !=
            0)
        lc_connect_failed(d, lc, why);
    return 0;
}

/* The queue the stage's connections take their batches from. */
static jq_t *lc_queue(dsp_t *d, const lconn_t *lc)
{
    jq_t *q[] = {&d->claim_q, &d->record_q, &d->saga_q};
    return q[lc->stage];
}

/* The batch in flight goes back to the front of its queue, in order. */
static void lc_requeue(dsp_t *d, lconn_t *lc)
{
    jq_t *q = lc_queue(d, lc);
    for (size_t i = lc->n; i-- > 0;) {
        job_t *j = lc->jobs[i];
        j->next = q->head;
        q->head = j;
        if (!q->tail)
            q->tail = j;
        q->n++;
    }
    lc->n = 0;
    if (lc->res) {
        weft_pgresult_free(lc->res);
        lc->res = NULL;
    }
}

/* The batch in flight failed: it is sent again after a pause. Nothing of
 * a failed statement was applied. */
static void lc_failed(dsp_t *d, lconn_t *lc, const char *err)
{
    weft_warn("%s batch of %zu failed, will retry: %s", lc_name(lc), lc->n, err);
    lc_requeue(d, lc);
    lc->retry_at = dsp_now_ms() + 500;
    if (!weft_pgconn_ok(lc->pg))
        lc_unwatch(d, lc);
}

/* Writes what libpq still holds; watches for writability meanwhile. */
static void lc_flush(dsp_t *d, lconn_t *lc)
{
    int rc = weft_pgconn_flush(lc->pg);
    if (rc < 0) {
        char e[512];
        snprintf(e, sizeof(e), "%s", weft_pgconn_error(lc->pg));
        lc_failed(d, lc, e);
        return;
    }
    lc_watch(d, lc, rc == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

void dsp_lc_on_io(weft_io_t *io, uint32_t events)
{
    lconn_t *lc = (lconn_t *)io;
    dsp_t *d = lc->d;
    if (!lc->pg)
        return;
    if (weft_pgconn_pending(lc->pg)) {
        lc_connect_step(d, lc);
        return;
    }
    if (events & EPOLLOUT) {
        lc_flush(d, lc);
        if (lc->n == 0 || !lc->pg)
            return;
    }
    if (weft_pgconn_read(lc->pg) != 0) {
        char e[512];
        snprintf(e, sizeof(e), "%s", weft_pgconn_error(lc->pg));
        if (lc->n)
            lc_failed(d, lc, e);
        else
            weft_warn("%s connection lost: %s", lc_name(lc), e);
        lc_unwatch(d, lc);
        return;
    }
    while (weft_pgconn_result_ready(lc->pg)) {
        weft_pg_result_t *r = weft_pgconn_result(lc->pg);
        if (r) {
            /* One statement, one result; anything more is cleared. */
            if (lc->res)
                weft_pgresult_free(r);
            else
                lc->res = r;
            continue;
        }
        /* The statement is over. */
        if (lc->n == 0) {
            if (lc->res) {
                weft_pgresult_free(lc->res);
                lc->res = NULL;
            }
            return;
        }
        char e[1024];
        if (!lc->res) {
            snprintf(e, sizeof(e), "%s", weft_pgconn_error(lc->pg));
            lc_failed(d, lc, e);
            return;
        }
        /* The done functions check the statement's status too. */
        int rc = DSP_STAGE[lc->stage].answered(d, lc, lc->res, e, sizeof(e));
        if (rc < 0) {
            lc_failed(d, lc, e); /* failed, or not this batch's answer: send it again */
            return;
        }
        if (rc > 0) {
            lc_requeue(d, lc); /* claimed again at once, as an upsert */
            return;
        }
        weft_pgresult_free(lc->res);
        lc->res = NULL;
        return;
    }
}

/* 1 when the stage has a batch to send and may send it now. */
int dsp_lc_ready(dsp_t *d, lconn_t *lc)
{
    return lc_queue(d, lc)->n > 0 && lc->n == 0 && !weft_pgconn_pending(lc->pg) &&
           dsp_now_ms() >= lc->retry_at;
}

/* Takes the connection's next batch (up to the stage's batch of jobs off
 * its queue) when it may send one now; 0 when not. */
size_t dsp_lc_begin(dsp_t *d, lconn_t *lc)
{
    if (weft_pgconn_pending(lc->pg) && dsp_now_ms() >= lc->connect_deadline)
        lc_connect_failed(d, lc, "timed out connecting");
    if (!dsp_lc_ready(d, lc) || !lc_usable(d, lc))
        return 0;
    jq_t *q = lc_queue(d, lc);
    size_t n = 0, max = DSP_STAGE[lc->stage].batch;
    job_t *j;
    while (n < max && (j = dsp_jq_pop(q)) != NULL)
        lc->jobs[n++] = j;
    lc->n = n;
    lc->n_stmts++;
    lc->n_keys += n;
    return n;
}

/* After the batch's statement was handed to libpq (rc 0) or refused. */
void dsp_lc_sent(dsp_t *d, lconn_t *lc, int rc, const char *err)
{
    if (rc != 0)
        lc_failed(d, lc, err);
    else
        lc_flush(d, lc);
}
