/*
 * emit.c - producing results, dead letters and saga events, and handling
 * the broker's delivery reports; the outboxes of saga events that no job
 * owns (deadline transitions) and their re-publication.
 *
 * Runs on the dispatcher loop thread (delivery reports arrive through the
 * adapters' serve calls). Invariant: a job is terminal only after every
 * message it produced was acknowledged; a failed produce becomes a retry,
 * never a lost outcome.
 */
#include "internal.h"

#include "encode.h"

/* ---- emitting results and dead letters -------------------------------- */

/* Every held event retries each second, so a missing topic under a
 * backlog would write thousands of identical lines a second: one line a
 * second says it, with how many failures it stands for. */
static void emit_failed(dsp_t *d, job_t *j, const char *err)
{
    uint64_t now = dsp_now_ms();
    if (now >= d->emit_fail_logged_ms + 1000) {
        weft_warn("emit failed, retrying in 1 s trigger=%s topic=%s partition=%d offset=%lld "
                  "failures_since_last_line=%llu: %s",
                  j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                  (long long)j->msg->km.offset, (unsigned long long)d->emit_fail_unlogged + 1,
                  err);
        d->emit_fail_logged_ms = now;
        d->emit_fail_unlogged = 0;
    } else {
        d->emit_fail_unlogged++;
    }
    dsp_job_wait(d, j, 1000, ACT_EMIT);
}

static void job_emitted(dsp_t *d, job_t *j);

/* Produces one saga event on its saga's broker (keyed by instance, so an
 * instance's events keep their order; Nats-Msg-Id = its id). 0 queued;
 * -1 with *retriable and errstr. */
static int produce_saga_event(dsp_t *d, const weft_saga_event_t *ev, weft_broker_t broker,
                              void *opaque, int *retriable, char *errstr, size_t errlen)
{
    weft_adapter_t *bk = d->bk[broker];
    *retriable = 1;
    if (!bk) {
        snprintf(errstr, errlen, "no %s connection is configured for saga topic %s",
                 weft_broker_name(broker), ev->topic);
        return -1;
    }
    weft_saga_hdrbuf_t hb;
    weft_header_t hdrs[WEFT_SAGA_MAX_HEADERS];
    size_t nh = weft_saga_headers(ev, &hb, hdrs);
    weft_emit_t em = {
        .broker = broker,
        .topic = ev->topic,
        .key = ev->instance,
        .key_len = strlen(ev->instance),
        .value = ev->data,
        .len = ev->data_len,
        .hdrs = hdrs,
        .n_hdrs = nh,
        .msg_id = ev->id,
    };
    return weft_adapter_produce(bk, &em, opaque, retriable, errstr, errlen);
}

/* Produces the saga events of the job's transition (after its result or
 * dead letter, if any). A retriable failure is remembered in emit_err and
 * stops here: the job is emitted again, whole, once the messages already
 * produced are reported. */
static void emit_saga_events(dsp_t *d, job_t *j)
{
    for (size_t i = 0; i < j->sev.n && !j->emit_err; i++) {
        const weft_saga_event_t *ev = &j->sev.ev[i];
        char err[512];
        int retriable;
        if (produce_saga_event(d, ev, j->trig->saga_broker, j, &retriable, err, sizeof(err)) == 0) {
            j->emit_pending++;
        } else if (retriable) {
            j->emit_err = strdup(err);
            if (!j->emit_err)
                j->emit_err = strdup("out of memory");
        } else {
            /* Never sendable (a header NATS cannot carry): the transition
             * is stored; say so loudly rather than stall the saga. */
            weft_error("saga event cannot be sent saga=%s instance=%s type=%s topic=%s: %s",
                       ev->saga, ev->instance, ev->type, ev->topic, err);
        }
    }
}

/* Produces the job's result (COMPLETED with a result topic) or its dead
 * letter (DEAD), and the events of its saga transition. A job with nothing
 * to emit becomes terminal here; otherwise when the broker reported every
 * message (dsp_on_delivered). */
