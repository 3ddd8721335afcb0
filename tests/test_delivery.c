/*
 * test_delivery.c - the delivery contract on Kafka, against a real
 * PostgreSQL, Apache Kafka (or the mock) and `weft run`: retries counted in
 * the ledger across restarts, dead letters with reasons, re-drive, filters,
 * fan-out, per-key ordering, hot reload of triggers (bounded memory is in
 * test_flow.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "fixture.h"

#define TOPICS                                                                                     \
    "d.poison:1 d.poison.out:1 d.poison.dlq:1 d.backoff:1 d.backoff.out:1 d.backoff.dlq:1 "        \
    "d.fix:1 d.fix.out:1 d.fix.dlq:1 d.fan:2 d.fan.a:1 d.fan.b:1 d.fan.c:1 d.fan.dlq:1 "           \
    "d.hot.out:1 d.ordered:2 d.ordered.out:1 d.ordered.dlq:1 d.swap:1 d.swap.out:1 d.swap.dlq:1"
#define RUN_SET                                                                                    \
    "dispatcher.shutdown_timeout_ms=10000;kafka.session.timeout.ms=6000;"                          \
    "kafka.heartbeat.interval.ms=500;dispatcher.max_event_bytes=4096;"                             \
    "dispatcher.stats_interval_ms=200"

static fx_t fx;
static pid_t run_pid;
static const char *run_log = "run.log"; /* the running dispatcher's */

static int migrate_dirs(int with_later)
{
    char out[4096], d1[700], d2[700];
    snprintf(d1, sizeof(d1), "%s/tests/migrations/delivery", fx.src_dir);
    snprintf(d2, sizeof(d2), "%s/tests/migrations/delivery-later", fx.src_dir);
    const char *a1[] = {"migrate", "--dir", d1, NULL};
    const char *a2[] = {"migrate", "--dir", d1, "--dir", d2, NULL};
    int rc = fx_weft(&fx, out, sizeof(out), with_later ? a2 : a1);
    if (rc != 0)
        fprintf(stderr, "weft migrate failed (%d): %s\n", rc, out);
    return rc;
}

static int group_setup(void **state)
{
    (void)state;
    if (fx_up(&fx, TOPICS) != 0 || migrate_dirs(0) != 0)
        return -1;
    run_pid = fx_run_start(&fx, "run.log", RUN_SET);
    return run_pid > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = run_pid > 0 ? fx_run_stop(run_pid, 20000) : 0;
    fx_down(&fx);
    return rc == 0 ? 0 : -1;
}

/* How long a collector reads on once it has what it waited for. */
#define SETTLE_MS 2000

/* Collects messages of topic until there are want (or timeout), then
 * whatever else arrives within the settle time: a caller comparing the
 * count with want sees copies and strays that come late. */
static size_t collect(const char *topic, size_t want, int timeout_ms, fx_msg_t **msgs)
{
    return fx_collect(&fx, topic, want, timeout_ms, SETTLE_MS, msgs);
}

static const fx_msg_t *by_header(const fx_msg_t *msgs, size_t n, const char *h, const char *v)
{
    for (size_t i = 0; i < n; i++) {
        const char *x = fx_header(&msgs[i], h);
        if (x && strcmp(x, v) == 0)
            return &msgs[i];
    }
    return NULL;
}

/* How many of msgs are results of input id. */
static int count_input(const fx_msg_t *msgs, size_t n, const char *id)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *x = fx_header(&msgs[i], "ce_weftinputid");
        k += x && strcmp(x, id) == 0;
    }
    return k;
}

