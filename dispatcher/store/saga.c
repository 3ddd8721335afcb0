/*
 * saga.c - the saga state machine's client (see saga.h): each call is one
 * statement against the SQL functions of migrations/0007_sagas.sql.
 */
#include "saga.h"

#include "clock.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash.h"
#include "json.h"
#include "ledger.h"
#include "wire.h"

#define EVENT_COLUMNS                                                                          \
    "instance::text, seq, cause, topic, id, type, coalesce(step, 0), phase, data, content_type,"  \
    " saga"

void weft_saga_events_free(weft_saga_events_t *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++) {
        weft_saga_event_t *ev = &e->ev[i];
        free(ev->cause);
        free(ev->saga);
        free(ev->topic);
        free(ev->id);
        free(ev->type);
        free(ev->phase);
        if (ev->data)
            PQfreemem(ev->data);
        free(ev->content_type);
    }
    free(e->ev);
    e->ev = NULL;
    e->n = 0;
}

void weft_saga_instance_id(char out[37], const char *trigger, int generation, const char *key)
{
    char gen[16];
    snprintf(gen, sizeof(gen), "%d", generation);
    const char *parts[4] = {"weft-saga", trigger, gen, key};
    weft_uuid_from(out, parts, 4);
}

static char *dup_col(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

/* Appends rows [from, to) of r (EVENT_COLUMNS from column c, text
 * format) to out. */
static int collect_rows(const PGresult *r, int from, int to, int c, weft_saga_events_t *out,
                        char *errstr, size_t errlen)
{
    int rows = to - from;
    if (rows <= 0)
        return 0;
    weft_saga_event_t *grown = realloc(out->ev, (out->n + (size_t)rows) * sizeof(*grown));
    if (!grown) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    out->ev = grown;
    for (int i = from; i < to; i++) {
        weft_saga_event_t *ev = &out->ev[out->n];
        memset(ev, 0, sizeof(*ev));
        snprintf(ev->instance, sizeof(ev->instance), "%s", PQgetvalue(r, i, c));
        ev->seq = atoi(PQgetvalue(r, i, c + 1));
        ev->cause = dup_col(r, i, c + 2);
        ev->topic = dup_col(r, i, c + 3);
        ev->id = dup_col(r, i, c + 4);
        ev->type = dup_col(r, i, c + 5);
        ev->step = atoi(PQgetvalue(r, i, c + 6));
        ev->phase = dup_col(r, i, c + 7);
        if (!PQgetisnull(r, i, c + 8)) {
            ev->data =
                PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, c + 8), &ev->data_len);
            if (!ev->data) {
                out->n++;
                snprintf(errstr, errlen, "out of memory");
                return -1;
            }
        }
        ev->content_type = dup_col(r, i, c + 9);
        ev->saga = dup_col(r, i, c + 10);
        out->n++;
        if (!ev->cause || !ev->topic || !ev->id || !ev->type || !ev->saga) {
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Appends the rows of r (EVENT_COLUMNS, text format) to out. */
static int collect(const PGresult *r, weft_saga_events_t *out, char *errstr, size_t errlen)
{
    return collect_rows(r, 0, PQntuples(r), 0, out, errstr, errlen);
}

/* P0001: the state machine refused (RAISE EXCEPTION): asking again
 * gives the same answer. */
static int refused(const char *sqlstate)
{
    return sqlstate && strcmp(sqlstate, "P0001") == 0;
}

/* Runs sql with params (bytea_param: index of one binary bytea parameter,
 * or -1) and collects the events it returns. */
static int run(weft_pg_conn_t *pg, const char *what, const char *sql, int n, const char *const *params,
               const int *lengths, int bytea_param, weft_saga_events_t *out, char *errstr,
               size_t errlen)
{
    int formats[12] = {0};
    if (bytea_param >= 0)
        formats[bytea_param] = 1;
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, lengths, formats, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "%s: %s", what, PQresultErrorMessage(r));
        int rc = refused(PQresultErrorField(r, PG_DIAG_SQLSTATE)) ? -2 : -1;
        PQclear(r);
        return rc;
    }
    int rc = collect(r, out, errstr, errlen);
    PQclear(r);
    return rc;
}

int weft_saga_start(weft_pg_conn_t *pg, const char *instance, const char *saga, const char *trigger,
                    const char *key, const void *data, size_t len, const char *content_type,
                    weft_saga_events_t *out, char *errstr, size_t errlen)
{
    const char *params[6] = {instance, saga, trigger, key, data, content_type};
    int lengths[6] = {0, 0, 0, 0, (int)len, 0};
    return run(pg, "starting saga",
               "SELECT " EVENT_COLUMNS " FROM weft.saga_start($1::uuid, $2, $3, $4, $5, $6)", 6,
               params, lengths, 4, out, errstr, errlen);
}

