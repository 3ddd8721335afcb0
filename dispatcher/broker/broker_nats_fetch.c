/*
 * broker_nats_fetch.c - the NATS adapter's inbound side: the record of
 * each message weft holds, core NATS subscriptions, and the JetStream
 * fetch threads (one per trigger: bind or create the durable pull
 * consumer, then fetch in batches while the dispatcher has room).
 *
 * Runs in the dispatcher, on nats.c's delivery threads (core NATS) and on
 * this adapter's fetch threads. They only move records into the inbound
 * queue under na->mu and write a byte to the wake pipe; the loop thread
 * takes them in n_consume (broker_nats.c).
 *
 * Invariants: a record lives from fetch to finish; a JetStream record is
 * on the held list (for in-progress acks) until it is finished; a
 * subscription is never destroyed before the adapter is, since a record
 * keeps a pointer to it until it is acknowledged.
 */

#include <errno.h>
#include <fcntl.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "catalog.h"
#include "log.h"
#include "nats.h"
#include "broker_nats_internal.h"

/* ---- records ------------------------------------------------------------ */

void weft_nats_adapter_rec_free(nrec_t *r)
{
    if (!r)
        return;
    natsMsg_Destroy(r->msg);
    free(r->hdrs);
    free((void *)r->keys);
    free(r->vals);
    free(r->stream);
    free(r);
}

/* Builds the record of a received message: headers parsed here, on the
 * receiving thread, so that the loop thread only reads prepared fields
 * while the ops thread may send in-progress acks for the same message. */
static nrec_t *rec_new(natsMsg *msg, weft_broker_t kind, consumer_t *con)
{
    nrec_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->msg = msg;
    r->kind = kind;
    r->con = con;
    const char **keys = NULL;
    int nk = 0;
    if (natsMsgHeader_Keys(msg, &keys, &nk) == NATS_OK && nk > 0) {
        r->keys = keys;
        size_t cap = 0;
        for (int i = 0; i < nk; i++) {
            const char **vals = NULL;
            int nv = 0;
            if (natsMsgHeader_Values(msg, keys[i], &vals, &nv) != NATS_OK)
                continue;
            weft_header_t *nh = realloc(r->hdrs, (cap + (size_t)nv) * sizeof(*nh));
            if (!nh) {
                free(vals);
                continue;
            }
            r->hdrs = nh;
            for (int k = 0; k < nv; k++) {
                r->hdrs[cap].name = keys[i];
                r->hdrs[cap].value = vals[k];
                r->hdrs[cap].len = strlen(vals[k]);
                cap++;
            }
            /* The value strings belong to the message; only the arrays
             * are ours. Keep the last one to free (the others are freed
             * now: their strings stay valid). */
            free(r->vals);
            r->vals = vals;
        }
        r->n_hdrs = cap;
    } else {
        free((void *)keys);
    }
    if (kind == WEFT_BROKER_JETSTREAM) {
        jsMsgMetaData *meta = NULL;
        if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
            r->stream = strdup(meta->Stream ? meta->Stream : "");
            r->seq = meta->Sequence.Stream;
            r->delivered = meta->NumDelivered;
            r->ts_ms = meta->Timestamp / 1000000;
            jsMsgMetaData_Destroy(meta);
        }
        r->ack_wait_ms = con->ack_wait_ms;
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r->ts_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    r->progress_at = mono_ms();
    return r;
}

static void held_add(nadapter_t *na, nrec_t *r)
{
    r->hprev = NULL;
    r->hnext = na->held;
    if (na->held)
        na->held->hprev = r;
    na->held = r;
}

void weft_nats_adapter_held_del(nadapter_t *na, nrec_t *r)
{
    if (r->hprev)
        r->hprev->hnext = r->hnext;
    else if (na->held == r)
        na->held = r->hnext;
    if (r->hnext)
        r->hnext->hprev = r->hprev;
    r->hprev = r->hnext = NULL;
}

static void in_push(nadapter_t *na, nrec_t *r)
{
    r->next = NULL;
    if (na->in_tail)
        na->in_tail->next = r;
    else
        na->in_head = r;
    na->in_tail = r;
}

/* ---- core NATS ---------------------------------------------------------- */

