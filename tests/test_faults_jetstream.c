/*
 * test_faults_jetstream.c - the fault suite (faults.h) on JetStream: every
 * fault DESIGN.md names, injected into a real dispatcher consuming the
 * stack's nats-server -js, each case checked from the outside by the same
 * invariants (checker.h).
 *
 * Triggers: tests/migrations/faults-jetstream. Each input subject has a
 * stream of its own, so stream sequence i + 1 is input i and the durable
 * consumer's ack floor says which inputs the dispatcher acknowledged.
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

#define RUN_SET "dispatcher.shutdown_timeout_ms=15000"

static fx_t fx;

static int group_setup(void **state)
{
    (void)state;
    fault_bus.fx = &fx;
    fault_bus.js = 1;
    fault_bus.run = RUN_SET;
    if (fx_up(&fx, "") != 0)
        return -1;
    for (size_t i = 0; i < weft_n_faults; i++) {
        char stream[64], subject[64];
        snprintf(stream, sizeof(stream), "FJ-%s", weft_faults[i].name);
        snprintf(subject, sizeof(subject), "j.%s.in", weft_faults[i].name);
        if (fx_js_stream(&fx, stream, subject) != 0)
            return -1;
    }
    if (fx_js_stream(&fx, "FJOUT", "j.*.out") != 0 || fx_js_stream(&fx, "FJDLQ", "j.*.dlq") != 0)
        return -1;
    char out[4096], dir[700];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/faults-jetstream", fx.src_dir);
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

int main(void)
{
    /* WEFT_TEST_FILTER=name runs the matching cases only (while debugging). */
    if (getenv("WEFT_TEST_FILTER"))
        cmocka_set_test_filter(getenv("WEFT_TEST_FILTER"));
    struct CMUnitTest tests[32];
    if (weft_n_faults > sizeof(tests) / sizeof(tests[0]))
        return 1;
    fault_tests(tests);
    return _cmocka_run_group_tests("faults_jetstream", tests, weft_n_faults, group_setup,
                                   group_teardown);
}
