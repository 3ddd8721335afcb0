/*
 * test_e2e_kafka.c - the core promise on Kafka, against a real PostgreSQL,
 * Apache Kafka (or the mock, WEFT_KAFKA=mock) and `weft run` as a real
 * child: every published event runs its function once and its result
 * lands on the result topic, across duplicates and kill -9.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"

#define TOPICS "e2e.in:4 e2e.out:4 e2e.dlq:1 f.in:2 f.out:2 f.dlq:1"
#define RUN_SET                                                                       \
    "dispatcher.shutdown_timeout_ms=10000;kafka.session.timeout.ms=6000;"                      \
    "kafka.heartbeat.interval.ms=500"

static fx_t fx;

static int group_setup(void **state)
{
    (void)state;
    if (fx_up(&fx, TOPICS) != 0)
        return -1;
    char out[4096], dir[700];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/e2e", fx.src_dir);
    const char *args[] = {"migrate", "--dir", dir, NULL};
    int rc = fx_weft(&fx, out, sizeof(out), args);
    if (rc != 0) {
        fprintf(stderr, "weft migrate failed (%d): %s\n", rc, out);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    fx_down(&fx);
    return 0;
}

/* How long a collector reads on after it has what it waited for: copies
 * and strays that come late are counted too. */
#define SETTLE_MS 3000

/* Stops the dispatcher with SIGTERM and checks what a clean stop
 * promises besides its exit status: it committed what it finished, so
 * the group's offsets on topic are every partition's high watermark (and
 * a restart would re-read nothing). */
static void stop_and_assert_committed(pid_t pid, const char *topic)
{
    assert_int_equal(fx_run_stop(pid, 20000), 0);
    fx_kafka_offsets_t o;
    assert_int_equal(fx_kafka_group_offsets(&fx, "weft", topic, &o), 0);
    for (int p = 0; p < o.partitions; p++) {
        if (o.committed[p] != o.high[p])
            print_message("%s[%d]: committed %lld, high watermark %lld\n", topic, p,
                          (long long)o.committed[p], (long long)o.high[p]);
        assert_true(o.high[p] == o.low[p] || o.committed[p] == o.high[p]);
    }
    assert_int_equal(o.lag, 0);
}

static void publish_range(fx_producer_t *p, const char *pfx, int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[64], key[32], data[128];
        snprintf(id, sizeof(id), "%s-%d", pfx, i);
        snprintf(key, sizeof(key), "k%d", i % 97);
        snprintf(data, sizeof(data), "{\"name\":\"user %d\",\"n\":%d}", i, i);
        assert_int_equal(fx_produce(p, "e2e.in", key, id, "e2e.item", data, NULL), 0);
    }
}

/* fx_seen_pred's counting, never satisfied: reads for the whole time. */
static int never_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    fx_seen_pred(msgs, n, ctx);
    return 0;
}

static void test_5000_events_give_5000_results(void **state)
{
    (void)state;
    const int N = 5000;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_non_null(p);
    publish_range(p, "bulk", 0, N);
    /* Events of another type on the same topic match no trigger. */
    assert_int_equal(fx_produce(p, "e2e.in", NULL, "other-1", "e2e.other", "{}", NULL), 0);
    assert_int_equal(fx_producer_flush(p), 0);

    pid_t pid = fx_run_start(&fx, "run-bulk.log", RUN_SET);
    assert_true(pid > 0);
    fx_consumer_t *c = fx_consumer_new(&fx, "e2e.out");
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    fx_seen_t s;
    fx_seen_init(&s, "bulk", N, 0);
    /* Throughput: from the first result to the last
     * (the group join before the first result is not the event path). */
    uint64_t wait_until = fx_now_ms() + 60000;
    while (n == 0 && fx_now_ms() < wait_until)
        fx_consume_until(c, &msgs, &n, &cap, fx_seen_pred, &s, 20);
    uint64_t t0 = fx_now_ms();
    size_t n0 = n;
    fx_consume_until(c, &msgs, &n, &cap, fx_seen_pred, &s, 180000);
    uint64_t t1 = fx_now_ms();
    print_message("%d results; %zu events in %.3f s after the first result: %.0f events/s\n",
                  s.distinct, n - n0, (double)(t1 - t0) / 1000.0,
                  (double)(n - n0) * 1000.0 / (double)(t1 - t0 ? t1 - t0 : 1));
    /* Late copies count: read on for the settle time, then every message
     * on the topic is one input's one result. */
    fx_consume_until(c, &msgs, &n, &cap, never_pred, &s, SETTLE_MS);
    assert_int_equal(n, (size_t)N);
    assert_int_equal(s.distinct, N);
    assert_int_equal(s.conflicts, 0);
    assert_int_equal(s.bad_content, 0);
    /* No function ran twice. */
    assert_int_equal(
        fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'e2e-upper'"), N);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = "
                                      "'e2e-upper' AND (attempts <> 1 OR status <> 'completed')"),
                     0);
    /* Offsets were committed: every partition's committed offset is its
     * high watermark (the unmatched event's included), lag zero, so a
     * restart re-processes nothing. */
    stop_and_assert_committed(pid, "e2e.in");
    fx_msgs_free(msgs, n);
    fx_seen_free(&s);
    fx_consumer_destroy(c);
    fx_producer_destroy(p);
}

