/*
 * catalog.h - functions and triggers, loaded from weft.functions and
 * weft.triggers. A catalog is immutable once loaded; a reload builds a new
 * one and in-flight work keeps the old one alive through its reference
 * count.
 */
#ifndef WEFT_CATALOG_H
#define WEFT_CATALOG_H

#include "pg.h"
#include <stddef.h>
#include <stdint.h>

#include "broker.h"

/* A trigger's attribute filter (weft.trigger_filters); ce/match.c
 * applies them. */
typedef enum { WEFT_FILTER_EXACT = 0, WEFT_FILTER_PREFIX, WEFT_FILTER_SUFFIX } weft_filter_op_t;

typedef struct weft_filter {
    char *attribute; /* "type", "subject", "source", "id" or an extension */
    weft_filter_op_t op;
    char *value;
} weft_filter_t;

/* Parses "exact" / "prefix" / "suffix". */
int weft_filter_op_parse(const char *s, weft_filter_op_t *op);

typedef struct weft_function {
    char *name;
    char *runtime;
    char *entry; /* as written in the catalog */
    char *symbol;
    int timeout_ms;
    int memory_mb;
    int pool_size;
    int max_result_bytes;
    /* Pool knobs (migrations/0002_function_pools.sql; workers/pool.h). */
    char *pool_mode;     /* "static" (NULL), "dynamic", "ondemand" */
    int max_concurrency; /* 0: pool_size */
    int min_spare;
    int max_spare;
    int max_spawn_rate;
    int idle_timeout_ms;
    int max_requests;      /* 0: never recycle */
    int crash_storm_count; /* 0: no crash-storm brake */
    int crash_storm_window_ms;
    int quarantine_ms;
    int pipeline_depth; /* invocations a worker may hold; 0: the pool's default */
    char **env;         /* n_env "NAME" / "NAME=VALUE" entries */
    size_t n_env;
    char *run_as_user;  /* NULL: the dispatcher's user */
    char *run_as_group; /* NULL: the user's primary group */
    char version[65];   /* hash of every field that needs a pool restart */
} weft_function_t;

typedef struct weft_trigger {
    char *name;
    weft_broker_t broker;
    char *topic;
    char *event_type; /* NULL: any type */
    char *function;
    weft_function_t *fn;
    char *result_topic; /* NULL: no result event */
    char *result_type;  /* NULL: input type + ".result" */
    char *dead_letter_topic;
    weft_broker_t result_broker;      /* where result_topic lives (default: the source) */
    weft_broker_t dead_letter_broker; /* where dead_letter_topic lives (default: the source) */
    char *stream;                     /* JetStream source: the stream holding topic */
    char *durable;   /* JetStream source: durable consumer name; NULL: weft_<name> */
    int ack_wait_ms; /* JetStream source: AckWait of a consumer weft creates */
    int max_attempts;
    int backoff_initial_ms;
    int backoff_max_ms;
    double backoff_multiplier;
    double backoff_jitter;    /* 0..1 */
    int64_t max_event_age_ms; /* 0: no limit */
    int ordered;
    int max_inflight;
    weft_filter_t *filters; /* AND */
    size_t n_filters;
    int inflight;         /* runtime: the dispatcher's jobs of this trigger */
    int held;             /* runtime: reached max_inflight, what feeds it is paused until half */
    uint64_t bound_since; /* runtime: ms it reached max_inflight (0: below); held after
                           * PAUSE_AFTER_MS there, all consumption waits until then */
    /* Sagas. A trigger that starts a saga names it in saga (function is
     * "" and fn NULL). The steps of a saga run as triggers the catalog
     * builds itself, one per step and phase, named "saga:SAGA:STEP:PHASE"
     * (a name no SQL trigger can have), on the saga's step topic with
     * filters on the event's weftsaga, weftstep and weftphase attributes;
     * step_saga, step and compensate say which. saga_broker: where the
     * saga's topics are. */
    char *saga;
    char *step_saga;
    int step;
    int compensate;
    weft_broker_t saga_broker;
} weft_trigger_t;

/* A saga, as far as the dispatcher needs it (its steps are triggers). */
typedef struct weft_saga_ref {
    char *name;
    weft_broker_t broker;
} weft_saga_ref_t;

typedef struct weft_catalog {
    weft_function_t *fns;
    size_t n_fns;
    weft_trigger_t *trigs;
    size_t n_trigs;
    weft_saga_ref_t *sagas;
    size_t n_sagas;
    int refs;
} weft_catalog_t;

