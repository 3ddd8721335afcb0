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
#include "crashpoint.h"
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
                  (long long)j->msg->km.offset, (unsigned long long)d->emit_fail_unlogged + 1, err);
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

/* The message of a job's outcome, with the buffers its headers point
 * into. */
typedef struct emit_msg {
    weft_emit_t em;
    weft_header_t hdrs[EMIT_MAX_HEADERS];
    weft_ce_hname_t names[16];
    char time_buf[64], type_buf[1100], source[300];
    char attempts_buf[16], part_buf[16], off_buf[24], dlid_buf[24], msg_id[48], cut_buf[24];
} emit_msg_t;

/* The result's id: derived from trigger, generation and key, so every
 * copy of it carries the same one. */
static void result_id_of(const job_t *j, char out[37])
{
    char gen[24];
    weft_fmt_i64(gen, j->generation);
    const char *parts[3] = {j->trig->name, gen, j->msg->key};
    weft_uuid_from(out, parts, 3);
}

static void build_result(job_t *j, emit_msg_t *o)
{
    const weft_trigger_t *t = j->trig;
    msg_t *m = j->msg;
    size_t nh = 0;
    const char *in_type = weft_envelope_attr(&m->env, "type");
    const char *subj = weft_envelope_attr(&m->env, "subject");
    const char *tp[] = {in_type, ".result"}, *sp[] = {"/weft/triggers/", t->name};
    if (t->result_type)
        weft_fmt_copy(o->type_buf, sizeof(o->type_buf), t->result_type);
    else if (in_type && *in_type)
        weft_fmt_cat(o->type_buf, sizeof(o->type_buf), tp, 2);
    else
        weft_fmt_copy(o->type_buf, sizeof(o->type_buf), "weft.result");
    weft_fmt_cat(o->source, sizeof(o->source), sp, 2);
    dsp_now_rfc3339(o->time_buf, sizeof(o->time_buf));
    const weft_ce_pair_t ce[] = {
        {"specversion", "1.0"},
        {"id", j->result_id},
        {"source", o->source},
        {"type", o->type_buf},
        {"time", o->time_buf},
        {WEFT_CE_INPUTID, weft_envelope_attr(&m->env, "id")},
        {WEFT_CE_TRIGGER, t->name},
        {"subject", subj && *subj ? subj : NULL},
        {"datacontenttype", j->result_type && *j->result_type ? j->result_type : NULL},
    };
    weft_ce_binary_headers(ce, sizeof(ce) / sizeof(ce[0]), o->hdrs, &nh, EMIT_MAX_HEADERS,
                           o->names);
    o->em = (weft_emit_t){
        .broker = t->result_broker,
        .topic = t->result_topic,
        .key = m->km.key,
        .key_len = m->km.key_len,
        .value = j->result,
        .len = j->result_len,
        .hdrs = o->hdrs,
        .n_hdrs = nh,
        .msg_id = j->result_id,
    };
}

/* The dead letter: the original bytes and headers (minus any weft failure
 * metadata from an earlier life, a re-driven event), then ours. keep: how
 * many bytes of the body to send (cut short: the row has them all);
 * orig_hdrs: whether the original headers go too. */
static void build_dead(const job_t *j, emit_msg_t *o, size_t keep, int orig_hdrs)
{
    const weft_trigger_t *t = j->trig;
    const msg_t *m = j->msg;
    size_t nh = 0;
    const char *id = NULL;
    /* The dead letter's own id: one per dead letter, stable when it is
     * published again. */
    if (j->dl_id) {
        snprintf(o->msg_id, sizeof(o->msg_id), WEFT_MSGID_DLQ "%lld", (long long)j->dl_id);
        id = o->msg_id;
    }
    for (size_t i = 0; orig_hdrs && i < m->km.n_hdrs && nh < EMIT_MAX_HEADERS - 18; i++)
        if (strncasecmp(m->km.hdrs[i].name, WEFT_CE_KAFKA_OWN, WEFT_CE_OWN_LEN) != 0 &&
            strncasecmp(m->km.hdrs[i].name, WEFT_CE_NATS_OWN, WEFT_CE_OWN_LEN) != 0)
            o->hdrs[nh++] = m->km.hdrs[i];
    int cut = keep < m->km.value_len;
    if (keep > m->km.value_len)
        keep = m->km.value_len;
    snprintf(o->attempts_buf, sizeof(o->attempts_buf), "%d", j->attempts);
    snprintf(o->part_buf, sizeof(o->part_buf), "%d", (int)m->km.partition);
    snprintf(o->off_buf, sizeof(o->off_buf), "%lld", (long long)m->km.offset);
    snprintf(o->dlid_buf, sizeof(o->dlid_buf), "%lld", (long long)j->dl_id);
    snprintf(o->cut_buf, sizeof(o->cut_buf), "%zu", m->km.value_len);
    const weft_ce_pair_t ce[] = {
        {WEFT_CE_REASON, j->reason ? j->reason : "unknown"},
        {WEFT_CE_ERROR, j->error ? j->error : ""},
        {WEFT_CE_ATTEMPTS, o->attempts_buf},
        {WEFT_CE_TRIGGER, t->name},
        {WEFT_CE_SRCTOPIC, m->km.topic},
        {WEFT_CE_SRCBROKER,
         m->km.broker != WEFT_BROKER_KAFKA ? weft_broker_name(m->km.broker) : NULL},
        {WEFT_CE_SRCPARTITION, o->part_buf},
        {WEFT_CE_SRCOFFSET, o->off_buf},
        {WEFT_CE_FIRSTFAILURE, j->first_failure[0] ? j->first_failure : NULL},
        {WEFT_CE_LASTFAILURE, j->last_failure[0] ? j->last_failure : NULL},
        {WEFT_CE_DLQID, j->dl_id ? o->dlid_buf : NULL},
        {WEFT_CE_TRUNCATED, cut ? o->cut_buf : NULL},
    };
    weft_ce_binary_headers(ce, sizeof(ce) / sizeof(ce[0]), o->hdrs, &nh, EMIT_MAX_HEADERS,
                           o->names);
    o->em = (weft_emit_t){
        .broker = t->dead_letter_broker,
        .topic = t->dead_letter_topic,
        .key = m->km.key,
        .key_len = m->km.key_len,
        .value = keep ? m->km.value : "",
        .len = keep,
        .hdrs = o->hdrs,
        .n_hdrs = nh,
        .msg_id = id,
        .drop_bad_headers = 1,
    };
}

