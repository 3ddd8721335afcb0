/*
 * heartbeat.h - this dispatcher's row in weft.dispatchers, which `weft
 * status` reads: who runs, where, and a JSON status document.
 */
#ifndef WEFT_HEARTBEAT_H
#define WEFT_HEARTBEAT_H

#include "pg.h"
#include <stddef.h>

/* Sends (does not wait for) the upsert of owner's row on pg (a PGconn *
 * in non-blocking use: the caller reads the result later). status_json is
 * a JSON object. 0, or -1 with errstr (PostgreSQL's message) when it could
 * not be sent. */
int weft_heartbeat_send(weft_pg_conn_t *pg, const char *owner, const char *host, int pid,
                        const char *status_json, char *errstr, size_t errlen);
/* Deletes owner's row, waiting (a clean stop; at most 2 s on a lock). */
void weft_heartbeat_remove(weft_pg_conn_t *pg, const char *owner);

#endif
