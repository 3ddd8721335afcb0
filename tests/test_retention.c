/*
 * test_retention.c - retention (store/retention.c, core/retention.c)
 * against a real PostgreSQL and real dispatchers: old terminal rows of the
 * ledger, the dead letters, the sagas and the replays are deleted a batch
 * at a time; rows still in progress (a claimed or retrying ledger row, a
 * running, compensating or stuck saga, an interrupted replay) and newer
 * rows survive; every DELETE finds its rows through an index; of two
 * dispatchers only one sweeps; `weft replay` says when its range is
 * older than the ledger's retention; `weft ledger prune` does the
 * ledger's part at once.
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
#include <unistd.h>

#include "fixture.h"
#include "retention.h"

#define DAY_MS 86400000LL

static fx_t fx;
static PGconn *pg;
static char out[65536];

static int group_setup(void **state)
{
    (void)state;
    if (fx_up_migrated(&fx, "ret.in:1") != 0)
        return -1;
    pg = PQconnectdb(fx.pg);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "connection: %s\n", PQerrorMessage(pg));
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fx_run_kill_all();
    PQfinish(pg);
    fx_down(&fx);
    return 0;
}

static void sql(const char *text)
{
    PGresult *r = PQexec(pg, text);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", text, PQresultErrorMessage(r));
    PQclear(r);
}

static long count(const char *text)
{
    PGresult *r = PQexec(pg, text);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
        fail_msg("%s: %s", text, PQresultErrorMessage(r));
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return n;
}

/* The rows of every kind, 40 days old (past the 30-day default) or an
 * hour old, terminal or not:
 *   ledger r-old: 250 terminal, 40 d    -> deleted
 *   ledger r-keep: a claimed and a retrying row, 40 d; a row created 40 d
 *     ago and finished a day ago; 50 finished an hour ago -> kept (53)
 *   dead letters: 150 of 40 d -> deleted; 5 of an hour -> kept
 *   saga instances: 25 completed and 5 aborted, 40 d (one with step runs
 *     and events) -> deleted; stuck, running, compensating (40 d) and 3
 *     completed an hour ago -> kept (6)
 *   replays: 3 done 40 d -> deleted; 1 interrupted and 1 failed (both
 *     resumable) 40 d, 1 done an hour ago -> kept
 * Saga deadlines lie a day ahead, so that a dispatcher's deadline check
 * leaves the running instance as it is. */
