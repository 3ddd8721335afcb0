/*
 * saga.h - the saga state machine's client: one call per transition.
 *
 * The state machine itself lives in PostgreSQL (migrations/0007_sagas.sql:
 * weft.saga_start, weft.saga_step_done, weft.saga_expire), so every
 * transition is one statement, one round trip and one transaction, and a
 * transition asked for twice returns the events it published the first
 * time (with the same ids) instead of moving the saga twice. The caller
 * publishes the returned events in order and only then acknowledges the
 * event that caused the transition (DESIGN.md: commit, then produce, then
 * ack).
 *
 * The single calls wait for their answer (the CLI; the dispatcher's
 * once-a-second deadline check). The dispatcher sends its transitions in
 * batches (weft_saga_batch_send) on a connection of its own, so a
 * transition waiting for PostgreSQL (a commit, a lock held on a saga's
 * row) never stops its loop, and a batch costs one round trip and one
 * commit.
 */
#ifndef WEFT_SAGA_H
#define WEFT_SAGA_H

#include "pg.h"
#include <stddef.h>

#include "encode.h"

/* One event a transition publishes. */
typedef struct weft_saga_event {
    char instance[37];
    int seq;
    char *saga;
    char *cause;
    char *topic;
    char *id;
    char *type;  /* weft.saga.step for a step's input, weft.saga.* otherwise */
    int step;    /* weft.saga.step: the step it starts; else 0 */
    char *phase; /* weft.saga.step: "do" or "compensate"; else NULL */
    unsigned char *data;
    size_t data_len;
    char *content_type;
} weft_saga_event_t;

typedef struct weft_saga_events {
    weft_saga_event_t *ev;
    size_t n;
} weft_saga_events_t;

void weft_saga_events_free(weft_saga_events_t *e);

/* The instance id of a saga started by trigger/generation/key: the same
 * start event always maps to the same instance. out: 37 bytes. */
void weft_saga_instance_id(char out[37], const char *trigger, int generation, const char *key);

/* Starts (or finds) the instance and returns the events of its start:
 * weft.saga.started and the first step's input. 0; -1 with errstr when
 * PostgreSQL failed (try again); -2 when the state machine refused (an
 * unknown saga or instance: trying again cannot help). The same for the
 * calls below. */
int weft_saga_start(weft_pg_conn_t *pg, const char *instance, const char *saga, const char *trigger,
                    const char *key, const void *data, size_t len, const char *content_type,
                    weft_saga_events_t *out, char *errstr, size_t errlen);

/* The outcome of a step ("do") or compensation ("compensate"). */
typedef struct weft_saga_outcome {
    const char *instance;
    int step;
    const char *phase;
    int ok; /* 1: succeeded; 0: failed for good */
    const void *output;
    size_t output_len;
    const char *output_type;
    const char *reason; /* failures: the dead-letter reason */
    const char *error;
    int attempts;
} weft_saga_outcome_t;

/* Moves the saga one transition; out gets its events (none for a result
 * the saga no longer waits for). */
int weft_saga_step_done(weft_pg_conn_t *pg, const weft_saga_outcome_t *o, weft_saga_events_t *out,
                        char *errstr, size_t errlen);

/* One transition of a batch: a start (saga set: instance .. content_type,
 * as weft_saga_start takes them) or a step or compensation that finished
 * (saga NULL: done, as weft_saga_step_done takes it). Pointers are needed
 * only during the send. */
typedef struct weft_saga_req {
    const char *instance, *saga, *trigger, *key;
    const void *data;
    size_t len;
    const char *content_type;
    weft_saga_outcome_t done;
} weft_saga_req_t;

/* The answer to one transition of a batch. */
typedef struct weft_saga_res {
    int rc;                /* 0; -1 failed (try it again); -2 refused by the state machine */
    weft_saga_events_t ev; /* rc 0: its events, as the single calls return them */
    char *error;           /* rc != 0: why */
} weft_saga_res_t;

void weft_saga_res_clear(weft_saga_res_t *r);

/* Sends n transitions as one statement and one transaction
 * (weft.saga_transitions) without waiting for it: PQsendQueryParams, so
 * it suits a non-blocking connection. Each transition runs in a
 * subtransaction of its own, so one that fails leaves the others
 * applied. 0; -1 with errstr. */
int weft_saga_batch_send(weft_pg_conn_t *pg, const weft_saga_req_t *reqs, size_t n, char *errstr,
                         size_t errlen);

/* Reads the batch's answer (its PGresult): out[i] answers reqs[i]. 0; -1
 * with errstr when the statement failed as a whole (nothing of it was
 * applied: send it again). */
int weft_saga_batch_answer(const weft_pg_result_t *res, weft_saga_res_t *out, size_t n, char *errstr,
                           size_t errlen);

/* Fails and compensates up to max running instances past their deadline;
 * out gets the events of all of them, grouped by instance. */
int weft_saga_expire(weft_pg_conn_t *pg, int max, weft_saga_events_t *out, char *errstr, size_t errlen);

/* Records that these events were acknowledged by their broker. */
int weft_saga_published(weft_pg_conn_t *pg, const weft_saga_events_t *e, char *errstr, size_t errlen);

/* Events never acknowledged, older than age_ms (a dispatcher died between
 * a deadline transition and its publication): publish them again. */
int weft_saga_unpublished(weft_pg_conn_t *pg, int age_ms, int max, weft_saga_events_t *out, char *errstr,
                          size_t errlen);

/* Storage for the formatted header values of one event. */
#define WEFT_SAGA_MAX_HEADERS 12

typedef struct weft_saga_hdrbuf {
    char time[64];
    char source[96];
    char step[16];
    weft_ce_hname_t names[WEFT_SAGA_MAX_HEADERS];
} weft_saga_hdrbuf_t;

/* The event's binary-mode CloudEvents headers (Kafka names; the NATS
 * adapter maps them): ce_id, ce_source /weft/sagas/SAGA, ce_type, ce_time,
 * ce_subject and ce_weftinstance = the instance, ce_weftsaga, and for a
 * step event ce_weftstep and ce_weftphase; content-type. hdrs holds
 * WEFT_SAGA_MAX_HEADERS; values point into ev and buf. Returns the count. */
size_t weft_saga_headers(const weft_saga_event_t *ev, weft_saga_hdrbuf_t *buf,
                         weft_header_t *hdrs);

#endif
