/*
 * test_oversize.c - outcomes the broker will not take, against a real
 * PostgreSQL, Apache Kafka, nats-server (JetStream and core NATS) and
 * `weft run`: a result over its topic's limit is the function's failure
 * and ends as a dead letter; a dead letter over its topic's limit goes
 * cut short with a pointer to its weft.dead_letters row; the ledger, the
 * log and the topics agree, and no input is acknowledged before its
 * outcome reached a topic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

/* Created by the test: o.rt.out takes 100,000 bytes, o.big 3 MB. */
#define TOPICS "o.rt:1 o.rt.dlq:1 o.rd:1 o.rd.out:1 o.rd.dlq:1 o.big.out:1 o.big.dlq:1"
#define RUN_SET "dispatcher.shutdown_timeout_ms=10000;dispatcher.stats_interval_ms=1000"
#define SETTLE_MS 2000

static fx_t fx;
static pid_t run_pid;

/* Creates topic with one partition and max.message.bytes = max_bytes. */
static int create_topic(const char *topic, const char *max_bytes)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", fx.brokers, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk)
        return -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, 1, err, sizeof(err));
    rd_kafka_NewTopic_set_config(nt, "max.message.bytes", max_bytes);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    int rc = -1;
    if (res) {
        size_t n;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
        rc = n == 1 && !rd_kafka_topic_result_error(tr[0]) ? 0 : -1;
        if (rc)
            fprintf(stderr, "creating %s: %s\n", topic, rd_kafka_topic_result_error_string(tr[0]));
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_destroy(rk);
    return rc;
}

/* Produces a binary-mode CloudEvent of any size (the fixture's producer
 * keeps librdkafka's 1,000,000-byte limit) and waits for it. */
static int produce_big(const char *topic, const char *id, const char *value, size_t len)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", fx.brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "message.max.bytes", "4000000", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk)
        return -1;
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
    rd_kafka_header_add(h, "ce_id", -1, id, -1);
    rd_kafka_header_add(h, "ce_source", -1, "/weft/tests", -1);
    rd_kafka_header_add(h, "ce_type", -1, "t", -1);
    rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("k", 1), RD_KAFKA_V_VALUE((void *)value, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e)
        rd_kafka_headers_destroy(h);
    int left = rd_kafka_flush(rk, 30000) == 0 ? rd_kafka_outq_len(rk) : 1;
    rd_kafka_destroy(rk);
    return e || left ? -1 : 0;
}

/* A JetStream stream of one subject taking messages up to max bytes. */
static int js_stream_max(const char *stream, const char *subject, int64_t max)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    if (natsConnection_ConnectTo(&nc, fx.nats) != NATS_OK)
        return -1;
    natsConnection_JetStream(&js, nc, NULL);
    const char *subj[] = {subject};
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream;
    sc.Subjects = subj;
    sc.SubjectsLen = 1;
    sc.MaxMsgSize = (int32_t)max;
    jsStreamInfo *si = NULL;
    natsStatus s = js_AddStream(&si, js, &sc, NULL, NULL);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return s == NATS_OK ? 0 : -1;
}

static int group_setup(void **state)
{
    (void)state;
    if (fx_up(&fx, TOPICS) != 0 || create_topic("o.rt.out", "100000") != 0 ||
        create_topic("o.big", "3000000") != 0)
        return -1;
    if (fx_js_stream(&fx, "OSIN", "o.js.in o.jsm.in") != 0 ||
        fx_js_stream(&fx, "OSOUT", "o.js.out") != 0 || js_stream_max("OSMAX", "o.jsm.out", 50000) ||
        fx_js_stream(&fx, "OSDLQ", "o.js.dlq") != 0)
        return -1;
    char out[4096], dir[700];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/oversize", fx.src_dir);
    const char *args[] = {"migrate", "--dir", dir, NULL};
    if (fx_weft(&fx, out, sizeof(out), args) != 0) {
        fprintf(stderr, "weft migrate failed: %s\n", out);
        return -1;
    }
    run_pid = fx_run_start(&fx, "run.log", RUN_SET);
    return run_pid > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = run_pid > 0 ? fx_run_stop(run_pid, 20000) : 0;
    fx_down(&fx);
    return rc == 0 ? 0 : -1;
}