/* A trigger on the subscription's subject is held at its bound (under
 * na->mu). */
static int core_held(const nadapter_t *na, const natsSubscription *sub)
{
    for (const coresub_t *s = na->subs; s; s = s->next)
        if (s->sub == sub)
            return s->held;
    return 0;
}

/* nats.c's delivery thread (one per subscription). While the dispatcher is
 * paused, the subject's trigger is held or the queue is full this waits, so
 * nats.c's own pending limit applies (and it drops as a slow consumer: core
 * NATS is at-most-once). */
void weft_nats_adapter_on_core_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                                   void *closure)
{
    (void)nc;
    nadapter_t *na = closure;
    nrec_t *r = rec_new(msg, WEFT_BROKER_NATS, NULL);
    if (!r) {
        natsMsg_Destroy(msg);
        return;
    }
    pthread_mutex_lock(&na->mu);
    while (!na->closing && (na->paused || na->core_queued >= CORE_QUEUE_MAX || core_held(na, sub)))
        wait_locked(na, 200);
    if (na->closing) {
        pthread_mutex_unlock(&na->mu);
        weft_nats_adapter_rec_free(r);
        return;
    }
    in_push(na, r);
    na->core_queued++;
    pthread_mutex_unlock(&na->mu);
    wake(na);
}

/* nats.c: the subscription is closed and weft_nats_adapter_on_core_msg will not run for it
 * again. */
void weft_nats_adapter_on_core_sub_done(void *closure)
{
    coresub_t *s = closure;
    pthread_mutex_lock(&s->na->mu);
    s->done = 1;
    pthread_cond_broadcast(&s->na->cv);
    pthread_mutex_unlock(&s->na->mu);
}

/* ---- JetStream consumers ------------------------------------------------ */

static int consumer_stopped(consumer_t *c)
{
    pthread_mutex_lock(&c->na->mu);
    int stop = c->stop;
    pthread_mutex_unlock(&c->na->mu);
    return stop;
}

/* Finds the durable consumer or creates it, then binds a pull
 * subscription to it. Blocking (JetStream API requests): fetch thread. */
static int consumer_bind(consumer_t *c, char *err, size_t errlen)
{
    nadapter_t *na = c->na;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, na->js, c->stream, c->durable, NULL, &jerr);
    if (s == NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        jsConsumerConfig cc;
        jsConsumerConfig_Init(&cc);
        cc.Durable = c->durable;
        cc.AckPolicy = js_AckExplicit;
        cc.DeliverPolicy = js_DeliverAll;
        cc.AckWait = c->ack_wait_ms * 1000000LL;
        /* Unlimited: the ledger counts attempts and dead-letters after
         * max_attempts. A server-side limit would silently stop
         * redelivering an event that came back for other reasons (a crash
         * before its claim, a lease wait) before weft dead-lettered it. */
        cc.MaxDeliver = -1;
        cc.FilterSubject = c->subject;
        cc.MaxAckPending = c->max_inflight;
        jerr = 0;
        s = js_AddConsumer(&ci, na->js, c->stream, &cc, NULL, &jerr);
        if (s == NATS_OK)
            weft_info("created JetStream consumer trigger=%s stream=%s durable=%s subject=%s "
                      "ack_wait_ms=%lld",
                      c->trigger, c->stream, c->durable, c->subject, (long long)c->ack_wait_ms);
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "%s (stream=%s durable=%s%s)", nats_err(s), c->stream, c->durable,
                 jerr == JSStreamNotFoundErr ? ": the stream does not exist" : "");
        jsConsumerInfo_Destroy(ci);
        return -1;
    }
    if (ci->Config) {
        if (ci->Config->AckWait > 0)
            c->ack_wait_ms = ci->Config->AckWait / 1000000;
        if (ci->Config->FilterSubject && *ci->Config->FilterSubject &&
            strcmp(ci->Config->FilterSubject, c->subject) != 0)
            weft_warn("JetStream consumer filters another subject trigger=%s durable=%s "
                      "filter=%s subject=%s",
                      c->trigger, c->durable, ci->Config->FilterSubject, c->subject);
        if (ci->Config->MaxDeliver > 0 && ci->Config->MaxDeliver <= c->max_attempts)
            weft_warn("JetStream consumer MaxDeliver=%lld is not above max_attempts=%d: the "
                      "server may stop redelivering before weft dead-letters trigger=%s "
                      "durable=%s",
                      (long long)ci->Config->MaxDeliver, c->max_attempts, c->trigger, c->durable);
    }
    jsConsumerInfo_Destroy(ci);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Consumer = c->durable;
    so.ManualAck = true;
    jerr = 0;
    s = js_PullSubscribe(&c->sub, na->js, c->subject, c->durable, NULL, &so, &jerr);
    if (s != NATS_OK) {
        snprintf(err, errlen, "js_PullSubscribe() failed: %s (stream=%s durable=%s)", nats_err(s),
                 c->stream, c->durable);
        c->sub = NULL;
        return -1;
    }
    weft_info("consuming JetStream trigger=%s stream=%s durable=%s subject=%s ack_wait_ms=%lld",
              c->trigger, c->stream, c->durable, c->subject, (long long)c->ack_wait_ms);
    return 0;
}