void dsp_job_emit(dsp_t *d, job_t *j)
{
    const weft_trigger_t *t = j->trig;
    msg_t *m = j->msg;
    weft_header_t hdrs[EMIT_MAX_HEADERS];
    weft_ce_hname_t names[16];
    size_t nh = 0;
    const char *topic;
    const void *value;
    size_t value_len;
    char time_buf[64], type_buf[1100], source[300];
    char attempts_buf[16], part_buf[16], off_buf[24], dlid_buf[24], msg_id[48];
    weft_broker_t sink;
    const char *id = NULL;

    j->emit_pending = 0;
    free(j->emit_err);
    j->emit_err = NULL;
    j->stage_us = dsp_now_us();

    if (j->rec == WEFT_REC_COMPLETED && t->result_topic) {
        topic = t->result_topic;
        sink = t->result_broker;
        id = j->result_id;
        value = j->result;
        value_len = j->result_len;
        const char *in_type = weft_envelope_attr(&m->env, "type");
        const char *subj = weft_envelope_attr(&m->env, "subject");
        const char *tp[] = {in_type, ".result"}, *sp[] = {"/weft/triggers/", t->name};
        if (t->result_type)
            weft_fmt_copy(type_buf, sizeof(type_buf), t->result_type);
        else if (in_type && *in_type)
            weft_fmt_cat(type_buf, sizeof(type_buf), tp, 2);
        else
            weft_fmt_copy(type_buf, sizeof(type_buf), "weft.result");
        weft_fmt_cat(source, sizeof(source), sp, 2);
        dsp_now_rfc3339(time_buf, sizeof(time_buf));
        const weft_ce_pair_t ce[] = {
            {"specversion", "1.0"},
            {"id", j->result_id},
            {"source", source},
            {"type", type_buf},
            {"time", time_buf},
            {WEFT_CE_INPUTID, weft_envelope_attr(&m->env, "id")},
            {WEFT_CE_TRIGGER, t->name},
            {"subject", subj && *subj ? subj : NULL},
            {"datacontenttype", j->result_type && *j->result_type ? j->result_type : NULL},
        };
        weft_ce_binary_headers(ce, sizeof(ce) / sizeof(ce[0]), hdrs, &nh, EMIT_MAX_HEADERS, names);
    } else if (j->rec == WEFT_REC_DEAD) {
        topic = t->dead_letter_topic;
        sink = t->dead_letter_broker;
        value = m->km.value;
        value_len = m->km.value_len;
        /* The dead letter's own id: one per dead letter, stable when it is
         * published again. */
        if (j->dl_id) {
            snprintf(msg_id, sizeof(msg_id), WEFT_MSGID_DLQ "%lld", (long long)j->dl_id);
            id = msg_id;
        }
        /* The original headers, minus any weft failure metadata from an
         * earlier life (a re-driven event), then ours. */
        for (size_t i = 0; i < m->km.n_hdrs && nh < EMIT_MAX_HEADERS - 17; i++)
            if (strncasecmp(m->km.hdrs[i].name, WEFT_CE_KAFKA_OWN, WEFT_CE_OWN_LEN) != 0 &&
                strncasecmp(m->km.hdrs[i].name, WEFT_CE_NATS_OWN, WEFT_CE_OWN_LEN) != 0)
                hdrs[nh++] = m->km.hdrs[i];
        snprintf(attempts_buf, sizeof(attempts_buf), "%d", j->attempts);
        snprintf(part_buf, sizeof(part_buf), "%d", (int)m->km.partition);
        snprintf(off_buf, sizeof(off_buf), "%lld", (long long)m->km.offset);
        snprintf(dlid_buf, sizeof(dlid_buf), "%lld", (long long)j->dl_id);
        const weft_ce_pair_t ce[] = {
            {WEFT_CE_REASON, j->reason ? j->reason : "unknown"},
            {WEFT_CE_ERROR, j->error ? j->error : ""},
            {WEFT_CE_ATTEMPTS, attempts_buf},
            {WEFT_CE_TRIGGER, t->name},
            {WEFT_CE_SRCTOPIC, m->km.topic},
            {WEFT_CE_SRCBROKER,
             m->km.broker != WEFT_BROKER_KAFKA ? weft_broker_name(m->km.broker) : NULL},
            {WEFT_CE_SRCPARTITION, part_buf},
            {WEFT_CE_SRCOFFSET, off_buf},
            {WEFT_CE_FIRSTFAILURE, j->first_failure[0] ? j->first_failure : NULL},
            {WEFT_CE_LASTFAILURE, j->last_failure[0] ? j->last_failure : NULL},
            {WEFT_CE_DLQID, j->dl_id ? dlid_buf : NULL},
        };
        weft_ce_binary_headers(ce, sizeof(ce) / sizeof(ce[0]), hdrs, &nh, EMIT_MAX_HEADERS, names);
    } else {
        goto saga_events;
    }
    char err[512];
    int retriable = 1;
    weft_adapter_t *bk = d->bk[sink];
    weft_emit_t em = {
        .broker = sink,
        .topic = topic,
        .key = m->km.key,
        .key_len = m->km.key_len,
        .value = value,
        .len = value_len,
        .hdrs = hdrs,
        .n_hdrs = nh,
        .msg_id = id,
        .drop_bad_headers = j->rec == WEFT_REC_DEAD,
    };
    if (!bk) {
        snprintf(err, sizeof(err), "no %s connection is configured for topic %s",
                 weft_broker_name(sink), topic);
    } else if (weft_adapter_produce(bk, &em, j, &retriable, err, sizeof(err)) == 0) {
        j->emit_pending++;
        goto saga_events;
    }
    if (retriable) {
        emit_failed(d, j, err); /* nothing produced yet */
        return;
    }
    /* It can never be sent. A result becomes a dead letter (its reason
     * says why); a dead letter that cannot be sent keeps its row in
     * weft.dead_letters and ends here, so nothing stalls. */
    if (j->rec == WEFT_REC_COMPLETED) {
        weft_warn("result cannot be sent, dead-lettering trigger=%s topic=%s offset=%lld: %s",
                  t->name, m->km.topic, (long long)m->km.offset, err);
        j->rec = WEFT_REC_DEAD;
        dsp_set_str(&j->reason, "invalid_header");
        dsp_set_str(&j->error, err);
        dsp_job_emit(d, j);
        return;
    }
    weft_error("dead letter cannot be sent trigger=%s topic=%s offset=%lld dlq=%s: %s", t->name,
               m->km.topic, (long long)m->km.offset, topic, err);
saga_events:
    emit_saga_events(d, j);
    if (j->emit_pending > 0) {
        j->state = J_EMIT;
    } else if (j->emit_err) {
        char e[512];
        snprintf(e, sizeof(e), "%s", j->emit_err);
        emit_failed(d, j, e);
    } else {
        job_emitted(d, j);
    }
}