int weft_saga_step_done(weft_pg_conn_t *pg, const weft_saga_outcome_t *o, weft_saga_events_t *out,
                        char *errstr, size_t errlen)
{
    char step[16], attempts[16];
    snprintf(step, sizeof(step), "%d", o->step);
    snprintf(attempts, sizeof(attempts), "%d", o->attempts);
    const char *params[9] = {o->instance,
                             step,
                             o->phase,
                             o->ok ? "true" : "false",
                             o->output ? o->output : NULL,
                             o->output_type,
                             o->reason,
                             o->error,
                             attempts};
    int lengths[9] = {0, 0, 0, 0, (int)o->output_len, 0, 0, 0, 0};
    return run(pg, "moving saga",
               "SELECT " EVENT_COLUMNS " FROM weft.saga_step_done($1::uuid, $2::int, $3,"
               " $4::boolean, $5, $6, $7, $8, $9::int)",
               9, params, lengths, 4, out, errstr, errlen);
}

void weft_saga_res_clear(weft_saga_res_t *r)
{
    weft_saga_events_free(&r->ev);
    free(r->error);
    memset(r, 0, sizeof(*r));
}

enum {
    B_INSTANCE,
    B_SAGA,
    B_TRIGGER,
    B_KEY,
    B_STEP,
    B_PHASE,
    B_OK,
    B_DATA,
    B_CTYPE,
    B_REASON,
    B_ERROR,
    B_ATTEMPTS,
    B_N
};

int weft_saga_batch_send(weft_pg_conn_t *pg, const weft_saga_req_t *reqs, size_t n, char *errstr,
                         size_t errlen)
{
    weft_buf_t a[B_N] = {0};
    int oom = 0;
    for (size_t i = 0; i < n && !oom; i++) {
        const weft_saga_req_t *q = &reqs[i];
        const weft_saga_outcome_t *o = &q->done;
        /* A start fills the columns of weft.saga_start, an outcome those
         * of weft.saga_step_done (data: the start's data or the output). */
        int start = q->saga != NULL;
        oom |= weft_pg_array_add_text(&a[B_INSTANCE], start ? q->instance : o->instance);
        oom |= weft_pg_array_add_text(&a[B_SAGA], q->saga);
        oom |= weft_pg_array_add_text(&a[B_TRIGGER], start ? q->trigger : NULL);
        oom |= weft_pg_array_add_text(&a[B_KEY], start ? q->key : NULL);
        oom |= start ? weft_pg_array_add(&a[B_STEP], "", 0, 1)
                     : weft_pg_array_add_int(&a[B_STEP], o->step);
        oom |= weft_pg_array_add_text(&a[B_PHASE], start ? NULL : o->phase);
        oom |= start ? weft_pg_array_add(&a[B_OK], "", 0, 1)
                     : weft_pg_array_add(&a[B_OK], o->ok ? "t" : "f", 1, 0);
        const void *data = start ? q->data : o->output;
        oom |=
            weft_pg_array_add_bytea(&a[B_DATA], data, start ? q->len : o->output_len, data == NULL);
        oom |= weft_pg_array_add_text(&a[B_CTYPE], start ? q->content_type : o->output_type);
        oom |= weft_pg_array_add_text(&a[B_REASON], start ? NULL : o->reason);
        oom |= weft_pg_array_add_text(&a[B_ERROR], start ? NULL : o->error);
        oom |= start ? weft_pg_array_add(&a[B_ATTEMPTS], "", 0, 1)
                     : weft_pg_array_add_int(&a[B_ATTEMPTS], o->attempts);
    }
    const char *params[B_N];
    for (int k = 0; k < B_N && !oom; k++) {
        oom |= weft_pg_array_close(&a[k]);
        params[k] = a[k].p;
    }
    int rc = -1;
    if (oom)
        snprintf(errstr, errlen, "out of memory");
    else if (!PQsendQueryParams(pg,
                                "SELECT * FROM weft.saga_transitions($1::uuid[], $2::text[],"
                                " $3::text[], $4::text[], $5::int[], $6::text[], $7::boolean[],"
                                " $8::bytea[], $9::text[], $10::text[], $11::text[], $12::int[])",
                                B_N, NULL, params, NULL, NULL, 0))
        snprintf(errstr, errlen, "moving sagas: %s", PQerrorMessage(pg));
    else
        rc = 0;
    for (int k = 0; k < B_N; k++)
        weft_buf_free(&a[k]);
    return rc;
}

/* Columns of weft.saga_transitions: ord, err_state, err_message, then
 * EVENT_COLUMNS. */