typedef struct count_ctx {
    const char *input_id;
    int want;
    int got;
    char ids[8][64];
    size_t scanned;
} count_ctx_t;

static int count_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    count_ctx_t *cc = ctx;
    for (; cc->scanned < n; cc->scanned++) {
        const fx_msg_t *m = &msgs[cc->scanned];
        if (m->input_id && strcmp(m->input_id, cc->input_id) == 0) {
            if (cc->got < 8)
                snprintf(cc->ids[cc->got], sizeof(cc->ids[0]), "%s", m->ce_id ? m->ce_id : "");
            cc->got++;
        }
    }
    return cc->got >= cc->want;
}

static void test_duplicate_runs_nothing_and_reemits_same_id(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    pid_t pid = fx_run_start(&fx, "run-dup.log", RUN_SET);
    assert_true(pid > 0);
    assert_int_equal(fx_produce(p, "e2e.in", "dup", "dup-1", "e2e.item",
                                "{\"name\":\"user 1\",\"n\":1}", NULL),
                     0);
    assert_int_equal(fx_producer_flush(p), 0);
    fx_consumer_t *c = fx_consumer_new(&fx, "e2e.out");
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    count_ctx_t cc = {.input_id = "dup-1", .want = 1};
    fx_consume_until(c, &msgs, &n, &cap, count_pred, &cc, 60000);
    assert_int_equal(cc.got, 1);

    /* The same CloudEvent (source + id) again, even with other data. */
    assert_int_equal(fx_produce(p, "e2e.in", "dup", "dup-1", "e2e.item",
                                "{\"name\":\"someone else\",\"n\":2}", NULL),
                     0);
    assert_int_equal(fx_producer_flush(p), 0);
    cc.want = 2;
    fx_consume_until(c, &msgs, &n, &cap, count_pred, &cc, 60000);
    /* ... and nothing more within the settle time. */
    cc.want = 3;
    fx_consume_until(c, &msgs, &n, &cap, count_pred, &cc, SETTLE_MS);
    assert_int_equal(cc.got, 2);
    assert_string_equal(cc.ids[0], cc.ids[1]);
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE trigger = "
                                      "'e2e-upper' AND key = 'ce:/weft/tests' || chr(31) || "
                                      "'dup-1'"),
                     1);
    /* The re-emitted result is the stored one, not a new run's. */
    int stored_ok = 0;
    for (size_t i = 0; i < n; i++)
        if (msgs[i].input_id && strcmp(msgs[i].input_id, "dup-1") == 0)
            stored_ok += strcmp(msgs[i].value, "{\"name\":\"USER 1\",\"n\":1}") == 0;
    assert_int_equal(stored_ok, 2);
    stop_and_assert_committed(pid, "e2e.in");
    fx_msgs_free(msgs, n);
    fx_consumer_destroy(c);
    fx_producer_destroy(p);
}

/* A stream through a fault: publishes n events "<prefix>-i" in steps of
 * step while collecting results; after each step calls
 * fault(ctx, results so far, published), which strikes once results flow
 * (and may repair). Then checks that every event got exactly one result
 * and is completed in the ledger, and that the fault struck mid-stream.
 * Returns the results out when it struck. */
typedef int (*fault_fn)(void *ctx, int results, int published);

