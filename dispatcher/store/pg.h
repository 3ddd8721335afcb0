/*
 * pg.h - the typed handles the store's functions take: libpq's own
 * connection and result types, named without including libpq-fe.h, so
 * that a caller cannot pass the wrong pointer (these were `void *`) and
 * the headers of store/ stay free of libpq.
 */
#ifndef WEFT_PG_H
#define WEFT_PG_H

typedef struct pg_conn weft_pg_conn_t;     /* libpq's PGconn */
typedef struct pg_result weft_pg_result_t; /* libpq's PGresult */

#endif
