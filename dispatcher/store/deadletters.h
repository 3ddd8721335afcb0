/*
 * deadletters.h - what `weft dlq list|show|redrive` reads and writes in
 * weft.dead_letters (and, on a re-drive that keeps the key, the dead
 * ledger row it resets). Results are rows the command prints through the
 * accessors of pgconn.h; the columns are listed here.
 */
#ifndef WEFT_DEADLETTERS_H
#define WEFT_DEADLETTERS_H

#include <stddef.h>

#include "pg.h"

/* Dead letters by id, at most limit. trigger, interval ("15 minutes")
 * and since (a timestamp) may be NULL. Columns: id, trigger, reason,
 * attempts, source_topic, source_partition (-1), source_offset (-1),
 * created, redriven ("" if not), error (one line, 60 characters). NULL
 * with errstr. */
weft_pg_result_t *weft_deadletters_list(weft_pg_conn_t *pg, const char *trigger,
                                        const char *interval, const char *since, const char *limit,
                                        char *errstr, size_t errlen);
/* Dead letter id: *row (id, trigger, generation, key, reason, error,
 * attempts, source_broker, source_topic, source_partition, source_offset,
 * dead_letter_topic, first_failure_at, last_failure_at, created_at,
 * redriven_at, headers, value in base64, message key, redrive_new_key,
 * length of value) and *value (one binary column: the value; NULL when it
 * could not be read). 0; 1 none with that id; -1 with errstr. */
int weft_deadletters_show(weft_pg_conn_t *pg, const char *id, weft_pg_result_t **row,
                          weft_pg_result_t **value, char *errstr, size_t errlen);

/* A re-drive runs in a transaction: begin, lock, mark each, then commit
 * (or roll back: nothing happened). 0, or -1 with errstr naming the
 * statement. */
int weft_deadletters_tx(weft_pg_conn_t *pg, const char *stmt, char *errstr, size_t errlen);
/* Locks the dead letters not re-driven yet of trigger (NULL: any) and ids
 * (a PostgreSQL bigint[] literal; NULL: any), skipping those another
 * re-drive holds. Columns: id, trigger, generation, key, source_topic,
 * headers (JSON), has a message key, source_broker. NULL with errstr. */
weft_pg_result_t *weft_deadletters_lock(weft_pg_conn_t *pg, const char *trigger, const char *ids,
                                        char *errstr, size_t errlen);
/* Marks dead letter id re-driven; unless new_key, resets its dead ledger
 * row (trigger, generation, key) so that the event runs again (lease
 * expired, attempts from zero). 0, or -1 with errstr. */
int weft_deadletters_mark(weft_pg_conn_t *pg, const char *id, const char *trigger,
                          const char *generation, const char *key, int new_key, char *errstr,
                          size_t errlen);
/* The original message of id, binary: columns value, message_key. NULL
 * when it cannot be read. */
weft_pg_result_t *weft_deadletters_message(weft_pg_conn_t *pg, const char *id);

#endif
