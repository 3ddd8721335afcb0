/*
 * dispatcher.c - the daemon: consume, claim, invoke, record, produce,
 * commit.
 *
 * Runs in the `weft run` process, on one loop thread (librdkafka and libpq
 * keep their own threads; every callback lands here). Workers are started
 * by the pools with posix_spawn() of the weft-worker binary: this process
 * has library threads and holds credentials, so it must never duplicate
 * itself.
 *
 * NOTES
 * The path of one message, in order (DESIGN.md "The path of one event"):
 *   consume -> decode -> match triggers (one job per matching trigger)
 *   -> claim the job's key in the ledger (batched) -> invoke in the
 *   function's pool -> record the outcome (batched) -> for a saga's start
 *   or step, its transition (batched) -> produce the result or dead
 *   letter (and the transition's events) and wait for the broker's ack
 *   -> the job is terminal.
 * The loop never waits for PostgreSQL: each batch goes on a connection
 * of its stage without waiting for its answer, and a lost connection is
 * made again the same way (PQconnectStart, then PQconnectPoll from the
 * loop). What still waits: start-up, the statements right after a fresh
 * connection (LISTEN, the ledger's PREPAREs), a catalog reload, and on
 * the catalog connection the saga deadline check (once a second) and the
 * marks of deadline transitions' events as published.
 * When every job of a message is terminal, the message is finished by its
 * broker adapter (broker.h): on Kafka the contiguous finished prefix of its
 * partition is stored for commit, on JetStream it is acknowledged with
 * AckSync. Nothing is acknowledged before the result or dead letter was, so
 * a crash at any point redelivers it, and the ledger turns the redelivery
 * into a re-emit of the stored outcome instead of a second run.
 *
 * There is one pipeline for every broker: messages of Kafka, JetStream
 * and core NATS take the same path; only consuming, finishing and
 * producing go through the adapter of the message's (or the sink's)
 * broker. A retry of a JetStream message is a NAK with the backoff delay
 * (the server redelivers it); on Kafka and core NATS the message waits
 * here.
 *
 * Memory is bounded: at most dispatcher.max_inflight messages are held.
 * At the bound the loop stops taking messages from the adapters, whose
 * own queues are bounded (librdkafka's prefetch, a fetch batch per
 * JetStream consumer), and takes more as soon as there is room. Only
 * when the bound holds for PAUSE_AFTER_MS does every adapter pause
 * (Kafka pauses its partitions while the poll loop keeps the group
 * membership alive, JetStream stops fetching), to resume at half: a
 * Kafka pause drops the prefetched messages and the fetcher takes about
 * half a second to start again, so pausing at every brush with the bound
 * would drain the pipeline each time.
 */
#include "dispatcher.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "envelope.h"
#include "eventkey.h"
#include "fmt.h"
#include "hash.h"
#include "json.h"
#include "broker.h"
#include "latency.h"
#include "ledger.h"
#include "log.h"
#include "nats.h"
#include "pool.h"
#include "migrate.h"
#include "saga.h"
#include "weft_io.h"

#define CONSUME_BATCH 1000
#define LEASE_MARGIN_MS 5000
#define EMIT_MAX_HEADERS 64
#define PAUSE_AFTER_MS 1000
/* A (re)connection to PostgreSQL that has not finished by then is given
 * up and tried again a second later (the CLI's connect_timeout is the
 * same 10 s). */
#define CONNECT_TIMEOUT_MS 10000

typedef struct msg {
    weft_bmsg_t km;
    weft_adapter_t *bk; /* the adapter it came from */
    weft_finish_t finish; /* how it ends: ACK, or NAK after a retry on JetStream */
    int nak_delay_ms;
    weft_envelope_t env;
    weft_env_status_t env_status;
    char env_err[256];
    char *key;
    int generation; /* ledger generation: 0, or a replay's (weft-generation) */
    int pending;
    uint64_t consumed_us; /* monotonic */
} msg_t;

typedef enum {
    J_CLAIM,   /* in claim_q */
    J_RUNNING, /* submitted to a pool */
    J_RECORD,  /* in record_q */
    J_SAGA,    /* in saga_q: its saga transition */
    J_EMIT,    /* produced, waiting for the broker's ack */
    J_WAIT,    /* in wait list until due_ms */
    J_FOLLOW,  /* a duplicate of an active job; ends with it */
    J_ORDER,   /* ordered trigger: waits for the previous event of its key */
} job_state_t;

typedef enum { ACT_CLAIM, ACT_EMIT, ACT_SAGA } job_act_t;

/* What a delivery report's opaque points at: a job, or a batch of saga
 * events that no job owns (a deadline's transitions). */
typedef enum { EMITTER_JOB = 0, EMITTER_OUTBOX } emitter_t;

typedef struct job {
    emitter_t emitter; /* EMITTER_JOB (calloc) */
    msg_t *msg;
    const weft_trigger_t *trig;
    weft_catalog_t *cat;
    int generation;
    job_state_t state;
    job_act_t after_wait;
    uint64_t due_ms;
    int attempts;
    /* a message that cannot be run (malformed, oversized): dead-letter */
    const char *preset_reason;
    /* outcome */
    weft_rec_kind_t rec;
    uint8_t *result;
    size_t result_len;
    char *result_type;
    char result_id[37];
    char *error;
    char *reason;
    int retry_after_ms;
    /* dead letter details for the message */
    int64_t dl_id;
    char first_failure[40];
    char last_failure[40];
    /* produced messages not yet acknowledged, and whether one failed */
    size_t emit_pending;
    char *emit_err;
    /* sagas: the events of the transition this job caused */
    weft_saga_events_t sev;
    char *hkey; /* trigger \x1f generation \x1f key, in the active table */
    char *okey; /* ordered triggers: trigger \x1f topic \x1f partition \x1f message key */
    struct job *order_next; /* the next event of the same ordering key */
    struct job *followers;
    struct job *next;      /* queue link */
    struct job *all_prev, *all_next; /* every live job, for teardown */
    struct job *hnext;     /* active table chain */
    uint64_t born_us;      /* consumed (monotonic µs) */
    uint64_t stage_us;     /* entered its current timed stage */
} job_t;

typedef struct jq {
    job_t *head, *tail;
    size_t n;
} jq_t;

typedef struct fn_pool {
    char *name;
    char version[65];
    weft_pool_t *pool;
    int retired;
    struct fn_pool *next;
} fn_pool_t;

typedef struct outbox {
    emitter_t emitter; /* EMITTER_OUTBOX */
    weft_saga_events_t ev;
    size_t pending;
    int failed;
    struct outbox *next;
} outbox_t;

/* The ledger's own PostgreSQL connections: claims go on some, records on
 * the others (dispatcher.ledger_connections per stage), each with at most
 * one batch in flight. The loop never waits for them: while batches are
 * out, the next one gathers in its queue and goes as soon as a connection
 * of its stage is free, so batches grow with load and a lone event goes
 * at once. Each connection is its own backend, so claims and records run
 * at the same time, on as many cores as PostgreSQL has. Keys in flight
 * are distinct (one job per key), so concurrent batches never touch the
 * same row. Saga transitions go the same way, in batches of their own on
 * one connection of their own (so two never wait for each other's rows):
 * a transition waiting for a lock on a saga's row holds up the sagas
 * behind it and nothing else. */
typedef enum { LS_CLAIM = 0, LS_RECORD = 1, LS_SAGA = 2 } lstage_t;

#define LEDGER_BATCH 1000
#define LEDGER_CONNS_MAX 4 /* per stage */
#define SAGA_BATCH 500

typedef struct lconn {
    weft_io_t io; /* first: the epoll registration points here */
    struct dsp *d;
    lstage_t stage;
    PGconn *pg;
    uint32_t events; /* registered epoll events; 0: not registered */
    job_t *jobs[LEDGER_BATCH]; /* the batch in flight */
    size_t n;
    PGresult *res; /* its result, kept until the statement is over */
    uint64_t retry_at;
    uint64_t connect_deadline; /* while connecting: gives up then */
    uint64_t n_stmts, n_keys; /* batches sent and keys in them */
    /* How claims are sent. The first batch is an UPSERT (after a crash,
     * keys come back); an upsert that wins every key of its batch makes
     * the next ones FRESH until a fresh claim meets a key that has a row.
     * It changes only when an answer arrives, so it is also the mode of
     * the batch in flight. */
    weft_claim_mode_t claim_mode;
} lconn_t;

/* The stages the stats line times: how long the jobs that left each one
 * during the interval spent in it. AGE is an event's age when consumed
 * (now against its broker timestamp); TOTAL runs from consumption to the
 * end of the job. */
typedef enum { T_AGE, T_CLAIM, T_RUN, T_RECORD, T_PRODUCE, T_TOTAL, T_N } timed_t;
static const char *const timed_name[T_N] = {"age_ms",    "claim_ms",   "run_ms",
                                            "record_ms", "produce_ms", "total_ms"};

typedef struct dsp {
    weft_config_t *cfg;
    int epfd;
    weft_io_t sig_io;
    weft_io_t bk_io[2];
    weft_io_t pg_io;
    uint32_t pg_events; /* what pg_io is registered for; 0: not registered */
    PGconn *pg; /* catalog (LISTEN), heartbeat, saga deadlines */
    uint64_t pg_connect_deadline; /* while connecting: gives up then */
    /* the ledger's claims, then its records, then the saga transitions'
     * one connection (opened with the first transition) */
    lconn_t lc[2 * LEDGER_CONNS_MAX + 1];
    int n_lc;
    char owner[128];
    weft_catalog_t *cat;
    weft_adapter_t *adapters[2]; /* Kafka, NATS (JetStream and core) */
    size_t n_adapters;
    weft_adapter_t *bk[3];       /* by weft_broker_t; NULL: not configured */
    fn_pool_t *pools;
    jq_t claim_q, record_q, saga_q, wait_q;
    job_t **active;
    size_t active_cap;
    struct ochain **order_tab; /* ordering key -> last job of its chain */
    job_t *all_jobs;
    int closing;
    size_t inflight_msgs;
    int64_t max_inflight;
    int64_t max_event_bytes;
    int64_t shutdown_ms;
    int paused;
    uint64_t held_since; /* at the in-flight bound since (0: not at it) */
    uint64_t held_logged_at;
    uint64_t n_held;     /* times the bound was reached */
    int stopping;
    int catalog_dirty;
    uint64_t pg_retry_at;
    char worker_path[PATH_MAX];
    char functions_dir[PATH_MAX];
    /* counters for the periodic stats line */
    uint64_t n_consumed, n_completed, n_reemitted, n_dead, n_retries, n_dropped, n_unmatched;
    uint64_t stats_at;
    int64_t stats_ms; /* dispatcher.stats_interval_ms */
    weft_lat_t lat[T_N];
    uint64_t heartbeat_at;
    char host[256];
    /* sagas: deadline checks and re-publication of unacknowledged events */
    outbox_t *outboxes;
    uint64_t saga_expire_at, saga_republish_at;
} dsp_t;

static int pg_usable(dsp_t *d);

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t now_ms(void)
{
    return now_us() / 1000;
}

/* Wall-clock milliseconds, as broker timestamps count them. */
static int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The job left its timed stage at `now`. */
static void stage_done(dsp_t *d, const job_t *j, timed_t t, uint64_t now)
{
    weft_lat_add(&d->lat[t], now - j->stage_us);
}

