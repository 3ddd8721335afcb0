/*
 * test_promises.c - promises of the README that no other test checked,
 * against a real PostgreSQL, Apache Kafka (or the mock) and `weft run` as
 * real children: max_event_age_ms expiry, the drop disposition end to
 * end, a function's retry_after_ms, a clean SIGTERM that drains and
 * commits (nothing re-runs after a restart), two dispatchers sharing one
 * group and one ledger, and `weft migrate --dry-run`.
 *
 * Every count is of what arrived within a settle time, never "until N".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checker.h"
#include "fixture.h"

#define TOPICS                                                                                     \
    "p.age:1 p.age.out:1 p.age.dlq:1 p.drop:1 p.drop.out:1 p.drop.dlq:1 p.after:1 "                \
    "p.after.out:1 p.after.dlq:1 p.drain:4 p.drain.out:4 p.drain.dlq:1 p.pair:4 p.pair.out:4 "     \
    "p.pair.dlq:1"
#define RUN_SET                                                                                    \
    "dispatcher.shutdown_timeout_ms=20000;kafka.session.timeout.ms=6000;"                          \
    "kafka.heartbeat.interval.ms=500"
/* How long a collector reads on once it has what it waited for. */
#define SETTLE_MS 3000

static fx_t fx;
static pid_t run_pid;

static int group_setup(void **state)
{
    (void)state;
    if (fx_check_setup(&fx, TOPICS, 1, "promises") != 0)
        return -1;
    run_pid = fx_run_start(&fx, "run.log", RUN_SET);
    return run_pid > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    fx_run_kill_all();
    fx_down(&fx);
    return 0;
}

/* Messages of topic: until there are want (or timeout), then whatever
 * else arrives within the settle time. */
static size_t collect(const char *topic, size_t want, int timeout_ms, fx_msg_t **msgs)
{
    return fx_collect(&fx, topic, want, timeout_ms, SETTLE_MS, msgs);
}

/* Waits (up to 60 s) until the group's lag on topic is zero; returns it. */
static long lag_drains(const char *topic)
{
    uint64_t deadline = fx_now_ms() + 60000;
    long lag;
    while ((lag = fx_group_lag(&fx, FX_CHECK_GROUP, topic)) != 0 && fx_now_ms() < deadline)
        usleep(250000);
    return lag;
}

/* A binary-mode CloudEvent (as fx_produce) with the broker timestamp
 * ts_ms (CreateTime: the broker keeps what the producer says). */
