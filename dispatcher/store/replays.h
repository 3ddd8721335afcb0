/*
 * replays.h - the rows of `weft replay` (weft.replays, weft.replay_partitions:
 * a replay's range, its position and counts, its state) and the ledger
 * lookup a replay makes to say what the dispatcher will do with each event.
 * See cli/CLI.md "weft replay".
 */
#ifndef WEFT_REPLAYS_H
#define WEFT_REPLAYS_H

#include <stddef.h>
#include <stdint.h>

#include "pg.h"

/* The advisory lock class of a running replay (0x77656674, "weft"; objid:
 * its id), which
 * `weft replay --list` reads to tell a running replay from a dead one. */
#define WEFT_REPLAY_LOCK_CLASS "2003134068"

typedef struct weft_replay_part {
    int32_t partition; /* or 0 for a JetStream stream */
    int64_t start, end, next;
} weft_replay_part_t;

typedef struct weft_replay_counts {
    long long read, published, reemit, run, dead, dropped, skipped;
} weft_replay_counts_t;

typedef struct weft_replay_row {
    char topic[256];
    char trigger[256]; /* "" for every trigger */
    int reexecute;
    int generation;
    char status[32];
    char broker[16];
    weft_replay_counts_t c;
} weft_replay_row_t;

/* Records the replay and its partitions (next = start) and allocates its
 * ledger generation when reexecute. trigger may be NULL; request_json is
 * the range as asked. 0, or -1 with errstr (PostgreSQL's message). */
int weft_replay_create(weft_pg_conn_t *pg, const char *topic, const char *trigger, int reexecute,
                       const char *request_json, const char *broker,
                       const weft_replay_part_t *parts, size_t n, long long *id, int *generation,
                       char *errstr, size_t errlen);
/* Takes the replay's advisory lock for this session without waiting:
 * 1 taken, 0 held by another session or failed. */
int weft_replay_lock(weft_pg_conn_t *pg, long long id);
/* Sets the state ("running", "done", "interrupted", "failed"), error may
 * be NULL. 0, or -1 with errstr. */
int weft_replay_set_status(weft_pg_conn_t *pg, long long id, const char *status, const char *error,
                           char *errstr, size_t errlen);
/* Loads replay id: 0; 1 no such replay (or the query failed). */
int weft_replay_load(weft_pg_conn_t *pg, long long id, weft_replay_row_t *row);
/* Its partitions by partition: a new array in *parts. 0, or -1 with
 * errstr. */
int weft_replay_load_parts(weft_pg_conn_t *pg, long long id, weft_replay_part_t **parts, size_t *n,
                           char *errstr, size_t errlen);
/* Saves the position of every partition and the counts, in one
 * statement. 0, or -1 with errstr. */
int weft_replay_save(weft_pg_conn_t *pg, long long id, const weft_replay_part_t *parts, size_t n,
                     const weft_replay_counts_t *c, char *errstr, size_t errlen);

/* `weft replay --list`: the replays as a JSON array (a new string), or
 * as rows of nine columns (id, state, trigger, topic, generation,
 * offsets done/total, reemit/run/dead/skip, created, request). */
char *weft_replay_list_json(weft_pg_conn_t *pg, char *errstr, size_t errlen);
typedef struct weft_replay_list {
    const char *(*rows)[9];
    size_t n;
    weft_pg_result_t *res; /* holds the strings */
} weft_replay_list_t;
int weft_replay_list(weft_pg_conn_t *pg, weft_replay_list_t *out, char *errstr, size_t errlen);
void weft_replay_list_free(weft_replay_list_t *l);

/* The ledger's status of each (trigger, generation, key), in one round
 * trip, counted: completed, dead, dropped, and the rest (no row, or
 * running: the function will run). 0, or -1 with errstr. */
int weft_replay_ledger_classify(weft_pg_conn_t *pg, const char *const *triggers,
                                const int *generations, const char *const *keys, size_t n,
                                long long *completed, long long *dead, long long *dropped,
                                long long *run, char *errstr, size_t errlen);

#endif
