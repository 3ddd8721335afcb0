/*
 * test_envelope.c - CloudEvents decoding of broker messages (envelope.c):
 * Kafka binary mode (ce_ headers), structured JSON and protobuf, batch
 * mode (unsupported), plain messages, the string form of every kind of
 * attribute value, and that untrusted bytes always give a status, never a
 * crash (random and mutated inputs with a fixed seed; the ASan+UBSan build
 * runs these too).
 *
 * Message values are copied to exact-size heap buffers before decoding so
 * a read past the end shows up under ASan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloudevents.pb-c.h"
#include "envelope.h"

typedef Io__Cloudevents__V1__CloudEvent ce_t;
typedef Io__Cloudevents__V1__CloudEvent__AttributesEntry ce_entry_t;
typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue ce_value_t;

#define CT_JSON "application/cloudevents+json"
#define CT_PROTO "application/cloudevents+protobuf"
#define PLAIN_ID "orders/3/42"
#define PLAIN_SOURCE "kafka://cluster/orders"
/* The required attributes, as JSON members. */
#define REQ "\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\""

#define H(n, v)                                                                                    \
    {                                                                                              \
        (n), (v), sizeof(v) - 1                                                                    \
    }

typedef struct ctx {
    weft_envelope_t env;
    char err[512];
    void *copy; /* exact-size copy of the value */
} ctx_t;

static int ctx_setup(void **state)
{
    ctx_t *c = calloc(1, sizeof(*c));
    if (!c)
        return -1;
    *state = c;
    return 0;
}

static int ctx_teardown(void **state)
{
    ctx_t *c = *state;
    weft_envelope_free(&c->env);
    free(c->copy);
    free(c);
    return 0;
}

/* Decodes into c->env (freeing any previous result first). */
static weft_env_status_t decode(ctx_t *c, const weft_header_t *h, size_t nh, const void *value,
                                size_t len)
{
    weft_envelope_free(&c->env);
    free(c->copy);
    c->copy = NULL;
    if (value) {
        c->copy = malloc(len ? len : 1);
        assert_non_null(c->copy);
        memcpy(c->copy, value, len);
    }
    c->err[0] = '\0';
    return weft_envelope_decode(&c->env, h, nh, c->copy, len, PLAIN_ID, PLAIN_SOURCE, c->err,
                                sizeof(c->err));
}

static weft_env_status_t decode_json(ctx_t *c, const char *json)
{
    weft_header_t h[] = {H("content-type", CT_JSON)};
    return decode(c, h, 1, json, strlen(json));
}

static void assert_err_mentions(const ctx_t *c, const char *what)
{
    if (!strstr(c->err, what)) {
        print_error("reason \"%s\" does not mention \"%s\"\n", c->err, what);
        fail();
    }
}

static void assert_data(ctx_t *c, const void *want, size_t want_len)
{
    size_t len = 12345;
    const uint8_t *d = weft_envelope_data(&c->env, &len);
    assert_int_equal(len, want_len);
    if (want_len)
        assert_memory_equal(d, want, want_len);
}

static void assert_attr(ctx_t *c, const char *name, const char *want)
{
    const char *got = weft_envelope_attr(&c->env, name);
    if (!want) {
        if (got)
            print_error("attribute %s: got \"%s\", want none\n", name, got);
        assert_null(got);
        return;
    }
    if (!got)
        print_error("attribute %s: missing, want \"%s\"\n", name, want);
    assert_non_null(got);
    assert_string_equal(got, want);
}

/* ---- Kafka binary mode ---------------------------------------------- */

static void test_binary_mode(void **state)
{
    ctx_t *c = *state;
    weft_header_t h[] = {
        H("ce_specversion", "1.0"),
        H("ce_id", "evt-1"),
        H("ce_source", "/shop/checkout"),
        H("ce_type", "com.example.order.created"),
        H("ce_subject", "order/42"),
        H("ce_time", "2024-05-01T12:00:00.123Z"),
        H("ce_traceparent", "00-abc-def-01"),
        H("ce_partitionkey", "42"),
        H("Content-Type", "application/json; charset=utf-8"),
        H("x-other", "not an attribute"),
    };
    const char value[] = "{\"total\":12.5}";
    assert_int_equal(decode(c, h, sizeof(h) / sizeof(h[0]), value, sizeof(value) - 1), WEFT_ENV_OK);
    assert_int_equal(c->env.mode, WEFT_ENV_BINARY);
    assert_attr(c, "specversion", "1.0");
    assert_attr(c, "id", "evt-1");
    assert_attr(c, "source", "/shop/checkout");
    assert_attr(c, "type", "com.example.order.created");
    assert_attr(c, "subject", "order/42");
    assert_attr(c, "time", "2024-05-01T12:00:00.123Z");
    assert_attr(c, "datacontenttype", "application/json; charset=utf-8");
    /* Extensions land in the attributes map the worker receives. */
    assert_attr(c, "traceparent", "00-abc-def-01");
    assert_attr(c, "partitionkey", "42");
    assert_attr(c, "other", NULL);
    assert_attr(c, "dataschema", NULL);
    int found = 0;
    for (size_t i = 0; i < c->env.ce->n_attributes; i++)
        if (strcmp(c->env.ce->attributes[i]->key, "traceparent") == 0)
            found = 1;
    assert_true(found);
    /* The required attributes are the message's own fields. */
    assert_string_equal(c->env.ce->id, "evt-1");
    assert_string_equal(c->env.ce->type, "com.example.order.created");
    assert_data(c, value, sizeof(value) - 1);
    /* The CloudEvent can be handed to a worker as is. */
    size_t packed = io__cloudevents__v1__cloud_event__get_packed_size(c->env.ce);
    assert_true(packed > sizeof(value));
}

