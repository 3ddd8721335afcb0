/*
 * ledger.h - the idempotency ledger in PostgreSQL (weft.ledger).
 *
 * Every statement handles a whole batch in one round trip. Keys within one
 * batch must be distinct (the dispatcher coalesces duplicates first).
 *
 * The calls are asynchronous halves so that the dispatcher's loop never
 * waits for PostgreSQL: *_send() queues the batch's statement on a
 * connection with no statement in flight (PQsendQueryPrepared; the caller
 * flushes and reads it with the loop), *_result() reads the statement's
 * PGresult. A failed statement changed nothing: the batch is sent again.
 * A connection is readied once with weft_ledger_prepare().
 */
#ifndef WEFT_LEDGER_H
#define WEFT_LEDGER_H

#include "pg.h"
#include <stddef.h>
#include <stdint.h>

/* Readies pg (a PGconn *, blocking, idle) for the *_send() calls:
 * prepares their statements and turns hash joins, merge joins and
 * sequential scans off for the session (a batch touches its rows by
 * primary key at any ledger size, and a cached plan outlives the ledger
 * size it was made for). Again after every (re)connection. 0, or -1 with
 * errstr. */
int weft_ledger_prepare(weft_pg_conn_t *pg, char *errstr, size_t errlen);

typedef struct weft_claim_req {
    const char *trigger;
    int generation;
    const char *key;
    int lease_ms; /* how long the claim holds if this process dies */
} weft_claim_req_t;

typedef enum {
    WEFT_CLAIM_RUN = 0,   /* new, retry, or taken over: run the function */
    WEFT_CLAIM_COMPLETED, /* done before: re-emit the stored result */
    WEFT_CLAIM_DROPPED,   /* the function dropped it before */
    WEFT_CLAIM_DEAD,      /* dead-lettered before: re-publish the dead letter */
    WEFT_CLAIM_BUSY,      /* another live owner holds it: ask again later */
} weft_claim_kind_t;

typedef struct weft_claim_res {
    weft_claim_kind_t kind;
    int attempts;        /* attempts that ran and were recorded (not this one) */
    int takeovers;       /* RUN: times the key was taken from an owner whose lease ran out,
                          * this claim included (weft.ledger.takeovers) */
    int64_t lease_left_ms; /* for BUSY */
    uint8_t *result;     /* COMPLETED: stored result, malloc()ed */
    size_t result_len;
    char *result_type;   /* malloc()ed or NULL */
    char *result_id;
    char *last_error;
    char *reason;
    char *first_failure; /* RFC 3339 or NULL */
    char *last_failure;
    int64_t dead_letter_id;
} weft_claim_res_t;

void weft_claim_res_clear(weft_claim_res_t *res);

/* How a claim is sent. WEFT_CLAIM_FRESH inserts every key with a plain
 * INSERT, which is cheaper but fails as a whole when any key already has
 * a row (then the batch is claimed again with WEFT_CLAIM_UPSERT, which
 * answers every key whatever its state). */
typedef enum { WEFT_CLAIM_UPSERT = 0, WEFT_CLAIM_FRESH } weft_claim_mode_t;

/* Sends the claim of n keys for owner on pg (a PGconn *). Returns 0, or
 * -1 with errstr (nothing was sent). */
int weft_ledger_claim_send(weft_pg_conn_t *pg, const char *owner, weft_claim_mode_t mode,
                           const weft_claim_req_t *reqs, size_t n, char *errstr, size_t errlen);
/* Reads the claim's result (a PGresult *) of the n keys reqs that were
 * sent with mode (reqs is not read for FRESH, where every key has the
 * same answer): out[i] answers reqs[i]. Returns 0; 1 when a FRESH
 * claim found a key that already has a row (nothing was claimed: claim
 * the batch again with WEFT_CLAIM_UPSERT); or -1 with errstr (the batch
 * must be claimed again). */
int weft_ledger_claim_result(const weft_pg_result_t *res, weft_claim_mode_t mode, const weft_claim_req_t *reqs,
                             size_t n, weft_claim_res_t *out, char *errstr, size_t errlen);

typedef enum {
    WEFT_REC_COMPLETED = 0,
    WEFT_REC_DROPPED,
    WEFT_REC_DEAD,
    WEFT_REC_RETRY, /* stays running; lease extended by lease_ms */
} weft_rec_kind_t;

typedef struct weft_record {
    const char *trigger;
    int generation;
    const char *key;
    weft_rec_kind_t kind;
    const uint8_t *result; /* COMPLETED */
    size_t result_len;
    const char *result_type;
    const char *result_id;
    const char *error;  /* RETRY, DEAD: last error */
    const char *reason; /* DEAD: timeout, signal:N, function, malformed, ... */
    int lease_ms;       /* RETRY */
    int ran;            /* 1: the function ran (or was due to run) for this outcome: the
                         * row's attempts grow by one; 0: decided without a run */
    /* DEAD: the dead-letter row */
    const char *source_broker; /* "kafka" (NULL), "jetstream", "nats" */
    const char *source_topic;
    int source_partition;
    int64_t source_offset;
    const uint8_t *msg_key;
    size_t msg_key_len;
    const uint8_t *value;
    size_t value_len;
    const char *headers_json;
    const char *dead_letter_topic;
    /* DEAD: the row is completed (its result no broker takes) and
     * becomes dead, by whichever owner, with its dead-letter row */
    int replace_completed;
} weft_record_t;

typedef struct weft_record_res {
    int applied;         /* 0: this owner no longer holds the key */
    int attempts;
    char first_failure[40];
    char last_failure[40];
    int64_t dead_letter_id;
} weft_record_res_t;

/* Sends the recording of n outcomes, like weft_ledger_claim_send. The
 * records' pointers are needed only during the call. */
int weft_ledger_record_send(weft_pg_conn_t *pg, const char *owner, const weft_record_t *recs, size_t n,
                            char *errstr, size_t errlen);
/* Reads the recording's result: out[i] answers recs[i]. 0 or -1. */
int weft_ledger_record_result(const weft_pg_result_t *res, size_t n, weft_record_res_t *out, char *errstr,
                              size_t errlen);

/* Appends one element to a PostgreSQL array literal under construction
 * (an empty buffer starts one); 0 or -1 (out of memory). _text: NULL is
 * NULL, and bytes that are not UTF-8 become '?'. */
struct weft_buf;
int weft_pg_array_add(struct weft_buf *b, const char *s, size_t len, int is_null);
int weft_pg_array_add_bytea(struct weft_buf *b, const uint8_t *p, size_t len, int is_null);
int weft_pg_array_add_text(struct weft_buf *b, const char *s);
int weft_pg_array_add_int(struct weft_buf *b, long long v);
/* Ends the literal ("{}" when nothing was added). */
int weft_pg_array_close(struct weft_buf *b);

#endif