/* Everything that reaches topic (Kafka, or a JetStream subject when js)
 * until want arrived or timeout, then for SETTLE_MS more: a second copy
 * or a stray message is counted too. */
static size_t collect(const char *topic, int js, size_t want, int timeout_ms, fx_msg_t **msgs)
{
    if (!js)
        return fx_collect(&fx, topic, want, timeout_ms, SETTLE_MS, msgs);
    size_t n = 0, cap = 0, never = SIZE_MAX;
    *msgs = NULL;
    fx_nsub_t *c = fx_nsub_new(&fx, topic, 1);
    assert_non_null(c);
    fx_nsub_until(c, msgs, &n, &cap, fx_have_n, &want, timeout_ms);
    fx_nsub_until(c, msgs, &n, &cap, fx_have_n, &never, SETTLE_MS);
    fx_nsub_destroy(c);
    return n;
}

/* The first column of sql with '?' replaced by arg (a trigger name or a
 * number from a header). */
static long sql_long(const char *sql, const char *arg)
{
    char q[512];
    const char *at = strchr(sql, '?');
    snprintf(q, sizeof(q), "%.*s%s%s", (int)(at - sql), sql, arg, at + 1);
    return fx_sql_long(&fx, q);
}

/* The group's committed offset of a one-partition topic (-1: none). */
static int64_t committed(const char *topic)
{
    fx_kafka_offsets_t o;
    assert_int_equal(fx_kafka_group_offsets(&fx, "weft", topic, &o), 0);
    return o.committed[0];
}

/* Waits (up to a minute) for the committed offset of topic to reach want;
 * returns what it is. */
static int64_t committed_reaches(const char *topic, int64_t want)
{
    uint64_t deadline = fx_now_ms() + 60000;
    int64_t c;
    while ((c = committed(topic)) < want && fx_now_ms() < deadline)
        usleep(200000);
    return c;
}

/* The dead letter of an event whose result was too large: reason, ledger
 * row, dead-letter row, the log line, in agreement. */
static void assert_result_dead(const fx_msg_t *dl, const char *trigger, const char *id, int nats)
{
    char h[64];
#define HDR(name) (snprintf(h, sizeof(h), "%s%s", nats ? "ce-" : "ce_", name), fx_header(dl, h))
    assert_non_null(dl->ce_id);
    assert_string_equal(dl->ce_id, id);
    assert_non_null(HDR("weftreason"));
    assert_string_equal(HDR("weftreason"), "max_attempts");
    const char *err = HDR("wefterror");
    assert_non_null(err);
    assert_non_null(strstr(err, "result_too_large"));
    assert_non_null(strstr(err, "limit"));
    assert_non_null(HDR("weftattempts"));
    assert_string_equal(HDR("weftattempts"), "2");
    const char *dlid = HDR("weftdlqid");
#undef HDR
    assert_non_null(dlid);
    char q[512];
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM weft.dead_letters WHERE id = %ld AND trigger = '%s' "
             "AND error LIKE 'result_too_large: %%'",
             atol(dlid), trigger);
    assert_int_equal(fx_sql_long(&fx, q), 1);
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM weft.ledger WHERE trigger = '%s' AND key LIKE '%%%s' AND "
             "status = 'dead' AND result IS NULL",
             trigger, id);
    assert_int_equal(fx_sql_long(&fx, q), 1);
    char pat[256];
    snprintf(pat, sizeof(pat), "dead-lettered trigger=%s .*reason=max_attempts", trigger);
    assert_true(fx_log_wait(&fx, "run.log", pat, 10000));
}

/* A result over its topic's max.message.bytes (100,000, learnt with
 * DescribeConfigs) is the function's failure: retried, then
 * dead-lettered; the events around it get their results. */
