/*
 * job.c - the job's state machine: its queues, the active-key table (one
 * live job per key; duplicates follow it), per-key ordering chains for
 * ordered triggers, backoff and waits, and the terminal step that frees a
 * job and, with its message's last job, finishes the message.
 *
 * Runs on the dispatcher loop thread. Invariants: a job is in at most one
 * queue (dsp_job_enter names its state); a key has at most one active job; a
 * message is finished by its adapter only when every job of it is
 * terminal, and only after its result or dead letter was acknowledged.
 */
#include "internal.h"

/* ---- queues and the active-key table ---------------------------------- */

void dsp_jq_push(jq_t *q, job_t *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
}

job_t *dsp_jq_pop(jq_t *q)
{
    job_t *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        j->next = NULL;
    }
    return j;
}

/* The job enters a timed stage: its time there starts now. */
void dsp_job_enter(job_t *j, job_state_t state)
{
    j->state = state;
    j->stage_us = dsp_now_us();
}

/* Queues the job for a claim batch, through its function's claim window
 * (window.c): it may wait there, unclaimed, for a slot. */
void dsp_claim_enqueue(dsp_t *d, job_t *j)
{
    if (dsp_win_enter(d, j) == 0)
        dsp_claim_push(d, j);
}

void dsp_claim_push(dsp_t *d, job_t *j)
{
    dsp_job_enter(j, J_CLAIM);
    dsp_jq_push(&d->claim_q, j);
}

static size_t hash_str(const char *s)
{
    return (size_t)weft_fnv1a_str(WEFT_FNV1A_INIT, s);
}

job_t *dsp_active_find(dsp_t *d, const char *hkey)
{
    for (job_t *j = d->active[hash_str(hkey) & (d->active_cap - 1)]; j; j = j->hnext)
        if (strcmp(j->hkey, hkey) == 0)
            return j;
    return NULL;
}

void dsp_active_add(dsp_t *d, job_t *j)
{
    size_t b = hash_str(j->hkey) & (d->active_cap - 1);
    j->hnext = d->active[b];
    d->active[b] = j;
}

static void active_del(dsp_t *d, job_t *j)
{
    job_t **pp = &d->active[hash_str(j->hkey) & (d->active_cap - 1)];
    for (; *pp; pp = &(*pp)->hnext) {
        if (*pp == j) {
            *pp = j->hnext;
            return;
        }
    }
}

/* The ordering table maps an ordering key to the last job of its chain:
 * an ordered trigger's event waits until the previous event of its key
 * reached a terminal outcome. */

ochain_t **dsp_order_find(dsp_t *d, const char *okey)
{
    ochain_t **pp = &d->order_tab[hash_str(okey) & (d->active_cap - 1)];
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->okey, okey) == 0)
            return pp;
    return pp;
}

/* ---- admission ---------------------------------------------------------- */

/* A new job of message m for trigger t (not admitted yet). */
job_t *dsp_job_new(dsp_t *d, msg_t *m, const weft_trigger_t *t)
{
    job_t *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->msg = m;
    j->trig = t;
    j->cat = d->cat;
    weft_catalog_ref(d->cat);
    j->generation = m->generation;
    j->born_us = m->consumed_us;
    ((weft_trigger_t *)t)->inflight++;
    j->all_next = d->all_jobs;
    if (d->all_jobs)
        d->all_jobs->all_prev = j;
    d->all_jobs = j;
    char gen[24];
    weft_fmt_i64(gen, j->generation);
    const char *hp[] = {t->name, "\x1f", gen, "\x1f", m->key};
    if ((j->hkey = weft_fmt_join(hp, 5)) == NULL) {
        dsp_job_free(d, j);
        return NULL;
    }
    if (t->ordered &&
        asprintf(&j->okey, "%s\x1f%s\x1f%d\x1f%.*s", t->name, m->km.topic, (int)m->km.partition,
                 (int)m->km.key_len, m->km.key ? (const char *)m->km.key : "") < 0) {
        j->okey = NULL;
        dsp_job_free(d, j);
        return NULL;
    }
    return j;
}