static void test_binary_missing_required(void **state)
{
    ctx_t *c = *state;
    static const char *const required[] = {"id", "source", "type", "specversion"};
    for (size_t skip = 0; skip < 4; skip++) {
        weft_header_t h[4];
        size_t n = 0;
        weft_header_t all[] = {H("ce_id", "1"), H("ce_source", "/s"), H("ce_type", "t"),
                               H("ce_specversion", "1.0")};
        for (size_t i = 0; i < 4; i++)
            if (i != skip)
                h[n++] = all[i];
        assert_int_equal(decode(c, h, n, "x", 1), WEFT_ENV_MALFORMED);
        assert_err_mentions(c, required[skip]);
    }
    /* Present but empty counts as missing. */
    weft_header_t empty_id[] = {H("ce_id", ""), H("ce_source", "/s"), H("ce_type", "t"),
                                H("ce_specversion", "1.0")};
    assert_int_equal(decode(c, empty_id, 4, "x", 1), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "id");
}

static void test_binary_specversion_must_be_1_0(void **state)
{
    ctx_t *c = *state;
    static const char *const bad[] = {"0.3", "1", "1.0.0", "2.0", " 1.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        weft_header_t h[] = {H("ce_id", "1"),
                             H("ce_source", "/s"),
                             H("ce_type", "t"),
                             {"ce_specversion", bad[i], strlen(bad[i])}};
        assert_int_equal(decode(c, h, 4, "x", 1), WEFT_ENV_MALFORMED);
        assert_err_mentions(c, "specversion");
        assert_err_mentions(c, bad[i]);
    }
}

static void test_binary_header_with_nul(void **state)
{
    ctx_t *c = *state;
    weft_header_t h[] = {H("ce_specversion", "1.0"), H("ce_id", "a\0b"), H("ce_source", "/s"),
                         H("ce_type", "t")};
    assert_int_equal(h[1].len, 3);
    assert_int_equal(decode(c, h, 4, "x", 1), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "ce_id");
    /* The content-type header too. */
    weft_header_t h2[] = {H("ce_specversion", "1.0"), H("ce_id", "1"), H("ce_source", "/s"),
                          H("ce_type", "t"), H("content-type", "text/plain\0x")};
    assert_int_equal(decode(c, h2, 5, "x", 1), WEFT_ENV_MALFORMED);
    /* A header without a value. */
    weft_header_t h3[] = {
        H("ce_specversion", "1.0"), {"ce_id", NULL, 0}, H("ce_source", "/s"), H("ce_type", "t")};
    assert_int_equal(decode(c, h3, 4, "x", 1), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "ce_id");
}

static void test_binary_invalid_attribute_names(void **state)
{
    ctx_t *c = *state;
    static const char *const bad[] = {"ce_Subject", "ce_trace-parent", "ce_",
                                      "ce_a_b",     "ce_caf\xc3\xa9",  "ce_a.b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        weft_header_t h[] = {H("ce_specversion", "1.0"),
                             H("ce_id", "1"),
                             H("ce_source", "/s"),
                             H("ce_type", "t"),
                             {bad[i], "v", 1}};
        assert_int_equal(decode(c, h, 5, "x", 1), WEFT_ENV_MALFORMED);
        assert_err_mentions(c, bad[i]);
    }
    assert_true(weft_ce_attr_name_valid("abc123", 6));
    assert_false(weft_ce_attr_name_valid("", 0));
    assert_false(weft_ce_attr_name_valid("aBc", 3));
    assert_false(weft_ce_attr_name_valid("a-b", 3));
    /* Only len bytes are looked at. */
    assert_true(weft_ce_attr_name_valid("ab-", 2));
}

/* A repeated attribute: the last one wins (Kafka allows repeated header
 * names; so does JSON for member names). */
static void test_repeated_attribute_last_wins(void **state)
{
    ctx_t *c = *state;
    weft_header_t h[] = {H("ce_specversion", "1.0"),
                         H("ce_id", "1"),
                         H("ce_source", "/s"),
                         H("ce_type", "t"),
                         H("ce_subject", "a"),
                         H("ce_subject", "b"),
                         H("ce_datacontenttype", "text/plain"),
                         H("content-type", "text/csv")};
    assert_int_equal(decode(c, h, sizeof(h) / sizeof(h[0]), "x", 1), WEFT_ENV_OK);
    assert_attr(c, "subject", "b");
    assert_attr(c, "datacontenttype", "text/csv");
    size_t n_subject = 0;
    for (size_t i = 0; i < c->env.ce->n_attributes; i++)
        n_subject += strcmp(c->env.ce->attributes[i]->key, "subject") == 0;
    assert_int_equal(n_subject, 1);

    assert_int_equal(decode_json(c, "{" REQ ",\"subject\":\"a\",\"subject\":\"b\"}"), WEFT_ENV_OK);
    assert_attr(c, "subject", "b");
}

/* Many extensions and one value bigger than the decoder's arena chunks
 * (512 bytes): every attribute keeps its own bytes. */
