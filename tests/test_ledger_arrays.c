/*
 * test_ledger_arrays.c - the PostgreSQL array literals the ledger sends as
 * batch parameters (ledger.h: weft_pg_array_add, weft_pg_array_add_bytea).
 * A wrong literal would make PostgreSQL reject a whole batch, or worse,
 * store a different key or result than the dispatcher meant.
 *
 * Outputs are checked literally and by parsing them back with a small
 * reader that follows PostgreSQL's array input rules (array_in: quoted
 * elements, backslash escapes, unquoted NULL) and bytea's hex format.
 * The closing '}' is added by the ledger's batch code; tests append it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "ledger.h"

typedef struct elem {
    int is_null;
    char *s;
    size_t len;
} elem_t;

/* Parses a one-dimensional array literal; returns the element count or -1
 * when it is not a valid literal. */
static int parse_array(const char *lit, elem_t *out, int max)
{
    const char *p = lit;
    if (*p++ != '{')
        return -1;
    int n = 0;
    if (*p == '}')
        return p[1] == '\0' ? 0 : -1;
    for (;;) {
        if (n == max)
            return -1;
        elem_t *e = &out[n];
        memset(e, 0, sizeof(*e));
        e->s = malloc(strlen(lit) + 1);
        assert_non_null(e->s);
        n++;
        if (*p == '"') {
            p++;
            while (*p != '"') {
                if (*p == '\0')
                    return -1;
                if (*p == '\\') {
                    p++;
                    if (*p == '\0')
                        return -1;
                }
                e->s[e->len++] = *p++;
            }
            p++;
        } else {
            const char *start = p;
            while (*p && *p != ',' && *p != '}' && *p != '"' && *p != '\\')
                p++;
            if ((size_t)(p - start) == 4 && strncasecmp(start, "NULL", 4) == 0)
                e->is_null = 1;
            else
                return -1; /* weft never writes unquoted values */
        }
        e->s[e->len] = '\0';
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}' && p[1] == '\0')
            return n;
        return -1;
    }
}

static void free_elems(elem_t *e, int n)
{
    for (int i = 0; i < n; i++)
        free(e[i].s);
}

/* Decodes bytea hex output (\x...) to bytes; -1 when malformed. */
static long bytea_decode(const char *s, size_t len, uint8_t *out, size_t max)
{
    if (len < 2 || s[0] != '\\' || s[1] != 'x' || (len - 2) % 2 != 0)
        return -1;
    size_t n = 0;
    for (size_t i = 2; i < len; i += 2) {
        unsigned v;
        char hx[3] = {s[i], s[i + 1], '\0'};
        if (!strchr("0123456789abcdef", hx[0]) || !strchr("0123456789abcdef", hx[1]) ||
            sscanf(hx, "%2x", &v) != 1 || n == max)
            return -1;
        out[n++] = (uint8_t)v;
    }
    return (long)n;
}

static void close_array(weft_buf_t *b)
{
    if (b->len == 0)
        weft_buf_append(b, "{", 1);
    weft_buf_append(b, "}", 1);
}

static void test_text_literal(void **state)
{
    (void)state;
    weft_buf_t b = {0};
    assert_int_equal(weft_pg_array_add(&b, "a", 1, 0), 0);
    assert_string_equal(b.p, "{\"a\"");
    assert_int_equal(weft_pg_array_add(&b, NULL, 0, 1), 0);
    assert_int_equal(weft_pg_array_add(&b, "", 0, 0), 0);
    assert_int_equal(weft_pg_array_add(&b, "he said \"hi\"", 12, 0), 0);
    assert_int_equal(weft_pg_array_add(&b, "back\\slash", 10, 0), 0);
    assert_int_equal(weft_pg_array_add(&b, "\\\"", 2, 0), 0);
    assert_int_equal(weft_pg_array_add(&b, "NULL", 4, 0), 0);
    assert_int_equal(weft_pg_array_add(&b, "a,b {c} ", 8, 0), 0);
    close_array(&b);
    assert_string_equal(b.p, "{\"a\",NULL,\"\",\"he said \\\"hi\\\"\",\"back\\\\slash\","
                             "\"\\\\\\\"\",\"NULL\",\"a,b {c} \"}");
    weft_buf_free(&b);
}

static void test_null_first_and_only(void **state)
{
    (void)state;
    weft_buf_t b = {0};
    assert_int_equal(weft_pg_array_add(&b, "ignored", 7, 1), 0);
    close_array(&b);
    assert_string_equal(b.p, "{NULL}");
    weft_buf_free(&b);

    assert_int_equal(weft_pg_array_add(&b, NULL, 0, 1), 0);
    assert_int_equal(weft_pg_array_add(&b, NULL, 0, 1), 0);
    assert_int_equal(weft_pg_array_add(&b, "x", 1, 0), 0);
    close_array(&b);
    assert_string_equal(b.p, "{NULL,NULL,\"x\"}");
    weft_buf_free(&b);

    /* A lone empty string is one element, not an empty array. */
    assert_int_equal(weft_pg_array_add(&b, "", 0, 0), 0);
    close_array(&b);
    assert_string_equal(b.p, "{\"\"}");
    weft_buf_free(&b);
}