static void test_poison_dead_letters_after_max_attempts_others_flow(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "d.poison", "k", "poison-1", "t", "{\"fail\":\"retry\"}", NULL),
                     0);
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof(id), "good-%d", i);
        assert_int_equal(fx_produce(p, "d.poison", "k", id, "t", "{\"ok\":1}", NULL), 0);
    }
    assert_int_equal(fx_producer_flush(p), 0);
    fx_msg_t *res;
    size_t rn = collect("d.poison.out", 20, 60000, &res);
    assert_int_equal(rn, 20);
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof(id), "good-%d", i);
        assert_non_null(by_header(res, rn, "ce_weftinputid", id));
    }
    fx_msg_t *dl;
    size_t dn = collect("d.poison.dlq", 1, 60000, &dl);
    assert_int_equal(dn, 1);
    /* The others flowed while the poison event was still retrying: each
     * was completed (on the database's clock) before the poison's last
     * attempt failed, which its backoff (1 s, then 1 s) puts two seconds
     * after its first. Were retries to hold the partition, every one
     * would complete after the poison's last failure. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger g, weft.ledger x"
                                      " WHERE g.trigger = 'd-poison' AND g.key LIKE '%good-%'"
                                      "   AND g.status = 'completed'"
                                      "   AND x.trigger = 'd-poison' AND x.key LIKE '%poison-1'"
                                      "   AND g.updated_at < x.last_failure_at"),
                     20);
    assert_string_equal(fx_header(&dl[0], "ce_id"), "poison-1");
    assert_string_equal(fx_header(&dl[0], "ce_weftreason"), "max_attempts");
    assert_string_equal(fx_header(&dl[0], "ce_weftattempts"), "3");
    assert_non_null(fx_header(&dl[0], "ce_weftfirstfailure"));
    assert_non_null(fx_header(&dl[0], "ce_weftlastfailure"));
    assert_non_null(fx_header(&dl[0], "ce_weftdlqid"));
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE trigger = "
                                      "'d-poison' AND key LIKE '%poison-1'"),
                     3);
    fx_msgs_free(res, rn);
    fx_msgs_free(dl, dn);
    fx_producer_destroy(p);
}

static void test_restart_during_backoff_keeps_attempts(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(
        fx_produce(p, "d.backoff", "k", "slow-retry", "t", "{\"fail\":\"retry\"}", NULL), 0);
    assert_int_equal(fx_producer_flush(p), 0);
    /* Wait for the first failure to be recorded, then restart while the
     * 4 s backoff runs. */
    uint64_t deadline = fx_now_ms() + 30000;
    while (fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'd-backoff' AND "
                            "attempts = 1 AND last_error IS NOT NULL") != 1 &&
           fx_now_ms() < deadline)
        usleep(50000);
    assert_int_equal(fx_run_stop(run_pid, 20000), 0);
    /* Nothing was dead-lettered yet, and the ledger still says attempt 1. */
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE trigger = "
                                      "'d-backoff'"),
                     1);
    run_log = "run-2.log";
    run_pid = fx_run_start(&fx, run_log, RUN_SET);
    assert_true(run_pid > 0);
    fx_msg_t *dl;
    size_t dn = collect("d.backoff.dlq", 1, 60000, &dl);
    assert_int_equal(dn, 1);
    /* Attempts went on from the ledger: 3 in all, not 3 after the restart. */
    assert_string_equal(fx_header(&dl[0], "ce_weftattempts"), "3");
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE trigger = "
                                      "'d-backoff'"),
                     3);
    fx_msgs_free(dl, dn);
    fx_producer_destroy(p);
}

static void test_oversized_message_is_dead_lettered(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    char *big = malloc(6001);
    memset(big, 'x', 6000);
    big[0] = '"';
    big[5999] = '"';
    big[6000] = '\0';
    assert_int_equal(fx_produce(p, "d.poison", "k", "too-big", "t", big, NULL), 0);
    assert_int_equal(fx_producer_flush(p), 0);
    free(big);
    fx_msg_t *dl;
    size_t dn = collect("d.poison.dlq", 2, 60000, &dl);
    const fx_msg_t *m = by_header(dl, dn, "ce_id", "too-big");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce_weftreason"), "oversized");
    assert_int_equal(m->value_len, 6000);
    fx_msgs_free(dl, dn);
    fx_producer_destroy(p);
}

