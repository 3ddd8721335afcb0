/*
 * stats.c - the heartbeat row in weft.dispatchers and the periodic stats
 * line (counters, batch sizes, jobs per stage, per-stage latencies).
 *
 * Runs on the dispatcher loop thread. Invariant: the heartbeat is sent
 * without waiting and collected later; it never holds up the loop.
 */
#include "internal.h"

static const char *const timed_name[T_N] = {"age_ms",    "claim_ms",   "run_ms",
                                            "record_ms", "produce_ms", "total_ms"};

/* The job left its timed stage at `now`. */
void dsp_stage_done(dsp_t *d, const job_t *j, timed_t t, uint64_t now)
{
    weft_lat_add(&d->lat[t], now - j->stage_us);
}

void dsp_hb_collect(dsp_t *d, int wait)
{
    while (dsp_hb_in_flight(d) && (wait || weft_pgconn_result_ready(d->pg))) {
        weft_pg_result_t *r = weft_pgconn_result(d->pg);
        if (!r)
            break;
        if (!weft_pgresult_command_ok(r))
            weft_debug("status heartbeat failed: %s", weft_pgresult_error(r));
        weft_pgresult_free(r);
    }
}

/* Upserts this dispatcher's row in weft.dispatchers (for `weft status`)
 * about once a second. It is sent and not waited for: its commit, or a
 * lock someone holds on the row, never holds up the loop; dsp_on_pg reads the
 * result. A failure is logged at debug level only: the row is advisory
 * and its age tells the reader it is stale. */
void dsp_heartbeat(dsp_t *d)
{
    uint64_t now = dsp_now_ms();
    if (now - d->heartbeat_at < 1000)
        return;
    /* One still in flight: skip this one. On a lost connection,
     * dsp_pg_usable reconnects (and LISTENs again). */
    if (dsp_hb_in_flight(d) || !dsp_pg_usable(d))
        return;
    d->heartbeat_at = now;
    weft_buf_t b = {0};
    int bad = 0;
    bad |=
        weft_buf_printf(&b, "{\"inflight_msgs\":%zu,\"waiting\":%zu,\"paused\":%s,\"triggers\":{",
                        d->inflight_msgs, d->wait_q.n, d->paused ? "true" : "false");
    for (size_t i = 0; i < d->cat->n_trigs; i++) {
        const weft_trigger_t *t = &d->cat->trigs[i];
        bad |= weft_buf_printf(&b, "%s", i ? "," : "");
        bad |= weft_json_append_string(&b, t->name, strlen(t->name));
        bad |= weft_buf_printf(&b, ":{\"inflight\":%lld}", (long long)t->inflight);
    }
    bad |= weft_buf_printf(&b, "},\"pools\":{");
    int first = 1;
    for (fn_pool_t *p = d->pools; p; p = p->next) {
        if (p->retired)
            continue;
        weft_pool_stats_t st;
        weft_pool_stats(p->pool, &st);
        bad |= weft_buf_printf(&b, "%s", first ? "" : ",");
        first = 0;
        bad |= weft_json_append_string(&b, p->name, strlen(p->name));
        bad |=
            weft_buf_printf(&b,
                            ":{\"mode\":\"%s\",\"workers\":%d,\"max_workers\":%d,\"starting\":%d,"
                            "\"idle\":%d,\"busy\":%d,\"stopping\":%d,\"queued\":%zu,"
                            "\"quarantined\":%s,\"invocations\":%llu,\"crashes\":%llu,"
                            "\"timeouts\":%llu}",
                            weft_pool_mode_name(st.mode), st.workers, st.max_workers, st.starting,
                            st.idle, st.busy, st.stopping, st.queued,
                            st.quarantined ? "true" : "false", (unsigned long long)st.invocations,
                            (unsigned long long)st.crashes, (unsigned long long)st.timeouts);
    }
    bad |=
        weft_buf_printf(&b,
                        "},\"counters\":{\"consumed\":%llu,\"completed\":%llu,\"reemitted\":%llu,"
                        "\"retries\":%llu,\"dead\":%llu,\"dropped\":%llu,\"unmatched\":%llu}}",
                        (unsigned long long)d->n_consumed, (unsigned long long)d->n_completed,
                        (unsigned long long)d->n_reemitted, (unsigned long long)d->n_retries,
                        (unsigned long long)d->n_dead, (unsigned long long)d->n_dropped,
                        (unsigned long long)d->n_unmatched);
    bad |= weft_buf_append(&b, "", 1);
    if (bad) {
        weft_buf_free(&b);
        return;
    }
    char err[512];
    if (weft_heartbeat_send(d->pg, d->owner, d->host, (int)getpid(), b.p, err, sizeof(err)) != 0)
        weft_debug("status heartbeat failed: %s", err);
    weft_buf_free(&b);
}

