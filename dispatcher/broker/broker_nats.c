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
#include "nats_msg.h"

#define PUB_BUCKETS 1024
#define CORE_QUEUE_MAX 4096
#define ACK_WAIT_MS 5000
#define ACK_BUCKETS 4096
#define PUB_MAX_WAIT_MS 10000

typedef struct nadapter nadapter_t;

typedef struct consumer {
    nadapter_t *na;
    char *trigger, *stream, *durable, *subject;
    int64_t ack_wait_ms; /* of the consumer as the server has it */
    int max_inflight;
    int max_attempts;
    natsSubscription *sub;
    pthread_t th;
    int started;
    int stop; /* under na->mu */
    int done; /* under na->mu: the thread ended */
    int joined;
    int retired;   /* no longer in the catalog */
    size_t queued; /* in the inbound queue, under na->mu */
    struct consumer *next;
} consumer_t;

typedef struct coresub {
    struct nadapter *na;
    char *subject;
    natsSubscription *sub;
    int retired;
    int done; /* on_core_msg has returned for the last time (under na->mu) */
    struct coresub *next;
} coresub_t;

/* One message weft holds, from fetch to finish. */
typedef struct nrec {
    natsMsg *msg;
    weft_broker_t kind;
    consumer_t *con; /* JetStream */
    weft_header_t *hdrs;
    size_t n_hdrs;
    const char **keys;
    const char **vals;
    char *stream;
    uint64_t seq;
    uint64_t delivered;
    int64_t ts_ms;
    int64_t ack_wait_ms;
    uint64_t progress_at; /* monotonic ms of fetch or the last in-progress ack */
    weft_finish_t how;
    int delay_ms;
    struct nrec *next;          /* inbound or ops queue */
    struct nrec *hprev, *hnext; /* held list (JetStream) */
    /* An ack sent and not yet answered: ack_id is the last token of its
     * reply subject; the list is in the order the acks were sent. */
    uint64_t ack_id;
    uint64_t ack_sent; /* monotonic ms */
    struct nrec *aprev, *anext, *achain;
} nrec_t;

typedef struct npub {
    natsMsg *msg;
    void *opaque;
    struct npub *next;
} npub_t;

typedef struct ncomp {
    void *opaque;
    char *err;
    int retriable;
    struct ncomp *next;
} ncomp_t;

struct nadapter {
    weft_adapter_t base;
    weft_adapter_cbs_t cbs;
    natsConnection *nc;
    jsCtx *js;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wake[2];
    nrec_t *in_head, *in_tail;
    size_t core_queued;
    nrec_t *held;
    nrec_t *ops_head, *ops_tail;
    size_t ops_n;
    pthread_t ops_th;
    int ops_started;
    int ops_stop;
    /* Acks awaiting their answer, under mu. */
    natsSubscription *ack_sub;
    int ack_sub_done; /* its handler has returned for the last time */
    char ack_inbox[128];
    uint64_t ack_seq;
    nrec_t *ack_buckets[ACK_BUCKETS];
    nrec_t *ack_head, *ack_tail;
    npub_t *pubs[PUB_BUCKETS];
    size_t n_pubs;
    ncomp_t *comp_head, *comp_tail;
    consumer_t *cons;
    coresub_t *subs;
    int paused;
    int closing;
    char *queue_group;
    int fetch_batch;
    int64_t core_seq;
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void wake(nadapter_t *na)
{
    ssize_t r = write(na->wake[1], "n", 1);
    (void)r; /* a full pipe is awake already */
}

static void drain_wake(nadapter_t *na)
{
    char buf[64];
    while (read(na->wake[0], buf, sizeof(buf)) > 0)
        ;
}

/* Sleeps up to ms or until stop is set; call with na->mu held. */
static void wait_locked(nadapter_t *na, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&na->cv, &na->mu, &ts);
}

