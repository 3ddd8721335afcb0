/*
 * saga_admin.h - what `weft sagas list|show` reads: saga instances, one
 * instance with its step runs and its events. Results are rows the
 * command prints through the accessors of pgconn.h; the columns are
 * listed here.
 */
#ifndef WEFT_SAGA_ADMIN_H
#define WEFT_SAGA_ADMIN_H

#include <stddef.h>

#include "pg.h"

/* Instances, newest first. params: saga, status, since (timestamptz
 * text), limit; each NULL for no bound but limit. Columns: id, saga,
 * status, current_step, failed_step (""), started_at, updated_at,
 * error (""), trigger. NULL with errstr on error. */
weft_pg_result_t *weft_saga_admin_list(weft_pg_conn_t *pg, const char *const params[4],
                                       char *errstr, size_t errlen);

/* Instance id (a UUID): *head (saga, status, trigger, start_key,
 * current_step, failed_step, error, started_at, finished_at, deadline_at),
 * *steps (position, name, phase, status, input, output, error, started_at,
 * finished_at) and *events (seq, at, type, step, phase, topic, id, data,
 * published, cause). 0; 1 no such instance (nothing returned); -1 with
 * errstr (what was read is returned all the same: free it). */
int weft_saga_admin_show(weft_pg_conn_t *pg, const char *id, weft_pg_result_t **head,
                         weft_pg_result_t **steps, weft_pg_result_t **events, char *errstr,
                         size_t errlen);

#endif