/* Admission: the job follows the active job of its key if there is one
 * (and ends with it), waits behind the previous event of its ordering
 * key on an ordered trigger, or is queued for its claim. */
void dsp_job_admit(dsp_t *d, job_t *j)
{
    j->msg->pending++;
    job_t *leader = dsp_active_find(d, j->hkey);
    if (leader) {
        /* The same key is already in flight: this copy ends with it. */
        j->state = J_FOLLOW;
        j->next = leader->followers;
        leader->followers = j;
        return;
    }
    dsp_active_add(d, j);
    if (j->okey) {
        ochain_t **pp = dsp_order_find(d, j->okey);
        if (*pp) {
            /* An earlier event of this key is in flight: queue behind it. */
            (*pp)->tail->order_next = j;
            (*pp)->tail = j;
            j->state = J_ORDER;
            return;
        }
        ochain_t *c = calloc(1, sizeof(*c));
        if (c && (c->okey = strdup(j->okey)) != NULL) {
            c->tail = j;
            *pp = c;
        } else {
            free(c);
            weft_error("out of memory ordering trigger=%s", j->trig->name);
        }
    }
    dsp_claim_enqueue(d, j);
}

/* ---- messages and jobs ------------------------------------------------- */

/* Ends the message: its adapter acknowledges it (how), and its memory
 * goes. The envelope points into the message, so it goes first. */
void dsp_msg_free(dsp_t *d, msg_t *m, weft_finish_t how)
{
    (void)d;
    weft_envelope_free(&m->env);
    weft_adapter_finish(m->bk, &m->km, how, m->nak_delay_ms);
    free(m->key);
    free(m);
}

void dsp_msg_job_done(dsp_t *d, msg_t *m)
{
    if (--m->pending > 0)
        return;
    d->inflight_msgs--;
    d->inflight_bytes -= m->bytes;
    dsp_msg_free(d, m, m->finish);
}

void dsp_job_free(dsp_t *d, job_t *j)
{
    if (j->all_prev)
        j->all_prev->all_next = j->all_next;
    else if (d->all_jobs == j)
        d->all_jobs = j->all_next;
    if (j->all_next)
        j->all_next->all_prev = j->all_prev;
    free(j->result);
    free(j->result_type);
    free(j->error);
    free(j->reason);
    free(j->hkey);
    free(j->okey);
    free(j->emit_err);
    weft_saga_events_free(&j->sev);
    dsp_win_drop(j);
    d->inflight_bytes -= j->result_counted;
    ((weft_trigger_t *)j->trig)->inflight--;
    weft_catalog_unref(j->cat);
    free(j);
}

/* The result the job now carries counts in the byte bound (its earlier
 * one, if any, no longer does). */
void dsp_job_count_result(dsp_t *d, job_t *j)
{
    d->inflight_bytes = d->inflight_bytes - j->result_counted + j->result_len;
    j->result_counted = j->result_len;
}

/* The job reached its terminal outcome: finish it and its followers, and
 * let the next event of its ordering key go. */
void dsp_job_terminal(dsp_t *d, job_t *j)
{
    weft_lat_add(&d->lat[T_TOTAL], dsp_now_us() - j->born_us);
    active_del(d, j);
    if (j->okey) {
        job_t *next = j->order_next;
        if (next) {
            dsp_claim_enqueue(d, next);
        } else {
            ochain_t **pp = dsp_order_find(d, j->okey);
            ochain_t *c = *pp;
            if (c && c->tail == j) {
                *pp = c->next;
                free(c->okey);
                free(c);
            }
        }
    }
    job_t *f = j->followers;
    while (f) {
        job_t *next = f->next;
        dsp_msg_job_done(d, f->msg);
        dsp_job_free(d, f);
        f = next;
    }
    dsp_msg_job_done(d, j->msg);
    dsp_job_free(d, j);
}

void dsp_set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

void dsp_job_wait(dsp_t *d, job_t *j, uint64_t delay_ms, job_act_t act)
{
    j->state = J_WAIT;
    j->after_wait = act;
    j->due_ms = dsp_now_ms() + delay_ms;
    dsp_jq_push(&d->wait_q, j);
}

