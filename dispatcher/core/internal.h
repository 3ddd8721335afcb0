/*
 * internal.h - the dispatcher's shared state (dsp_t, jobs, messages, the
 * ledger's connections) and the functions the files of core/ call across files.
 * Only core/ includes it; the daemon's public face is dispatcher.h.
 *
 * The daemon: consume, claim, invoke, record, produce, commit.
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
 * made again the same way (started, then stepped from the
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
 * Memory is bounded: at most dispatcher.max_inflight messages and
 * dispatcher.max_inflight_bytes bytes (messages and the results their jobs
 * carry) are held. At either bound the loop stops taking messages from the
 * adapters, whose own queues are bounded (librdkafka's prefetch, a fetch
 * batch per JetStream consumer), and takes more as soon as there is room.
 * A trigger at its own max_inflight holds only what feeds it (its topic's
 * partitions, its JetStream consumer, its subject): consume.c. Only
 * when a global bound holds for PAUSE_AFTER_MS does every adapter pause
 * (Kafka pauses its partitions while the poll loop keeps the group
 * membership alive, JetStream stops fetching), to resume at half: a
 * Kafka pause drops the prefetched messages and the fetcher takes about
 * half a second to start again, so pausing at every brush with the bound
 * would drain the pipeline each time.
 */
#ifndef WEFT_CORE_INTERNAL_H
#define WEFT_CORE_INTERNAL_H

#include "dispatcher.h"

#include <errno.h>
#include <fcntl.h>
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
#include "wire.h"
#include "eventkey.h"
#include "fmt.h"
#include "hash.h"
#include "heartbeat.h"
#include "job.h"
#include "json.h"
#include "broker.h"
#include "latency.h"
#include "ledger.h"
#include "log.h"
#include "match.h"
#include "loop.h"
#include "nats.h"
#include "pgconn.h"
#include "pool.h"
#include "migrate.h"
#include "retention.h"
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
    weft_adapter_t *bk;   /* the adapter it came from */
    weft_finish_t finish; /* how it ends: ACK, or NAK after a retry on JetStream */
    int nak_delay_ms;
    weft_envelope_t env;
    weft_env_status_t env_status;
    char env_err[256];
    char *key;
    int generation; /* ledger generation: 0, or a replay's (weft-generation) */
    int pending;
    uint64_t consumed_us; /* monotonic */
    size_t bytes;         /* counted in dsp_t.inflight_bytes */
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
    J_HOLD,    /* waits for a slot of its function's claim window (window.c) */
} job_state_t;

typedef struct claim_win claim_win_t;

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
    int attempts; /* recorded attempts; this one included once invoked */
    int ran;      /* invoked since its claim: its record counts an attempt */
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
    /* the dead letter's shape: 0 the whole message, cut to the topic's
     * limit when too large; 1 (after the broker refused it for its size)
     * its metadata only: no body (nor original headers, when large) */
    int dl_shrink;
    /* a completed outcome whose result no broker will take, being
     * recorded again as dead (the ledger row goes completed -> dead) */
    int replacing;
    char first_failure[40];
    char last_failure[40];
    /* produced messages not yet acknowledged, and whether one failed */
    size_t emit_pending;
    char *emit_err;
    int emit_permanent; /* a report refused a message for good (its size) */
    /* sagas: the events of the transition this job caused */
    weft_saga_events_t sev;
    char *hkey; /* trigger \x1f generation \x1f key, in the active table */
    char *okey; /* ordered triggers: trigger \x1f topic \x1f partition \x1f message key */
    size_t result_counted;  /* of result_len, counted in dsp_t.inflight_bytes */
    struct job *order_next; /* the next event of the same ordering key */
    struct job *followers;
    struct job *next;                /* queue link */
    struct job *all_prev, *all_next; /* every live job, for teardown */
    struct job *hnext;               /* active table chain */
    claim_win_t *win;                /* the claim window whose slot it holds, or NULL */
    uint64_t born_us;                /* consumed (monotonic µs) */
    uint64_t stage_us;               /* entered its current timed stage */
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
#define LEDGER_CONNS_MAX WEFT_LEDGER_CONNECTIONS_MAX /* per stage (config.h) */
#define SAGA_BATCH 500