static const char *nats_err(natsStatus s)
{
    const char *last = nats_GetLastError(NULL);
    return last && *last ? last : natsStatus_GetText(s);
}

/* ---- records ------------------------------------------------------------ */

static void rec_free(nrec_t *r)
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

static void held_del(nadapter_t *na, nrec_t *r)
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

/* nats.c's delivery thread. While the dispatcher is paused or the queue is
 * full this waits, so nats.c's own pending limit applies (and it drops as a
 * slow consumer: core NATS is at-most-once). */
static void on_core_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    nadapter_t *na = closure;
    nrec_t *r = rec_new(msg, WEFT_BROKER_NATS, NULL);
    if (!r) {
        natsMsg_Destroy(msg);
        return;
    }
    pthread_mutex_lock(&na->mu);
    while (!na->closing && (na->paused || na->core_queued >= CORE_QUEUE_MAX))
        wait_locked(na, 200);
    if (na->closing) {
        pthread_mutex_unlock(&na->mu);
        rec_free(r);
        return;
    }
    in_push(na, r);
    na->core_queued++;
    pthread_mutex_unlock(&na->mu);
    wake(na);
}

/* nats.c: the subscription is closed and on_core_msg will not run for it
 * again. */
static void on_core_sub_done(void *closure)
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

static void *fetch_main(void *arg)
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
        while (!c->stop && (na->paused || c->queued >= (size_t)na->fetch_batch))
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
                rec_free(r);
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

static void consumer_free(consumer_t *c)
{
    if (c->sub)
        natsSubscription_Destroy(c->sub);
    free(c->trigger);
    free(c->stream);
    free(c->durable);
    free(c->subject);
    free(c);
}

/* ---- the ops thread: acks, naks, in-progress ---------------------------- */

static void ack_add_locked(nadapter_t *na, nrec_t *r, uint64_t now)
{
    r->ack_id = ++na->ack_seq;
    r->ack_sent = now;
    nrec_t **b = &na->ack_buckets[r->ack_id % ACK_BUCKETS];
    r->achain = *b;
    *b = r;
    r->anext = NULL;
    r->aprev = na->ack_tail;
    if (na->ack_tail)
        na->ack_tail->anext = r;
    else
        na->ack_head = r;
    na->ack_tail = r;
}

/* Takes the pending ack id off the table; NULL when it is not there (it
 * was answered, or given up on, already). */
static nrec_t *ack_take_locked(nadapter_t *na, uint64_t id)
{
    nrec_t **pp = &na->ack_buckets[id % ACK_BUCKETS];
    while (*pp && (*pp)->ack_id != id)
        pp = &(*pp)->achain;
    nrec_t *r = *pp;
    if (!r)
        return NULL;
    *pp = r->achain;
    if (r->aprev)
        r->aprev->anext = r->anext;
    else
        na->ack_head = r->anext;
    if (r->anext)
        r->anext->aprev = r->aprev;
    else
        na->ack_tail = r->aprev;
    r->achain = r->aprev = r->anext = NULL;
    return r;
}

static void ack_failed(const nrec_t *r, const char *why)
{
    weft_warn("JetStream ack failed (redelivered after AckWait, then re-emitted from the "
              "ledger) stream=%s seq=%llu: %s",
              r->stream ? r->stream : "", (unsigned long long)r->seq, why);
}

/* nats.c's delivery thread: the server's answer to one ack. */
static void on_ack_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    nadapter_t *na = closure;
    const char *subj = natsMsg_GetSubject(msg);
    const char *dot = subj ? strrchr(subj, '.') : NULL;
    uint64_t id = dot ? strtoull(dot + 1, NULL, 10) : 0;
    pthread_mutex_lock(&na->mu);
    nrec_t *r = id ? ack_take_locked(na, id) : NULL;
    pthread_mutex_unlock(&na->mu);
    if (r) {
        if (natsMsg_IsNoResponders(msg))
            ack_failed(r, "no responders (the consumer is gone)");
        rec_free(r);
    }
    natsMsg_Destroy(msg);
}

