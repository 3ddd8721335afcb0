/*
 * status.c - the statements `weft status` runs (status.h): one pass over
 * the ledger and one over the dead letters for all triggers, the pools
 * and in-flight counts from the live dispatchers' heartbeat documents,
 * and the dispatchers' rows.
 *
 * Runs in the CLI process. Invariant: every trigger column counts events
 * (ledger rows, dead letters), never attempts; cli/CLI.md defines each.
 */
#include "status.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIVE "heartbeat_at > now() - interval '5 seconds'"

/* One pass over the ledger and one over the dead letters for all
 * triggers (the ledger's key leads with the idempotency key, 0011).
 * failed is the events with at least one failed attempt (first_failure_at),
 * however they ended; its last minute, those whose latest failure is that
 * recent. Retrying: events whose last attempt failed and that wait for (or
 * run) another. In flight: the events of the trigger that live
 * dispatchers hold, from their heartbeats. */
#define TRIGGER_SQL                                                                                \
    "WITH l AS (SELECT trigger,"                                                                   \
    "   count(*) FILTER (WHERE status = 'completed'"                                               \
    "                      AND updated_at >= now() - interval '1 minute') AS done_1m,"             \
    "   count(*) FILTER (WHERE status = 'completed') AS done,"                                     \
    "   count(*) FILTER (WHERE last_failure_at >= now() - interval '1 minute') AS failed_1m,"      \
    "   count(*) FILTER (WHERE first_failure_at IS NOT NULL) AS failed,"                           \
    "   count(*) FILTER (WHERE status = 'dropped'"                                                 \
    "                      AND updated_at >= now() - interval '1 minute') AS dropped_1m,"          \
    "   count(*) FILTER (WHERE status = 'dropped') AS dropped,"                                    \
    "   count(*) FILTER (WHERE status = 'running' AND last_error IS NOT NULL) AS retrying"         \
    "   FROM weft.ledger GROUP BY trigger),"                                                       \
    " dl AS (SELECT trigger,"                                                                      \
    "   count(*) FILTER (WHERE created_at >= now() - interval '1 minute') AS dead_1m,"             \
    "   count(*) AS dead FROM weft.dead_letters GROUP BY trigger)"                                 \
    "SELECT t.name, t.source::text, t.topic, t.enabled, t.function,"                               \
    " (SELECT coalesce(sum((d.status->'triggers'->t.name->>'inflight')::bigint), 0)"               \
    "    FROM weft.dispatchers d WHERE d." ALIVE "),"                                              \
    " coalesce(l.done_1m, 0), coalesce(l.done, 0), coalesce(l.failed_1m, 0),"                      \
    " coalesce(l.failed, 0), coalesce(dl.dead_1m, 0), coalesce(dl.dead, 0),"                       \
    " coalesce(l.dropped_1m, 0), coalesce(l.dropped, 0), coalesce(l.retrying, 0),"                 \
    " coalesce(to_jsonb(t)->>'stream', ''),"                                                       \
    " coalesce(to_jsonb(t)->>'durable', 'weft_' || replace(t.name, '.', '_'))"                     \
    "  FROM weft.triggers t LEFT JOIN l ON l.trigger = t.name"                                     \
    "  LEFT JOIN dl ON dl.trigger = t.name ORDER BY t.name"

#define POOL_SQL                                                                                   \
    "SELECT p.key, max(p.value->>'mode'),"                                                         \
    " sum((p.value->>'workers')::bigint), sum((p.value->>'max_workers')::bigint),"                 \
    " sum((p.value->>'idle')::bigint), sum((p.value->>'busy')::bigint),"                           \
    " sum((p.value->>'starting')::bigint), sum((p.value->>'stopping')::bigint),"                   \
    " sum((p.value->>'queued')::bigint), bool_or((p.value->>'quarantined')::boolean),"             \
    " sum((p.value->>'invocations')::bigint), sum((p.value->>'crashes')::bigint),"                 \
    " sum((p.value->>'timeouts')::bigint)"                                                         \
    "  FROM weft.dispatchers d, jsonb_each(d.status->'pools') p"                                   \
    " WHERE d." ALIVE " GROUP BY p.key ORDER BY p.key"

#define DISPATCHER_SQL                                                                             \
    "SELECT owner, host, pid,"                                                                     \
    " to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"                            \
    " round(extract(epoch FROM now() - heartbeat_at)::numeric, 1), " ALIVE ","                     \
    " coalesce(status->>'inflight_msgs', '0'), coalesce(status->>'waiting', '0'),"                 \
    " coalesce(status->>'paused', 'false')"                                                        \
    "  FROM weft.dispatchers ORDER BY owner"

