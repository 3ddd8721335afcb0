/*
 * broker_nats.c - the JetStream and core NATS adapter behind the broker
 * interface (broker.h), over one nats.c connection (nats.url).
 *
 * Runs in the dispatcher. nats.c starts its own threads, and so does this
 * file; every thread here only moves messages between locked queues and
 * writes a byte to the wake pipe. Dispatcher state is touched only from
 * the loop thread, through consume / serve / finish.
 *
 * Threads:
 *   fetch (one per JetStream trigger)  binds the trigger's durable pull
 *       consumer (creating it when it does not exist), then fetches in
 *       batches while the dispatcher has room and is not paused; messages
 *       go to the inbound queue.
 *   ops  acknowledges finished JetStream messages: a confirmed ack (what
 *       natsMsg_AckSync sends: "+ACK" as a request, answered by the
 *       server once the ack is applied), but pipelined: it sends every
 *       queued ack at once, each with its own reply subject under one
 *       inbox subscription, and does not wait. A retry is a
 *       NakWithDelay. It also sends in-progress acks
 *       (natsMsg_InProgress) every AckWait/3 for every message weft
 *       holds, so AckWait never expires under a running function, a
 *       backoff wait, or a message waiting for room in a pool, and it
 *       gives up on an ack that had no answer within ACK_WAIT_MS.
 *       (Blocking AckSyncs, one round trip each, bounded a stream at one
 *       message per round trip per thread; with eight threads, 0.17x
 *       the raw JetStream passthrough.)
 *   nats.c's own: core NATS queue-subscription callbacks (queued like
 *       fetched messages), JetStream PubAck handlers (queued as
 *       completions for serve) and ack answers (the message is freed).
 *
 * NOTES
 * The ack is sent only after the dispatcher finished the message, that is
 * after its result or dead letter was published and acknowledged. A failed
 * ack (no answer within ACK_WAIT_MS, no responders, or a publish error) is
 * logged and forgotten: the server redelivers after AckWait and the
 * ledger turns the redelivery into a re-emit with the same event id (which
 * JetStream also drops as a duplicate inside its window).
 * Core NATS has no acknowledgement: at-most-once by nature.
 * Subscriptions are never destroyed before the adapter is: a message keeps
 * a pointer to its subscription until it is acknowledged.
 *
 * This file is the interface and the adapter's life (new, sync, consume,
 * finish, serve, close, destroy); the threads' code is beside it:
 * broker_nats_fetch.c (records, core NATS, JetStream fetch),
 * broker_nats_ack.c (the ops thread), broker_nats_publish.c (produce and
 * PubAck completions); their shared state is broker_nats_internal.h.
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

/* ---- the interface ------------------------------------------------------ */

static int n_wake_fd(weft_adapter_t *a)
{
    return ((nadapter_t *)a)->wake[0];
}

static char *default_durable(const char *trigger)
{
    char *d = NULL;
    if (asprintf(&d, "weft_%s", trigger) < 0)
        return NULL;
    for (char *p = d; *p; p++)
        if (*p == '.')
            *p = '_';
    return d;
}

static int consumer_start(nadapter_t *na, const weft_trigger_t *t)
{
    consumer_t *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    c->na = na;
    c->trigger = strdup(t->name);
    c->stream = strdup(t->stream ? t->stream : "");
    c->durable = t->durable ? strdup(t->durable) : default_durable(t->name);
    c->subject = strdup(t->topic);
    c->ack_wait_ms = t->ack_wait_ms > 0 ? t->ack_wait_ms : 30000;
    c->max_inflight = t->max_inflight;
    c->max_attempts = t->max_attempts;
    if (!c->trigger || !c->stream || !c->durable || !c->subject) {
        weft_nats_adapter_consumer_free(c);
        return -1;
    }
    if (pthread_create(&c->th, NULL, weft_nats_adapter_fetch_main, c) != 0) {
        weft_nats_adapter_consumer_free(c);
        return -1;
    }
    c->started = 1;
    c->next = na->cons;
    na->cons = c;
    return 0;
}

static int consumer_same(const consumer_t *c, const weft_trigger_t *t)
{
    char *dd = t->durable ? NULL : default_durable(t->name);
    const char *durable = t->durable ? t->durable : dd;
    int same = !c->retired && strcmp(c->trigger, t->name) == 0 && t->stream &&
               strcmp(c->stream, t->stream) == 0 && durable && strcmp(c->durable, durable) == 0 &&
               strcmp(c->subject, t->topic) == 0;
    free(dd);
    return same;
}