static void test_binary_many_and_long_attributes(void **state)
{
    ctx_t *c = *state;
    enum { N_EXT = 64 };
    static char names[N_EXT][24], values[N_EXT][80];
    static char big[3000];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    weft_header_t h[N_EXT + 5] = {
        H("ce_specversion", "1.0"), H("ce_id", "many-1"), H("ce_source", "/many"),
        H("ce_type", "t"),          {"ce_subject", big, sizeof(big) - 1},
    };
    size_t nh = 5;
    for (int i = 0; i < N_EXT; i++, nh++) {
        snprintf(names[i], sizeof(names[i]), "ce_ext%d", i);
        int n = snprintf(values[i], sizeof(values[i]), "value-%d-%060d", i, i);
        h[nh] = (weft_header_t){names[i], values[i], (size_t)n};
    }
    assert_int_equal(decode(c, h, nh, "x", 1), WEFT_ENV_OK);
    assert_attr(c, "subject", big);
    for (int i = 0; i < N_EXT; i++) {
        char name[24];
        snprintf(name, sizeof(name), "ext%d", i);
        assert_attr(c, name, values[i]);
    }
    assert_int_equal(c->env.ce->n_attributes, N_EXT + 1);
}

/* A value of NULL (Kafka tombstone) or of no bytes is an event without
 * data, not an error. */
static void test_binary_empty_and_null_value(void **state)
{
    ctx_t *c = *state;
    weft_header_t h[] = {H("ce_specversion", "1.0"), H("ce_id", "1"), H("ce_source", "/s"),
                         H("ce_type", "t")};
    assert_int_equal(decode(c, h, 4, NULL, 0), WEFT_ENV_OK);
    assert_data(c, NULL, 0);
    assert_int_equal(decode(c, h, 4, "", 0), WEFT_ENV_OK);
    assert_data(c, NULL, 0);
    assert_attr(c, "datacontenttype", NULL);
    /* NULL value with a stray length: the length is ignored. */
    weft_envelope_free(&c->env);
    assert_int_equal(weft_envelope_decode(&c->env, h, 4, NULL, 100, PLAIN_ID, PLAIN_SOURCE, c->err,
                                          sizeof(c->err)),
                     WEFT_ENV_OK);
    assert_data(c, NULL, 0);
}

/* ---- Structured JSON ------------------------------------------------ */

static void test_json_structured(void **state)
{
    ctx_t *c = *state;
    const char *doc = "{\"specversion\":\"1.0\",\"id\":\"evt-9\",\"source\":\"/shop\","
                      "\"type\":\"com.example.order.created\",\"subject\":\"a\\\"b\\u00e9\","
                      "\"time\":\"2024-05-01T12:00:00Z\",\"data\":{\"x\": [1, 2]}}";
    weft_header_t h[] = {H("content-type", "application/cloudevents+json; charset=utf-8"),
                         H("ce_id", "from-header-ignored")};
    assert_int_equal(decode(c, h, 2, doc, strlen(doc)), WEFT_ENV_OK);
    assert_int_equal(c->env.mode, WEFT_ENV_JSON);
    assert_attr(c, "id", "evt-9");
    assert_attr(c, "source", "/shop");
    assert_attr(c, "type", "com.example.order.created");
    assert_attr(c, "specversion", "1.0");
    assert_attr(c, "subject", "a\"b\xc3\xa9");
    assert_attr(c, "time", "2024-05-01T12:00:00Z");
    /* An object is the data as raw JSON bytes; JSON is the default type. */
    assert_data(c, "{\"x\": [1, 2]}", 13);
    assert_attr(c, "datacontenttype", "application/json");
    assert_attr(c, "data", NULL);
}

static void test_json_missing_required(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"t\"}"),
                     WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "id");
    assert_int_equal(decode_json(c, "{\"specversion\":\"1.0\",\"id\":\"1\",\"type\":\"t\"}"),
                     WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "source");
    assert_int_equal(decode_json(c, "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\"}"),
                     WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "type");
    assert_int_equal(decode_json(c, "{\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"}"),
                     WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "specversion");
    assert_int_equal(
        decode_json(c, "{\"specversion\":\"0.3\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"}"),
        WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "0.3");
    /* null means absent. */
    assert_int_equal(
        decode_json(c, "{\"specversion\":\"1.0\",\"id\":null,\"source\":\"/s\",\"type\":\"t\"}"),
        WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "id");
    assert_int_equal(decode_json(c, "{}"), WEFT_ENV_MALFORMED);
}

static void test_json_text_data(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{" REQ ",\"datacontenttype\":\"text/plain\","
                                    "\"data\":\"line 1\\nline \\\"2\\\" \\u20ac\"}"),
                     WEFT_ENV_OK);
    assert_data(c, "line 1\nline \"2\" \xe2\x82\xac", 19);
    assert_attr(c, "datacontenttype", "text/plain");
    /* Member order does not matter: data before its content type. */
    assert_int_equal(
        decode_json(c, "{\"data\":\"a\\tb\"," REQ ",\"datacontenttype\":\"text/csv\"}"),
        WEFT_ENV_OK);
    assert_data(c, "a\tb", 3);
    assert_attr(c, "datacontenttype", "text/csv");
}

/* With a JSON content type (or none) a string is a JSON value: the data is
 * the JSON text, quotes included. */