int weft_saga_batch_answer(const weft_pg_result_t *res, weft_saga_res_t *out, size_t n, char *errstr,
                           size_t errlen)
{
    const PGresult *r = res;
    for (size_t i = 0; i < n; i++)
        memset(&out[i], 0, sizeof(out[i]));
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "moving sagas: %s",
                 r ? PQresultErrorMessage(r) : "no answer from PostgreSQL");
        return -1;
    }
    if (PQnfields(r) != 14) {
        snprintf(errstr, errlen, "moving sagas: %d columns in the answer, not 14", PQnfields(r));
        return -1;
    }
    int rows = PQntuples(r);
    for (int at = 0; at < rows;) {
        long ord = strtol(PQgetvalue(r, at, 0), NULL, 10);
        int end = at;
        while (end < rows && strtol(PQgetvalue(r, end, 0), NULL, 10) == ord)
            end++;
        if (ord < 1 || (size_t)ord > n) {
            snprintf(errstr, errlen, "moving sagas: an answer for transition %ld of %zu", ord, n);
            goto fail;
        }
        weft_saga_res_t *o = &out[ord - 1];
        if (!PQgetisnull(r, at, 1)) {
            o->rc = refused(PQgetvalue(r, at, 1)) ? -2 : -1;
            o->error = strdup(PQgetvalue(r, at, 2));
        } else if (collect_rows(r, at, end, 3, &o->ev, errstr, errlen) != 0) {
            goto fail;
        }
        at = end;
    }
    return 0;
fail:
    for (size_t i = 0; i < n; i++)
        weft_saga_res_clear(&out[i]);
    return -1;
}

int weft_saga_expire(weft_pg_conn_t *pg, int max, weft_saga_events_t *out, char *errstr, size_t errlen)
{
    char m[16];
    snprintf(m, sizeof(m), "%d", max);
    const char *params[1] = {m};
    return run(pg, "expiring sagas", "SELECT " EVENT_COLUMNS " FROM weft.saga_expire($1::int)", 1,
               params, NULL, -1, out, errstr, errlen);
}

int weft_saga_published(weft_pg_conn_t *pg, const weft_saga_events_t *e, char *errstr, size_t errlen)
{
    if (!e || e->n == 0)
        return 0;
    /* {"(uuid,seq)",...} as two parallel arrays. */
    size_t cap = e->n * 52 + 4;
    char *ids = malloc(cap), *seqs = malloc(e->n * 12 + 4);
    if (!ids || !seqs) {
        free(ids);
        free(seqs);
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    size_t a = 0, b = 0;
    ids[a++] = '{';
    seqs[b++] = '{';
    for (size_t i = 0; i < e->n; i++) {
        a += (size_t)snprintf(ids + a, cap - a, "%s%s", i ? "," : "", e->ev[i].instance);
        b += (size_t)snprintf(seqs + b, e->n * 12 + 4 - b, "%s%d", i ? "," : "", e->ev[i].seq);
    }
    ids[a++] = '}';
    ids[a] = '\0';
    seqs[b++] = '}';
    seqs[b] = '\0';
    const char *params[2] = {ids, seqs};
    PGresult *r = PQexecParams(pg,
                               "UPDATE weft.saga_events e SET published_at = now()"
                               " FROM unnest($1::uuid[], $2::int[]) AS p(instance, seq)"
                               " WHERE e.instance = p.instance AND e.seq = p.seq"
                               "   AND e.published_at IS NULL",
                               2, NULL, params, NULL, NULL, 0);
    int rc = 0;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        snprintf(errstr, errlen, "marking saga events published: %s", PQresultErrorMessage(r));
        rc = -1;
    }
    PQclear(r);
    free(ids);
    free(seqs);
    return rc;
}

int weft_saga_unpublished(weft_pg_conn_t *pg, int age_ms, int max, weft_saga_events_t *out, char *errstr,
                          size_t errlen)
{
    char age[16], m[16];
    snprintf(age, sizeof(age), "%d", age_ms);
    snprintf(m, sizeof(m), "%d", max);
    const char *params[2] = {age, m};
    /* Only transitions that no source event would cause again. */
    return run(pg, "reading unpublished saga events",
               "SELECT " EVENT_COLUMNS " FROM weft.saga_events"
               " WHERE published_at IS NULL AND cause = 'deadline'"
               "   AND at < now() - $1::int * interval '1 millisecond'"
               " ORDER BY instance, seq LIMIT $2::int",
               2, params, NULL, -1, out, errstr, errlen);
}

size_t weft_saga_headers(const weft_saga_event_t *ev, weft_saga_hdrbuf_t *buf,
                         weft_header_t *hdrs)
{
    size_t n = 0;
    weft_clock_rfc3339_now(buf->time, sizeof(buf->time));
    snprintf(buf->source, sizeof(buf->source), "/weft/sagas/%s", ev->saga);
    snprintf(buf->step, sizeof(buf->step), "%d", ev->step);
    const weft_ce_pair_t ce[] = {
        {"specversion", "1.0"},
        {"id", ev->id},
        {"source", buf->source},
        {"type", ev->type},
        {"time", buf->time},
        {"subject", ev->instance},
        {WEFT_CE_SAGA, ev->saga},
        {WEFT_CE_INSTANCE, ev->instance},
        {WEFT_CE_STEP, ev->phase ? buf->step : NULL},
        {WEFT_CE_PHASE, ev->phase},
        {"datacontenttype", ev->content_type},
    };
    weft_ce_binary_headers(ce, sizeof(ce) / sizeof(ce[0]), hdrs, &n, WEFT_SAGA_MAX_HEADERS,
                           buf->names);
    return n;
}
