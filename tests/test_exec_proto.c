/*
 * test_exec_proto.c - the exec runtime's payloads (workers/proto/exec_proto.c):
 * requests are compact one-line JSON in the CloudEvents JSON format, and
 * replies are parsed strictly enough that a broken program is caught, but
 * leniently where the protocol says so (unknown members, defaults).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "exec_proto.h"

typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue attr_value_t;

static char *request_for(Io__Cloudevents__V1__CloudEvent *ce)
{
    Weft__V1__Invoke inv = WEFT__V1__INVOKE__INIT;
    inv.seq = 7;
    inv.event = ce;
    inv.trigger = "t";
    inv.attempt = 2;
    inv.deadline_ms = 1500;
    weft_buf_t b = {0};
    assert_int_equal(weft_exec_request(&inv, &b), 0);
    assert_true(weft_json_valid(b.data, b.len));
    assert_null(memchr(b.data, '\n', b.len)); /* readable as one line */
    return (char *)b.data;                    /* NUL-terminated by weft_buf_append */
}

static void test_request_text_and_escapes(void **state)
{
    (void)state;
    Io__Cloudevents__V1__CloudEvent ce = IO__CLOUDEVENTS__V1__CLOUD_EVENT__INIT;
    Io__Cloudevents__V1__CloudEvent__AttributesEntry e[2], *ep[2] = {&e[0], &e[1]};
    attr_value_t v[2];
    for (int i = 0; i < 2; i++) {
        io__cloudevents__v1__cloud_event__attributes_entry__init(&e[i]);
        io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&v[i]);
        v[i].attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
        e[i].value = &v[i];
    }
    e[0].key = "datacontenttype";
    v[0].ce_string = "text/plain; charset=utf-8";
    e[1].key = "note";
    v[1].ce_string = "tab\there \"q\" bad\xff end\n";
    ce.id = "1";
    ce.source = "/s";
    ce.type = "t";
    ce.n_attributes = 2;
    ce.attributes = ep;
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    ce.binary_data.data = (uint8_t *)"line1\nline2";
    ce.binary_data.len = 11;
    char *req = request_for(&ce);
    assert_string_equal(
        req, "{\"event\":{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\","
             "\"datacontenttype\":\"text/plain; charset=utf-8\","
             "\"note\":\"tab\\there \\\"q\\\" bad\\ufffd end\\n\","
             "\"data_base64\":\"bGluZTEKbGluZTI=\"},\"trigger\":\"t\",\"attempt\":2,"
             "\"deadline_ms\":1500}");
    free(req);

    /* Text data that is not JSON becomes a string; JSON is embedded. */
    ce.n_attributes = 0;
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA;
    ce.text_data = "not { json";
    req = request_for(&ce);
    assert_non_null(strstr(req, ",\"data\":\"not { json\"}"));
    free(req);
    ce.text_data = " [1, {\"a\" : null}] ";
    req = request_for(&ce);
    assert_non_null(strstr(req, ",\"data\":[1,{\"a\":null}]}"));
    free(req);
    /* No data: neither member. */
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA__NOT_SET;
    req = request_for(&ce);
    assert_null(strstr(req, "\"data"));
    free(req);
}

typedef struct reply_case {
    const char *json;
    int disposition;
    const char *data; /* NULL: no data */
    size_t len;
    const char *content_type;
    const char *error;
    uint32_t retry_after_ms;
} reply_case_t;

