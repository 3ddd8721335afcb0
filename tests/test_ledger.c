/*
 * test_ledger.c - the ledger's claim statements (ledger.c) against a real
 * PostgreSQL: a fresh claim wins new keys with one plain INSERT, and one
 * that meets a key with a row changes nothing and says so, so that the
 * dispatcher claims the batch again as an upsert, which answers each key
 * with its stored state. A key must never be won twice. Leases: a key
 * whose owner's lease ran out is taken over by another owner (and counted
 * as a takeover, never as an attempt), and the old owner's record is then
 * refused. Attempts: only a record that follows a run adds one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "json.h"
#include "ledger.h"

static fx_t fx;
static PGconn *pg;

static int group_setup(void **state)
{
    (void)state;
    if (fx_up_migrated(&fx, "unused:1") != 0)
        return -1;
    pg = PQconnectdb(fx.pg);
    char err[512];
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "ledger connection: %s\n", PQerrorMessage(pg));
        return -1;
    }
    if (weft_ledger_prepare(pg, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    PQfinish(pg);
    fx_down(&fx);
    return 0;
}

/* The statement's one result, after it is over. */
static PGresult *one_result(void)
{
    PGresult *first = NULL, *r;
    while ((r = PQgetResult(pg)) != NULL) {
        if (first)
            PQclear(r);
        else
            first = r;
    }
    assert_non_null(first);
    return first;
}

static int claim(const char *owner, weft_claim_mode_t mode, const char *const *keys, size_t n,
                 weft_claim_res_t *out)
{
    weft_claim_req_t reqs[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        reqs[i] = (weft_claim_req_t){"t-ledger", 0, keys[i], 60000};
    char err[512] = "";
    assert_int_equal(weft_ledger_claim_send(pg, owner, mode, reqs, n, err, sizeof(err)), 0);
    PGresult *r = one_result();
    int rc = weft_ledger_claim_result(r, mode, reqs, n, out, err, sizeof(err));
    if (rc < 0)
        print_error("claim: %s\n", err);
    PQclear(r);
    return rc;
}

static void clear(weft_claim_res_t *res, size_t n)
{
    for (size_t i = 0; i < n; i++)
        weft_claim_res_clear(&res[i]);
}

/* Claims new keys for owner; every one must be won. */
static void hold(const char *owner, const char *const *keys, size_t n)
{
    weft_claim_res_t res[8];
    assert_int_equal(claim(owner, WEFT_CLAIM_FRESH, keys, n, res), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(res[i].kind, WEFT_CLAIM_RUN);
    clear(res, n);
}

static void record(const char *owner, const weft_record_t *recs, size_t n, weft_record_res_t *out)
{
    char err[512] = "";
    assert_int_equal(weft_ledger_record_send(pg, owner, recs, n, err, sizeof(err)), 0);
    PGresult *r = one_result();
    int rc = weft_ledger_record_result(r, n, out, err, sizeof(err));
    if (rc != 0)
        print_error("record: %s\n", err);
    PQclear(r);
    assert_int_equal(rc, 0);
}

static long rows(const char *key)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.ledger WHERE trigger = 't-ledger' AND key = '%s'", key);
    return fx_sql_long(&fx, sql);
}

static long attempts(const char *key)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT attempts FROM weft.ledger WHERE trigger = 't-ledger' AND key = '%s'", key);
    return fx_sql_long(&fx, sql);
}

static void test_fresh_claim_wins_new_keys(void **state)
{
    (void)state;
    const char *keys[] = {"a-1", "a-2", "a-3"};
    weft_claim_res_t res[3];
    assert_int_equal(claim("owner-1", WEFT_CLAIM_FRESH, keys, 3, res), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(res[i].kind, WEFT_CLAIM_RUN);
        assert_int_equal(res[i].attempts, 0);
        assert_int_equal(attempts(keys[i]), 0);
    }
    clear(res, 3);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE key LIKE 'a-%' "
                                      "AND status = 'running' AND owner = 'owner-1' "
                                      "AND lease_until > now()"),
                     3);
}

static void test_fresh_claim_of_a_known_key_changes_nothing(void **state)
{
    (void)state;
    const char *first[] = {"b-1"};
    weft_claim_res_t res[2];
    hold("owner-1", first, 1);
    /* b-2 is new, b-1 is held by owner-1: the whole statement fails. */
    const char *both[] = {"b-2", "b-1"};
    assert_int_equal(claim("owner-2", WEFT_CLAIM_FRESH, both, 2, res), 1);
    assert_int_equal(rows("b-2"), 0);
    assert_int_equal(attempts("b-1"), 0);
    /* The same batch as an upsert: the new key is won, the held one busy. */
    assert_int_equal(claim("owner-2", WEFT_CLAIM_UPSERT, both, 2, res), 0);
    assert_int_equal(res[0].kind, WEFT_CLAIM_RUN);
    assert_int_equal(res[0].attempts, 0);
    assert_int_equal(res[1].kind, WEFT_CLAIM_BUSY);
    assert_true(res[1].lease_left_ms > 0);
    clear(res, 2);
    assert_int_equal(attempts("b-1"), 0);
    assert_int_equal(attempts("b-2"), 0);
}