static void outbox_delivered(dsp_t *d, outbox_t *o, const char *err);

/* Everything the job produced was acknowledged. */
static void job_emitted(dsp_t *d, job_t *j)
{
    dsp_stage_done(d, j, T_PRODUCE, dsp_now_us());
    if (j->rec == WEFT_REC_DEAD) {
        d->n_dead++;
        weft_warn("dead-lettered trigger=%s topic=%s partition=%d offset=%lld reason=%s "
                  "attempts=%d dlq=%s error=\"%s\"",
                  j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                  (long long)j->msg->km.offset, j->reason ? j->reason : "", j->attempts,
                  j->trig->dead_letter_topic, j->error ? j->error : "");
    }
    dsp_job_terminal(d, j);
}

void dsp_on_delivered(void *opaque, void *msg_opaque, const char *err, int retriable)
{
    dsp_t *d = opaque;
    (void)retriable;
    if (*(const emitter_t *)msg_opaque == EMITTER_OUTBOX) {
        outbox_delivered(d, msg_opaque, err);
        return;
    }
    job_t *j = msg_opaque;
    if (err && !j->emit_err) {
        j->emit_err = strdup(err);
        if (!j->emit_err)
            j->emit_err = strdup("out of memory");
    }
    if (j->emit_pending > 0)
        j->emit_pending--;
    if (j->emit_pending > 0)
        return;
    if (j->emit_err) {
        /* Produce everything again: the copies already delivered carry
         * the same ids. */
        char e[512];
        snprintf(e, sizeof(e), "%s", j->emit_err ? j->emit_err : "out of memory");
        emit_failed(d, j, e);
        return;
    }
    job_emitted(d, j);
}

/* ---- sagas ------------------------------------------------------------- */

/* Whether the job's recorded outcome moves a saga: a start that was
 * decoded, or a step or compensation of a named instance that finished
 * (ok, dropped = ok without output, or dead = failed for good). */
