/*
 * test_kafka_failover.c - the delivery contract on a three-node Apache
 * Kafka cluster (KRaft, replication factor 3, min.insync.replicas=2) when
 * the leader of the partitions weft reads, or of those it writes its
 * results to, is killed with SIGKILL under load. weft produces with
 * acks=all and the idempotent producer, so a leader change loses nothing
 * and duplicates nothing on the broker; the checker (checker.h) proves it
 * from the outside.
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

#define TOPICS "fo1.in:4 fo1.out:4 fo1.dlq:1 fo2.in:4 fo2.out:4 fo2.dlq:1"
#define RUN_SET                                                                                    \
    "dispatcher.shutdown_timeout_ms=15000;kafka.session.timeout.ms=6000;"                          \
    "kafka.heartbeat.interval.ms=500"
#define GROUP "weft"

static fx_t fx;

static int group_setup(void **state)
{
    (void)state;
    if (fx_up_cluster(&fx, TOPICS, 3) != 0)
        return -1;
    char out[4096], dir[700];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/failover", fx.src_dir);
    const char *args[] = {"migrate", "--dir", dir, NULL};
    int rc = fx_weft(&fx, out, sizeof(out), args);
    if (rc != 0) {
        fprintf(stderr, "weft migrate failed (%d): %s\n", rc, out);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fx_down(&fx);
    return 0;
}

/* These faults need Apache Kafka: the mock cannot restart or lose a node. */
static void need_apache(void)
{
    if (strcmp(fx.kafka_kind, "apache") != 0) {
        print_message("skipped: needs Apache Kafka (WEFT_KAFKA=%s)\n", fx.kafka_kind);
        skip();
    }
}

static void assert_contract(const fx_check_t *r, int n, long max_attempts)
{
    assert_int_equal(r->with_result, n);
    assert_int_equal(r->first_missing, -1);
    assert_int_equal(r->conflicts, 0);
    assert_int_equal(r->stray, 0);
    assert_int_equal(r->bad_content, 0);
    assert_int_equal(r->dead_letters, 0);
    assert_int_equal(r->dead_rows, 0);
    assert_int_equal(r->ledger_rows, n);
    assert_int_equal(r->not_completed, 0);
    assert_true(r->max_attempts >= 1 && r->max_attempts <= max_attempts);
    assert_int_equal(r->lag, 0);
}

static void publish(fx_producer_t *p, const char *topic, const char *pfx, int from, int to)
{
    assert_int_equal(fx_check_publish(p, topic, pfx, "sleep-1", from, to), 0);
    assert_int_equal(fx_producer_flush(p), 0);
}

/* Kills the leader of partition 0 of `victim_topic` while the trigger of
 * in_topic works through a backlog, publishes the second half, brings the
 * node back and checks the contract. */
static void failover(const char *pfx, const char *in, const char *out, const char *dlq,
                     const char *trigger, const char *victim_topic, const char *log)
{
    const int N = 6000;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_non_null(p);
    pid_t d = fx_run_start(&fx, log, RUN_SET);
    assert_true(d > 0);
    char pat[128];
    snprintf(pat, sizeof(pat), "partition assigned topic=%s", in);
    assert_true(fx_log_wait(&fx, log, pat, 60000));
    publish(p, in, pfx, 0, N / 2);
    int leader = fx_partition_leader(&fx, victim_topic, 0);
    print_message("killing node %d, the leader of %s [0]\n", leader, victim_topic);
    assert_true(leader >= 1 && leader <= 3);
    assert_int_equal(fx_kafka_node_kill(&fx, leader), 0);
    publish(p, in, pfx, N / 2, N);
    /* A new leader was elected among the two in-sync replicas left. */
    int now = fx_partition_leader(&fx, victim_topic, 0);
    print_message("new leader of %s [0]: %d\n", victim_topic, now);
    assert_true(now >= 1 && now <= 3 && now != leader);

    fx_check_spec_t spec = {pfx, N, in, out, dlq, trigger, GROUP, 180000, 3000};
    fx_check_t r;
    assert_int_equal(fx_check_run(&fx, &spec, &r), 0);
    fx_check_print(pfx, &r);
    assert_contract(&r, N, 3);
    assert_int_equal(fx_run_stop(d, 30000), 0);
    assert_int_equal(fx_kafka_node_start(&fx, leader), 0);
    fx_producer_destroy(p);
}

static void test_input_leader_killed_under_load(void **state)
{
    (void)state;
    need_apache();
    failover("fo1", "fo1.in", "fo1.out", "fo1.dlq", "fo-in", "fo1.in", "fo1.log");
}

static void test_result_leader_killed_under_load(void **state)
{
    (void)state;
    need_apache();
    failover("fo2", "fo2.in", "fo2.out", "fo2.dlq", "fo-out", "fo2.out", "fo2.log");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_input_leader_killed_under_load),
        cmocka_unit_test(test_result_leader_killed_under_load),
    };
    return cmocka_run_group_tests_name("kafka_failover", tests, group_setup, group_teardown);
}
