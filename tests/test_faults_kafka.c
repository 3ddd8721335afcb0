/*
 * test_faults_kafka.c - the fault suite (faults.h) on Apache Kafka: every
 * fault DESIGN.md names, injected into a real dispatcher consuming a real
 * single-node cluster, each case checked from the outside by the same
 * invariants (checker.h).
 *
 * Triggers: tests/migrations/faults-kafka. The input topics have one
 * partition, so offset i is input i and the group's commit says which
 * inputs the dispatcher marked done.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checker.h"
#include "faults.h"

/* Commits every 200 ms, so that a dispatcher that marks an input done too
 * early is caught by the commit before its crash. */
#define RUN_SET FX_CHECK_RUN_SET ";kafka.auto.commit.interval.ms=200"

static fx_t fx;

static int group_setup(void **state)
{
    (void)state;
    char topics[4096] = "";
    size_t len = 0;
    for (size_t i = 0; i < weft_n_faults; i++)
        len +=
            (size_t)snprintf(topics + len, sizeof(topics) - len, "k.%s.in:1 k.%s.out:2 k.%s.dlq:1 ",
                             weft_faults[i].name, weft_faults[i].name, weft_faults[i].name);
    fault_bus.fx = &fx;
    fault_bus.js = 0;
    fault_bus.run = RUN_SET;
    return fx_check_setup(&fx, topics, 1, "faults-kafka");
}

static int group_teardown(void **state)
{
    (void)state;
    fx_down(&fx);
    return 0;
}

int main(void)
{
    /* WEFT_TEST_FILTER=name runs the matching cases only (while debugging). */
    if (getenv("WEFT_TEST_FILTER"))
        cmocka_set_test_filter(getenv("WEFT_TEST_FILTER"));
    struct CMUnitTest tests[32];
    if (weft_n_faults > sizeof(tests) / sizeof(tests[0]))
        return 1;
    fault_tests(tests);
    return _cmocka_run_group_tests("faults_kafka", tests, weft_n_faults, group_setup,
                                   group_teardown);
}