static void test_json_string_data_as_json(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{" REQ ",\"data\":\"hi\\n\"}"), WEFT_ENV_OK);
    assert_data(c, "\"hi\\n\"", 6);
    assert_attr(c, "datacontenttype", "application/json");
    assert_int_equal(
        decode_json(c, "{" REQ ",\"datacontenttype\":\"application/vnd.x+json\",\"data\":\"a\"}"),
        WEFT_ENV_OK);
    assert_data(c, "\"a\"", 3);
    assert_attr(c, "datacontenttype", "application/vnd.x+json");
    assert_int_equal(decode_json(c, "{" REQ ",\"data\":[1,true,null]}"), WEFT_ENV_OK);
    assert_data(c, "[1,true,null]", 13);
    assert_int_equal(decode_json(c, "{" REQ ",\"data\":-1.5e3}"), WEFT_ENV_OK);
    assert_data(c, "-1.5e3", 6);
}

static void test_json_no_data(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{" REQ "}"), WEFT_ENV_OK);
    assert_data(c, NULL, 0);
    assert_attr(c, "datacontenttype", NULL);
}

static void test_json_data_base64(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{" REQ ",\"datacontenttype\":\"application/octet-stream\","
                                    "\"data_base64\":\"aGVsbG8gd29ybGQ=\"}"),
                     WEFT_ENV_OK);
    assert_data(c, "hello world", 11);
    assert_attr(c, "datacontenttype", "application/octet-stream");
    assert_attr(c, "data_base64", NULL);
    /* Binary bytes, and padding optional. */
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":\"AP8Q\"}"), WEFT_ENV_OK);
    assert_data(c, "\x00\xff\x10", 3);
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":\"aGk\"}"), WEFT_ENV_OK);
    assert_data(c, "hi", 2);
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":\"\"}"), WEFT_ENV_OK);
    assert_data(c, NULL, 0);
    /* The two alphabet-specific characters, standard and URL-safe. */
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":\"+/8=\"}"), WEFT_ENV_OK);
    assert_data(c, "\xfb\xff", 2);
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":\"-_8\"}"), WEFT_ENV_OK);
    assert_data(c, "\xfb\xff", 2);
    /* Not base64, not a string. */
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":\"a$b=\"}"), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "base64");
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":\"aG=k\"}"), WEFT_ENV_MALFORMED);
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":42}"), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "data_base64");
}

/*
 * BUG (envelope.c, decode_json): data_base64 is decoded from the raw JSON
 * text between the quotes, without unescaping it. JSON allows "\/" for
 * '/', and common encoders emit it (PHP's json_encode does by default), so
 * a valid event whose base64 contains '/' is dead-lettered as malformed.
 */
static void test_json_data_base64_escaped_slash(void **state)
{
    ctx_t *c = *state;
    /* "AP8/" is 00 ff 3f. */
    assert_int_equal(decode_json(c, "{" REQ ",\"data_base64\":\"AP8\\/\"}"), WEFT_ENV_OK);
    assert_data(c, "\x00\xff\x3f", 3);
}

static void test_json_data_and_base64_rejected(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{" REQ ",\"data\":{},\"data_base64\":\"aGk=\"}"),
                     WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "data_base64");
}

static void test_json_extension_values(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{" REQ ",\"count\":42,\"ratio\":-1.5e3,\"flag\":true,"
                                    "\"off\":false,\"gone\":null,\"zero\":0}"),
                     WEFT_ENV_OK);
    assert_attr(c, "count", "42");
    assert_attr(c, "ratio", "-1.5e3");
    assert_attr(c, "flag", "true");
    assert_attr(c, "off", "false");
    assert_attr(c, "zero", "0");
    assert_attr(c, "gone", NULL);
}

static void test_json_bad_attribute_values(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{" REQ ",\"nested\":{\"a\":1}}"), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "nested");
    assert_int_equal(decode_json(c, "{" REQ ",\"list\":[1]}"), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "list");
    assert_int_equal(decode_json(c, "{\"specversion\":\"1.0\",\"id\":{},\"source\":\"/s\","
                                    "\"type\":\"t\"}"),
                     WEFT_ENV_MALFORMED);
    /* \u0000 cannot be an attribute value. */
    assert_int_equal(decode_json(c, "{" REQ ",\"subject\":\"a\\u0000b\"}"), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "subject");
    /* Attribute names follow the same rule as in binary mode. */
    assert_int_equal(decode_json(c, "{" REQ ",\"Subject\":\"x\"}"), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "Subject");
    assert_int_equal(decode_json(c, "{" REQ ",\"trace-parent\":\"x\"}"), WEFT_ENV_MALFORMED);
    assert_int_equal(decode_json(c, "{" REQ ",\"\":\"x\"}"), WEFT_ENV_MALFORMED);
}

static void test_json_invalid_documents(void **state)
{
    ctx_t *c = *state;
    static const char *const bad[] = {
        "",
        "{",
        "{" REQ,
        "{" REQ "} trailing",
        "[" REQ "]",
        "\"just a string\"",
        "{" REQ ",}",
        "{" REQ ",\"data\":01}",
        "{\"specversion\":\"1.0\",\"id\":\"1\x01\",\"source\":\"/s\",\"type\":\"t\"}",
        "null",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(decode_json(c, bad[i]), WEFT_ENV_MALFORMED);
        assert_true(c->err[0] != '\0');
    }
    /* A NULL value in structured mode has no attributes at all. */
    weft_header_t h[] = {H("content-type", CT_JSON)};
    assert_int_equal(decode(c, h, 1, NULL, 0), WEFT_ENV_MALFORMED);
}

/* ---- Structured protobuf -------------------------------------------- */

typedef struct pb_attr {
    const char *key;
    ce_value_t val;
    Google__Protobuf__Timestamp ts;
} pb_attr_t;