#define OLD "now() - interval '40 days'"
#define NEW "now() - interval '1 hour'"
static void seed(void)
{
    sql("TRUNCATE weft.ledger, weft.dead_letters, weft.saga_instances, weft.replays CASCADE");
    sql("INSERT INTO weft.sagas (name, step_topic, event_topic, dead_letter_topic)"
        " VALUES ('ret-saga', 'ret.step', 'ret.ev', 'ret.dlq') ON CONFLICT DO NOTHING");
    sql("INSERT INTO weft.ledger (trigger, key, status, attempts, created_at, updated_at)"
        " SELECT 'r-old', 'old-' || i,"
        "        (ARRAY['completed', 'dropped', 'dead'])[1 + i % 3]::weft.ledger_status, 1, " OLD
        ", " OLD " FROM generate_series(1, 250) i");
    sql("INSERT INTO weft.ledger (trigger, key, status, attempts, owner, lease_until, last_error,"
        " created_at, updated_at) VALUES"
        " ('r-keep', 'claimed-old', 'running', 1, 'gone', " OLD ", NULL, " OLD ", " OLD "),"
        " ('r-keep', 'retrying-old', 'running', 2, 'gone', " OLD ", 'boom', " OLD ", " OLD ")");
    sql("INSERT INTO weft.ledger (trigger, key, status, attempts, created_at, updated_at)"
        " VALUES ('r-keep', 'finished-lately', 'completed', 3, " OLD ", now() - interval '1 day')");
    sql("INSERT INTO weft.ledger (trigger, key, status, attempts, created_at, updated_at)"
        " SELECT 'r-keep', 'new-' || i, 'completed', 1, " NEW ", " NEW
        " FROM generate_series(1, 50) i");
    sql("INSERT INTO weft.dead_letters (trigger, key, reason, source_topic, dead_letter_topic,"
        " created_at)"
        " SELECT 'r-old', 'old-' || i, 'max_attempts', 'ret.in', 'ret.in.dlq', " OLD
        " FROM generate_series(1, 150) i"
        " UNION ALL SELECT 'r-keep', 'new-' || i, 'max_attempts', 'ret.in', 'ret.in.dlq', " NEW
        " FROM generate_series(1, 5) i");
    sql("INSERT INTO weft.saga_instances (id, saga, trigger, start_key, status, current_step,"
        " deadline_at, started_at, finished_at)"
        " SELECT md5('old' || i)::uuid, 'ret-saga', 'r-saga', 'old-' || i,"
        "        CASE WHEN i <= 25 THEN 'completed' ELSE 'aborted' END::weft.saga_status, 1,"
        "        now() + interval '1 day', " OLD ", " OLD " FROM generate_series(1, 30) i"
        " UNION ALL SELECT md5('keep' || s)::uuid, 'ret-saga', 'r-saga', 'keep-' || s,"
        "        s::weft.saga_status, 1, now() + interval '1 day', " OLD
        ", CASE WHEN s = 'stuck' THEN " OLD " END"
        " FROM unnest(ARRAY['stuck', 'running', 'compensating']) s"
        " UNION ALL SELECT md5('new' || i)::uuid, 'ret-saga', 'r-saga', 'new-' || i,"
        "        'completed', 1, now() + interval '1 day', " NEW ", " NEW
        " FROM generate_series(1, 3) i");
    sql("INSERT INTO weft.saga_step_runs (instance, position, phase, status)"
        " VALUES (md5('old1')::uuid, 1, 'do', 'completed'),"
        "        (md5('keeprunning')::uuid, 1, 'do', 'running')");
    sql("INSERT INTO weft.saga_events (instance, seq, saga, cause, topic, id, type)"
        " VALUES (md5('old1')::uuid, 1, 'ret-saga', 'start', 'ret.ev', 'e1', 'weft.saga.started'),"
        "        (md5('keeprunning')::uuid, 1, 'ret-saga', 'start', 'ret.ev', 'e2',"
        "         'weft.saga.started')");
    sql("INSERT INTO weft.replays (topic, status, updated_at)"
        " SELECT 'ret.in', 'done', " OLD " FROM generate_series(1, 3)"
        " UNION ALL SELECT 'ret.in', 'interrupted', " OLD
        " UNION ALL SELECT 'ret.in', 'failed', " OLD " UNION ALL SELECT 'ret.in', 'done', " NEW);
}

/* What seed() leaves once every old terminal row is gone. */
static void assert_survivors(void)
{
    assert_int_equal(count("SELECT count(*) FROM weft.ledger WHERE trigger = 'r-old'"), 0);
    assert_int_equal(count("SELECT count(*) FROM weft.ledger WHERE trigger = 'r-keep'"), 53);
    assert_int_equal(count("SELECT count(*) FROM weft.ledger WHERE key IN ('claimed-old',"
                           " 'retrying-old', 'finished-lately')"),
                     3);
    assert_int_equal(count("SELECT count(*) FROM weft.dead_letters WHERE trigger = 'r-old'"), 0);
    assert_int_equal(count("SELECT count(*) FROM weft.dead_letters WHERE trigger = 'r-keep'"), 5);
    assert_int_equal(count("SELECT count(*) FROM weft.saga_instances WHERE start_key LIKE 'old-%'"),
                     0);
    assert_int_equal(count("SELECT count(*) FROM weft.saga_instances"), 6);
    assert_int_equal(count("SELECT count(*) FROM weft.saga_instances WHERE status IN ('stuck',"
                           " 'running', 'compensating')"),
                     3);
    /* The deleted instance's step runs and events went with it; the
     * running one's stayed. */
    assert_int_equal(count("SELECT count(*) FROM weft.saga_step_runs"), 1);
    assert_int_equal(count("SELECT count(*) FROM weft.saga_events"), 1);
    assert_int_equal(count("SELECT count(*) FROM weft.saga_step_runs"
                           " WHERE instance = md5('keeprunning')::uuid"),
                     1);
    assert_int_equal(count("SELECT count(*) FROM weft.replays"), 3);
    assert_int_equal(count("SELECT count(*) FROM weft.replays WHERE status IN ('interrupted',"
                           " 'failed')"),
                     2);
}

/* One statement deletes at most a batch per table (a tenth for sagas and
 * replays), oldest first, and only terminal rows. */
