/*
 * test_kafka_faults.c - the delivery contract on a real Apache Kafka broker
 * under the faults only a real cluster allows: consumer-group rebalances
 * under load (a member joins, one leaves cleanly, one is killed with
 * SIGKILL), the broker restarted under load, a result topic that does
 * not exist while the broker's auto-creation is off, and a fatal client
 * error (a fenced static member), which must exit 1.
 *
 * Every test ends with the same checker (checker.h): each input has exactly
 * one distinct result id and its own body, nothing is lost, attempts stay
 * within max_attempts, the group's committed offsets reach the end of the
 * input (lag drains to zero), and no good input is dead-lettered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checker.h"
#include "fixture.h"

#define TOPICS                                                                                     \
    "rb.in:8 rb.out:4 rb.dlq:1 br.in:4 br.out:4 br.dlq:1 mt.in:2 mt.dlq:1 kr.in:4 kr.out:4 "       \
    "kr.dlq:1 kp.in:1 kp.out:1 kp.dlq:1"

static fx_t fx;

static int group_setup(void **state)
{
    (void)state;
    return fx_check_setup(&fx, TOPICS, 1, "faults");
}

static int group_teardown(void **state)
{
    (void)state;
    fx_down(&fx);
    return 0;
}

/* The contract, for a run in which no input was poison. */
/* Two dispatchers share the group; while 20,000 events flow a third joins,
 * one leaves with SIGTERM and one is killed with SIGKILL. The revoked
 * partitions' work in flight must not give any input a second result id,
 * and what the killed member had claimed is taken over once its lease
 * runs out, within max_attempts. */
static void test_rebalance_under_load(void **state)
{
    (void)state;
    fx_check_need_apache(&fx);
    const int N = 20000, CHUNK = N / 4;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_non_null(p);
    pid_t a = fx_run_start(&fx, "rb-a.log", FX_CHECK_RUN_SET);
    pid_t b = fx_run_start(&fx, "rb-b.log", FX_CHECK_RUN_SET);
    assert_true(a > 0 && b > 0);
    assert_true(fx_log_wait(&fx, "rb-a.log", "partition assigned", 60000));
    assert_true(fx_log_wait(&fx, "rb-b.log", "partition assigned", 60000));

    fx_check_publish_all(p, "rb.in", "rb", FX_CHECK_SLOW, 0, CHUNK);
    pid_t c = fx_run_start(&fx, "rb-c.log", FX_CHECK_RUN_SET);
    assert_true(c > 0);
    fx_check_publish_all(p, "rb.in", "rb", FX_CHECK_SLOW, CHUNK, 2 * CHUNK);
    assert_true(fx_log_wait(&fx, "rb-c.log", "partition assigned", 60000));
    /* The work is still flowing when the members change. */
    long done = fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'rb' "
                                 "AND status = 'completed'");
    print_message("completed when the third member had joined: %ld of %d\n", done, 2 * CHUNK);
    assert_true(done < 2 * CHUNK);

    assert_int_equal(fx_run_stop(a, 30000), 0);
    fx_check_publish_all(p, "rb.in", "rb", FX_CHECK_SLOW, 2 * CHUNK, 3 * CHUNK);
    usleep(500000);
    fx_run_kill9(b);
    fx_check_publish_all(p, "rb.in", "rb", FX_CHECK_SLOW, 3 * CHUNK, N);

    fx_check_spec_t spec = {"rb",           N,      "rb.in", "rb.out", "rb.dlq", "rb",
                            FX_CHECK_GROUP, 180000, 3000};
    fx_check_t r;
    assert_int_equal(fx_check_run(&fx, &spec, &r), 0);
    fx_check_print("rebalance", &r);
    print_message("result copies beyond one per input (same id, re-emitted): %ld\n",
                  r.result_msgs - r.with_result);
    fx_check_assert(&r, N, 3);
    assert_int_equal(fx_run_stop(c, 30000), 0);
    fx_producer_destroy(p);
}

/* The single broker stopped and started again (same data, same port)
 * while events flow: the dispatcher rides it out, nothing is lost, run
 * twice or dead-lettered. */
