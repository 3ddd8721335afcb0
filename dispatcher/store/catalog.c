/*
 * catalog.c - loading and matching of the trigger catalog.
 *
 * Runs on the dispatcher loop thread (and in CLI commands). The dispatcher
 * reads validated rows, never SQL text: the catalog tables' CHECK
 * constraints and enums are the validation, and only parameterless SELECTs
 * are issued here.
 */
#include "catalog.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "pgconn.h"

int weft_filter_op_parse(const char *s, weft_filter_op_t *op)
{
    if (strcmp(s, "exact") == 0)
        *op = WEFT_FILTER_EXACT;
    else if (strcmp(s, "prefix") == 0)
        *op = WEFT_FILTER_PREFIX;
    else if (strcmp(s, "suffix") == 0)
        *op = WEFT_FILTER_SUFFIX;
    else
        return -1;
    return 0;
}

int weft_catalog_listen(weft_pg_conn_t *pg, char *errstr, size_t errlen)
{
    PGresult *r = PQexec(pg, "LISTEN weft_catalog");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(errstr, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
    PQclear(r);
    return ok ? 0 : -1;
}

weft_catalog_t *weft_catalog_new(void)
{
    weft_catalog_t *cat = calloc(1, sizeof(*cat));
    if (cat)
        cat->refs = 1;
    return cat;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Every field of a function is part of its pool's configuration, so every
 * one of them is in the version: a change to any of them restarts the pool
 * (it drains, a new one starts). Strings are length-prefixed so that no two
 * different functions hash alike. */
static void function_version(weft_function_t *fn)
{
    size_t cap = 1024, len = 0;
    for (size_t i = 0; i < fn->n_env; i++)
        cap += strlen(fn->env[i]) + 16;
    const char *strs[] = {fn->runtime,
                          fn->entry,
                          fn->symbol,
                          fn->pool_mode ? fn->pool_mode : "static",
                          fn->run_as_user ? fn->run_as_user : "",
                          fn->run_as_group ? fn->run_as_group : ""};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        cap += strlen(strs[i]) + 16;
    char *buf = malloc(cap);
    if (!buf) {
        memset(fn->version, '0', 64);
        fn->version[64] = '\0';
        return;
    }
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
        len += (size_t)snprintf(buf + len, cap - len, "%zu:%s|", strlen(strs[i]), strs[i]);
    len += (size_t)snprintf(buf + len, cap - len, "%d|%d|%d|%d|%d|%d|%d|%d|%d|%d|%d|%d|%d|%d|%zu|%d|",
                            fn->timeout_ms, fn->memory_mb, fn->pool_size, fn->max_result_bytes,
                            fn->max_concurrency, fn->min_spare, fn->max_spare, fn->max_spawn_rate,
                            fn->idle_timeout_ms, fn->max_requests, fn->crash_storm_count,
                            fn->crash_storm_window_ms, fn->quarantine_ms, fn->run_as_user != NULL,
                            fn->n_env, fn->pipeline_depth);
    for (size_t i = 0; i < fn->n_env; i++)
        len += (size_t)snprintf(buf + len, cap - len, "%zu:%s|", strlen(fn->env[i]), fn->env[i]);
    weft_sha256_hex(buf, len, fn->version);
    free(buf);
}

static void function_free(weft_function_t *f)
{
    free(f->name);
    free(f->runtime);
    free(f->entry);
    free(f->symbol);
    free(f->pool_mode);
    free(f->run_as_user);
    free(f->run_as_group);
    for (size_t i = 0; f->env && i < f->n_env; i++)
        free(f->env[i]);
    free(f->env);
}

int weft_catalog_add_function(weft_catalog_t *cat, const weft_function_t *fn)
{
    weft_function_t *nv = realloc(cat->fns, (cat->n_fns + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    cat->fns = nv;
    weft_function_t *f = &cat->fns[cat->n_fns];
    *f = *fn;
    f->name = strdup(fn->name);
    f->runtime = strdup(fn->runtime ? fn->runtime : "shared_object");
    f->entry = strdup(fn->entry);
    f->symbol = strdup(fn->symbol ? fn->symbol : "weft_handle");
    f->pool_mode = strdup(fn->pool_mode ? fn->pool_mode : "static");
    f->run_as_user = dup_or_null(fn->run_as_user);
    f->run_as_group = dup_or_null(fn->run_as_group);
    f->env = fn->n_env ? calloc(fn->n_env, sizeof(char *)) : NULL;
    int env_ok = !fn->n_env || f->env;
    for (size_t i = 0; env_ok && i < fn->n_env; i++)
        env_ok = (f->env[i] = strdup(fn->env[i])) != NULL;
    cat->n_fns++; /* from here on, whatever was copied is freed with the catalog */
    if (!f->name || !f->runtime || !f->entry || !f->symbol || !f->pool_mode || !env_ok ||
        (fn->run_as_user && !f->run_as_user) || (fn->run_as_group && !f->run_as_group))
        return -1;
    function_version(f);
    return 0;
}

int weft_catalog_add_trigger(weft_catalog_t *cat, const weft_trigger_t *trig)
{
    weft_trigger_t *nv = realloc(cat->trigs, (cat->n_trigs + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    cat->trigs = nv;
    weft_trigger_t *t = &cat->trigs[cat->n_trigs];
    *t = *trig;
    t->name = strdup(trig->name);
    t->topic = strdup(trig->topic);
    t->function = strdup(trig->function ? trig->function : "");
    t->saga = dup_or_null(trig->saga);
    t->step_saga = dup_or_null(trig->step_saga);
    t->event_type = dup_or_null(trig->event_type);
    t->result_topic = dup_or_null(trig->result_topic);
    t->result_type = dup_or_null(trig->result_type);
    t->stream = dup_or_null(trig->stream);
    t->durable = dup_or_null(trig->durable);
    if (trig->dead_letter_topic) {
        t->dead_letter_topic = strdup(trig->dead_letter_topic);
    } else if (asprintf(&t->dead_letter_topic, "%s.dlq", trig->topic) < 0) {
        t->dead_letter_topic = NULL;
    }
    t->fn = NULL;
    t->filters = NULL;
    t->n_filters = 0;
    t->inflight = 0;
    t->held = 0;
    if (t->backoff_multiplier < 1.0)
        t->backoff_multiplier = 2.0;
    if (t->max_inflight <= 0)
        t->max_inflight = 1000;
    cat->n_trigs++;
    if (!t->name || !t->topic || !t->function || !t->dead_letter_topic ||
        (trig->stream && !t->stream) || (trig->durable && !t->durable) ||
        (trig->saga && !t->saga) || (trig->step_saga && !t->step_saga))
        return -1;
    return 0;
}

int weft_catalog_add_saga(weft_catalog_t *cat, const char *name, weft_broker_t broker)
{
    weft_saga_ref_t *nv = realloc(cat->sagas, (cat->n_sagas + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    cat->sagas = nv;
    cat->sagas[cat->n_sagas].name = strdup(name);
    cat->sagas[cat->n_sagas].broker = broker;
    return cat->sagas[cat->n_sagas++].name ? 0 : -1;
}

const weft_saga_ref_t *weft_catalog_saga(const weft_catalog_t *cat, const char *name)
{
    for (size_t i = 0; i < cat->n_sagas; i++)
        if (strcmp(cat->sagas[i].name, name) == 0)
            return &cat->sagas[i];
    return NULL;
}

const weft_function_t *weft_catalog_function(const weft_catalog_t *cat, const char *name)
{
    for (size_t i = 0; i < cat->n_fns; i++)
        if (strcmp(cat->fns[i].name, name) == 0)
            return &cat->fns[i];
    return NULL;
}

int weft_catalog_link(weft_catalog_t *cat, char *errstr, size_t errlen)
{
    for (size_t i = 0; i < cat->n_trigs; i++) {
        weft_trigger_t *t = &cat->trigs[i];
        if (t->saga) {
            /* Starts a saga: no function of its own. */
            const weft_saga_ref_t *sg = weft_catalog_saga(cat, t->saga);
            if (!sg) {
                snprintf(errstr, errlen, "trigger %s starts unknown or disabled saga %s",
                         t->name, t->saga);
                return -1;
            }
            t->saga_broker = sg->broker;
            t->fn = NULL;
            continue;
        }
        t->fn = (weft_function_t *)weft_catalog_function(cat, t->function);
        if (!t->fn) {
            snprintf(errstr, errlen, "trigger %s names unknown function %s", t->name,
                     t->function);
            return -1;
        }
    }
    return 0;
}

void weft_catalog_ref(weft_catalog_t *cat)
{
    cat->refs++;
}

void weft_catalog_unref(weft_catalog_t *cat)
{
    if (!cat || --cat->refs > 0)
        return;
    for (size_t i = 0; i < cat->n_fns; i++)
        function_free(&cat->fns[i]);
    for (size_t i = 0; i < cat->n_trigs; i++) {
        weft_trigger_t *t = &cat->trigs[i];
        free(t->name);
        free(t->topic);
        free(t->function);
        free(t->event_type);
        free(t->result_topic);
        free(t->result_type);
        free(t->dead_letter_topic);
        free(t->stream);
        free(t->durable);
        free(t->saga);
        free(t->step_saga);
        for (size_t k = 0; k < t->n_filters; k++) {
            free(t->filters[k].attribute);
            free(t->filters[k].value);
        }
        free(t->filters);
    }
    for (size_t i = 0; i < cat->n_sagas; i++)
        free(cat->sagas[i].name);
    free(cat->sagas);
    free(cat->fns);
    free(cat->trigs);
    free(cat);
}

static const char *val(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

int weft_broker_parse(const char *s, weft_broker_t *out)
{
    if (strcmp(s, "kafka") == 0)
        *out = WEFT_BROKER_KAFKA;
    else if (strcmp(s, "jetstream") == 0)
        *out = WEFT_BROKER_JETSTREAM;
    else if (strcmp(s, "nats") == 0)
        *out = WEFT_BROKER_NATS;
    else
        return -1;
    return 0;
}

const char *weft_broker_name(weft_broker_t b)
{
    switch (b) {
    case WEFT_BROKER_JETSTREAM:
        return "jetstream";
    case WEFT_BROKER_NATS:
        return "nats";
    case WEFT_BROKER_KAFKA:
    default:
        return "kafka";
    }
}

static weft_broker_t broker_parse(const char *s)
{
    weft_broker_t b = WEFT_BROKER_KAFKA;
    weft_broker_parse(s, &b);
    return b;
}

/* Parses PostgreSQL's text form of a one-dimensional text[] ({a,"b c"}):
 * elements are quoted when they hold special characters, with \ escaping
 * inside quotes. A NULL element is refused (the CHECK on weft.functions.env
 * forbids it anyway). Returns 0, or -1 on malformed input or ENOMEM; *out
 * is malloc()ed, each element too. */
static int parse_text_array(const char *s, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (*s++ != '{')
        return -1;
    size_t cap = 0;
    while (*s && *s != '}') {
        size_t len = strlen(s);
        char *el = malloc(len + 1), *o = el;
        if (!el)
            goto fail;
        if (*s == '"') {
            s++;
            while (*s && *s != '"') {
                if (*s == '\\' && s[1])
                    s++;
                *o++ = *s++;
            }
            if (*s++ != '"') {
                free(el);
                goto fail;
            }
        } else {
            while (*s && *s != ',' && *s != '}')
                *o++ = *s++;
            if (o - el == 4 && strncmp(el, "NULL", 4) == 0) {
                free(el);
                goto fail;
            }
        }
        *o = '\0';
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **nv = realloc(*out, cap * sizeof(*nv));
            if (!nv) {
                free(el);
                goto fail;
            }
            *out = nv;
        }
        (*out)[(*n)++] = el;
        if (*s == ',')
            s++;
    }
    if (*s != '}')
        goto fail;
    return 0;
fail:
    for (size_t i = 0; i < *n; i++)
        free((*out)[i]);
    free(*out);
    *out = NULL;
    *n = 0;
    return -1;
}

/* The step triggers of every enabled saga: one per step ("do") and one
 * per compensation ("compensate"), on the saga's step topic. */
static int load_saga_steps(PGconn *pg, weft_catalog_t *cat, char *errstr, size_t errlen)
{
    PGresult *r = PQexec(pg, "SELECT g.name, g.broker, g.stream, g.step_topic,"
                             " g.dead_letter_topic, s.position, s.function,"
                             " coalesce(s.compensation, ''), s.max_attempts,"
                             " s.backoff_initial_ms, s.backoff_max_ms"
                             " FROM weft.sagas g JOIN weft.saga_steps s ON s.saga = g.name"
                             " WHERE g.enabled ORDER BY g.name, s.position");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "loading saga steps: %s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        const char *saga = PQgetvalue(r, i, 0);
        for (int phase = 0; phase < 2; phase++) {
            const char *fn = PQgetvalue(r, i, phase ? 7 : 6);
            if (!*fn)
                continue; /* no compensation */
            char name[160], durable[200], step[16];
            snprintf(step, sizeof(step), "%s", PQgetvalue(r, i, 5));
            snprintf(name, sizeof(name), "saga:%s:%s:%s", saga, step, phase ? "compensate" : "do");
            /* JetStream durable names allow [A-Za-z0-9_-] only. */
            snprintf(durable, sizeof(durable), "weft_saga_%s_%s_%s", saga, step,
                     phase ? "compensate" : "do");
            for (char *c = durable; *c; c++)
                if (*c == '.')
                    *c = '_';
            weft_broker_t broker = broker_parse(PQgetvalue(r, i, 1));
            weft_trigger_t t = {
                .name = name,
                .broker = broker,
                .topic = PQgetvalue(r, i, 3),
                .function = (char *)fn,
                .dead_letter_topic = PQgetvalue(r, i, 4),
                .result_broker = broker,
                .dead_letter_broker = broker,
                .stream = (char *)val(r, i, 2),
                .durable = broker == WEFT_BROKER_JETSTREAM ? durable : NULL,
                .ack_wait_ms = 30000,
                .max_attempts = atoi(PQgetvalue(r, i, 8)),
                .backoff_initial_ms = atoi(PQgetvalue(r, i, 9)),
                .backoff_max_ms = atoi(PQgetvalue(r, i, 10)),
                .backoff_multiplier = 2.0,
                .backoff_jitter = 0.5,
                .max_inflight = 1000,
                .step_saga = (char *)saga,
                .step = atoi(step),
                .compensate = phase,
                .saga_broker = broker,
            };
            if (weft_catalog_add_trigger(cat, &t) != 0 ||
                weft_catalog_add_filter(cat, name, "weftsaga", WEFT_FILTER_EXACT, saga) != 0 ||
                weft_catalog_add_filter(cat, name, "weftstep", WEFT_FILTER_EXACT, step) != 0 ||
                weft_catalog_add_filter(cat, name, "weftphase", WEFT_FILTER_EXACT,
                                        phase ? "compensate" : "do") != 0) {
                snprintf(errstr, errlen, "out of memory");
                PQclear(r);
                return -1;
            }
        }
    }
    PQclear(r);
    return 0;
}

weft_catalog_t *weft_catalog_load(weft_pg_conn_t *pg, char *errstr, size_t errlen)
{
    weft_catalog_t *cat = weft_catalog_new();
    if (!cat) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    PGresult *r = PQexec(pg, "SELECT f.name, f.runtime, f.entry, f.symbol, f.timeout_ms,"
                             " f.memory_mb, f.pool_size, f.max_result_bytes,"
                             " f.pool_mode, coalesce(f.max_concurrency, 0), f.min_spare,"
                             " f.max_spare, f.max_spawn_rate, f.idle_timeout_ms,"
                             " f.max_requests, f.crash_storm_count, f.crash_storm_window_ms,"
                             " f.quarantine_ms, f.env, f.run_as_user, f.run_as_group,"
                             " f.pipeline_depth"
                             " FROM weft.functions f"
                             " WHERE EXISTS (SELECT 1 FROM weft.triggers t"
                             "               WHERE t.function = f.name AND t.enabled)"
                             "    OR EXISTS (SELECT 1 FROM weft.saga_steps s"
                             "               JOIN weft.sagas g ON g.name = s.saga AND g.enabled"
                             "               WHERE f.name IN (s.function, s.compensation))"
                             " ORDER BY f.name");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "loading functions: %s", PQresultErrorMessage(r));
        goto fail;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        weft_function_t fn = {
            .name = PQgetvalue(r, i, 0),
            .runtime = PQgetvalue(r, i, 1),
            .entry = PQgetvalue(r, i, 2),
            .symbol = PQgetvalue(r, i, 3),
            .timeout_ms = atoi(PQgetvalue(r, i, 4)),
            .memory_mb = atoi(PQgetvalue(r, i, 5)),
            .pool_size = atoi(PQgetvalue(r, i, 6)),
            .max_result_bytes = atoi(PQgetvalue(r, i, 7)),
            .pool_mode = PQgetvalue(r, i, 8),
            .max_concurrency = atoi(PQgetvalue(r, i, 9)),
            .min_spare = atoi(PQgetvalue(r, i, 10)),
            .max_spare = atoi(PQgetvalue(r, i, 11)),
            .max_spawn_rate = atoi(PQgetvalue(r, i, 12)),
            .idle_timeout_ms = atoi(PQgetvalue(r, i, 13)),
            .max_requests = atoi(PQgetvalue(r, i, 14)),
            .crash_storm_count = atoi(PQgetvalue(r, i, 15)),
            .crash_storm_window_ms = atoi(PQgetvalue(r, i, 16)),
            .quarantine_ms = atoi(PQgetvalue(r, i, 17)),
            .run_as_user = (char *)val(r, i, 19),
            .run_as_group = (char *)val(r, i, 20),
            .pipeline_depth = atoi(PQgetvalue(r, i, 21)),
        };
        if (parse_text_array(PQgetvalue(r, i, 18), &fn.env, &fn.n_env) != 0) {
            snprintf(errstr, errlen, "function %s: cannot read its env array", fn.name);
            goto fail;
        }
        int added = weft_catalog_add_function(cat, &fn);
        for (size_t k = 0; k < fn.n_env; k++)
            free(fn.env[k]);
        free(fn.env);
        if (added != 0) {
            snprintf(errstr, errlen, "out of memory");
            goto fail;
        }
    }
    PQclear(r);
    /* Sagas first: start triggers are linked to them. */
    r = PQexec(pg, "SELECT name, broker FROM weft.sagas WHERE enabled ORDER BY name");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "loading sagas: %s", PQresultErrorMessage(r));
        goto fail;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        if (weft_catalog_add_saga(cat, PQgetvalue(r, i, 0), broker_parse(PQgetvalue(r, i, 1))) !=
            0) {
            snprintf(errstr, errlen, "out of memory");
            goto fail;
        }
    }
    PQclear(r);
    r = PQexec(pg, "SELECT name, source, topic, event_type, coalesce(function, ''), result_topic,"
                   " result_type, dead_letter_topic, max_attempts, backoff_initial_ms,"
                   " backoff_max_ms, backoff_multiplier, backoff_jitter,"
                   " coalesce(max_event_age_ms, 0), ordering, max_inflight,"
                   " coalesce(result_broker, source), coalesce(dead_letter_broker, source),"
                   " stream, durable, ack_wait_ms, saga"
                   " FROM weft.triggers t WHERE enabled"
                   "   AND (saga IS NULL OR EXISTS (SELECT 1 FROM weft.sagas g"
                   "                                WHERE g.name = t.saga AND g.enabled))"
                   " ORDER BY name");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "loading triggers: %s", PQresultErrorMessage(r));
        goto fail;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        weft_trigger_t t = {
            .name = PQgetvalue(r, i, 0),
            .broker = broker_parse(PQgetvalue(r, i, 1)),
            .topic = PQgetvalue(r, i, 2),
            .event_type = (char *)val(r, i, 3),
            .function = PQgetvalue(r, i, 4),
            .result_topic = (char *)val(r, i, 5),
            .result_type = (char *)val(r, i, 6),
            .dead_letter_topic = (char *)val(r, i, 7),
            .max_attempts = atoi(PQgetvalue(r, i, 8)),
            .backoff_initial_ms = atoi(PQgetvalue(r, i, 9)),
            .backoff_max_ms = atoi(PQgetvalue(r, i, 10)),
            .backoff_multiplier = atof(PQgetvalue(r, i, 11)),
            .backoff_jitter = atof(PQgetvalue(r, i, 12)),
            .max_event_age_ms = atoll(PQgetvalue(r, i, 13)),
            .ordered = strcmp(PQgetvalue(r, i, 14), "ordered") == 0,
            .max_inflight = atoi(PQgetvalue(r, i, 15)),
            .result_broker = broker_parse(PQgetvalue(r, i, 16)),
            .dead_letter_broker = broker_parse(PQgetvalue(r, i, 17)),
            .stream = (char *)val(r, i, 18),
            .durable = (char *)val(r, i, 19),
            .ack_wait_ms = atoi(PQgetvalue(r, i, 20)),
            .saga = (char *)val(r, i, 21),
        };
        if (weft_catalog_add_trigger(cat, &t) != 0) {
            snprintf(errstr, errlen, "out of memory");
            goto fail;
        }
    }
    PQclear(r);
    r = NULL;
    if (load_saga_steps(pg, cat, errstr, errlen) != 0)
        goto fail;
    r = PQexec(pg, "SELECT f.trigger, f.attribute, f.op, f.value FROM weft.trigger_filters f"
                   " JOIN weft.triggers t ON t.name = f.trigger AND t.enabled"
                   " ORDER BY f.trigger, f.attribute, f.op, f.value");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "loading trigger filters: %s", PQresultErrorMessage(r));
        goto fail;
    }
    for (int i = 0; i < PQntuples(r); i++) {
        weft_filter_op_t op;
        if (weft_filter_op_parse(PQgetvalue(r, i, 2), &op) != 0 ||
            weft_catalog_add_filter(cat, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), op,
                                    PQgetvalue(r, i, 3)) != 0) {
            snprintf(errstr, errlen, "loading trigger filters: bad filter for %s",
                     PQgetvalue(r, i, 0));
            goto fail;
        }
    }
    PQclear(r);
    if (weft_catalog_link(cat, errstr, errlen) != 0) {
        weft_catalog_unref(cat);
        return NULL;
    }
    return cat;