static int stream_through_fault(const char *prefix, int n, int step, fault_fn fault, void *ctx)
{
    fx_producer_t *p = fx_producer_new(&fx);
    fx_consumer_t *c = fx_consumer_new(&fx, "e2e.out");
    fx_msg_t *msgs = NULL;
    size_t got = 0, cap = 0;
    fx_seen_t s;
    fx_seen_init(&s, prefix, n, 0);
    int struck_at = -1, published = 0;
    uint64_t deadline = fx_now_ms() + 120000;
    while (published < n && fx_now_ms() < deadline) {
        int upto = published + step < n ? published + step : n;
        publish_range(p, prefix, published, upto);
        published = upto;
        assert_int_equal(fx_producer_flush(p), 0);
        fx_consume_until(c, &msgs, &got, &cap, fx_seen_pred, &s, 20);
        if (fault(ctx, s.distinct, published) && struck_at < 0)
            struck_at = s.distinct;
        /* Before the group assigns partitions nothing flows: wait there
         * instead of publishing everything up front. */
        while (struck_at < 0 && s.distinct == 0 && published >= 600 && fx_now_ms() < deadline)
            fx_consume_until(c, &msgs, &got, &cap, fx_seen_pred, &s, 100);
    }
    assert_int_equal(published, n);
    print_message("%s: the fault struck with %d of %d results out\n", prefix, struck_at, n);
    assert_true(struck_at >= 300);
    assert_true(struck_at < n);

    fx_consume_until(c, &msgs, &got, &cap, fx_seen_pred, &s, 180000);
    /* A second, different result of an input may come late: read on. */
    fx_consume_until(c, &msgs, &got, &cap, never_pred, &s, SETTLE_MS);
    assert_int_equal(s.distinct, n);
    assert_int_equal(s.conflicts, 0);
    assert_int_equal(s.bad_content, 0);
    char sql[300];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.ledger WHERE trigger = 'e2e-upper' AND key LIKE "
             "'ce:/weft/tests' || chr(31) || '%s-%%' AND status = 'completed'",
             prefix);
    assert_int_equal(fx_sql_long(&fx, sql), n);
    fx_msgs_free(msgs, got);
    fx_seen_free(&s);
    fx_consumer_destroy(c);
    fx_producer_destroy(p);
    return struck_at;
}

typedef struct kill_ctx {
    pid_t pid;
    int killed;
} kill_ctx_t;

/* kill -9 once results flow, and restart at once: events are in every
 * stage when the kill lands. */
static int kill9_fault(void *ctx, int results, int published)
{
    (void)published;
    kill_ctx_t *k = ctx;
    if (k->killed || results < 300)
        return k->killed;
    fx_run_kill9(k->pid);
    k->pid = fx_run_start(&fx, "run-kill-2.log", RUN_SET);
    assert_true(k->pid > 0);
    return k->killed = 1;
}

static void test_kill9_then_restart_loses_nothing(void **state)
{
    (void)state;
    kill_ctx_t k = {.pid = fx_run_start(&fx, "run-kill.log", RUN_SET)};
    assert_true(k.pid > 0);
    stream_through_fault("kill", 3000, 50, kill9_fault, &k);
    /* A run cut short by the kill is taken over once; never more. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = "
                                      "'e2e-upper' AND attempts > 2"),
                     0);
    stop_and_assert_committed(k.pid, "e2e.in");
}

/* PostgreSQL stops once results flow; publishing goes on while it is
 * down; it comes back when 2000 events are out. */
static int pg_outage_fault(void *ctx, int results, int published)
{
    int *stopped = ctx;
    if (!*stopped && results >= 300) {
        assert_int_equal(fx_pg_down(&fx), 0);
        *stopped = 1;
    }
    if (*stopped && published == 2000)
        assert_int_equal(fx_pg_up(&fx), 0);
    return *stopped;
}

/* PostgreSQL stops in the middle of a stream and comes back: the ledger's
 * batches in flight fail and go back to their queues, the connections
 * reconnect, and every event gets its result once the database is back,
 * one result id per input and no event lost. */
static void test_postgres_restart_mid_stream_loses_nothing(void **state)
{
    (void)state;
    pid_t pid = fx_run_start(&fx, "run-pg.log", RUN_SET);
    assert_true(pid > 0);
    int stopped = 0;
    stream_through_fault("pgdown", 4000, 100, pg_outage_fault, &stopped);
    /* The outage showed in the log, and the dispatcher kept running. */
    char cmd[900];
    snprintf(cmd, sizeof(cmd), "grep -q 'ledger .* failed, will retry\\|unavailable for the "
                               "ledger' '%s/run-pg.log'",
             fx.state_dir);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(kill(pid, 0), 0);
    stop_and_assert_committed(pid, "e2e.in");
}

typedef struct dlq_ctx {
    int want;
    int got;
    size_t scanned;
} dlq_ctx_t;

static int n_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    (void)msgs;
    dlq_ctx_t *dc = ctx;
    dc->got = (int)n;
    return dc->got >= dc->want;
}