static void test_broker_restart_under_load(void **state)
{
    (void)state;
    fx_check_need_apache(&fx);
    const int N = 6000;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_non_null(p);
    pid_t d = fx_run_start(&fx, "br.log", FX_CHECK_RUN_SET);
    assert_true(d > 0);
    assert_true(fx_log_wait(&fx, "br.log", "partition assigned topic=br.in", 60000));
    fx_check_publish_all(p, "br.in", "br", FX_CHECK_SLOW, 0, N / 2);
    usleep(500000);
    long done = fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'br' "
                                 "AND status = 'completed'");
    print_message("completed when the broker stopped: %ld of %d\n", done, N / 2);
    assert_true(done < N / 2);
    assert_int_equal(fx_kafka_node_stop(&fx, 1), 0);
    sleep(3);
    assert_int_equal(fx_kafka_node_start(&fx, 1), 0);
    fx_check_publish_all(p, "br.in", "br", FX_CHECK_SLOW, N / 2, N);

    fx_check_spec_t spec = {"br",           N,      "br.in", "br.out", "br.dlq", "br",
                            FX_CHECK_GROUP, 180000, 3000};
    fx_check_t r;
    assert_int_equal(fx_check_run(&fx, &spec, &r), 0);
    fx_check_print("broker restart", &r);
    fx_check_assert(&r, N, 3);
    assert_int_equal(fx_run_stop(d, 30000), 0);
    fx_producer_destroy(p);
}

/* The result topic does not exist and the broker does not create topics:
 * the dispatcher says so clearly, dead-letters nothing and commits
 * nothing past the inputs whose results could not be sent. Once the topic
 * exists, the held results go out and the lag drains. */
static void test_missing_result_topic_holds_its_partition(void **state)
{
    (void)state;
    fx_check_need_apache(&fx);
    const int N = 20;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_non_null(p);
    pid_t d = fx_run_start(&fx, "mt.log", FX_CHECK_RUN_SET);
    assert_true(d > 0);
    assert_true(fx_log_wait(&fx, "mt.log", "partition assigned topic=mt.in", 60000));
    fx_check_publish_all(p, "mt.in", "mt", "sleep-1", 0, N);
    assert_true(fx_log_wait(&fx, "mt.log", "topic=mt.out.*does not exist", 60000));
    /* Held: a few seconds later still nothing committed, nothing dead. */
    sleep(3);
    assert_int_equal(fx_group_lag(&fx, FX_CHECK_GROUP, "mt.in"), N);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'mt'"),
                     0);
    /* Twenty events held for seconds, each retried every second: the log
     * says so once a second, not once per event per second. */
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "grep -c 'emit failed' '%s/mt.log' > '%s/mt.count'", fx.state_dir,
             fx.state_dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof(cmd), "%s/mt.count", fx.state_dir);
    FILE *f = fopen(cmd, "r");
    int lines = -1;
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &lines), 1);
    fclose(f);
    print_message("emit-failure lines while held: %d\n", lines);
    assert_true(lines >= 1 && lines <= 8);
    assert_int_equal(fx_kafka_create_topics(&fx, "mt.out:2"), 0);

    fx_check_spec_t spec = {"mt",           N,      "mt.in", "mt.out", "mt.dlq", "mt",
                            FX_CHECK_GROUP, 120000, 2000};
    fx_check_t r;
    assert_int_equal(fx_check_run(&fx, &spec, &r), 0);
    fx_check_print("missing result topic", &r);
    fx_check_assert(&r, N, 3);
    assert_int_equal(fx_run_stop(d, 30000), 0);
    fx_producer_destroy(p);
}

/* A fatal client error stops the dispatcher with exit code 1 (a
 * supervisor restarts it), and says why; SIGTERM still ends in 0. The real
 * fatal error: a static group member (group.instance.id) fenced by a
 * newer member with the same instance id, which librdkafka raises as
 * ERR__FATAL (FENCED_INSTANCE_ID). A group of its own keeps the other
 * tests' members out of it. */