static void test_upsert_answers_a_completed_key(void **state)
{
    (void)state;
    const char *keys[] = {"c-1"};
    weft_claim_res_t res[1];
    hold("owner-1", keys, 1);
    weft_record_t rec = {.trigger = "t-ledger",
                         .key = "c-1",
                         .kind = WEFT_REC_COMPLETED,
                         .result = (const uint8_t *)"out",
                         .result_len = 3,
                         .result_type = "t.result",
                         .result_id = "id-c-1",
                         .ran = 1};
    weft_record_res_t rr;
    record("owner-1", &rec, 1, &rr);
    assert_int_equal(rr.applied, 1);
    /* A redelivery: the fresh claim fails, the upsert answers the result. */
    assert_int_equal(claim("owner-2", WEFT_CLAIM_FRESH, keys, 1, res), 1);
    assert_int_equal(claim("owner-2", WEFT_CLAIM_UPSERT, keys, 1, res), 0);
    assert_int_equal(res[0].kind, WEFT_CLAIM_COMPLETED);
    assert_int_equal(res[0].result_len, 3);
    assert_memory_equal(res[0].result, "out", 3);
    assert_string_equal(res[0].result_id, "id-c-1");
    clear(res, 1);
    assert_int_equal(attempts("c-1"), 1);
}

/* The general record statement (nineteen arrays, NULLs among them): a
 * dead letter keeps the message's bytes, a 64-bit offset and its text. */
static void test_dead_record_keeps_every_field(void **state)
{
    (void)state;
    const char *keys[] = {"d-1", "d-2"};
    hold("owner-1", keys, 2);
    static const uint8_t mkey[] = {'k', 0, 0xff};
    static const uint8_t value[] = {0, 1, 2, 0xfe};
    weft_record_t recs[2] = {
        {.trigger = "t-ledger",
         .key = "d-1",
         .kind = WEFT_REC_DEAD,
         .error = "bad \xff \"quoted\" {x,y}",
         .reason = "function",
         .source_topic = "in.topic",
         .source_partition = 7,
         .source_offset = 5000000000LL,
         .msg_key = mkey,
         .msg_key_len = sizeof(mkey),
         .value = value,
         .value_len = sizeof(value),
         .headers_json = "[{\"name\":\"h\",\"value_base64\":null}]",
         .dead_letter_topic = "in.topic.dlq"},
        {.trigger = "t-ledger",
         .key = "d-2",
         .kind = WEFT_REC_RETRY,
         .error = "later",
         .lease_ms = 60000},
    };
    weft_record_res_t rr[2];
    record("owner-1", recs, 2, rr);
    assert_int_equal(rr[0].applied, 1);
    assert_true(rr[0].dead_letter_id > 0);
    assert_int_equal(rr[1].applied, 1);
    assert_int_equal(rr[1].dead_letter_id, 0);
    char *row = fx_sql(&fx, "SELECT concat_ws('|', reason, error, source_topic, source_partition,"
                            " source_offset, encode(message_key, 'hex'), encode(value, 'hex'),"
                            " headers->0->>'name', dead_letter_topic)"
                            " FROM weft.dead_letters WHERE key = 'd-1'");
    assert_non_null(row);
    /* The byte that is not UTF-8 became '?'; everything else is as sent. */
    assert_string_equal(row, "function|bad ? \"quoted\" {x,y}|in.topic|7|5000000000|6b00ff|"
                             "000102fe|h|in.topic.dlq");
    free(row);
    row = fx_sql(&fx, "SELECT concat_ws('|', status, last_error, lease_until > now())"
                      " FROM weft.ledger WHERE key = 'd-2'");
    assert_non_null(row);
    assert_string_equal(row, "running|later|t");
    free(row);
}

static long takeovers(const char *key)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT takeovers FROM weft.ledger WHERE trigger = 't-ledger' AND key = '%s'", key);
    return fx_sql_long(&fx, sql);
}

/* The owner's lease on key runs out now (as if its dispatcher had died
 * lease_ms ago): the time passes in the row, not in the test. */
static void expire(const char *key)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "UPDATE weft.ledger SET lease_until = clock_timestamp() - interval '1 second'"
             " WHERE trigger = 't-ledger' AND key = '%s'",
             key);
    free(fx_sql(&fx, sql));
}

