/*
 * deadletters.c - the statements of `weft dlq` (deadletters.h).
 *
 * Runs in the CLI process. Invariant: a re-drive locks its dead letters
 * (FOR UPDATE SKIP LOCKED) in the transaction that marks them, so two
 * re-drives never republish the same dead letter.
 */
#include "deadletters.h"

#include "pgconn.h"

#include <libpq-fe.h>
#include <stdio.h>

weft_pg_result_t *weft_deadletters_list(weft_pg_conn_t *pg, const char *trigger,
                                        const char *interval, const char *since, const char *limit,
                                        char *errstr, size_t errlen)
{
    const char *params[4] = {trigger, interval, since, limit};
    return weft_pg_rows(
        pg,
        "SELECT id, trigger, reason, attempts, source_topic, coalesce(source_partition, -1),"
        "       coalesce(source_offset, -1),"
        "       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"
        "       coalesce(to_char(redriven_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), ''),"
        "       left(replace(replace(error, chr(10), ' '), chr(13), ' '), 60)"
        "  FROM weft.dead_letters"
        " WHERE ($1::text IS NULL OR trigger = $1)"
        "   AND ($2::interval IS NULL OR created_at >= now() - $2::interval)"
        "   AND ($3::timestamptz IS NULL OR created_at >= $3::timestamptz)"
        " ORDER BY id LIMIT $4::bigint",
        4, params, 0, errstr, errlen);
}

int weft_deadletters_show(weft_pg_conn_t *pg, const char *id, weft_pg_result_t **row,
                          weft_pg_result_t **value, char *errstr, size_t errlen)
{
    const char *params[1] = {id};
    *value = NULL;
    *row = weft_pg_rows(
        pg,
        "SELECT id, trigger, generation, key, reason, error, attempts, source_broker,"
        "       source_topic, source_partition, source_offset, dead_letter_topic,"
        "       first_failure_at, last_failure_at, created_at, redriven_at, headers::text,"
        "       encode(value, 'base64'), encode(message_key, 'escape'),"
        "       coalesce(redrive_new_key::text, ''), length(value)"
        "  FROM weft.dead_letters WHERE id = $1::bigint",
        1, params, 0, errstr, errlen);
    if (!*row)
        return -1;
    if (PQntuples(*row) == 0) {
        PQclear(*row);
        *row = NULL;
        return 1;
    }
    /* The value, binary, for display. */
    *value = weft_pg_rows(pg, "SELECT value FROM weft.dead_letters WHERE id = $1::bigint", 1,
                          params, 1, NULL, 0);
    return 0;
}

int weft_deadletters_tx(weft_pg_conn_t *pg, const char *stmt, char *errstr, size_t errlen)
{
    PGresult *r = PQexec(pg, stmt);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(errstr, errlen, "%s: %s", stmt, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

weft_pg_result_t *weft_deadletters_lock(weft_pg_conn_t *pg, const char *trigger, const char *ids,
                                        char *errstr, size_t errlen)
{
    const char *params[2] = {trigger, ids};
    return weft_pg_rows(
        pg,
        "SELECT d.id, d.trigger, d.generation, d.key, d.source_topic, d.headers::text,"
        "       d.message_key IS NOT NULL, d.source_broker::text"
        "  FROM weft.dead_letters d"
        " WHERE d.redriven_at IS NULL"
        "   AND ($1::text IS NULL OR d.trigger = $1)"
        "   AND ($2::bigint[] IS NULL OR d.id = ANY ($2::bigint[]))"
        " ORDER BY d.id FOR UPDATE SKIP LOCKED",
        2, params, 0, errstr, errlen);
}

int weft_deadletters_mark(weft_pg_conn_t *pg, const char *id, const char *trigger,
                          const char *generation, const char *key, int new_key, char *errstr,
                          size_t errlen)
{
    const char *up[5] = {id, trigger, generation, key, new_key ? "true" : "false"};
    PGresult *u = PQexecParams(
        pg,
        "WITH l AS (UPDATE weft.ledger SET status = 'running', attempts = 0, takeovers = 0,"
        "             owner = NULL,"
        "             lease_until = now() - interval '1 second', result = NULL,"
        "             updated_at = now()"
        "           WHERE NOT $5::boolean AND trigger = $2 AND generation = $3::int"
        "             AND key = $4 AND status = 'dead')"
        " UPDATE weft.dead_letters SET redriven_at = now(), redrive_new_key = $5::boolean,"
        "        redrive_topic = source_topic WHERE id = $1::bigint",
        5, NULL, up, NULL, NULL, 0);
    int ok = PQresultStatus(u) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(errstr, errlen, "%s", PQresultErrorMessage(u));
    PQclear(u);
    return ok ? 0 : -1;
}

weft_pg_result_t *weft_deadletters_message(weft_pg_conn_t *pg, const char *id)
{
    const char *vp[1] = {id};
    PGresult *v =
        weft_pg_rows(pg, "SELECT value, message_key FROM weft.dead_letters WHERE id = $1::bigint",
                     1, vp, 1, NULL, 0);
    if (v && PQntuples(v) != 1) {
        PQclear(v);
        return NULL;
    }
    return v;
}