/* The time now, to the millisecond, as ce_time wants it. Results come
 * in bursts, so the text of the last millisecond is kept. */
static void now_rfc3339(char *out, size_t len)
{
    static long long last_ms = -1;
    static char last[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (ms != last_ms) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(last, sizeof(last), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(ts.tv_nsec / 1000000) % 1000);
        last_ms = ms;
    }
    weft_fmt_copy(out, len, last);
}

/* ---- queues and the active-key table ---------------------------------- */

static void jq_push(jq_t *q, job_t *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    q->n++;
}

static job_t *jq_pop(jq_t *q)
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
static void job_enter(job_t *j, job_state_t state)
{
    j->state = state;
    j->stage_us = now_us();
}

/* Queues the job for a claim batch. */
static void claim_enqueue(dsp_t *d, job_t *j)
{
    job_enter(j, J_CLAIM);
    jq_push(&d->claim_q, j);
}

static size_t hash_str(const char *s)
{
    return (size_t)weft_fnv1a_str(WEFT_FNV1A_INIT, s);
}

static job_t *active_find(dsp_t *d, const char *hkey)
{
    for (job_t *j = d->active[hash_str(hkey) & (d->active_cap - 1)]; j; j = j->hnext)
        if (strcmp(j->hkey, hkey) == 0)
            return j;
    return NULL;
}

static void active_add(dsp_t *d, job_t *j)
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
typedef struct ochain {
    char *okey;
    job_t *tail;
    struct ochain *next;
} ochain_t;

static ochain_t **order_find(dsp_t *d, const char *okey)
{
    ochain_t **pp = &d->order_tab[hash_str(okey) & (d->active_cap - 1)];
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->okey, okey) == 0)
            return pp;
    return pp;
}

/* ---- messages and jobs ------------------------------------------------- */

/* Ends the message: its adapter acknowledges it (how), and its memory
 * goes. The envelope points into the message, so it goes first. */
static void msg_free(dsp_t *d, msg_t *m, weft_finish_t how)
{
    (void)d;
    weft_envelope_free(&m->env);
    weft_adapter_finish(m->bk, &m->km, how, m->nak_delay_ms);
    free(m->key);
    free(m);
}

static void msg_job_done(dsp_t *d, msg_t *m)
{
    if (--m->pending > 0)
        return;
    d->inflight_msgs--;
    msg_free(d, m, m->finish);
}

static void job_free(dsp_t *d, job_t *j)
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
    ((weft_trigger_t *)j->trig)->inflight--;
    weft_catalog_unref(j->cat);
    free(j);
}

/* The job reached its terminal outcome: finish it and its followers, and
 * let the next event of its ordering key go. */