/* nats.c: the ack subscription is closed and on_ack_reply will not run
 * again, so the adapter may be freed. */
static void on_ack_sub_done(void *closure)
{
    nadapter_t *na = closure;
    pthread_mutex_lock(&na->mu);
    na->ack_sub_done = 1;
    pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
}

/* Sends one confirmed ack; the answer frees r. */
static void ack_send(nadapter_t *na, nrec_t *r)
{
    const char *reply = natsMsg_GetReply(r->msg);
    char to[512], inbox[192];
    if (!reply || !*reply || strlen(reply) >= sizeof(to)) {
        ack_failed(r, "the message has no ack subject");
        rec_free(r);
        return;
    }
    snprintf(to, sizeof(to), "%s", reply);
    pthread_mutex_lock(&na->mu);
    ack_add_locked(na, r, mono_ms());
    uint64_t id = r->ack_id;
    pthread_mutex_unlock(&na->mu);
    /* From here the answer may free r at any moment. */
    snprintf(inbox, sizeof(inbox), "%s.%llu", na->ack_inbox, (unsigned long long)id);
    natsStatus s = natsConnection_PublishRequest(na->nc, to, inbox, "+ACK", 4);
    if (s != NATS_OK) {
        pthread_mutex_lock(&na->mu);
        nrec_t *back = ack_take_locked(na, id);
        pthread_mutex_unlock(&na->mu);
        if (back) {
            ack_failed(back, nats_err(s));
            rec_free(back);
        }
    }
}

static void *ops_main(void *arg)
{
    nadapter_t *na = arg;
    pthread_mutex_lock(&na->mu);
    uint64_t stop_at = 0, scanned_at = 0;
    for (;;) {
        if (!na->ops_head && !na->ops_stop)
            wait_locked(na, 100);
        nrec_t *batch = na->ops_head;
        na->ops_head = na->ops_tail = NULL;
        na->ops_n = 0;
        uint64_t now = mono_ms();
        /* In-progress acks for what weft holds, every AckWait/3. The
         * held list can be max_inflight long, and the thread wakes for
         * every finished batch: it is walked at most every 100 ms. */
        for (nrec_t *r = now - scanned_at >= 100 ? na->held : NULL; r; r = r->hnext) {
            int64_t every = r->ack_wait_ms / 3 > 100 ? r->ack_wait_ms / 3 : 100;
            if (now - r->progress_at >= (uint64_t)every) {
                natsMsg_InProgress(r->msg, NULL);
                r->progress_at = now;
            }
        }
        if (now - scanned_at >= 100)
            scanned_at = now;
        /* Acks without an answer in time. */
        nrec_t *expired = NULL;
        while (na->ack_head && now - na->ack_head->ack_sent >= ACK_WAIT_MS) {
            nrec_t *r = ack_take_locked(na, na->ack_head->ack_id);
            r->next = expired;
            expired = r;
        }
        int stop = na->ops_stop;
        if (stop && !stop_at)
            stop_at = now;
        pthread_mutex_unlock(&na->mu);
        while (expired) {
            nrec_t *r = expired;
            expired = r->next;
            ack_failed(r, "no answer in time");
            rec_free(r);
        }
        while (batch) {
            nrec_t *r = batch;
            batch = r->next;
            r->next = NULL;
            if (r->how == WEFT_FINISH_ACK) {
                ack_send(na, r);
                continue;
            }
            if (r->how == WEFT_FINISH_NAK) {
                natsStatus s = natsMsg_NakWithDelay(r->msg, r->delay_ms, NULL);
                if (s != NATS_OK)
                    weft_warn("JetStream nak failed (redelivered after AckWait) stream=%s "
                              "seq=%llu: %s",
                              r->stream ? r->stream : "", (unsigned long long)r->seq,
                              nats_err(s));
            }
            rec_free(r);
        }
        pthread_mutex_lock(&na->mu);
        /* At the end, wait for the answers to what was sent (bounded by
         * ACK_WAIT_MS, after which they count as failed above). */
        if (stop && !na->ops_head && (!na->ack_head || mono_ms() - stop_at > ACK_WAIT_MS + 200))
            break;
        if (stop && !na->ops_head)
            wait_locked(na, 20);
    }
    pthread_mutex_unlock(&na->mu);
    return NULL;
}

