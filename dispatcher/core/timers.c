/*
 * timers.c - what the loop does besides events: backoff waits that fall
 * due, reaping children, signals, broker wake-ups, catalog notifications
 * and reloads.
 *
 * Runs on the dispatcher loop thread. Signal handling is a signalfd read
 * by the loop (no handler code runs in signal context).
 */
#include "internal.h"

/* ---- timers, signals, catalog ------------------------------------------ */

uint64_t dsp_run_waits(dsp_t *d)
{
    uint64_t now = dsp_now_ms(), next = UINT64_MAX;
    jq_t keep = {0};
    job_t *j;
    while ((j = dsp_jq_pop(&d->wait_q)) != NULL) {
        if (j->due_ms > now) {
            if (j->due_ms < next)
                next = j->due_ms;
            dsp_jq_push(&keep, j);
            continue;
        }
        if (j->after_wait == ACT_EMIT) {
            dsp_job_emit(d, j);
        } else if (j->after_wait == ACT_SAGA) {
            dsp_emit_outcome(d, j);
        } else {
            dsp_claim_enqueue(d, j);
        }
    }
    d->wait_q = keep;
    return next;
}

/* A child ended (the loop reaped it): its pool, if one owns it. */
void dsp_on_child(weft_loop_t *loop, pid_t pid, int st)
{
    dsp_t *d = loop->opaque;
    int owned = 0;
    for (fn_pool_t *p = d->pools; p && !owned; p = p->next)
        owned = weft_pool_reaped(p->pool, pid, st);
    if (!owned)
        weft_debug("reaped unknown child pid=%d", (int)pid);
}

void dsp_on_signal(weft_loop_t *loop, int signo)
{
    dsp_t *d = loop->opaque;
    if (signo != SIGTERM && signo != SIGINT)
        return;
    if (!d->stopping)
        weft_info("shutting down signal=%s", strsignal(signo));
    d->stopping = 1;
    if (!d->stop_signal)
        d->stop_signal = signo;
}

void dsp_on_broker(weft_io_t *io, uint32_t events)
{
    (void)io;
    (void)events;
    /* Served from the loop body. */
}

/* A notification can reach the catalog connection while one of its own
 * statements runs (heartbeat, saga, catalog load): libpq then reads it
 * with the statement's result and the socket never turns readable for it.
 * So the loop asks libpq for parsed notifications every turn (after the
 * handlers, dsp_on_pg's input included), not only when the socket wakes it. */
void dsp_take_notifies(dsp_t *d)
{
    while (weft_pgconn_notified(d->pg))
        d->catalog_dirty = 1;
}

void dsp_on_pg(weft_io_t *io, uint32_t events)
{
    (void)events;
    dsp_t *d = (dsp_t *)((char *)io - offsetof(dsp_t, pg_io));
    if (weft_pgconn_pending(d->pg)) {
        dsp_pg_connect_step(d);
        return;
    }
    if (weft_pgconn_read(d->pg) != 0) {
        weft_warn("postgresql connection lost: %s", weft_pgconn_error(d->pg));
        dsp_io_unwatch(d, io, &d->pg_events);
        return;
    }
    dsp_hb_collect(d, 0);
}

/* Every adapter consumes what the catalog's triggers need; a trigger of a
 * broker that is not configured is reported at each load. */
static void sync_adapters(dsp_t *d)
{
    char err[512];
    for (size_t a = 0; a < d->n_adapters; a++)
        if (weft_adapter_sync(d->adapters[a], d->cat, err, sizeof(err)) != 0)
            weft_error("%s: %s", d->adapters[a]->name, err);
    for (size_t i = 0; i < d->cat->n_trigs; i++) {
        const weft_trigger_t *t = &d->cat->trigs[i];
        if (!d->bk[t->broker])
            weft_error("trigger not consumed: no %s connection is configured (%s) trigger=%s",
                       weft_broker_name(t->broker),
                       t->broker == WEFT_BROKER_KAFKA ? "kafka.bootstrap.servers" : "nats.url",
                       t->name);
    }
}

void dsp_reload_catalog(dsp_t *d)
{
    d->catalog_dirty = 0;
    char err[1024];
    weft_catalog_t *cat = weft_catalog_load(d->pg, err, sizeof(err));
    if (!cat) {
        weft_error("catalog reload failed, keeping the current one: %s", err);
        return;
    }
    weft_catalog_unref(d->cat);
    d->cat = cat;
    weft_info("catalog loaded triggers=%zu functions=%zu", cat->n_trigs, cat->n_fns);
    for (size_t i = 0; i < cat->n_trigs; i++) {
        const weft_trigger_t *t = &cat->trigs[i];
        weft_info("trigger name=%s source=%s topic=%s type=%s function=%s result_topic=%s%s%s "
                  "dlq=%s%s%s max_attempts=%d",
                  t->name, weft_broker_name(t->broker), t->topic,
                  t->event_type ? t->event_type : "*", t->function,
                  t->result_topic ? t->result_topic : "-", t->result_broker != t->broker ? "@" : "",
                  t->result_broker != t->broker ? weft_broker_name(t->result_broker) : "",
                  t->dead_letter_topic, t->dead_letter_broker != t->broker ? "@" : "",
                  t->dead_letter_broker != t->broker ? weft_broker_name(t->dead_letter_broker) : "",
                  t->max_attempts);
    }
    dsp_pools_reconcile(d);
    sync_adapters(d);
}

/* Reads the results of the heartbeat in flight: those already received
 * (wait 0, from dsp_on_pg), or all of them (wait 1, before another statement). */
