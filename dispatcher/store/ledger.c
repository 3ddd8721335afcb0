/*
 * ledger.c - claim and record batches of idempotency keys.
 *
 * Runs on the dispatcher loop thread. Each batch is one statement whose
 * parameters are arrays (unnest), so the cost is one round trip per batch,
 * never one per event. Ownership: a claim sets owner + lease_until; a
 * record only applies while the same owner still holds a running row, so a
 * dispatcher that lost its lease (it stalled, another took over) cannot
 * overwrite the outcome the new owner records.
 *
 * Counting: attempts counts runs, not claims. A claim never adds to it; the
 * record that follows a run of the function adds one (weft_record_t.ran),
 * in the same statement, so an attempt costs no extra round trip and a
 * dispatcher killed with keys claimed but not run charges them nothing.
 * A claim that takes a running key from another owner (its lease ran
 * out: that dispatcher died or stalled) adds one to takeovers instead;
 * the dispatcher bounds that count on its own (dispatcher.max_takeovers),
 * so an event that kills its dispatcher whenever it runs, and so never
 * records an attempt, still ends.
 */
#include "ledger.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "hash.h"
#include "json.h"

void weft_claim_res_clear(weft_claim_res_t *res)
{
    if (res->result)
        PQfreemem(res->result);
    free(res->result_type);
    free(res->result_id);
    free(res->last_error);
    free(res->reason);
    free(res->first_failure);
    free(res->last_failure);
    memset(res, 0, sizeof(*res));
}

int weft_pg_array_add(weft_buf_t *b, const char *s, size_t len, int is_null)
{
    /* At most: ',' or '{', two quotes, every byte escaped. */
    if (weft_buf_reserve(b, 3 + (is_null ? 4 : 2 * len)) != 0)
        return -1;
    char *o = b->p + b->len;
    *o++ = b->len == 0 ? '{' : ',';
    if (is_null) {
        memcpy(o, "NULL", 4);
        o += 4;
    } else {
        *o++ = '"';
        for (size_t i = 0; i < len; i++) {
            if (s[i] == '"' || s[i] == '\\')
                *o++ = '\\';
            *o++ = s[i];
        }
        *o++ = '"';
    }
    *o = '\0';
    b->len = (size_t)(o - b->p);
    return 0;
}

int weft_pg_array_add_bytea(weft_buf_t *b, const uint8_t *p, size_t len, int is_null)
{
    if (b->len == 0 && weft_buf_append(b, "{", 1) != 0)
        return -1;
    if (b->len > 1 && weft_buf_append(b, ",", 1) != 0)
        return -1;
    if (is_null)
        return weft_buf_append(b, "NULL", 4);
    static const char hex[] = "0123456789abcdef";
    /* "\\x" inside an array literal is the bytea hex prefix \x. */
    if (weft_buf_append(b, "\"\\\\x", 4) != 0)
        return -1;
    char chunk[512];
    size_t c = 0;
    for (size_t i = 0; i < len; i++) {
        chunk[c++] = hex[p[i] >> 4];
        chunk[c++] = hex[p[i] & 15];
        if (c == sizeof(chunk)) {
            if (weft_buf_append(b, chunk, c) != 0)
                return -1;
            c = 0;
        }
    }
    if (weft_buf_append(b, chunk, c) != 0)
        return -1;
    return weft_buf_append(b, "\"", 1);
}

int weft_pg_array_close(weft_buf_t *b)
{
    if (b->len == 0 && weft_buf_append(b, "{", 1) != 0)
        return -1;
    return weft_buf_append(b, "}", 1);
}

int weft_pg_array_add_int(weft_buf_t *b, long long v)
{
    char tmp[24];
    size_t n = weft_fmt_i64(tmp, v);
    return weft_pg_array_add(b, tmp, n, 0);
}

/* Bytes that are not UTF-8 (an error message that quotes a hostile
 * header, say) would fail the whole batch, and the batch would fail again
 * on every retry: they become '?'. */