/* ---- publishing --------------------------------------------------------- */

static size_t pub_bucket(const natsMsg *msg)
{
    return ((uintptr_t)msg >> 4) & (PUB_BUCKETS - 1);
}

static void comp_push_locked(nadapter_t *na, void *opaque, const char *err, int retriable)
{
    ncomp_t *c = calloc(1, sizeof(*c));
    if (!c) {
        weft_error("out of memory queueing a delivery report");
        return;
    }
    c->opaque = opaque;
    c->err = err ? strdup(err) : NULL;
    c->retriable = retriable;
    if (na->comp_tail)
        na->comp_tail->next = c;
    else
        na->comp_head = c;
    na->comp_tail = c;
}

/* nats.c's thread: a PubAck (or its failure / timeout) for a message
 * published with js_PublishMsgAsync. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    nadapter_t *na = closure;
    char err[512] = "";
    if (!pa) {
        if (pae)
            snprintf(err, sizeof(err), "JetStream publish to %s failed: %s%s%s",
                     natsMsg_GetSubject(msg), natsStatus_GetText(pae->Err),
                     pae->ErrText ? ": " : "", pae->ErrText ? pae->ErrText : "");
        else
            snprintf(err, sizeof(err), "JetStream publish to %s failed", natsMsg_GetSubject(msg));
        if (pae && pae->Err == NATS_NO_RESPONDERS)
            snprintf(err, sizeof(err), "no JetStream stream captures subject %s",
                     natsMsg_GetSubject(msg));
    }
    pthread_mutex_lock(&na->mu);
    npub_t **pp = &na->pubs[pub_bucket(msg)];
    for (; *pp; pp = &(*pp)->next) {
        if ((*pp)->msg == msg) {
            npub_t *p = *pp;
            *pp = p->next;
            na->n_pubs--;
            comp_push_locked(na, p->opaque, pa ? NULL : err, 1);
            free(p);
            break;
        }
    }
    pthread_mutex_unlock(&na->mu);
    natsMsg_Destroy(msg);
    wake(na);
}

/* Builds the NATS message of an emit: headers mapped by
 * weft_nats_header_encode. A dead letter keeps every header that can be
 * sent and names the others in weft-dropped-headers (its row in
 * weft.dead_letters holds them all); anything else with an unsendable
 * header is refused. */
static int build_emit(const weft_emit_t *em, natsMsg **out, char *errstr, size_t errlen)
{
    return weft_nats_msg_build(out, em->topic, em->hdrs, em->n_hdrs, em->value, em->len,
                               em->drop_bad_headers, errstr, errlen);
}