static void test_redrive_after_fix_runs_once(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(
        fx_produce(p, "d.fix", "k", "fix-1", "t", "{\"name\":\"fix me\",\"fail\":\"fatal\"}", NULL),
        0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_msg_t *dl;
    size_t dn = collect("d.fix.dlq", 1, 60000, &dl);
    assert_int_equal(dn, 1);
    assert_string_equal(fx_header(&dl[0], "ce_weftreason"), "non_retryable");
    fx_msgs_free(dl, dn);

    char out[8192];
    const char *list[] = {"dlq", "list", "--trigger", "d-fix", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), list), 0);
    assert_non_null(strstr(out, "non_retryable"));
    assert_non_null(strstr(out, "d.fix/0@0"));
    char *id = fx_sql(&fx, "SELECT id FROM weft.dead_letters WHERE trigger = 'd-fix'");
    assert_non_null(id);
    const char *show[] = {"dlq", "show", id, NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), show), 0);
    assert_non_null(strstr(out, "fix me"));

    /* Fix the function: the catalog reloads and the pool restarts. */
    char *r = fx_sql(&fx, "UPDATE weft.functions SET entry = 'uppercase.so' WHERE name = "
                          "'d-fixable'");
    free(r);
    usleep(1500000);
    const char *redrive[] = {"dlq", "redrive", "--trigger", "d-fix", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), redrive), 0);
    assert_non_null(strstr(out, "re-drove 1 dead letter"));
    fx_msg_t *res;
    size_t rn = collect("d.fix.out", 1, 60000, &res);
    assert_int_equal(rn, 1);
    assert_string_equal(res[0].value, "{\"name\":\"FIX ME\",\"fail\":\"FATAL\"}");
    fx_msgs_free(res, rn);
    /* Recorded, and never re-driven twice. */
    assert_int_equal(fx_weft(&fx, out, sizeof(out), redrive), 0);
    assert_non_null(strstr(out, "nothing to re-drive"));
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'d-fix' AND redriven_at IS NOT NULL"),
                     1);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'd-fix' "
                                      "AND status = 'completed'"),
                     1);
    const char *bad[] = {"dlq", "redrive", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), bad), 2);
    assert_non_null(strstr(out, "--trigger T or --id ID"));
    free(id);
    fx_producer_destroy(p);
}

static void test_retry_runs_in_the_replaced_pool(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(
        fx_produce(p, "d.swap", "k", "swap-1", "t", "{\"name\":\"swap\",\"fail\":\"retry\"}", NULL),
        0);
    assert_int_equal(fx_producer_flush(p), 0);
    uint64_t deadline = fx_now_ms() + 30000;
    while (fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'd-swap' AND "
                            "last_error IS NOT NULL") != 1 &&
           fx_now_ms() < deadline)
        usleep(50000);
    /* A new version of the function while the retry waits: the retry must
     * run in the new pool, not fail for want of the old one. */
    char *r = fx_sql(&fx, "UPDATE weft.functions SET entry = 'uppercase.so' WHERE name = "
                          "'d-swap'");
    free(r);
    fx_msg_t *res;
    size_t rn = collect("d.swap.out", 1, 30000, &res);
    assert_int_equal(rn, 1);
    assert_string_equal(res[0].value, "{\"name\":\"SWAP\",\"fail\":\"RETRY\"}");
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE trigger = 'd-swap'"),
                     2);
    fx_msgs_free(res, rn);
    fx_producer_destroy(p);
}