fail:
    PQclear(r);
    weft_catalog_unref(cat);
    return NULL;
}

int weft_catalog_add_filter(weft_catalog_t *cat, const char *trigger, const char *attribute,
                            weft_filter_op_t op, const char *value)
{
    weft_trigger_t *t = NULL;
    for (size_t i = 0; i < cat->n_trigs; i++)
        if (strcmp(cat->trigs[i].name, trigger) == 0)
            t = &cat->trigs[i];
    if (!t)
        return -1;
    weft_filter_t *nv = realloc(t->filters, (t->n_filters + 1) * sizeof(*nv));
    if (!nv)
        return -1;
    t->filters = nv;
    weft_filter_t *f = &t->filters[t->n_filters];
    f->attribute = strdup(attribute);
    f->value = strdup(value);
    f->op = op;
    if (!f->attribute || !f->value) {
        free(f->attribute);
        free(f->value);
        return -1;
    }
    t->n_filters++;
    return 0;
}

size_t weft_catalog_on_topic(const weft_catalog_t *cat, weft_broker_t broker, const char *topic,
                             const weft_trigger_t **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < cat->n_trigs && n < max; i++)
        if (cat->trigs[i].broker == broker && strcmp(cat->trigs[i].topic, topic) == 0)
            out[n++] = &cat->trigs[i];
    return n;
}

