/*
 * test_cli_args.c - the pure parsing of the operator's commands (cli.h):
 * broker URLs, offset ranges, times, --lines documents, the CloudEvents
 * they become on the wire, and the idempotency-key rule replay relies on.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "envelope.h"
#include "eventkey.h"

static void test_urls(void **state)
{
    (void)state;
    weft_cli_url_t u;
    char err[256];
    assert_int_equal(weft_cli_parse_url("kafka://orders.v1_x-y", &u, err, sizeof(err)), 0);
    assert_int_equal(u.broker, WEFT_BROKER_KAFKA);
    assert_string_equal(u.name, "orders.v1_x-y");
    assert_int_equal(weft_cli_parse_url("jetstream://orders.created", &u, err, sizeof(err)), 0);
    assert_int_equal(u.broker, WEFT_BROKER_JETSTREAM);
    assert_string_equal(u.name, "orders.created");
    assert_int_equal(weft_cli_parse_url("nats://a.b.c", &u, err, sizeof(err)), 0);
    assert_int_equal(u.broker, WEFT_BROKER_NATS);

    assert_int_equal(weft_cli_parse_url("orders", &u, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "kafka://TOPIC"));
    assert_int_equal(weft_cli_parse_url("kafka://", &u, err, sizeof(err)), -1);
    assert_int_equal(weft_cli_parse_url("kafka://a b", &u, err, sizeof(err)), -1);
    assert_int_equal(weft_cli_parse_url("kafka://a/b", &u, err, sizeof(err)), -1);
    assert_int_equal(weft_cli_parse_url("http://x", &u, err, sizeof(err)), -1);
    assert_int_equal(weft_cli_parse_url("nats://a.*", &u, err, sizeof(err)), -1);
    assert_int_equal(weft_cli_parse_url("nats://a..b", &u, err, sizeof(err)), -1);
    assert_int_equal(weft_cli_parse_url("jetstream://.a", &u, err, sizeof(err)), -1);
    char longt[300];
    memset(longt, 'x', sizeof(longt));
    memcpy(longt, "kafka://", 8);
    longt[8 + 250] = '\0';
    assert_int_equal(weft_cli_parse_url(longt, &u, err, sizeof(err)), -1);
    longt[8 + 249] = '\0';
    assert_int_equal(weft_cli_parse_url(longt, &u, err, sizeof(err)), 0);
}

static void test_offsets(void **state)
{
    (void)state;
    weft_cli_offsets_t o;
    char err[256];
    assert_int_equal(weft_cli_parse_offsets("1200", &o, err, sizeof(err)), 0);
    assert_true(o.has_all);
    assert_int_equal(weft_cli_offsets_get(&o, 7, -1), 1200);
    assert_true(weft_cli_offsets_names(&o, 3));
    weft_cli_offsets_free(&o);

    assert_int_equal(weft_cli_parse_offsets("0:10,3:7", &o, err, sizeof(err)), 0);
    assert_false(o.has_all);
    assert_int_equal(o.n, 2);
    assert_int_equal(weft_cli_offsets_get(&o, 0, -1), 10);
    assert_int_equal(weft_cli_offsets_get(&o, 3, -1), 7);
    assert_int_equal(weft_cli_offsets_get(&o, 1, 99), 99);
    assert_true(weft_cli_offsets_names(&o, 3));
    assert_false(weft_cli_offsets_names(&o, 1));
    weft_cli_offsets_free(&o);

    const char *bad[] = {"",      "-1",       "abc", "1:",  ":5",
                         "1:2,",  "1:2,1:3",  "1:x", "a:1", "99999999999999999999",
                         "1:2:3", "0:1,,2:3", NULL};
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(weft_cli_parse_offsets(bad[i], &o, err, sizeof(err)), -1);
        assert_true(strlen(err) > 0);
        assert_null(o.v);
    }
}

static void test_times(void **state)
{
    (void)state;
    int64_t ms, now = 1714557600000LL; /* 2024-05-01T10:00:00Z */
    char err[256];
    assert_int_equal(weft_cli_parse_time("2024-05-01T10:00:00Z", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, 1714557600000LL);
    assert_int_equal(
        weft_cli_parse_time("2024-05-01T12:00:00.250+02:00", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, 1714557600250LL);
    assert_int_equal(weft_cli_parse_time("2024-05-01 10:00", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, 1714557600000LL);
    assert_int_equal(weft_cli_parse_time("2024-05-01 10:00:30", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, 1714557630000LL);
    assert_int_equal(weft_cli_parse_time("2024-05-01", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, 1714521600000LL);
    assert_int_equal(weft_cli_parse_time("@1714557600123", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, 1714557600123LL);
    assert_int_equal(weft_cli_parse_time("15m", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, now - 15 * 60000);
    assert_int_equal(weft_cli_parse_time("2h", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, now - 2 * 3600000);
    assert_int_equal(weft_cli_parse_time("7d", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, now - 7LL * 86400000);
    assert_int_equal(weft_cli_parse_time("30s", now, &ms, err, sizeof(err)), 0);
    assert_int_equal(ms, now - 30000);

    const char *bad[] = {"",
                         "yesterday",
                         "2024-13-01",
                         "2024-02-30",
                         "2024-05-01T25:00:00Z",
                         "2024-05-01T10:00:00+2",
                         "15x",
                         "-5m",
                         "@",
                         "@12a",
                         "2024-05-01 10",
                         "2024-05-01T10:00Z+",
                         NULL};
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(weft_cli_parse_time(bad[i], now, &ms, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "is not a time"));
    }
    /* Strict RFC 3339 for the time attribute. */
    assert_int_equal(weft_cli_parse_rfc3339("2024-02-29T23:59:60Z", &ms), 0);
    assert_int_equal(weft_cli_parse_rfc3339("2023-02-29T00:00:00Z", &ms), -1);
    assert_int_equal(weft_cli_parse_rfc3339("2024-05-01 10:00:00Z", &ms), -1);
    char out[32];
    weft_cli_format_time(1714557600250LL, out);
    assert_string_equal(out, "2024-05-01T10:00:00.250Z");
    assert_int_equal(weft_cli_parse_rfc3339(out, &ms), 0);
    assert_int_equal(ms, 1714557600250LL);
}

static void test_lines_documents(void **state)
{
    (void)state;
    weft_cli_event_t ev;
    char err[256];
    const char *doc = "{\"type\":\"order.created\",\"id\":\"o-1\",\"subject\":\"orders/1\","
                      "\"data\":{\"qty\":2},\"region\":\"eu\",\"priority\":3,\"urgent\":true,"
                      "\"dataschema\":null}";
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(weft_cli_event_from_json(doc, strlen(doc), &ev, err, sizeof(err)), 0);
    assert_string_equal(weft_cli_event_get(&ev, "type"), "order.created");
    assert_string_equal(weft_cli_event_get(&ev, "region"), "eu");
    assert_string_equal(weft_cli_event_get(&ev, "priority"), "3");
    assert_string_equal(weft_cli_event_get(&ev, "urgent"), "true");
    assert_null(weft_cli_event_get(&ev, "dataschema"));
    assert_string_equal(weft_cli_event_get(&ev, "datacontenttype"), "application/json");
    assert_int_equal(ev.data_len, strlen("{\"qty\":2}"));
    assert_memory_equal(ev.data, "{\"qty\":2}", ev.data_len);
    assert_int_equal(weft_cli_event_set(&ev, "source", "/shop"), 0);
    assert_int_equal(weft_cli_event_finish(&ev, err, sizeof(err)), 0);
    assert_string_equal(weft_cli_event_get(&ev, "specversion"), "1.0");
    assert_string_equal(weft_cli_event_get(&ev, "id"), "o-1");
    int64_t ms;
    assert_int_equal(weft_cli_parse_rfc3339(weft_cli_event_get(&ev, "time"), &ms), 0);

    /* Binary mode decodes back to the same event. */
    weft_header_t hdrs[WEFT_CLI_MAX_ATTRS];
    size_t nh = weft_cli_event_headers(&ev, hdrs);
    assert_string_equal(hdrs[0].name, "ce_specversion");
    weft_envelope_t env;
    assert_int_equal(
        weft_envelope_decode(&env, hdrs, nh, ev.data, ev.data_len, "p", "p", err, sizeof(err)),
        WEFT_ENV_OK);
    assert_int_equal(env.mode, WEFT_ENV_BINARY);
    assert_string_equal(weft_envelope_attr(&env, "id"), "o-1");
    assert_string_equal(weft_envelope_attr(&env, "subject"), "orders/1");
    assert_string_equal(weft_envelope_attr(&env, "region"), "eu");
    assert_string_equal(weft_envelope_attr(&env, "datacontenttype"), "application/json");
    weft_envelope_free(&env);

    /* Structured mode too. */
    size_t len;
    char *json = weft_cli_event_json(&ev, &len);
    assert_non_null(json);
    weft_header_t ct = {"content-type", "application/cloudevents+json", 28};
    assert_int_equal(weft_envelope_decode(&env, &ct, 1, json, len, "p", "p", err, sizeof(err)),
                     WEFT_ENV_OK);
    assert_int_equal(env.mode, WEFT_ENV_JSON);
    assert_string_equal(weft_envelope_attr(&env, "type"), "order.created");
    size_t dl;
    const uint8_t *d = weft_envelope_data(&env, &dl);
    assert_int_equal(dl, ev.data_len);
    assert_memory_equal(d, "{\"qty\":2}", dl);
    weft_envelope_free(&env);
    free(json);
    weft_cli_event_free(&ev);

    /* A text string with a non-JSON content type is the text itself. */
    const char *txt = "{\"type\":\"t\",\"source\":\"/s\",\"datacontenttype\":\"text/plain\","
                      "\"data\":\"h\\u00e9llo\"}";
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(weft_cli_event_from_json(txt, strlen(txt), &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.data_len, 6);
    assert_memory_equal(ev.data, "h\xc3\xa9llo", 6);
    assert_int_equal(weft_cli_event_finish(&ev, err, sizeof(err)), 0);
    assert_int_equal(strlen(weft_cli_event_get(&ev, "id")), 36); /* a generated UUID */
    weft_cli_event_free(&ev);

    const char *b64 = "{\"type\":\"t\",\"source\":\"/s\",\"data_base64\":\"AAEC\"}";
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(weft_cli_event_from_json(b64, strlen(b64), &ev, err, sizeof(err)), 0);
    assert_int_equal(ev.data_len, 3);
    assert_int_equal(weft_cli_event_finish(&ev, err, sizeof(err)), 0);
    assert_string_equal(weft_cli_event_get(&ev, "datacontenttype"), "application/octet-stream");
    json = weft_cli_event_json(&ev, &len);
    assert_non_null(strstr(json, "\"data_base64\":\"AAEC\""));
    free(json);
    weft_cli_event_free(&ev);

    struct {
        const char *doc, *why;
    } bad[] = {
        {"not json", "not a JSON object"},
        {"[1,2]", "not a JSON object"},
        {"{\"type\":\"t\"", "invalid JSON"},
        {"{\"Type\":\"t\"}", "not a CloudEvents attribute name"},
        {"{\"type\":{\"a\":1}}", "must be a string, number or boolean"},
        {"{\"type\":\"t\",\"data\":1,\"data_base64\":\"AA==\"}", "not both"},
        {"{\"type\":\"t\",\"data_base64\":\"!!\"}", "not valid base64"},
        {"{\"type\":\"t\",\"specversion\":\"0.3\"}", "specversion"},
        {NULL, NULL},
    };
    for (int i = 0; bad[i].doc; i++) {
        memset(&ev, 0, sizeof(ev));
        assert_int_equal(
            weft_cli_event_from_json(bad[i].doc, strlen(bad[i].doc), &ev, err, sizeof(err)), -1);
        if (!strstr(err, bad[i].why))
            fail_msg("%s: got \"%s\", want \"%s\"", bad[i].doc, err, bad[i].why);
        weft_cli_event_free(&ev);
    }
    /* Valid JSON, invalid event: finish says why. */
    const char *notype = "{\"id\":\"x\",\"source\":\"/s\"}";
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(weft_cli_event_from_json(notype, strlen(notype), &ev, err, sizeof(err)), 0);
    assert_int_equal(weft_cli_event_finish(&ev, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no type"));
    weft_cli_event_free(&ev);
    const char *badtime = "{\"type\":\"t\",\"source\":\"/s\",\"time\":\"noon\"}";
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(weft_cli_event_from_json(badtime, strlen(badtime), &ev, err, sizeof(err)), 0);
    assert_int_equal(weft_cli_event_finish(&ev, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "RFC 3339"));
    weft_cli_event_free(&ev);
}

/* The idempotency key of a consumed Kafka message, as the dispatcher and
 * `weft replay` derive it (weft_event_key): the weft-key header, else "ce:"
 * source 0x1f id of a decoded CloudEvent, else "kafka:TOPIC/PARTITION/OFFSET". */
static char *message_key(const weft_header_t *hdrs, size_t n_hdrs, int env_ok, int env_plain,
                         const char *ce_source, const char *ce_id, const char *topic,
                         int32_t partition, int64_t offset)
{
    weft_bmsg_t m = {.broker = WEFT_BROKER_KAFKA,
                     .topic = topic,
                     .partition = partition,
                     .offset = offset,
                     .hdrs = (weft_header_t *)hdrs,
                     .n_hdrs = n_hdrs};
    int ce = env_ok && !env_plain;
    return weft_event_key(&m, ce ? ce_source : NULL, ce ? ce_id : NULL, NULL, NULL);
}

static void test_message_key_rule(void **state)
{
    (void)state;
    weft_header_t wk[] = {{"ce_id", "1", 1}, {"weft-key", "mine", 4}};
    char *k = message_key(wk, 2, 1, 0, "/s", "1", "t", 0, 5);
    assert_string_equal(k, "mine");
    free(k);
    k = message_key(wk, 1, 1, 0, "/s", "1", "t", 0, 5);
    assert_string_equal(k, "ce:/s\x1f"
                           "1");
    free(k);
    /* A plain message (or one that did not decode): its coordinates. */
    k = message_key(NULL, 0, 1, 1, "kafka://t", "t/0/5", "t", 0, 5);
    assert_string_equal(k, "kafka:t/0/5");
    free(k);
    k = message_key(NULL, 0, 0, 0, "", "", "t", 2, 9);
    assert_string_equal(k, "kafka:t/2/9");
    free(k);
    /* An empty or NUL-holding weft-key is ignored, as by the dispatcher. */
    weft_header_t badk[] = {{"weft-key", "a\0b", 3}};
    k = message_key(badk, 1, 1, 0, "/s", "1", "t", 0, 5);
    assert_string_equal(k, "ce:/s\x1f"
                           "1");
    free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
        cmocka_unit_test(test_offsets),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_lines_documents),
        cmocka_unit_test(test_message_key_rule),
    };
    return cmocka_run_group_tests_name("cli_args", tests, NULL, NULL);
}