static void job_terminal(dsp_t *d, job_t *j)
{
    weft_lat_add(&d->lat[T_TOTAL], now_us() - j->born_us);
    active_del(d, j);
    if (j->okey) {
        job_t *next = j->order_next;
        if (next) {
            claim_enqueue(d, next);
        } else {
            ochain_t **pp = order_find(d, j->okey);
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
        msg_job_done(d, f->msg);
        job_free(d, f);
        f = next;
    }
    msg_job_done(d, j->msg);
    job_free(d, j);
}

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

static void job_wait(dsp_t *d, job_t *j, uint64_t delay_ms, job_act_t act)
{
    j->state = J_WAIT;
    j->after_wait = act;
    j->due_ms = now_ms() + delay_ms;
    jq_push(&d->wait_q, j);
}

static int lease_ms_for(const job_t *j)
{
    /* A saga start runs no function: its lease covers a transaction. */
    return (j->trig->fn ? j->trig->fn->timeout_ms : 1000) + LEASE_MARGIN_MS;
}

/* Exponential backoff with jitter: b = initial * multiplier^(attempt-1),
 * capped at backoff_max_ms, and the delay is random in
 * [b * (1 - jitter), b] so that retries of many events spread out. */
static int backoff_ms(const weft_trigger_t *t, int attempts)
{
    double b = t->backoff_initial_ms;
    for (int i = 1; i < attempts && b < t->backoff_max_ms; i++)
        b *= t->backoff_multiplier;
    if (b > t->backoff_max_ms)
        b = t->backoff_max_ms;
    return (int)(b * (1.0 - t->backoff_jitter * ((double)rand() / RAND_MAX)));
}

/* ---- emitting results and dead letters -------------------------------- */

static void add_hdr(weft_header_t *h, size_t *n, const char *name, const char *value)
{
    if (*n >= EMIT_MAX_HEADERS || !value)
        return;
    h[*n].name = name;
    h[*n].value = value;
    h[*n].len = strlen(value);
    (*n)++;
}

static void emit_failed(dsp_t *d, job_t *j, const char *err)
{
    weft_warn("emit failed, retrying in 1 s trigger=%s topic=%s partition=%d offset=%lld: %s",
              j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
              (long long)j->msg->km.offset, err);
    job_wait(d, j, 1000, ACT_EMIT);
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
        if (produce_saga_event(d, ev, j->trig->saga_broker, j, &retriable, err, sizeof(err)) ==
            0) {
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
 * message (on_delivered). */
static void job_emit(dsp_t *d, job_t *j)
{
    const weft_trigger_t *t = j->trig;
    msg_t *m = j->msg;
    weft_header_t hdrs[EMIT_MAX_HEADERS];
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
    j->stage_us = now_us();

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
        now_rfc3339(time_buf, sizeof(time_buf));
        add_hdr(hdrs, &nh, "ce_specversion", "1.0");
        add_hdr(hdrs, &nh, "ce_id", j->result_id);
        add_hdr(hdrs, &nh, "ce_source", source);
        add_hdr(hdrs, &nh, "ce_type", type_buf);
        add_hdr(hdrs, &nh, "ce_time", time_buf);
        add_hdr(hdrs, &nh, "ce_weftinputid", weft_envelope_attr(&m->env, "id"));
        add_hdr(hdrs, &nh, "ce_wefttrigger", t->name);
        if (subj && *subj)
            add_hdr(hdrs, &nh, "ce_subject", subj);
        if (j->result_type && *j->result_type)
            add_hdr(hdrs, &nh, "content-type", j->result_type);
    } else if (j->rec == WEFT_REC_DEAD) {
        topic = t->dead_letter_topic;
        sink = t->dead_letter_broker;
        value = m->km.value;
        value_len = m->km.value_len;
        /* The dead letter's own id: one per dead letter, stable when it is
         * published again. */
        if (j->dl_id) {
            snprintf(msg_id, sizeof(msg_id), "weft-dlq-%lld", (long long)j->dl_id);
            id = msg_id;
        }
        /* The original headers, minus any weft failure metadata from an
         * earlier life (a re-driven event), then ours. */
        for (size_t i = 0; i < m->km.n_hdrs && nh < EMIT_MAX_HEADERS - 17; i++)
            if (strncasecmp(m->km.hdrs[i].name, "ce_weft", 7) != 0 &&
                strncasecmp(m->km.hdrs[i].name, "ce-weft", 7) != 0)
                hdrs[nh++] = m->km.hdrs[i];
        snprintf(attempts_buf, sizeof(attempts_buf), "%d", j->attempts);
        snprintf(part_buf, sizeof(part_buf), "%d", (int)m->km.partition);
        snprintf(off_buf, sizeof(off_buf), "%lld", (long long)m->km.offset);
        snprintf(dlid_buf, sizeof(dlid_buf), "%lld", (long long)j->dl_id);
        add_hdr(hdrs, &nh, "ce_weftreason", j->reason ? j->reason : "unknown");
        add_hdr(hdrs, &nh, "ce_wefterror", j->error ? j->error : "");
        add_hdr(hdrs, &nh, "ce_weftattempts", attempts_buf);
        add_hdr(hdrs, &nh, "ce_wefttrigger", t->name);
        add_hdr(hdrs, &nh, "ce_weftsrctopic", m->km.topic);
        if (m->km.broker != WEFT_BROKER_KAFKA)
            add_hdr(hdrs, &nh, "ce_weftsrcbroker", weft_broker_name(m->km.broker));
        add_hdr(hdrs, &nh, "ce_weftsrcpartition", part_buf);
        add_hdr(hdrs, &nh, "ce_weftsrcoffset", off_buf);
        if (j->first_failure[0])
            add_hdr(hdrs, &nh, "ce_weftfirstfailure", j->first_failure);
        if (j->last_failure[0])
            add_hdr(hdrs, &nh, "ce_weftlastfailure", j->last_failure);
        if (j->dl_id)
            add_hdr(hdrs, &nh, "ce_weftdlqid", dlid_buf);
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
        set_str(&j->reason, "invalid_header");
        set_str(&j->error, err);
        job_emit(d, j);
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
    stage_done(d, j, T_PRODUCE, now_us());
    if (j->rec == WEFT_REC_DEAD) {
        d->n_dead++;
        weft_warn("dead-lettered trigger=%s topic=%s partition=%d offset=%lld reason=%s "
                  "attempts=%d dlq=%s error=\"%s\"",
                  j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                  (long long)j->msg->km.offset, j->reason ? j->reason : "", j->attempts,
                  j->trig->dead_letter_topic, j->error ? j->error : "");
    }
    job_terminal(d, j);
}

static void on_delivered(void *opaque, void *msg_opaque, const char *err, int retriable)
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

/* ---- pools ------------------------------------------------------------- */

static void on_invoked(void *opaque, const weft_outcome_t *out, void *ctx);

/* The live pool of a function. By name, not version: a job that started
 * under an older definition retries in the pool that replaced it. */
static fn_pool_t *pool_for(dsp_t *d, const char *function)
{
    for (fn_pool_t *p = d->pools; p; p = p->next)
        if (!p->retired && strcmp(p->name, function) == 0)
            return p;
    return NULL;
}

static int resolve_entry(dsp_t *d, const char *entry, char *out, size_t len)
{
    if (strchr(entry, '/'))
        return snprintf(out, len, "%s", entry) < (int)len ? 0 : -1;
    return snprintf(out, len, "%s/%s", d->functions_dir, entry) < (int)len ? 0 : -1;
}

/* Makes the set of pools match the catalog: new functions and changed
 * versions get a new pool; pools nobody uses any more are retired and
 * destroyed once their in-flight invocations ended. */
static void pools_reconcile(dsp_t *d)
{
    for (fn_pool_t *p = d->pools; p; p = p->next) {
        const weft_function_t *fn = weft_catalog_function(d->cat, p->name);
        if (!p->retired && (!fn || strcmp(fn->version, p->version) != 0)) {
            p->retired = 1;
            weft_info("pool retiring function=%s", p->name);
        }
    }
    for (size_t i = 0; i < d->cat->n_fns; i++) {
        const weft_function_t *fn = &d->cat->fns[i];
        if (pool_for(d, fn->name))
            continue;
        char entry[PATH_MAX];
        if (resolve_entry(d, fn->entry, entry, sizeof(entry)) != 0) {
            weft_error("function entry path too long function=%s", fn->name);
            continue;
        }
        weft_pool_mode_t mode = WEFT_POOL_STATIC;
        if (fn->pool_mode && weft_pool_mode_parse(fn->pool_mode, &mode) != 0) {
            weft_error("unknown pool_mode function=%s pool_mode=%s", fn->name, fn->pool_mode);
            continue;
        }
        weft_pool_config_t pc = {
            .function = fn->name,
            .runtime = fn->runtime,
            .entry = entry,
            .symbol = fn->symbol,
            .mode = mode,
            .size = fn->pool_size,
            .max_concurrency = fn->max_concurrency,
            .min_spare = fn->min_spare,
            .max_spare = fn->max_spare,
            .max_spawn_rate = fn->max_spawn_rate,
            .idle_timeout_ms = (uint32_t)fn->idle_timeout_ms,
            .max_requests = (uint32_t)fn->max_requests,
            /* 0 in the catalog turns the brake off; 0 here means default. */
            .crash_storm_count = fn->crash_storm_count > 0 ? fn->crash_storm_count : -1,
            .crash_storm_window_ms = (uint32_t)fn->crash_storm_window_ms,
            .quarantine_ms = (uint32_t)fn->quarantine_ms,
            .pipeline_depth = fn->pipeline_depth,
            .env = (const char *const *)fn->env,
            .n_env = fn->n_env,
            .run_as_user = fn->run_as_user,
            .run_as_group = fn->run_as_group,
            .timeout_ms = (uint32_t)fn->timeout_ms,
            .memory_mb = (uint32_t)fn->memory_mb,
            .max_result_bytes = (uint32_t)fn->max_result_bytes,
            .worker_path = d->worker_path,
        };
        char err[512];
        weft_pool_t *pool = weft_pool_new(&pc, d->epfd, on_invoked, d, err, sizeof(err));
        if (!pool) {
            weft_error("cannot start pool function=%s: %s", fn->name, err);
            continue;
        }
        fn_pool_t *fp = calloc(1, sizeof(*fp));
        if (!fp || !(fp->name = strdup(fn->name))) {
            free(fp);
            weft_pool_destroy(pool, 1000);
            continue;
        }
        memcpy(fp->version, fn->version, sizeof(fp->version));
        fp->pool = pool;
        fp->next = d->pools;
        d->pools = fp;
        weft_info("pool started function=%s mode=%s workers=%d max_concurrency=%d runtime=%s "
                  "entry=%s",
                  fn->name, weft_pool_mode_name(mode), fn->pool_size,
                  fn->max_concurrency > 0 ? fn->max_concurrency : fn->pool_size, fn->runtime,
                  entry);
    }
}

static void pools_gc(dsp_t *d)
{
    for (fn_pool_t **pp = &d->pools; *pp;) {
        fn_pool_t *p = *pp;
        if (p->retired && weft_pool_inflight(p->pool) == 0) {
            *pp = p->next;
            weft_pool_destroy(p->pool, 2000);
            weft_info("pool stopped function=%s", p->name);
            free(p->name);
            free(p);
            continue;
        }
        pp = &p->next;
    }
}

/* Queues the job's outcome for recording. A retryable failure of the last
 * allowed attempt is recorded as dead here, whatever produced it. */
static void job_record(dsp_t *d, job_t *j)
{
    if (j->rec == WEFT_REC_RETRY && j->attempts >= j->trig->max_attempts) {
        char e[1400];
        snprintf(e, sizeof(e), "%s (after %d attempts)", j->error ? j->error : "", j->attempts);
        j->rec = WEFT_REC_DEAD;
        set_str(&j->error, e);
        set_str(&j->reason, "max_attempts");
    }
    job_enter(j, J_RECORD);
    jq_push(&d->record_q, j);
}

static void job_fail_now(dsp_t *d, job_t *j, const char *reason, const char *error)
{
    j->rec = WEFT_REC_DEAD;
    set_str(&j->reason, reason);
    set_str(&j->error, error);
    job_record(d, j);
}

static void job_invoke(dsp_t *d, job_t *j)
{
    fn_pool_t *fp = pool_for(d, j->trig->function);
    char err[512];
    if (!fp) {
        snprintf(err, sizeof(err), "no worker pool for function %s", j->trig->fn->name);
    } else if (weft_pool_submit(fp->pool, j->msg->env.ce, j->trig->name, (uint32_t)j->attempts,
                                j, err, sizeof(err)) == 0) {
        job_enter(j, J_RUNNING);
        return;
    }
    /* Treated like a crashed attempt: retried, then dead-lettered. */
    j->rec = WEFT_REC_RETRY;
    set_str(&j->reason, "pool_unavailable");
    set_str(&j->error, err);
    job_record(d, j);
}

static void on_invoked(void *opaque, const weft_outcome_t *out, void *ctx)
{
    dsp_t *d = ctx;
    job_t *j = opaque;
    char err[1200];
    stage_done(d, j, T_RUN, now_us());
    switch (out->kind) {
    case WEFT_OUTCOME_OK:
        j->rec = WEFT_REC_COMPLETED;
        free(j->result);
        j->result = malloc(out->len ? out->len : 1);
        if (!j->result) {
            j->rec = WEFT_REC_RETRY;
            set_str(&j->reason, "memory");
            set_str(&j->error, "out of memory copying the result");
            break;
        }
        memcpy(j->result, out->data, out->len);
        j->result_len = out->len;
        set_str(&j->result_type, out->content_type);
        /* NATS headers cannot carry CR, LF or NUL: refused here, before
         * the outcome is recorded, so the event gets a dead letter. */
        if (j->trig->result_topic && j->trig->result_broker != WEFT_BROKER_KAFKA &&
            out->content_type &&
            !weft_nats_header_value_valid(out->content_type, strlen(out->content_type))) {
            j->rec = WEFT_REC_DEAD;
            set_str(&j->reason, "invalid_header");
            set_str(&j->error, "the result's content type holds CR, LF or NUL, which NATS "
                               "headers cannot carry");
        }
        break;
    case WEFT_OUTCOME_DROP:
        j->rec = WEFT_REC_DROPPED;
        break;
    case WEFT_OUTCOME_FAIL:
        j->rec = WEFT_REC_DEAD;
        set_str(&j->reason, *out->reason ? out->reason : "non_retryable");
        set_str(&j->error, out->error);
        break;
    case WEFT_OUTCOME_RETRY:
    case WEFT_OUTCOME_CRASH:
    default:
        j->rec = WEFT_REC_RETRY;
        if (out->kind == WEFT_OUTCOME_CRASH) {
            snprintf(err, sizeof(err), "%s%s%s", out->reason, *out->error ? ": " : "",
                     out->error);
            set_str(&j->reason, out->reason);
            set_str(&j->error, err);
        } else {
            set_str(&j->reason, "function_error");
            set_str(&j->error, *out->error ? out->error : "function asked for a retry");
        }
        j->retry_after_ms = (int)out->retry_after_ms;
        break;
    }
    job_record(d, j);
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
           weft_uuid_valid(weft_envelope_attr(&j->msg->env, "weftinstance"));
}

/* Emits a recorded outcome: for a job that moves a saga, after its
 * transition (the saga stage asks PostgreSQL for it). */
static void emit_outcome(dsp_t *d, job_t *j)
{
    weft_saga_events_free(&j->sev);
    if (!moves_saga(j)) {
        job_emit(d, j);
        return;
    }
    j->state = J_SAGA;
    jq_push(&d->saga_q, j);
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
    if (!o->failed && pg_usable(d)) {
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
static void saga_tick(dsp_t *d)
{
    if (!d->cat || d->cat->n_sagas == 0 || d->stopping)
        return;
    uint64_t now = now_ms();
    if (now < d->saga_expire_at || now < d->pg_retry_at || !pg_usable(d))
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

/* ---- claiming ---------------------------------------------------------- */

static int event_expired(const job_t *j)
{
    if (j->trig->max_event_age_ms <= 0 || j->msg->km.timestamp_ms <= 0)
        return 0;
    return realtime_ms() - j->msg->km.timestamp_ms > j->trig->max_event_age_ms;
}

static void claim_outcome(dsp_t *d, job_t *j, weft_claim_res_t *res)
{
    j->attempts = res->attempts;
    switch (res->kind) {
    case WEFT_CLAIM_RUN:
        if (j->preset_reason) {
            job_fail_now(d, j, j->preset_reason, j->msg->env_err);
        } else if (event_expired(j)) {
            char e[200];
            snprintf(e, sizeof(e), "event is older than max_event_age_ms=%lld",
                     (long long)j->trig->max_event_age_ms);
            job_fail_now(d, j, "expired", e);
        } else if (j->attempts > j->trig->max_attempts) {
            /* Earlier attempts were cut short (crashes, restarts). */
            char e[1200];
            snprintf(e, sizeof(e), "%s (attempts exhausted: %d of %d)",
                     res->last_error ? res->last_error : "no error recorded", j->attempts - 1,
                     j->trig->max_attempts);
            j->attempts--;
            job_fail_now(d, j, "max_attempts", e);
        } else if (j->trig->saga) {
            /* Starting a saga runs no function: the start is the outcome
             * (the transition happens once it is recorded). */
            j->rec = WEFT_REC_COMPLETED;
            job_record(d, j);
        } else if (j->trig->step_saga &&
                   !weft_uuid_valid(weft_envelope_attr(&j->msg->env, "weftinstance"))) {
            job_fail_now(d, j, "malformed",
                         "a saga step event needs a weftinstance attribute (a UUID)");
        } else {
            job_invoke(d, j);
        }
        return;
    case WEFT_CLAIM_COMPLETED:
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
        set_str(&j->result_type, res->result_type);
        if (res->result_id)
            weft_fmt_copy(j->result_id, sizeof(j->result_id), res->result_id);
        emit_outcome(d, j);
        return;
    case WEFT_CLAIM_DROPPED:
        if (j->trig->step_saga) {
            j->rec = WEFT_REC_DROPPED;
            emit_outcome(d, j);
            return;
        }
        job_terminal(d, j);
        return;
    case WEFT_CLAIM_DEAD:
        /* Dead-lettered before, maybe not yet published: publish again
         * (consumers deduplicate on ce_weftdlqid). */
        j->rec = WEFT_REC_DEAD;
        set_str(&j->reason, res->reason ? res->reason : "unknown");
        set_str(&j->error, res->last_error);
        j->dl_id = res->dead_letter_id;
        weft_fmt_copy(j->first_failure, sizeof(j->first_failure), res->first_failure);
        weft_fmt_copy(j->last_failure, sizeof(j->last_failure), res->last_failure);
        emit_outcome(d, j);
        return;
    case WEFT_CLAIM_BUSY:
    default:
        weft_info("key held by another owner, waiting trigger=%s topic=%s partition=%d "
                  "offset=%lld lease_left_ms=%lld",
                  j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                  (long long)j->msg->km.offset, (long long)res->lease_left_ms);
        job_wait(d, j, (uint64_t)res->lease_left_ms + 100, ACT_CLAIM);
        return;
    }
}

/* ---- connections to PostgreSQL ---------------------------------------- */

/* Registers io for events in the loop's epoll set (*cur: what it is
 * registered for, 0 when it is not). */
static void io_watch(dsp_t *d, weft_io_t *io, uint32_t *cur, uint32_t events)
{
    if (io->fd < 0 || *cur == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    epoll_ctl(d->epfd, *cur ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd, &ev);
    *cur = events;
}

static void io_unwatch(dsp_t *d, weft_io_t *io, uint32_t *cur)
{
    if (io->fd >= 0 && *cur)
        epoll_ctl(d->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    *cur = 0;
    io->fd = -1;
}

/* Whether the connection is being made (PQconnectStart, and
 * PQconnectPoll from the loop since): neither up nor failed. */
static int conn_pending(const PGconn *pg)
{
    ConnStatusType st = PQstatus(pg);
    return pg && st != CONNECTION_OK && st != CONNECTION_BAD;
}

/* Starts making *pg anew without waiting for it; the socket is watched
 * for writing, as libpq asks first, and *deadline set. 0; -1 with why. */
static int conn_start(dsp_t *d, PGconn **pg, weft_io_t *io, uint32_t *cur, uint64_t *deadline,
                      char *why, size_t len)
{
    io_unwatch(d, io, cur);
    PQfinish(*pg);
    *pg = PQconnectStart(weft_config_get(d->cfg, "pg.conninfo", ""));
    if (!*pg || PQstatus(*pg) == CONNECTION_BAD) {
        snprintf(why, len, "%s", *pg ? PQerrorMessage(*pg) : "out of memory");
        return -1;
    }
    *deadline = now_ms() + CONNECT_TIMEOUT_MS;
    io->fd = PQsocket(*pg);
    io_watch(d, io, cur, EPOLLOUT);
    return 0;
}

/* One step of a connection being made: 1 up; 0 in progress (the socket
 * is watched for what libpq waits for); -1 failed. libpq may change the
 * socket between steps, so it is registered afresh each time. */
static int conn_poll(dsp_t *d, PGconn *pg, weft_io_t *io, uint32_t *cur)
{
    PostgresPollingStatusType st = PQconnectPoll(pg);
    io_unwatch(d, io, cur);
    if (st == PGRES_POLLING_FAILED)
        return -1;
    io->fd = PQsocket(pg);
    if (st == PGRES_POLLING_OK)
        return 1;
    io_watch(d, io, cur, st == PGRES_POLLING_WRITING ? EPOLLOUT : EPOLLIN);
    return 0;
}

/* A connection that failed or took too long goes; the next attempt starts
 * a second later. */
static void conn_drop(dsp_t *d, PGconn **pg, weft_io_t *io, uint32_t *cur, uint64_t *retry_at)
{
    io_unwatch(d, io, cur);
    PQfinish(*pg);
    *pg = NULL;
    *retry_at = now_ms() + 1000;
}

/* The heartbeat is the only statement sent on the catalog connection
 * without waiting for it: a command in progress there is one. libpq says
 * so until its last result is read, and never on a lost connection. */
static int hb_in_flight(const dsp_t *d)
{
    return PQtransactionStatus(d->pg) == PQTRANS_ACTIVE;
}

static void hb_collect(dsp_t *d, int wait);

static void pg_connect_failed(dsp_t *d, const char *why)
{
    weft_warn("postgresql unavailable, retrying: %s", why);
    conn_drop(d, &d->pg, &d->pg_io, &d->pg_events, &d->pg_retry_at);
}

/* A step of the catalog connection's reconnection (from on_pg). Once up
 * it LISTENs again, and the catalog is reloaded: changes made while it
 * was away sent notifications nobody heard. */
static void pg_connect_step(dsp_t *d)
{
    char why[512];
    int rc = conn_poll(d, d->pg, &d->pg_io, &d->pg_events);
    if (rc == 0)
        return;
    if (rc < 0) {
        snprintf(why, sizeof(why), "%s", PQerrorMessage(d->pg));
        pg_connect_failed(d, why);
        return;
    }
    PGresult *r = PQexec(d->pg, "LISTEN weft_catalog");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    snprintf(why, sizeof(why), "LISTEN: %s", PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
        pg_connect_failed(d, why);
        return;
    }
    weft_info("postgresql connection restored");
    d->catalog_dirty = 1;
    io_watch(d, &d->pg_io, &d->pg_events, EPOLLIN);
}

/* The catalog connection is up and free for a statement: a heartbeat
 * still in flight is waited for first (statements on one connection run
 * one after another). A lost connection is made again without waiting
 * for it (on_pg carries it on); meanwhile this says no. */
static int pg_usable(dsp_t *d)
{
    uint64_t now = now_ms();
    if (conn_pending(d->pg)) {
        if (now >= d->pg_connect_deadline)
            pg_connect_failed(d, "timed out connecting");
        return 0;
    }
    if (PQstatus(d->pg) == CONNECTION_OK) {
        hb_collect(d, 1);
        return PQstatus(d->pg) == CONNECTION_OK;
    }
    char why[512];
    if (now >= d->pg_retry_at && conn_start(d, &d->pg, &d->pg_io, &d->pg_events,
                                            &d->pg_connect_deadline, why, sizeof(why)) != 0)
        pg_connect_failed(d, why);
    return 0;
}

/* ---- the ledger's connections ------------------------------------------ */

static void lc_on_io(weft_io_t *io, uint32_t events);
static void send_claims(dsp_t *d, lconn_t *lc);
static void send_records(dsp_t *d, lconn_t *lc);
static void send_sagas(dsp_t *d, lconn_t *lc);
static int claims_done(dsp_t *d, lconn_t *lc, const PGresult *r, char *err, size_t errlen);
static int records_done(dsp_t *d, lconn_t *lc, const PGresult *r, char *err, size_t errlen);
static int sagas_done(dsp_t *d, lconn_t *lc, const PGresult *r, char *err, size_t errlen);

/* What sets the stages apart, by lstage_t. */
static const struct {
    const char *name; /* in log lines */
    size_t batch;     /* jobs per statement, at most */
    /* The ledger's: prepares the ledger's statements, connects at start-up
     * and counts in the stats line's batches (the saga stage connects with
     * its first transition). */
    int ledger;
    /* Takes the stage's next batch off its queue and sends it. */
    void (*send)(dsp_t *d, lconn_t *lc);
    /* Hands on the jobs of the batch whose answer is r: 0; -1 with err
     * (send the batch again); 1 (claims: again as upserts). */
    int (*answered)(dsp_t *d, lconn_t *lc, const PGresult *r, char *err, size_t errlen);
} STAGE[] = {
    [LS_CLAIM] = {"ledger claim", LEDGER_BATCH, 1, send_claims, claims_done},
    [LS_RECORD] = {"ledger record", LEDGER_BATCH, 1, send_records, records_done},
    [LS_SAGA] = {"saga transition", SAGA_BATCH, 0, send_sagas, sagas_done},
};

static const char *lc_name(const lconn_t *lc)
{
    return STAGE[lc->stage].name;
}

static void lc_watch(dsp_t *d, lconn_t *lc, uint32_t events)
{
    io_watch(d, &lc->io, &lc->events, events);
}

static void lc_unwatch(dsp_t *d, lconn_t *lc)
{
    io_unwatch(d, &lc->io, &lc->events);
}

/* The connection is up: its session is set up and the loop watches it.
 * Left to itself, the planner hashes the whole ledger for each record
 * batch while it is small to medium (measured: ~10x the cost at 50k
 * rows, growing with the ledger); weft_ledger_prepare sets the session
 * up so that every batch probes the primary key. 0, or -1 with err. */
static int lc_up(dsp_t *d, lconn_t *lc, char *err, size_t errlen)
{
    if (STAGE[lc->stage].ledger && weft_ledger_prepare(lc->pg, err, errlen) != 0)
        return -1;
    if (PQsetnonblocking(lc->pg, 1) != 0) {
        snprintf(err, errlen, "%s", PQerrorMessage(lc->pg));
        return -1;
    }
    lc_unwatch(d, lc);
    lc->io.fd = PQsocket(lc->pg);
    lc_watch(d, lc, EPOLLIN);
    return 0;
}

static void lc_connect_failed(dsp_t *d, lconn_t *lc, const char *why)
{
    weft_warn("postgresql unavailable for the %s connection, retrying: %s", lc_name(lc), why);
    conn_drop(d, &lc->pg, &lc->io, &lc->events, &lc->retry_at);
}

/* A step of the connection's connecting (from lc_on_io). */
static void lc_connect_step(dsp_t *d, lconn_t *lc)
{
    char err[512];
    int rc = conn_poll(d, lc->pg, &lc->io, &lc->events);
    if (rc == 0)
        return;
    if (rc < 0) {
        snprintf(err, sizeof(err), "%s", PQerrorMessage(lc->pg));
        lc_connect_failed(d, lc, err);
        return;
    }
    if (lc_up(d, lc, err, sizeof(err)) != 0) {
        lc_connect_failed(d, lc, err);
        return;
    }
    weft_info("postgresql connected for the %s connection", lc_name(lc));
}

/* Connects the stage's connection at start-up, waiting for it. 0, or -1
 * with err. */
static int lc_connect_now(dsp_t *d, lconn_t *lc, char *err, size_t errlen)
{
    lc->pg = PQconnectdb(weft_config_get(d->cfg, "pg.conninfo", ""));
    if (!lc->pg || PQstatus(lc->pg) != CONNECTION_OK) {
        snprintf(err, errlen, "%s", lc->pg ? PQerrorMessage(lc->pg) : "out of memory");
        return -1;
    }
    return lc_up(d, lc, err, errlen);
}

/* 1 when the stage's connection is up. A lost (or not yet opened) one is
 * made without waiting for it (lc_on_io carries it on); meanwhile, and
 * for a second after a failure, this says no. */
static int lc_usable(dsp_t *d, lconn_t *lc)
{
    if (PQstatus(lc->pg) == CONNECTION_OK)
        return 1;
    char why[512];
    if (!conn_pending(lc->pg) && now_ms() >= lc->retry_at &&
        conn_start(d, &lc->pg, &lc->io, &lc->events, &lc->connect_deadline, why, sizeof(why)) != 0)
        lc_connect_failed(d, lc, why);
    return 0;
}

/* The queue the stage's connections take their batches from. */
static jq_t *lc_queue(dsp_t *d, const lconn_t *lc)
{
    jq_t *q[] = {&d->claim_q, &d->record_q, &d->saga_q};
    return q[lc->stage];
}

/* The batch in flight goes back to the front of its queue, in order. */
static void lc_requeue(dsp_t *d, lconn_t *lc)
{
    jq_t *q = lc_queue(d, lc);
    for (size_t i = lc->n; i-- > 0;) {
        job_t *j = lc->jobs[i];
        j->next = q->head;
        q->head = j;
        if (!q->tail)
            q->tail = j;
        q->n++;
    }
    lc->n = 0;
    if (lc->res) {
        PQclear(lc->res);
        lc->res = NULL;
    }
}

/* The batch in flight failed: it is sent again after a pause. Nothing of
 * a failed statement was applied. */
static void lc_failed(dsp_t *d, lconn_t *lc, const char *err)
{
    weft_warn("%s batch of %zu failed, will retry: %s", lc_name(lc), lc->n, err);
    lc_requeue(d, lc);
    lc->retry_at = now_ms() + 500;
    if (PQstatus(lc->pg) != CONNECTION_OK)
        lc_unwatch(d, lc);
}

/* Writes what libpq still holds; watches for writability meanwhile. */
static void lc_flush(dsp_t *d, lconn_t *lc)
{
    int rc = PQflush(lc->pg);
    if (rc < 0) {
        char e[512];
        snprintf(e, sizeof(e), "%s", PQerrorMessage(lc->pg));
        lc_failed(d, lc, e);
        return;
    }
    lc_watch(d, lc, rc == 1 ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

static void lc_on_io(weft_io_t *io, uint32_t events)
{
    lconn_t *lc = (lconn_t *)io;
    dsp_t *d = lc->d;
    if (!lc->pg)
        return;
    if (conn_pending(lc->pg)) {
        lc_connect_step(d, lc);
        return;
    }
    if (events & EPOLLOUT) {
        lc_flush(d, lc);
        if (lc->n == 0 || !lc->pg)
            return;
    }
    if (!PQconsumeInput(lc->pg)) {
        char e[512];
        snprintf(e, sizeof(e), "%s", PQerrorMessage(lc->pg));
        if (lc->n)
            lc_failed(d, lc, e);
        else
            weft_warn("%s connection lost: %s", lc_name(lc), e);
        lc_unwatch(d, lc);
        return;
    }
    while (!PQisBusy(lc->pg)) {
        PGresult *r = PQgetResult(lc->pg);
        if (r) {
            /* One statement, one result; anything more is cleared. */
            if (lc->res)
                PQclear(r);
            else
                lc->res = r;
            continue;
        }
        /* The statement is over. */
        if (lc->n == 0) {
            if (lc->res) {
                PQclear(lc->res);
                lc->res = NULL;
            }
            return;
        }
        char e[1024];
        if (!lc->res) {
            snprintf(e, sizeof(e), "%s", PQerrorMessage(lc->pg));
            lc_failed(d, lc, e);
            return;
        }
        /* The done functions check the statement's status too. */
        int rc = STAGE[lc->stage].answered(d, lc, lc->res, e, sizeof(e));
        if (rc < 0) {
            lc_failed(d, lc, e); /* failed, or not this batch's answer: send it again */
            return;
        }
        if (rc > 0) {
            lc_requeue(d, lc); /* claimed again at once, as an upsert */
            return;
        }
        PQclear(lc->res);
        lc->res = NULL;
        return;
    }
}

/* 1 when the stage has a batch to send and may send it now. */
static int lc_ready(dsp_t *d, lconn_t *lc)
{
    return lc_queue(d, lc)->n > 0 && lc->n == 0 && !conn_pending(lc->pg) &&
           now_ms() >= lc->retry_at;
}

/* Takes the connection's next batch (up to the stage's batch of jobs off
 * its queue) when it may send one now; 0 when not. */
static size_t lc_begin(dsp_t *d, lconn_t *lc)
{
    if (conn_pending(lc->pg) && now_ms() >= lc->connect_deadline)
        lc_connect_failed(d, lc, "timed out connecting");
    if (!lc_ready(d, lc) || !lc_usable(d, lc))
        return 0;
    jq_t *q = lc_queue(d, lc);
    size_t n = 0, max = STAGE[lc->stage].batch;
    job_t *j;
    while (n < max && (j = jq_pop(q)) != NULL)
        lc->jobs[n++] = j;
    lc->n = n;
    lc->n_stmts++;
    lc->n_keys += n;
    return n;
}

/* After the batch's statement was handed to libpq (rc 0) or refused. */
static void lc_sent(dsp_t *d, lconn_t *lc, int rc, const char *err)
{
    if (rc != 0)
        lc_failed(d, lc, err);
    else
        lc_flush(d, lc);
}

/* ---- claiming (stage) ------------------------------------------------ */

/* The keys of the connection's batch, in its order. */
static void claim_reqs(const lconn_t *lc, weft_claim_req_t *reqs)
{
    for (size_t i = 0; i < lc->n; i++) {
        job_t *j = lc->jobs[i];
        reqs[i].trigger = j->trig->name;
        reqs[i].generation = j->generation;
        reqs[i].key = j->msg->key;
        reqs[i].lease_ms = lease_ms_for(j);
    }
}

static void send_claims(dsp_t *d, lconn_t *lc)
{
    size_t n = lc_begin(d, lc);
    if (n == 0)
        return;
    static weft_claim_req_t reqs[LEDGER_BATCH];
    claim_reqs(lc, reqs);
    char err[1024];
    lc_sent(d, lc,
            weft_ledger_claim_send(lc->pg, d->owner, lc->claim_mode, reqs, n, err, sizeof(err)),
            err);
}

/* Hands on the jobs of a claim batch whose answer is r; -1 with err when
 * r does not answer the batch, 1 when a fresh claim must be sent again
 * as an upsert (nothing was handed on either way). The batch leaves the
 * connection first; lc->jobs stays intact until the loop takes the
 * connection's next batch. */
static int claims_done(dsp_t *d, lconn_t *lc, const PGresult *r, char *err, size_t errlen)
{
    static weft_claim_res_t res[LEDGER_BATCH];
    static weft_claim_req_t reqs[LEDGER_BATCH];
    size_t n = lc->n;
    if (lc->claim_mode == WEFT_CLAIM_UPSERT)
        claim_reqs(lc, reqs); /* a fresh claim's answer names no keys */
    int rc = weft_ledger_claim_result(r, lc->claim_mode, reqs, n, res, err, errlen);
    if (rc != 0) {
        if (rc > 0)
            lc->claim_mode = WEFT_CLAIM_UPSERT;
        return rc;
    }
    lc->n = 0;
    int all_won = 1;
    uint64_t now = now_us();
    for (size_t i = 0; i < n; i++) {
        stage_done(d, lc->jobs[i], T_CLAIM, now);
        all_won &= res[i].kind == WEFT_CLAIM_RUN;
        claim_outcome(d, lc->jobs[i], &res[i]);
        weft_claim_res_clear(&res[i]);
    }
    if (all_won)
        lc->claim_mode = WEFT_CLAIM_FRESH;
    return 0;
}

/* ---- recording --------------------------------------------------------- */

static char *headers_json(const msg_t *m)
{
    weft_buf_t b = {0};
    weft_buf_append(&b, "[", 1);
    for (size_t i = 0; i < m->km.n_hdrs; i++) {
        const weft_header_t *h = &m->km.hdrs[i];
        if (i)
            weft_buf_append(&b, ",", 1);
        char *name = weft_utf8_sanitize(strdup(h->name ? h->name : ""));
        weft_buf_append(&b, "{\"name\":", 8);
        weft_json_append_string(&b, name ? name : "?", name ? strlen(name) : 1);
        free(name);
        weft_buf_append(&b, ",\"value_base64\":", 16);
        if (!h->value) {
            weft_buf_append(&b, "null}", 5);
            continue;
        }
        weft_buf_append(&b, "\"", 1);
        weft_base64_append(&b, h->value, h->len);
        weft_buf_append(&b, "\"}", 2);
    }
    weft_buf_append(&b, "]", 1);
    return b.p;
}

static void send_records(dsp_t *d, lconn_t *lc)
{
    size_t n = lc_begin(d, lc);
    if (n == 0)
        return;
    static weft_record_t recs[LEDGER_BATCH];
    static char *hjson[LEDGER_BATCH];
    for (size_t i = 0; i < n; i++) {
        job_t *j = lc->jobs[i];
        weft_record_t *r = &recs[i];
        memset(r, 0, sizeof(*r));
        hjson[i] = NULL;
        r->trigger = j->trig->name;
        r->generation = j->generation;
        r->key = j->msg->key;
        r->kind = j->rec;
        if (j->rec == WEFT_REC_COMPLETED) {
            const char *parts[3];
            char gen[24];
            weft_fmt_i64(gen, j->generation);
            parts[0] = j->trig->name;
            parts[1] = gen;
            parts[2] = j->msg->key;
            weft_uuid_from(j->result_id, parts, 3);
            r->result = j->result;
            r->result_len = j->result_len;
            r->result_type = j->result_type ? j->result_type : "";
            r->result_id = j->result_id;
        }
        r->error = j->rec == WEFT_REC_RETRY || j->rec == WEFT_REC_DEAD ? j->error : NULL;
        if (r->error == NULL && (j->rec == WEFT_REC_RETRY || j->rec == WEFT_REC_DEAD))
            r->error = "";
        r->reason = j->reason;
        if (j->rec == WEFT_REC_RETRY) {
            int delay = j->retry_after_ms > 0 ? j->retry_after_ms
                                              : backoff_ms(j->trig, j->attempts);
            j->due_ms = (uint64_t)delay;
            r->lease_ms = delay + lease_ms_for(j);
        }
        if (j->rec == WEFT_REC_DEAD) {
            const msg_t *m = j->msg;
            hjson[i] = headers_json(m);
            r->source_broker = weft_broker_name(m->km.broker);
            r->source_topic = m->km.topic;
            r->source_partition = m->km.partition;
            r->source_offset = m->km.offset;
            r->msg_key = m->km.key;
            r->msg_key_len = m->km.key_len;
            r->value = m->km.value ? m->km.value : (const uint8_t *)"";
            r->value_len = m->km.value_len;
            r->headers_json = hjson[i] ? hjson[i] : "[]";
            r->dead_letter_topic = j->trig->dead_letter_topic;
        }
    }
    char err[1024];
    int rc = weft_ledger_record_send(lc->pg, d->owner, recs, n, err, sizeof(err));
    for (size_t i = 0; i < n; i++)
        free(hjson[i]);
    lc_sent(d, lc, rc, err);
}

/* Hands on the jobs of a record batch, like claims_done. */
static int records_done(dsp_t *d, lconn_t *lc, const PGresult *r, char *err, size_t errlen)
{
    static weft_record_res_t res[LEDGER_BATCH];
    size_t n = lc->n;
    if (weft_ledger_record_result(r, n, res, err, errlen) != 0)
        return -1;
    lc->n = 0;
    uint64_t now = now_us();
    for (size_t i = 0; i < n; i++) {
        job_t *j = lc->jobs[i];
        stage_done(d, j, T_RECORD, now);
        if (!res[i].applied) {
            /* Our lease ran out and someone else owns the key now:
             * ask the ledger again rather than emit our outcome. */
            weft_warn("lost the lease, re-claiming trigger=%s topic=%s partition=%d "
                      "offset=%lld",
                      j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                      (long long)j->msg->km.offset);
            claim_enqueue(d, j);
            continue;
        }
        weft_fmt_copy(j->first_failure, sizeof(j->first_failure), res[i].first_failure);
        weft_fmt_copy(j->last_failure, sizeof(j->last_failure), res[i].last_failure);
        switch (j->rec) {
        case WEFT_REC_COMPLETED:
            d->n_completed++;
            emit_outcome(d, j);
            break;
        case WEFT_REC_DEAD:
            j->dl_id = res[i].dead_letter_id;
            emit_outcome(d, j);
            break;
        case WEFT_REC_DROPPED:
            d->n_dropped++;
            if (j->trig->step_saga)
                emit_outcome(d, j);
            else
                job_terminal(d, j);
            break;
        case WEFT_REC_RETRY:
        default:
            d->n_retries++;
            weft_info("retrying trigger=%s topic=%s partition=%d offset=%lld attempt=%d "
                      "in_ms=%llu reason=%s%s",
                      j->trig->name, j->msg->km.topic, (int)j->msg->km.partition,
                      (long long)j->msg->km.offset, j->attempts,
                      (unsigned long long)j->due_ms, j->reason ? j->reason : "",
                      j->msg->bk->redeliver_retries ? " via=nak" : "");
            if (j->msg->bk->redeliver_retries) {
                /* The broker redelivers after the delay (JetStream
                 * NakWithDelay); the ledger keeps the attempt count,
                 * and the lease covers the delay. A JetStream message
                 * has exactly one job: its consumer's trigger. */
                j->msg->finish = WEFT_FINISH_NAK;
                j->msg->nak_delay_ms = (int)j->due_ms;
                job_terminal(d, j);
            } else {
                job_wait(d, j, j->due_ms, ACT_CLAIM);
            }
            break;
        }
    }
    return 0;
}

/* ---- saga transitions (stage) ---------------------------------------- */

/* Sends the transitions of the saga stage's next batch. Asked again for
 * the same outcome (a redelivered event), the state machine returns the
 * events it returned the first time. */
static void send_sagas(dsp_t *d, lconn_t *lc)
{
    size_t n = lc_begin(d, lc);
    if (n == 0)
        return;
    static weft_saga_req_t reqs[SAGA_BATCH];
    static char ids[SAGA_BATCH][37];
    for (size_t i = 0; i < n; i++) {
        job_t *j = lc->jobs[i];
        const weft_trigger_t *t = j->trig;
        weft_envelope_t *env = &j->msg->env;
        weft_saga_req_t *q = &reqs[i];
        memset(q, 0, sizeof(*q));
        if (t->saga) {
            weft_saga_instance_id(ids[i], t->name, j->generation, j->msg->key);
            const char *ct = weft_envelope_attr(env, "datacontenttype");
            q->instance = ids[i];
            q->saga = t->saga;
            q->trigger = t->name;
            q->key = j->msg->key;
            q->data = weft_envelope_data(env, &q->len);
            q->content_type = ct && *ct ? ct : NULL;
        } else {
            int ok = j->rec == WEFT_REC_COMPLETED;
            q->done = (weft_saga_outcome_t){
                .instance = weft_envelope_attr(env, "weftinstance"),
                .step = t->step,
                .phase = t->compensate ? "compensate" : "do",
                .ok = j->rec != WEFT_REC_DEAD,
                .output = ok ? j->result : NULL,
                .output_len = ok ? j->result_len : 0,
                .output_type = ok && j->result_type && *j->result_type ? j->result_type : NULL,
                .reason = j->reason,
                .error = j->error,
                .attempts = j->attempts,
            };
        }
    }
    char err[1024];
    lc_sent(d, lc, weft_saga_batch_send(lc->pg, reqs, n, err, sizeof(err)), err);
}

/* Hands on the jobs of a saga batch whose answer is r, like claims_done:
 * each keeps its transition's events and emits. A transition the state
 * machine refused is logged, and its job emits its own outcome without
 * saga events; one that failed otherwise is asked again in a second. */
static int sagas_done(dsp_t *d, lconn_t *lc, const PGresult *r, char *err, size_t errlen)
{
    static weft_saga_res_t res[SAGA_BATCH];
    size_t n = lc->n;
    if (weft_saga_batch_answer(r, res, n, err, errlen) != 0)
        return -1;
    lc->n = 0;
    for (size_t i = 0; i < n; i++) {
        job_t *j = lc->jobs[i];
        const weft_trigger_t *t = j->trig;
        if (res[i].rc == -1) {
            weft_warn("saga transition failed, will retry in 1 s trigger=%s topic=%s "
                      "partition=%d offset=%lld: %s",
                      t->name, j->msg->km.topic, (int)j->msg->km.partition,
                      (long long)j->msg->km.offset, res[i].error ? res[i].error : "");
            weft_saga_res_clear(&res[i]);
            job_wait(d, j, 1000, ACT_SAGA);
            continue;
        }
        if (res[i].rc == -2)
            weft_error("saga transition refused trigger=%s topic=%s partition=%d offset=%lld: %s",
                       t->name, j->msg->km.topic, (int)j->msg->km.partition,
                       (long long)j->msg->km.offset, res[i].error ? res[i].error : "");
        j->sev = res[i].ev;
        res[i].ev = (weft_saga_events_t){0};
        weft_saga_res_clear(&res[i]);
        for (size_t k = 0; k < j->sev.n; k++) {
            const weft_saga_event_t *ev = &j->sev.ev[k];
            if (strcmp(ev->type, "weft.saga.stuck") == 0)
                weft_error("saga stuck saga=%s instance=%s step=%d error=\"%s\": a compensation "
                           "failed for good; see weft sagas show %s",
                           ev->saga, ev->instance, t->step, j->error ? j->error : "", ev->instance);
            else if (strcmp(ev->type, "weft.saga.completed") == 0 ||
                     strcmp(ev->type, "weft.saga.aborted") == 0 ||
                     strcmp(ev->type, "weft.saga.started") == 0)
                weft_info("saga %s saga=%s instance=%s", ev->type + 10, ev->saga, ev->instance);
        }
        job_emit(d, j);
    }
    return 0;
}

/* Sends what each stage's queue holds on its free connections. */
static void flush_ledger(dsp_t *d, lstage_t stage)
{
    for (int i = 0; i < d->n_lc; i++) {
        lconn_t *lc = &d->lc[i];
        if (lc->stage != stage)
            continue;
        STAGE[stage].send(d, lc);
    }
}

static int ledger_ready(dsp_t *d)
{
    for (int i = 0; i < d->n_lc; i++)
        if (lc_ready(d, &d->lc[i]))
            return 1;
    return 0;
}

/* ---- consuming --------------------------------------------------------- */

static job_t *job_new(dsp_t *d, msg_t *m, const weft_trigger_t *t)
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
        job_free(d, j);
        return NULL;
    }
    if (t->ordered &&
        asprintf(&j->okey, "%s\x1f%s\x1f%d\x1f%.*s", t->name, m->km.topic, (int)m->km.partition,
                 (int)m->km.key_len, m->km.key ? (const char *)m->km.key : "") < 0) {
        j->okey = NULL;
        job_free(d, j);
        return NULL;
    }
    return j;
}

static void admit_job(dsp_t *d, job_t *j)
{
    j->msg->pending++;
    job_t *leader = active_find(d, j->hkey);
    if (leader) {
        /* The same key is already in flight: this copy ends with it. */
        j->state = J_FOLLOW;
        j->next = leader->followers;
        leader->followers = j;
        return;
    }
    active_add(d, j);
    if (j->okey) {
        ochain_t **pp = order_find(d, j->okey);
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
    claim_enqueue(d, j);
}


/* The weft-generation header: decimal 0..INT32_MAX; anything else is 0
 * (the live generation), so a bad header can never skip the ledger. */
static int parse_generation(const void *v, size_t len)
{
    const char *s = v;
    long long g = 0;
    if (len == 0 || len > 10)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        g = g * 10 + (s[i] - '0');
    }
    return g <= INT32_MAX ? (int)g : 0;
}

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
    m->consumed_us = now_us();
    if (km->timestamp_ms > 0) {
        int64_t age = realtime_ms() - km->timestamp_ms;
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
        /* Not finished: the offset will not pass it / it is not acked, and
         * the message is redelivered. */
        msg_free(d, m, WEFT_FINISH_RELEASE);
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
        if ((strcmp(h->name, "weft-redrive-trigger") == 0 ||
             strcmp(h->name, "weft-replay-trigger") == 0) &&
            h->value && h->len < sizeof(only)) {
            memcpy(only, h->value, h->len);
            only[h->len] = '\0';
        } else if (strcmp(h->name, "weft-generation") == 0 && h->value) {
            m->generation = parse_generation(h->value, h->len);
        }
    }
    for (size_t i = 0; i < n; i++) {
        const weft_trigger_t *t = on_topic[i];
        if (only[0] && strcmp(only, t->name) != 0)
            continue;
        if (!preset && !weft_trigger_matches(t, m->km.broker, m->km.topic,
                                             weft_envelope_attr(&m->env, "type"), env_attr,
                                             &m->env))
            continue;
        job_t *j = job_new(d, m, t);
        if (!j) {
            weft_error("out of memory creating a job trigger=%s", t->name);
            continue;
        }
        j->preset_reason = preset;
        if (preset)
            weft_warn("undecodable message trigger=%s topic=%s partition=%d offset=%lld "
                      "reason=%s error=\"%s\"",
                      t->name, m->km.topic, (int)m->km.partition, (long long)m->km.offset,
                      preset, m->env_err);
        admit_job(d, j);
        matched++;
    }
    if (!matched)
        d->n_unmatched++;
    msg_job_done(d, m);
}

static int trigger_bound(const dsp_t *d, int half);

static int at_bound(const dsp_t *d)
{
    return d->inflight_msgs >= (size_t)d->max_inflight || trigger_bound(d, 0);
}

static void consume(dsp_t *d)
{
    static weft_bmsg_t batch[CONSUME_BATCH];
    /* At the bound and not paused: leave the messages in the adapters'
     * queues (see the top of the file). */
    if (!d->paused && at_bound(d))
        return;
    for (size_t a = 0; a < d->n_adapters; a++) {
        weft_adapter_t *bk = d->adapters[a];
        for (int round = 0; round < 4; round++) {
            size_t room = CONSUME_BATCH;
            if (!d->stopping && d->inflight_msgs < (size_t)d->max_inflight &&
                (size_t)d->max_inflight - d->inflight_msgs < room)
                room = (size_t)d->max_inflight - d->inflight_msgs;
            int fatal = 0;
            /* When paused or stopping we still poll (rebalances, liveness);
             * messages already fetched are kept, and the bound is soft by
             * at most the prefetch queue. */
            size_t n = weft_adapter_consume(bk, batch, room, &fatal);
            if (fatal)
                d->stopping = 1;
            for (size_t i = 0; i < n; i++)
                take_message(d, bk, &batch[i]);
            if (n < room)
                break;
        }
    }
}

/* 1 when some trigger reached its max_inflight (2: its half). */
static int trigger_bound(const dsp_t *d, int half)
{
    for (size_t i = 0; i < d->cat->n_trigs; i++) {
        const weft_trigger_t *t = &d->cat->trigs[i];
        if (t->inflight >= (half ? t->max_inflight / 2 + 1 : t->max_inflight))
            return 1;
    }
    return 0;
}

/* Pausing is all-or-nothing over the assigned partitions: simple, and the
 * poll loop keeps running, so group membership and retries go on. */
static void backpressure(dsp_t *d)
{
    int want = -1;
    uint64_t now = now_ms();
    int full = at_bound(d);
    if (full && !d->held_since) {
        d->held_since = now;
        d->n_held++;
        if (now - d->held_logged_at >= 10000) {
            d->held_logged_at = now;
            weft_info("consumption held at the in-flight bound inflight=%zu (more is taken as "
                      "soon as there is room; this is logged at most every 10 s)",
                      d->inflight_msgs);
        }
    }
    else if (!full && !d->paused)
        d->held_since = 0;
    if (!d->paused && full && now - d->held_since >= PAUSE_AFTER_MS)
        want = 1;
    else if (d->paused && d->inflight_msgs <= (size_t)d->max_inflight / 2 && !trigger_bound(d, 1))
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
        weft_info("%s consumption inflight=%zu", want ? "paused" : "resumed", d->inflight_msgs);
    }
}

/* ---- timers, signals, catalog ------------------------------------------ */

static uint64_t run_waits(dsp_t *d)
{
    uint64_t now = now_ms(), next = UINT64_MAX;
    jq_t keep = {0};
    job_t *j;
    while ((j = jq_pop(&d->wait_q)) != NULL) {
        if (j->due_ms > now) {
            if (j->due_ms < next)
                next = j->due_ms;
            jq_push(&keep, j);
            continue;
        }
        if (j->after_wait == ACT_EMIT) {
            job_emit(d, j);
        } else if (j->after_wait == ACT_SAGA) {
            emit_outcome(d, j);
        } else {
            claim_enqueue(d, j);
        }
    }
    d->wait_q = keep;
    return next;
}

static void reap_children(dsp_t *d)
{
    pid_t pid;
    int st;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        int owned = 0;
        for (fn_pool_t *p = d->pools; p && !owned; p = p->next)
            owned = weft_pool_reaped(p->pool, pid, st);
        if (!owned)
            weft_debug("reaped unknown child pid=%d", (int)pid);
    }
}

static void on_signal(weft_io_t *io, uint32_t events)
{
    (void)events;
    dsp_t *d = (dsp_t *)((char *)io - offsetof(dsp_t, sig_io));
    struct signalfd_siginfo si;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
            reap_children(d);
        } else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            if (!d->stopping)
                weft_info("shutting down signal=%s", strsignal((int)si.ssi_signo));
            d->stopping = 1;
        }
    }
}

static void on_broker(weft_io_t *io, uint32_t events)
{
    (void)io;
    (void)events;
    /* Served from the loop body. */
}

/* A notification can reach the catalog connection while one of its own
 * statements runs (heartbeat, saga, catalog load): libpq then reads it
 * with the statement's result and the socket never turns readable for it.
 * So the loop asks libpq for parsed notifications every turn (after the
 * handlers, on_pg's input included), not only when the socket wakes it. */
static void take_notifies(dsp_t *d)
{
    PGnotify *n;
    while ((n = PQnotifies(d->pg)) != NULL) {
        d->catalog_dirty = 1;
        PQfreemem(n);
    }
}

static void on_pg(weft_io_t *io, uint32_t events)
{
    (void)events;
    dsp_t *d = (dsp_t *)((char *)io - offsetof(dsp_t, pg_io));
    if (conn_pending(d->pg)) {
        pg_connect_step(d);
        return;
    }
    if (!PQconsumeInput(d->pg)) {
        weft_warn("postgresql connection lost: %s", PQerrorMessage(d->pg));
        io_unwatch(d, io, &d->pg_events);
        return;
    }
    hb_collect(d, 0);
}

/* Every adapter consumes what the catalog's triggers need; a trigger of a
 * broker that is not configured is reported at each load. */
static void sync_adapters(dsp_t *d)
{
    char err[512];
    for (size_t a = 0; a < d->n_adapters; a++)
        if (weft_adapter_sync(d->adapters[a], d->cat, err, sizeof(err)) != 0)
            weft_error("%s: %s", d->adapters[a]->name, err);
    for (size_t i = 0; i < d->cat->n_trigs; i++) {
        const weft_trigger_t *t = &d->cat->trigs[i];
        if (!d->bk[t->broker])
            weft_error("trigger not consumed: no %s connection is configured (%s) trigger=%s",
                       weft_broker_name(t->broker),
                       t->broker == WEFT_BROKER_KAFKA ? "kafka.bootstrap.servers"
                                                      : "nats.url",
                       t->name);
    }
}

static void reload_catalog(dsp_t *d)
{
    d->catalog_dirty = 0;
    char err[1024];
    weft_catalog_t *cat = weft_catalog_load(d->pg, err, sizeof(err));
    if (!cat) {
        weft_error("catalog reload failed, keeping the current one: %s", err);
        return;
    }
    weft_catalog_unref(d->cat);
    d->cat = cat;
    weft_info("catalog loaded triggers=%zu functions=%zu", cat->n_trigs, cat->n_fns);
    for (size_t i = 0; i < cat->n_trigs; i++) {
        const weft_trigger_t *t = &cat->trigs[i];
        weft_info("trigger name=%s source=%s topic=%s type=%s function=%s result_topic=%s%s%s "
                  "dlq=%s%s%s max_attempts=%d",
                  t->name, weft_broker_name(t->broker), t->topic,
                  t->event_type ? t->event_type : "*", t->function,
                  t->result_topic ? t->result_topic : "-",
                  t->result_broker != t->broker ? "@" : "",
                  t->result_broker != t->broker ? weft_broker_name(t->result_broker) : "",
                  t->dead_letter_topic, t->dead_letter_broker != t->broker ? "@" : "",
                  t->dead_letter_broker != t->broker ? weft_broker_name(t->dead_letter_broker)
                                                     : "",
                  t->max_attempts);
    }
    pools_reconcile(d);
    sync_adapters(d);
}

/* Reads the results of the heartbeat in flight: those already received
 * (wait 0, from on_pg), or all of them (wait 1, before another statement). */
static void hb_collect(dsp_t *d, int wait)
{
    while (hb_in_flight(d) && (wait || !PQisBusy(d->pg))) {
        PGresult *r = PQgetResult(d->pg);
        if (!r)
            break;
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            weft_debug("status heartbeat failed: %s", PQresultErrorMessage(r));
        PQclear(r);
    }
}

/* Upserts this dispatcher's row in weft.dispatchers (for `weft status`)
 * about once a second. It is sent and not waited for: its commit, or a
 * lock someone holds on the row, never holds up the loop; on_pg reads the
 * result. A failure is logged at debug level only: the row is advisory
 * and its age tells the reader it is stale. */
static void heartbeat(dsp_t *d)
{
    uint64_t now = now_ms();
    if (now - d->heartbeat_at < 1000)
        return;
    /* One still in flight: skip this one. On a lost connection,
     * pg_usable reconnects (and LISTENs again). */
    if (hb_in_flight(d) || !pg_usable(d))
        return;
    d->heartbeat_at = now;
    weft_buf_t b = {0};
    int bad = 0;
    bad |= weft_buf_printf(&b, "{\"inflight_msgs\":%zu,\"waiting\":%zu,\"paused\":%s,\"triggers\":{",
                    d->inflight_msgs, d->wait_q.n, d->paused ? "true" : "false");
    for (size_t i = 0; i < d->cat->n_trigs; i++) {
        const weft_trigger_t *t = &d->cat->trigs[i];
        bad |= weft_buf_printf(&b, "%s", i ? "," : "");
        bad |= weft_json_append_string(&b, t->name, strlen(t->name));
        bad |= weft_buf_printf(&b, ":{\"inflight\":%lld}", (long long)t->inflight);
    }
    bad |= weft_buf_printf(&b, "},\"pools\":{");
    int first = 1;
    for (fn_pool_t *p = d->pools; p; p = p->next) {
        if (p->retired)
            continue;
        weft_pool_stats_t st;
        weft_pool_stats(p->pool, &st);
        bad |= weft_buf_printf(&b, "%s", first ? "" : ",");
        first = 0;
        bad |= weft_json_append_string(&b, p->name, strlen(p->name));
        bad |= weft_buf_printf(&b,
                        ":{\"mode\":\"%s\",\"workers\":%d,\"max_workers\":%d,\"starting\":%d,"
                        "\"idle\":%d,\"busy\":%d,\"stopping\":%d,\"queued\":%zu,"
                        "\"quarantined\":%s,\"invocations\":%llu,\"crashes\":%llu,"
                        "\"timeouts\":%llu}",
                        weft_pool_mode_name(st.mode), st.workers, st.max_workers, st.starting,
                        st.idle, st.busy, st.stopping, st.queued,
                        st.quarantined ? "true" : "false", (unsigned long long)st.invocations,
                        (unsigned long long)st.crashes, (unsigned long long)st.timeouts);
    }
    bad |= weft_buf_printf(&b,
                    "},\"counters\":{\"consumed\":%llu,\"completed\":%llu,\"reemitted\":%llu,"
                    "\"retries\":%llu,\"dead\":%llu,\"dropped\":%llu,\"unmatched\":%llu}}",
                    (unsigned long long)d->n_consumed, (unsigned long long)d->n_completed,
                    (unsigned long long)d->n_reemitted, (unsigned long long)d->n_retries,
                    (unsigned long long)d->n_dead, (unsigned long long)d->n_dropped,
                    (unsigned long long)d->n_unmatched);
    bad |= weft_buf_append(&b, "", 1);
    if (bad) {
        weft_buf_free(&b);
        return;
    }
    char pid[16];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    const char *params[4] = {d->owner, d->host, pid, b.p};
    if (!PQsendQueryParams(
            d->pg,
            "INSERT INTO weft.dispatchers (owner, host, pid, status) VALUES ($1, $2, "
            "$3::int, $4::jsonb) ON CONFLICT (owner) DO UPDATE SET heartbeat_at = "
            "now(), status = EXCLUDED.status",
            4, NULL, params, NULL, NULL, 0))
        weft_debug("status heartbeat failed: %s", PQerrorMessage(d->pg));
    weft_buf_free(&b);
}

/* Where the jobs doing something are now: queued for or in a claim
 * batch, in a pool, queued for or in a record batch, produced and not yet
 * acknowledged. Little's law turns them into time: a stage holding N jobs
 * at R events/s adds N/R seconds. */
typedef struct stages {
    size_t claiming, running, recording, producing;
} stages_t;

static stages_t stages(const dsp_t *d)
{
    stages_t s = {d->claim_q.n, 0, d->record_q.n + d->saga_q.n, 0};
    for (int i = 0; i < d->n_lc; i++)
        *(d->lc[i].stage == LS_CLAIM ? &s.claiming : &s.recording) += d->lc[i].n;
    for (fn_pool_t *p = d->pools; p; p = p->next)
        s.running += weft_pool_inflight(p->pool);
    for (size_t a = 0; a < d->n_adapters; a++)
        s.producing += weft_adapter_outq(d->adapters[a]);
    return s;
}

static void stats(dsp_t *d, int force)
{
    uint64_t now = now_ms();
    if (!force && now - d->stats_at < (uint64_t)d->stats_ms)
        return;
    d->stats_at = now;
    uint64_t cs = 0, ck = 0, rs = 0, rk = 0;
    for (int i = 0; i < d->n_lc; i++) {
        const lconn_t *lc = &d->lc[i];
        if (!STAGE[lc->stage].ledger)
            continue;
        *(lc->stage == LS_CLAIM ? &cs : &rs) += lc->n_stmts;
        *(lc->stage == LS_CLAIM ? &ck : &rk) += lc->n_keys;
    }
    stages_t st = stages(d);
    /* " age_ms=p50/p99/max ..." for the jobs that left each stage since
     * the last line */
    char timed[T_N * 64], *at = timed;
    for (int t = 0; t < T_N; t++) {
        at += snprintf(at, 24, " %s=", timed_name[t]);
        int w = weft_lat_fmt(&d->lat[t], at, 40);
        at += w > 0 ? w : 0;
        weft_lat_reset(&d->lat[t]);
    }
    *at = '\0';
    weft_info("stats consumed=%llu completed=%llu reemitted=%llu retries=%llu dead=%llu "
              "dropped=%llu unmatched=%llu inflight=%zu waiting=%zu held=%llu claim_batches=%llu "
              "claim_keys=%llu record_batches=%llu record_keys=%llu claiming=%zu running=%zu "
              "recording=%zu producing=%zu%s",
              (unsigned long long)d->n_consumed, (unsigned long long)d->n_completed,
              (unsigned long long)d->n_reemitted, (unsigned long long)d->n_retries,
              (unsigned long long)d->n_dead, (unsigned long long)d->n_dropped,
              (unsigned long long)d->n_unmatched, d->inflight_msgs, d->wait_q.n,
              (unsigned long long)d->n_held, (unsigned long long)cs, (unsigned long long)ck,
              (unsigned long long)rs, (unsigned long long)rk, st.claiming, st.running, st.recording,
              st.producing, timed);
}

/* Jobs that are doing something now (not parked in a backoff wait). */
static size_t busy_jobs(const dsp_t *d)
{
    stages_t st = stages(d);
    return st.claiming + st.running + st.recording + st.producing;
}

/* ---- setup and the loop ------------------------------------------------ */

static void exe_dir(char *out, size_t len)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(out, len, ".");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, len, "%s", self);
}