static const fx_msg_t *find_by_header(const fx_msg_t *msgs, size_t n, const char *hdr,
                                      const char *value)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = fx_header(&msgs[i], hdr);
        if (v && strcmp(v, value) == 0)
            return &msgs[i];
    }
    return NULL;
}

static void test_failures_reach_the_dead_letter_topic(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    pid_t pid = fx_run_start(&fx, "run-dlq.log", RUN_SET);
    assert_true(pid > 0);
    assert_int_equal(fx_produce(p, "f.in", "a", "fatal-1", "t", "{\"fail\":\"fatal\"}", NULL), 0);
    assert_int_equal(fx_produce(p, "f.in", "a", "retry-1", "t", "{\"fail\":\"retry\"}", NULL), 0);
    assert_int_equal(
        fx_produce(p, "f.in", "a", "flaky-1", "t", "{\"fail\":\"retry-until-2\"}", NULL), 0);
    assert_int_equal(fx_produce(p, "f.in", "a", "crash-1", "t", "{\"fail\":\"crash\"}", NULL), 0);
    const char *bad_spec[] = {"ce_specversion=0.3", "ce_id=bad-1", "ce_source=/x", "ce_type=t",
                              NULL};
    assert_int_equal(fx_produce(p, "f.in", "a", NULL, NULL, "{}", bad_spec), 0);
    const char *bad_json[] = {"content-type=application/cloudevents+json", NULL};
    assert_int_equal(fx_produce(p, "f.in", "a", NULL, NULL, "{\"id\": oops", bad_json), 0);
    assert_int_equal(fx_produce(p, "f.in", "a", "ok-1", "t", "{\"fine\":true}", NULL), 0);
    /* A NUL byte in a CloudEvents header: malformed, and its dead letter
     * carries the header as it came (Kafka headers are binary). */
    assert_int_equal(fx_produce_raw_header(p, "f.in", NULL, "ce_id", "nul\0id", 6, "{}"), 0);
    /* Bytes that are not UTF-8 in an attribute (here the source, part of
     * the idempotency key) and in a header name: malformed, dead-lettered,
     * and nothing else is held up by them. */
    assert_int_equal(
        fx_produce_raw_header(p, "f.in", "utf8-src", "ce_source", "\xff\xfe", 2, "{}"), 0);
    assert_int_equal(fx_produce_raw_header(p, "f.in", "utf8-name", "ce_\xc3(", "x", 1, "{}"), 0);
    /* CR/LF in an attribute is valid input; its result must still go out. */
    assert_int_equal(
        fx_produce_raw_header(p, "f.in", "crlf-1", "ce_subject", "a\r\nb", 4, "{}"), 0);
    assert_int_equal(fx_producer_flush(p), 0);

    fx_consumer_t *dlq = fx_consumer_new(&fx, "f.dlq");
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    dlq_ctx_t dc = {.want = 8};
    fx_consume_until(dlq, &msgs, &n, &cap, n_pred, &dc, 60000);
    /* Then whatever else comes within the settle time: exactly 8. */
    dc.want = 9;
    fx_consume_until(dlq, &msgs, &n, &cap, n_pred, &dc, SETTLE_MS);
    assert_int_equal((int)n, 8);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE reason = "
                                      "'malformed' AND error LIKE '%NUL byte%'"),
                     1);

    const fx_msg_t *m = find_by_header(msgs, n, "ce_id", "fatal-1");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce_weftreason"), "non_retryable");
    assert_string_equal(fx_header(m, "ce_weftattempts"), "1");
    assert_string_equal(fx_header(m, "ce_wefttrigger"), "e2e-faulty");
    assert_string_equal(fx_header(m, "ce_weftsrctopic"), "f.in");
    assert_non_null(fx_header(m, "ce_weftsrcoffset"));
    assert_string_equal(m->value, "{\"fail\":\"fatal\"}");

    m = find_by_header(msgs, n, "ce_id", "retry-1");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce_weftreason"), "max_attempts");
    assert_string_equal(fx_header(m, "ce_weftattempts"), "3");

    m = find_by_header(msgs, n, "ce_id", "crash-1");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce_weftreason"), "max_attempts");
    assert_non_null(strstr(fx_header(m, "ce_wefterror"), "signal:6"));

    m = find_by_header(msgs, n, "ce_id", "bad-1");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce_weftreason"), "malformed");
    assert_non_null(strstr(fx_header(m, "ce_wefterror"), "specversion"));

    m = find_by_header(msgs, n, "content-type", "application/cloudevents+json");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce_weftreason"), "malformed");
    assert_string_equal(m->value, "{\"id\": oops");

    /* Each dead letter has its row, with the original bytes. */
    assert_int_equal(
        fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = 'e2e-faulty'"),
        8);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE reason = "
                                      "'malformed' AND error LIKE '%UTF-8%'"),
                     1);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'e2e-faulty' AND value = '\\x7b226964223a206f6f7073'"),
                     1);

    /* The flaky one and the good one produced results. */
    fx_consumer_t *out = fx_consumer_new(&fx, "f.out");
    fx_msg_t *res = NULL;
    size_t rn = 0, rcap = 0;
    dlq_ctx_t rc = {.want = 3};
    fx_consume_until(out, &res, &rn, &rcap, n_pred, &rc, 30000);
    rc.want = 4;
    fx_consume_until(out, &res, &rn, &rcap, n_pred, &rc, SETTLE_MS);
    assert_int_equal((int)rn, 3);
    assert_non_null(find_by_header(res, rn, "ce_weftinputid", "flaky-1"));
    assert_non_null(find_by_header(res, rn, "ce_weftinputid", "ok-1"));
    assert_non_null(find_by_header(res, rn, "ce_weftinputid", "crlf-1"));
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE key = "
                                      "'ce:/weft/tests' || chr(31) || 'flaky-1'"),
                     2);
    /* Every input, the malformed and the dead-lettered ones too, was
     * committed. */
    stop_and_assert_committed(pid, "f.in");
    fx_msgs_free(res, rn);
    fx_msgs_free(msgs, n);
    fx_consumer_destroy(out);
    fx_consumer_destroy(dlq);
    fx_producer_destroy(p);
}