/* Packs a CloudEvent with the given attributes into a malloc()ed buffer. */
static uint8_t *pb_pack(ce_t *ev, pb_attr_t *attrs, size_t n, size_t *len)
{
    ce_entry_t entries[16];
    ce_entry_t *ptrs[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        io__cloudevents__v1__cloud_event__attributes_entry__init(&entries[i]);
        entries[i].key = (char *)attrs[i].key;
        if (attrs[i].val.attr_case ==
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP)
            attrs[i].val.ce_timestamp = &attrs[i].ts;
        entries[i].value = &attrs[i].val;
        ptrs[i] = &entries[i];
    }
    ev->n_attributes = n;
    ev->attributes = n ? ptrs : NULL;
    *len = io__cloudevents__v1__cloud_event__get_packed_size(ev);
    uint8_t *buf = malloc(*len ? *len : 1);
    assert_non_null(buf);
    assert_int_equal(io__cloudevents__v1__cloud_event__pack(ev, buf), *len);
    ev->n_attributes = 0;
    ev->attributes = NULL;
    return buf;
}

static pb_attr_t pb_string(const char *key, const char *v)
{
    pb_attr_t a = {.key = key};
    io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&a.val);
    a.val.attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    a.val.ce_string = (char *)v;
    return a;
}

static void pb_required(ce_t *ev)
{
    io__cloudevents__v1__cloud_event__init(ev);
    ev->id = "pb-1";
    ev->source = "/pb";
    ev->spec_version = "1.0";
    ev->type = "com.example.pb";
}

static weft_env_status_t decode_pb(ctx_t *c, const uint8_t *buf, size_t len)
{
    weft_header_t h[] = {H("content-type", CT_PROTO)};
    return decode(c, h, 1, buf, len);
}

static void test_protobuf_structured(void **state)
{
    ctx_t *c = *state;
    ce_t ev;
    pb_required(&ev);
    static const uint8_t payload[] = {0x00, 0x01, 0xfe, 0xff, 'x'};
    ev.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    ev.binary_data.data = (uint8_t *)payload;
    ev.binary_data.len = sizeof(payload);
    pb_attr_t attrs[7];
    attrs[0] = pb_string("subject", "order/7");
    attrs[1] = pb_string("datacontenttype", "application/octet-stream");
    attrs[2] = pb_string("count", "x");
    attrs[2].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
    attrs[2].val.ce_integer = -7;
    attrs[3] = pb_string("flag", "x");
    attrs[3].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN;
    attrs[3].val.ce_boolean = 1;
    attrs[4] = pb_string("time", "x");
    attrs[4].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    google__protobuf__timestamp__init(&attrs[4].ts);
    attrs[4].ts.seconds = 1700000000;
    attrs[5] = pb_string("dataschema", "x");
    attrs[5].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI;
    attrs[5].val.ce_uri = "https://example.com/schema";
    attrs[6] = pb_string("ref", "x");
    attrs[6].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF;
    attrs[6].val.ce_uri_ref = "/relative#frag";
    size_t len;
    uint8_t *buf = pb_pack(&ev, attrs, 7, &len);
    assert_int_equal(decode_pb(c, buf, len), WEFT_ENV_OK);
    free(buf);
    assert_int_equal(c->env.mode, WEFT_ENV_PROTOBUF);
    assert_attr(c, "id", "pb-1");
    assert_attr(c, "source", "/pb");
    assert_attr(c, "specversion", "1.0");
    assert_attr(c, "type", "com.example.pb");
    assert_attr(c, "subject", "order/7");
    assert_attr(c, "datacontenttype", "application/octet-stream");
    assert_attr(c, "count", "-7");
    assert_attr(c, "flag", "true");
    assert_attr(c, "time", "2023-11-14T22:13:20Z");
    assert_attr(c, "dataschema", "https://example.com/schema");
    assert_attr(c, "ref", "/relative#frag");
    assert_attr(c, "absent", NULL);
    assert_data(c, payload, sizeof(payload));
}

static void test_protobuf_text_data(void **state)
{
    ctx_t *c = *state;
    ce_t ev;
    pb_required(&ev);
    ev.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA;
    ev.text_data = "hello text";
    size_t len;
    uint8_t *buf = pb_pack(&ev, NULL, 0, &len);
    assert_int_equal(decode_pb(c, buf, len), WEFT_ENV_OK);
    free(buf);
    assert_data(c, "hello text", 10);
}