size_t weft_catalog_topics(const weft_catalog_t *cat, weft_broker_t broker, const char **out,
                           size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < cat->n_trigs; i++) {
        const weft_trigger_t *t = &cat->trigs[i];
        if (t->broker != broker)
            continue;
        int seen = 0;
        for (size_t j = 0; j < n; j++)
            if (strcmp(out[j], t->topic) == 0)
                seen = 1;
        if (!seen && n < max)
            out[n++] = t->topic;
    }
    return n;
}

/* ---- the listing `weft triggers` prints -------------------------------- */

/* "BROKER://" before a result or dead-letter topic on another broker than
 * the trigger's source (columns result_broker / dead_letter_broker, read
 * through to_jsonb so this works with and without them), else "". */
#define SINK(col)                                                                                  \
    "CASE WHEN coalesce(to_jsonb(t)->>'" col "_broker', t.source::text) <> t.source::text"         \
    " THEN (to_jsonb(t)->>'" col "_broker') || '://' ELSE '' END"

#define TRIGGERS_SQL                                                                               \
    "SELECT t.name, t.source::text, t.topic,"                                                      \
    "       coalesce(nullif(concat_ws(' AND ',"                                                    \
    "           CASE WHEN t.event_type IS NOT NULL THEN 'type=' || t.event_type END,"              \
    "           (SELECT string_agg(fl.attribute || CASE fl.op WHEN 'exact' THEN '='"               \
    "                   WHEN 'prefix' THEN '^=' ELSE '$=' END || fl.value, ' AND '"                \
    "                   ORDER BY fl.attribute, fl.op, fl.value)"                                   \
    "              FROM weft.trigger_filters fl WHERE fl.trigger = t.name)), ''), '*'),"           \
    "       coalesce(t.function, 'saga ' || t.saga), coalesce(f.runtime::text, ''),"               \
    "       f.pool_mode, f.pool_size,"                                                             \
    "       coalesce(f.max_concurrency, f.pool_size),"                                             \
    "       coalesce(" SINK(                                                                       \
        "result") " || t.result_topic, ''),"                                                       \
                  "       " SINK(                                                                  \
                      "dead_letter") " || coalesce(t.dead_letter_topic, t.topic || '.dlq'),"       \
                                     "       t.ordering, t.max_attempts, t.enabled, "              \
                                     "coalesce(t.result_type, '')"                                 \
                                     "  FROM weft.triggers t LEFT JOIN weft.functions f"           \
                                     "    ON f.name = t.function"                                  \
                                     " WHERE ($1::text IS NULL OR t.topic = $1)"                   \
                                     "   AND ($2::text IS NULL OR t.source::text = $2)"            \
                                     " ORDER BY t.source, t.topic, t.name"

