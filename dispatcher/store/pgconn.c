/*
 * pgconn.c - the libpq side of the connections the dispatcher's loop
 * never waits for (pgconn.h): PQconnectStart/PQconnectPoll steps, sending
 * and reading without blocking, notifications.
 *
 * Runs in the `weft run` process on its loop thread (and the result
 * accessors in the CLI). Invariant: only
 * weft_pgconn_connect and weft_pgconn_cancel wait for the server; each
 * other call is one libpq call that returns at once, so the loop glue in
 * core/ adds no round trip and no copy to the claim/record path.
 */
#include "pgconn.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

weft_pg_conn_t *weft_pgconn_connect(const char *conninfo, char *errstr, size_t errlen)
{
    PGconn *pg = PQconnectdb(conninfo);
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        snprintf(errstr, errlen, "%s", pg ? PQerrorMessage(pg) : "out of memory");
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

int weft_pgconn_start(weft_pg_conn_t **pg, const char *conninfo, char *why, size_t len)
{
    PQfinish(*pg);
    *pg = PQconnectStart(conninfo);
    if (!*pg || PQstatus(*pg) == CONNECTION_BAD) {
        snprintf(why, len, "%s", *pg ? PQerrorMessage(*pg) : "out of memory");
        return -1;
    }
    return 0;
}

int weft_pgconn_poll(weft_pg_conn_t *pg, uint32_t *events)
{
    PostgresPollingStatusType st = PQconnectPoll(pg);
    if (st == PGRES_POLLING_FAILED)
        return -1;
    if (st == PGRES_POLLING_OK)
        return 1;
    *events = st == PGRES_POLLING_WRITING ? EPOLLOUT : EPOLLIN;
    return 0;
}

void weft_pgconn_close(weft_pg_conn_t *pg)
{
    if (pg)
        PQfinish(pg);
}

int weft_pgconn_pending(const weft_pg_conn_t *pg)
{
    ConnStatusType st = PQstatus(pg);
    return pg && st != CONNECTION_OK && st != CONNECTION_BAD;
}

int weft_pgconn_ok(const weft_pg_conn_t *pg)
{
    return pg && PQstatus(pg) == CONNECTION_OK;
}

int weft_pgconn_socket(const weft_pg_conn_t *pg)
{
    return PQsocket(pg);
}

const char *weft_pgconn_error(const weft_pg_conn_t *pg)
{
    return pg ? PQerrorMessage(pg) : "out of memory";
}

/* libpq says a command is active until its last result is read, and never
 * on a lost connection. */
int weft_pgconn_in_command(const weft_pg_conn_t *pg)
{
    return PQtransactionStatus(pg) == PQTRANS_ACTIVE;
}

int weft_pgconn_nonblocking(weft_pg_conn_t *pg, char *errstr, size_t errlen)
{
    if (PQsetnonblocking(pg, 1) != 0) {
        snprintf(errstr, errlen, "%s", PQerrorMessage(pg));
        return -1;
    }
    return 0;
}

int weft_pgconn_flush(weft_pg_conn_t *pg)
{
    return PQflush(pg);
}

int weft_pgconn_read(weft_pg_conn_t *pg)
{
    return PQconsumeInput(pg) ? 0 : -1;
}

int weft_pgconn_result_ready(weft_pg_conn_t *pg)
{
    return !PQisBusy(pg);
}

weft_pg_result_t *weft_pgconn_result(weft_pg_conn_t *pg)
{
    return PQgetResult(pg);
}

void weft_pgresult_free(weft_pg_result_t *r)
{
    PQclear(r);
}

int weft_pgresult_command_ok(const weft_pg_result_t *r)
{
    return PQresultStatus(r) == PGRES_COMMAND_OK;
}

const char *weft_pgresult_error(const weft_pg_result_t *r)
{
    return PQresultErrorMessage(r);
}

int weft_pgresult_rows(const weft_pg_result_t *r)
{
    return PQntuples(r);
}

const char *weft_pgresult_value(const weft_pg_result_t *r, int row, int col)
{
    return PQgetvalue(r, row, col);
}

int weft_pgresult_isnull(const weft_pg_result_t *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

int weft_pgresult_length(const weft_pg_result_t *r, int row, int col)
{
    return PQgetlength(r, row, col);
}

/* PQunescapeBytea's buffer is libpq's (PQfreemem): copied into one the
 * caller frees with free(). */
unsigned char *weft_pgresult_bytea(const weft_pg_result_t *r, int row, int col, size_t *len)
{
    *len = 0;
    if (PQgetisnull(r, row, col))
        return NULL;
    size_t n = 0;
    unsigned char *v = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
    if (!v)
        return NULL;
    unsigned char *out = malloc(n + 1);
    if (out) {
        memcpy(out, v, n);
        out[n] = 0;
        *len = n;
    }
    PQfreemem(v);
    return out;
}

weft_pg_result_t *weft_pg_rows(weft_pg_conn_t *pg, const char *sql, int n,
                               const char *const *params, int binary, char *errstr, size_t errlen)
{
    PGresult *r = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, binary);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (errstr)
            snprintf(errstr, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(pg));
        PQclear(r);
        return NULL;
    }
    return r;
}

char *weft_pg_value(weft_pg_conn_t *pg, const char *sql, int n, const char *const *params,
                    char *errstr, size_t errlen)
{
    PGresult *r = weft_pg_rows(pg, sql, n, params, 0, errstr, errlen);
    if (!r)
        return NULL;
    char *v = strdup(PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
    PQclear(r);
    if (!v)
        snprintf(errstr, errlen, "out of memory\n");
    return v;
}

int weft_pgconn_notified(weft_pg_conn_t *pg)
{
    PGnotify *n = PQnotifies(pg);
    if (!n)
        return 0;
    PQfreemem(n);
    return 1;
}

void weft_pgconn_cancel(weft_pg_conn_t *pg)
{
    PGcancel *c = PQgetCancel(pg);
    char e[256];
    if (c) {
        PQcancel(c, e, sizeof(e));
        PQfreeCancel(c);
    }
}
