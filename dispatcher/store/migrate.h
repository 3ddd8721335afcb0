/*
 * migrate.h - `weft migrate`: numbered, forward-only SQL files applied in
 * order, each in one transaction, recorded with a checksum.
 */
#ifndef WEFT_MIGRATE_H
#define WEFT_MIGRATE_H

#include "pg.h"
#include <stddef.h>

/* The newest of weft's own migrations (migrations/): the schema this
 * build needs. `weft run` refuses a database that has not applied it
 * (weft_migrate_check). test_migrate checks that it names the newest file
 * of migrations/, so adding a migration without it fails the tests. */
#define WEFT_SCHEMA_LATEST "0014_retention.sql"

typedef struct weft_migration {
    char *name; /* file name, the identity in the history table */
    char *path;
    char checksum[65];
} weft_migration_t;

typedef struct weft_migration_list {
    weft_migration_t *v;
    size_t n, cap;
} weft_migration_list_t;

/* Adds the numbered .sql files of dir, sorted by number then name. A .sql
 * file without a leading number, or a name already in the list, is an
 * error. */
int weft_migrate_scan_dir(weft_migration_list_t *list, const char *dir, char *errstr,
                          size_t errlen);
void weft_migrate_list_free(weft_migration_list_t *list);

/* Compares two migration file names: by leading number, then bytewise. */
int weft_migrate_name_cmp(const char *a, const char *b);

/* Applies the list against conninfo. Prints what it does to stdout.
 * Returns 0, or -1 with errstr filled (nothing after the failing file is
 * applied; an edited applied file stops everything before any change). */
int weft_migrate_apply(const char *conninfo, const weft_migration_list_t *list, int dry_run,
                       char *errstr, size_t errlen);

/* 0 when the database on pg (a PGconn) has applied WEFT_SCHEMA_LATEST;
 * -1 with errstr saying what to run when it has not, or why it could not
 * tell. */
int weft_migrate_check(weft_pg_conn_t *pg, char *errstr, size_t errlen);

#endif