static char *row_of(const char *key)
{
    char sql[300];
    snprintf(sql, sizeof(sql),
             "SELECT concat_ws('|', status, owner, attempts, takeovers, coalesce(result_id, '-'))"
             " FROM weft.ledger WHERE trigger = 't-ledger' AND key = '%s'",
             key);
    return fx_sql(&fx, sql);
}

/* DESIGN.md: "In progress with a live lease -> leave it. In progress with
 * an expired lease -> take over." The taking over is a takeover, not an
 * attempt: the dead owner's claim never ran as far as this ledger knows. */
static void test_expired_lease_is_taken_over(void **state)
{
    (void)state;
    const char *keys[] = {"e-1"};
    weft_claim_res_t res[1];
    hold("owner-1", keys, 1);
    /* Live lease: another owner is told to wait. */
    assert_int_equal(claim("owner-2", WEFT_CLAIM_UPSERT, keys, 1, res), 0);
    assert_int_equal(res[0].kind, WEFT_CLAIM_BUSY);
    assert_true(res[0].lease_left_ms > 50000);
    clear(res, 1);
    char *row = row_of("e-1");
    assert_string_equal(row, "running|owner-1|0|0|-");
    free(row);
    /* Expired: the other owner wins it. */
    expire("e-1");
    assert_int_equal(claim("owner-2", WEFT_CLAIM_UPSERT, keys, 1, res), 0);
    assert_int_equal(res[0].kind, WEFT_CLAIM_RUN);
    assert_int_equal(res[0].attempts, 0);
    assert_int_equal(res[0].takeovers, 1);
    clear(res, 1);
    row = row_of("e-1");
    assert_string_equal(row, "running|owner-2|0|1|-");
    free(row);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE key = 'e-1'"
                                      " AND lease_until > now() + interval '50 seconds'"),
                     1);
    /* Its own retry is no takeover: the owner records a failed run and
     * claims the key again once the backoff (here: at once) is over. */
    weft_record_t rec = {
        .trigger = "t-ledger", .key = "e-1", .kind = WEFT_REC_RETRY, .error = "later", .ran = 1};
    weft_record_res_t rr;
    record("owner-2", &rec, 1, &rr);
    assert_int_equal(rr.applied, 1);
    assert_int_equal(rr.attempts, 1);
    assert_int_equal(claim("owner-2", WEFT_CLAIM_UPSERT, keys, 1, res), 0);
    assert_int_equal(res[0].kind, WEFT_CLAIM_RUN);
    assert_int_equal(res[0].attempts, 1);
    assert_int_equal(res[0].takeovers, 1);
    clear(res, 1);
}

/* A dispatcher that stalled past its lease must not overwrite what the
 * owner that took the key over records: its record is refused (applied =
 * 0, nothing changes, no dead letter), and the new owner's applies. */
static void test_record_of_a_lost_lease_is_refused(void **state)
{
    (void)state;
    const char *keys[] = {"f-1", "f-2"};
    weft_claim_res_t res[2];
    hold("owner-1", keys, 2);
    expire("f-1");
    expire("f-2");
    assert_int_equal(claim("owner-2", WEFT_CLAIM_UPSERT, keys, 2, res), 0);
    assert_int_equal(res[0].kind, WEFT_CLAIM_RUN);
    assert_int_equal(res[1].kind, WEFT_CLAIM_RUN);
    clear(res, 2);
    /* The old owner comes back with its outcomes: a completion (the
     * completions-only statement) ... */
    weft_record_t done = {.trigger = "t-ledger",
                          .key = "f-1",
                          .kind = WEFT_REC_COMPLETED,
                          .result = (const uint8_t *)"old",
                          .result_len = 3,
                          .result_type = "t.result",
                          .result_id = "id-old",
                          .ran = 1};
    weft_record_res_t rr[2];
    record("owner-1", &done, 1, rr);
    assert_int_equal(rr[0].applied, 0);
    /* ... and a dead letter next to a completion (the general one). */
    weft_record_t mixed[2] = {done,
                              {.trigger = "t-ledger",
                               .key = "f-2",
                               .kind = WEFT_REC_DEAD,
                               .error = "old failure",
                               .reason = "function",
                               .source_topic = "in.topic",
                               .dead_letter_topic = "in.topic.dlq",
                               .ran = 1}};
    record("owner-1", mixed, 2, rr);
    assert_int_equal(rr[0].applied, 0);
    assert_int_equal(rr[1].applied, 0);
    for (int i = 0; i < 2; i++) {
        char *row = row_of(keys[i]);
        assert_string_equal(row, "running|owner-2|0|1|-");
        free(row);
    }
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE key = 'f-2'"),
                     0);
    /* The owner holding the lease records. */
    done.result_id = "id-new";
    record("owner-2", &done, 1, rr);
    assert_int_equal(rr[0].applied, 1);
    assert_int_equal(rr[0].attempts, 1);
    char *row = row_of("f-1");
    assert_string_equal(row, "completed|owner-2|1|1|id-new");
    free(row);
}