static int setup(dsp_t *d, char *err, size_t errlen)
{
    int64_t v;
    if (weft_config_get_int(d->cfg, "dispatcher.max_inflight", 10000, 1, 10000000, &v, err,
                            errlen))
        return 2;
    d->max_inflight = v;
    if (weft_config_get_int(d->cfg, "dispatcher.max_event_bytes", 1048576, 1, 1 << 30, &v, err,
                            errlen))
        return 2;
    d->max_event_bytes = v;
    if (weft_config_get_int(d->cfg, "dispatcher.shutdown_timeout_ms", 10000, 0, 3600000, &v,
                            err, errlen))
        return 2;
    d->shutdown_ms = v;
    if (weft_config_get_int(d->cfg, "dispatcher.stats_interval_ms", 10000, 100, 3600000, &v, err,
                            errlen))
        return 2;
    d->stats_ms = v;
    if (weft_config_get_int(d->cfg, "dispatcher.ledger_connections", 2, 1, LEDGER_CONNS_MAX, &v,
                            err, errlen))
        return 2;
    d->n_lc = 2 * (int)v + 1;
    for (int i = 0; i < d->n_lc; i++) {
        d->lc[i].d = d;
        d->lc[i].stage = i < (int)v ? LS_CLAIM : i < 2 * (int)v ? LS_RECORD : LS_SAGA;
        d->lc[i].io.fd = -1;
        d->lc[i].io.handle = lc_on_io;
    }
    char dir[PATH_MAX];
    exe_dir(dir, sizeof(dir));
    snprintf(d->worker_path, sizeof(d->worker_path), "%s",
             weft_config_get(d->cfg, "workers.path", ""));
    if (!d->worker_path[0] &&
        snprintf(d->worker_path, sizeof(d->worker_path), "%s/weft-worker", dir) >=
            (int)sizeof(d->worker_path))
        return 2;
    const char *fdir = weft_config_get(d->cfg, "functions.dir", NULL);
    int fl = fdir ? snprintf(d->functions_dir, sizeof(d->functions_dir), "%s", fdir)
                  : snprintf(d->functions_dir, sizeof(d->functions_dir), "%s/../functions", dir);
    if (fl < 0 || (size_t)fl >= sizeof(d->functions_dir)) {
        snprintf(err, errlen, "functions.dir is too long");
        return 2;
    }
    if (access(d->worker_path, X_OK) != 0) {
        snprintf(err, errlen, "worker binary %.900s is not executable (set workers.path)",
                 d->worker_path);
        return 2;
    }

    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(d->host, sizeof(d->host), "%s", host);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srand((unsigned)(ts.tv_nsec ^ getpid()));
    snprintf(d->owner, sizeof(d->owner), "%s/%d/%08lx", host, (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)rand()));

    const char *conninfo = weft_config_get(d->cfg, "pg.conninfo", NULL);
    if (!conninfo) {
        snprintf(err, errlen, "pg.conninfo is not set (config file or WEFT_PG)");
        return 2;
    }
    d->pg = PQconnectdb(conninfo);
    if (PQstatus(d->pg) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(d->pg));
        return 1;
    }
    if (weft_migrate_check(d->pg, err, errlen) != 0)
        return 1;
    PGresult *r = PQexec(d->pg, "LISTEN weft_catalog");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        snprintf(err, errlen, "LISTEN failed: %s", PQerrorMessage(d->pg));
        return 1;
    }
    d->cat = weft_catalog_load(d->pg, err, errlen);
    if (!d->cat)
        return 1;

    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < d->n_lc; i++) {
        lconn_t *lc = &d->lc[i];
        char why[512];
        if (STAGE[lc->stage].ledger && lc_connect_now(d, lc, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "cannot connect to PostgreSQL for the ledger: %s", why);
            return 1;
        }
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    d->sig_io.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    d->sig_io.handle = on_signal;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &d->sig_io};
    epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->sig_io.fd, &ev);

    d->pg_io.fd = PQsocket(d->pg);
    d->pg_io.handle = on_pg;
    io_watch(d, &d->pg_io, &d->pg_events, EPOLLIN);

    /* Kafka when kafka.bootstrap.servers is set, NATS (JetStream and
     * core) when nats.url is; at least one of them. */
    weft_adapter_cbs_t cbs = {on_delivered, d};
    int want_kafka = weft_config_get(d->cfg, "kafka.bootstrap.servers", NULL) != NULL;
    int want_nats = weft_config_get(d->cfg, "nats.url", NULL) != NULL;
    if (want_kafka || !want_nats) {
        weft_adapter_t *k = weft_adapter_kafka_new(d->cfg, &cbs, err, errlen);
        if (!k)
            return 2;
        d->adapters[d->n_adapters++] = k;
        d->bk[WEFT_BROKER_KAFKA] = k;
    }
    if (want_nats) {
        weft_adapter_t *n = weft_adapter_nats_new(d->cfg, &cbs, err, errlen);
        if (!n)
            return 2;
        d->adapters[d->n_adapters++] = n;
        d->bk[WEFT_BROKER_JETSTREAM] = d->bk[WEFT_BROKER_NATS] = n;
    }
    for (size_t a = 0; a < d->n_adapters; a++) {
        d->bk_io[a].fd = weft_adapter_wake_fd(d->adapters[a]);
        d->bk_io[a].handle = on_broker;
        ev.data.ptr = &d->bk_io[a];
        epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->bk_io[a].fd, &ev);
    }

    d->active_cap = 1;
    while (d->active_cap < (size_t)d->max_inflight * 2)
        d->active_cap <<= 1;
    d->active = calloc(d->active_cap, sizeof(job_t *));
    d->order_tab = calloc(d->active_cap, sizeof(ochain_t *));
    if (!d->active || !d->order_tab) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    weft_info("dispatcher starting owner=%s max_inflight=%lld workers=%s functions_dir=%s",
              d->owner, (long long)d->max_inflight, d->worker_path, d->functions_dir);
    reload_catalog(d);
    return 0;
}