/* The length is what counts, not a terminating NUL. */
static void test_length_respected(void **state)
{
    (void)state;
    weft_buf_t b = {0};
    assert_int_equal(weft_pg_array_add(&b, "abcdef", 3, 0), 0);
    assert_int_equal(weft_pg_array_add(&b, "\"\"\"", 1, 0), 0);
    close_array(&b);
    assert_string_equal(b.p, "{\"abc\",\"\\\"\"}");
    weft_buf_free(&b);
}

static void test_text_round_trip(void **state)
{
    (void)state;
    static const char alpha[] = "ab \"\\,{}NUL\t\n'\xc3\xa9";
    uint32_t seed = 777;
    for (int iter = 0; iter < 500; iter++) {
        enum { N = 8 };
        char in[N][40];
        size_t lens[N];
        int nulls[N];
        weft_buf_t b = {0};
        for (int i = 0; i < N; i++) {
            seed = seed * 1103515245u + 12345u;
            lens[i] = (seed >> 16) % sizeof(in[i]);
            seed = seed * 1103515245u + 12345u;
            nulls[i] = (seed >> 16) % 7 == 0;
            for (size_t k = 0; k < lens[i]; k++) {
                seed = seed * 1103515245u + 12345u;
                in[i][k] = alpha[(seed >> 16) % (sizeof(alpha) - 1)];
            }
            assert_int_equal(weft_pg_array_add(&b, in[i], lens[i], nulls[i]), 0);
        }
        close_array(&b);
        elem_t out[N];
        int n = parse_array(b.p, out, N);
        if (n != N)
            print_error("not a valid array literal: %s\n", b.p);
        assert_int_equal(n, N);
        for (int i = 0; i < N; i++) {
            assert_int_equal(out[i].is_null, nulls[i]);
            if (!nulls[i]) {
                assert_int_equal(out[i].len, lens[i]);
                assert_memory_equal(out[i].s, in[i], lens[i]);
            }
        }
        free_elems(out, n);
        weft_buf_free(&b);
    }
}

static void test_bytea_literal(void **state)
{
    (void)state;
    weft_buf_t b = {0};
    const uint8_t bytes[] = {0x00, 0xff, 0x10, 0xab};
    assert_int_equal(weft_pg_array_add_bytea(&b, bytes, sizeof(bytes), 0), 0);
    assert_string_equal(b.p, "{\"\\\\x00ff10ab\"");
    assert_int_equal(weft_pg_array_add_bytea(&b, NULL, 0, 1), 0);
    assert_int_equal(weft_pg_array_add_bytea(&b, bytes, 0, 0), 0);
    close_array(&b);
    /* {"\\x00ff10ab",NULL,"\\x"}: \\x in the literal is bytea's \x. */
    assert_string_equal(b.p, "{\"\\\\x00ff10ab\",NULL,\"\\\\x\"}");
    elem_t out[3];
    assert_int_equal(parse_array(b.p, out, 3), 3);
    assert_string_equal(out[0].s, "\\x00ff10ab");
    assert_true(out[1].is_null);
    assert_false(out[2].is_null);
    assert_string_equal(out[2].s, "\\x");
    free_elems(out, 3);
    weft_buf_free(&b);
}

/* Sizes around the encoder's 512-character chunk (256 bytes). */
static void test_bytea_round_trip_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 255, 256, 257, 511, 512, 513, 1000, 70000};
    static uint8_t in[70000], back[70000];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 131 + (i >> 8));
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        weft_buf_t b = {0};
        assert_int_equal(weft_pg_array_add(&b, "key", 3, 0), 0);
        assert_int_equal(weft_pg_array_add_bytea(&b, in, n, 0), 0);
        close_array(&b);
        assert_int_equal(b.len, strlen("{\"key\",\"\\\\x\"}") + 2 * n);
        elem_t out[2];
        assert_int_equal(parse_array(b.p, out, 2), 2);
        assert_string_equal(out[0].s, "key");
        long got = bytea_decode(out[1].s, out[1].len, back, sizeof(back));
        assert_int_equal(got, (long)n);
        if (n)
            assert_memory_equal(back, in, n);
        free_elems(out, 2);
        weft_buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_literal),     cmocka_unit_test(test_null_first_and_only),
        cmocka_unit_test(test_length_respected), cmocka_unit_test(test_text_round_trip),
        cmocka_unit_test(test_bytea_literal),    cmocka_unit_test(test_bytea_round_trip_sizes),
    };
    return cmocka_run_group_tests_name("ledger_arrays", tests, NULL, NULL);
}