/* Loads the enabled triggers and the functions they use. pg is a PGconn *.
 * Returns NULL with errstr filled on error. The catalog starts with one
 * reference. */
weft_catalog_t *weft_catalog_load(weft_pg_conn_t *pg, char *errstr, size_t errlen);

/* Listens on pg (a PGconn *) for the notifications that the catalog
 * changed (weft_catalog, sent by the triggers on weft.functions and
 * weft.triggers): reload on each. Blocks for the statement. 0, or -1 with
 * errstr (PostgreSQL's message). */
int weft_catalog_listen(weft_pg_conn_t *pg, char *errstr, size_t errlen);

/* An empty catalog, for tests and for building one by hand. */
weft_catalog_t *weft_catalog_new(void);
/* Adds copies of fn / trig (trig->function names an added function). */
int weft_catalog_add_function(weft_catalog_t *cat, const weft_function_t *fn);
int weft_catalog_add_trigger(weft_catalog_t *cat, const weft_trigger_t *trig);
/* Adds a saga: its name and broker (the start triggers and the step
 * triggers are added with weft_catalog_add_trigger). */
int weft_catalog_add_saga(weft_catalog_t *cat, const char *name, weft_broker_t broker);
const weft_saga_ref_t *weft_catalog_saga(const weft_catalog_t *cat, const char *name);
/* Resolves trigger->fn pointers; call after the last add. */
int weft_catalog_link(weft_catalog_t *cat, char *errstr, size_t errlen);

void weft_catalog_ref(weft_catalog_t *cat);
void weft_catalog_unref(weft_catalog_t *cat);

/* Adds a filter to the last added trigger (for tests and the loader). */
int weft_catalog_add_filter(weft_catalog_t *cat, const char *trigger, const char *attribute,
                            weft_filter_op_t op, const char *value);
/* Parses "kafka" / "jetstream" / "nats"; returns -1 for anything else. */
int weft_broker_parse(const char *s, weft_broker_t *out);
const char *weft_broker_name(weft_broker_t b);

/* Triggers on topic regardless of type (for messages that cannot be
 * decoded: each of them dead-letters the message). */
size_t weft_catalog_on_topic(const weft_catalog_t *cat, weft_broker_t broker, const char *topic,
                             const weft_trigger_t **out, size_t max);

/* Distinct source topics of a broker, for the subscription. Returns the
 * count; out receives pointers into the catalog. */
size_t weft_catalog_topics(const weft_catalog_t *cat, weft_broker_t broker, const char **out,
                           size_t max);

const weft_function_t *weft_catalog_function(const weft_catalog_t *cat, const char *name);

/* ---- the listing `weft triggers` prints -------------------------------- */

/* One trigger as the listing shows it: every trigger, enabled or not,
 * with its filters in one line ("*" for none) and its sinks with a
 * "BROKER://" prefix when they are on another broker than the source. */
typedef struct weft_trigger_row {
    const char *name, *source, *topic, *filter;
    const char *function; /* or "saga NAME" */
    const char *runtime;  /* "" for a saga */
    const char *pool_mode, *pool_size, *max_workers;
    const char *results; /* "" when results are not emitted */
    const char *dead_letters, *ordering, *max_attempts;
    int enabled;
} weft_trigger_row_t;

typedef struct weft_trigger_list {
    weft_trigger_row_t *rows;
    size_t n;
    weft_pg_result_t *res; /* holds the strings */
} weft_trigger_list_t;

/* The triggers on topic (NULL: every topic) of source ("kafka", ...;
 * NULL: every broker), by source, topic and name. 0, or -1 with errstr
 * (PostgreSQL's message). */
int weft_catalog_list(weft_pg_conn_t *pg, const char *topic, const char *source,
                      weft_trigger_list_t *out, char *errstr, size_t errlen);
void weft_trigger_list_free(weft_trigger_list_t *l);
/* 1 when weft.triggers has a trigger of that name (enabled or not), 0
 * when not, -1 when the query failed. */
int weft_catalog_trigger_exists(weft_pg_conn_t *pg, const char *name);
/* The same triggers as one JSON array (every column of the trigger and
 * its function's pool); a new string, or NULL with errstr. */
char *weft_catalog_list_json(weft_pg_conn_t *pg, const char *topic, const char *source,
                             char *errstr, size_t errlen);

#endif