void *weft_nats_adapter_fetch_main(void *arg)
{
    consumer_t *c = arg;
    nadapter_t *na = c->na;
    char err[512];
    uint64_t logged = 0;
    int failures = 0;
    while (!consumer_stopped(c) && !c->sub) {
        if (consumer_bind(c, err, sizeof(err)) == 0)
            break;
        uint64_t now = mono_ms();
        if (failures++ == 0 || now - logged > 30000) {
            weft_warn("cannot consume JetStream yet, retrying trigger=%s: %s", c->trigger, err);
            logged = now;
        }
        pthread_mutex_lock(&na->mu);
        if (!c->stop)
            wait_locked(na, 1000);
        pthread_mutex_unlock(&na->mu);
    }
    failures = 0;
    while (c->sub) {
        pthread_mutex_lock(&na->mu);
        while (!c->stop && (na->paused || c->held || c->queued >= (size_t)na->fetch_batch))
            wait_locked(na, 500);
        int stop = c->stop;
        int room = na->fetch_batch - (int)c->queued;
        pthread_mutex_unlock(&na->mu);
        if (stop)
            break;
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus s = natsSubscription_Fetch(&list, c->sub, room, 1000, &jerr);
        if (s == NATS_TIMEOUT)
            continue;
        if (s != NATS_OK) {
            uint64_t now = mono_ms();
            if (failures++ == 0 || now - logged > 30000) {
                weft_warn("JetStream fetch failed, retrying trigger=%s: %s", c->trigger,
                          nats_err(s));
                logged = now;
            }
            natsMsgList_Destroy(&list);
            pthread_mutex_lock(&na->mu);
            if (!c->stop)
                wait_locked(na, 250);
            pthread_mutex_unlock(&na->mu);
            continue;
        }
        if (failures) {
            weft_info("JetStream fetch resumed trigger=%s", c->trigger);
            failures = 0;
        }
        nrec_t *recs[1024];
        int n = 0;
        for (int i = 0; i < list.Count; i++) {
            nrec_t *r = rec_new(list.Msgs[i], WEFT_BROKER_JETSTREAM, c);
            if (!r)
                continue; /* not acknowledged: redelivered after AckWait */
            list.Msgs[i] = NULL;
            if (n < 1024)
                recs[n++] = r;
            else
                weft_nats_adapter_rec_free(r);
        }
        natsMsgList_Destroy(&list);
        pthread_mutex_lock(&na->mu);
        for (int i = 0; i < n; i++) {
            in_push(na, recs[i]);
            held_add(na, recs[i]);
            c->queued++;
        }
        pthread_mutex_unlock(&na->mu);
        if (n)
            wake(na);
    }
    pthread_mutex_lock(&na->mu);
    c->done = 1;
    pthread_mutex_unlock(&na->mu);
    wake(na);
    return NULL;
}

void weft_nats_adapter_consumer_free(consumer_t *c)
{
    if (c->sub)
        natsSubscription_Destroy(c->sub);
    free(c->trigger);
    free(c->stream);
    free(c->durable);
    free(c->subject);
    free(c);
}