static void test_reply_parse(void **state)
{
    (void)state;
    static const reply_case_t ok[] = {
        {"{}", WEFT_OK, NULL, 0, "", "", 0},
        {" {\"disposition\":\"drop\",\"future\":{\"x\":[1]}} ", WEFT_DROP, NULL, 0, "", "", 0},
        {"{\"disposition\":\"retry\",\"error\":\"later\",\"retry_after_ms\":250}", WEFT_RETRY, NULL,
         0, "", "later", 250},
        {"{\"disposition\":\"fail\",\"error\":\"caf\\u00e9 \\ud83d\\ude00\"}", WEFT_FAIL, NULL, 0,
         "", "caf\xc3\xa9 \xf0\x9f\x98\x80", 0},
        {"{\"data\":{ \"k\" : [1, \"v\"] }}", WEFT_OK, "{\"k\":[1,\"v\"]}", 13, "application/json",
         "", 0},
        {"{\"data\":\"hi\"}", WEFT_OK, "\"hi\"", 4, "application/json", "", 0},
        {"{\"data\":\"a\\nb\",\"datacontenttype\":\"text/plain\"}", WEFT_OK, "a\nb", 3,
         "text/plain", "", 0},
        {"{\"data\":null,\"datacontenttype\":\"text/plain\"}", WEFT_OK, NULL, 0, "text/plain", "",
         0},
        {"{\"data_base64\":\"AAH/\"}", WEFT_OK, "\x00\x01\xff", 3, "application/octet-stream", "",
         0},
        {"{\"data_base64\":\"aGk\",\"datacontenttype\":\"text/plain\"}", WEFT_OK, "hi", 2,
         "text/plain", "", 0},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        weft_result_t res;
        char err[256] = "";
        memset(&res, 0, sizeof(res));
        int d = weft_exec_reply_parse((const uint8_t *)ok[i].json, strlen(ok[i].json), &res, err,
                                      sizeof(err));
        if (d != ok[i].disposition)
            print_error("%s: %d %s\n", ok[i].json, d, err);
        assert_int_equal(d, ok[i].disposition);
        assert_int_equal(res.data_len, ok[i].len);
        if (ok[i].data)
            assert_memory_equal(res.data, ok[i].data, ok[i].len);
        else
            assert_null(res.data);
        assert_string_equal(res.content_type, ok[i].content_type);
        assert_string_equal(res.error, ok[i].error);
        assert_int_equal(res.retry_after_ms, ok[i].retry_after_ms);
        free(res.data);
    }

    static const struct {
        const char *json, *why;
    } bad[] = {
        {"", "not valid JSON"},
        {"[1]", "not a JSON object"},
        {"{\"disposition\":\"maybe\"}", "unknown disposition"},
        {"{\"disposition\":1}", "disposition is not a string"},
        {"{\"retry_after_ms\":-1}", "retry_after_ms"},
        {"{\"retry_after_ms\":1.5}", "retry_after_ms"},
        {"{\"retry_after_ms\":99999999999}", "retry_after_ms"},
        {"{\"data\":1,\"data_base64\":\"AA==\"}", "both data and data_base64"},
        {"{\"data_base64\":\"**\"}", "not valid base64"},
        {"{\"data_base64\":7}", "data_base64 is not a string"},
        {"{\"error\":\"a\",\"error\":\"b\"}", "appears twice"},
        {"{\"error\":\"\\ud800\"}", "error is not a valid string"},
        {"{\"data\":\"x\xff\"}", "not valid JSON"},
        {"{\"a\":1} trailing", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        weft_result_t res;
        char err[256] = "";
        memset(&res, 0, sizeof(res));
        int d = weft_exec_reply_parse((const uint8_t *)bad[i].json, strlen(bad[i].json), &res, err,
                                      sizeof(err));
        if (d != -1 || !strstr(err, bad[i].why))
            print_error("%s: %d \"%s\", want \"%s\"\n", bad[i].json, d, err, bad[i].why);
        assert_int_equal(d, -1);
        assert_non_null(strstr(err, bad[i].why));
        assert_null(res.data);
    }
}

static void test_json_helpers(void **state)
{
    (void)state;
    assert_true(weft_json_content_type("application/json"));
    assert_true(weft_json_content_type("Application/JSON; charset=utf-8"));
    assert_true(weft_json_content_type("application/cloudevents+json"));
    assert_true(weft_json_content_type("text/json"));
    assert_false(weft_json_content_type("text/plain"));
    assert_false(weft_json_content_type("+json"));
    assert_false(weft_json_content_type("application/jsonx"));
    assert_true(weft_utf8_valid((const uint8_t *)"caf\xc3\xa9", 5));
    assert_false(weft_utf8_valid((const uint8_t *)"\xc0\xaf", 2));     /* overlong */
    assert_false(weft_utf8_valid((const uint8_t *)"\xed\xa0\x80", 3)); /* surrogate */
    assert_false(weft_json_valid((const uint8_t *)"{\"a\":01}", 8));
    assert_true(weft_json_valid((const uint8_t *)" -0.5e+3 ", 9));
    char deep[300];
    memset(deep, '[', 150);
    memset(deep + 150, ']', 150);
    assert_false(weft_json_valid((const uint8_t *)deep, 300)); /* nesting bound */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_text_and_escapes),
        cmocka_unit_test(test_reply_parse),
        cmocka_unit_test(test_json_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
