/*
 * broker_nats_internal.h - what the pieces of the NATS adapter share: the
 * adapter's state, the record of a message weft holds, and the helpers
 * every thread uses. Not a public header: broker.h is the interface.
 *
 * broker_nats.c is the interface (sync, consume, finish, serve, close);
 * broker_nats_fetch.c the inbound side (records, core NATS subscriptions,
 * JetStream fetch threads); broker_nats_ack.c the ops thread (acks, naks,
 * in-progress); broker_nats_publish.c publishing and PubAck completions.
 * The threads and the locking are described at the top of broker_nats.c.
 */
#ifndef WEFT_BROKER_NATS_INTERNAL_H
#define WEFT_BROKER_NATS_INTERNAL_H

#include <nats/nats.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "catalog.h"

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
    int held;      /* its trigger is at its max_inflight: no fetch (under na->mu) */
    size_t queued; /* in the inbound queue, under na->mu */
    struct consumer *next;
} consumer_t;

typedef struct coresub {
    struct nadapter *na;
    char *subject;
    natsSubscription *sub;
    int retired;
    int held; /* a trigger on the subject is at its max_inflight (under na->mu) */
    int done; /* weft_nats_adapter_on_core_msg has returned for the last time (under na->mu) */
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

static inline uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void wake(nadapter_t *na)
{
    ssize_t r = write(na->wake[1], "n", 1);
    (void)r; /* a full pipe is awake already */
}

static inline void drain_wake(nadapter_t *na)
{
    char buf[64];
    while (read(na->wake[0], buf, sizeof(buf)) > 0)
        ;
}

/* Sleeps up to ms or until stop is set; call with na->mu held. */
static inline void wait_locked(nadapter_t *na, int ms)
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

static inline const char *nats_err(natsStatus s)
{
    const char *last = nats_GetLastError(NULL);
    return last && *last ? last : natsStatus_GetText(s);
}

/* broker_nats_fetch.c */
void weft_nats_adapter_rec_free(nrec_t *r);
void weft_nats_adapter_held_del(nadapter_t *na, nrec_t *r);
void weft_nats_adapter_on_core_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                                   void *closure);
void weft_nats_adapter_on_core_sub_done(void *closure);
void *weft_nats_adapter_fetch_main(void *arg);
void weft_nats_adapter_consumer_free(consumer_t *c);

/* broker_nats_ack.c */
nrec_t *weft_nats_adapter_ack_take_locked(nadapter_t *na, uint64_t id);
void weft_nats_adapter_ack_failed(const nrec_t *r, const char *why);
void weft_nats_adapter_on_ack_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                                    void *closure);
void weft_nats_adapter_on_ack_sub_done(void *closure);
void *weft_nats_adapter_ops_main(void *arg);

/* broker_nats_publish.c */
void weft_nats_adapter_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                                  void *closure);
int weft_nats_adapter_produce(weft_adapter_t *a, const weft_emit_t *em, void *msg_opaque,
                              int *retriable, char *errstr, size_t errlen);

#endif
