/*
 * broker_nats_ack.c - the NATS adapter's ops thread: acknowledges finished
 * JetStream messages (confirmed acks, pipelined: each with its own reply
 * subject under one inbox subscription), sends retries as NakWithDelay,
 * and in-progress acks every AckWait/3 for every message weft holds.
 *
 * Runs in the dispatcher: weft_nats_adapter_ops_main on the adapter's ops thread, the ack
 * answers on nats.c's delivery thread.
 *
 * Invariants: an ack is sent only after the dispatcher finished the
 * message; an ack with no answer within ACK_WAIT_MS is logged and
 * forgotten (the server redelivers after AckWait, the ledger re-emits);
 * the list of acks awaiting an answer is touched only under na->mu.
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
nrec_t *weft_nats_adapter_ack_take_locked(nadapter_t *na, uint64_t id)
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

void weft_nats_adapter_ack_failed(const nrec_t *r, const char *why)
{
    weft_warn("JetStream ack failed (redelivered after AckWait, then re-emitted from the "
              "ledger) stream=%s seq=%llu: %s",
              r->stream ? r->stream : "", (unsigned long long)r->seq, why);
}

/* nats.c's delivery thread: the server's answer to one ack. */
void weft_nats_adapter_on_ack_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                                    void *closure)
{
    (void)nc;
    (void)sub;
    nadapter_t *na = closure;
    const char *subj = natsMsg_GetSubject(msg);
    const char *dot = subj ? strrchr(subj, '.') : NULL;
    uint64_t id = dot ? strtoull(dot + 1, NULL, 10) : 0;
    pthread_mutex_lock(&na->mu);
    nrec_t *r = id ? weft_nats_adapter_ack_take_locked(na, id) : NULL;
    pthread_mutex_unlock(&na->mu);
    if (r) {
        if (natsMsg_IsNoResponders(msg))
            weft_nats_adapter_ack_failed(r, "no responders (the consumer is gone)");
        weft_nats_adapter_rec_free(r);
    }
    natsMsg_Destroy(msg);
}

/* nats.c: the ack subscription is closed and weft_nats_adapter_on_ack_reply will not run
 * again, so the adapter may be freed. */
void weft_nats_adapter_on_ack_sub_done(void *closure)
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
        weft_nats_adapter_ack_failed(r, "the message has no ack subject");
        weft_nats_adapter_rec_free(r);
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
        nrec_t *back = weft_nats_adapter_ack_take_locked(na, id);
        pthread_mutex_unlock(&na->mu);
        if (back) {
            weft_nats_adapter_ack_failed(back, nats_err(s));
            weft_nats_adapter_rec_free(back);
        }
    }
}

void *weft_nats_adapter_ops_main(void *arg)
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
            nrec_t *r = weft_nats_adapter_ack_take_locked(na, na->ack_head->ack_id);
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
            weft_nats_adapter_ack_failed(r, "no answer in time");
            weft_nats_adapter_rec_free(r);
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
                              r->stream ? r->stream : "", (unsigned long long)r->seq, nats_err(s));
            }
            weft_nats_adapter_rec_free(r);
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