static void teardown(dsp_t *d)
{
    d->closing = 1;
    for (size_t a = 0; a < d->n_adapters; a++)
        weft_adapter_close(d->adapters[a], 5000);
    while (d->pools) {
        fn_pool_t *p = d->pools;
        d->pools = p->next;
        weft_pool_destroy(p->pool, 2000);
        free(p->name);
        free(p);
    }
    /* Free what is still in flight or parked (waiting retries, ordered
     * events): it was not finished, so its offsets were not stored and it
     * will be redelivered. */
    while (d->all_jobs) {
        job_t *j = d->all_jobs;
        msg_t *m = j->msg;
        job_free(d, j);
        if (--m->pending == 0)
            msg_free(d, m, WEFT_FINISH_RELEASE);
    }
    /* Only now: librdkafka waits for every message it handed out. */
    for (size_t a = 0; a < d->n_adapters; a++)
        weft_adapter_destroy(d->adapters[a]);
    d->n_adapters = 0;
    /* Saga events never acknowledged stay unpublished in the outbox. */
    while (d->outboxes) {
        outbox_t *o = d->outboxes;
        d->outboxes = o->next;
        weft_saga_events_free(&o->ev);
        free(o);
    }
    free(d->active);
    for (size_t i = 0; d->order_tab && i < d->active_cap; i++) {
        while (d->order_tab[i]) {
            ochain_t *c = d->order_tab[i];
            d->order_tab[i] = c->next;
            free(c->okey);
            free(c);
        }
    }
    free(d->order_tab);
    weft_catalog_unref(d->cat);
    if (d->pg) {
        if (hb_in_flight(d)) {
            /* A heartbeat held up by a lock must not hold up the exit. */
            PGcancel *c = PQgetCancel(d->pg);
            char e[256];
            if (c) {
                PQcancel(c, e, sizeof(e));
                PQfreeCancel(c);
            }
            hb_collect(d, 1);
        }
        if (d->owner[0] && PQstatus(d->pg) == CONNECTION_OK) {
            PQclear(PQexec(d->pg, "SET lock_timeout = 2000"));
            const char *params[1] = {d->owner};
            PQclear(PQexecParams(d->pg, "DELETE FROM weft.dispatchers WHERE owner = $1", 1, NULL,
                                 params, NULL, NULL, 0));
        }
        PQfinish(d->pg);
    }
    for (int i = 0; i < d->n_lc; i++) {
        if (d->lc[i].res)
            PQclear(d->lc[i].res);
        if (d->lc[i].pg)
            PQfinish(d->lc[i].pg);
    }
    if (d->sig_io.fd > 0)
        close(d->sig_io.fd);
    if (d->epfd > 0)
        close(d->epfd);
}