/* `ops/stack kafka-down` then `up` (fx_kafka_fresh; ops/bench does it
 * between runs): a new, empty cluster (the mock's on a new address, Apache
 * Kafka's on the same ports when they are free), with the same topics,
 * that takes events at once. Last: it replaces the broker. */
static void test_a_fresh_broker_is_empty_with_the_same_topics(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "f.in", "k", "before-1", "e2e.item", "{}", NULL), 0);
    fx_producer_destroy(p);
    char old[sizeof(fx.brokers)];
    snprintf(old, sizeof(old), "%s", fx.brokers);

    assert_int_equal(fx_kafka_fresh(&fx, TOPICS), 0);
    if (strcmp(fx.kafka_kind, "mock") == 0)
        assert_string_not_equal(fx.brokers, old);

    p = fx_producer_new(&fx);
    assert_int_equal(fx_produce(p, "f.in", "k", "after-1", "e2e.item", "{}", NULL), 0);
    fx_producer_destroy(p);
    fx_consumer_t *c = fx_consumer_new(&fx, "f.in");
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    dlq_ctx_t one = {.want = 1}, two = {.want = 2};
    fx_consume_until(c, &msgs, &n, &cap, n_pred, &one, 30000);
    /* Nothing from before the fresh broker follows it. */
    fx_consume_until(c, &msgs, &n, &cap, n_pred, &two, 2000);
    assert_int_equal((int)n, 1);
    assert_string_equal(msgs[0].ce_id, "after-1");
    fx_msgs_free(msgs, n);
    fx_consumer_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_5000_events_give_5000_results),
        cmocka_unit_test(test_duplicate_runs_nothing_and_reemits_same_id),
        cmocka_unit_test(test_kill9_then_restart_loses_nothing),
        cmocka_unit_test(test_postgres_restart_mid_stream_loses_nothing),
        cmocka_unit_test(test_failures_reach_the_dead_letter_topic),
        cmocka_unit_test(test_a_fresh_broker_is_empty_with_the_same_topics),
    };
    return cmocka_run_group_tests_name("e2e_kafka", tests, group_setup, group_teardown);
}
