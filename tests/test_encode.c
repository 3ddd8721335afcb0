/*
 * test_encode.c - the encoding direction of the CloudEvents codec
 * (dispatcher/ce/encode.c): binary-mode headers from attribute pairs, and
 * weft's headers on an event published again (replay, dlq redrive). The
 * expected names are literals on purpose: they are the wire.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "encode.h"

static void assert_hdr(const weft_header_t *h, const char *name, const char *value)
{
    assert_string_equal(h->name, name);
    assert_int_equal(h->len, strlen(value));
    assert_memory_equal(h->value, value, h->len);
}

static void test_binary_headers(void **state)
{
    (void)state;
    weft_header_t hdrs[8];
    weft_ce_hname_t names[8];
    char longname[WEFT_CE_ATTR_NAME_MAX + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    const weft_ce_pair_t ce[] = {
        {"specversion", "1.0"}, {"id", "r-1"},          {"subject", NULL},
        {longname, "x"},        {"weftreason", "oops"}, {"datacontenttype", "text/plain"},
    };
    size_t n = 1;
    hdrs[0] = (weft_header_t){"kept", "v", 1};
    /* Appended from *n, in order; NULL values and overlong names left out. */
    assert_int_equal(weft_ce_binary_headers(ce, 6, hdrs, &n, 8, names), 4);
    assert_int_equal(n, 5);
    assert_hdr(&hdrs[0], "kept", "v");
    assert_hdr(&hdrs[1], "ce_specversion", "1.0");
    assert_hdr(&hdrs[2], "ce_id", "r-1");
    assert_hdr(&hdrs[3], "ce_weftreason", "oops");
    assert_hdr(&hdrs[4], "content-type", "text/plain");
    /* Never past cap. */
    n = 0;
    assert_int_equal(weft_ce_binary_headers(ce, 6, hdrs, &n, 2, names), 2);
    assert_int_equal(n, 2);
}

static void test_republish_headers(void **state)
{
    (void)state;
    weft_header_t hdrs[8];
    size_t n = 0;
    char *owned = NULL;
    /* Replay on Kafka: key, trigger, id, generation; the key as it is. */
    assert_int_equal(weft_ce_republish_headers(WEFT_REPUBLISH_REPLAY, WEFT_BINDING_KAFKA,
                                               "k\x1f"
                                               "1",
                                               "rp-1", "trig", "3", hdrs, &n, &owned),
                     0);
    assert_null(owned);
    assert_int_equal(n, 4);
    assert_hdr(&hdrs[0], "weft-key",
               "k\x1f"
               "1");
    assert_hdr(&hdrs[1], "weft-replay-trigger", "trig");
    assert_hdr(&hdrs[2], "weft-replay-id", "rp-1");
    assert_hdr(&hdrs[3], "weft-generation", "3");
    /* Every trigger, generation 0 or none: neither header. */
    n = 0;
    assert_int_equal(weft_ce_republish_headers(WEFT_REPUBLISH_REPLAY, WEFT_BINDING_KAFKA, "k",
                                               "rp-1", NULL, NULL, hdrs, &n, &owned),
                     0);
    assert_int_equal(n, 2);
    assert_hdr(&hdrs[1], "weft-replay-id", "rp-1");
    /* Re-drive on NATS: key, id, trigger; the key percent-encoded. */
    n = 0;
    assert_int_equal(weft_ce_republish_headers(WEFT_REPUBLISH_REDRIVE, WEFT_BINDING_NATS,
                                               "k\x1f"
                                               "1",
                                               "42", "trig", "0", hdrs, &n, &owned),
                     0);
    assert_non_null(owned);
    assert_int_equal(n, 3);
    assert_hdr(&hdrs[0], "weft-key", "k%1F1");
    assert_hdr(&hdrs[1], "weft-redrive-id", "42");
    assert_hdr(&hdrs[2], "weft-redrive-trigger", "trig");
    free(owned);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_headers),
        cmocka_unit_test(test_republish_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