/* Where the jobs doing something are now: waiting for a slot of a claim
 * window, queued for or in a claim batch, in a pool, queued for or in a
 * record batch, produced and not yet acknowledged. Little's law turns
 * them into time: a stage holding N jobs at R events/s adds N/R
 * seconds. */
typedef struct stages {
    size_t claiming, running, recording, producing;
} stages_t;

static stages_t stages(const dsp_t *d)
{
    stages_t s = {d->claim_q.n + dsp_win_held(d), 0, d->record_q.n + d->saga_q.n, 0};
    for (int i = 0; i < d->n_lc; i++)
        *(d->lc[i].stage == LS_CLAIM ? &s.claiming : &s.recording) += d->lc[i].n;
    for (fn_pool_t *p = d->pools; p; p = p->next)
        s.running += weft_pool_inflight(p->pool);
    for (size_t a = 0; a < d->n_adapters; a++)
        s.producing += weft_adapter_outq(d->adapters[a]);
    return s;
}

void dsp_stats(dsp_t *d, int force)
{
    uint64_t now = dsp_now_ms();
    if (!force && now - d->stats_at < (uint64_t)d->stats_ms)
        return;
    d->stats_at = now;
    uint64_t cs = 0, ck = 0, rs = 0, rk = 0;
    for (int i = 0; i < d->n_lc; i++) {
        const lconn_t *lc = &d->lc[i];
        if (!DSP_STAGE[lc->stage].ledger)
            continue;
        *(lc->stage == LS_CLAIM ? &cs : &rs) += lc->n_stmts;
        *(lc->stage == LS_CLAIM ? &ck : &rk) += lc->n_keys;
    }
    stages_t st = stages(d);
    /* " age_ms=p50/p99/max ..." for the jobs that left each stage since
     * the last line */
    char timed[T_N * 64], *at = timed;
    for (int t = 0; t < T_N; t++) {
        at += snprintf(at, 24, " %s=", timed_name[t]);
        int w = weft_lat_fmt(&d->lat[t], at, 40);
        at += w > 0 ? w : 0;
        weft_lat_reset(&d->lat[t]);
    }
    *at = '\0';
    weft_info("stats consumed=%llu completed=%llu reemitted=%llu retries=%llu dead=%llu "
              "dropped=%llu unmatched=%llu inflight=%zu inflight_bytes=%zu waiting=%zu held=%llu "
              "claim_batches=%llu "
              "claim_keys=%llu record_batches=%llu record_keys=%llu claiming=%zu running=%zu "
              "recording=%zu producing=%zu%s",
              (unsigned long long)d->n_consumed, (unsigned long long)d->n_completed,
              (unsigned long long)d->n_reemitted, (unsigned long long)d->n_retries,
              (unsigned long long)d->n_dead, (unsigned long long)d->n_dropped,
              (unsigned long long)d->n_unmatched, d->inflight_msgs, d->inflight_bytes, d->wait_q.n,
              (unsigned long long)d->n_held, (unsigned long long)cs, (unsigned long long)ck,
              (unsigned long long)rs, (unsigned long long)rk, st.claiming, st.running, st.recording,
              st.producing, timed);
}

/* Jobs that are doing something now (not parked in a backoff wait). */
size_t dsp_busy_jobs(const dsp_t *d)
{
    stages_t st = stages(d);
    return st.claiming + st.running + st.recording + st.producing;
}
