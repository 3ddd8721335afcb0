/*
 * test_ops_args.c - bad input to the operator's tools outside the
 * dispatcher gets a clear error and a failing exit status: weft-bench's
 * options (it refuses before starting any stack) and `ops/stack
 * kafka-down` with no stack to stop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Runs cmd (stderr joined to stdout) and returns its exit status; its
 * output goes to out. */
static int run(const char *cmd, char *out, size_t outlen)
{
    char full[2048];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void bench(const char *args, int want_rc, const char *want_msg)
{
    const char *bin = getenv("WEFT_BIN_DIR");
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof(cmd), "'%s/weft-bench' %s", bin ? bin : "build/bin", args);
    assert_int_equal(run(cmd, out, sizeof(out)), want_rc);
    if (!strstr(out, want_msg))
        fail_msg("weft-bench %s: expected \"%s\" in:\n%s", args, want_msg, out);
}

static void test_bench_refuses_bad_pairs(void **state)
{
    (void)state;
    bench("--pairs 0", 2, "not a positive integer: 0");
    bench("--pairs x", 2, "not a positive integer: x");
    bench("--pairs 10", 2, "--pairs is at most 9, not 10");
    bench("--pairs 3 extra", 2, "unexpected argument: extra");
    bench("--help", 0, "--pairs N");
}

static void test_stack_kafka_down_without_a_stack(void **state)
{
    (void)state;
    const char *src = getenv("WEFT_SOURCE_DIR");
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof(cmd), "WEFT_STATE_DIR=/nonexistent/weft-state '%s/ops/stack' kafka-down",
             src ? src : ".");
    assert_int_equal(run(cmd, out, sizeof(out)), 1);
    if (!strstr(out, "no /nonexistent/weft-state: the stack is not up"))
        fail_msg("ops/stack kafka-down: unexpected output:\n%s", out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bench_refuses_bad_pairs),
        cmocka_unit_test(test_stack_kafka_down_without_a_stack),
    };
    return cmocka_run_group_tests_name("ops_args", tests, NULL, NULL);
}
