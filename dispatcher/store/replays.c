/*
 * replays.c - the statements of `weft replay` (replays.h): its rows in
 * weft.replays and weft.replay_partitions, its advisory lock, and the
 * ledger lookup that classifies a batch of events.
 *
 * Runs in the CLI process. Invariant: a position is saved with the counts
 * in one statement, so a resumed replay never counts an event twice nor
 * skips one it did not count.
 */
#include "replays.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "ledger.h"
#include "pgconn.h"

/* Fills errstr from r (or the connection) and frees r: -1. */
static int failed(PGconn *pg, PGresult *r, char *errstr, size_t errlen)
{
    snprintf(errstr, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
    PQclear(r);
    return -1;
}

int weft_replay_create(weft_pg_conn_t *pg, const char *topic, const char *trigger, int reexecute,
                       const char *request_json, const char *broker,
                       const weft_replay_part_t *parts, size_t n, long long *id, int *generation,
                       char *errstr, size_t errlen)
{
    weft_buf_t ps = {0}, starts = {0}, ends = {0};
    for (size_t i = 0; i < n; i++) {
        char p[16], s[24], e[24];
        snprintf(p, sizeof(p), "%d", (int)parts[i].partition);
        snprintf(s, sizeof(s), "%lld", (long long)parts[i].start);
        snprintf(e, sizeof(e), "%lld", (long long)parts[i].end);
        weft_pg_array_add(&ps, p, strlen(p), 0);
        weft_pg_array_add(&starts, s, strlen(s), 0);
        weft_pg_array_add(&ends, e, strlen(e), 0);
    }
    weft_buf_append(&ps, "}", 2);
    weft_buf_append(&starts, "}", 2);
    weft_buf_append(&ends, "}", 2);
    const char *params[8] = {
        topic, trigger, reexecute ? "true" : "false", request_json, ps.p, starts.p, ends.p, broker};
    PGresult *res = PQexecParams(
        pg,
        "WITH r AS (INSERT INTO weft.replays (topic, trigger, reexecute, generation, request,"
        "                                     broker)"
        "           VALUES ($1, $2, $3::boolean,"
        "                   CASE WHEN $3::boolean THEN nextval('weft.replay_generation')"
        "                        ELSE 0 END, $4::jsonb, $8::weft.broker)"
        "           RETURNING id, generation),"
        "     p AS (INSERT INTO weft.replay_partitions"
        "             (replay, partition, start_offset, end_offset, next_offset)"
        "           SELECT r.id, u.p, u.s, u.e, u.s FROM r,"
        "                  unnest($5::int[], $6::bigint[], $7::bigint[]) AS u(p, s, e))"
        " SELECT id, generation FROM r",
        8, NULL, params, NULL, NULL, 0);
    weft_buf_free(&ps);
    weft_buf_free(&starts);
    weft_buf_free(&ends);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return failed(pg, res, errstr, errlen);
    *id = atoll(PQgetvalue(res, 0, 0));
    *generation = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

int weft_replay_lock(weft_pg_conn_t *pg, long long id)
{
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%lld", id);
    const char *params[2] = {WEFT_REPLAY_LOCK_CLASS, idbuf};
    PGresult *res = PQexecParams(pg, "SELECT pg_try_advisory_lock($1::int, $2::int)", 2, NULL,
                                 params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && *PQgetvalue(res, 0, 0) == 't';
    PQclear(res);
    return ok;
}

int weft_replay_set_status(weft_pg_conn_t *pg, long long id, const char *status, const char *error,
                           char *errstr, size_t errlen)
{
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%lld", id);
    const char *params[3] = {idbuf, status, error};
    PGresult *res = PQexecParams(pg,
                                 "UPDATE weft.replays SET status = $2, error = $3,"
                                 " updated_at = now(),"
                                 " finished_at = CASE WHEN $2 = 'done' THEN now() END"
                                 " WHERE id = $1::bigint",
                                 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return failed(pg, res, errstr, errlen);
    PQclear(res);
    return 0;
}

int weft_replay_load(weft_pg_conn_t *pg, long long id, weft_replay_row_t *row)
{
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%lld", id);
    const char *params[1] = {idbuf};
    PGresult *res = PQexecParams(pg,
                                 "SELECT topic, trigger, reexecute, generation, status, read,"
                                 " published, reemit, run, dead, dropped, skipped, broker"
                                 " FROM weft.replays WHERE id = $1::bigint",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        PQclear(res);
        return 1;
    }
    memset(row, 0, sizeof(*row));
    snprintf(row->topic, sizeof(row->topic), "%s", PQgetvalue(res, 0, 0));
    snprintf(row->trigger, sizeof(row->trigger), "%s", PQgetvalue(res, 0, 1));
    row->reexecute = *PQgetvalue(res, 0, 2) == 't';
    row->generation = atoi(PQgetvalue(res, 0, 3));
    snprintf(row->status, sizeof(row->status), "%s", PQgetvalue(res, 0, 4));
    long long *cs[7] = {&row->c.read, &row->c.published, &row->c.reemit, &row->c.run,
                        &row->c.dead, &row->c.dropped,   &row->c.skipped};
    for (int i = 0; i < 7; i++)
        *cs[i] = atoll(PQgetvalue(res, 0, 5 + i));
    snprintf(row->broker, sizeof(row->broker), "%s", PQgetvalue(res, 0, 12));
    PQclear(res);
    return 0;
}

int weft_replay_load_parts(weft_pg_conn_t *pg, long long id, weft_replay_part_t **parts, size_t *n,
                           char *errstr, size_t errlen)
{
    char idbuf[24];
    snprintf(idbuf, sizeof(idbuf), "%lld", id);
    const char *params[1] = {idbuf};
    PGresult *res =
        PQexecParams(pg,
                     "SELECT partition, start_offset, end_offset, next_offset"
                     "  FROM weft.replay_partitions WHERE replay = $1::bigint ORDER BY partition",
                     1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return failed(pg, res, errstr, errlen);
    *n = (size_t)PQntuples(res);
    *parts = calloc(*n ? *n : 1, sizeof(**parts));
    for (size_t i = 0; *parts && i < *n; i++) {
        (*parts)[i].partition = atoi(PQgetvalue(res, (int)i, 0));
        (*parts)[i].start = atoll(PQgetvalue(res, (int)i, 1));
        (*parts)[i].end = atoll(PQgetvalue(res, (int)i, 2));
        (*parts)[i].next = atoll(PQgetvalue(res, (int)i, 3));
    }
    PQclear(res);
    if (!*parts) {
        snprintf(errstr, errlen, "out of memory\n");
        return -1;
    }
    return 0;
}

int weft_replay_save(weft_pg_conn_t *pg, long long id, const weft_replay_part_t *parts, size_t n,
                     const weft_replay_counts_t *c, char *errstr, size_t errlen)
{
    weft_buf_t ps = {0}, nexts = {0};
    for (size_t i = 0; i < n; i++) {
        char p[16], nx[24];
        snprintf(p, sizeof(p), "%d", (int)parts[i].partition);
        snprintf(nx, sizeof(nx), "%lld", (long long)parts[i].next);
        weft_pg_array_add(&ps, p, strlen(p), 0);
        weft_pg_array_add(&nexts, nx, strlen(nx), 0);
    }
    weft_buf_append(&ps, "}", 2);
    weft_buf_append(&nexts, "}", 2);
    char idbuf[24], v[7][24];
    snprintf(idbuf, sizeof(idbuf), "%lld", id);
    long long vals[7] = {c->read, c->published, c->reemit, c->run, c->dead, c->dropped, c->skipped};
    for (int i = 0; i < 7; i++)
        snprintf(v[i], sizeof(v[i]), "%lld", vals[i]);
    const char *params[10] = {idbuf, ps.p, nexts.p, v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    PGresult *res = PQexecParams(
        pg,
        "WITH p AS (UPDATE weft.replay_partitions rp SET next_offset = u.n"
        "             FROM unnest($2::int[], $3::bigint[]) AS u(p, n)"
        "            WHERE rp.replay = $1::bigint AND rp.partition = u.p RETURNING 1)"
        " UPDATE weft.replays SET read = $4, published = $5, reemit = $6, run = $7, dead = $8,"
        "        dropped = $9, skipped = $10, updated_at = now()"
        "  WHERE id = $1::bigint",
        10, NULL, params, NULL, NULL, 0);
    weft_buf_free(&ps);
    weft_buf_free(&nexts);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return failed(pg, res, errstr, errlen);
    PQclear(res);
    return 0;
}

#define LIST_JSON_SQL                                                                              \
    "SELECT coalesce(json_agg(json_build_object('id', r.id, 'status', r.status,"                   \
    " 'topic', r.topic, 'trigger', r.trigger, 'reexecute', r.reexecute,"                           \
    " 'generation', r.generation, 'request', r.request, 'error', r.error,"                         \
    " 'total', (SELECT coalesce(sum(end_offset - start_offset), 0) FROM"                           \
    "   weft.replay_partitions WHERE replay = r.id),"                                              \
    " 'done', (SELECT coalesce(sum(next_offset - start_offset), 0) FROM"                           \
    "   weft.replay_partitions WHERE replay = r.id),"                                              \
    " 'read', r.read, 'published', r.published, 'reemit', r.reemit, 'run', r.run,"                 \
    " 'dead', r.dead, 'dropped', r.dropped, 'skipped', r.skipped,"                                 \
    " 'created_at', r.created_at, 'updated_at', r.updated_at,"                                     \
    " 'finished_at', r.finished_at) ORDER BY r.id), '[]'::json) FROM weft.replays r"

/* A running replay whose process died holds no lock: 'stopped'. */
#define LIST_SQL                                                                                   \
    "SELECT r.id, CASE WHEN r.status = 'running' AND NOT EXISTS (SELECT 1"                         \
    "   FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = " WEFT_REPLAY_LOCK_CLASS     \
    "    AND l.objid = r.id AND l.objsubid = 2) THEN 'stopped' ELSE r.status END,"                 \
    " coalesce(r.trigger, '*'), r.topic, r.generation,"                                            \
    " (SELECT coalesce(sum(next_offset - start_offset), 0) || '/' ||"                              \
    "         coalesce(sum(end_offset - start_offset), 0)"                                         \
    "    FROM weft.replay_partitions WHERE replay = r.id),"                                        \
    " r.reemit || '/' || r.run || '/' || r.dead || '/' || r.skipped,"                              \
    " to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"                          \
    " r.request::text FROM weft.replays r ORDER BY r.id"

char *weft_replay_list_json(weft_pg_conn_t *pg, char *errstr, size_t errlen)
{
    return weft_pg_value(pg, LIST_JSON_SQL, 0, NULL, errstr, errlen);
}

int weft_replay_list(weft_pg_conn_t *pg, weft_replay_list_t *out, char *errstr, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    PGresult *res = weft_pg_rows(pg, LIST_SQL, 0, NULL, 0, errstr, errlen);
    if (!res)
        return -1;
    size_t n = (size_t)PQntuples(res);
    out->rows = calloc(n + 1, sizeof(*out->rows));
    if (!out->rows) {
        PQclear(res);
        snprintf(errstr, errlen, "out of memory\n");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < 9; c++)
            out->rows[i][c] = PQgetvalue(res, (int)i, c);
    out->n = n;
    out->res = res;
    return 0;
}

void weft_replay_list_free(weft_replay_list_t *l)
{
    free(l->rows);
    PQclear(l->res);
    memset(l, 0, sizeof(*l));
}

int weft_replay_ledger_classify(weft_pg_conn_t *pg, const char *const *triggers,
                                const int *generations, const char *const *keys, size_t n,
                                long long *completed, long long *dead, long long *dropped,
                                long long *run, char *errstr, size_t errlen)
{
    weft_buf_t t = {0}, g = {0}, k = {0};
    for (size_t i = 0; i < n; i++) {
        char gen[16];
        snprintf(gen, sizeof(gen), "%d", generations[i]);
        weft_pg_array_add(&t, triggers[i], strlen(triggers[i]), 0);
        weft_pg_array_add(&g, gen, strlen(gen), 0);
        weft_pg_array_add(&k, keys[i], strlen(keys[i]), 0);
    }
    weft_buf_append(&t, "}", 2);
    weft_buf_append(&g, "}", 2);
    weft_buf_append(&k, "}", 2);
    const char *params[3] = {t.p, g.p, k.p};
    PGresult *res = PQexecParams(
        pg,
        "SELECT coalesce(l.status::text, '') FROM unnest($1::text[], $2::int[], $3::text[])"
        "       WITH ORDINALITY AS u(t, g, k, ord)"
        "  LEFT JOIN weft.ledger l ON l.trigger = u.t AND l.generation = u.g AND l.key = u.k"
        " ORDER BY u.ord",
        3, NULL, params, NULL, NULL, 0);
    weft_buf_free(&t);
    weft_buf_free(&g);
    weft_buf_free(&k);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || (size_t)PQntuples(res) != n)
        return failed(pg, res, errstr, errlen);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *st = PQgetvalue(res, i, 0);
        if (strcmp(st, "completed") == 0)
            (*completed)++;
        else if (strcmp(st, "dead") == 0)
            (*dead)++;
        else if (strcmp(st, "dropped") == 0)
            (*dropped)++;
        else
            (*run)++;
    }
    PQclear(res);
    return 0;
}