static void test_fan_out_and_filters(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    const char *eu[] = {"ce_subject=orders/7", "ce_region=eu", NULL};
    const char *us[] = {"ce_subject=orders/8", "ce_region=us", NULL};
    assert_int_equal(fx_produce(p, "d.fan", "a", "fan-1", "t", "{\"name\":\"one\"}", eu), 0);
    assert_int_equal(fx_produce(p, "d.fan", "b", "fan-2", "t", "{\"name\":\"two\"}", us), 0);
    assert_int_equal(fx_producer_flush(p), 0);
    /* Everything each result topic holds within the settle time (after
     * the results a and b wait for, so c's result had time to come). */
    fx_msg_t *a, *b, *c;
    size_t an = collect("d.fan.a", 2, 60000, &a);
    size_t bn = collect("d.fan.b", 2, 60000, &b);
    size_t cn = collect("d.fan.c", 1, 5000, &c);
    assert_int_equal(an, 2);
    assert_int_equal(bn, 2);
    /* Both inputs on a and b, once each. */
    assert_int_equal(count_input(a, an, "fan-1"), 1);
    assert_int_equal(count_input(a, an, "fan-2"), 1);
    assert_int_equal(count_input(b, bn, "fan-1"), 1);
    assert_int_equal(count_input(b, bn, "fan-2"), 1);
    /* Only the eu order passes subject prefix AND region. */
    assert_int_equal(cn, 1);
    assert_int_equal(count_input(c, cn, "fan-1"), 1);
    assert_int_equal(count_input(c, cn, "fan-2"), 0);
    /* The ledger agrees: the filtered trigger never claimed fan-2. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = "
                                      "'d-fan-filtered'"),
                     1);
    const fx_msg_t *ra = by_header(a, an, "ce_weftinputid", "fan-1");
    const fx_msg_t *rb = by_header(b, bn, "ce_weftinputid", "fan-1");
    assert_non_null(ra);
    assert_non_null(rb);
    assert_string_equal(ra->value, "{\"name\":\"ONE\"}");
    assert_string_equal(rb->value, "{\"name\":\"one\"}");
    /* Each trigger is its own idempotency scope with its own result id. */
    char ida[64];
    snprintf(ida, sizeof(ida), "%s", fx_header(ra, "ce_id"));
    assert_string_not_equal(ida, fx_header(rb, "ce_id"));
    fx_msgs_free(a, an);
    fx_msgs_free(b, bn);
    fx_msgs_free(c, cn);
    fx_producer_destroy(p);
}

static void test_hot_reload_adds_a_trigger(void **state)
{
    (void)state;
    /* The producer is up and has delivered once before the migration, so
     * its own start (metadata, producer id) is not measured. */
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "d.fan", "h", "hot-warmup", "t", "{\"name\":\"warm\"}", NULL),
                     0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_consumer_t *c = fx_consumer_new(&fx, "d.hot.out");
    assert_int_equal(migrate_dirs(1), 0);
    uint64_t t0 = fx_now_ms();
    /* Publish every ~50 ms until the new trigger fires (it must, without a
     * restart). */
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    size_t w = 1;
    int i = 0;
    while (n == 0 && fx_now_ms() - t0 < 30000) {
        char id[32];
        snprintf(id, sizeof(id), "hot-%d", i++);
        assert_int_equal(fx_produce(p, "d.fan", "h", id, "t", "{\"name\":\"hot\"}", NULL), 0);
        assert_int_equal(fx_producer_flush(p), 0);
        fx_consume_until(c, &msgs, &n, &cap, fx_have_n, &w, 50);
    }
    assert_true(n >= 1);
    /* From the commit of the migration to the first claim of the new
     * trigger, both on the database's clock. */
    long ms = fx_sql_long(&fx, "SELECT (extract(epoch FROM (SELECT min(created_at) FROM "
                               "weft.ledger WHERE trigger = 'd-hot') - applied_at) * 1000)::bigint"
                               " FROM weft.schema_migrations WHERE name = '3002_hot_trigger.sql'");
    print_message("new trigger fired %ld ms after its migration was applied (events published "
                  "every ~50 ms)\n",
                  ms);
    assert_true(ms >= 0 && ms < 5000);
    assert_string_equal(msgs[0].value, "{\"name\":\"HOT\"}");
    fx_msgs_free(msgs, n);
    fx_consumer_destroy(c);
    fx_producer_destroy(p);
}

static void test_ordered_trigger_keeps_order_per_key(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    const int N = 12;
    /* Earlier events sleep longer: an unordered pool of 4 would finish
     * them out of order. */
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 2; k++) {
            char id[32], data[96], key[8];
            snprintf(id, sizeof(id), "ord-%d-%d", k, i);
            snprintf(key, sizeof(key), "key%d", k);
            snprintf(data, sizeof(data), "{\"fail\":\"sleep-%d\",\"n\":%d}", 5 + (N - i) * 12, i);
            assert_int_equal(fx_produce(p, "d.ordered", key, id, "t", data, NULL), 0);
        }
    }
    assert_int_equal(fx_producer_flush(p), 0);
    fx_msg_t *res;
    size_t rn = collect("d.ordered.out", (size_t)(2 * N), 60000, &res);
    assert_int_equal(rn, (size_t)(2 * N));
    int last[2] = {-1, -1};
    for (size_t i = 0; i < rn; i++) {
        const char *in = fx_header(&res[i], "ce_weftinputid");
        assert_non_null(in);
        int k = in[4] - '0';
        int n = atoi(in + 6);
        assert_true(n > last[k]);
        last[k] = n;
    }
    assert_int_equal(last[0], N - 1);
    assert_int_equal(last[1], N - 1);
    fx_msgs_free(res, rn);
    fx_producer_destroy(p);
}