static void test_protobuf_attribute_kinds(void **state)
{
    ctx_t *c = *state;
    static const struct {
        int32_t i;
        const char *want;
    } ints[] = {{0, "0"}, {2147483647, "2147483647"}, {-2147483647 - 1, "-2147483648"}};
    for (size_t k = 0; k < 3; k++) {
        ce_t ev;
        pb_required(&ev);
        pb_attr_t a[2];
        a[0] = pb_string("n", "x");
        a[0].val.attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
        a[0].val.ce_integer = ints[k].i;
        a[1] = pb_string("b", "x");
        a[1].val.attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN;
        a[1].val.ce_boolean = 0;
        size_t len;
        uint8_t *buf = pb_pack(&ev, a, 2, &len);
        assert_int_equal(decode_pb(c, buf, len), WEFT_ENV_OK);
        free(buf);
        assert_attr(c, "n", ints[k].want);
        assert_attr(c, "b", "false");
        /* Asking twice gives the same text (formatted values are kept). */
        const char *first = weft_envelope_attr(&c->env, "n");
        assert_string_equal(weft_envelope_attr(&c->env, "n"), first);
    }
    /* Timestamps: the epoch and a date before it. */
    static const struct {
        int64_t s;
        const char *want;
    } ts[] = {{0, "1970-01-01T00:00:00Z"},
              {-86400, "1969-12-31T00:00:00Z"},
              {253402300799LL, "9999-12-31T23:59:59Z"}};
    for (size_t k = 0; k < 3; k++) {
        ce_t ev;
        pb_required(&ev);
        pb_attr_t a[1];
        a[0] = pb_string("time", "x");
        a[0].val.attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
        google__protobuf__timestamp__init(&a[0].ts);
        a[0].ts.seconds = ts[k].s;
        size_t len;
        uint8_t *buf = pb_pack(&ev, a, 1, &len);
        assert_int_equal(decode_pb(c, buf, len), WEFT_ENV_OK);
        free(buf);
        assert_attr(c, "time", ts[k].want);
    }
    /* Bytes are base64, as the exec protocol and the C ABI show them
     * (issue 23: they were absent here, so a filter could not see what the
     * function saw); an attribute without a value kind is absent. */
    ce_t ev;
    pb_required(&ev);
    pb_attr_t a[2];
    a[0] = pb_string("raw", "x");
    a[0].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES;
    a[0].val.ce_bytes.data = (uint8_t *)"ab";
    a[0].val.ce_bytes.len = 2;
    a[1] = pb_string("unset", "x");
    a[1].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR__NOT_SET;
    size_t len;
    uint8_t *buf = pb_pack(&ev, a, 2, &len);
    assert_int_equal(decode_pb(c, buf, len), WEFT_ENV_OK);
    free(buf);
    assert_attr(c, "raw", "YWI=");
    assert_attr(c, "unset", NULL);
}

/*
 * BUG (envelope.c, weft_envelope_attr): a ce_timestamp whose seconds do
 * not fit a struct tm (here INT64_MAX, from an untrusted producer) makes
 * gmtime_r() fail, and the uninitialized struct tm is then formatted by
 * strftime(): undefined behaviour, and the "time" attribute is built from
 * stack garbage. Expected: no string form (NULL), as for other values that
 * cannot be shown.
 */
static void test_protobuf_timestamp_out_of_range(void **state)
{
    ctx_t *c = *state;
    ce_t ev;
    pb_required(&ev);
    pb_attr_t a[1];
    a[0] = pb_string("time", "x");
    a[0].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    google__protobuf__timestamp__init(&a[0].ts);
    a[0].ts.seconds = INT64_MAX;
    size_t len;
    uint8_t *buf = pb_pack(&ev, a, 1, &len);
    weft_env_status_t st = decode_pb(c, buf, len);
    free(buf);
    if (st == WEFT_ENV_MALFORMED)
        return; /* rejecting it at decode time is fine too */
    assert_int_equal(st, WEFT_ENV_OK);
    assert_attr(c, "time", NULL);
}

static void test_protobuf_malformed(void **state)
{
    ctx_t *c = *state;
    /* Missing type. */
    ce_t ev;
    pb_required(&ev);
    ev.type = "";
    size_t len;
    uint8_t *buf = pb_pack(&ev, NULL, 0, &len);
    assert_int_equal(decode_pb(c, buf, len), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "type");
    free(buf);
    /* Wrong specversion. */
    pb_required(&ev);
    ev.spec_version = "0.3";
    buf = pb_pack(&ev, NULL, 0, &len);
    assert_int_equal(decode_pb(c, buf, len), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "specversion");
    free(buf);
    /* Invalid attribute name. */
    pb_required(&ev);
    pb_attr_t a[1] = {pb_string("Bad-Key", "v")};
    buf = pb_pack(&ev, a, 1, &len);
    assert_int_equal(decode_pb(c, buf, len), WEFT_ENV_MALFORMED);
    assert_err_mentions(c, "attribute");
    free(buf);
    /* Not protobuf at all (a truncated length-delimited field). */
    static const uint8_t junk[] = {0x0a, 0x50, 'a', 'b'};
    assert_int_equal(decode_pb(c, junk, sizeof(junk)), WEFT_ENV_MALFORMED);
    assert_true(c->err[0] != '\0');
    /* Empty and NULL values: an event without attributes. */
    assert_int_equal(decode_pb(c, (const uint8_t *)"", 0), WEFT_ENV_MALFORMED);
    assert_int_equal(decode_pb(c, NULL, 0), WEFT_ENV_MALFORMED);
}

/* ---- Other content types and plain messages ------------------------- */

static void test_batch_unsupported(void **state)
{
    ctx_t *c = *state;
    weft_header_t h[] = {H("content-type", "application/cloudevents-batch+json")};
    assert_int_equal(decode(c, h, 1, "[]", 2), WEFT_ENV_UNSUPPORTED);
    assert_err_mentions(c, "application/cloudevents-batch+json");
    weft_header_t h2[] = {H("Content-Type", "application/cloudevents+avro")};
    assert_int_equal(decode(c, h2, 1, "x", 1), WEFT_ENV_UNSUPPORTED);
    assert_err_mentions(c, "application/cloudevents+avro");
}