int weft_pg_array_add_text(weft_buf_t *b, const char *s)
{
    if (!s)
        return weft_pg_array_add(b, "", 0, 1);
    size_t len = strlen(s);
    if (weft_utf8_valid(s, len))
        return weft_pg_array_add(b, s, len, 0);
    char *copy = strdup(s);
    if (!copy)
        return -1;
    int rc = weft_pg_array_add(b, weft_utf8_sanitize(copy), len, 0);
    free(copy);
    return rc;
}

enum { MAX_ARRAYS = 19 };

/* The batch statements, prepared on each connection once
 * (weft_ledger_prepare). Sent unprepared, each batch was parsed, analysed
 * and planned again: at the ~40 keys a batch holds under a live load of
 * 20,000 events/s, that was ~30% of PostgreSQL's CPU per key (psql, 40-key
 * claim and record: 34-36 us of backend CPU per key planned each time,
 * 27 with the cached generic plan). A generic plan is made once, perhaps
 * while the ledger is empty, and kept as it grows: connections run with
 * hash joins, merge joins and sequential scans off, so every plan probes
 * the ledger's primary key per input row (test_ledger checks the plans
 * made for an empty ledger). */
typedef enum { ST_CLAIM, ST_CLAIM_FRESH, ST_RECORD, ST_RECORD_DONE, ST_N } stmt_t;
static const char *const STMT_NAME[ST_N] = {"weft_claim", "weft_claim_fresh", "weft_record",
                                            "weft_record_done"};

/* Closes the na array literals, sends statement st with them as $1..$na
 * and owner as the last parameter, and frees them (libpq copies the
 * parameters into its output buffer). oom: an append already failed. */
static int send_arrays(PGconn *pg, stmt_t st, weft_buf_t *a, int na, const char *owner,
                       int oom, const char *what, char *errstr, size_t errlen)
{
    const char *params[MAX_ARRAYS + 1];
    int rc = -1;
    for (int k = 0; k < na && !oom; k++)
        oom |= weft_pg_array_close(&a[k]);
    if (oom) {
        snprintf(errstr, errlen, "out of memory");
        goto out;
    }
    for (int k = 0; k < na; k++)
        params[k] = a[k].p;
    params[na] = owner;
    if (!PQsendQueryPrepared(pg, STMT_NAME[st], na + 1, params, NULL, NULL, 0)) {
        snprintf(errstr, errlen, "%s: %s", what, PQerrorMessage(pg));
        goto out;
    }
    rc = 0;
out:
    for (int k = 0; k < na; k++)
        weft_buf_free(&a[k]);
    return rc;
}

/* The answer has one row per won key, from the upsert's RETURNING, and
 * then, only when some key was not won (the one-time filter compares the
 * counts), one row per such key with its stored state. Rows name their
 * key and come in no particular order: matching them to the batch in C
 * costs less than joining them back to the input and sorting in
 * PostgreSQL (measured in a psql harness of 1000-key batches: 13.25-13.75
 * against 14.0-14.75 us of backend CPU per claimed and recorded key).
 * A key that is in neither part (a row that another transaction inserted
 * after this statement's snapshot was taken) is answered as busy. */
