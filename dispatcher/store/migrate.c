/*
 * migrate.c - applies numbered SQL files (weft's schema, then users'
 * trigger migrations) against PostgreSQL.
 *
 * Runs in the `weft migrate` CLI process. Invariants: files are applied in
 * order, each inside one transaction together with its history row, under
 * an advisory lock so concurrent `weft migrate` runs serialize; an applied
 * file whose checksum changed stops the run before anything is applied.
 */
#include "migrate.h"

#include "clock.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "hash.h"

static int read_file(const char *path, char **out, size_t *len, char *errstr, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(errstr, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        snprintf(errstr, errlen, "cannot read %s", path);
        return -1;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

int weft_migrate_name_cmp(const char *a, const char *b)
{
    unsigned long long na = strtoull(a, NULL, 10), nb = strtoull(b, NULL, 10);
    if (na != nb)
        return na < nb ? -1 : 1;
    return strcmp(a, b);
}

static int mig_cmp(const void *x, const void *y)
{
    const weft_migration_t *a = x, *b = y;
    return weft_migrate_name_cmp(a->name, b->name);
}

int weft_migrate_scan_dir(weft_migration_list_t *list, const char *dir, char *errstr,
                          size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(errstr, errlen, "cannot open migration directory %s: %s", dir, strerror(errno));
        return -1;
    }
    size_t first = list->n;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        size_t len = strlen(nm);
        if (len < 5 || strcmp(nm + len - 4, ".sql") != 0)
            continue;
        if (!isdigit((unsigned char)nm[0])) {
            snprintf(errstr, errlen,
                     "%s/%s: migration file names must start with a number (e.g. 0002_%s)",
                     dir, nm, nm);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < list->n; i++) {
            if (strcmp(list->v[i].name, nm) == 0) {
                snprintf(errstr, errlen, "%s/%s: a migration named %s is already in %s", dir,
                         nm, nm, list->v[i].path);
                rc = -1;
                break;
            }
        }
        if (rc)
            break;
        if (list->n == list->cap) {
            size_t ncap = list->cap ? list->cap * 2 : 16;
            weft_migration_t *nv = realloc(list->v, ncap * sizeof(*nv));
            if (!nv) {
                rc = -1;
                snprintf(errstr, errlen, "out of memory");
                break;
            }
            list->v = nv;
            list->cap = ncap;
        }
        weft_migration_t *m = &list->v[list->n];
        m->name = strdup(nm);
        if (asprintf(&m->path, "%s/%s", dir, nm) < 0)
            m->path = NULL;
        if (!m->name || !m->path) {
            free(m->name);
            free(m->path);
            snprintf(errstr, errlen, "out of memory");
            rc = -1;
            break;
        }
        char *body;
        size_t blen;
        if (read_file(m->path, &body, &blen, errstr, errlen) != 0) {
            free(m->name);
            free(m->path);
            rc = -1;
            break;
        }
        weft_sha256_hex(body, blen, m->checksum);
        free(body);
        list->n++;
    }
    closedir(d);
    if (rc == 0 && list->n > first)
        qsort(list->v + first, list->n - first, sizeof(weft_migration_t), mig_cmp);
    return rc;
}

void weft_migrate_list_free(weft_migration_list_t *list)
{
    for (size_t i = 0; i < list->n; i++) {
        free(list->v[i].name);
        free(list->v[i].path);
    }
    free(list->v);
    memset(list, 0, sizeof(*list));
}