static void consumer_retire(nadapter_t *na, consumer_t *c)
{
    pthread_mutex_lock(&na->mu);
    c->retired = 1;
    c->stop = 1;
    pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
    weft_info("stopping JetStream consumer trigger=%s durable=%s", c->trigger, c->durable);
}

static int n_sync(weft_adapter_t *a, const weft_catalog_t *cat, char *errstr, size_t errlen)
{
    nadapter_t *na = (nadapter_t *)a;
    int rc = 0;
    /* JetStream: one durable pull consumer per trigger. */
    for (consumer_t *c = na->cons; c; c = c->next) {
        if (c->retired)
            continue;
        int keep = 0;
        for (size_t i = 0; i < cat->n_trigs && !keep; i++)
            keep =
                cat->trigs[i].broker == WEFT_BROKER_JETSTREAM && consumer_same(c, &cat->trigs[i]);
        if (!keep)
            consumer_retire(na, c);
    }
    for (size_t i = 0; i < cat->n_trigs; i++) {
        const weft_trigger_t *t = &cat->trigs[i];
        if (t->broker != WEFT_BROKER_JETSTREAM)
            continue;
        int have = 0;
        for (consumer_t *c = na->cons; c && !have; c = c->next)
            have = consumer_same(c, t);
        if (have)
            continue;
        if (!t->stream) {
            weft_error("JetStream trigger has no stream, not consumed trigger=%s", t->name);
            continue;
        }
        if (consumer_start(na, t) != 0) {
            snprintf(errstr, errlen, "cannot start the JetStream consumer of trigger %s", t->name);
            rc = -1;
        }
    }
    /* Core NATS: one queue subscription per subject. */
    for (coresub_t *s = na->subs; s; s = s->next) {
        if (s->retired)
            continue;
        int keep = 0;
        for (size_t i = 0; i < cat->n_trigs && !keep; i++)
            keep = cat->trigs[i].broker == WEFT_BROKER_NATS &&
                   strcmp(cat->trigs[i].topic, s->subject) == 0;
        if (!keep) {
            natsSubscription_Unsubscribe(s->sub);
            s->retired = 1;
            weft_info("unsubscribed NATS subject=%s", s->subject);
        }
    }
    const char *subjects[512];
    size_t n = weft_catalog_topics(cat, WEFT_BROKER_NATS, subjects, 512);
    for (size_t i = 0; i < n; i++) {
        int have = 0;
        for (coresub_t *s = na->subs; s && !have; s = s->next)
            have = !s->retired && strcmp(s->subject, subjects[i]) == 0;
        if (have)
            continue;
        coresub_t *s = calloc(1, sizeof(*s));
        if (!s || !(s->subject = strdup(subjects[i]))) {
            free(s);
            rc = -1;
            continue;
        }
        s->na = na;
        natsStatus st = natsConnection_QueueSubscribe(&s->sub, na->nc, s->subject, na->queue_group,
                                                      weft_nats_adapter_on_core_msg, na);
        /* Told when weft_nats_adapter_on_core_msg is done for good, so the adapter is freed
         * only after its last call (n_destroy). */
        if (st == NATS_OK)
            st = natsSubscription_SetOnCompleteCB(s->sub, weft_nats_adapter_on_core_sub_done, s);
        if (st != NATS_OK) {
            snprintf(errstr, errlen, "natsConnection_QueueSubscribe() failed subject=%s: %s",
                     s->subject, nats_err(st));
            if (s->sub) {
                natsSubscription_Unsubscribe(s->sub);
                natsSubscription_Destroy(s->sub);
            }
            free(s->subject);
            free(s);
            rc = -1;
            continue;
        }
        s->next = na->subs;
        na->subs = s;
        weft_info("subscribed NATS subject=%s queue=%s (core NATS: at-most-once)", s->subject,
                  na->queue_group);
    }
    return rc;
}

static size_t n_consume(weft_adapter_t *a, weft_bmsg_t *out, size_t max, int *fatal)
{
    (void)fatal;
    nadapter_t *na = (nadapter_t *)a;
    drain_wake(na);
    size_t n = 0;
    pthread_mutex_lock(&na->mu);
    while (n < max && na->in_head) {
        nrec_t *r = na->in_head;
        na->in_head = r->next;
        if (!na->in_head)
            na->in_tail = NULL;
        r->next = NULL;
        if (r->con)
            r->con->queued--;
        else
            na->core_queued--;
        weft_bmsg_t *m = &out[n++];
        memset(m, 0, sizeof(*m));
        m->broker = r->kind;
        m->topic = natsMsg_GetSubject(r->msg);
        m->partition = -1;
        if (r->kind == WEFT_BROKER_JETSTREAM) {
            m->offset = (int64_t)r->seq;
            m->trigger = r->con->trigger;
            m->stream = r->stream;
            m->delivered = (int64_t)r->delivered;
            m->redeliver = 1;
        } else {
            m->offset = ++na->core_seq;
        }
        m->timestamp_ms = r->ts_ms;
        m->value = natsMsg_GetData(r->msg);
        m->value_len = (size_t)natsMsg_GetDataLength(r->msg);
        m->hdrs = r->hdrs;
        m->n_hdrs = r->n_hdrs;
        m->raw = r;
    }
    if (n)
        pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
    return n;
}

