/*
 * heartbeat.c - the upsert of a dispatcher's row in weft.dispatchers (see
 * heartbeat.h).
 *
 * Runs in the dispatcher, on its loop thread, on the catalog connection.
 * Invariant: the statement is only sent here; the loop collects its result
 * without waiting, so a lock held on the row never holds up the loop.
 */
#include "heartbeat.h"

#include <libpq-fe.h>
#include <stdio.h>

int weft_heartbeat_send(weft_pg_conn_t *pg, const char *owner, const char *host, int pid,
                        const char *status_json, char *errstr, size_t errlen)
{
    char pids[16];
    snprintf(pids, sizeof(pids), "%d", pid);
    const char *params[4] = {owner, host, pids, status_json};
    if (!PQsendQueryParams(
            pg,
            "INSERT INTO weft.dispatchers (owner, host, pid, status) VALUES ($1, $2, "
            "$3::int, $4::jsonb) ON CONFLICT (owner) DO UPDATE SET heartbeat_at = "
            "now(), status = EXCLUDED.status",
            4, NULL, params, NULL, NULL, 0)) {
        snprintf(errstr, errlen, "%s", PQerrorMessage(pg));
        return -1;
    }
    return 0;
}

/* At a clean stop the row goes at once, so that `weft status` does not
 * show a stopped dispatcher as alive for the next seconds. A lock on the
 * row must not hold up the exit: the statement waits at most 2 s. */
void weft_heartbeat_remove(weft_pg_conn_t *pg, const char *owner)
{
    PQclear(PQexec(pg, "SET lock_timeout = 2000"));
    const char *params[1] = {owner};
    PQclear(PQexecParams(pg, "DELETE FROM weft.dispatchers WHERE owner = $1", 1, NULL, params, NULL,
                         NULL, 0));
}