static const char CLAIM_SQL[] =
    "WITH input AS ("
    "  SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::int[])"
    "    AS i(trigger, generation, key, lease_ms)"
    "), claimed AS ("
    "  INSERT INTO weft.ledger AS l (trigger, generation, key, status, attempts, owner,"
    "                                lease_until)"
    "  SELECT trigger, generation, key, 'running', 0, $5,"
    "         clock_timestamp() + lease_ms * interval '1 millisecond' FROM input"
    "  ON CONFLICT (trigger, generation, key) DO UPDATE"
    "    SET takeovers = l.takeovers + CASE WHEN l.owner <> EXCLUDED.owner THEN 1 ELSE 0 END,"
    "        owner = EXCLUDED.owner,"
    "        lease_until = EXCLUDED.lease_until, updated_at = now()"
    "    WHERE l.status = 'running'"
    "      AND (l.lease_until < clock_timestamp() OR l.owner = EXCLUDED.owner)"
    "  RETURNING l.trigger, l.generation, l.key, l.attempts, l.last_error, l.reason,"
    "            l.first_failure_at, l.last_failure_at, l.takeovers"
    ")"
    " SELECT c.trigger, c.generation, c.key, true, c.attempts, NULL::weft.ledger_status,"
    "        NULL::bytea, NULL::text, NULL::text, c.last_error, c.reason, NULL::bigint,"
    "        to_char(c.first_failure_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "        to_char(c.last_failure_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "        NULL::bigint, c.takeovers"
    " FROM claimed c"
    " UNION ALL"
    " SELECT l.trigger, l.generation, l.key, false, l.attempts, l.status, l.result,"
    "        l.result_type, l.result_id, l.last_error, l.reason,"
    "        greatest(0, extract(epoch FROM l.lease_until - clock_timestamp()) * 1000)::bigint,"
    "        to_char(l.first_failure_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "        to_char(l.last_failure_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "        (SELECT max(d.id) FROM weft.dead_letters d WHERE l.status = 'dead'"
    "           AND (d.trigger, d.generation, d.key) = (l.trigger, l.generation, l.key)),"
    "        l.takeovers"
    " FROM input i"
    " JOIN weft.ledger l ON (l.key, l.trigger, l.generation) = (i.key, i.trigger, i.generation)"
    " WHERE (SELECT count(*) FROM claimed) < (SELECT count(*) FROM input)"
    "   AND NOT EXISTS (SELECT 1 FROM claimed c"
    "                   WHERE (c.key, c.trigger, c.generation) = (i.key, i.trigger, i.generation))";

/* The common claim: every key is new. The upsert's ON CONFLICT checks
 * the index for every key before it inserts, and its RETURNING and the
 * stored-row half cost more again; a plain INSERT does one index
 * descent per key (psql harness, 1000-key batches: 6.1-6.2 against
 * 8.1-8.4 us per key). If any key has a row the statement fails as a
 * whole (unique_violation) and changes nothing; the dispatcher then
 * claims that batch with CLAIM_SQL. */
static const char CLAIM_FRESH_SQL[] =
    "INSERT INTO weft.ledger (trigger, generation, key, status, attempts, owner, lease_until)"
    " SELECT trigger, generation, key, 'running', 0, $5,"
    "        clock_timestamp() + lease_ms * interval '1 millisecond'"
    " FROM unnest($1::text[], $2::int[], $3::text[], $4::int[])"
    "   AS i(trigger, generation, key, lease_ms)";

static char *dup_val(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

int weft_ledger_claim_send(weft_pg_conn_t *pg, const char *owner, weft_claim_mode_t mode,
                           const weft_claim_req_t *reqs, size_t n, char *errstr, size_t errlen)
{
    weft_buf_t a[4] = {{0}};
    int oom = 0;
    for (size_t i = 0; i < n && !oom; i++)
        oom = weft_pg_array_add_text(&a[0], reqs[i].trigger) ||
              weft_pg_array_add_int(&a[1], reqs[i].generation) ||
              weft_pg_array_add_text(&a[2], reqs[i].key) ||
              weft_pg_array_add_int(&a[3], reqs[i].lease_ms);
    return send_arrays(pg, mode == WEFT_CLAIM_FRESH ? ST_CLAIM_FRESH : ST_CLAIM, a, 4, owner,
                       oom, "claiming keys", errstr, errlen);
}

/* Where the row for (trigger, generation, key) goes: an open-addressing
 * table of request positions, built per batch. */
typedef struct req_index {
    uint32_t *slot; /* position + 1; 0 empty */
    size_t mask;
} req_index_t;

static uint64_t key_hash(const char *trigger, int generation, const char *key)
{
    uint64_t h = weft_fnv1a_str(WEFT_FNV1A_INIT ^ (uint32_t)generation, key);
    return weft_fnv1a_str(h ^ 0x1f, trigger);
}

static int req_index_build(req_index_t *ix, const weft_claim_req_t *reqs, size_t n)
{
    size_t cap = 16;
    while (cap < n * 2)
        cap <<= 1;
    ix->slot = calloc(cap, sizeof(*ix->slot));
    if (!ix->slot)
        return -1;
    ix->mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        size_t at = (size_t)key_hash(reqs[i].trigger, reqs[i].generation, reqs[i].key) & ix->mask;
        while (ix->slot[at])
            at = (at + 1) & ix->mask;
        ix->slot[at] = (uint32_t)i + 1;
    }
    return 0;
}

/* The request a row answers, or -1. */
static long req_index_find(const req_index_t *ix, const weft_claim_req_t *reqs,
                           const char *trigger, int generation, const char *key)
{
    size_t at = (size_t)key_hash(trigger, generation, key) & ix->mask;
    for (; ix->slot[at]; at = (at + 1) & ix->mask) {
        const weft_claim_req_t *q = &reqs[ix->slot[at] - 1];
        if (q->generation == generation && strcmp(q->key, key) == 0 &&
            strcmp(q->trigger, trigger) == 0)
            return (long)ix->slot[at] - 1;
    }
    return -1;
}

/* A FRESH claim's answer: every key won, or 1 when some key has a row. */
static int claim_fresh_result(const PGresult *r, size_t n, weft_claim_res_t *out, char *errstr,
                              size_t errlen)
{
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "23505") == 0)
            return 1;
        snprintf(errstr, errlen, "claiming keys: %s", PQresultErrorMessage(r));
        return -1;
    }
    if (strtoull(PQcmdTuples((PGresult *)r), NULL, 10) != n) {
        snprintf(errstr, errlen, "claiming keys: inserted %s rows for %zu keys",
                 PQcmdTuples((PGresult *)r), n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        out[i].kind = WEFT_CLAIM_RUN;
    }
    return 0;
}