static void produce_at(const char *topic, const char *id, const char *data, int64_t ts_ms)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", fx.brokers, err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    assert_non_null(rk);
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
    rd_kafka_header_add(h, "ce_id", -1, id, -1);
    rd_kafka_header_add(h, "ce_source", -1, "/weft/tests", -1);
    rd_kafka_header_add(h, "ce_type", -1, "t", -1);
    rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("k", 1),
        RD_KAFKA_V_VALUE((void *)data, strlen(data)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_TIMESTAMP(ts_ms), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(h);
    assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* max_event_age_ms: events whose broker timestamp is older than the
 * trigger's bound are dead-lettered with reason `expired` and never run;
 * fresh events beside them run. */
static void test_old_events_expire(void **state)
{
    (void)state;
    int64_t now = wall_ms();
    /* Ten minutes old against a bound of one minute; interleaved. */
    produce_at("p.age", "old-1", "{\"n\":1}", now - 600000);
    produce_at("p.age", "new-1", "{\"n\":2}", now);
    produce_at("p.age", "old-2", "{\"n\":3}", now - 600000);
    produce_at("p.age", "new-2", "{\"n\":4}", now);
    produce_at("p.age", "old-3", "{\"n\":5}", now - 600000);

    fx_msg_t *dl, *res;
    size_t dn = collect("p.age.dlq", 3, 60000, &dl);
    size_t rn = collect("p.age.out", 2, 30000, &res);
    assert_int_equal(dn, 3);
    assert_int_equal(rn, 2);
    for (int i = 1; i <= 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "old-%d", i);
        assert_int_equal(fx_count_header(dl, dn, "ce_id", id), 1);
    }
    assert_int_equal(fx_count_header(dl, dn, "ce_weftreason", "expired"), 3);
    assert_non_null(strstr(fx_header(&dl[0], "ce_wefterror"), "max_event_age_ms=60000"));
    assert_int_equal(fx_count_header(res, rn, "ce_weftinputid", "new-1"), 1);
    assert_int_equal(fx_count_header(res, rn, "ce_weftinputid", "new-2"), 1);
    /* Recorded as dead with their reason; the function never ran. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'p-age' AND reason = 'expired'"),
                     3);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'p-age' "
                                      "AND key LIKE '%old-%' AND status <> 'dead'"),
                     0);
    assert_int_equal(lag_drains("p.age"), 0);
    fx_msgs_free(dl, dn);
    fx_msgs_free(res, rn);
}

/* WEFT_DROP end to end: the ledger says dropped, the input is
 * acknowledged (the group's offset passes it), and nothing reaches the
 * result or the dead-letter topic; the event after it runs as usual. */
static void test_drop_acknowledges_without_a_result(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "p.drop", "k", "drop-1", "t", "{\"fail\":\"drop\"}", NULL), 0);
    assert_int_equal(fx_produce(p, "p.drop", "k", "keep-1", "t", "{\"keep\":1}", NULL), 0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_producer_destroy(p);
    fx_msg_t *res, *dl;
    size_t rn = collect("p.drop.out", 1, 60000, &res);
    assert_int_equal(rn, 1);
    assert_string_equal(fx_header(&res[0], "ce_weftinputid"), "keep-1");
    /* Both are recorded (the result came after the drop was recorded or
     * at the same time: wait for the ledger, not the clock). */
    uint64_t deadline = fx_now_ms() + 30000;
    while (fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'p-drop' AND "
                            "status IN ('dropped', 'completed')") != 2 &&
           fx_now_ms() < deadline)
        usleep(100000);
    char *st = fx_sql(&fx, "SELECT status || '/' || attempts FROM weft.ledger WHERE trigger = "
                           "'p-drop' AND key LIKE '%drop-1'");
    assert_non_null(st);
    assert_string_equal(st, "dropped/1");
    free(st);
    assert_int_equal(lag_drains("p.drop"), 0);
    size_t dn = collect("p.drop.dlq", 0, 0, &dl);
    assert_int_equal(dn, 0);
    assert_int_equal(
        fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = 'p-drop'"), 0);
    fx_msgs_free(res, rn);
    fx_msgs_free(dl, dn);
}

/* retry_after_ms: the function asks for its retry 1500 ms later, the
 * trigger's backoff is 10 ms; the second attempt fails no sooner than
 * 1500 ms after the first (the ledger's failure times, the database's
 * clock). */
static void test_retry_waits_the_functions_retry_after(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "p.after", "k", "after-1", "t", "{\"fail\":\"retry\"}", NULL),
                     0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_producer_destroy(p);
    fx_msg_t *dl;
    size_t dn = collect("p.after.dlq", 1, 60000, &dl);
    assert_int_equal(dn, 1);
    assert_string_equal(fx_header(&dl[0], "ce_weftreason"), "max_attempts");
    assert_string_equal(fx_header(&dl[0], "ce_weftattempts"), "2");
    long gap = fx_sql_long(&fx, "SELECT (extract(epoch FROM last_failure_at - first_failure_at)"
                                " * 1000)::bigint FROM weft.ledger WHERE trigger = 'p-after'");
    print_message("second failure %ld ms after the first (retry_after_ms=1500, backoff 10 ms)\n",
                  gap);
    assert_true(gap >= 1500);
    fx_msgs_free(dl, dn);
}

