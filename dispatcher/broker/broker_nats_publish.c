/*
 * broker_nats_publish.c - the NATS adapter's publishing: a result, saga
 * event or dead letter as a NATS message (core NATS or JetStream, async
 * with a PubAck), and the completions serve() hands back to the
 * dispatcher.
 *
 * Runs in the dispatcher: weft_nats_adapter_produce on the loop thread,
 * weft_nats_adapter_on_pub_ack on nats.c's PubAck thread (which only queues a completion under
 * na->mu and wakes the loop).
 *
 * Invariants: a JetStream message sits in the pending table (na->pubs,
 * under na->mu) from before js_PublishMsgAsync until its PubAck, which
 * queues its completion; a core NATS message has no acknowledgement and
 * is reported delivered from serve, never from weft_nats_adapter_produce; a refused
 * publish gets no completion (weft_nats_adapter_produce returns the error); a message over
 * the server's max_payload is refused as never sendable (not retriable).
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
#include "broker_nats_internal.h"

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
void weft_nats_adapter_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                                  void *closure)
{
    (void)js;
    nadapter_t *na = closure;
    char err[512] = "";
    /* over the stream's max_msg_size: the same bytes are refused again */
    int retriable = !(pae && pae->ErrCode == JSStreamMessageExceedsMaximumErr);
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
            comp_push_locked(na, p->opaque, pa ? NULL : err, retriable);
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

/* The publish failed with s. A message over the server's max_payload
 * (headers and data) can never be sent, so it is not retriable: the
 * dispatcher makes it a failure with this reason instead of trying it
 * again every second forever. */
static void publish_failed(nadapter_t *na, const weft_emit_t *em, natsStatus s, const char *call,
                           int *retriable, char *errstr, size_t errlen)
{
    if (s == NATS_MAX_PAYLOAD) {
        *retriable = 0;
        snprintf(errstr, errlen,
                 "message to %s (%zu data bytes, %zu headers) is over the NATS server's "
                 "max_payload of %lld bytes",
                 em->topic, em->len, em->n_hdrs, (long long)natsConnection_GetMaxPayload(na->nc));
        return;
    }
    snprintf(errstr, errlen, "%s subject=%s: %s", call, em->topic, nats_err(s));
}

int weft_nats_adapter_produce(weft_adapter_t *a, const weft_emit_t *em, void *msg_opaque,
                              int *retriable, char *errstr, size_t errlen)
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
            publish_failed(na, em, s, "natsConnection_PublishMsg() failed", retriable, errstr,
                           errlen);
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
    publish_failed(na, em, s, "js_PublishMsgAsync() failed", retriable, errstr, errlen);
    return -1;
}
