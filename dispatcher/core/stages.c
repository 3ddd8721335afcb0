/*
 * stages.c - the three batched PostgreSQL stages of a job: claim its key,
 * record its outcome, and a saga's transition; each builds its batch from
 * its queue and hands the answer's jobs on.
 *
 * Runs on the dispatcher loop thread. Invariant: the order of one event is
 * claim -> invoke -> record -> (saga transition) -> produce -> finish
 * (DESIGN.md, "The path of one event").
 */
#include "crashpoint.h"
#include "internal.h"

/* ---- claiming (stage) ------------------------------------------------ */

/* The keys of the connection's batch, in its order. */
static void claim_reqs(const lconn_t *lc, weft_claim_req_t *reqs)
{
    for (size_t i = 0; i < lc->n; i++) {
        job_t *j = lc->jobs[i];
        reqs[i].trigger = j->trig->name;
        reqs[i].generation = j->generation;
        reqs[i].key = j->msg->key;
        reqs[i].lease_ms = dsp_lease_ms_for(j);
    }
}

void dsp_send_claims(dsp_t *d, lconn_t *lc)
{
    size_t n = dsp_lc_begin(d, lc);
    if (n == 0)
        return;
    static weft_claim_req_t reqs[LEDGER_BATCH];
    claim_reqs(lc, reqs);
    char err[1024];
    dsp_lc_sent(d, lc,
                weft_ledger_claim_send(lc->pg, d->owner, lc->claim_mode, reqs, n, err, sizeof(err)),
                err);
}

/* Hands on the jobs of a claim batch whose answer is r; -1 with err when
 * r does not answer the batch, 1 when a fresh claim must be sent again
 * as an upsert (nothing was handed on either way). The batch leaves the
 * connection first; lc->jobs stays intact until the loop takes the
 * connection's next batch. */
int dsp_claims_done(dsp_t *d, lconn_t *lc, const weft_pg_result_t *r, char *err, size_t errlen)
{
    static weft_claim_res_t res[LEDGER_BATCH];
    static weft_claim_req_t reqs[LEDGER_BATCH];
    size_t n = lc->n;
    if (lc->claim_mode == WEFT_CLAIM_UPSERT)
        claim_reqs(lc, reqs); /* a fresh claim's answer names no keys */
    int rc = weft_ledger_claim_result(r, lc->claim_mode, reqs, n, res, err, errlen);
    if (rc != 0) {
        if (rc > 0)
            lc->claim_mode = WEFT_CLAIM_UPSERT;
        return rc;
    }
    lc->n = 0;
    WEFT_CRASH_POINT("after_claim", n);
    int all_won = 1;
    uint64_t now = dsp_now_us();
    for (size_t i = 0; i < n; i++) {
        dsp_stage_done(d, lc->jobs[i], T_CLAIM, now);
        all_won &= res[i].kind == WEFT_CLAIM_RUN;
        dsp_claim_outcome(d, lc->jobs[i], &res[i]);
        weft_claim_res_clear(&res[i]);
    }
    if (all_won)
        lc->claim_mode = WEFT_CLAIM_FRESH;
    return 0;
}

/* ---- recording --------------------------------------------------------- */

static char *headers_json(const msg_t *m)
{
    weft_buf_t b = {0};
    weft_buf_append(&b, "[", 1);
    for (size_t i = 0; i < m->km.n_hdrs; i++) {
        const weft_header_t *h = &m->km.hdrs[i];
        if (i)
            weft_buf_append(&b, ",", 1);
        char *name = weft_utf8_sanitize(strdup(h->name ? h->name : ""));
        weft_buf_append(&b, "{\"name\":", 8);
        weft_json_append_string(&b, name ? name : "?", name ? strlen(name) : 1);
        free(name);
        weft_buf_append(&b, ",\"value_base64\":", 16);
        if (!h->value) {
            weft_buf_append(&b, "null}", 5);
            continue;
        }
        weft_buf_append(&b, "\"", 1);
        weft_base64_append(&b, h->value, h->len);
        weft_buf_append(&b, "\"}", 2);
    }
    weft_buf_append(&b, "]", 1);
    return b.p;
}