static void test_fenced_static_member_exits_1(void **state)
{
    (void)state;
    fx_check_need_apache(&fx);
    const char *set = FX_CHECK_RUN_SET ";kafka.group.id=weft-fenced;"
                                       "kafka.group.instance.id=weft-fenced-1";
    pid_t a = fx_run_start(&fx, "fenced-a.log", set);
    assert_true(a > 0);
    assert_true(fx_log_wait(&fx, "fenced-a.log", "partition assigned", 60000));
    pid_t b = fx_run_start(&fx, "fenced-b.log", set);
    assert_true(b > 0);
    int rc = fx_run_wait(a, 90000);
    print_message("the fenced dispatcher exited with %d\n", rc);
    assert_int_equal(rc, 1);
    assert_true(fx_log_wait(&fx, "fenced-a.log", "fatal kafka error.*FENCED_INSTANCE_ID", 1000));
    assert_true(fx_log_wait(&fx, "fenced-b.log", "partition assigned", 60000));
    assert_int_equal(fx_run_stop(b, 30000), 0);
}

/* Waits until the trigger has at least `want` completed rows (or 120 s). */
static long wait_completed(const char *trigger, long want)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.ledger WHERE trigger = '%s' AND status = 'completed'",
             trigger);
    long done = 0;
    for (int i = 0; i < 1200 && (done = fx_sql_long(&fx, sql)) < want; i++)
        usleep(100000);
    return done;
}

/* Issue 25, bug 1: a backlog of 6,000 good events on a pool of 2 while
 * the dispatcher is killed with SIGKILL three times, spread over the
 * backlog's progress, and restarted each time. Each kill may cost the
 * events it had handed to a worker one attempt, no more: every input
 * gets its result, none is dead-lettered, every ledger row is terminal.
 * (With attempts counted at the claim and claims running thousands of
 * keys ahead of the pool, the keys claimed at each kill were charged an
 * attempt they never ran, and after three kills thousands were
 * dead-lettered as max_attempts.) */
static void test_sigkill_thrice_during_backlog(void **state)
{
    (void)state;
    fx_check_need_apache(&fx);
    const int N = 6000;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_non_null(p);
    fx_check_publish_all(p, "kr.in", "kr", "sleep-1", 0, N);
    pid_t d = fx_run_start(&fx, "kr-0.log", FX_CHECK_RUN_SET);
    assert_true(d > 0);
    long max_unfinished = 0;
    for (int k = 1; k <= 3; k++) {
        long at = wait_completed("kr", (long)N * k / 4);
        fx_run_kill9(d);
        /* What this dispatcher left claimed (its owner is host/pid/...). */
        char sql[300];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM weft.ledger WHERE trigger = 'kr' AND status = 'running'"
                 " AND split_part(owner, '/', 2) = '%d'",
                 (int)d);
        long unfinished = fx_sql_long(&fx, sql);
        print_message("kill %d: %ld of %d completed, %ld claimed and unfinished\n", k, at, N,
                      unfinished);
        /* The backlog was still being worked through. */
        assert_true(at < N);
        if (unfinished > max_unfinished)
            max_unfinished = unfinished;
        char log[32];
        snprintf(log, sizeof(log), "kr-%d.log", k);
        d = fx_run_start(&fx, log, FX_CHECK_RUN_SET);
        assert_true(d > 0);
    }

    fx_check_spec_t spec = {"kr",           N,      "kr.in", "kr.out", "kr.dlq", "kr",
                            FX_CHECK_GROUP, 180000, 3000};
    fx_check_t r;
    assert_int_equal(fx_check_run(&fx, &spec, &r), 0);
    fx_check_print("sigkill x3 during a backlog", &r);
    fx_check_assert(&r, N, 3);
    /* Claims stay near what the pool can start (its claim window: about
     * 50 ms of the pool's work and a claim's time, ~80 keys here): a kill leaves
     * dozens of keys claimed and unfinished, not the backlog (thousands
     * without the window). */
    assert_true(max_unfinished <= 250);
    print_message("most takeovers of one key: %ld\n",
                  fx_sql_long(&fx, "SELECT max(takeovers) FROM weft.ledger WHERE trigger = 'kr'"));
    assert_int_equal(fx_run_stop(d, 30000), 0);
    fx_producer_destroy(p);
}