/* An event that kills its dispatcher each time it runs never records an
 * attempt: takeovers count the owners that died holding it, one per
 * takeover (the dispatcher dead-letters the key once they pass
 * dispatcher.max_takeovers; test_job checks that decision), while the
 * attempts stay 0. */
static void test_takeovers_count_each_dead_owner(void **state)
{
    (void)state;
    const char *keys[] = {"g-1"};
    weft_claim_res_t res[1];
    hold("owner-0", keys, 1);
    char owner[16];
    for (int i = 1; i <= 4; i++) {
        expire("g-1");
        snprintf(owner, sizeof(owner), "owner-%d", i);
        assert_int_equal(claim(owner, WEFT_CLAIM_UPSERT, keys, 1, res), 0);
        assert_int_equal(res[0].kind, WEFT_CLAIM_RUN);
        assert_int_equal(res[0].takeovers, i);
        assert_int_equal(res[0].attempts, 0);
        clear(res, 1);
    }
    assert_int_equal(takeovers("g-1"), 4);
    assert_int_equal(attempts("g-1"), 0);
    /* A decision made without a run (ran = 0: a dead letter for
     * abandoned claims) adds no attempt either. */
    weft_record_t rec = {.trigger = "t-ledger",
                         .key = "g-1",
                         .kind = WEFT_REC_DEAD,
                         .error = "taken over 4 times",
                         .reason = "abandoned_claims",
                         .source_topic = "in.topic",
                         .dead_letter_topic = "in.topic.dlq"};
    weft_record_res_t rr;
    record("owner-4", &rec, 1, &rr);
    assert_int_equal(rr.applied, 1);
    assert_true(rr.dead_letter_id > 0);
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.dead_letters WHERE key = 'g-1'"),
                     0);
}

/* The plan a statement's cached generic plan has on this connection, the
 * one PostgreSQL keeps after five executions, with the ledger as empty
 * as a new installation's. */
static char *generic_plan(const char *execute)
{
    PQclear(PQexec(pg, "TRUNCATE weft.ledger; ANALYZE weft.ledger"));
    PQclear(PQexec(pg, "SET plan_cache_mode = force_generic_plan"));
    char sql[1024];
    snprintf(sql, sizeof(sql), "EXPLAIN %s", execute);
    PGresult *r = PQexec(pg, sql);
    PQclear(PQexec(pg, "RESET plan_cache_mode"));
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        print_error("%s: %s\n", sql, PQerrorMessage(pg));
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    weft_buf_t b = {0};
    for (int i = 0; i < PQntuples(r); i++)
        assert_int_equal(weft_buf_printf(&b, "%s\n", PQgetvalue(r, i, 0)), 0);
    PQclear(r);
    return b.p;
}

/* Prepared statements keep a generic plan. Planned for an empty ledger,
 * a statement that joins its batch to the ledger must still probe the
 * primary key per input row: a hash or merge join would read the whole
 * ledger for every batch once it has grown. */
static void test_generic_plans_probe_the_primary_key(void **state)
{
    (void)state;
    static const char *const joins[] = {
        "EXECUTE weft_claim('{t}', '{0}', '{k}', '{1000}', 'me')",
        "EXECUTE weft_record_done('{t}', '{0}', '{k}', '{\"\\\\x00\"}', '{r}', '{i}', '{1}',"
        " 'me')",
        "EXECUTE weft_record('{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}',"
        " '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', 'me')",
    };
    for (size_t i = 0; i < sizeof(joins) / sizeof(joins[0]); i++) {
        char *plan = generic_plan(joins[i]);
        if (!strstr(plan, "Index Scan using ledger_pkey") || strstr(plan, "Hash Join") ||
            strstr(plan, "Merge Join") || strstr(plan, "Seq Scan on ledger"))
            fprintf(stderr, "%s:\n%s", joins[i], plan);
        assert_non_null(strstr(plan, "Index Scan using ledger_pkey"));
        assert_null(strstr(plan, "Hash Join"));
        assert_null(strstr(plan, "Merge Join"));
        assert_null(strstr(plan, "Seq Scan on ledger"));
        free(plan);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_claim_wins_new_keys),
        cmocka_unit_test(test_fresh_claim_of_a_known_key_changes_nothing),
        cmocka_unit_test(test_upsert_answers_a_completed_key),
        cmocka_unit_test(test_dead_record_keeps_every_field),
        cmocka_unit_test(test_expired_lease_is_taken_over),
        cmocka_unit_test(test_record_of_a_lost_lease_is_refused),
        cmocka_unit_test(test_takeovers_count_each_dead_owner),
        cmocka_unit_test(test_generic_plans_probe_the_primary_key),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