static void n_finish(weft_adapter_t *a, weft_bmsg_t *m, weft_finish_t how, int delay_ms)
{
    nadapter_t *na = (nadapter_t *)a;
    nrec_t *r = m->raw;
    memset(m, 0, sizeof(*m));
    if (!r)
        return;
    if (r->kind != WEFT_BROKER_JETSTREAM) {
        weft_nats_adapter_rec_free(r);
        return;
    }
    r->how = how;
    r->delay_ms = delay_ms;
    r->next = NULL;
    pthread_mutex_lock(&na->mu);
    weft_nats_adapter_held_del(na, r);
    if (na->ops_tail)
        na->ops_tail->next = r;
    else
        na->ops_head = r;
    na->ops_tail = r;
    na->ops_n++;
    pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
}

static void n_serve(weft_adapter_t *a)
{
    nadapter_t *na = (nadapter_t *)a;
    drain_wake(na);
    pthread_mutex_lock(&na->mu);
    ncomp_t *c = na->comp_head;
    na->comp_head = na->comp_tail = NULL;
    pthread_mutex_unlock(&na->mu);
    while (c) {
        ncomp_t *next = c->next;
        na->cbs.delivered(na->cbs.opaque, c->opaque, c->err, c->retriable);
        free(c->err);
        free(c);
        c = next;
    }
    /* Join the fetch threads of retired consumers once they ended. */
    for (consumer_t *k = na->cons; k; k = k->next) {
        if (!k->started || k->joined)
            continue;
        pthread_mutex_lock(&na->mu);
        int done = k->done;
        pthread_mutex_unlock(&na->mu);
        if (done) {
            pthread_join(k->th, NULL);
            k->joined = 1;
            if (k->sub)
                natsSubscription_Unsubscribe(k->sub);
        }
    }
}

static int n_pause(weft_adapter_t *a, int pause)
{
    nadapter_t *na = (nadapter_t *)a;
    pthread_mutex_lock(&na->mu);
    na->paused = pause;
    pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
    return 0;
}

/* The server's max_payload counts a message's headers with its payload;
 * beyond weft_emit_size, the NATS/1.0 line, the blank line ending the
 * headers and Nats-Msg-Id. */
#define NATS_FRAMING 128

static size_t n_max_bytes(weft_adapter_t *a, const char *topic)
{
    (void)topic;
    nadapter_t *na = (nadapter_t *)a;
    int64_t lim = na->nc ? natsConnection_GetMaxPayload(na->nc) : 0;
    return lim > NATS_FRAMING ? (size_t)(lim - NATS_FRAMING) : 0;
}

/* JetStream: the held trigger's consumer stops fetching. Core NATS: the
 * subject's deliveries wait (a subject feeding several triggers waits
 * while any of them is held). */
static int n_hold(weft_adapter_t *a, const weft_trigger_t *const *trigs, size_t n)
{
    nadapter_t *na = (nadapter_t *)a;
    pthread_mutex_lock(&na->mu);
    for (consumer_t *c = na->cons; c; c = c->next) {
        c->held = 0;
        for (size_t i = 0; i < n && !c->held; i++)
            c->held = trigs[i]->broker == WEFT_BROKER_JETSTREAM &&
                      strcmp(trigs[i]->name, c->trigger) == 0;
    }
    for (coresub_t *s = na->subs; s; s = s->next) {
        s->held = 0;
        for (size_t i = 0; i < n && !s->held; i++)
            s->held =
                trigs[i]->broker == WEFT_BROKER_NATS && strcmp(trigs[i]->topic, s->subject) == 0;
    }
    pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
    return 0;
}

static size_t n_outq(const weft_adapter_t *a)
{
    nadapter_t *na = (nadapter_t *)a;
    pthread_mutex_lock(&na->mu);
    size_t n = na->n_pubs;
    pthread_mutex_unlock(&na->mu);
    return n;
}