static int n_produce(weft_adapter_t *a, const weft_emit_t *em, void *msg_opaque, int *retriable,
                     char *errstr, size_t errlen)
{
    nadapter_t *na = (nadapter_t *)a;
    *retriable = 0;
    natsMsg *msg = NULL;
    if (build_emit(em, &msg, errstr, errlen) != 0)
        return -1;
    *retriable = 1;
    if (em->broker == WEFT_BROKER_NATS) {
        natsStatus s = natsConnection_PublishMsg(na->nc, msg);
        natsMsg_Destroy(msg);
        if (s != NATS_OK) {
            snprintf(errstr, errlen, "publishing to %s failed: %s", em->topic, nats_err(s));
            return -1;
        }
        /* No acknowledgement exists on core NATS: reported as delivered
         * once handed to the connection, from serve (never from here). */
        pthread_mutex_lock(&na->mu);
        comp_push_locked(na, msg_opaque, NULL, 1);
        pthread_mutex_unlock(&na->mu);
        wake(na);
        return 0;
    }
    npub_t *p = calloc(1, sizeof(*p));
    if (!p) {
        natsMsg_Destroy(msg);
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    p->msg = msg;
    p->opaque = msg_opaque;
    /* Registered before publishing: the PubAck may arrive on nats.c's
     * thread before js_PublishMsgAsync returns. */
    pthread_mutex_lock(&na->mu);
    size_t b = pub_bucket(msg);
    p->next = na->pubs[b];
    na->pubs[b] = p;
    na->n_pubs++;
    pthread_mutex_unlock(&na->mu);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = em->msg_id;
    po.MaxWait = PUB_MAX_WAIT_MS;
    natsMsg *owned = msg;
    natsStatus s = js_PublishMsgAsync(na->js, &owned, &po);
    if (s == NATS_OK)
        return 0;
    pthread_mutex_lock(&na->mu);
    for (npub_t **pp = &na->pubs[b]; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            na->n_pubs--;
            free(p);
            break;
        }
    }
    pthread_mutex_unlock(&na->mu);
    natsMsg_Destroy(owned);
    snprintf(errstr, errlen, "js_PublishMsgAsync() failed subject=%s: %s", em->topic, nats_err(s));
    return -1;
}

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
        consumer_free(c);
        return -1;
    }
    if (pthread_create(&c->th, NULL, fetch_main, c) != 0) {
        consumer_free(c);
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
                                                      on_core_msg, na);
        /* Told when on_core_msg is done for good, so the adapter is freed
         * only after its last call (n_destroy). */
        if (st == NATS_OK)
            st = natsSubscription_SetOnCompleteCB(s->sub, on_core_sub_done, s);
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
        rec_free(r);
        return;
    }
    r->how = how;
    r->delay_ms = delay_ms;
    r->next = NULL;
    pthread_mutex_lock(&na->mu);
    held_del(na, r);
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
            held_del(na, r);
        rec_free(r);
        r = next;
    }
    na->ops_stop = 1;
    pthread_cond_broadcast(&na->cv);
    pthread_mutex_unlock(&na->mu);
    if (na->ops_started)
        pthread_join(na->ops_th, NULL);
    pthread_mutex_lock(&na->mu);
    if (na->ack_sub) {
        /* on_ack_reply takes na->mu: wait (bounded) until nats.c says it
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
        nrec_t *pend = ack_take_locked(na, na->ack_head->ack_id);
        ack_failed(pend, "shutting down before the answer");
        rec_free(pend);
    }
    pthread_mutex_unlock(&na->mu);
    while (na->held) {
        nrec_t *h = na->held;
        held_del(na, h);
        rec_free(h);
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
        consumer_free(c);
    }
    /* on_core_msg takes na->mu: wait (bounded) until nats.c says each
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
    .produce = n_produce,
    .serve = n_serve,
    .pause = n_pause,
    .outq = n_outq,
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
    na->base.redeliver_retries = 1;
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
    jo.PublishAsync.AckHandler = on_pub_ack;
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
        s = natsConnection_Subscribe(&na->ack_sub, na->nc, wild, on_ack_reply, na);
    }
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(na->ack_sub, on_ack_sub_done, na);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(na->ack_sub, -1, -1);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "cannot subscribe to the ack inbox: %s", nats_err(s));
        goto fail;
    }
    if (pthread_create(&na->ops_th, NULL, ops_main, na) != 0) {
        snprintf(errstr, errlen, "pthread_create() failed");
        goto fail;
    }
    na->ops_started = 1;
    return &na->base;
fail:
    n_destroy(&na->base);
    return NULL;
}
