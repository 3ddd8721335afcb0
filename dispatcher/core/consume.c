/*
 * consume.c - taking messages from the adapters: decoding, matching
 * triggers (one job per matching trigger), admission, and backpressure at
 * dispatcher.max_inflight, dispatcher.max_inflight_bytes and each
 * trigger's max_inflight.
 *
 * Runs on the dispatcher loop thread. Invariants: at most max_inflight
 * messages and about max_inflight_bytes bytes (overshot by at most one
 * max_event_bytes, plus the results of jobs already running) are held;
 * at a global bound the loop stops taking messages and, after
 * PAUSE_AFTER_MS, pauses every adapter until half the bound. A trigger at
 * its own bound stops the taking of messages too, as a global bound does,
 * and if it is still there after PAUSE_AFTER_MS it holds only what feeds it
 * (weft_adapter_hold) until half, and everything else flows again: a slow
 * trigger never stalls the others for more than that, and a trigger that
 * only brushes its bound under load does not pause its partitions (a Kafka
 * pause drops the prefetched messages: see internal.h). A topic that feeds
 * several triggers is paused while any of them is held.
 */
#include "internal.h"

/* ---- consuming --------------------------------------------------------- */

static const char *env_attr(void *ev, const char *name)
{
    return weft_envelope_attr(ev, name);
}

/* The triggers a message may run: a JetStream message belongs to the
 * trigger whose consumer fetched it; Kafka and core NATS messages fan out
 * to every trigger on their topic. */
static size_t candidates(dsp_t *d, const weft_bmsg_t *km, const weft_trigger_t **out, size_t max)
{
    if (km->broker != WEFT_BROKER_JETSTREAM)
        return weft_catalog_on_topic(d->cat, km->broker, km->topic, out, max);
    for (size_t i = 0; i < d->cat->n_trigs && max > 0; i++) {
        const weft_trigger_t *t = &d->cat->trigs[i];
        if (t->broker == WEFT_BROKER_JETSTREAM && km->trigger &&
            strcmp(t->name, km->trigger) == 0) {
            out[0] = t;
            return 1;
        }
    }
    return 0;
}