typedef struct lconn {
    weft_io_t io; /* first: the epoll registration points here */
    struct dsp *d;
    lstage_t stage;
    weft_pg_conn_t *pg;
    uint32_t events;           /* registered epoll events; 0: not registered */
    job_t *jobs[LEDGER_BATCH]; /* the batch in flight */
    size_t n;
    weft_pg_result_t *res; /* its result, kept until the statement is over */
    uint64_t retry_at;
    uint64_t connect_deadline; /* while connecting: gives up then */
    uint64_t n_stmts, n_keys;  /* batches sent and keys in them */
    /* How claims are sent. The first batch is an UPSERT (after a crash,
     * keys come back); an upsert that wins every key of its batch makes
     * the next ones FRESH until a fresh claim meets a key that has a row.
     * It changes only when an answer arrives, so it is also the mode of
     * the batch in flight. */
    weft_claim_mode_t claim_mode;
} lconn_t;

/* The retention sweep (retention.c): a connection of its own, one
 * statement in flight at a time, and the schedule of the next. */
typedef enum { RS_IDLE = 0, RS_LOCK, RS_SWEEP } rstate_t;

typedef struct ret {
    weft_io_t io; /* epoll registration of pg */
    weft_pg_conn_t *pg;
    uint32_t events; /* registered epoll events; 0: not registered */
    uint64_t retry_at, connect_deadline;
    weft_retention_t rt;
    int enabled;
    int leader; /* this connection holds the group's sweep lock */
    rstate_t state;
    weft_pg_result_t *res; /* the last result of the statement in flight */
    uint64_t next_at;      /* when the next statement may go */
    /* deleted since the last log line (one a minute at most) */
    weft_retention_counts_t unlogged;
    uint64_t batches_unlogged;
    uint64_t logged_at;
} ret_t;

/* The stages the stats line times: how long the jobs that left each one
 * during the interval spent in it. AGE is an event's age when consumed
 * (now against its broker timestamp); TOTAL runs from consumption to the
 * end of the job. */
typedef enum { T_AGE, T_CLAIM, T_RUN, T_RECORD, T_PRODUCE, T_TOTAL, T_N } timed_t;

typedef struct dsp {
    weft_config_t *cfg;
    uint64_t emit_fail_logged_ms; /* when emit_failed last wrote a line */
    uint64_t emit_fail_unlogged;  /* failures since, not written */
    weft_loop_t loop;             /* epoll set and signalfd (workers/base/loop.h) */
    weft_io_t bk_io[2];
    uint32_t bk_events[2];
    weft_io_t pg_io;
    uint32_t pg_events;           /* what pg_io is registered for; 0: not registered */
    weft_pg_conn_t *pg;           /* catalog (LISTEN), heartbeat, saga deadlines */
    uint64_t pg_connect_deadline; /* while connecting: gives up then */
    /* the ledger's claims, then its records, then the saga transitions'
     * one connection (opened with the first transition) */
    lconn_t lc[2 * LEDGER_CONNS_MAX + 1];
    int n_lc;
    char owner[128];
    weft_catalog_t *cat;
    weft_adapter_t *adapters[2]; /* Kafka, NATS (JetStream and core) */
    size_t n_adapters;
    weft_adapter_t *bk[3]; /* by weft_broker_t; NULL: not configured */
    fn_pool_t *pools;
    jq_t claim_q, record_q, saga_q, wait_q;
    job_t **active;
    size_t active_cap;
    struct ochain **order_tab; /* ordering key -> last job of its chain */
    claim_win_t *wins;         /* claim windows, one per function (window.c) */
    job_t *all_jobs;
    int closing;
    size_t inflight_msgs;
    size_t inflight_bytes; /* held messages' bytes and their jobs' results */
    int64_t max_inflight;
    int64_t max_inflight_bytes;
    const weft_catalog_t *held_cat; /* the catalog whose held triggers the adapters know */
    int hold_failed;                /* an adapter refused the last hold: try again */
    int trig_waiting;        /* a trigger is at its bound and not held yet: nothing is taken */
    uint64_t hold_logged_at; /* when a trigger's hold was last logged */
    int64_t max_event_bytes;
    int64_t shutdown_ms;
    int64_t max_takeovers; /* dispatcher.max_takeovers */
    int paused;
    uint64_t held_since; /* at the in-flight bound since (0: not at it) */
    uint64_t held_logged_at;
    uint64_t n_held; /* times the bound was reached */
    int stopping;
    int stop_signal; /* the SIGTERM/SIGINT that set stopping; 0: none */
    int exit_code;   /* 1 once a fatal error stopped the loop (see loop.c) */
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
    ret_t ret;
} dsp_t;