static void test_kafka_result_over_topic_limit(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "o.rt", "k", "small-1", "t", "{\"fail\":\"size-1000\"}", NULL),
                     0);
    assert_int_equal(fx_produce(p, "o.rt", "k", "big-1", "t", "{\"fail\":\"size-150000\"}", NULL),
                     0);
    assert_int_equal(fx_produce(p, "o.rt", "k", "small-2", "t", "{\"fail\":\"size-1000\"}", NULL),
                     0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_producer_destroy(p);

    fx_msg_t *dl, *res;
    size_t dn = collect("o.rt.dlq", 0, 1, 60000, &dl);
    assert_int_equal(dn, 1);
    assert_result_dead(&dl[0], "o-topic", "big-1", 0);
    assert_int_equal(dl[0].value_len, strlen("{\"fail\":\"size-150000\"}"));
    assert_null(fx_header(&dl[0], "ce_weftdlqtruncated"));
    size_t rn = collect("o.rt.out", 0, 2, 60000, &res);
    assert_int_equal(rn, 2);
    /* one each (either order: the pool runs two at once) */
    assert_true(strcmp(res[0].input_id, res[1].input_id) != 0);
    for (size_t i = 0; i < rn; i++) {
        assert_true(strcmp(res[i].input_id, "small-1") == 0 ||
                    strcmp(res[i].input_id, "small-2") == 0);
        assert_int_equal(res[i].value_len, 1000);
    }
    assert_int_equal(sql_long("SELECT count(*) FROM weft.ledger WHERE trigger = '?' AND "
                              "status = 'completed'",
                              "o-topic"),
                     2);
    assert_int_equal(committed_reaches("o.rt", 3), 3);
    fx_msgs_free(dl, dn);
    fx_msgs_free(res, rn);
}

/* A value of n bytes: {"name":"aaa..."}. */
static char *json_of(size_t n)
{
    char *v = malloc(n + 1);
    assert_non_null(v);
    memset(v, 'a', n);
    memcpy(v, "{\"name\":\"", 9);
    memcpy(v + n - 2, "\"}", 2);
    v[n] = '\0';
    return v;
}

/* The new user's case: ~1 MB events through an uppercasing function with
 * every limit at its default. The result (input-sized, plus its headers)
 * is over the producer's message.max.bytes; so is the dead letter, which
 * goes with its body cut short and a pointer to its whole row. */
static void test_kafka_one_megabyte_event_at_the_defaults(void **state)
{
    (void)state;
    const size_t len = 999900;
    char *v = json_of(len);
    assert_int_equal(produce_big("o.rd", "mb-1", v, len), 0);
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "o.rd", "k", "mb-ok", "t", "{\"name\":\"ok\"}", NULL), 0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_producer_destroy(p);

    fx_msg_t *dl, *res;
    size_t dn = collect("o.rd.dlq", 0, 1, 60000, &dl);
    assert_int_equal(dn, 1);
    assert_result_dead(&dl[0], "o-default", "mb-1", 0);
    assert_string_equal(fx_header(&dl[0], "ce_weftdlqtruncated"), "999900");
    assert_true(dl[0].value_len > 0 && dl[0].value_len < len);
    assert_memory_equal(dl[0].value, v, dl[0].value_len);
    /* the row has every byte */
    assert_int_equal(sql_long("SELECT octet_length(value) FROM weft.dead_letters WHERE id = ?",
                              fx_header(&dl[0], "ce_weftdlqid")),
                     (long)len);
    size_t rn = collect("o.rd.out", 0, 1, 60000, &res);
    assert_int_equal(rn, 1);
    assert_string_equal(res[0].input_id, "mb-ok");
    assert_int_equal(committed_reaches("o.rd", 2), 2);
    fx_msgs_free(dl, dn);
    fx_msgs_free(res, rn);
    free(v);
}

/* A 2 MiB input (over max_event_bytes) is dead-lettered as oversized; its
 * dead letter, over the dead-letter topic's limit, reaches the topic cut
 * short, pointing to its row, which holds the whole input. */