/* A clean SIGTERM in the middle of a backlog: the dispatcher finishes what
 * it holds, commits it and exits 0. Nothing it finished is left in the
 * ledger unfinished or uncommitted, so a new dispatcher re-runs nothing:
 * every input one result message (a redelivered input would be re-emitted:
 * a second copy), every ledger row one attempt. */
static void test_sigterm_drains_and_commits(void **state)
{
    (void)state;
    const int N = 60;
    fx_producer_t *p = fx_producer_new(&fx);
    /* 200 ms each, a pool of 2 and an in-flight bound of 8: six seconds
     * of work, most of it still on the broker when the stop comes. */
    fx_check_publish_all(p, "p.drain", "drain", "sleep-200", 0, N);
    fx_producer_destroy(p);
    uint64_t deadline = fx_now_ms() + 60000;
    while (fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'p-drain' AND "
                            "status = 'completed'") < 6 &&
           fx_now_ms() < deadline)
        usleep(20000);
    long running = fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'p-drain' "
                                    "AND status = 'running'");
    assert_int_equal(fx_run_stop(run_pid, 30000), 0);
    run_pid = 0;
    long rows = fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'p-drain'");
    fx_kafka_offsets_t o;
    assert_int_equal(fx_kafka_group_offsets(&fx, FX_CHECK_GROUP, "p.drain", &o), 0);
    long committed = 0;
    for (int i = 0; i < o.partitions; i++)
        committed += o.committed[i] >= 0 ? (long)(o.committed[i] - o.low[i]) : 0;
    print_message("at SIGTERM %ld running; after it %ld ledger rows, %ld committed of %d\n",
                  running, rows, committed, N);
    assert_true(running > 0); /* work was in flight when the stop came */
    assert_true(rows < N);    /* and the stop came mid-backlog */
    /* Drained: everything claimed was finished ... */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = "
                                      "'p-drain' AND status <> 'completed'"),
                     0);
    /* ... and committed: each partition's offset passes exactly what the
     * ledger holds (inputs are keyed, so one partition's finished inputs
     * are a prefix of it only when committed in order: the sum agrees). */
    assert_int_equal(committed, rows);

    run_pid = fx_run_start(&fx, "run-2.log", RUN_SET);
    assert_true(run_pid > 0);
    fx_check_spec_t spec = {.pfx = "drain",
                            .n = N,
                            .in_topic = "p.drain",
                            .out_topic = "p.drain.out",
                            .dlq_topic = "p.drain.dlq",
                            .trigger = "p-drain",
                            .group = FX_CHECK_GROUP,
                            .timeout_ms = 90000,
                            .settle_ms = SETTLE_MS};
    fx_check_t r;
    assert_int_equal(fx_check_run(&fx, &spec, &r), 0);
    fx_check_print("sigterm", &r);
    fx_check_assert(&r, N, 1);
    /* No input came back to the new dispatcher: no copy of any result. */
    assert_int_equal(r.result_msgs, N);
    assert_int_equal(fx_run_stop(run_pid, 30000), 0);
    run_pid = 0;
}

/* Two dispatchers in one consumer group share one topic's partitions and
 * one ledger: both run events, every input has exactly one result, no key
 * is claimed twice, and the group's lag drains. */