static void test_plain_message(void **state)
{
    ctx_t *c = *state;
    const char value[] = "just bytes\x00\xff";
    weft_header_t h[] = {H("x-request-id", "r1"), H("traceparent", "00-1-2-01")};
    assert_int_equal(decode(c, h, 2, value, sizeof(value) - 1), WEFT_ENV_OK);
    assert_int_equal(c->env.mode, WEFT_ENV_PLAIN);
    assert_attr(c, "id", PLAIN_ID);
    assert_attr(c, "source", PLAIN_SOURCE);
    assert_attr(c, "type", "");
    assert_attr(c, "specversion", "1.0");
    assert_attr(c, "datacontenttype", NULL);
    assert_attr(c, "traceparent", NULL);
    assert_data(c, value, sizeof(value) - 1);

    /* A content type that is not CloudEvents stays plain and is kept. */
    weft_header_t h2[] = {H("content-type", "application/json")};
    assert_int_equal(decode(c, h2, 1, "{}", 2), WEFT_ENV_OK);
    assert_int_equal(c->env.mode, WEFT_ENV_PLAIN);
    assert_attr(c, "datacontenttype", "application/json");
    assert_attr(c, "type", "");
    assert_data(c, "{}", 2);

    /* No headers at all, no value. */
    assert_int_equal(decode(c, NULL, 0, NULL, 0), WEFT_ENV_OK);
    assert_int_equal(c->env.mode, WEFT_ENV_PLAIN);
    assert_attr(c, "id", PLAIN_ID);
    assert_data(c, NULL, 0);
}

/* The plain id/source are copied: the caller's buffers may be reused. */
static void test_plain_ids_are_copied(void **state)
{
    ctx_t *c = *state;
    char id[32] = "t/1/99", src[32] = "kafka://x/t";
    weft_envelope_free(&c->env);
    assert_int_equal(
        weft_envelope_decode(&c->env, NULL, 0, "v", 1, id, src, c->err, sizeof(c->err)),
        WEFT_ENV_OK);
    memset(id, 'Z', sizeof(id) - 1);
    memset(src, 'Z', sizeof(src) - 1);
    assert_attr(c, "id", "t/1/99");
    assert_attr(c, "source", "kafka://x/t");
}

/* Free is safe after a failed decode and twice in a row. */
static void test_free_after_failure(void **state)
{
    ctx_t *c = *state;
    assert_int_equal(decode_json(c, "{" REQ ",\"nested\":{}}"), WEFT_ENV_MALFORMED);
    weft_envelope_free(&c->env);
    weft_envelope_free(&c->env);
    weft_envelope_free(NULL);
}

/* ---- Untrusted bytes ------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

/* After any decode: a defined status, a reason on failure, and on success
 * an event whose required attributes and every attribute can be read. */
static void check_outcome(ctx_t *c, weft_env_status_t st)
{
    assert_true(st == WEFT_ENV_OK || st == WEFT_ENV_MALFORMED);
    if (st != WEFT_ENV_OK) {
        assert_true(c->err[0] != '\0');
        return;
    }
    assert_string_equal(weft_envelope_attr(&c->env, "specversion"), "1.0");
    assert_true(strlen(weft_envelope_attr(&c->env, "id")) > 0);
    assert_true(strlen(weft_envelope_attr(&c->env, "source")) > 0);
    assert_true(strlen(weft_envelope_attr(&c->env, "type")) > 0);
    for (size_t i = 0; i < c->env.ce->n_attributes; i++) {
        const char *v = weft_envelope_attr(&c->env, c->env.ce->attributes[i]->key);
        if (v)
            (void)strlen(v);
    }
    size_t len;
    const uint8_t *d = weft_envelope_data(&c->env, &len);
    if (len)
        assert_non_null(d);
    for (size_t i = 0; i < len; i++)
        (void)*(volatile const uint8_t *)(d + i);
}

static void random_bytes(uint8_t *buf, size_t len, const char *alphabet)
{
    size_t na = alphabet ? strlen(alphabet) : 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)rng();
        buf[i] = na ? (uint8_t)alphabet[b % na] : b;
    }
}

static void mutate(uint8_t *buf, size_t *len, size_t cap, const uint8_t *orig, size_t olen)
{
    memcpy(buf, orig, olen);
    *len = olen;
    int edits = 1 + (int)(rng() % 4);
    for (int e = 0; e < edits; e++) {
        switch (rng() % 4) {
        case 0: /* flip a byte */
            if (*len)
                buf[rng() % *len] = (uint8_t)rng();
            break;
        case 1: /* truncate */
            if (*len)
                *len = (size_t)(rng() % *len);
            break;
        case 2: /* insert a byte */
            if (*len < cap) {
                size_t at = *len ? (size_t)(rng() % (*len + 1)) : 0;
                memmove(buf + at + 1, buf + at, *len - at);
                buf[at] = (uint8_t)rng();
                (*len)++;
            }
            break;
        default: /* delete a byte */
            if (*len) {
                size_t at = (size_t)(rng() % *len);
                memmove(buf + at, buf + at + 1, *len - at - 1);
                (*len)--;
            }
            break;
        }
    }
}

static void test_fuzz_json(void **state)
{
    ctx_t *c = *state;
    weft_header_t h[] = {H("content-type", CT_JSON)};
    uint8_t buf[600];
    rng_state = 0x5eed5eed12345678ULL;
    /* Random bytes, and random text over JSON's own alphabet. */
    for (int i = 0; i < 3000; i++) {
        size_t len = (size_t)(rng() % 300);
        random_bytes(buf, len, i % 2 ? "{}[]:,\"\\u0123456789abcdefE+-. truenlsf_" : NULL);
        check_outcome(c, decode(c, h, 1, buf, len));
    }
    /* Mutations of a valid event. */
    const char *valid = "{\"specversion\":\"1.0\",\"id\":\"e\\u00e91\",\"source\":\"/s\","
                        "\"type\":\"t\",\"n\":-1.5e3,\"b\":true,\"subject\":\"\\ud83d\\ude00\","
                        "\"datacontenttype\":\"text/plain\",\"data\":\"x\\ny\"}";
    const char *valid64 = "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\","
                          "\"data_base64\":\"AP8QaGVsbG8=\"}";
    int ok = 0;
    for (int i = 0; i < 3000; i++) {
        const char *src = i % 2 ? valid : valid64;
        size_t len;
        mutate(buf, &len, sizeof(buf), (const uint8_t *)src, strlen(src));
        weft_env_status_t st = decode(c, h, 1, buf, len);
        check_outcome(c, st);
        ok += st == WEFT_ENV_OK;
    }
    /* Some mutations keep the event valid, so both paths were exercised. */
    assert_true(ok > 0);
}