/* The last job of an ordering key's chain (ordered triggers). */
typedef struct ochain {
    char *okey;
    job_t *tail;
    struct ochain *next;
} ochain_t;

/* What sets the stages apart, by lstage_t. */
typedef struct lstage_def {
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
    int (*answered)(dsp_t *d, lconn_t *lc, const weft_pg_result_t *r, char *err, size_t errlen);
} lstage_def_t;
extern const lstage_def_t DSP_STAGE[];

/* clock.c */
uint64_t dsp_now_us(void);
uint64_t dsp_now_ms(void);
int64_t dsp_realtime_ms(void);
void dsp_now_rfc3339(char *out, size_t len);

/* job.c */
void dsp_jq_push(jq_t *q, job_t *j);
job_t *dsp_jq_pop(jq_t *q);
void dsp_job_enter(job_t *j, job_state_t state);
void dsp_claim_enqueue(dsp_t *d, job_t *j);
void dsp_claim_push(dsp_t *d, job_t *j);
job_t *dsp_active_find(dsp_t *d, const char *hkey);
void dsp_active_add(dsp_t *d, job_t *j);
ochain_t **dsp_order_find(dsp_t *d, const char *okey);
void dsp_msg_free(dsp_t *d, msg_t *m, weft_finish_t how);
void dsp_msg_job_done(dsp_t *d, msg_t *m);
void dsp_job_free(dsp_t *d, job_t *j);
void dsp_job_terminal(dsp_t *d, job_t *j);
void dsp_set_str(char **dst, const char *src);
void dsp_job_wait(dsp_t *d, job_t *j, uint64_t delay_ms, job_act_t act);
int dsp_lease_ms_for(const job_t *j);
int dsp_backoff_ms(const weft_trigger_t *t, int attempts);
void dsp_claim_outcome(dsp_t *d, job_t *j, weft_claim_res_t *res);
job_t *dsp_job_new(dsp_t *d, msg_t *m, const weft_trigger_t *t);
void dsp_job_admit(dsp_t *d, job_t *j);
void dsp_job_count_result(dsp_t *d, job_t *j);

/* emit.c */
void dsp_job_emit(dsp_t *d, job_t *j);
int dsp_emit_result_fits(dsp_t *d, job_t *j, char *err, size_t errlen);
void dsp_on_delivered(void *opaque, void *msg_opaque, const char *err, int retriable);
void dsp_emit_outcome(dsp_t *d, job_t *j);
void dsp_saga_tick(dsp_t *d);

/* pools.c */
void dsp_pools_reconcile(dsp_t *d);
void dsp_pools_gc(dsp_t *d);
void dsp_job_record(dsp_t *d, job_t *j);
void dsp_job_fail_now(dsp_t *d, job_t *j, const char *reason, const char *error);
void dsp_job_invoke(dsp_t *d, job_t *j);

