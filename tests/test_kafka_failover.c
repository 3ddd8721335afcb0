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

static fx_t fx;

static int group_setup(void **state)
{
    (void)state;
    return fx_check_setup(&fx, TOPICS, 3, "failover");
}

static int group_teardown(void **state)
{
    (void)state;
    fx_down(&fx);
    return 0;
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
    pid_t d = fx_run_start(&fx, log, FX_CHECK_RUN_SET);
    assert_true(d > 0);
    char pat[128];
    snprintf(pat, sizeof(pat), "partition assigned topic=%s", in);
    assert_true(fx_log_wait(&fx, log, pat, 60000));
    fx_check_publish_all(p, in, pfx, "sleep-1", 0, N / 2);
    int leader = fx_partition_leader(&fx, victim_topic, 0);
    print_message("killing node %d, the leader of %s [0]\n", leader, victim_topic);
    assert_true(leader >= 1 && leader <= 3);
    assert_int_equal(fx_kafka_node_kill(&fx, leader), 0);
    fx_check_publish_all(p, in, pfx, "sleep-1", N / 2, N);
    /* A new leader was elected among the two in-sync replicas left. */
    int now = fx_partition_leader(&fx, victim_topic, 0);
    print_message("new leader of %s [0]: %d\n", victim_topic, now);
    assert_true(now >= 1 && now <= 3 && now != leader);

    fx_check_spec_t spec = {pfx, N, in, out, dlq, trigger, FX_CHECK_GROUP, 180000, 3000};
    fx_check_t r;
    assert_int_equal(fx_check_run(&fx, &spec, &r), 0);
    fx_check_print(pfx, &r);
    fx_check_assert(&r, N, 3);
    assert_int_equal(fx_run_stop(d, 30000), 0);
    assert_int_equal(fx_kafka_node_start(&fx, leader), 0);
    fx_producer_destroy(p);
}

static void test_input_leader_killed_under_load(void **state)
{
    (void)state;
    fx_check_need_apache(&fx);
    failover("fo1", "fo1.in", "fo1.out", "fo1.dlq", "fo-in", "fo1.in", "fo1.log");
}

static void test_result_leader_killed_under_load(void **state)
{
    (void)state;
    fx_check_need_apache(&fx);
    failover("fo2", "fo2.in", "fo2.out", "fo2.dlq", "fo-out", "fo2.out", "fo2.log");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_input_leader_killed_under_load, fx_check_teardown),
        cmocka_unit_test_teardown(test_result_leader_killed_under_load, fx_check_teardown),
    };
    return cmocka_run_group_tests_name("kafka_failover", tests, group_setup, group_teardown);
}