/* Headers above this size are not carried by a dead letter sent as its
 * metadata alone (its row keeps them). */
#define DEAD_HEADERS_MAX 65536

/* The dead letter in the shape its topic takes: whole if it fits, else
 * its body cut to fit, else (or after the broker refused it for its size)
 * its metadata alone. The weft.dead_letters row keeps every byte. 0, or
 * -1 with err when even the metadata is over the limit. */
static int build_dead_fit(dsp_t *d, const job_t *j, emit_msg_t *o, char *err, size_t errlen)
{
    const msg_t *m = j->msg;
    weft_adapter_t *bk = d->bk[j->trig->dead_letter_broker];
    size_t lim = bk ? weft_adapter_max_bytes(bk, j->trig->dead_letter_topic) : 0;
    if (j->dl_shrink == 0) {
        build_dead(j, o, SIZE_MAX, 1);
        size_t size = weft_emit_size(&o->em);
        if (!lim || size <= lim)
            return 0;
        /* the body's room: the limit less the rest, with the header
         * that says it was cut */
        size_t rest = size - m->km.value_len + strlen(WEFT_CE_TRUNCATED) + 40;
        if (lim > rest) {
            build_dead(j, o, lim - rest, 1);
            if (weft_emit_size(&o->em) <= lim)
                return 0;
        }
    }
    /* metadata alone: without the body, and without the original headers
     * too when they are what is too large */
    build_dead(j, o, 0, 1);
    if ((lim && weft_emit_size(&o->em) > lim) || weft_emit_size(&o->em) > DEAD_HEADERS_MAX)
        build_dead(j, o, 0, 0);
    if (lim && weft_emit_size(&o->em) > lim) {
        snprintf(err, errlen,
                 "dead letter too large even without its body: %zu bytes > topic limit %zu "
                 "topic=%s",
                 weft_emit_size(&o->em), lim, j->trig->dead_letter_topic);
        return -1;
    }
    return 0;
}

int dsp_emit_result_fits(dsp_t *d, job_t *j, char *err, size_t errlen)
{
    const weft_trigger_t *t = j->trig;
    weft_adapter_t *bk = t->result_topic ? d->bk[t->result_broker] : NULL;
    size_t lim = bk ? weft_adapter_max_bytes(bk, t->result_topic) : 0;
    if (!lim)
        return 1;
    /* Most results are far below the limit: a bound on the headers
     * (build_result's buffers and the input's attributes they copy)
     * settles it without building them. */
    const char *attrs[] = {weft_envelope_attr(&j->msg->env, "id"),
                           weft_envelope_attr(&j->msg->env, "subject"), j->result_type, t->name};
    size_t bound = j->result_len + j->msg->km.key_len + 2048;
    for (size_t i = 0; i < sizeof(attrs) / sizeof(attrs[0]); i++)
        bound += attrs[i] ? strlen(attrs[i]) : 0;
    if (bound <= lim)
        return 1;
    if (!j->result_id[0])
        result_id_of(j, j->result_id);
    emit_msg_t *o = malloc(sizeof(*o));
    if (!o)
        return 1; /* the broker still says no, if it must */
    build_result(j, o);
    size_t size = weft_emit_size(&o->em);
    free(o);
    if (size <= lim)
        return 1;
    snprintf(err, errlen, "result_too_large: %zu bytes > topic limit %zu topic=%s", size, lim,
             t->result_topic);
    return 0;
}