static void take_message(dsp_t *d, weft_adapter_t *bk, weft_bmsg_t *km)
{
    d->n_consumed++;
    msg_t *m = calloc(1, sizeof(*m));
    if (!m) {
        /* It will be redelivered (the adapter does not acknowledge it). */
        weft_error("out of memory, dropping local copy topic=%s partition=%d offset=%lld",
                   km->topic, (int)km->partition, (long long)km->offset);
        weft_adapter_finish(bk, km, WEFT_FINISH_RELEASE, 0);
        return;
    }
    m->km = *km;
    m->bk = bk;
    m->finish = WEFT_FINISH_ACK;
    m->consumed_us = dsp_now_us();
    m->bytes = sizeof(*m) + km->value_len + km->key_len;
    for (size_t i = 0; i < km->n_hdrs; i++)
        m->bytes += km->hdrs[i].len + (km->hdrs[i].name ? strlen(km->hdrs[i].name) : 0);
    d->inflight_bytes += m->bytes;
    if (km->timestamp_ms > 0) {
        int64_t age = dsp_realtime_ms() - km->timestamp_ms;
        weft_lat_add(&d->lat[T_AGE], age > 0 ? (uint64_t)age * 1000 : 0);
    }
    d->inflight_msgs++;
    m->pending = 1; /* held until every job is admitted */

    char plain_id[600], plain_src[300];
    weft_plain_coords(km, d->owner, plain_id, sizeof(plain_id), plain_src, sizeof(plain_src));
    const char *preset = NULL;
    if ((int64_t)km->value_len > d->max_event_bytes) {
        m->env_status = WEFT_ENV_MALFORMED;
        memset(&m->env, 0, sizeof(m->env));
        snprintf(m->env_err, sizeof(m->env_err), "message of %zu bytes exceeds %lld bytes",
                 km->value_len, (long long)d->max_event_bytes);
        preset = "oversized";
    } else {
        m->env_status = weft_envelope_decode_binding(
            &m->env, km->broker == WEFT_BROKER_KAFKA ? WEFT_BINDING_KAFKA : WEFT_BINDING_NATS,
            km->hdrs, km->n_hdrs, km->value, km->value_len, plain_id, plain_src, m->env_err,
            sizeof(m->env_err));
        if (m->env_status == WEFT_ENV_MALFORMED)
            preset = "malformed";
        else if (m->env_status == WEFT_ENV_UNSUPPORTED)
            preset = "unsupported";
    }
    int ce = m->env_status == WEFT_ENV_OK && m->env.mode != WEFT_ENV_PLAIN;
    m->key = weft_event_key(&m->km, ce ? m->env.ce->source : NULL, ce ? m->env.ce->id : NULL,
                            plain_src, plain_id);
    if (!m->key) {
        weft_error("out of memory building a key topic=%s partition=%d offset=%lld", km->topic,
                   (int)km->partition, (long long)km->offset);
        m->pending = 0;
        d->inflight_msgs--;
        d->inflight_bytes -= m->bytes;
        /* Not finished: the offset will not pass it / it is not acked, and
         * the message is redelivered. */
        dsp_msg_free(d, m, WEFT_FINISH_RELEASE);
        return;
    }

    const weft_trigger_t *on_topic[256];
    size_t n = candidates(d, &m->km, on_topic, 256);
    if (m->km.broker == WEFT_BROKER_JETSTREAM && n == 0) {
        /* Its trigger was disabled or changed meanwhile: not ours to
         * decide; JetStream redelivers it to the consumer's next owner. */
        m->finish = WEFT_FINISH_RELEASE;
    }
    int matched = 0;
    /* A re-driven dead letter or a replayed event is for the trigger named
     * in its header only; a replay with --reexecute also names the ledger
     * generation to run under. */
    char only[256] = "";
    for (size_t i = 0; i < m->km.n_hdrs; i++) {
        const weft_header_t *h = &m->km.hdrs[i];
        if ((strcmp(h->name, WEFT_HDR_REDRIVE_TRIGGER) == 0 ||
             strcmp(h->name, WEFT_HDR_REPLAY_TRIGGER) == 0) &&
            h->value && h->len < sizeof(only)) {
            memcpy(only, h->value, h->len);
            only[h->len] = '\0';
        } else if (strcmp(h->name, WEFT_HDR_GENERATION) == 0 && h->value) {
            m->generation = weft_event_generation(h->value, h->len);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const weft_trigger_t *t = on_topic[i];
        if (only[0] && strcmp(only, t->name) != 0)
            continue;
        if (!preset &&
            !weft_trigger_matches(t, m->km.broker, m->km.topic, weft_envelope_attr(&m->env, "type"),
                                  env_attr, &m->env))
            continue;
        job_t *j = dsp_job_new(d, m, t);
        if (!j) {
            weft_error("out of memory creating a job trigger=%s", t->name);
            continue;
        }
        j->preset_reason = preset;
        if (preset)
            weft_warn("undecodable message trigger=%s topic=%s partition=%d offset=%lld "
                      "reason=%s error=\"%s\"",
                      t->name, m->km.topic, (int)m->km.partition, (long long)m->km.offset, preset,
                      m->env_err);
        dsp_job_admit(d, j);
        matched++;
    }
    if (!matched)
        d->n_unmatched++;
    dsp_msg_job_done(d, m);
}

static void hold_triggers(dsp_t *d);

/* A global bound: messages or bytes, or a trigger at its own bound that
 * is not held yet. */
static int at_bound(const dsp_t *d)
{
    return d->inflight_msgs >= (size_t)d->max_inflight ||
           d->inflight_bytes >= (size_t)d->max_inflight_bytes || d->trig_waiting;
}

/* Messages that may be taken now. Counting bytes before a message is read
 * is impossible, so the byte room is turned into a count of the largest
 * messages that fit (plus one): the bound is overshot by at most one
 * max_event_bytes (an oversized message is dead-lettered at once). */
static size_t room_now(const dsp_t *d)
{
    if (at_bound(d))
        return 0;
    size_t room = (size_t)d->max_inflight - d->inflight_msgs;
    size_t by_bytes =
        ((size_t)d->max_inflight_bytes - d->inflight_bytes) / (size_t)d->max_event_bytes + 1;
    if (by_bytes < room)
        room = by_bytes;
    return room < CONSUME_BATCH ? room : CONSUME_BATCH;
}

void dsp_consume(dsp_t *d)
{
    static weft_bmsg_t batch[CONSUME_BATCH];
    /* At the bound and not paused: leave the messages in the adapters'
     * queues (see the top of the file). */
    if (!d->paused && at_bound(d))
        return;
    for (size_t a = 0; a < d->n_adapters; a++) {
        weft_adapter_t *bk = d->adapters[a];
        size_t taken = 0;
        for (int round = 0; round < 64 && taken < 4 * CONSUME_BATCH; round++) {
            size_t room = CONSUME_BATCH;
            if (!d->stopping && !d->paused)
                room = room_now(d);
            /* When paused or stopping we still poll (rebalances, liveness);
             * messages already fetched are kept, and the bound is soft by
             * at most the prefetch queue. */
            if (room == 0)
                room = 1;
            int fatal = 0;
            size_t n = weft_adapter_consume(bk, batch, room, &fatal);
            if (fatal)
                d->stopping = 1;
            for (size_t i = 0; i < n; i++)
                take_message(d, bk, &batch[i]);
            taken += n;
            hold_triggers(d);
            if (n < room || (!d->stopping && !d->paused && at_bound(d)))
                break;
        }
    }
}

/* The triggers at their own max_inflight hold what feeds them until they
 * are back at half; the adapters are told when the set changes (a new
 * catalog starts with no trigger held). */
static void hold_triggers(dsp_t *d)
{
    const weft_trigger_t *held[256];
    size_t n = 0;
    int changed = d->held_cat != d->cat || d->hold_failed;
    uint64_t now = dsp_now_ms();
    d->trig_waiting = 0;
    for (size_t i = 0; i < d->cat->n_trigs; i++) {
        weft_trigger_t *t = &d->cat->trigs[i];
        if (!t->held && t->inflight < t->max_inflight)
            t->bound_since = 0;
        else if (!t->held && !t->bound_since)
            t->bound_since = now;
        if (!t->held && t->bound_since && now - t->bound_since < PAUSE_AFTER_MS) {
            d->trig_waiting = 1; /* it may drain soon: hold everything meanwhile */
        } else if (!t->held && t->bound_since) {
            t->held = 1;
            changed = 1;
            if (!d->hold_logged_at || now - d->hold_logged_at >= 10000) {
                d->hold_logged_at = now;
                weft_info("trigger at its in-flight bound, its source paused trigger=%s topic=%s "
                          "inflight=%d (other topics flow; logged at most every 10 s)",
                          t->name, t->topic, t->inflight);
            }
        } else if (t->held && t->inflight <= t->max_inflight / 2) {
            t->held = 0;
            t->bound_since = 0;
            changed = 1;
            weft_debug("trigger below half its in-flight bound, its source resumed trigger=%s "
                       "topic=%s inflight=%d",
                       t->name, t->topic, t->inflight);
        }
        if (t->held && n < 256)
            held[n++] = t;
    }
    if (!changed)
        return;
    int ok = 1;
    for (size_t a = 0; a < d->n_adapters; a++)
        ok &= weft_adapter_hold(d->adapters[a], held, n) == 0;
    d->held_cat = d->cat;
    d->hold_failed = !ok; /* tried again on the next iteration */
}

/* Pausing at a global bound is all-or-nothing over the assigned
 * partitions: simple, and the poll loop keeps running, so group
 * membership and retries go on. */
void dsp_backpressure(dsp_t *d)
{
    hold_triggers(d);
    int want = -1;
    uint64_t now = dsp_now_ms();
    int full = at_bound(d);
    if (full && !d->held_since) {
        d->held_since = now;
        d->n_held++;
        if (now - d->held_logged_at >= 10000) {
            d->held_logged_at = now;
            weft_info("consumption held at the in-flight bound inflight=%zu inflight_bytes=%zu "
                      "(more is taken as soon as there is room; this is logged at most every "
                      "10 s)",
                      d->inflight_msgs, d->inflight_bytes);
        }
    } else if (!full && !d->paused)
        d->held_since = 0;
    if (!d->paused && full && now - d->held_since >= PAUSE_AFTER_MS)
        want = 1;
    else if (d->paused && d->inflight_msgs <= (size_t)d->max_inflight / 2 &&
             d->inflight_bytes <= (size_t)d->max_inflight_bytes / 2)
        want = 0;
    if (want < 0)
        return;
    int ok = 1;
    for (size_t a = 0; a < d->n_adapters; a++)
        ok &= weft_adapter_pause(d->adapters[a], want) == 0;
    if (ok) {
        d->paused = want;
        if (!want)
            d->held_since = 0;
        weft_info("%s consumption inflight=%zu inflight_bytes=%zu", want ? "paused" : "resumed",
                  d->inflight_msgs, d->inflight_bytes);
    }
}