static void n_close(weft_adapter_t *a, int timeout_ms)
{
    nadapter_t *na = (nadapter_t *)a;
    pthread_mutex_lock(&na->mu);
    if (na->closing) {
        pthread_mutex_unlock(&na->mu);
        return;
    }
    na->closing = 1;
    for (consumer_t *c = na->cons; c; c = c->next)
        c->stop = 1;
    pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
    for (coresub_t *s = na->subs; s; s = s->next)
        if (!s->retired)
            natsSubscription_Unsubscribe(s->sub);
    /* Wait for the PubAcks of what was published. */
    uint64_t deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    while (n_outq(a) > 0 && mono_ms() < deadline) {
        usleep(10000);
        n_serve(a);
    }
    n_serve(a);
    for (consumer_t *c = na->cons; c; c = c->next) {
        if (c->started && !c->joined) {
            pthread_join(c->th, NULL);
            c->joined = 1;
        }
    }
}

static void n_destroy(weft_adapter_t *a)
{
    nadapter_t *na = (nadapter_t *)a;
    n_close(a, 0);
    /* Fetched and never handed to the dispatcher: not acknowledged, so
     * redelivered after AckWait. */
    pthread_mutex_lock(&na->mu);
    nrec_t *r = na->in_head;
    na->in_head = na->in_tail = NULL;
    while (r) {
        nrec_t *next = r->next;
        if (r->kind == WEFT_BROKER_JETSTREAM)
            weft_nats_adapter_held_del(na, r);
        weft_nats_adapter_rec_free(r);
        r = next;
    }
    na->ops_stop = 1;
    pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
    if (na->ops_started)
        pthread_join(na->ops_th, NULL);
    pthread_mutex_lock(&na->mu);
    if (na->ack_sub) {
        /* weft_nats_adapter_on_ack_reply takes na->mu: wait (bounded) until nats.c says it
         * has returned for the last time before the adapter goes. */
        pthread_mutex_unlock(&na->mu);
        natsSubscription_Unsubscribe(na->ack_sub);
        pthread_mutex_lock(&na->mu);
        uint64_t until = mono_ms() + 2000;
        while (!na->ack_sub_done && mono_ms() < until)
            wait_locked(na, 50);
        pthread_mutex_unlock(&na->mu);
        natsSubscription_Destroy(na->ack_sub);
        pthread_mutex_lock(&na->mu);
        na->ack_sub = NULL;
    }
    while (na->ack_head) {
        nrec_t *pend = weft_nats_adapter_ack_take_locked(na, na->ack_head->ack_id);
        weft_nats_adapter_ack_failed(pend, "shutting down before the answer");
        weft_nats_adapter_rec_free(pend);
    }
    pthread_mutex_unlock(&na->mu);
    while (na->held) {
        nrec_t *h = na->held;
        weft_nats_adapter_held_del(na, h);
        weft_nats_adapter_rec_free(h);
    }
    while (na->comp_head) {
        ncomp_t *c = na->comp_head;
        na->comp_head = c->next;
        free(c->err);
        free(c);
    }
    /* Async publishes still pending belong to nats.c; forget ours. */
    for (size_t b = 0; b < PUB_BUCKETS; b++) {
        while (na->pubs[b]) {
            npub_t *p = na->pubs[b];
            na->pubs[b] = p->next;
            free(p);
        }
    }
    jsCtx_Destroy(na->js);
    while (na->cons) {
        consumer_t *c = na->cons;
        na->cons = c->next;
        weft_nats_adapter_consumer_free(c);
    }
    /* weft_nats_adapter_on_core_msg takes na->mu: wait (bounded) until nats.c says each
     * subscription's handler has returned for the last time. n_close
     * unsubscribed them. */
    pthread_mutex_lock(&na->mu);
    uint64_t until = mono_ms() + 2000;
    for (coresub_t *s = na->subs; s; s = s->next)
        while (!s->done && mono_ms() < until)
            wait_locked(na, 50);
    pthread_mutex_unlock(&na->mu);
    while (na->subs) {
        coresub_t *s = na->subs;
        na->subs = s->next;
        natsSubscription_Destroy(s->sub);
        free(s->subject);
        free(s);
    }
    if (na->nc) {
        natsConnection_Close(na->nc);
        natsConnection_Destroy(na->nc);
    }
    pthread_cond_destroy(&na->cv);
    pthread_mutex_destroy(&na->mu);
    if (na->wake[0] >= 0)
        close(na->wake[0]);
    if (na->wake[1] >= 0)
        close(na->wake[1]);
    free(na->queue_group);
    free(na);
}