/* Waits until the key of trigger kp is held by the dispatcher pid (its
 * owner is host/pid/...): 1, or 0 after 60 s. */
static int wait_held_by(pid_t pid)
{
    char sql[300];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.ledger WHERE trigger = 'kp' AND status = 'running'"
             " AND split_part(owner, '/', 2) = '%d'",
             (int)pid);
    for (int i = 0; i < 1200; i++) {
        if (fx_sql_long(&fx, sql) == 1)
            return 1;
        usleep(50000);
    }
    return 0;
}

static int never(const fx_msg_t *msgs, size_t n, void *ctx)
{
    (void)msgs, (void)n, (void)ctx;
    return 0;
}

/* An event whose dispatcher dies each time it holds the event's key never
 * records an attempt, so max_attempts cannot end it: the takeovers do.
 * With dispatcher.max_takeovers=1 the first dead owner's key is taken
 * over and run once more; when that owner dies too, the next claim
 * dead-letters it as abandoned_claims, naming the count, without running
 * it again. */
static void test_poison_that_kills_its_dispatcher_is_bounded(void **state)
{
    (void)state;
    fx_check_need_apache(&fx);
    const char *set = FX_CHECK_RUN_SET ";dispatcher.max_takeovers=1";
    fx_producer_t *p = fx_producer_new(&fx);
    assert_non_null(p);
    /* It hangs: the dispatcher holds its key until killed. */
    fx_check_publish_all(p, "kp.in", "kp", "hang", 0, 1);
    pid_t d = fx_run_start(&fx, "kp-0.log", set);
    assert_true(d > 0);
    for (int k = 1; k <= 2; k++) {
        assert_true(wait_held_by(d));
        fx_run_kill9(d);
        char log[32];
        snprintf(log, sizeof(log), "kp-%d.log", k);
        d = fx_run_start(&fx, log, set);
        assert_true(d > 0);
    }
    long dead = 0;
    for (int i = 0; i < 1200 && dead == 0; i++) {
        dead = fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = 'kp'");
        if (dead == 0)
            usleep(100000);
    }
    assert_int_equal(dead, 1);
    char *row = fx_sql(&fx, "SELECT concat_ws('|', d.reason, d.attempts, l.status, l.takeovers,"
                            " d.error LIKE 'taken over 2 times from dispatchers that stopped%')"
                            " FROM weft.dead_letters d JOIN weft.ledger l USING (trigger, key)"
                            " WHERE d.trigger = 'kp'");
    assert_non_null(row);
    print_message("poison dead letter: %s\n", row);
    assert_string_equal(row, "abandoned_claims|0|dead|2|t");
    free(row);
    /* On the topic: one dead letter, with its reason, within a settle
     * time. */
    fx_consumer_t *c = fx_consumer_new(&fx, "kp.dlq");
    assert_non_null(c);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    fx_consume_until(c, &msgs, &n, &cap, never, NULL, 8000);
    assert_int_equal(n, 1);
    assert_string_equal(fx_header(&msgs[0], "ce_weftreason"), "abandoned_claims");
    fx_msgs_free(msgs, n);
    fx_consumer_destroy(c);
    assert_int_equal(fx_run_stop(d, 30000), 0);
    fx_producer_destroy(p);
}

int main(void)
{
    /* WEFT_TEST_FILTER=name runs the matching tests only (while debugging). */
    if (getenv("WEFT_TEST_FILTER"))
        cmocka_set_test_filter(getenv("WEFT_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_rebalance_under_load, fx_check_teardown),
        cmocka_unit_test_teardown(test_broker_restart_under_load, fx_check_teardown),
        cmocka_unit_test_teardown(test_missing_result_topic_holds_its_partition, fx_check_teardown),
        cmocka_unit_test_teardown(test_fenced_static_member_exits_1, fx_check_teardown),
        cmocka_unit_test_teardown(test_sigkill_thrice_during_backlog, fx_check_teardown),
        cmocka_unit_test_teardown(test_poison_that_kills_its_dispatcher_is_bounded,
                                  fx_check_teardown),
    };
    return cmocka_run_group_tests_name("kafka_faults", tests, group_setup, group_teardown);
}
