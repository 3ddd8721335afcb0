/*
 * test_nats_headers.c - the CloudEvents <-> NATS header codec (nats.h) and
 * the NATS binding of the envelope decoder: percent-encoding, header
 * validation (CR, LF, NUL never reach the wire), ce- headers on receive.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "envelope.h"
#include "nats.h"

static void test_pct_encode_keeps_printable_ascii(void **state)
{
    (void)state;
    char *e = weft_nats_pct_encode("order-42/eu_x.y~z", 17);
    assert_string_equal(e, "order-42/eu_x.y~z");
    free(e);
}

static void test_pct_encode_escapes_unsafe_bytes(void **state)
{
    (void)state;
    /* space, '"', '%', CR, LF, NUL, DEL, and UTF-8 bytes */
    const char in[] = "a b\"c%d\r\n\0\x7f"
                      "caf\xc3\xa9";
    char *e = weft_nats_pct_encode(in, sizeof(in) - 1);
    assert_string_equal(e, "a%20b%22c%25d%0D%0A%00%7Fcaf%C3%A9");
    free(e);
    e = weft_nats_pct_encode("", 0);
    assert_string_equal(e, "");
    free(e);
}

static void test_pct_round_trip(void **state)
{
    (void)state;
    unsigned char all[255];
    for (int i = 0; i < 255; i++)
        all[i] = (unsigned char)(i + 1); /* every byte but NUL */
    char *e = weft_nats_pct_encode(all, sizeof(all));
    assert_true(weft_nats_header_value_valid(e, strlen(e)));
    size_t n = 0;
    char *d = weft_nats_pct_decode(e, strlen(e), &n);
    assert_non_null(d);
    assert_int_equal(n, sizeof(all));
    assert_memory_equal(d, all, sizeof(all));
    free(e);
    free(d);
}

static void test_pct_decode_rejects_bad_input(void **state)
{
    (void)state;
    size_t n;
    assert_null(weft_nats_pct_decode("abc%", 4, &n));
    assert_null(weft_nats_pct_decode("abc%4", 5, &n));
    assert_null(weft_nats_pct_decode("%zz", 3, &n));
    assert_null(weft_nats_pct_decode("a%00b", 5, &n)); /* NUL */
    char *d = weft_nats_pct_decode("%c3%A9%2525", 11, &n);
    assert_non_null(d);
    assert_int_equal(n, 5);
    assert_string_equal(d, "\xc3\xa9%25");
    free(d);
}

static void test_header_validation(void **state)
{
    (void)state;
    assert_true(weft_nats_header_value_valid("plain value", 11));
    assert_false(weft_nats_header_value_valid("a\rb", 3));
    assert_false(weft_nats_header_value_valid("a\nb", 3));
    assert_false(weft_nats_header_value_valid("a\0b", 3));
    assert_true(weft_nats_header_name_valid("Nats-Msg-Id"));
    assert_false(weft_nats_header_name_valid(""));
    assert_false(weft_nats_header_name_valid("a b"));
    assert_false(weft_nats_header_name_valid("a:b"));
    assert_false(weft_nats_header_name_valid("a\nb"));
}

static void test_header_encode(void **state)
{
    (void)state;
    char *n, *v, err[256];
    /* A weft/Kafka attribute header: renamed and encoded, never refused. */
    assert_int_equal(weft_nats_header_encode("ce_subject", "a\r\nb", 4, &n, &v, err, sizeof(err)),
                     0);
    assert_string_equal(n, "ce-subject");
    assert_string_equal(v, "a%0D%0Ab");
    free(n);
    free(v);
    assert_int_equal(
        weft_nats_header_encode("content-type", "application/json", 16, &n, &v, err, sizeof(err)),
        0);
    assert_string_equal(n, "Content-Type");
    assert_string_equal(v, "application/json");
    free(n);
    free(v);
    /* Already NATS wire form: copied, not encoded twice. */
    assert_int_equal(weft_nats_header_encode("ce-id", "x%20y", 5, &n, &v, err, sizeof(err)), 0);
    assert_string_equal(n, "ce-id");
    assert_string_equal(v, "x%20y");
    free(n);
    free(v);
    /* Anything else with CR, LF or NUL is refused before the wire. */
    assert_int_equal(
        weft_nats_header_encode("content-type", "text/plain\r\nX: y", 17, &n, &v, err, sizeof(err)),
        -1);
    assert_null(n);
    assert_non_null(strstr(err, "CR, LF or NUL"));
    assert_int_equal(weft_nats_header_encode("x-note", "a\0b", 3, &n, &v, err, sizeof(err)), -1);
    assert_int_equal(weft_nats_header_encode("ce-id", "a\nb", 3, &n, &v, err, sizeof(err)), -1);
    assert_int_equal(weft_nats_header_encode("bad name", "v", 1, &n, &v, err, sizeof(err)), -1);
    assert_int_equal(weft_nats_header_encode("ce_BAD", "v", 1, &n, &v, err, sizeof(err)), -1);
}