static const weft_adapter_ops_t nats_ops = {
    .wake_fd = n_wake_fd,
    .sync = n_sync,
    .consume = n_consume,
    .finish = n_finish,
    .produce = weft_nats_adapter_produce,
    .serve = n_serve,
    .pause = n_pause,
    .hold = n_hold,
    .outq = n_outq,
    .max_bytes = n_max_bytes,
    .close = n_close,
    .destroy = n_destroy,
};

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
    weft_warn("nats connection lost, reconnecting");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    weft_info("nats connection restored url=%s", url);
}

static void on_connected(natsConnection *nc, void *closure)
{
    (void)closure;
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    weft_info("nats connected url=%s", url);
}

static void on_nats_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)closure;
    weft_warn("nats: %s%s%s", natsStatus_GetText(err),
              sub && natsSubscription_GetSubject(sub) ? " subject=" : "",
              sub && natsSubscription_GetSubject(sub) ? natsSubscription_GetSubject(sub) : "");
}

weft_adapter_t *weft_adapter_nats_new(const weft_config_t *cfg, const weft_adapter_cbs_t *cbs,
                                      char *errstr, size_t errlen)
{
    const char *url = weft_config_str(cfg, "nats.url");
    if (!url) {
        snprintf(errstr, errlen, "nats.url is not set (config file or WEFT_NATS_URL)");
        return NULL;
    }
    int64_t batch;
    if (weft_config_int(cfg, "nats.fetch_batch", &batch, errstr, errlen))
        return NULL;
    nadapter_t *na = calloc(1, sizeof(*na));
    if (!na) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    na->base.ops = &nats_ops;
    na->base.name = "nats";
    na->cbs = *cbs;
    na->fetch_batch = (int)batch;
    na->wake[0] = na->wake[1] = -1;
    pthread_mutex_init(&na->mu, NULL);
    pthread_cond_init(&na->cv, NULL);
    na->queue_group = strdup(weft_config_str(cfg, "nats.queue_group"));
    if (!na->queue_group || pipe2(na->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        snprintf(errstr, errlen, "pipe2() failed: %s", strerror(errno));
        goto fail;
    }
    natsOptions *o = NULL;
    weft_nats_lib_open(); /* before natsOptions_Create, which opens the library */
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "weft-dispatcher");
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(o, 32 * 1024 * 1024);
    if (s == NATS_OK)
        s = natsOptions_SetPingInterval(o, 2000);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPingsOut(o, 3);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(o, on_disconnected, na);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(o, on_reconnected, na);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(o, on_nats_error, na);
    /* Start even when the server is down: nats.c keeps trying in the
     * background and the fetch threads wait for it. */
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, na);
    if (s == NATS_OK) {
        s = natsConnection_Connect(&na->nc, o);
        if (s == NATS_NOT_YET_CONNECTED) {
            weft_warn("nats not reachable yet at %s, connecting in the background", url);
            s = NATS_OK;
        }
    }
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "cannot connect to NATS at %s: %s", url, nats_err(s));
        goto fail;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    jo.PublishAsync.MaxPending = 65536;
    jo.PublishAsync.AckHandler = weft_nats_adapter_on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = na;
    jo.PublishAsync.StallWait = 50;
    s = natsConnection_JetStream(&na->js, na->nc, &jo);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "natsConnection_JetStream() failed: %s", nats_err(s));
        goto fail;
    }
    /* One inbox for the answers to acks: <inbox>.<ack id>. */
    natsInbox *inbox = NULL;
    s = natsInbox_Create(&inbox);
    if (s == NATS_OK) {
        snprintf(na->ack_inbox, sizeof(na->ack_inbox), "%s", inbox);
        char wild[160];
        snprintf(wild, sizeof(wild), "%s.*", inbox);
        natsInbox_Destroy(inbox);
        s = natsConnection_Subscribe(&na->ack_sub, na->nc, wild, weft_nats_adapter_on_ack_reply,
                                     na);
    }
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(na->ack_sub, weft_nats_adapter_on_ack_sub_done, na);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(na->ack_sub, -1, -1);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "cannot subscribe to the ack inbox: %s", nats_err(s));
        goto fail;
    }
    if (pthread_create(&na->ops_th, NULL, weft_nats_adapter_ops_main, na) != 0) {
        snprintf(errstr, errlen, "pthread_create() failed");
        goto fail;
    }
    na->ops_started = 1;
    return &na->base;
fail:
    n_destroy(&na->base);
    return NULL;
}
