/*
 * status.h - what `weft status` reads from PostgreSQL: per trigger its
 * in-flight and retrying events and its events by outcome (last minute and
 * total), per function its pools summed over live dispatchers, and the
 * dispatchers' heartbeat rows. cli/CLI.md defines every column.
 *
 * Values are kept as PostgreSQL printed them (the command prints them as
 * they are); flags are ints.
 */
#ifndef WEFT_STATUS_H
#define WEFT_STATUS_H

#include <stddef.h>

#include "pg.h"

typedef struct weft_status_trigger {
    char *name, *source, *topic, *function;
    int enabled;
    char *inflight, *retrying;
    /* events: [0] last minute, [1] total */
    char *completed[2], *failed[2], *dead[2], *dropped[2];
    char *stream, *durable; /* JetStream: the trigger's stream and durable */
} weft_status_trigger_t;

typedef struct weft_status_pool {
    char *function, *mode;
    char *workers, *max_workers, *idle, *busy, *starting, *stopping, *queued;
    int quarantined;
    char *invocations, *crashes, *timeouts;
} weft_status_pool_t;

typedef struct weft_status_dispatcher {
    char *owner, *host, *pid, *started_at, *heartbeat_age_s;
    int alive; /* a heartbeat within 5 s */
    char *inflight_msgs, *waiting;
    int paused;
} weft_status_dispatcher_t;

typedef struct weft_status {
    weft_status_trigger_t *trigs;
    size_t n_trigs;
    weft_status_pool_t *pools;
    size_t n_pools;
    weft_status_dispatcher_t *disps;
    size_t n_disps;
    weft_pg_result_t *res[3]; /* hold every string above */
} weft_status_t;

/* Reads the three parts (three statements). 0, or -1 with errstr
 * (PostgreSQL's message) and *st empty. */
int weft_status_read(weft_pg_conn_t *pg, weft_status_t *st, char *errstr, size_t errlen);
/* Frees what weft_status_read filled; a zeroed *st is a no-op. */
void weft_status_free(weft_status_t *st);

#endif