static int has_input_id(const fx_msg_t *msgs, size_t n, void *ctx)
{
    return by_header(msgs, n, "ce_weftinputid", ctx) != NULL;
}

/* Publishes event id to d.poison and collects d.poison.out until its
 * result is there (or timeout): the result, or NULL. */
static const fx_msg_t *poison_result(const char *id, const char *data, int timeout_ms,
                                     fx_msg_t **res, size_t *rn)
{
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "d.poison", "k", id, "t", data, NULL), 0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_producer_destroy(p);
    fx_consumer_t *c = fx_consumer_new(&fx, "d.poison.out");
    size_t cap = 0;
    *res = NULL;
    *rn = 0;
    fx_consume_until(c, res, rn, &cap, has_input_id, (void *)id, timeout_ms);
    fx_consumer_destroy(c);
    return by_header(*res, *rn, "ce_weftinputid", id);
}

/* The value of " name=" in the line (-1 when absent). */
static long stat_field(const char *line, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), " %s=", name);
    const char *at = strstr(line, key);
    return at ? strtol(at + strlen(key), NULL, 10) : -1;
}

/* Part `which` (0 p50, 1 p99, 2 max) of " name=p50/p99/max" in
 * milliseconds; -1 when the field is absent, -2 when it is "-" (nothing
 * measured in the interval). */
static double stat_ms(const char *line, const char *name, int which)
{
    char key[64];
    snprintf(key, sizeof(key), " %s=", name);
    const char *at = strstr(line, key);
    if (!at)
        return -1;
    at += strlen(key);
    if (*at == '-')
        return -2;
    for (int i = 0; i < which; i++) {
        at = strchr(at, '/');
        if (!at)
            return -1;
        at++;
    }
    return strtod(at, NULL);
}

/* The stats line says where the jobs in flight are: an event whose
 * function sleeps is counted as running while it runs, and once its
 * result is out no stage holds anything. It also says how long the jobs
 * that left each stage in the interval spent there: the sleep shows in
 * `run_ms` and `total_ms`, and an interval in which nothing ran says
 * "-". */