static void test_kafka_two_mib_input(void **state)
{
    (void)state;
    const size_t len = 2u << 20;
    char *v = json_of(len);
    assert_int_equal(produce_big("o.big", "huge-1", v, len), 0);
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "o.big", "k", "fine-1", "t", "{\"name\":\"fine\"}", NULL), 0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_producer_destroy(p);

    fx_msg_t *dl, *res;
    size_t dn = collect("o.big.dlq", 0, 1, 60000, &dl);
    assert_int_equal(dn, 1);
    assert_string_equal(dl[0].ce_id, "huge-1");
    assert_string_equal(fx_header(&dl[0], "ce_weftreason"), "oversized");
    assert_string_equal(fx_header(&dl[0], "ce_weftdlqtruncated"), "2097152");
    assert_true(dl[0].value_len < 1000000);
    assert_memory_equal(dl[0].value, v, dl[0].value_len);
    const char *dlid = fx_header(&dl[0], "ce_weftdlqid");
    assert_non_null(dlid);
    assert_int_equal(sql_long("SELECT octet_length(value) FROM weft.dead_letters WHERE id = ? "
                              "AND reason = 'oversized' AND trigger = 'o-big'",
                              dlid),
                     (long)len);
    /* (an input that is not decoded is keyed by its coordinates) */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'o-big' "
                                      "AND status = 'dead'"),
                     1);
    assert_true(
        fx_log_wait(&fx, "run.log", "dead-lettered trigger=o-big .*reason=oversized", 10000));
    size_t rn = collect("o.big.out", 0, 1, 60000, &res);
    assert_int_equal(rn, 1);
    assert_string_equal(res[0].input_id, "fine-1");
    assert_int_equal(committed_reaches("o.big", 2), 2);
    fx_msgs_free(dl, dn);
    fx_msgs_free(res, rn);
    free(v);
}

/* JetStream: a result over the server's max_payload (1 MiB). */
static void test_jetstream_result_over_max_payload(void **state)
{
    (void)state;
    fx_nats_t *n = fx_nats_new(&fx);
    assert_non_null(n);
    assert_int_equal(
        fx_nats_publish(n, 1, "o.js.in", "js-small", "t", "{\"fail\":\"size-1000\"}", NULL), 0);
    assert_int_equal(
        fx_nats_publish(n, 1, "o.js.in", "js-big", "t", "{\"fail\":\"size-1500000\"}", NULL), 0);
    fx_nats_destroy(n);

    fx_msg_t *dl, *res;
    size_t dn = collect("o.js.dlq", 1, 1, 60000, &dl);
    assert_int_equal(dn, 1);
    assert_result_dead(&dl[0], "o-js", "js-big", 1);
    size_t rn = collect("o.js.out", 1, 1, 60000, &res);
    assert_int_equal(rn, 1);
    assert_string_equal(res[0].input_id, "js-small");
    /* both acknowledged, after their outcomes */
    fx_js_cstate_t st;
    uint64_t deadline = fx_now_ms() + 60000;
    do {
        assert_int_equal(fx_js_consumer_state(&fx, "OSIN", "o-js-durable", &st), 0);
    } while ((st.ack_pending || st.pending) && fx_now_ms() < deadline && usleep(200000) == 0);
    assert_int_equal(st.ack_pending, 0);
    assert_int_equal(st.pending, 0);
    fx_msgs_free(dl, dn);
    fx_msgs_free(res, rn);
}

/* Core NATS: a result over max_payload, with one attempt allowed. Core
 * NATS keeps nothing: the subscriptions start before the events. */
static void test_core_nats_result_over_max_payload(void **state)
{
    (void)state;
    fx_nsub_t *cd = fx_nsub_new(&fx, "o.core.dlq", 0);
    fx_nsub_t *co = fx_nsub_new(&fx, "o.core.out", 0);
    assert_non_null(cd);
    assert_non_null(co);
    fx_nats_t *n = fx_nats_new(&fx);
    assert_non_null(n);
    assert_int_equal(
        fx_nats_publish(n, 0, "o.core.in", "core-big", "t", "{\"fail\":\"size-1500000\"}", NULL),
        0);
    assert_int_equal(
        fx_nats_publish(n, 0, "o.core.in", "core-small", "t", "{\"fail\":\"size-1000\"}", NULL), 0);
    fx_nats_destroy(n);

    fx_msg_t *dl = NULL, *res = NULL;
    size_t dn = 0, dcap = 0, rn = 0, rcap = 0;
    size_t one = 1, never = SIZE_MAX;
    fx_nsub_until(cd, &dl, &dn, &dcap, fx_have_n, &one, 60000);
    fx_nsub_until(co, &res, &rn, &rcap, fx_have_n, &one, 60000);
    fx_nsub_until(cd, &dl, &dn, &dcap, fx_have_n, &never, SETTLE_MS);
    fx_nsub_until(co, &res, &rn, &rcap, fx_have_n, &never, 100);
    fx_nsub_destroy(cd);
    fx_nsub_destroy(co);
    assert_int_equal(dn, 1);
    assert_int_equal(rn, 1);
    assert_non_null(dl[0].ce_id);
    assert_string_equal(dl[0].ce_id, "core-big");
    assert_string_equal(fx_header(&dl[0], "ce-weftreason"), "max_attempts");
    assert_non_null(strstr(fx_header(&dl[0], "ce-wefterror"), "result_too_large"));
    assert_string_equal(res[0].input_id, "core-small");
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'o-core' "
                                      "AND status = 'dead' AND key LIKE '%core-big'"),
                     1);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'o-core' AND error LIKE 'result_too_large: %'"),
                     1);
    fx_msgs_free(dl, dn);
    fx_msgs_free(res, rn);
}