int dsp_lease_ms_for(const job_t *j)
{
    /* A saga start runs no function: its lease covers a transaction. */
    return (j->trig->fn ? j->trig->fn->timeout_ms : 1000) + LEASE_MARGIN_MS;
}

int weft_job_backoff_ms(int initial_ms, double multiplier, int max_ms, double jitter, int attempts,
                        double u)
{
    double b = initial_ms;
    for (int i = 1; i < attempts && b < max_ms; i++)
        b *= multiplier;
    if (b > max_ms)
        b = max_ms;
    return (int)(b * (1.0 - jitter * u));
}

/* Exponential backoff with jitter (weft_job_backoff_ms), the jitter drawn
 * here, so that retries of many events spread out. */
int dsp_backoff_ms(const weft_trigger_t *t, int attempts)
{
    return weft_job_backoff_ms(t->backoff_initial_ms, t->backoff_multiplier, t->backoff_max_ms,
                               t->backoff_jitter, attempts, (double)rand() / RAND_MAX);
}

/* ---- claiming ---------------------------------------------------------- */

static int event_expired(const job_t *j)
{
    if (j->trig->max_event_age_ms <= 0 || j->msg->km.timestamp_ms <= 0)
        return 0;
    return dsp_realtime_ms() - j->msg->km.timestamp_ms > j->trig->max_event_age_ms;
}

weft_job_next_t weft_job_after_claim(const weft_job_claim_t *c, const char **reason)
{
    *reason = NULL;
    switch (c->kind) {
    case WEFT_CLAIM_RUN:
        if (c->bad_input)
            return WEFT_JOB_FAIL;
        if (c->expired) {
            *reason = "expired";
            return WEFT_JOB_FAIL;
        }
        if (c->attempts >= c->max_attempts) {
            *reason = "max_attempts";
            return WEFT_JOB_FAIL;
        }
        if (c->takeovers > c->max_takeovers) {
            /* Its owners kept dying while they held it, before any
             * outcome was recorded: the event may be what kills them. */
            *reason = "abandoned_claims";
            return WEFT_JOB_FAIL;
        }
        if (c->saga_start)
            return WEFT_JOB_START_SAGA;
        if (c->saga_step && !c->instance_valid) {
            *reason = "malformed";
            return WEFT_JOB_FAIL;
        }
        return WEFT_JOB_RUN;
    case WEFT_CLAIM_COMPLETED:
        return WEFT_JOB_REEMIT;
    case WEFT_CLAIM_DROPPED:
        return c->saga_step ? WEFT_JOB_DROP_STEP : WEFT_JOB_DROP;
    case WEFT_CLAIM_DEAD:
        return WEFT_JOB_REPUBLISH_DEAD;
    case WEFT_CLAIM_BUSY:
    default:
        return WEFT_JOB_WAIT;
    }
}

weft_rec_kind_t weft_job_after_attempt(weft_rec_kind_t rec, int attempts, int max_attempts)
{
    return rec == WEFT_REC_RETRY && attempts >= max_attempts ? WEFT_REC_DEAD : rec;
}