#define TRIGGERS_JSON_SQL                                                                          \
    "SELECT coalesce(json_agg(json_build_object("                                                  \
    "  'name', t.name, 'source', t.source, 'topic', t.topic, 'event_type', t.event_type,"          \
    "  'filters', (SELECT coalesce(json_agg(json_build_object('attribute', fl.attribute,"          \
    "                 'op', fl.op, 'value', fl.value) ORDER BY fl.attribute, fl.op, fl.value),"    \
    "                 '[]'::json) FROM weft.trigger_filters fl WHERE fl.trigger = t.name),"        \
    "  'function', t.function, 'saga', t.saga, 'runtime', f.runtime, 'pool_mode', f.pool_mode,"    \
    "  'pool_size', f.pool_size, 'max_workers', coalesce(f.max_concurrency, f.pool_size),"         \
    "  'timeout_ms', f.timeout_ms,"                                                                \
    "  'result_topic', t.result_topic, 'result_type', t.result_type,"                              \
    "  'dead_letter_topic', coalesce(t.dead_letter_topic, t.topic || '.dlq'),"                     \
    "  'result_broker', CASE WHEN t.result_topic IS NOT NULL THEN"                                 \
    "      coalesce(to_jsonb(t)->>'result_broker', t.source::text) END,"                           \
    "  'dead_letter_broker', coalesce(to_jsonb(t)->>'dead_letter_broker', t.source::text),"        \
    "  'ordering', t.ordering, 'max_attempts', t.max_attempts, 'max_inflight', t.max_inflight,"    \
    "  'enabled', t.enabled) ORDER BY t.source, t.topic, t.name), '[]'::json)"                     \
    "  FROM weft.triggers t LEFT JOIN weft.functions f ON f.name = t.function"                     \
    " WHERE ($1::text IS NULL OR t.topic = $1)"                                                    \
    "   AND ($2::text IS NULL OR t.source::text = $2)"