static int moves_saga(const job_t *j)
{
    const weft_trigger_t *t = j->trig;
    if (t->saga)
        return j->rec == WEFT_REC_COMPLETED; /* undecodable: dead-lettered, no saga */
    return t->step_saga && /* no instance: dead-lettered as malformed when claimed */
           weft_uuid_valid(weft_envelope_attr(&j->msg->env, WEFT_CE_INSTANCE));
}

/* Emits a recorded outcome: for a job that moves a saga, after its
 * transition (the saga stage asks PostgreSQL for it). */
void dsp_emit_outcome(dsp_t *d, job_t *j)
{
    weft_saga_events_free(&j->sev);
    if (!moves_saga(j)) {
        dsp_job_emit(d, j);
        return;
    }
    j->state = J_SAGA;
    dsp_jq_push(&d->saga_q, j);
}

/* Events of transitions no consumed event owns (a deadline passing, or
 * events found unacknowledged in the outbox): produced on their own, then
 * marked published. A failure leaves them unmarked, and the outbox scan
 * publishes them again. */
static void outbox_emit(dsp_t *d, weft_saga_events_t *ev)
{
    outbox_t *o = calloc(1, sizeof(*o));
    if (!o) {
        weft_saga_events_free(ev);
        return;
    }
    o->emitter = EMITTER_OUTBOX;
    o->ev = *ev;
    memset(ev, 0, sizeof(*ev));
    o->next = d->outboxes;
    d->outboxes = o;
    for (size_t i = 0; i < o->ev.n; i++) {
        const weft_saga_event_t *e = &o->ev.ev[i];
        const weft_saga_ref_t *sg = weft_catalog_saga(d->cat, e->saga);
        char err[512];
        int retriable;
        if (produce_saga_event(d, e, sg ? sg->broker : WEFT_BROKER_KAFKA, o, &retriable, err,
                               sizeof(err)) == 0) {
            o->pending++;
        } else {
            o->failed = 1;
            weft_warn("saga event not sent, will retry saga=%s instance=%s type=%s: %s", e->saga,
                      e->instance, e->type, err);
        }
    }
    if (o->pending == 0)
        outbox_delivered(d, o, NULL);
}

static void outbox_delivered(dsp_t *d, outbox_t *o, const char *err)
{
    if (err)
        o->failed = 1;
    if (o->pending > 0 && --o->pending > 0)
        return; /* more reports to come */
    if (!o->failed && dsp_pg_usable(d)) {
        char e[512];
        if (weft_saga_published(d->pg, &o->ev, e, sizeof(e)) != 0)
            weft_warn("%s", e);
    }
    for (outbox_t **pp = &d->outboxes; *pp; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    weft_saga_events_free(&o->ev);
    free(o);
}

/* Once a second: fail and compensate saga instances past their deadline;
 * every 10 s: publish again what a dispatcher that died could not. */
void dsp_saga_tick(dsp_t *d)
{
    if (!d->cat || d->cat->n_sagas == 0 || d->stopping)
        return;
    uint64_t now = dsp_now_ms();
    if (now < d->saga_expire_at || now < d->pg_retry_at || !dsp_pg_usable(d))
        return;
    d->saga_expire_at = now + 1000;
    char err[1024];
    weft_saga_events_t ev = {0};
    if (weft_saga_expire(d->pg, 100, &ev, err, sizeof(err)) != 0) {
        weft_warn("%s", err);
        weft_saga_events_free(&ev);
        return;
    }
    for (size_t i = 0; i < ev.n; i++)
        if (strcmp(ev.ev[i].type, "weft.saga.step.failed") == 0)
            weft_warn("saga deadline passed, compensating saga=%s instance=%s", ev.ev[i].saga,
                      ev.ev[i].instance);
    if (ev.n)
        outbox_emit(d, &ev);
    if (now < d->saga_republish_at)
        return;
    d->saga_republish_at = now + 10000;
    weft_saga_events_t old = {0};
    if (weft_saga_unpublished(d->pg, 10000, 1000, &old, err, sizeof(err)) != 0) {
        weft_warn("%s", err);
        weft_saga_events_free(&old);
        return;
    }
    if (old.n) {
        weft_info("publishing saga events again events=%zu", old.n);
        outbox_emit(d, &old);
    }
}
