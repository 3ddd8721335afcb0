/*
 * test_fmt.c - the printf-free string building of the per-event path
 * (fmt.h), and the two things built with it whose text is part of weft's
 * contract: a plain message's coordinates and the idempotency key
 * (eventkey.c). A key that changed its spelling across a release would
 * run every replayed event again.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eventkey.h"
#include "fmt.h"

static void assert_i64(long long v)
{
    char got[24], want[32];
    snprintf(want, sizeof(want), "%lld", v);
    size_t n = weft_fmt_i64(got, v);
    assert_string_equal(got, want);
    assert_int_equal(n, strlen(want));
    assert_int_equal(weft_fmt_i64_len(v), strlen(want));
}

static void test_i64_matches_printf(void **state)
{
    (void)state;
    long long vs[] = {0, 1, 9, 10, 99, 100, -1, -9, -10, 123456789, -987654321,
                      2147483647LL, -2147483648LL, LLONG_MAX, LLONG_MIN};
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++)
        assert_i64(vs[i]);
    for (long long v = 1; v < LLONG_MAX / 10; v *= 10) {
        assert_i64(v - 1);
        assert_i64(v);
        assert_i64(-v);
    }
}

static void test_cat_truncates_like_snprintf(void **state)
{
    (void)state;
    const char *parts[] = {"ab", NULL, "cde", "", "f"};
    char out[16];
    assert_int_equal(weft_fmt_cat(out, sizeof(out), parts, 5), 6);
    assert_string_equal(out, "abcdef");
    for (size_t cap = 1; cap <= 8; cap++) {
        char small[8], want[8];
        memset(small, 'x', sizeof(small));
        size_t n = weft_fmt_cat(small, cap, parts, 5);
        snprintf(want, cap, "%s", "abcdef");
        assert_int_equal(n, 6);
        assert_string_equal(small, want);
    }
    memset(out, 'x', sizeof(out));
    assert_int_equal(weft_fmt_cat(out, 0, parts, 5), 6);
    assert_int_equal(out[0], 'x'); /* cap 0: nothing written */
    assert_int_equal(weft_fmt_copy(out, sizeof(out), NULL), 0);
    assert_string_equal(out, "");
    char *joined = weft_fmt_join(parts, 5);
    assert_string_equal(joined, "abcdef");
    free(joined);
}

static void test_plain_coords_and_keys(void **state)
{
    (void)state;
    char id[128], src[128];
    weft_bmsg_t k = {.broker = WEFT_BROKER_KAFKA, .topic = "orders", .partition = 3,
                     .offset = 1234567890123LL};
    weft_plain_coords(&k, "me", id, sizeof(id), src, sizeof(src));
    assert_string_equal(id, "orders/3/1234567890123");
    assert_string_equal(src, "kafka://orders");
    char *key = weft_event_key(&k, NULL, NULL, src, id);
    assert_string_equal(key, "kafka:orders/3/1234567890123");
    free(key);
    key = weft_event_key(&k, "/shop", "o-17", src, id);
    assert_string_equal(key, "ce:/shop\x1fo-17");
    free(key);

    weft_bmsg_t js = {.broker = WEFT_BROKER_JETSTREAM, .topic = "orders.new", .stream = "ORDERS",
                      .partition = -1, .offset = 42};
    weft_plain_coords(&js, "me", id, sizeof(id), src, sizeof(src));
    assert_string_equal(id, "ORDERS/42");
    assert_string_equal(src, "jetstream://ORDERS");
    key = weft_event_key(&js, NULL, NULL, src, id);
    assert_string_equal(key, "jetstream://ORDERS/ORDERS/42");
    free(key);

    weft_bmsg_t nats = {.broker = WEFT_BROKER_NATS, .topic = "pings", .partition = -1,
                        .offset = 7};
    weft_plain_coords(&nats, "host/1/ab", id, sizeof(id), src, sizeof(src));
    assert_string_equal(id, "pings/host/1/ab/7");
    assert_string_equal(src, "nats://pings");

    /* Truncated like snprintf when the buffers are short. */
    weft_plain_coords(&k, "me", id, 8, src, 5);
    assert_string_equal(id, "orders/");
    assert_string_equal(src, "kafk");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_i64_matches_printf),
        cmocka_unit_test(test_cat_truncates_like_snprintf),
        cmocka_unit_test(test_plain_coords_and_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