static void test_sweep_batches_terminal_only(void **state)
{
    (void)state;
    seed();
    weft_retention_t rt = {30 * DAY_MS, 30 * DAY_MS, 30 * DAY_MS, 100};
    weft_retention_counts_t c, sum = {0};
    char err[512] = "";
    assert_int_equal(weft_retention_sweep(pg, &rt, &c, err, sizeof(err)), 0);
    assert_int_equal(c.ledger, 100);
    assert_int_equal(c.dead_letters, 100);
    assert_int_equal(c.sagas, 10);
    assert_int_equal(c.replays, 3);
    sum = c;
    int statements = 1;
    do {
        assert_int_equal(weft_retention_sweep(pg, &rt, &c, err, sizeof(err)), 0);
        sum.ledger += c.ledger;
        sum.dead_letters += c.dead_letters;
        sum.sagas += c.sagas;
        sum.replays += c.replays;
        statements++;
    } while (c.ledger + c.dead_letters + c.sagas + c.replays > 0 && statements < 50);
    assert_int_equal(sum.ledger, 250);
    assert_int_equal(sum.dead_letters, 150);
    assert_int_equal(sum.sagas, 30);
    assert_int_equal(sum.replays, 3);
    /* 250 ledger rows by 100, 30 sagas by 10: 3 statements, and one that
     * finds nothing. */
    assert_int_equal(statements, 4);
    assert_survivors();

    /* A retention of 0 keeps its table whole. */
    seed();
    weft_retention_t keep = {0, 0, 30 * DAY_MS, 100};
    assert_int_equal(weft_retention_sweep(pg, &keep, &c, err, sizeof(err)), 0);
    assert_int_equal(c.ledger, 0);
    assert_int_equal(c.dead_letters, 0);
    assert_int_equal(c.replays, 0);
    assert_int_equal(c.sagas, 10);
    assert_int_equal(count("SELECT count(*) FROM weft.ledger WHERE trigger = 'r-old'"), 250);
}

/* A row another transaction holds (a claim in progress) is skipped, not
 * waited for; the next sweep takes it. */
static void test_sweep_skips_locked_rows(void **state)
{
    (void)state;
    seed();
    PGconn *other = PQconnectdb(fx.pg);
    assert_int_equal(PQstatus(other), CONNECTION_OK);
    PQclear(PQexec(other, "BEGIN"));
    PGresult *r = PQexec(other, "SELECT 1 FROM weft.ledger WHERE key = 'old-1' FOR UPDATE");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    weft_retention_t rt = {30 * DAY_MS, 30 * DAY_MS, 30 * DAY_MS, 1000};
    weft_retention_counts_t c;
    char err[512] = "";
    /* At most 10 s, should it wait after all; the lock goes before any
     * assertion, so that a failure here does not hold up the tests after. */
    sql("SET statement_timeout = '10s'");
    int rc = weft_retention_sweep(pg, &rt, &c, err, sizeof(err));
    long kept = count("SELECT count(*) FROM weft.ledger WHERE key = 'old-1'");
    PQclear(PQexec(other, "COMMIT"));
    PQfinish(other);
    sql("RESET statement_timeout");
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(c.ledger, 249);
    assert_int_equal(kept, 1);
    assert_int_equal(weft_retention_sweep(pg, &rt, &c, err, sizeof(err)), 0);
    assert_int_equal(c.ledger, 1);
}

/* EXPLAIN of the statement the dispatcher sends, with its parameters, on
 * tables large enough for the planner to choose: every table is read
 * through its retention index, never scanned whole. */