void dsp_send_records(dsp_t *d, lconn_t *lc)
{
    size_t n = dsp_lc_begin(d, lc);
    if (n == 0)
        return;
    WEFT_CRASH_POINT("after_invoke", n);
    static weft_record_t recs[LEDGER_BATCH];
    static char *hjson[LEDGER_BATCH];
    for (size_t i = 0; i < n; i++) {
        job_t *j = lc->jobs[i];
        weft_record_t *r = &recs[i];
        memset(r, 0, sizeof(*r));
        hjson[i] = NULL;
        r->trigger = j->trig->name;
        r->generation = j->generation;
        r->key = j->msg->key;
        r->kind = j->rec;
        r->ran = j->ran;
        if (j->rec == WEFT_REC_COMPLETED) {
            const char *parts[3];
            char gen[24];
            weft_fmt_i64(gen, j->generation);
            parts[0] = j->trig->name;
            parts[1] = gen;
            parts[2] = j->msg->key;
            weft_uuid_from(j->result_id, parts, 3);
            r->result = j->result;
            r->result_len = j->result_len;
            r->result_type = j->result_type ? j->result_type : "";
            r->result_id = j->result_id;
        }
        r->error = j->rec == WEFT_REC_RETRY || j->rec == WEFT_REC_DEAD ? j->error : NULL;
        if (r->error == NULL && (j->rec == WEFT_REC_RETRY || j->rec == WEFT_REC_DEAD))
            r->error = "";
        r->reason = j->reason;
        if (j->rec == WEFT_REC_RETRY) {
            int delay =
                j->retry_after_ms > 0 ? j->retry_after_ms : dsp_backoff_ms(j->trig, j->attempts);
            j->due_ms = (uint64_t)delay;
            r->lease_ms = delay + dsp_lease_ms_for(j);
        }
        if (j->rec == WEFT_REC_DEAD) {
            const msg_t *m = j->msg;
            hjson[i] = headers_json(m);
            r->source_broker = weft_broker_name(m->km.broker);
            r->source_topic = m->km.topic;
            r->source_partition = m->km.partition;
            r->source_offset = m->km.offset;
            r->msg_key = m->km.key;
            r->msg_key_len = m->km.key_len;
            r->value = m->km.value ? m->km.value : (const uint8_t *)"";
            r->value_len = m->km.value_len;
            r->headers_json = hjson[i] ? hjson[i] : "[]";
            r->dead_letter_topic = j->trig->dead_letter_topic;
            r->replace_completed = j->replacing;
        }
    }
    char err[1024];
    int rc = weft_ledger_record_send(lc->pg, d->owner, recs, n, err, sizeof(err));
    for (size_t i = 0; i < n; i++)
        free(hjson[i]);
    dsp_lc_sent(d, lc, rc, err);
}

/* Hands on the jobs of a record batch, like dsp_claims_done. */
int dsp_records_done(dsp_t *d, lconn_t *lc, const weft_pg_result_t *r, char *err, size_t errlen)
{
    static weft_record_res_t res[LEDGER_BATCH];
    size_t n = lc->n;
    if (weft_ledger_record_result(r, n, res, err, errlen) != 0)
        return -1;
    lc->n = 0;
    WEFT_CRASH_POINT("after_record", n);
    uint64_t now = dsp_now_us();
    for (size_t i = 0; i < n; i++) {
        job_t *j = lc->jobs[i];
        int replacing = j->replacing;
        j->replacing = 0;
        dsp_stage_done(d, j, T_RECORD, now);
        if (!res[i].applied) {
            /* Our lease ran out and someone else owns the key now:
             * ask the ledger again rather than emit our outcome. */
            weft_warn("lost the lease, re-claiming trigger=%s topic=%s partition=%d "
                      "offset=%lld",
                      j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                      (long long)j->msg->km.offset);
            dsp_claim_enqueue(d, j);
            continue;
        }
        weft_fmt_copy(j->first_failure, sizeof(j->first_failure), res[i].first_failure);
        weft_fmt_copy(j->last_failure, sizeof(j->last_failure), res[i].last_failure);
        switch (j->rec) {
        case WEFT_REC_COMPLETED:
            d->n_completed++;
            dsp_emit_outcome(d, j);
            break;
        case WEFT_REC_DEAD:
            j->dl_id = res[i].dead_letter_id;
            if (replacing)
                dsp_job_emit(d, j); /* its saga transition happened: its events go as they are */
            else
                dsp_emit_outcome(d, j);
            break;
        case WEFT_REC_DROPPED:
            d->n_dropped++;
            if (j->trig->step_saga)
                dsp_emit_outcome(d, j);
            else
                dsp_job_terminal(d, j);
            break;
        case WEFT_REC_RETRY:
        default:
            d->n_retries++;
            weft_info("retrying trigger=%s topic=%s partition=%d offset=%lld attempt=%d "
                      "in_ms=%llu reason=%s%s",
                      j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                      (long long)j->msg->km.offset, j->attempts, (unsigned long long)j->due_ms,
                      j->reason ? j->reason : "", j->msg->km.redeliver ? " via=nak" : "");
            if (j->msg->km.redeliver) {
                /* The broker redelivers after the delay (JetStream
                 * NakWithDelay); the ledger keeps the attempt count,
                 * and the lease covers the delay. A JetStream message
                 * has exactly one job: its consumer's trigger. */
                j->msg->finish = WEFT_FINISH_NAK;
                j->msg->nak_delay_ms = (int)j->due_ms;
                dsp_job_terminal(d, j);
            } else {
                dsp_job_wait(d, j, j->due_ms, ACT_CLAIM);
            }
            break;
        }
    }
    return 0;
}

/* ---- saga transitions (stage) ---------------------------------------- */