int weft_ledger_claim_result(const weft_pg_result_t *r, weft_claim_mode_t mode,
                             const weft_claim_req_t *reqs, size_t n, weft_claim_res_t *out,
                             char *errstr, size_t errlen)
{
    if (mode == WEFT_CLAIM_FRESH)
        return claim_fresh_result(r, n, out, errstr, errlen);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || (size_t)PQntuples(r) > n) {
        snprintf(errstr, errlen, "claiming keys: %s",
                 PQresultStatus(r) == PGRES_TUPLES_OK ? "more rows than keys"
                                                       : PQresultErrorMessage(r));
        return -1;
    }
    req_index_t ix;
    if (req_index_build(&ix, reqs, n) != 0) {
        snprintf(errstr, errlen, "claiming keys: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        out[i].kind = WEFT_CLAIM_BUSY;
    }
    int rows = PQntuples(r);
    for (int row = 0; row < rows; row++) {
        long i = req_index_find(&ix, reqs, PQgetvalue(r, row, 0), atoi(PQgetvalue(r, row, 1)),
                                PQgetvalue(r, row, 2));
        if (i < 0) {
            /* Cannot happen: every row comes from a key of the batch. */
            snprintf(errstr, errlen, "claiming keys: an answer for a key not in the batch");
            free(ix.slot);
            for (size_t k = 0; k < n; k++)
                weft_claim_res_clear(&out[k]);
            return -1;
        }
        weft_claim_res_t *res = &out[i];
        int won = PQgetvalue(r, row, 3)[0] == 't';
        res->attempts = atoi(PQgetvalue(r, row, 4));
        const char *status = PQgetisnull(r, row, 5) ? "" : PQgetvalue(r, row, 5);
        if (won)
            res->kind = WEFT_CLAIM_RUN;
        else if (strcmp(status, "completed") == 0)
            res->kind = WEFT_CLAIM_COMPLETED;
        else if (strcmp(status, "dropped") == 0)
            res->kind = WEFT_CLAIM_DROPPED;
        else if (strcmp(status, "dead") == 0)
            res->kind = WEFT_CLAIM_DEAD;
        else
            res->kind = WEFT_CLAIM_BUSY;
        if (!PQgetisnull(r, row, 6) && res->kind == WEFT_CLAIM_COMPLETED) {
            res->result =
                PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, 6), &res->result_len);
        }
        res->result_type = dup_val(r, row, 7);
        res->result_id = dup_val(r, row, 8);
        res->last_error = dup_val(r, row, 9);
        res->reason = dup_val(r, row, 10);
        res->lease_left_ms = PQgetisnull(r, row, 11) ? 0 : atoll(PQgetvalue(r, row, 11));
        res->first_failure = dup_val(r, row, 12);
        res->last_failure = dup_val(r, row, 13);
        res->dead_letter_id = PQgetisnull(r, row, 14) ? 0 : atoll(PQgetvalue(r, row, 14));
        res->takeovers = atoi(PQgetvalue(r, row, 15));
    }
    free(ix.slot);
    return 0;
}