/* pgwatch.c */
void dsp_io_watch(dsp_t *d, weft_io_t *io, uint32_t *cur, uint32_t events);
void dsp_io_unwatch(dsp_t *d, weft_io_t *io, uint32_t *cur);
int dsp_conn_start(dsp_t *d, weft_pg_conn_t **pg, weft_io_t *io, uint32_t *cur, uint64_t *deadline,
                   char *why, size_t len);
int dsp_conn_poll(dsp_t *d, weft_pg_conn_t *pg, weft_io_t *io, uint32_t *cur);
void dsp_conn_drop(dsp_t *d, weft_pg_conn_t **pg, weft_io_t *io, uint32_t *cur, uint64_t *retry_at);
int dsp_hb_in_flight(const dsp_t *d);
void dsp_pg_connect_step(dsp_t *d);
int dsp_pg_usable(dsp_t *d);

/* ledgerconn.c */
int dsp_lc_connect_now(dsp_t *d, lconn_t *lc, char *err, size_t errlen);
void dsp_lc_on_io(weft_io_t *io, uint32_t events);
int dsp_lc_ready(dsp_t *d, lconn_t *lc);
size_t dsp_lc_begin(dsp_t *d, lconn_t *lc);
void dsp_lc_sent(dsp_t *d, lconn_t *lc, int rc, const char *err);

/* stages.c */
void dsp_send_claims(dsp_t *d, lconn_t *lc);
int dsp_claims_done(dsp_t *d, lconn_t *lc, const weft_pg_result_t *r, char *err, size_t errlen);
void dsp_send_records(dsp_t *d, lconn_t *lc);
int dsp_records_done(dsp_t *d, lconn_t *lc, const weft_pg_result_t *r, char *err, size_t errlen);
void dsp_send_sagas(dsp_t *d, lconn_t *lc);
int dsp_sagas_done(dsp_t *d, lconn_t *lc, const weft_pg_result_t *r, char *err, size_t errlen);
void dsp_flush_ledger(dsp_t *d, lstage_t stage);
int dsp_ledger_ready(dsp_t *d);

/* window.c: the claim window of each function. dsp_win_enter takes a slot
 * for a job about to be claimed, or holds the job until one is free; 1
 * when the window took the job (claimed now or held), 0 when the job
 * needs no slot (claim it). dsp_win_claimed tells the window how long the
 * job's claim took, from its slot to the answer. dsp_win_release gives the slot back once the job
 * will not run (any more) and lets a held job take it; dsp_win_drop only
 * gives it back (a job being freed). */
int dsp_win_enter(dsp_t *d, job_t *j);
void dsp_win_claimed(job_t *j, uint64_t waited_us);
void dsp_win_release(dsp_t *d, job_t *j);
void dsp_win_drop(job_t *j);
size_t dsp_win_held(const dsp_t *d);
void dsp_win_free_all(dsp_t *d);

/* consume.c */
void dsp_consume(dsp_t *d);
void dsp_backpressure(dsp_t *d);

/* timers.c */
uint64_t dsp_run_waits(dsp_t *d);
void dsp_on_signal(weft_loop_t *loop, int signo);
void dsp_on_child(weft_loop_t *loop, pid_t pid, int status);
void dsp_on_broker(weft_io_t *io, uint32_t events);
void dsp_take_notifies(dsp_t *d);
void dsp_on_pg(weft_io_t *io, uint32_t events);
void dsp_reload_catalog(dsp_t *d);

/* retention.c */
int dsp_retention_setup(dsp_t *d, char *err, size_t errlen);
void dsp_retention_tick(dsp_t *d);
void dsp_retention_close(dsp_t *d);

/* stats.c */
void dsp_stage_done(dsp_t *d, const job_t *j, timed_t t, uint64_t now);
void dsp_hb_collect(dsp_t *d, int wait);
void dsp_heartbeat(dsp_t *d);
void dsp_stats(dsp_t *d, int force);
size_t dsp_busy_jobs(const dsp_t *d);

#endif