/* Sends the transitions of the saga stage's next batch. Asked again for
 * the same outcome (a redelivered event), the state machine returns the
 * events it returned the first time. */
void dsp_send_sagas(dsp_t *d, lconn_t *lc)
{
    size_t n = dsp_lc_begin(d, lc);
    if (n == 0)
        return;
    static weft_saga_req_t reqs[SAGA_BATCH];
    static char ids[SAGA_BATCH][37];
    for (size_t i = 0; i < n; i++) {
        job_t *j = lc->jobs[i];
        const weft_trigger_t *t = j->trig;
        weft_envelope_t *env = &j->msg->env;
        weft_saga_req_t *q = &reqs[i];
        memset(q, 0, sizeof(*q));
        if (t->saga) {
            weft_saga_instance_id(ids[i], t->name, j->generation, j->msg->key);
            const char *ct = weft_envelope_attr(env, "datacontenttype");
            q->instance = ids[i];
            q->saga = t->saga;
            q->trigger = t->name;
            q->key = j->msg->key;
            q->data = weft_envelope_data(env, &q->len);
            q->content_type = ct && *ct ? ct : NULL;
        } else {
            int ok = j->rec == WEFT_REC_COMPLETED;
            q->done = (weft_saga_outcome_t){
                .instance = weft_envelope_attr(env, WEFT_CE_INSTANCE),
                .step = t->step,
                .phase = t->compensate ? "compensate" : "do",
                .ok = j->rec != WEFT_REC_DEAD,
                .output = ok ? j->result : NULL,
                .output_len = ok ? j->result_len : 0,
                .output_type = ok && j->result_type && *j->result_type ? j->result_type : NULL,
                .reason = j->reason,
                .error = j->error,
                .attempts = j->attempts,
            };
        }
    }
    char err[1024];
    dsp_lc_sent(d, lc, weft_saga_batch_send(lc->pg, reqs, n, err, sizeof(err)), err);
}

/* Hands on the jobs of a saga batch whose answer is r, like dsp_claims_done:
 * each keeps its transition's events and emits. A transition the state
 * machine refused is logged, and its job emits its own outcome without
 * saga events; one that failed otherwise is asked again in a second. */
int dsp_sagas_done(dsp_t *d, lconn_t *lc, const weft_pg_result_t *r, char *err, size_t errlen)
{
    static weft_saga_res_t res[SAGA_BATCH];
    size_t n = lc->n;
    if (weft_saga_batch_answer(r, res, n, err, errlen) != 0)
        return -1;
    lc->n = 0;
    for (size_t i = 0; i < n; i++) {
        job_t *j = lc->jobs[i];
        const weft_trigger_t *t = j->trig;
        if (res[i].rc == -1) {
            weft_warn("saga transition failed, will retry in 1 s trigger=%s topic=%s "
                      "partition=%d offset=%lld: %s",
                      t->name, j->msg->km.topic, (int)j->msg->km.partition,
                      (long long)j->msg->km.offset, res[i].error ? res[i].error : "");
            weft_saga_res_clear(&res[i]);
            dsp_job_wait(d, j, 1000, ACT_SAGA);
            continue;
        }
        if (res[i].rc == -2)
            weft_error("saga transition refused trigger=%s topic=%s partition=%d offset=%lld: %s",
                       t->name, j->msg->km.topic, (int)j->msg->km.partition,
                       (long long)j->msg->km.offset, res[i].error ? res[i].error : "");
        j->sev = res[i].ev;
        res[i].ev = (weft_saga_events_t){0};
        weft_saga_res_clear(&res[i]);
        for (size_t k = 0; k < j->sev.n; k++) {
            const weft_saga_event_t *ev = &j->sev.ev[k];
            if (strcmp(ev->type, "weft.saga.stuck") == 0)
                weft_error("saga stuck saga=%s instance=%s step=%d error=\"%s\": a compensation "
                           "failed for good; see weft sagas show %s",
                           ev->saga, ev->instance, t->step, j->error ? j->error : "", ev->instance);
            else if (strcmp(ev->type, "weft.saga.completed") == 0 ||
                     strcmp(ev->type, "weft.saga.aborted") == 0 ||
                     strcmp(ev->type, "weft.saga.started") == 0)
                weft_info("saga %s saga=%s instance=%s", ev->type + 10, ev->saga, ev->instance);
        }
        dsp_job_emit(d, j);
    }
    return 0;
}

/* Sends what each stage's queue holds on its free connections. */
void dsp_flush_ledger(dsp_t *d, lstage_t stage)
{
    for (int i = 0; i < d->n_lc; i++) {
        lconn_t *lc = &d->lc[i];
        if (lc->stage != stage)
            continue;
        DSP_STAGE[stage].send(d, lc);
    }
}

int dsp_ledger_ready(dsp_t *d)
{
    for (int i = 0; i < d->n_lc; i++)
        if (dsp_lc_ready(d, &d->lc[i]))
            return 1;
    return 0;
}
