/*
 * retention.h - deleting old terminal rows: the ledger's, the dead
 * letters', ended saga instances (with their step runs and events) and
 * done replays, oldest first, a small batch per statement, each found
 * through an index on its time column (migrations/0014_retention.sql).
 *
 * Only terminal rows go: ledger rows 'completed', 'dropped' or 'dead'
 * (never 'running': claimed, or waiting for a retry), saga instances
 * 'completed' or 'aborted' (never running, compensating or stuck),
 * replays 'done' (never running, interrupted or failed: those can be
 * resumed). A row another transaction holds locked is
 * skipped (FOR UPDATE SKIP LOCKED), so a sweep never waits for the
 * dispatchers' claims and records, and they wait for it at most for one
 * batch. The trade-off: an event whose ledger row is gone runs again when
 * it is redelivered or replayed (store/LEDGER.md "Retention").
 */
#ifndef WEFT_RETENTION_H
#define WEFT_RETENTION_H

#include "pg.h"
#include <stddef.h>
#include <stdint.h>

typedef struct weft_retention {
    int64_t ledger_ms;       /* ledger rows and replays; 0: kept */
    int64_t dead_letters_ms; /* 0: kept */
    int64_t sagas_ms;        /* 0: kept */
    int64_t batch;           /* rows (saga instances: a tenth) per table per statement */
} weft_retention_t;

typedef struct weft_retention_counts {
    int64_t ledger, dead_letters, sagas, replays;
} weft_retention_counts_t;

/* Fills rt from the configuration's retention.* keys. 0, or -1 with
 * errstr (a value the table refuses). */
struct weft_config;
int weft_retention_config(const struct weft_config *cfg, weft_retention_t *rt, char *errstr,
                          size_t errlen);

/* Whether anything is to be deleted at all. */
int weft_retention_enabled(const weft_retention_t *rt);

/* The sweep's statement and its parameters (7), for EXPLAIN in tests:
 * the text is exactly what weft_retention_sweep_send runs. vals holds
 * the parameters' text (7 buffers of 24 bytes). */
const char *weft_retention_sweep_sql(void);
void weft_retention_sweep_params(const weft_retention_t *rt, char vals[7][24],
                                 const char *params[7]);

/* Sends one batch (does not wait; the caller reads the result later).
 * 0, or -1 with errstr. */
int weft_retention_sweep_send(weft_pg_conn_t *pg, const weft_retention_t *rt, char *errstr,
                              size_t errlen);
/* Reads the counts of the batch's answer. 0, or -1 with errstr. */
int weft_retention_sweep_result(const weft_pg_result_t *res, weft_retention_counts_t *out,
                                char *errstr, size_t errlen);
/* One batch, waiting for it (the CLI). 0, or -1 with errstr. */
int weft_retention_sweep(weft_pg_conn_t *pg, const weft_retention_t *rt,
                         weft_retention_counts_t *out, char *errstr, size_t errlen);

/* How many ledger rows are older than older_ms: terminal ones (what a
 * sweep deletes) and 'running' ones (what it keeps), and how many done
 * replays. Reads the created_at index's range (`weft ledger prune
 * --dry-run`). 0, or -1 with errstr. */
int weft_retention_count_ledger(weft_pg_conn_t *pg, int64_t older_ms, int64_t *terminal,
                                int64_t *running, int64_t *replays, char *errstr, size_t errlen);

/* The sweep runs on one dispatcher of a group at a time: the one whose
 * sweep connection holds this session-level advisory lock. Sends (does
 * not wait for) the session's settings and the attempt to take it; the
 * last result of the answer is one row, true when it was taken. */
int weft_retention_lock_send(weft_pg_conn_t *pg, char *errstr, size_t errlen);
/* Reads the lock's answer: 1 taken, 0 held by another dispatcher, -1 with
 * errstr. */
int weft_retention_lock_result(const weft_pg_result_t *res, char *errstr, size_t errlen);

#endif