static weft_env_status_t decode_nats(weft_envelope_t *env, const weft_header_t *h, size_t n,
                                     char *err, size_t errlen)
{
    return weft_envelope_decode_binding(env, WEFT_BINDING_NATS, h, n, "{}", 2, "S/1",
                                        "jetstream://S", err, errlen);
}

static void test_envelope_nats_binary_mode(void **state)
{
    (void)state;
    weft_header_t h[] = {
        {"ce-specversion", "1.0", 3},
        {"ce-id", "id%201", 6},
        {"ce-source", "/s", 2},
        {"ce-type", "t.x", 3},
        {"ce-subject", "caf%C3%A9", 9},
        {"ce-tenant", "acme", 4},
        {"Content-Type", "application/json", 16},
    };
    weft_envelope_t env;
    char err[256];
    assert_int_equal(decode_nats(&env, h, 7, err, sizeof(err)), WEFT_ENV_OK);
    assert_int_equal(env.mode, WEFT_ENV_BINARY);
    assert_string_equal(weft_envelope_attr(&env, "id"), "id 1");
    assert_string_equal(weft_envelope_attr(&env, "subject"), "caf\xc3\xa9");
    assert_string_equal(weft_envelope_attr(&env, "tenant"), "acme");
    assert_string_equal(weft_envelope_attr(&env, "datacontenttype"), "application/json");
    weft_envelope_free(&env);

    /* Kafka's ce_ names mean nothing on NATS: a plain message. */
    weft_header_t k[] = {{"ce_id", "x", 1}};
    assert_int_equal(decode_nats(&env, k, 1, err, sizeof(err)), WEFT_ENV_OK);
    assert_int_equal(env.mode, WEFT_ENV_PLAIN);
    assert_string_equal(weft_envelope_attr(&env, "id"), "S/1");
    weft_envelope_free(&env);
}

static void test_envelope_nats_rejects_bad_encoding(void **state)
{
    (void)state;
    weft_header_t h[] = {
        {"ce-specversion", "1.0", 3},
        {"ce-id", "bad%zz", 6},
        {"ce-source", "/s", 2},
        {"ce-type", "t", 1},
    };
    weft_envelope_t env;
    char err[256];
    assert_int_equal(decode_nats(&env, h, 4, err, sizeof(err)), WEFT_ENV_MALFORMED);
    assert_non_null(strstr(err, "percent-encoded"));
    weft_envelope_free(&env);
    /* Decoded bytes must still be UTF-8. */
    h[1].value = "%FF%FE";
    h[1].len = 6;
    assert_int_equal(decode_nats(&env, h, 4, err, sizeof(err)), WEFT_ENV_MALFORMED);
    assert_non_null(strstr(err, "UTF-8"));
    weft_envelope_free(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pct_encode_keeps_printable_ascii),
        cmocka_unit_test(test_pct_encode_escapes_unsafe_bytes),
        cmocka_unit_test(test_pct_round_trip),
        cmocka_unit_test(test_pct_decode_rejects_bad_input),
        cmocka_unit_test(test_header_validation),
        cmocka_unit_test(test_header_encode),
        cmocka_unit_test(test_envelope_nats_binary_mode),
        cmocka_unit_test(test_envelope_nats_rejects_bad_encoding),
    };
    return cmocka_run_group_tests_name("nats_headers", tests, NULL, NULL);
}
