/*
 * pgconn.h - a PostgreSQL connection driven by an event loop: made without
 * waiting (start, then a poll step each time its socket is ready),
 * statements sent without waiting and their results read as they arrive,
 * notifications taken. libpq stays behind these calls; the dispatcher's
 * loop (core/pgconn.c, core/ledgerconn.c) only sees a socket and the
 * epoll events to watch it for.
 *
 * Every call is a thin step over one libpq call: nothing here waits for
 * the server except weft_pgconn_connect (start-up) and
 * weft_pgconn_cancel (shutdown), nor copies a result.
 */
#ifndef WEFT_PGCONN_H
#define WEFT_PGCONN_H

#include <stddef.h>
#include <stdint.h>

#include "pg.h"

/* Connects and waits (start-up). Returns the connection, or NULL with
 * errstr filled (the connection is closed). */
weft_pg_conn_t *weft_pgconn_connect(const char *conninfo, char *errstr, size_t errlen);
/* Closes *pg (if any) and starts making it anew without waiting: the
 * socket is to be watched for writing (EPOLLOUT) first. 0; -1 with why
 * (*pg may be left non-NULL: close it with weft_pgconn_close). */
int weft_pgconn_start(weft_pg_conn_t **pg, const char *conninfo, char *why, size_t len);
/* One step of a connection being made, once its socket is ready: 1 up;
 * 0 in progress, *events the epoll events to watch the socket for (libpq
 * may change the socket between steps: ask weft_pgconn_socket again); -1
 * failed (weft_pgconn_error says why). */
int weft_pgconn_poll(weft_pg_conn_t *pg, uint32_t *events);
/* NULL is a no-op. */
void weft_pgconn_close(weft_pg_conn_t *pg);

/* Being made: neither up nor failed (NULL: 0). */
int weft_pgconn_pending(const weft_pg_conn_t *pg);
/* Up (NULL: 0). */
int weft_pgconn_ok(const weft_pg_conn_t *pg);
int weft_pgconn_socket(const weft_pg_conn_t *pg);
/* libpq's last error text on the connection ("out of memory" for NULL). */
const char *weft_pgconn_error(const weft_pg_conn_t *pg);
/* A command is in progress: sent, its last result not read yet. */
int weft_pgconn_in_command(const weft_pg_conn_t *pg);
/* Puts the connection in non-blocking mode (statements sent without
 * waiting for the socket). 0; -1 with errstr. */
int weft_pgconn_nonblocking(weft_pg_conn_t *pg, char *errstr, size_t errlen);

/* Writes what libpq still holds: 0 all written, 1 more to write (watch
 * for EPOLLOUT), -1 failed. */
int weft_pgconn_flush(weft_pg_conn_t *pg);
/* Reads what the socket holds: 0; -1 the connection is lost. */
int weft_pgconn_read(weft_pg_conn_t *pg);
/* A result can be taken without waiting. */
int weft_pgconn_result_ready(weft_pg_conn_t *pg);
/* The next result of the command in progress, NULL when it is over. The
 * caller frees it with weft_pgresult_free. */
weft_pg_result_t *weft_pgconn_result(weft_pg_conn_t *pg);
void weft_pgresult_free(weft_pg_result_t *r);
/* 1 when the result is a success of a command without rows. */
int weft_pgresult_command_ok(const weft_pg_result_t *r);
const char *weft_pgresult_error(const weft_pg_result_t *r);
/* The rows of a query's result (for the CLI, which prints them): their
 * count, a value as text ("" for NULL), whether it is NULL, and a bytea
 * value decoded (a new buffer the caller frees; NULL for NULL or no
 * memory). */
int weft_pgresult_rows(const weft_pg_result_t *r);
const char *weft_pgresult_value(const weft_pg_result_t *r, int row, int col);
int weft_pgresult_isnull(const weft_pg_result_t *r, int row, int col);
/* The length of a value (binary results: its bytes). */
int weft_pgresult_length(const weft_pg_result_t *r, int row, int col);
unsigned char *weft_pgresult_bytea(const weft_pg_result_t *r, int row, int col, size_t *len);

/* The store's own statements that wait (the CLI, start-up): runs sql with
 * n text parameters (binary: results in binary) and returns its rows, or
 * NULL with errstr (PostgreSQL's message) when it returned none. */
weft_pg_result_t *weft_pg_rows(weft_pg_conn_t *pg, const char *sql, int n,
                               const char *const *params, int binary, char *errstr, size_t errlen);
/* The first value of sql's first row as a new string, or NULL with errstr. */
char *weft_pg_value(weft_pg_conn_t *pg, const char *sql, int n, const char *const *params,
                    char *errstr, size_t errlen);

/* Takes (and frees) one notification already read; 1 when there was one. */
int weft_pgconn_notified(weft_pg_conn_t *pg);
/* Asks the server to cancel the command in progress (waits for the
 * cancel request to be sent, not for the command). */
void weft_pgconn_cancel(weft_pg_conn_t *pg);

#endif