int weft_catalog_list(weft_pg_conn_t *pg, const char *topic, const char *source,
                      weft_trigger_list_t *out, char *errstr, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *params[2] = {topic, source};
    PGresult *r = weft_pg_rows(pg, TRIGGERS_SQL, 2, params, 0, errstr, errlen);
    if (!r)
        return -1;
    size_t n = (size_t)PQntuples(r);
    out->rows = calloc(n + 1, sizeof(*out->rows));
    if (!out->rows) {
        snprintf(errstr, errlen, "out of memory\n");
        PQclear(r);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        weft_trigger_row_t *t = &out->rows[i];
        int row = (int)i;
        t->name = PQgetvalue(r, row, 0);
        t->source = PQgetvalue(r, row, 1);
        t->topic = PQgetvalue(r, row, 2);
        t->filter = PQgetvalue(r, row, 3);
        t->function = PQgetvalue(r, row, 4);
        t->runtime = PQgetvalue(r, row, 5);
        t->pool_mode = PQgetvalue(r, row, 6);
        t->pool_size = PQgetvalue(r, row, 7);
        t->max_workers = PQgetvalue(r, row, 8);
        t->results = PQgetvalue(r, row, 9);
        t->dead_letters = PQgetvalue(r, row, 10);
        t->ordering = PQgetvalue(r, row, 11);
        t->max_attempts = PQgetvalue(r, row, 12);
        t->enabled = *PQgetvalue(r, row, 13) == 't';
    }
    out->n = n;
    out->res = r;
    return 0;
}

void weft_trigger_list_free(weft_trigger_list_t *l)
{
    free(l->rows);
    PQclear(l->res);
    memset(l, 0, sizeof(*l));
}

char *weft_catalog_list_json(weft_pg_conn_t *pg, const char *topic, const char *source,
                             char *errstr, size_t errlen)
{
    const char *params[2] = {topic, source};
    return weft_pg_value(pg, TRIGGERS_JSON_SQL, 2, params, errstr, errlen);
}

int weft_catalog_trigger_exists(weft_pg_conn_t *pg, const char *name)
{
    const char *params[1] = {name};
    PGresult *res = PQexecParams(pg, "SELECT 1 FROM weft.triggers WHERE name = $1", 1, NULL, params,
                                 NULL, NULL, 0);
    int rc = PQresultStatus(res) != PGRES_TUPLES_OK ? -1 : PQntuples(res) == 1;
    PQclear(res);
    return rc;
}
