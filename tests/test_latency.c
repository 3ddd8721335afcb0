/*
 * test_latency.c - the stats line's latency histogram (latency.c): every
 * value lands in a bucket whose upper bound is within 12.5% above it,
 * quantiles find the right rank (a tail of 2% shows at p99, one of 0.5%
 * does not), one sample reports itself, and the text form says "-" when
 * nothing was measured and refuses a buffer it does not fit.
 *
 * Expected figures are worked out by hand from the inputs, not from the
 * code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "latency.h"

static weft_lat_t h; /* ~1.2 KiB: static, and reset by every test */

static int setup(void **state)
{
    (void)state;
    weft_lat_reset(&h);
    return 0;
}

static void test_empty(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(h.count, 0);
    assert_int_equal(weft_lat_quantile(&h, 0.5), 0);
    assert_int_equal(weft_lat_fmt(&h, out, sizeof(out)), 1);
    assert_string_equal(out, "-");
}

/* Under a value far above it, a value's p50 is its bucket's upper bound. */
static void test_bucket_bounds_within_an_eighth(void **state)
{
    (void)state;
    uint64_t v = 1;
    for (int step = 0; v < WEFT_LAT_MAX_US / 2; step++) {
        weft_lat_reset(&h);
        weft_lat_add(&h, v);
        weft_lat_add(&h, WEFT_LAT_MAX_US);
        uint64_t up = weft_lat_quantile(&h, 0.5);
        assert_true(up >= v);
        assert_true(up <= v + v / 8);
        if (v < 16)
            assert_int_equal(up, v); /* small values are exact */
        v = v + 1 + (step % 3 == 0 ? v / 3 : v / 7);
    }
}

static void test_single_sample_reports_itself(void **state)
{
    (void)state;
    char out[64];
    weft_lat_add(&h, 1500123); /* a function that slept 1.5 s */
    assert_int_equal(weft_lat_quantile(&h, 0.5), 1500123);
    assert_int_equal(weft_lat_quantile(&h, 0.99), 1500123);
    assert_true(weft_lat_fmt(&h, out, sizeof(out)) > 0);
    assert_string_equal(out, "1500/1500/1500");
}

static void test_uniform(void **state)
{
    (void)state;
    for (uint64_t v = 1; v <= 10000; v++)
        weft_lat_add(&h, v);
    uint64_t p50 = weft_lat_quantile(&h, 0.5), p99 = weft_lat_quantile(&h, 0.99);
    assert_true(p50 >= 5000 && p50 <= 5625);
    assert_true(p99 >= 9900 && p99 <= 10000); /* capped at the max */
    assert_int_equal(h.max_us, 10000);
    char out[64];
    assert_true(weft_lat_fmt(&h, out, sizeof(out)) > 0);
    /* p50 5.0-5.6 ms, p99 and max 10.0 ms */
    assert_memory_equal(out, "5.", 2);
    assert_non_null(strstr(out, "/10.0/10.0"));
}

static void test_tail_found_at_its_rank(void **state)
{
    (void)state;
    for (int i = 0; i < 980; i++)
        weft_lat_add(&h, 400); /* 0.4 ms */
    for (int i = 0; i < 20; i++)
        weft_lat_add(&h, 50000); /* 2% at 50 ms */
    uint64_t p50 = weft_lat_quantile(&h, 0.5), p99 = weft_lat_quantile(&h, 0.99);
    assert_true(p50 >= 400 && p50 <= 450);
    assert_true(p99 >= 50000 && p99 <= 50000 + 50000 / 8);

    weft_lat_reset(&h);
    for (int i = 0; i < 995; i++)
        weft_lat_add(&h, 400);
    for (int i = 0; i < 5; i++)
        weft_lat_add(&h, 50000); /* 0.5%: below p99 */
    p99 = weft_lat_quantile(&h, 0.99);
    assert_true(p99 >= 400 && p99 <= 450);
    assert_int_equal(weft_lat_quantile(&h, 1.0), 50000);
}

static void test_huge_values_are_clamped(void **state)
{
    (void)state;
    weft_lat_add(&h, UINT64_MAX);
    weft_lat_add(&h, 0);
    assert_int_equal(h.count, 2);
    assert_int_equal(h.max_us, WEFT_LAT_MAX_US);
    assert_int_equal(weft_lat_quantile(&h, 0.5), 0);
    assert_int_equal(weft_lat_quantile(&h, 0.99), WEFT_LAT_MAX_US);
}

static void test_fmt_refuses_a_short_buffer(void **state)
{
    (void)state;
    char out[16];
    weft_lat_add(&h, 123456); /* "123/123/123" is 11 characters */
    assert_int_equal(weft_lat_fmt(&h, out, 12), 11);
    assert_string_equal(out, "123/123/123");
    for (size_t len = 0; len < 12; len++)
        assert_int_equal(weft_lat_fmt(&h, out, len), -1);
    weft_lat_reset(&h);
    assert_int_equal(weft_lat_fmt(&h, out, 1), -1); /* "-" needs 2 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_empty, setup),
        cmocka_unit_test_setup(test_bucket_bounds_within_an_eighth, setup),
        cmocka_unit_test_setup(test_single_sample_reports_itself, setup),
        cmocka_unit_test_setup(test_uniform, setup),
        cmocka_unit_test_setup(test_tail_found_at_its_rank, setup),
        cmocka_unit_test_setup(test_huge_values_are_clamped, setup),
        cmocka_unit_test_setup(test_fmt_refuses_a_short_buffer, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