/* JetStream: a result under max_payload but over its stream's own
 * max_msg_size, which weft does not learn: the broker's refusal (error
 * 10054) is permanent, the recorded result is replaced by a dead letter,
 * recorded first (ledger completed -> dead, with its row). */
static void test_jetstream_result_over_stream_max(void **state)
{
    (void)state;
    fx_nats_t *n = fx_nats_new(&fx);
    assert_non_null(n);
    assert_int_equal(
        fx_nats_publish(n, 1, "o.jsm.in", "jsm-big", "t", "{\"fail\":\"size-100000\"}", NULL), 0);
    fx_nats_destroy(n);
    fx_msg_t *dl = NULL;
    size_t dn = 0, cap = 0, never = SIZE_MAX;
    fx_nsub_t *c = fx_nsub_new(&fx, "o.js.dlq", 1);
    assert_non_null(c);
    /* o.js.dlq holds js-big's dead letter already: count jsm-big's */
    uint64_t deadline = fx_now_ms() + 60000;
    size_t mine = 0;
    while (mine == 0 && fx_now_ms() < deadline) {
        fx_nsub_until(c, &dl, &dn, &cap, fx_have_n, &never, 500);
        for (size_t i = mine = 0; i < dn; i++)
            mine += dl[i].ce_id && strcmp(dl[i].ce_id, "jsm-big") == 0;
    }
    fx_nsub_until(c, &dl, &dn, &cap, fx_have_n, &never, SETTLE_MS);
    fx_nsub_destroy(c);
    const fx_msg_t *m = NULL;
    for (size_t i = mine = 0; i < dn; i++)
        if (dl[i].ce_id && strcmp(dl[i].ce_id, "jsm-big") == 0)
            m = &dl[i], mine++;
    assert_int_equal(mine, 1);
    assert_string_equal(fx_header(m, "ce-weftreason"), "result_too_large");
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'o-jsmax' "
                                      "AND status = 'dead' AND result IS NULL"),
                     1);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'o-jsmax' AND reason = 'result_too_large'"),
                     1);
    assert_true(fx_log_wait(&fx, "run.log",
                            "dead-lettered trigger=o-jsmax .*reason=result_too_large", 10000));
    fx_js_cstate_t st;
    deadline = fx_now_ms() + 60000;
    do {
        assert_int_equal(fx_js_consumer_state(&fx, "OSIN", "o-jsmax-durable", &st), 0);
    } while ((st.ack_pending || st.pending) && fx_now_ms() < deadline && usleep(200000) == 0);
    assert_int_equal(st.ack_pending, 0);
    fx_msgs_free(dl, dn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_result_over_topic_limit),
        cmocka_unit_test(test_kafka_one_megabyte_event_at_the_defaults),
        cmocka_unit_test(test_kafka_two_mib_input),
        cmocka_unit_test(test_jetstream_result_over_max_payload),
        cmocka_unit_test(test_core_nats_result_over_max_payload),
        cmocka_unit_test(test_jetstream_result_over_stream_max),
    };
    return cmocka_run_group_tests_name("oversize", tests, group_setup, group_teardown);
}