static int fill_triggers(weft_status_t *st, PGresult *r)
{
    size_t n = (size_t)PQntuples(r);
    st->trigs = calloc(n + 1, sizeof(*st->trigs));
    if (!st->trigs)
        return -1;
    for (size_t i = 0; i < n; i++) {
        weft_status_trigger_t *t = &st->trigs[i];
        int row = (int)i;
        t->name = PQgetvalue(r, row, 0);
        t->source = PQgetvalue(r, row, 1);
        t->topic = PQgetvalue(r, row, 2);
        t->enabled = *PQgetvalue(r, row, 3) == 't';
        t->function = PQgetvalue(r, row, 4);
        t->inflight = PQgetvalue(r, row, 5);
        t->completed[0] = PQgetvalue(r, row, 6);
        t->completed[1] = PQgetvalue(r, row, 7);
        t->failed[0] = PQgetvalue(r, row, 8);
        t->failed[1] = PQgetvalue(r, row, 9);
        t->dead[0] = PQgetvalue(r, row, 10);
        t->dead[1] = PQgetvalue(r, row, 11);
        t->dropped[0] = PQgetvalue(r, row, 12);
        t->dropped[1] = PQgetvalue(r, row, 13);
        t->retrying = PQgetvalue(r, row, 14);
        t->stream = PQgetvalue(r, row, 15);
        t->durable = PQgetvalue(r, row, 16);
    }
    st->n_trigs = n;
    return 0;
}

static int fill_pools(weft_status_t *st, PGresult *r)
{
    size_t n = (size_t)PQntuples(r);
    st->pools = calloc(n + 1, sizeof(*st->pools));
    if (!st->pools)
        return -1;
    for (size_t i = 0; i < n; i++) {
        weft_status_pool_t *p = &st->pools[i];
        int row = (int)i;
        p->function = PQgetvalue(r, row, 0);
        p->mode = PQgetvalue(r, row, 1);
        p->workers = PQgetvalue(r, row, 2);
        p->max_workers = PQgetvalue(r, row, 3);
        p->idle = PQgetvalue(r, row, 4);
        p->busy = PQgetvalue(r, row, 5);
        p->starting = PQgetvalue(r, row, 6);
        p->stopping = PQgetvalue(r, row, 7);
        p->queued = PQgetvalue(r, row, 8);
        p->quarantined = *PQgetvalue(r, row, 9) == 't';
        p->invocations = PQgetvalue(r, row, 10);
        p->crashes = PQgetvalue(r, row, 11);
        p->timeouts = PQgetvalue(r, row, 12);
    }
    st->n_pools = n;
    return 0;
}

static int fill_dispatchers(weft_status_t *st, PGresult *r)
{
    size_t n = (size_t)PQntuples(r);
    st->disps = calloc(n + 1, sizeof(*st->disps));
    if (!st->disps)
        return -1;
    for (size_t i = 0; i < n; i++) {
        weft_status_dispatcher_t *w = &st->disps[i];
        int row = (int)i;
        w->owner = PQgetvalue(r, row, 0);
        w->host = PQgetvalue(r, row, 1);
        w->pid = PQgetvalue(r, row, 2);
        w->started_at = PQgetvalue(r, row, 3);
        w->heartbeat_age_s = PQgetvalue(r, row, 4);
        w->alive = *PQgetvalue(r, row, 5) == 't';
        w->inflight_msgs = PQgetvalue(r, row, 6);
        w->waiting = PQgetvalue(r, row, 7);
        w->paused = strcmp(PQgetvalue(r, row, 8), "true") == 0;
    }
    st->n_disps = n;
    return 0;
}

int weft_status_read(weft_pg_conn_t *pg, weft_status_t *st, char *errstr, size_t errlen)
{
    memset(st, 0, sizeof(*st));
    static const char *const sql[3] = {TRIGGER_SQL, POOL_SQL, DISPATCHER_SQL};
    int rc = 0;
    size_t off = 0;
    if (errlen)
        errstr[0] = '\0';
    /* All three run whatever one says, and each failure is reported, as
     * the command always did. */
    for (int i = 0; i < 3; i++) {
        st->res[i] = PQexec(pg, sql[i]);
        if (PQresultStatus(st->res[i]) != PGRES_TUPLES_OK) {
            int w = snprintf(errstr + off, errlen > off ? errlen - off : 0, "%s%s",
                             off ? "weft status: " : "", PQresultErrorMessage(st->res[i]));
            if (w > 0)
                off += (size_t)w < errlen - off ? (size_t)w : errlen - off - 1;
            rc = -1;
        }
    }
    if (rc == 0 && (fill_triggers(st, st->res[0]) != 0 || fill_pools(st, st->res[1]) != 0 ||
                    fill_dispatchers(st, st->res[2]) != 0)) {
        snprintf(errstr, errlen, "out of memory\n");
        rc = -1;
    }
    if (rc != 0)
        weft_status_free(st);
    return rc;
}

void weft_status_free(weft_status_t *st)
{
    free(st->trigs);
    free(st->pools);
    free(st->disps);
    for (int i = 0; i < 3; i++)
        PQclear(st->res[i]);
    memset(st, 0, sizeof(*st));
}