void dsp_claim_outcome(dsp_t *d, job_t *j, weft_claim_res_t *res)
{
    j->attempts = res->attempts;
    j->ran = 0;
    weft_job_claim_t c = {
        .kind = res->kind,
        .attempts = j->attempts,
        .max_attempts = j->trig->max_attempts,
        .takeovers = res->takeovers,
        .max_takeovers = (int)d->max_takeovers,
        .bad_input = j->preset_reason != NULL,
        .saga_start = j->trig->saga != NULL,
        .saga_step = j->trig->step_saga != NULL,
    };
    /* Only asked when they can change the answer: the clock and the
     * envelope lookup cost on every claim otherwise. */
    if (c.kind == WEFT_CLAIM_RUN && !c.bad_input)
        c.expired = event_expired(j);
    if (c.kind == WEFT_CLAIM_RUN && c.saga_step)
        c.instance_valid = weft_uuid_valid(weft_envelope_attr(&j->msg->env, WEFT_CE_INSTANCE));
    const char *reason;
    weft_job_next_t next = weft_job_after_claim(&c, &reason);
    /* Its window slot was for a run (window.c). */
    if (next != WEFT_JOB_RUN)
        dsp_win_release(d, j);
    else
        dsp_win_claimed(j, dsp_now_us() - j->stage_us);
    switch (next) {
    case WEFT_JOB_FAIL:
        if (c.bad_input) {
            dsp_job_fail_now(d, j, j->preset_reason, j->msg->env_err);
        } else if (strcmp(reason, "expired") == 0) {
            char e[200];
            snprintf(e, sizeof(e), "event is older than max_event_age_ms=%lld",
                     (long long)j->trig->max_event_age_ms);
            dsp_job_fail_now(d, j, reason, e);
        } else if (strcmp(reason, "max_attempts") == 0) {
            char e[1200];
            snprintf(e, sizeof(e), "%s (attempts exhausted: %d of %d)",
                     res->last_error ? res->last_error : "no error recorded", j->attempts,
                     j->trig->max_attempts);
            dsp_job_fail_now(d, j, reason, e);
        } else if (strcmp(reason, "abandoned_claims") == 0) {
            char e[1400];
            snprintf(e, sizeof(e),
                     "taken over %d times from dispatchers that stopped while they held it "
                     "(dispatcher.max_takeovers=%lld), %d attempts recorded; last error: %s",
                     res->takeovers, (long long)d->max_takeovers, j->attempts,
                     res->last_error ? res->last_error : "none");
            dsp_job_fail_now(d, j, reason, e);
        } else {
            dsp_job_fail_now(d, j, reason,
                             "a saga step event needs a weftinstance attribute (a UUID)");
        }
        return;
    case WEFT_JOB_START_SAGA:
        /* Starting a saga runs no function: the start is the outcome
         * (the transition happens once it is recorded). */
        j->rec = WEFT_REC_COMPLETED;
        dsp_job_record(d, j);
        return;
    case WEFT_JOB_RUN:
        dsp_job_invoke(d, j);
        return;
    case WEFT_JOB_REEMIT:
        d->n_reemitted++;
        j->rec = WEFT_REC_COMPLETED;
        free(j->result);
        j->result = NULL;
        j->result_len = 0;
        if (res->result_len) {
            j->result = malloc(res->result_len);
            if (j->result)
                memcpy(j->result, res->result, res->result_len);
            j->result_len = j->result ? res->result_len : 0;
        }
        dsp_job_count_result(d, j);
        dsp_set_str(&j->result_type, res->result_type);
        if (res->result_id)
            weft_fmt_copy(j->result_id, sizeof(j->result_id), res->result_id);
        dsp_emit_outcome(d, j);
        return;
    case WEFT_JOB_DROP_STEP:
        j->rec = WEFT_REC_DROPPED;
        dsp_emit_outcome(d, j);
        return;
    case WEFT_JOB_DROP:
        dsp_job_terminal(d, j);
        return;
    case WEFT_JOB_REPUBLISH_DEAD:
        /* Dead-lettered before, maybe not yet published: publish again
         * (consumers deduplicate on ce_weftdlqid). */
        j->rec = WEFT_REC_DEAD;
        dsp_set_str(&j->reason, res->reason ? res->reason : "unknown");
        dsp_set_str(&j->error, res->last_error);
        j->dl_id = res->dead_letter_id;
        weft_fmt_copy(j->first_failure, sizeof(j->first_failure), res->first_failure);
        weft_fmt_copy(j->last_failure, sizeof(j->last_failure), res->last_failure);
        dsp_emit_outcome(d, j);
        return;
    case WEFT_JOB_WAIT:
    default:
        weft_info("key held by another owner, waiting trigger=%s topic=%s partition=%d "
                  "offset=%lld lease_left_ms=%lld",
                  j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                  (long long)j->msg->km.offset, (long long)res->lease_left_ms);
        dsp_job_wait(d, j, (uint64_t)res->lease_left_ms + 100, ACT_CLAIM);
        return;
    }
}