static void test_two_dispatchers_share_the_work(void **state)
{
    (void)state;
    const int N = 400;
    pid_t a = fx_run_start(&fx, "run-a.log", RUN_SET);
    assert_true(a > 0);
    assert_true(fx_log_wait(&fx, "run-a.log", "partition assigned topic=p.pair", 60000));
    pid_t b = fx_run_start(&fx, "run-b.log", RUN_SET);
    assert_true(b > 0);
    /* The second member's join moves part of the topic to it. */
    assert_true(fx_log_wait(&fx, "run-b.log", "partition assigned topic=p.pair", 60000));
    fx_producer_t *p = fx_producer_new(&fx);
    fx_check_publish_all(p, "p.pair", "pair", "sleep-10", 0, N);
    fx_producer_destroy(p);
    fx_check_spec_t spec = {.pfx = "pair",
                            .n = N,
                            .in_topic = "p.pair",
                            .out_topic = "p.pair.out",
                            .dlq_topic = "p.pair.dlq",
                            .trigger = "p-pair",
                            .group = FX_CHECK_GROUP,
                            .timeout_ms = 90000,
                            .settle_ms = SETTLE_MS};
    fx_check_t r;
    assert_int_equal(fx_check_run(&fx, &spec, &r), 0);
    fx_check_print("two dispatchers", &r);
    fx_check_assert(&r, N, 1);
    assert_int_equal(r.result_msgs, N);
    /* Both ran events: the ledger's owners are the two dispatchers. */
    long owners = fx_sql_long(&fx, "SELECT count(DISTINCT owner) FROM weft.ledger WHERE trigger"
                                   " = 'p-pair'");
    long least = fx_sql_long(&fx, "SELECT min(c) FROM (SELECT count(*) AS c FROM weft.ledger "
                                  "WHERE trigger = 'p-pair' GROUP BY owner) x");
    print_message("%ld owners; the smaller share ran %ld of %d\n", owners, least, N);
    assert_int_equal(owners, 2);
    assert_true(least > 0);
    assert_int_equal(fx_run_stop(a, 30000), 0);
    assert_int_equal(fx_run_stop(b, 30000), 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* `weft migrate --dry-run` names what it would apply and applies nothing;
 * a real run then applies it; a dry run after that has nothing to do, and
 * one over an applied file that was edited refuses, as a real run would. */
static void test_migrate_dry_run_applies_nothing(void **state)
{
    (void)state;
    char dir[400], file[500], out[8192];
    snprintf(dir, sizeof(dir), "%s/dry-migrations", fx.state_dir);
    assert_true(mkdir(dir, 0755) == 0 || access(dir, F_OK) == 0);
    snprintf(file, sizeof(file), "%s/8101_dry.sql", dir);
    write_file(file, "CREATE TABLE public.dry_probe (x int);\n");
    const char *dry[] = {"migrate", "--dir", dir, "--dry-run", NULL};
    const char *wet[] = {"migrate", "--dir", dir, NULL};

    assert_int_equal(fx_weft(&fx, out, sizeof(out), dry), 0);
    assert_non_null(strstr(out, "would apply"));
    assert_non_null(strstr(out, "8101_dry.sql"));
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.schema_migrations WHERE name = "
                                      "'8101_dry.sql'"),
                     0);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM pg_class WHERE relname = "
                                      "'dry_probe'"),
                     0);

    assert_int_equal(fx_weft(&fx, out, sizeof(out), wet), 0);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.schema_migrations WHERE name = "
                                      "'8101_dry.sql'"),
                     1);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM pg_class WHERE relname = "
                                      "'dry_probe'"),
                     1);
    assert_int_equal(fx_weft(&fx, out, sizeof(out), dry), 0);
    assert_null(strstr(out, "would apply"));

    /* An applied file edited: the dry run refuses too. */
    write_file(file, "CREATE TABLE public.dry_probe (x int, y int);\n");
    assert_int_not_equal(fx_weft(&fx, out, sizeof(out), dry), 0);
    assert_non_null(strstr(out, "edited after it was applied"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_events_expire),
        cmocka_unit_test(test_drop_acknowledges_without_a_result),
        cmocka_unit_test(test_retry_waits_the_functions_retry_after),
        cmocka_unit_test(test_sigterm_drains_and_commits),
        cmocka_unit_test(test_two_dispatchers_share_the_work),
        cmocka_unit_test(test_migrate_dry_run_applies_nothing),
    };
    return cmocka_run_group_tests_name("promises", tests, group_setup, group_teardown);
}