static const char RECORD_SQL[] =
    /* The owner and the running status are columns of the materialized
     * input, so they are join conditions and not filters on the ledger:
     * as filters, stale statistics can estimate that no row matches and
     * plan a scan of the whole ledger per input row. */
    "WITH input AS MATERIALIZED ("
    "  SELECT *, $20::text AS me, 'running'::weft.ledger_status AS running"
    "  FROM unnest($1::text[], $2::int[], $3::text[], $4::text[], $5::bytea[],"
    "                       $6::text[], $7::text[], $8::text[], $9::text[], $10::int[],"
    "                       $11::text[], $12::int[], $13::bigint[], $14::bytea[],"
    "                       $15::bytea[], $16::text[], $17::text[], $18::text[], $19::int[])"
    "    WITH ORDINALITY AS i(trigger, generation, key, status, result, result_type,"
    "                         result_id, error, reason, lease_ms, src_topic, src_partition,"
    "                         src_offset, msg_key, value, headers, dlq, src_broker, ran, ord)"
    "), upd AS ("
    "  UPDATE weft.ledger l SET attempts = l.attempts + i.ran,"
    "    status = CASE WHEN i.status = 'retry' THEN 'running'"
    "                  WHEN i.status = 'replace' THEN 'dead'"
    "                  ELSE i.status END::weft.ledger_status,"
    "    result = i.result, result_type = i.result_type, result_id = i.result_id,"
    "    last_error = coalesce(i.error, l.last_error),"
    "    reason = coalesce(i.reason, l.reason),"
    "    first_failure_at = CASE WHEN i.error IS NOT NULL"
    "                       THEN coalesce(l.first_failure_at, now()) ELSE l.first_failure_at END,"
    "    last_failure_at = CASE WHEN i.error IS NOT NULL THEN now() ELSE l.last_failure_at END,"
    "    lease_until = CASE WHEN i.status = 'retry'"
    "                  THEN clock_timestamp() + i.lease_ms * interval '1 millisecond' END,"
    "    updated_at = now()"
    "  FROM input i"
    "  WHERE (l.trigger, l.generation, l.key) = (i.trigger, i.generation, i.key)"
    "    AND ((l.owner, l.status) = (i.me, i.running)"
    /* a completed result no broker takes becomes a dead letter */
    "         OR (i.status = 'replace' AND l.status = 'completed'))"
    "  RETURNING i.ord, l.trigger, l.generation, l.key, l.attempts, l.first_failure_at,"
    "            l.last_failure_at, i.status AS in_status, i.reason AS in_reason,"
    "            i.error AS in_error, i.src_broker, i.src_topic, i.src_partition,"
    "            i.src_offset, i.msg_key, i.value, i.headers, i.dlq"
    "), dl AS ("
    /* From upd alone: joining upd back to input would cost n * n. */
    "  INSERT INTO weft.dead_letters (trigger, generation, key, reason, error, attempts,"
    "    source_broker, source_topic, source_partition, source_offset, message_key, value,"
    "    headers, dead_letter_topic, first_failure_at, last_failure_at)"
    "  SELECT u.trigger, u.generation, u.key, coalesce(u.in_reason, 'unknown'),"
    "         coalesce(u.in_error, ''), u.attempts,"
    "         coalesce(u.src_broker, 'kafka')::weft.broker, u.src_topic, u.src_partition,"
    "         u.src_offset, u.msg_key, u.value, coalesce(u.headers, '[]')::jsonb, u.dlq,"
    "         u.first_failure_at, u.last_failure_at"
    "  FROM upd u WHERE u.in_status IN ('dead', 'replace')"
    "  RETURNING id, trigger, generation, key"
    ")"
    " SELECT u.ord, u.attempts,"
    "   to_char(u.first_failure_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "   to_char(u.last_failure_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    "   d.id"
    " FROM upd u LEFT JOIN dl d"
    "   ON (d.trigger, d.generation, d.key) = (u.trigger, u.generation, u.key)";

/* The common batch: every outcome is a completion. Same effect on the
 * rows as RECORD_SQL for a completion, with seven arrays instead of
 * nineteen and no dead-letter insert to plan (measured: about a fifth
 * less PostgreSQL CPU per key). The answer has RECORD_SQL's columns. */
static const char RECORD_DONE_SQL[] =
    "WITH input AS MATERIALIZED ("
    "  SELECT *, $8::text AS me, 'running'::weft.ledger_status AS running"
    "  FROM unnest($1::text[], $2::int[], $3::text[], $4::bytea[], $5::text[], $6::text[],"
    "              $7::int[])"
    "    WITH ORDINALITY AS i(trigger, generation, key, result, result_type, result_id, ran, ord)"
    ")"
    " UPDATE weft.ledger l SET status = 'completed', attempts = l.attempts + i.ran,"
    "   result = i.result,"
    "   result_type = i.result_type, result_id = i.result_id, lease_until = NULL,"
    "   updated_at = now()"
    " FROM input i"
    " WHERE (l.trigger, l.generation, l.key, l.owner, l.status)"
    "     = (i.trigger, i.generation, i.key, i.me, i.running)"
    " RETURNING i.ord, l.attempts, '', '', NULL::bigint";

static int record_done_send(PGconn *pg, const char *owner, const weft_record_t *recs, size_t n,
                            char *errstr, size_t errlen)
{
    weft_buf_t a[7] = {{0}};
    int oom = 0;
    for (size_t i = 0; i < n && !oom; i++) {
        oom |= weft_pg_array_add_text(&a[0], recs[i].trigger);
        oom |= weft_pg_array_add_int(&a[1], recs[i].generation);
        oom |= weft_pg_array_add_text(&a[2], recs[i].key);
        oom |= weft_pg_array_add_bytea(&a[3], recs[i].result, recs[i].result_len, 0);
        oom |= weft_pg_array_add_text(&a[4], recs[i].result_type);
        oom |= weft_pg_array_add_text(&a[5], recs[i].result_id);
        oom |= weft_pg_array_add_int(&a[6], recs[i].ran);
    }
    return send_arrays(pg, ST_RECORD_DONE, a, 7, owner, oom, "recording outcomes", errstr, errlen);
}

static const char *rec_status(weft_rec_kind_t k, int replace)
{
    switch (k) {
    case WEFT_REC_COMPLETED:
        return "completed";
    case WEFT_REC_DROPPED:
        return "dropped";
    case WEFT_REC_DEAD:
        return replace ? "replace" : "dead";
    default:
        return "retry";
    }
}

int weft_ledger_record_send(weft_pg_conn_t *pg, const char *owner, const weft_record_t *recs,
                            size_t n, char *errstr, size_t errlen)
{
    size_t n_done = 0;
    while (n_done < n && recs[n_done].kind == WEFT_REC_COMPLETED)
        n_done++;
    if (n > 0 && n_done == n)
        return record_done_send(pg, owner, recs, n, errstr, errlen);
    enum { NA = MAX_ARRAYS };
    weft_buf_t a[NA];
    memset(a, 0, sizeof(a));
    int oom = 0;
    for (size_t i = 0; i < n && !oom; i++) {
        const weft_record_t *rc_ = &recs[i];
        int dead = rc_->kind == WEFT_REC_DEAD;
        int done = rc_->kind == WEFT_REC_COMPLETED;
        oom |= weft_pg_array_add_text(&a[0], rc_->trigger);
        oom |= weft_pg_array_add_int(&a[1], rc_->generation);
        oom |= weft_pg_array_add_text(&a[2], rc_->key);
        oom |= weft_pg_array_add_text(&a[3], rec_status(rc_->kind, rc_->replace_completed));
        oom |= weft_pg_array_add_bytea(&a[4], rc_->result, rc_->result_len, !done);
        oom |= weft_pg_array_add_text(&a[5], done ? rc_->result_type : NULL);
        oom |= weft_pg_array_add_text(&a[6], done ? rc_->result_id : NULL);
        oom |= weft_pg_array_add_text(&a[7], rc_->error);
        oom |= weft_pg_array_add_text(&a[8], rc_->reason);
        oom |= weft_pg_array_add_int(&a[9], rc_->lease_ms);
        oom |= weft_pg_array_add_text(&a[10], dead ? rc_->source_topic : NULL);
        oom |= weft_pg_array_add_int(&a[11], rc_->source_partition);
        oom |= weft_pg_array_add_int(&a[12], rc_->source_offset);
        oom |= weft_pg_array_add_bytea(&a[13], rc_->msg_key, rc_->msg_key_len,
                                       !dead || !rc_->msg_key);
        oom |= weft_pg_array_add_bytea(&a[14], rc_->value, rc_->value_len, !dead);
        oom |= weft_pg_array_add_text(&a[15], dead ? rc_->headers_json : NULL);
        oom |= weft_pg_array_add_text(&a[16], dead ? rc_->dead_letter_topic : NULL);
        oom |= weft_pg_array_add_text(&a[17], dead ? rc_->source_broker : NULL);
        oom |= weft_pg_array_add_int(&a[18], rc_->ran);
    }
    return send_arrays(pg, ST_RECORD, a, NA, owner, oom, "recording outcomes", errstr, errlen);
}

int weft_ledger_prepare(weft_pg_conn_t *pg, char *errstr, size_t errlen)
{
    static const char *const sql[ST_N] = {CLAIM_SQL, CLAIM_FRESH_SQL, RECORD_SQL,
                                          RECORD_DONE_SQL};
    PGresult *r = PQexec(pg, "SET enable_hashjoin = off; SET enable_mergejoin = off;"
                             " SET enable_seqscan = off");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    for (int st = 0; ok && st < ST_N; st++) {
        r = PQprepare(pg, STMT_NAME[st], sql[st], 0, NULL);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
    }
    if (!ok) {
        snprintf(errstr, errlen, "preparing the ledger's statements: %s", PQerrorMessage(pg));
        return -1;
    }
    return 0;
}

int weft_ledger_record_result(const weft_pg_result_t *r, size_t n, weft_record_res_t *out,
                              char *errstr, size_t errlen)
{
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(errstr, errlen, "recording outcomes: %s", PQresultErrorMessage(r));
        return -1;
    }
    memset(out, 0, n * sizeof(*out));
    for (int row = 0; row < PQntuples(r); row++) {
        long ord = atol(PQgetvalue(r, row, 0));
        if (ord < 1 || (size_t)ord > n)
            continue;
        weft_record_res_t *res = &out[ord - 1];
        res->applied = 1;
        res->attempts = atoi(PQgetvalue(r, row, 1));
        weft_fmt_copy(res->first_failure, sizeof(res->first_failure), PQgetvalue(r, row, 2));
        weft_fmt_copy(res->last_failure, sizeof(res->last_failure), PQgetvalue(r, row, 3));
        res->dead_letter_id = PQgetisnull(r, row, 4) ? 0 : atoll(PQgetvalue(r, row, 4));
    }
    return 0;
}
