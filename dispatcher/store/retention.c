/*
 * retention.c - the statements that delete old terminal rows (see
 * retention.h), and the retention.* settings they follow.
 *
 * Runs in the dispatcher, on the loop thread, on a connection of its own
 * that nothing else uses (core/retention.c sends a batch and reads its
 * answer without waiting), and in the CLI (`weft ledger prune`, which
 * waits).
 *
 * Invariants: every DELETE picks its rows through an index on the time
 * column in that column's order with a LIMIT (EXPLAIN shows an Index
 * Scan; tests/test_retention.c asserts it), so a batch costs the same on
 * a table of any size; a row still in progress is never picked, and the
 * DELETE checks the status again on the row it locked.
 */
#include "retention.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

/* Saga instances carry their step runs and events with them (about ten
 * rows each): a tenth of the batch keeps a statement's work alike. */
#define SAGA_BATCH_DIVISOR 10

int weft_retention_config(const weft_config_t *cfg, weft_retention_t *rt, char *errstr,
                          size_t errlen)
{
    memset(rt, 0, sizeof(*rt));
    if (weft_config_int(cfg, "retention.ledger", &rt->ledger_ms, errstr, errlen) != 0 ||
        weft_config_int(cfg, "retention.dead_letters", &rt->dead_letters_ms, errstr, errlen) != 0 ||
        weft_config_int(cfg, "retention.sagas", &rt->sagas_ms, errstr, errlen) != 0 ||
        weft_config_int(cfg, "retention.batch", &rt->batch, errstr, errlen) != 0)
        return -1;
    return 0;
}

int weft_retention_enabled(const weft_retention_t *rt)
{
    return rt->batch > 0 && (rt->ledger_ms > 0 || rt->dead_letters_ms > 0 || rt->sagas_ms > 0);
}

/* $1-$3: the retentions in ms (ledger and replays, dead letters, sagas);
 * $4-$7: the batch of each table (0 where its retention is off: LIMIT 0
 * reads nothing). The candidates are taken FOR UPDATE SKIP LOCKED in the
 * index's order; the DELETE finds them by ctid (a TID scan) or primary
 * key. Each CTE runs once, whatever the final SELECT reads. */
static const char SWEEP_SQL[] =
    "WITH l AS ("
    "  DELETE FROM weft.ledger WHERE ctid = ANY (ARRAY("
    "    SELECT ctid FROM weft.ledger"
    "     WHERE created_at < now() - $1::bigint * interval '1 millisecond'"
    "       AND updated_at < now() - $1::bigint * interval '1 millisecond'"
    "       AND status <> 'running'"
    "     ORDER BY created_at LIMIT $4::int FOR UPDATE SKIP LOCKED))"
    "    AND status <> 'running'"
    "  RETURNING 1"
    "), d AS ("
    "  DELETE FROM weft.dead_letters WHERE id = ANY (ARRAY("
    "    SELECT id FROM weft.dead_letters"
    "     WHERE created_at < now() - $2::bigint * interval '1 millisecond'"
    "     ORDER BY created_at LIMIT $5::int FOR UPDATE SKIP LOCKED))"
    "  RETURNING 1"
    "), s AS ("
    "  DELETE FROM weft.saga_instances WHERE id = ANY (ARRAY("
    "    SELECT id FROM weft.saga_instances"
    "     WHERE status IN ('completed', 'aborted')"
    "       AND finished_at < now() - $3::bigint * interval '1 millisecond'"
    "     ORDER BY finished_at LIMIT $6::int FOR UPDATE SKIP LOCKED))"
    "    AND status IN ('completed', 'aborted')"
    "  RETURNING 1"
    "), r AS ("
    "  DELETE FROM weft.replays WHERE id = ANY (ARRAY("
    "    SELECT id FROM weft.replays"
    "     WHERE status = 'done'"
    "       AND updated_at < now() - $1::bigint * interval '1 millisecond'"
    "     ORDER BY updated_at LIMIT $7::int FOR UPDATE SKIP LOCKED))"
    "    AND status = 'done'"
    "  RETURNING 1"
    ")"
    " SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM d), (SELECT count(*) FROM s),"
    "        (SELECT count(*) FROM r)";

const char *weft_retention_sweep_sql(void)
{
    return SWEEP_SQL;
}