int weft_dispatcher_run(weft_config_t *cfg)
{
    dsp_t *d = calloc(1, sizeof(*d));
    if (!d)
        return 1;
    d->cfg = cfg;
    d->pg_io.fd = -1;
    /* Blocked from the start (and read through a signalfd later) so that a
     * SIGTERM during startup still ends in a clean shutdown. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    char err[1024] = "";
    int rc = setup(d, err, sizeof(err));
    if (rc != 0) {
        weft_error("%s", err);
        teardown(d);
        free(d);
        return rc;
    }
    uint64_t stop_deadline = 0;
    int exit_code = 0;
    for (;;) {
        uint64_t next_due = run_waits(d);
        /* A batch that could go now: do not sleep. */
        int busy = ledger_ready(d);
        int timeout = 50;
        uint64_t now = now_ms();
        if (busy)
            timeout = 0;
        else if (next_due != UINT64_MAX && next_due - now < (uint64_t)timeout)
            timeout = next_due > now ? (int)(next_due - now) : 0;
        struct epoll_event evs[64];
        int n = epoll_wait(d->epfd, evs, 64, timeout);
        for (int i = 0; i < n; i++) {
            weft_io_t *io = evs[i].data.ptr;
            io->handle(io, evs[i].events);
        }
        take_notifies(d);
        if (d->catalog_dirty && pg_usable(d))
            reload_catalog(d);
        if (!d->stopping)
            consume(d);
        flush_ledger(d, LS_CLAIM);
        now = now_ms();
        for (fn_pool_t *p = d->pools; p; p = p->next)
            weft_pool_tick(p->pool, now);
        flush_ledger(d, LS_RECORD);
        flush_ledger(d, LS_SAGA);
        for (size_t a = 0; a < d->n_adapters; a++)
            weft_adapter_serve(d->adapters[a]);
        pools_gc(d);
        backpressure(d);
        saga_tick(d);
        heartbeat(d);
        stats(d, 0);
        if (d->stopping) {
            if (stop_deadline == 0) {
                stop_deadline = now_ms() + (uint64_t)d->shutdown_ms;
                weft_info("draining in-flight work timeout_ms=%lld", (long long)d->shutdown_ms);
            }
            if (busy_jobs(d) == 0)
                break;
            if (now_ms() >= stop_deadline) {
                weft_warn("shutdown timeout with work in flight; it will be redelivered "
                          "busy=%zu",
                          busy_jobs(d));
                break;
            }
        }
    }
    stats(d, 1);
    teardown(d);
    free(d);
    weft_info("dispatcher stopped");
    return exit_code;
}