static void test_sweep_plan_uses_indexes(void **state)
{
    (void)state;
    seed();
    sql("INSERT INTO weft.ledger (trigger, key, status, created_at, updated_at)"
        " SELECT 'r-bulk', 'b-' || i, 'completed', now() - i * interval '1 minute',"
        "        now() - i * interval '1 minute' FROM generate_series(1, 60000) i");
    sql("INSERT INTO weft.dead_letters (trigger, key, reason, source_topic, dead_letter_topic,"
        " created_at) SELECT 'r-bulk', 'b-' || i, 'max_attempts', 'ret.in', 'ret.in.dlq',"
        " now() - i * interval '1 minute' FROM generate_series(1, 20000) i");
    sql("INSERT INTO weft.saga_instances (id, saga, trigger, start_key, status, current_step,"
        " deadline_at, started_at, finished_at)"
        " SELECT md5('bulk' || i)::uuid, 'ret-saga', 'r-saga', 'b-' || i, 'completed', 1, now(),"
        "        now() - i * interval '1 minute', now() - i * interval '1 minute'"
        " FROM generate_series(1, 20000) i");
    sql("INSERT INTO weft.replays (topic, status, updated_at)"
        " SELECT 'ret.in', 'done', now() - i * interval '1 minute'"
        " FROM generate_series(1, 20000) i");
    sql("ANALYZE weft.ledger, weft.dead_letters, weft.saga_instances, weft.replays");
    weft_retention_t rt = {30 * DAY_MS, 30 * DAY_MS, 30 * DAY_MS, 1000};
    char vals[7][24];
    const char *params[7];
    weft_retention_sweep_params(&rt, vals, params);
    char text[8192];
    snprintf(text, sizeof(text), "EXPLAIN %s", weft_retention_sweep_sql());
    PGresult *r = PQexecParams(pg, text, 7, NULL, params, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    char plan[16384] = "";
    size_t len = 0;
    for (int i = 0; i < PQntuples(r) && len < sizeof(plan) - 200; i++)
        len += (size_t)snprintf(plan + len, sizeof(plan) - len, "%s\n", PQgetvalue(r, i, 0));
    PQclear(r);
    print_message("%s", plan);
    assert_non_null(strstr(plan, "Index Scan using ledger_created on ledger"));
    assert_non_null(strstr(plan, "Tid Scan on ledger"));
    assert_non_null(strstr(plan, "Index Scan using dead_letters_created on dead_letters"));
    assert_non_null(strstr(plan, "Index Scan using saga_instances_finished on saga_instances"));
    assert_non_null(strstr(plan, "Index Scan using replays_ended on replays"));
    if (strstr(plan, "Seq Scan"))
        fail_msg("the sweep scans a table whole:\n%s", plan);
    if (strstr(plan, "Sort"))
        fail_msg("the sweep sorts instead of reading an index in order:\n%s", plan);
}

/* How many lines of STATE/name contain needle; -1 when it cannot be read. */
static int lines_with(const char *name, const char *needle)
{
    char path[700], line[4096];
    snprintf(path, sizeof(path), "%s/%s", fx.state_dir, name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static long old_terminal_rows(void)
{
    return count("SELECT (SELECT count(*) FROM weft.ledger WHERE trigger = 'r-old')"
                 " + (SELECT count(*) FROM weft.dead_letters WHERE trigger = 'r-old')"
                 " + (SELECT count(*) FROM weft.saga_instances WHERE start_key LIKE 'old-%')"
                 " + (SELECT count(*) FROM weft.replays WHERE status = 'done'"
                 "    AND updated_at < now() - interval '30 days')");
}

/* Two real dispatchers of one group on the seeded tables, batches of
 * 100: one of them deletes the old terminal rows, a batch a second, and
 * says so in its log (its first line: the first batch); the other never
 * sweeps; what is in progress or newer survives. */
static void test_dispatchers_sweep(void **state)
{
    (void)state;
    seed();
    pid_t a = fx_run_start(&fx, "ret-a.log", "retention.batch=100");
    pid_t b = fx_run_start(&fx, "ret-b.log", "retention.batch=100");
    assert_true(a > 0 && b > 0);
    uint64_t deadline = fx_now_ms() + 90000;
    long left;
    while ((left = old_terminal_rows()) > 0 && fx_now_ms() < deadline)
        usleep(200 * 1000);
    assert_int_equal(left, 0);
    /* Anything else it would delete would go within a few batches. */
    sleep(3);
    assert_survivors();
    const char *first =
        "retention deleted ledger=100 dead_letters=100 sagas=10 replays=3 batches=1";
    int la = lines_with("ret-a.log", first), lb = lines_with("ret-b.log", first);
    assert_int_equal(fx_run_stop(a, 20000), 0);
    assert_int_equal(fx_run_stop(b, 20000), 0);
    assert_int_equal(la + lb, 1);
    /* The rest is logged by the sweeper at the latest when it stops. */
    const char *sweeper = la ? "ret-a.log" : "ret-b.log";
    const char *idle = la ? "ret-b.log" : "ret-a.log";
    assert_int_equal(lines_with(idle, "retention deleted"), 0);
    assert_true(lines_with(sweeper, "retention deleted") >= 2);
    assert_int_equal(
        lines_with(sweeper, "retention deleted ledger=150 dead_letters=50 sagas=20 replays=0"), 1);
}

/* `weft replay` counts the events of its range older than the ledger's
 * retention and warns: in --dry-run, in --json and for --from-time. */
static void test_replay_warns_older_than_retention(void **state)
{
    (void)state;
    sql("INSERT INTO weft.functions (name, entry) VALUES ('ret-fn', 'uppercase.so')"
        " ON CONFLICT DO NOTHING");
    sql("INSERT INTO weft.triggers (name, topic, function, result_topic)"
        " VALUES ('r-replay', 'ret.in', 'ret-fn', 'ret.out') ON CONFLICT DO NOTHING");
    fx_producer_t *p = fx_producer_new(&fx);
    assert_non_null(p);
    for (int i = 0; i < 3; i++) {
        char id[32];
        snprintf(id, sizeof(id), "rp-%d", i);
        assert_int_equal(fx_produce(p, "ret.in", "k", id, "t", "{}", NULL), 0);
    }
    fx_producer_destroy(p);
    sleep(3);
    /* The events are 3 s old: past a 2 s retention, within 30 days. */
    const char *old_json[] = {"replay", "--trigger",           "r-replay", "--dry-run", "--json",
                              "--set",  "retention.ledger=2s", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), old_json), 0);
    print_message("%s", out);
    assert_non_null(strstr(out, "\"older_than_retention\":3"));
    const char *old_text[] = {"replay", "--trigger",           "r-replay", "--dry-run",
                              "--set",  "retention.ledger=2s", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), old_text), 0);
    print_message("%s", out);
    assert_non_null(strstr(out, "warning: 3 events are older than the ledger's retention "
                                "(retention.ledger = 2s)"));
    assert_non_null(strstr(out, "would run again"));
    const char *from[] = {"replay",    "--trigger",           "r-replay",
                          "--dry-run", "--from-time",         "1h",
                          "--set",     "retention.ledger=2s", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), from), 0);
    assert_non_null(strstr(out, "warning: --from-time is older than the ledger's retention"));
    /* Within the default retention: no warning. */
    const char *young[] = {"replay", "--trigger", "r-replay", "--dry-run", "--json", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), young), 0);
    assert_non_null(strstr(out, "\"older_than_retention\":0"));
    const char *young_text[] = {"replay",      "--trigger", "r-replay", "--dry-run",
                                "--from-time", "1h",        NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), young_text), 0);
    assert_null(strstr(out, "warning"));
}

