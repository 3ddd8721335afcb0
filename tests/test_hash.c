/*
 * test_hash.c - SHA-256 (hash.c) against the FIPS 180-4 test vectors and
 * the padding boundaries, and the name-based ids of emitted events
 * (weft_uuid_from): stable across releases, RFC 4122 layout, and distinct
 * whenever any part differs.
 *
 * Expected digests were computed with coreutils sha256sum, not with the
 * code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

static void hex_of(const uint8_t d[32], char out[65])
{
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void assert_sha256_hex(const char *data, size_t len, const char *want)
{
    char got[65];
    memset(got, 'X', sizeof(got));
    weft_sha256_hex(data, len, got);
    assert_int_equal(got[64], '\0');
    assert_string_equal(got, want);
}

static void test_sha256_fips_vectors(void **state)
{
    (void)state;
    assert_sha256_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_sha256_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_sha256_hex(m448, strlen(m448),
                      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                       "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    assert_sha256_hex(m896, strlen(m896),
                      "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

/* One million 'a' fed in odd-sized chunks (1, 2, 3, ... 97 bytes, then
 * again), so chunk edges fall everywhere inside the 64-byte block. */
static void test_sha256_million_a_chunked(void **state)
{
    (void)state;
    enum { TOTAL = 1000000 };
    char chunk[97];
    memset(chunk, 'a', sizeof(chunk));
    weft_sha256_t s;
    weft_sha256_init(&s);
    size_t fed = 0, step = 1;
    while (fed < TOTAL) {
        size_t n = step;
        if (n > TOTAL - fed)
            n = TOTAL - fed;
        weft_sha256_update(&s, chunk, n);
        fed += n;
        step = step % sizeof(chunk) + 1;
    }
    uint8_t d[32];
    char hex[65];
    weft_sha256_final(&s, d);
    hex_of(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* Lengths around the 56-byte padding limit and the block size: the length
 * field spills into a second block at 56. */
static void test_sha256_padding_boundaries(void **state)
{
    (void)state;
    static const struct {
        size_t n;
        const char *hex;
    } v[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
    };
    char a[128];
    memset(a, 'a', sizeof(a));
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        assert_sha256_hex(a, v[i].n, v[i].hex);
        /* Byte by byte gives the same digest. */
        weft_sha256_t s;
        uint8_t d[32];
        char hex[65];
        weft_sha256_init(&s);
        for (size_t k = 0; k < v[i].n; k++)
            weft_sha256_update(&s, a + k, 1);
        weft_sha256_final(&s, d);
        hex_of(d, hex);
        assert_string_equal(hex, v[i].hex);
    }
}

static void uuid_of(char out[37], const char *const *parts, size_t n)
{
    memset(out, 'X', 37);
    weft_uuid_from(out, parts, n);
}

static void assert_uuid_shape(const char *u)
{
    assert_int_equal(strlen(u), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            assert_int_equal(u[i], '-');
        } else {
            assert_non_null(strchr("0123456789abcdef", u[i]));
            assert_int_not_equal(u[i], '\0');
        }
    }
    assert_int_equal(u[14], '8');           /* version nibble */
    assert_non_null(strchr("89ab", u[19])); /* variant bits 10 */
}

/* A result's id is derived from its parts; a changed derivation would give
 * a re-emitted result a different id than the first emission, so the
 * value is pinned: SHA-256("orders" 0x1f "evt-1") = 209bafb7248812c0c0bf...
 * with the version and variant bits set. */
static void test_uuid_pinned_and_deterministic(void **state)
{
    (void)state;
    const char *parts[] = {"orders", "evt-1"};
    char a[37], b[37];
    uuid_of(a, parts, 2);
    uuid_of(b, parts, 2);
    assert_string_equal(a, "209bafb7-2488-82c0-80bf-9e6a50487d68");
    assert_string_equal(a, b);
    assert_uuid_shape(a);
}

static void test_uuid_version_and_variant(void **state)
{
    (void)state;
    /* Many inputs so every value of the overwritten nibbles occurs. */
    int variants[4] = {0};
    for (int i = 0; i < 256; i++) {
        char key[16], u[37];
        snprintf(key, sizeof(key), "k%d", i);
        const char *parts[] = {"trigger", key};
        uuid_of(u, parts, 2);
        assert_uuid_shape(u);
        variants[strchr("89ab", u[19]) - "89ab"]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(variants[i] > 0);
}

static void test_uuid_differs_when_any_part_differs(void **state)
{
    (void)state;
    const char *base[] = {"trig", "1", "key"};
    const char *p1[] = {"trig", "1", "kez"};
    const char *p2[] = {"trig", "2", "key"};
    const char *p3[] = {"trip", "1", "key"};
    const char *p4[] = {"key", "1", "trig"};
    const char *split1[] = {"ab", "c"};
    const char *split2[] = {"a", "bc"};
    const char *joined[] = {"abc"};
    const char *one[] = {"a"};
    const char *one_empty[] = {"a", ""};
    char u0[37], u[37], v[37];
    uuid_of(u0, base, 3);
    uuid_of(u, p1, 3);
    assert_string_not_equal(u0, u);
    uuid_of(u, p2, 3);
    assert_string_not_equal(u0, u);
    uuid_of(u, p3, 3);
    assert_string_not_equal(u0, u);
    uuid_of(u, p4, 3);
    assert_string_not_equal(u0, u);
    uuid_of(u, base, 2);
    assert_string_not_equal(u0, u);

    uuid_of(u, split1, 2);
    uuid_of(v, split2, 2);
    assert_string_not_equal(u, v);
    uuid_of(v, joined, 1);
    assert_string_not_equal(u, v);
    uuid_of(u, one, 1);
    uuid_of(v, one_empty, 2);
    assert_string_not_equal(u, v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_fips_vectors),
        cmocka_unit_test(test_sha256_million_a_chunked),
        cmocka_unit_test(test_sha256_padding_boundaries),
        cmocka_unit_test(test_uuid_pinned_and_deterministic),
        cmocka_unit_test(test_uuid_version_and_variant),
        cmocka_unit_test(test_uuid_differs_when_any_part_differs),
    };
    return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}