/* A completed outcome whose result the broker will never take (too large
 * for its topic, a header it cannot carry): the event gets a dead letter
 * instead. The ledger row goes from completed to dead, with its
 * weft.dead_letters row, before the dead letter is produced (dsp_records_done
 * then emits it), so the log, the ledger and the topic say the same. */
static void emit_replace(dsp_t *d, job_t *j, const char *reason, const char *err)
{
    weft_warn("result cannot be sent, dead-lettering trigger=%s topic=%s partition=%d "
              "offset=%lld reason=%s: %s",
              j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
              (long long)j->msg->km.offset, reason, err);
    j->rec = WEFT_REC_DEAD;
    j->replacing = 1;
    dsp_set_str(&j->reason, reason);
    dsp_set_str(&j->error, err);
    dsp_job_record(d, j);
}

/* Produces the job's result (COMPLETED with a result topic) or its dead
 * letter (DEAD), and the events of its saga transition. A job with nothing
 * to emit becomes terminal here; otherwise when the broker reported every
 * message (dsp_on_delivered). Nothing here ends a job whose outcome reached
 * no topic: what cannot be sent is held and tried again. */
void dsp_job_emit(dsp_t *d, job_t *j)
{
    const weft_trigger_t *t = j->trig;
    char err[512];
    int retriable = 1;

    j->emit_pending = 0;
    j->emit_permanent = 0;
    free(j->emit_err);
    j->emit_err = NULL;
    j->stage_us = dsp_now_us();

    emit_msg_t *o = malloc(sizeof(*o));
    if (!o) {
        emit_failed(d, j, "out of memory");
        return;
    }
    if (j->rec == WEFT_REC_COMPLETED && t->result_topic) {
        if (!dsp_emit_result_fits(d, j, err, sizeof(err))) {
            /* a result stored before the limit was known, re-emitted */
            free(o);
            emit_replace(d, j, "result_too_large", err);
            return;
        }
        build_result(j, o);
    } else if (j->rec == WEFT_REC_DEAD) {
        if (build_dead_fit(d, j, o, err, sizeof(err)) != 0) {
            free(o);
            emit_failed(d, j, err);
            return;
        }
    } else {
        free(o);
        goto saga_events;
    }
    weft_adapter_t *bk = d->bk[o->em.broker];
    if (!bk) {
        snprintf(err, sizeof(err), "no %s connection is configured for topic %s",
                 weft_broker_name(o->em.broker), o->em.topic);
    } else if (weft_adapter_produce(bk, &o->em, j, &retriable, err, sizeof(err)) == 0) {
        free(o);
        j->emit_pending++;
        goto saga_events;
    }
    free(o);
    if (retriable) {
        emit_failed(d, j, err); /* nothing produced yet */
        return;
    }
    /* It can never be sent as it is. A result becomes a dead letter; a
     * dead letter goes again as its metadata alone; a dead letter refused
     * even so is held (never acknowledged without an outcome on a topic). */
    if (j->rec == WEFT_REC_COMPLETED) {
        emit_replace(d, j,
                     strcasestr(err, "too large") || strcasestr(err, "payload") ? "result_too_large"
                                                                                : "invalid_header",
                     err);
        return;
    }
    if (j->dl_shrink == 0) {
        weft_warn("dead letter refused, sending its metadata alone trigger=%s topic=%s "
                  "offset=%lld dlq=%s: %s",
                  t->name, j->msg->km.topic, (long long)j->msg->km.offset, t->dead_letter_topic,
                  err);
        j->dl_shrink = 1;
        dsp_job_emit(d, j);
        return;
    }
    emit_failed(d, j, err);
    return;
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
    WEFT_CRASH_POINT("after_produce", 1);
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
    if (err && !retriable)
        j->emit_permanent = 1;
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
         * the same ids. A message the broker refused for its size is
         * produced in a shape it takes: a result becomes a dead letter,
         * a dead letter its metadata alone. */
        char e[512];
        snprintf(e, sizeof(e), "%s", j->emit_err ? j->emit_err : "out of memory");
        if (j->emit_permanent && j->rec == WEFT_REC_COMPLETED && j->trig->result_topic) {
            emit_replace(d, j, "result_too_large", e);
            return;
        }
        if (j->emit_permanent && j->rec == WEFT_REC_DEAD && j->dl_shrink == 0) {
            weft_warn("dead letter refused, sending its metadata alone trigger=%s topic=%s "
                      "offset=%lld dlq=%s: %s",
                      j->trig->name, j->msg->km.topic, (long long)j->msg->km.offset,
                      j->trig->dead_letter_topic, e);
            j->dl_shrink = 1;
            dsp_job_emit(d, j);
            return;
        }
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