/* `weft ledger prune`: the ledger and ended replays only, terminal rows
 * only; --dry-run deletes nothing; a duration without a unit is refused. */
static void test_ledger_prune(void **state)
{
    (void)state;
    seed();
    const char *bad[] = {"ledger", "prune", "--older-than", "30", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), bad), 2);
    const char *dry[] = {"ledger", "prune", "--older-than", "30d", "--dry-run", "--json", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), dry), 0);
    print_message("%s", out);
    assert_non_null(strstr(out, "\"dry_run\":true,\"ledger\":250,\"replays\":3,\"running\":2"));
    assert_int_equal(count("SELECT count(*) FROM weft.ledger WHERE trigger = 'r-old'"), 250);
    const char *real[] = {"ledger", "prune", "--older-than", "30d", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), real), 0);
    print_message("%s", out);
    assert_non_null(
        strstr(out, "deleted 250 ledger rows and 3 replays finished more than 30d ago"));
    assert_non_null(strstr(out, "kept 2 ledger rows of that age still running"));
    assert_int_equal(count("SELECT count(*) FROM weft.ledger WHERE trigger = 'r-old'"), 0);
    assert_int_equal(count("SELECT count(*) FROM weft.ledger WHERE trigger = 'r-keep'"), 53);
    assert_int_equal(count("SELECT count(*) FROM weft.replays"), 3);
    /* Dead letters and sagas keep their own retention. */
    assert_int_equal(count("SELECT count(*) FROM weft.dead_letters WHERE trigger = 'r-old'"), 150);
    assert_int_equal(count("SELECT count(*) FROM weft.saga_instances WHERE start_key LIKE 'old-%'"),
                     30);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_batches_terminal_only),
        cmocka_unit_test(test_sweep_skips_locked_rows),
        cmocka_unit_test(test_sweep_plan_uses_indexes),
        cmocka_unit_test(test_ledger_prune),
        cmocka_unit_test(test_dispatchers_sweep),
        cmocka_unit_test(test_replay_warns_older_than_retention),
    };
    return cmocka_run_group_tests_name("retention", tests, group_setup, group_teardown);
}