static void test_stats_line_shows_where_jobs_wait(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", fx.state_dir, run_log);
    /* Only the lines written from now on: earlier tests left work. */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long from = ftell(f);
    fx_msg_t *res;
    size_t rn;
    assert_non_null(poison_result("stage-1", "{\"fail\":\"sleep-1500\"}", 60000, &res, &rn));
    usleep(600000); /* a few more stats lines (every 200 ms here) */

    assert_int_equal(fseek(f, from, SEEK_SET), 0);
    char line[4096];
    long max_running = 0, stats_lines = 0;
    long last[4] = {-1, -1, -1, -1};
    static const char *const stage[4] = {"claiming", "running", "recording", "producing"};
    /* the most each timed stage reported, and its last value */
    static const char *const timed[6] = {"age_ms",    "claim_ms",   "run_ms",
                                         "record_ms", "produce_ms", "total_ms"};
    double most[6] = {-1, -1, -1, -1, -1, -1}, last_ms[6] = {0};
    while (fgets(line, sizeof(line), f)) {
        if (!strstr(line, " stats consumed="))
            continue;
        stats_lines++;
        for (int i = 0; i < 4; i++)
            last[i] = stat_field(line, stage[i]);
        if (last[1] > max_running)
            max_running = last[1];
        for (int i = 0; i < 6; i++) {
            last_ms[i] = stat_ms(line, timed[i], 2);
            assert_true(last_ms[i] != -1); /* always present */
            if (last_ms[i] > most[i])
                most[i] = last_ms[i];
        }
    }
    fclose(f);
    assert_true(stats_lines > 5);
    /* 1.5 s in the function: several lines saw it running. */
    assert_int_equal(max_running, 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(last[i], 0);
    print_message("most per stage (ms): age %.2f claim %.2f run %.1f record %.2f produce %.2f "
                  "total %.1f\n",
                  most[0], most[1], most[2], most[3], most[4], most[5]);
    /* Every stage timed the event; the sleep is in run and total only. */
    for (int i = 0; i < 6; i++)
        assert_true(most[i] >= 0);
    assert_true(most[2] >= 1500 && most[2] < 3000);
    assert_true(most[5] >= most[2]);
    assert_true(most[1] < 1500 && most[3] < 1500 && most[4] < 1500);
    assert_true(most[0] < 5000); /* consumed within seconds of its publication */
    /* The last interval ran nothing: its line says so. */
    assert_true(last_ms[2] == -2);
    fx_msgs_free(res, rn);
}

#define HEARTBEAT_WAITING                                                                          \
    "FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE "                         \
    "'INSERT INTO weft.dispatchers%'"

/* Locks the dispatcher's row in weft.dispatchers in an open transaction
 * (as an operator's psql session might) and waits until the dispatcher's
 * heartbeat, about once a second, waits for that lock. Returns the
 * holding connection; *backend is the waiting heartbeat's backend pid. */
static PGconn *hold_heartbeat(long *backend)
{
    PGconn *hold = PQconnectdb(fx.pg);
    assert_int_equal(PQstatus(hold), CONNECTION_OK);
    PQclear(PQexec(hold, "BEGIN"));
    PGresult *r = PQexec(hold, "SELECT owner FROM weft.dispatchers FOR UPDATE");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    PQclear(r);
    uint64_t deadline = fx_now_ms() + 10000;
    long waiting = 0;
    while ((waiting = fx_sql_long(&fx, "SELECT count(*) " HEARTBEAT_WAITING)) == 0 &&
           fx_now_ms() < deadline)
        usleep(20000);
    assert_int_equal(waiting, 1);
    *backend = fx_sql_long(&fx, "SELECT pid " HEARTBEAT_WAITING);
    return hold;
}

static void release_heartbeat(PGconn *hold)
{
    PGresult *r = PQexec(hold, "COMMIT");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(hold);
}

/* Waits up to 10 s for a reload that logs d-swap with max_attempts. */
static void assert_reloaded_with_max_attempts(int max_attempts)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "name=d-swap .*max_attempts=%d", max_attempts);
    assert_true(fx_log_wait(&fx, run_log, needle, 10000));
}

/* The dispatcher's heartbeat row is held by a lock (an operator's open
 * transaction, say). Events still flow meanwhile, and a change of the
 * catalog that commits meanwhile is applied: its notification reaches the
 * dispatcher's catalog connection together with the heartbeat's result. */
static void test_a_held_heartbeat_holds_up_nothing(void **state)
{
    (void)state;
    long backend;
    PGconn *hold = hold_heartbeat(&backend);
    /* An event runs while the heartbeat waits. */
    fx_msg_t *res;
    size_t rn;
    const fx_msg_t *m = poison_result("held-1", "{\"name\":\"held\"}", 30000, &res, &rn);
    assert_non_null(m);
    assert_string_equal(m->value, "{\"name\":\"held\"}"); /* faulty.so echoes */
    fx_msgs_free(res, rn);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) " HEARTBEAT_WAITING), 1);
    /* A change of the catalog commits while the heartbeat still waits. */
    free(fx_sql(&fx, "UPDATE weft.triggers SET max_attempts = 7 WHERE name = 'd-swap'"));
    release_heartbeat(hold);
    assert_reloaded_with_max_attempts(7);
}

/* The catalog connection's backend is terminated while a heartbeat is in
 * flight on it: the dispatcher connects again, its heartbeat comes back,
 * and it hears catalog changes again. */
