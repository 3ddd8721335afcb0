/*
 * test_kafka_conf.c - the settings weft gives its Kafka producer
 * (kafka.c): linger.ms=0 so a lone result never waits, the idempotent
 * producer, the user's kafka.* and kafka.producer.* keys winning over
 * weft's defaults (linger.ms is applied after them and must be
 * re-applied), and clear errors for a value or a topic name librdkafka
 * refuses. No broker
 * is needed: the settings are read from the created client, and nothing
 * has to listen on the address it is given. The one test that produces
 * (the first message to a new topic) runs against librdkafka's own
 * in-process mock cluster (test.mock.num.brokers).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "kafka.h"

static weft_kafka_t *producer(const char *set, char *err, size_t errlen)
{
    weft_config_t *cfg = weft_config_new();
    assert_non_null(cfg);
    /* Nothing listens on port 1; the client never needs to reach it. */
    assert_int_equal(weft_config_set(cfg, "kafka.bootstrap.servers", "127.0.0.1:1"), 0);
    if (set) {
        char line[256];
        snprintf(line, sizeof(line), "%s", set);
        assert_int_equal(weft_config_parse_line(cfg, line, err, errlen), 0);
    }
    weft_kafka_cbs_t cbs = {0};
    weft_kafka_t *k = weft_kafka_producer_new(cfg, &cbs, err, errlen);
    weft_config_destroy(cfg);
    return k;
}

static void assert_setting(weft_kafka_t *k, const char *key, const char *want)
{
    char v[64];
    assert_int_equal(weft_kafka_producer_setting(k, key, v, sizeof(v)), 0);
    assert_string_equal(v, want);
}

static void test_defaults_send_a_lone_result_at_once(void **state)
{
    (void)state;
    char err[512] = "";
    weft_kafka_t *k = producer(NULL, err, sizeof(err));
    assert_non_null(k);
    assert_setting(k, "linger.ms", "0");
    assert_setting(k, "enable.idempotence", "true");
    char small[3];
    assert_int_equal(weft_kafka_producer_setting(k, "enable.idempotence", small, sizeof(small)),
                     -1);
    weft_kafka_destroy(k, 0);
}

static void test_user_settings_win(void **state)
{
    (void)state;
    /* A setting of the user's, the key to read back, and what it must say;
     * linger.ms is weft's default and is applied after the user's keys. */
    static const char *const cases[][3] = {
        {"kafka.producer.max.in.flight.requests.per.connection = 1",
         "max.in.flight.requests.per.connection", "1"},
        {"kafka.producer.max.in.flight.requests.per.connection = 1", "linger.ms", "0"},
        {"kafka.linger.ms = 5", "linger.ms", "5"},
        {"kafka.producer.linger.ms = 2", "linger.ms", "2"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512] = "";
        weft_kafka_t *k = producer(cases[i][0], err, sizeof(err));
        assert_non_null(k);
        assert_setting(k, cases[i][1], cases[i][2]);
        weft_kafka_destroy(k, 0);
    }
}

static void test_refused_value_names_the_setting(void **state)
{
    (void)state;
    char err[512] = "";
    /* The idempotent producer allows at most 5. */
    weft_kafka_t *k =
        producer("kafka.producer.max.in.flight.requests.per.connection = 6", err, sizeof(err));
    assert_null(k);
    assert_non_null(strstr(err, "max.in.flight"));
}

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

typedef struct dr {
    int n;
    char err[256];
} dr_t;

static void on_delivered(void *opaque, void *msg_opaque, const char *err)
{
    dr_t *dr = opaque;
    (void)msg_opaque;
    dr->n++;
    if (err)
        snprintf(dr->err, sizeof(dr->err), "%s", err);
}

/* The first result to a topic the producer has not produced to is sent at
 * once. Produced by name alone, librdkafka makes the topic lazily and asks
 * for its metadata only at its next topic scan, once a second: a lone
 * result waited up to 1 s (the stats line's produce_ms showed 86-899 ms
 * for the first result after a start). The scan's first round comes ~1 s
 * after the client is made, so a message produced 100 ms after it, once
 * the client is connected (a topic known when it connects is asked for
 * then), shows the difference: a few milliseconds against ~900. */
static void test_first_message_to_a_new_topic_is_not_held(void **state)
{
    (void)state;
    weft_config_t *cfg = weft_config_new();
    assert_non_null(cfg);
    assert_int_equal(weft_config_set(cfg, "kafka.bootstrap.servers", "127.0.0.1:1"), 0);
    assert_int_equal(weft_config_set(cfg, "kafka.test.mock.num.brokers", "1"), 0);
    dr_t dr = {0};
    weft_kafka_cbs_t cbs = {.delivered = on_delivered, .opaque = &dr};
    char err[512] = "";
    double t0 = mono_ms();
    weft_kafka_t *k = weft_kafka_producer_new(cfg, &cbs, err, sizeof(err));
    weft_config_destroy(cfg);
    assert_non_null(k);
    while (mono_ms() - t0 < 100) {
        weft_kafka_serve(k);
        usleep(1000);
    }
    t0 = mono_ms();
    int retriable = 0;
    assert_int_equal(weft_kafka_produce(k, "never.seen", "k", 1, "v", 1, NULL, 0, NULL, &retriable,
                                        err, sizeof(err)),
                     0);
    while (dr.n == 0 && mono_ms() - t0 < 10000) {
        weft_kafka_serve(k);
        usleep(1000);
    }
    double ms = mono_ms() - t0;
    print_message("first message to a new topic delivered %.1f ms after it was produced\n", ms);
    assert_int_equal(dr.n, 1);
    assert_string_equal(dr.err, "");
    assert_true(ms < 500);
    weft_kafka_destroy(k, 1000);
}

/* A topic name librdkafka refuses (longer than its 512 bytes) is an error
 * that names the topic and is not marked retriable. */
static void test_refused_topic_name_is_a_clear_error(void **state)
{
    (void)state;
    char err[1024] = "";
    weft_kafka_t *k = producer(NULL, err, sizeof(err));
    assert_non_null(k);
    char topic[601];
    memset(topic, 't', sizeof(topic) - 1);
    topic[sizeof(topic) - 1] = '\0';
    int retriable = 1;
    err[0] = '\0';
    assert_int_equal(
        weft_kafka_produce(k, topic, "k", 1, "v", 1, NULL, 0, NULL, &retriable, err, sizeof(err)),
        -1);
    assert_int_equal(retriable, 0);
    assert_non_null(strstr(err, "topic=tttt"));
    assert_non_null(strstr(err, "Invalid argument"));
    weft_kafka_destroy(k, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_send_a_lone_result_at_once),
        cmocka_unit_test(test_user_settings_win),
        cmocka_unit_test(test_refused_value_names_the_setting),
        cmocka_unit_test(test_first_message_to_a_new_topic_is_not_held),
        cmocka_unit_test(test_refused_topic_name_is_a_clear_error),
    };
    return cmocka_run_group_tests_name("kafka_conf", tests, NULL, NULL);
}