static int exec_ok(PGconn *pg, const char *sql, char *errstr, size_t errlen)
{
    PGresult *r = PQexec(pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        snprintf(errstr, errlen, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static double now_ms(void)
{
    return (double)weft_clock_mono_us() / 1e3;
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
}

int weft_migrate_apply(const char *conninfo, const weft_migration_list_t *list, int dry_run,
                       char *errstr, size_t errlen)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (PQstatus(pg) != CONNECTION_OK) {
        snprintf(errstr, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(pg));
        chomp(errstr);
        PQfinish(pg);
        return -1;
    }
    int rc = -1;
    PGresult *r = NULL;
    /* Serialize concurrent runs; released when the session ends. */
    if (exec_ok(pg, "SET client_min_messages = warning", errstr, errlen) != 0 ||
        exec_ok(pg, "SELECT pg_advisory_lock(7734201)", errstr, errlen) != 0 ||
        exec_ok(pg,
                "CREATE SCHEMA IF NOT EXISTS weft;"
                "CREATE TABLE IF NOT EXISTS weft.schema_migrations ("
                " name text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())",
                errstr, errlen) != 0)
        goto out;

    r = PQexec(pg, "SELECT name, checksum FROM weft.schema_migrations");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "reading migration history: %s", PQresultErrorMessage(r));
        goto out;
    }
    int n_hist = PQntuples(r);
    char *applied = calloc(list->n ? list->n : 1, 1);
    if (!applied) {
        snprintf(errstr, errlen, "out of memory");
        goto out;
    }
    /* Refuse before changing anything when an applied file was edited. */
    int edited = 0;
    for (size_t i = 0; i < list->n; i++) {
        for (int t = 0; t < n_hist; t++) {
            if (strcmp(PQgetvalue(r, t, 0), list->v[i].name) != 0)
                continue;
            applied[i] = 1;
            if (strcmp(PQgetvalue(r, t, 1), list->v[i].checksum) != 0) {
                fprintf(stderr,
                        "weft migrate: %s was edited after it was applied "
                        "(checksum %.12s, applied %.12s)\n",
                        list->v[i].path, list->v[i].checksum, PQgetvalue(r, t, 1));
                edited++;
            }
        }
    }
    if (edited) {
        snprintf(errstr, errlen,
                 "refusing to migrate: %d applied migration%s changed; "
                 "migrations are forward-only, add a new numbered file instead",
                 edited, edited == 1 ? "" : "s");
        free(applied);
        goto out;
    }

    int done = 0;
    for (size_t i = 0; i < list->n; i++) {
        if (applied[i])
            continue;
        const weft_migration_t *m = &list->v[i];
        if (dry_run) {
            printf("would apply %s\n", m->path);
            done++;
            continue;
        }
        char *body;
        size_t blen;
        if (read_file(m->path, &body, &blen, errstr, errlen) != 0) {
            free(applied);
            goto out;
        }
        char sum[65];
        weft_sha256_hex(body, blen, sum);
        if (strcmp(sum, m->checksum) != 0) {
            snprintf(errstr, errlen, "%s changed while migrating", m->path);
            free(body);
            free(applied);
            goto out;
        }
        double t0 = now_ms();
        char err[1024];
        if (exec_ok(pg, "BEGIN", errstr, errlen) != 0) {
            free(body);
            free(applied);
            goto out;
        }
        if (exec_ok(pg, body, err, sizeof(err)) != 0) {
            chomp(err);
            snprintf(errstr, errlen, "%s failed, nothing of it was applied: %s", m->path, err);
            exec_ok(pg, "ROLLBACK", err, sizeof(err));
            free(body);
            free(applied);
            goto out;
        }
        free(body);
        const char *params[2] = {m->name, m->checksum};
        PGresult *ins = PQexecParams(
            pg, "INSERT INTO weft.schema_migrations (name, checksum) VALUES ($1, $2)", 2, NULL,
            params, NULL, NULL, 0);
        int ok = PQresultStatus(ins) == PGRES_COMMAND_OK;
        if (!ok)
            snprintf(err, sizeof(err), "%s", PQresultErrorMessage(ins));
        PQclear(ins);
        if (!ok || exec_ok(pg, "COMMIT", err, sizeof(err)) != 0) {
            chomp(err);
            snprintf(errstr, errlen, "recording %s failed: %s", m->name, err);
            exec_ok(pg, "ROLLBACK", err, sizeof(err));
            free(applied);
            goto out;
        }
        printf("applied %-40s %8.1f ms\n", m->name, now_ms() - t0);
        done++;
    }
    if (done == 0)
        printf("up to date: %zu migration%s applied\n", list->n, list->n == 1 ? "" : "s");
    free(applied);
    rc = 0;
out:
    if (r)
        PQclear(r);
    if (rc != 0)
        chomp(errstr);
    PQfinish(pg);
    return rc;
}

int weft_migrate_check(weft_pg_conn_t *pgconn, char *errstr, size_t errlen)
{
    const char *params[1] = {WEFT_SCHEMA_LATEST};
    PGresult *r =
        PQexecParams(pgconn, "SELECT count(*) FROM weft.schema_migrations WHERE name = $1", 1, NULL,
                     params, NULL, NULL, 0);
    int rc = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0))
            snprintf(errstr, errlen,
                     "weft's schema is not in this database: run `weft migrate` first");
        else
            snprintf(errstr, errlen, "cannot read weft.schema_migrations: %s",
                     PQresultErrorMessage(r));
    } else if (strcmp(PQgetvalue(r, 0, 0), "0") == 0) {
        snprintf(errstr, errlen,
                 "weft's schema in this database is older than this weft (%s is not applied): "
                 "run `weft migrate`, which applies weft's own migrations before yours",
                 WEFT_SCHEMA_LATEST);
    } else {
        rc = 0;
    }
    PQclear(r);
    return rc;
}