void weft_retention_sweep_params(const weft_retention_t *rt, char vals[7][24],
                                 const char *params[7])
{
    int64_t saga_batch = rt->batch / SAGA_BATCH_DIVISOR;
    if (saga_batch < 1)
        saga_batch = 1;
    snprintf(vals[0], 24, "%lld", (long long)rt->ledger_ms);
    snprintf(vals[1], 24, "%lld", (long long)rt->dead_letters_ms);
    snprintf(vals[2], 24, "%lld", (long long)rt->sagas_ms);
    snprintf(vals[3], 24, "%lld", (long long)(rt->ledger_ms > 0 ? rt->batch : 0));
    snprintf(vals[4], 24, "%lld", (long long)(rt->dead_letters_ms > 0 ? rt->batch : 0));
    snprintf(vals[5], 24, "%lld", (long long)(rt->sagas_ms > 0 ? saga_batch : 0));
    snprintf(vals[6], 24, "%lld", (long long)(rt->ledger_ms > 0 ? saga_batch : 0));
    for (int i = 0; i < 7; i++)
        params[i] = vals[i];
}

int weft_retention_sweep_send(weft_pg_conn_t *pg, const weft_retention_t *rt, char *errstr,
                              size_t errlen)
{
    char vals[7][24];
    const char *params[7];
    weft_retention_sweep_params(rt, vals, params);
    if (!PQsendQueryParams(pg, SWEEP_SQL, 7, NULL, params, NULL, NULL, 0)) {
        snprintf(errstr, errlen, "retention sweep: %s", PQerrorMessage(pg));
        return -1;
    }
    return 0;
}

int weft_retention_sweep_result(const weft_pg_result_t *res, weft_retention_counts_t *out,
                                char *errstr, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 4) {
        snprintf(errstr, errlen, "retention sweep: %s", PQresultErrorMessage(res));
        return -1;
    }
    int64_t *v[4] = {&out->ledger, &out->dead_letters, &out->sagas, &out->replays};
    for (int i = 0; i < 4; i++)
        *v[i] = strtoll(PQgetvalue(res, 0, i), NULL, 10);
    return 0;
}

int weft_retention_sweep(weft_pg_conn_t *pg, const weft_retention_t *rt,
                         weft_retention_counts_t *out, char *errstr, size_t errlen)
{
    char vals[7][24];
    const char *params[7];
    weft_retention_sweep_params(rt, vals, params);
    PGresult *res = PQexecParams(pg, SWEEP_SQL, 7, NULL, params, NULL, NULL, 0);
    int rc = weft_retention_sweep_result(res, out, errstr, errlen);
    PQclear(res);
    return rc;
}

int weft_retention_count_ledger(weft_pg_conn_t *pg, int64_t older_ms, int64_t *terminal,
                                int64_t *running, int64_t *replays, char *errstr, size_t errlen)
{
    char ms[24];
    snprintf(ms, sizeof(ms), "%lld", (long long)older_ms);
    const char *params[1] = {ms};
    PGresult *res = PQexecParams(
        pg,
        "SELECT count(*) FILTER (WHERE status <> 'running'"
        "                          AND updated_at < now() - $1::bigint * interval '1 millisecond'),"
        "       count(*) FILTER (WHERE status = 'running'),"
        "       (SELECT count(*) FROM weft.replays WHERE status = 'done'"
        "          AND updated_at < now() - $1::bigint * interval '1 millisecond')"
        "  FROM weft.ledger WHERE created_at < now() - $1::bigint * interval '1 millisecond'",
        1, NULL, params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        *terminal = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        *running = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
        *replays = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
        rc = 0;
    } else {
        snprintf(errstr, errlen, "counting old ledger rows: %s", PQresultErrorMessage(res));
    }
    PQclear(res);
    return rc;
}

/* The lock's class: "retn" (the CLI's replays use "weft"). A batch waits
 * at most lock_timeout for a lock it cannot skip (a cascaded saga row),
 * and never runs for more than statement_timeout. */
#define RETENTION_LOCK "1919251566, 0"

int weft_retention_lock_send(weft_pg_conn_t *pg, char *errstr, size_t errlen)
{
    if (!PQsendQuery(pg, "SET application_name = 'weft retention';"
                         " SET lock_timeout = '2s'; SET statement_timeout = '60s';"
                         " SELECT pg_try_advisory_lock(" RETENTION_LOCK ")")) {
        snprintf(errstr, errlen, "retention lock: %s", PQerrorMessage(pg));
        return -1;
    }
    return 0;
}

int weft_retention_lock_result(const weft_pg_result_t *res, char *errstr, size_t errlen)
{
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        snprintf(errstr, errlen, "retention lock failed: %s", PQresultErrorMessage(res));
        return -1;
    }
    return PQgetvalue(res, 0, 0)[0] == 't';
}