static void test_a_lost_catalog_connection_comes_back(void **state)
{
    (void)state;
    long backend;
    PGconn *hold = hold_heartbeat(&backend);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)", backend);
    char *v = fx_sql(&fx, sql);
    assert_non_null(v);
    assert_string_equal(v, "t");
    free(v);
    release_heartbeat(hold);
    char *t0 = fx_sql(&fx, "SELECT clock_timestamp()::text");
    assert_non_null(t0);
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM weft.dispatchers WHERE heartbeat_at > '%s'",
             t0);
    free(t0);
    uint64_t deadline = fx_now_ms() + 10000;
    while (fx_sql_long(&fx, sql) != 1 && fx_now_ms() < deadline)
        usleep(100000);
    assert_int_equal(fx_sql_long(&fx, sql), 1);
    free(fx_sql(&fx, "UPDATE weft.triggers SET max_attempts = 8 WHERE name = 'd-swap'"));
    assert_reloaded_with_max_attempts(8);
}

/* The pid in STATE/postgres.pid: the stack's postmaster. */
static pid_t postmaster_pid(void)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/postgres.pid", fx.state_dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

/* PostgreSQL takes new connections and answers none (its postmaster is
 * stopped; running backends go on), and the dispatcher's connections are
 * cut. It connects again without waiting for PostgreSQL on its loop, so
 * SIGTERM still stops it within its shutdown timeout. Once PostgreSQL
 * answers again, a new dispatcher runs events. */
static void test_an_unanswering_postgresql_holds_up_no_shutdown(void **state)
{
    (void)state;
    PGconn *admin = PQconnectdb(fx.pg);
    assert_int_equal(PQstatus(admin), CONNECTION_OK);
    pid_t pm = postmaster_pid();
    assert_true(pm > 1);
    assert_int_equal(kill(pm, SIGSTOP), 0);
    PGresult *r = PQexec(admin, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                " WHERE backend_type = 'client backend'"
                                "   AND pid <> pg_backend_pid()");
    long cut = PQresultStatus(r) == PGRES_TUPLES_OK ? strtol(PQgetvalue(r, 0, 0), NULL, 10) : -1;
    PQclear(r);
    /* An event makes the ledger connect again; the heartbeat makes the
     * catalog connection do so within a second. */
    fx_producer_t *p = fx_producer_new(&fx);
    int produced = fx_produce(p, "d.poison", "k", "unanswered-1", "t", "{}", NULL) == 0 &&
                   fx_producer_flush(p) == 0;
    fx_producer_destroy(p);
    usleep(3000 * 1000);
    uint64_t t0 = fx_now_ms();
    int rc = fx_run_stop(run_pid, 25000); /* SIGTERM; SIGKILL after 25 s */
    uint64_t took = fx_now_ms() - t0;
    kill(pm, SIGCONT);
    PQfinish(admin);
    run_log = "run-3.log";
    run_pid = fx_run_start(&fx, run_log, RUN_SET);
    print_message("cut %ld connections; SIGTERM to exit: %llu ms, status %d\n", cut,
                  (unsigned long long)took, rc);
    assert_true(cut >= 3); /* the catalog's and the ledger's, at least */
    assert_true(produced);
    assert_int_equal(rc, 0);
    assert_true(took < 20000); /* shutdown_timeout_ms is 10000 */
    assert_true(run_pid > 0);
    fx_msg_t *res;
    size_t rn;
    assert_non_null(poison_result("unanswered-2", "{\"name\":\"back\"}", 60000, &res, &rn));
    fx_msgs_free(res, rn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poison_dead_letters_after_max_attempts_others_flow),
        cmocka_unit_test(test_restart_during_backoff_keeps_attempts),
        cmocka_unit_test(test_oversized_message_is_dead_lettered),
        cmocka_unit_test(test_redrive_after_fix_runs_once),
        cmocka_unit_test(test_retry_runs_in_the_replaced_pool),
        cmocka_unit_test(test_fan_out_and_filters),
        cmocka_unit_test(test_hot_reload_adds_a_trigger),
        cmocka_unit_test(test_ordered_trigger_keeps_order_per_key),
        cmocka_unit_test(test_stats_line_shows_where_jobs_wait),
        cmocka_unit_test(test_a_held_heartbeat_holds_up_nothing),
        cmocka_unit_test(test_a_lost_catalog_connection_comes_back),
        cmocka_unit_test(test_an_unanswering_postgresql_holds_up_no_shutdown),
    };
    return cmocka_run_group_tests_name("delivery", tests, group_setup, group_teardown);
}