static void test_fuzz_protobuf(void **state)
{
    ctx_t *c = *state;
    uint8_t buf[600];
    rng_state = 0xfeedface0badf00dULL;
    for (int i = 0; i < 3000; i++) {
        size_t len = (size_t)(rng() % 300);
        random_bytes(buf, len, NULL);
        check_outcome(c, decode_pb(c, buf, len));
    }
    /* Mutations of a valid event with every kind of attribute. */
    ce_t ev;
    pb_required(&ev);
    ev.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA;
    ev.text_data = "text data";
    pb_attr_t a[4];
    a[0] = pb_string("subject", "s");
    a[1] = pb_string("n", "x");
    a[1].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
    a[1].val.ce_integer = 5;
    a[2] = pb_string("time", "x");
    a[2].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    google__protobuf__timestamp__init(&a[2].ts);
    a[2].ts.seconds = 1700000000;
    a[3] = pb_string("b", "x");
    a[3].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN;
    a[3].val.ce_boolean = 1;
    size_t vlen;
    uint8_t *valid = pb_pack(&ev, a, 4, &vlen);
    assert_true(vlen < sizeof(buf));
    int ok = 0;
    for (int i = 0; i < 3000; i++) {
        size_t len;
        mutate(buf, &len, sizeof(buf), valid, vlen);
        weft_env_status_t st = decode_pb(c, buf, len);
        check_outcome(c, st);
        ok += st == WEFT_ENV_OK;
    }
    free(valid);
    assert_true(ok > 0);
}

/* Random headers: ce_ names from a small set, random values. */
static void test_fuzz_binary_headers(void **state)
{
    ctx_t *c = *state;
    static const char *const names[] = {"ce_id",      "ce_source", "ce_type", "ce_specversion",
                                        "ce_subject", "ce_X",      "ce_",     "content-type",
                                        "other"};
    static const char *const values[] = {
        "1.0", "", "a", "x\0y", "application/cloudevents+json", "application/cloudevents-batch"};
    static const size_t value_lens[] = {3, 0, 1, 3, 28, 29};
    rng_state = 7;
    for (int i = 0; i < 3000; i++) {
        weft_header_t h[6];
        size_t nh = (size_t)(rng() % 7);
        for (size_t k = 0; k < nh; k++) {
            size_t v = (size_t)(rng() % 6);
            h[k].name = names[rng() % 9];
            h[k].value = values[v];
            h[k].len = value_lens[v];
        }
        weft_env_status_t st = decode(c, h, nh, "{}", 2);
        assert_true(st == WEFT_ENV_OK || st == WEFT_ENV_MALFORMED || st == WEFT_ENV_UNSUPPORTED);
        if (st == WEFT_ENV_OK) {
            assert_non_null(weft_envelope_attr(&c->env, "id"));
            assert_non_null(weft_envelope_attr(&c->env, "type"));
        } else {
            assert_true(c->err[0] != '\0');
        }
    }
}

#define ENV_TEST(f) cmocka_unit_test_setup_teardown(f, ctx_setup, ctx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        ENV_TEST(test_binary_mode),
        ENV_TEST(test_binary_missing_required),
        ENV_TEST(test_binary_specversion_must_be_1_0),
        ENV_TEST(test_binary_header_with_nul),
        ENV_TEST(test_binary_invalid_attribute_names),
        ENV_TEST(test_repeated_attribute_last_wins),
        ENV_TEST(test_binary_many_and_long_attributes),
        ENV_TEST(test_binary_empty_and_null_value),
        ENV_TEST(test_json_structured),
        ENV_TEST(test_json_missing_required),
        ENV_TEST(test_json_text_data),
        ENV_TEST(test_json_string_data_as_json),
        ENV_TEST(test_json_no_data),
        ENV_TEST(test_json_data_base64),
        ENV_TEST(test_json_data_base64_escaped_slash),
        ENV_TEST(test_json_data_and_base64_rejected),
        ENV_TEST(test_json_extension_values),
        ENV_TEST(test_json_bad_attribute_values),
        ENV_TEST(test_json_invalid_documents),
        ENV_TEST(test_protobuf_structured),
        ENV_TEST(test_protobuf_text_data),
        ENV_TEST(test_protobuf_attribute_kinds),
        ENV_TEST(test_protobuf_timestamp_out_of_range),
        ENV_TEST(test_protobuf_malformed),
        ENV_TEST(test_batch_unsupported),
        ENV_TEST(test_plain_message),
        ENV_TEST(test_plain_ids_are_copied),
        ENV_TEST(test_free_after_failure),
        ENV_TEST(test_fuzz_json),
        ENV_TEST(test_fuzz_protobuf),
        ENV_TEST(test_fuzz_binary_headers),
    };
    return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}
