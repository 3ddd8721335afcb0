/*
 * saga_admin.c - the statements of `weft sagas list|show` (saga_admin.h).
 *
 * Runs in the CLI process; reads only.
 */
#include "saga_admin.h"

#include "pgconn.h"

#include <libpq-fe.h>
#include <stdio.h>

static const char LIST_SQL[] =
    "SELECT id::text, saga, status::text, current_step, coalesce(failed_step::text, ''),"
    "  to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "  to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "  coalesce(error, ''), trigger"
    " FROM weft.saga_instances"
    " WHERE ($1::text IS NULL OR saga = $1) AND ($2::text IS NULL OR status::text = $2)"
    "   AND ($3::timestamptz IS NULL OR started_at >= $3::timestamptz)"
    " ORDER BY started_at DESC, id LIMIT $4::int";

static const char HEAD_SQL[] =
    "SELECT saga, status::text, trigger, start_key, current_step,"
    "  coalesce(failed_step::text, ''), coalesce(error, ''),"
    "  to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "  coalesce(to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "           ''),"
    "  to_char(deadline_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    " FROM weft.saga_instances WHERE id = $1::uuid";

static const char STEPS_SQL[] =
    "SELECT r.position, coalesce(st.name, ''), r.phase, r.status,"
    "  r.input, r.output, coalesce(r.error, ''),"
    "  to_char(r.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "  coalesce(to_char(r.finished_at AT TIME ZONE 'UTC',"
    "                   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), '')"
    " FROM weft.saga_step_runs r JOIN weft.saga_instances i ON i.id = r.instance"
    " LEFT JOIN weft.saga_steps st ON st.saga = i.saga AND st.position = r.position"
    " WHERE r.instance = $1::uuid ORDER BY r.started_at, r.position";

static const char EVENTS_SQL[] =
    "SELECT seq, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), type,"
    "  coalesce(step::text, ''), coalesce(phase, ''), topic, id,"
    "  data, published_at IS NOT NULL, cause"
    " FROM weft.saga_events WHERE instance = $1::uuid ORDER BY seq";

weft_pg_result_t *weft_saga_admin_list(weft_pg_conn_t *pg, const char *const params[4],
                                       char *errstr, size_t errlen)
{
    return weft_pg_rows(pg, LIST_SQL, 4, params, 0, errstr, errlen);
}

int weft_saga_admin_show(weft_pg_conn_t *pg, const char *id, weft_pg_result_t **head,
                         weft_pg_result_t **steps, weft_pg_result_t **events, char *errstr,
                         size_t errlen)
{
    const char *p1[1] = {id};
    *head = *steps = *events = NULL;
    PGresult *h = weft_pg_rows(pg, HEAD_SQL, 1, p1, 0, errstr, errlen);
    if (!h)
        return -1;
    if (PQntuples(h) == 0) {
        PQclear(h);
        return 1;
    }
    *head = h;
    *steps = PQexecParams(pg, STEPS_SQL, 1, NULL, p1, NULL, NULL, 0);
    *events = PQexecParams(pg, EVENTS_SQL, 1, NULL, p1, NULL, NULL, 0);
    if (PQresultStatus(*steps) != PGRES_TUPLES_OK || PQresultStatus(*events) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "%s",
                 PQresultStatus(*steps) != PGRES_TUPLES_OK ? PQresultErrorMessage(*steps)
                                                           : PQresultErrorMessage(*events));
        return -1;
    }
    return 0;
}
