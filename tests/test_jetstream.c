/*
 * test_jetstream.c - the delivery contract on JetStream and core NATS,
 * against the stack's real nats-server -js (file store), a real
 * PostgreSQL, Kafka for the mixed triggers, and `weft run` as a
 * real child: one result per event, duplicates run nothing, kill -9 of the
 * dispatcher and a nats-server restart mid-stream lose nothing, retries
 * wait their backoff and end in the dead-letter subject, a function
 * running longer than AckWait is not redelivered, Kafka <-> JetStream
 * triggers, a core NATS round trip, core NATS retries and dead letters
 * (they wait in the dispatcher) and a core NATS saga step's retry,
 * structured protobuf CloudEvents, and oversized messages (over
 * max_event_bytes in, over the server's max_payload out).
 *
 * Counts are taken over a settle time (nsub_settle): what arrives late or
 * twice is counted, never only what a collector stopped at.
 *
 * Triggers: tests/migrations/jetstream/4001_jetstream_triggers.sql and
 * 4002_core_nats_triggers.sql. WEFT_TEST_FILTER=pattern runs some tests.
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
#include <time.h>
#include <unistd.h>

#include "cloudevents.pb-c.h"
#include "fixture.h"

#define TOPICS "js.kin:2 js.kout:2 js.kdlq:1 js.kbig:1"
#define RUN_SET                                                                                    \
    "dispatcher.shutdown_timeout_ms=10000;kafka.session.timeout.ms=6000;"                          \
    "kafka.heartbeat.interval.ms=500"

static fx_t fx;

static int group_setup(void **state)
{
    (void)state;
    if (fx_up(&fx, TOPICS) != 0)
        return -1;
    if (fx_js_stream(&fx, "JSIN", "js.in js.f.in js.slow.in js.j2k.in js.rp.in js.d.in") != 0 ||
        fx_js_stream(&fx, "JSOUT",
                     "js.out js.f.out js.slow.out js.k.out js.rp.out js.d.out js.big.out") != 0 ||
        fx_js_stream(&fx, "JSDLQ", "js.dlq js.f.dlq js.k.dlq") != 0 ||
        fx_js_stream(&fx, "JSSAGA", "js.saga.orders js.saga.steps js.saga.events js.saga.dlq") != 0)
        return -1;
    char out[4096], dir[700];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/jetstream", fx.src_dir);
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

static void publish_range(fx_nats_t *p, const char *pfx, int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[64], data[128];
        snprintf(id, sizeof(id), "%s-%d", pfx, i);
        snprintf(data, sizeof(data), "{\"name\":\"user %d\",\"n\":%d}", i, i);
        assert_int_equal(fx_nats_publish(p, 1, "js.in", id, "js.item", data, NULL), 0);
    }
}

/* Waits until the durable consumer has nothing unacknowledged. */
static void wait_acked(const char *stream, const char *durable, fx_js_cstate_t *st)
{
    uint64_t deadline = fx_now_ms() + 120000;
    do {
        assert_int_equal(fx_js_consumer_state(&fx, stream, durable, st), 0);
        if (st->ack_pending == 0 && st->pending == 0)
            return;
        usleep(100000);
    } while (fx_now_ms() < deadline);
}

typedef struct count_ctx {
    const char *input_id;
    int want;
    int got;
    size_t scanned;
} count_ctx_t;

static int count_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    count_ctx_t *cc = ctx;
    for (; cc->scanned < n; cc->scanned++)
        if (msgs[cc->scanned].input_id && strcmp(msgs[cc->scanned].input_id, cc->input_id) == 0)
            cc->got++;
    return cc->got >= cc->want;
}

static size_t count_input(const fx_msg_t *msgs, size_t n, const char *input_id)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += msgs[i].input_id && strcmp(msgs[i].input_id, input_id) == 0;
    return k;
}

static int never_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    (void)msgs;
    (void)n;
    (void)ctx;
    return 0;
}

/* Collects until pred holds (or timeout_ms), then settle_ms more, so that
 * a copy arriving late or twice is counted too: compare counts after this,
 * never the count a collector stopped at. */
#define SETTLE_MS 1500

static void nsub_settle(fx_nsub_t *c, fx_msg_t **msgs, size_t *n, size_t *cap, fx_pred_fn pred,
                        void *ctx, int timeout_ms, int settle_ms)
{
    fx_nsub_until(c, msgs, n, cap, pred, ctx, timeout_ms);
    fx_nsub_until(c, msgs, n, cap, never_pred, NULL, settle_ms);
}

static size_t count_header(const fx_msg_t *msgs, size_t n, const char *hdr, const char *value)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = fx_header(&msgs[i], hdr);
        k += v && strcmp(v, value) == 0;
    }
    return k;
}

typedef struct hdr_ctx {
    const char *hdr, *value;
    size_t want;
} hdr_ctx_t;

static int hdr_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    hdr_ctx_t *hc = ctx;
    return count_header(msgs, n, hc->hdr, hc->value) >= hc->want;
}

static void test_js_one_result_per_event(void **state)
{
    (void)state;
    const int N = 1000;
    fx_nats_t *p = fx_nats_new(&fx);
    assert_non_null(p);
    publish_range(p, "bulk", 0, N);
    /* Another type on the same subject matches no trigger: acknowledged. */
    assert_int_equal(fx_nats_publish(p, 1, "js.in", "other-1", "js.other", "{}", NULL), 0);

    pid_t pid = fx_run_start(&fx, "run-bulk.log", RUN_SET);
    assert_true(pid > 0);
    fx_nsub_t *c = fx_nsub_new(&fx, "js.out", 1);
    assert_non_null(c);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    fx_seen_t s;
    fx_seen_init(&s, "bulk", N, 1);
    uint64_t wait_until = fx_now_ms() + 60000;
    while (n == 0 && fx_now_ms() < wait_until)
        fx_nsub_until(c, &msgs, &n, &cap, fx_seen_pred, &s, 20);
    uint64_t t0 = fx_now_ms();
    size_t n0 = n;
    fx_nsub_until(c, &msgs, &n, &cap, fx_seen_pred, &s, 180000);
    uint64_t t1 = fx_now_ms();
    print_message("%d results; %zu events in %.3f s after the first result: %.0f events/s\n",
                  s.distinct, n - n0, (double)(t1 - t0) / 1000.0,
                  (double)(n - n0) * 1000.0 / (double)(t1 - t0 ? t1 - t0 : 1));
    /* One result each: a re-emit carries the same Nats-Msg-Id, and
     * JetStream drops it within its duplicate window. */
    fx_nsub_until(c, &msgs, &n, &cap, never_pred, NULL, SETTLE_MS);
    assert_int_equal(s.distinct, N);
    assert_int_equal(n, N);
    assert_int_equal(s.conflicts, 0);
    assert_int_equal(s.bad_content, 0);
    assert_int_equal(s.bad_msg_id, 0);
    assert_int_equal(
        fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'js-upper'"), N);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = "
                                      "'js-upper' AND (attempts <> 1 OR status <> 'completed')"),
                     0);
    /* Everything was acknowledged, the unmatched event too, and nothing
     * was redelivered. */
    fx_js_cstate_t st;
    wait_acked("JSIN", "weft_js-upper", &st);
    assert_int_equal(st.ack_pending, 0);
    assert_int_equal(st.pending, 0);
    assert_int_equal(st.redelivered, 0);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(msgs, n);
    fx_seen_free(&s);
    fx_nsub_destroy(c);
    fx_nats_destroy(p);
}

static void test_js_duplicate_runs_nothing(void **state)
{
    (void)state;
    fx_nats_t *p = fx_nats_new(&fx);
    pid_t pid = fx_run_start(&fx, "run-dup.log", RUN_SET);
    assert_true(pid > 0);
    assert_int_equal(
        fx_nats_publish(p, 1, "js.in", "dup-1", "js.item", "{\"name\":\"user 1\",\"n\":1}", NULL),
        0);
    fx_nsub_t *c = fx_nsub_new(&fx, "js.out", 1);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    count_ctx_t cc = {.input_id = "dup-1", .want = 1};
    fx_nsub_until(c, &msgs, &n, &cap, count_pred, &cc, 60000);
    assert_int_equal(cc.got, 1);
    const char *key = "'ce:/weft/tests' || chr(31) || 'dup-1'";
    char sql[512];
    /* The original is finished (acknowledged): a copy arriving while it is
     * still in flight would wait for it and end with it, re-emitting
     * nothing of its own, and this test is about the ledger. */
    fx_js_cstate_t st0;
    wait_acked("JSIN", "weft_js-upper", &st0);

    /* The same CloudEvent (source + id) again, as a second stream message,
     * even with other data. */
    assert_int_equal(fx_nats_publish(p, 1, "js.in", "dup-1", "js.item",
                                     "{\"name\":\"someone else\",\"n\":2}", NULL),
                     0);
    /* The dispatcher re-emitted the stored result instead of running the
     * function (its counters, in its status row, about once a second). */
    uint64_t deadline = fx_now_ms() + 120000;
    long reemitted = 0;
    while (reemitted < 1 && fx_now_ms() < deadline) {
        reemitted = fx_sql_long(&fx, "SELECT coalesce(max((status->'counters'->>'reemitted')"
                                     "::int), 0) FROM weft.dispatchers");
        usleep(200000);
    }
    assert_true(reemitted >= 1);
    snprintf(sql, sizeof(sql),
             "SELECT attempts FROM weft.ledger WHERE trigger = 'js-upper' AND key = %s", key);
    assert_int_equal(fx_sql_long(&fx, sql), 1);
    /* The second copy was acknowledged. */
    fx_js_cstate_t st;
    wait_acked("JSIN", "weft_js-upper", &st);
    assert_int_equal(st.ack_pending, 0);
    assert_int_equal(st.pending, 0);
    /* Its re-emit carries the same event id, so JetStream dropped it as a
     * duplicate: the result stream keeps exactly one result, the stored
     * one. */
    fx_nsub_until(c, &msgs, &n, &cap, never_pred, NULL, SETTLE_MS);
    assert_int_equal(count_input(msgs, n, "dup-1"), 1);
    for (size_t i = 0; i < n; i++)
        if (msgs[i].input_id && strcmp(msgs[i].input_id, "dup-1") == 0)
            assert_string_equal(msgs[i].value, "{\"name\":\"USER 1\",\"n\":1}");
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(msgs, n);
    fx_nsub_destroy(c);
    fx_nats_destroy(p);
}

/* Publishes N events in steps of 50; once `after` results are out, calls
 * fault(arg) once. Returns how many results were out at the fault. */
typedef void (*fault_fn)(pid_t *pid, void *arg);

static int stream_with_fault(const char *pfx, int N, int after, fault_fn fault, pid_t *pid,
                             fx_seen_t *s, fx_nsub_t *c, fx_msg_t **msgs, size_t *n, size_t *cap)
{
    fx_nats_t *p = fx_nats_new(&fx);
    int fault_at = -1, published = 0;
    uint64_t deadline = fx_now_ms() + 180000;
    while (published < N && fx_now_ms() < deadline) {
        int upto = published + 50 < N ? published + 50 : N;
        publish_range(p, pfx, published, upto);
        published = upto;
        fx_nsub_until(c, msgs, n, cap, fx_seen_pred, s, 20);
        if (fault_at < 0 && s->distinct >= after) {
            fault_at = s->distinct;
            fault(pid, NULL);
        }
        while (fault_at < 0 && s->distinct == 0 && published >= 400 && fx_now_ms() < deadline)
            fx_nsub_until(c, msgs, n, cap, fx_seen_pred, s, 100);
    }
    assert_int_equal(published, N);
    fx_nats_destroy(p);
    return fault_at;
}

static void kill_and_restart(pid_t *pid, void *arg)
{
    (void)arg;
    fx_run_kill9(*pid);
    *pid = fx_run_start(&fx, "run-kill-2.log", RUN_SET);
    assert_true(*pid > 0);
}

static void check_stream_outcome(const char *pfx, int N, fx_seen_t *s)
{
    char sql[512];
    assert_int_equal(s->distinct, N);
    assert_int_equal(s->conflicts, 0);
    assert_int_equal(s->bad_content, 0);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.ledger WHERE trigger = 'js-upper' AND key LIKE "
             "'ce:/weft/tests' || chr(31) || '%s-%%' AND status = 'completed'",
             pfx);
    assert_int_equal(fx_sql_long(&fx, sql), N);
    /* A run cut short is taken over once; never more. */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.ledger WHERE trigger = 'js-upper' AND key LIKE "
             "'ce:/weft/tests' || chr(31) || '%s-%%' AND attempts > 2",
             pfx);
    assert_int_equal(fx_sql_long(&fx, sql), 0);
}

static void test_js_kill9_then_restart_loses_nothing(void **state)
{
    (void)state;
    const int N = 1500;
    pid_t pid = fx_run_start(&fx, "run-kill.log", RUN_SET);
    assert_true(pid > 0);
    fx_nsub_t *c = fx_nsub_new(&fx, "js.out", 1);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    fx_seen_t s;
    fx_seen_init(&s, "kill", N, 1);
    int at = stream_with_fault("kill", N, 200, kill_and_restart, &pid, &s, c, &msgs, &n, &cap);
    print_message("killed the dispatcher with %d of %d results out\n", at, N);
    assert_true(at >= 200 && at < N);
    /* Unacknowledged messages come back after AckWait (3 s). */
    fx_nsub_until(c, &msgs, &n, &cap, fx_seen_pred, &s, 180000);
    check_stream_outcome("kill", N, &s);
    fx_js_cstate_t st;
    wait_acked("JSIN", "weft_js-upper", &st);
    assert_int_equal(st.ack_pending, 0);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(msgs, n);
    fx_seen_free(&s);
    fx_nsub_destroy(c);
}

static void restart_nats(pid_t *pid, void *arg)
{
    (void)pid;
    (void)arg;
    assert_int_equal(fx_nats_down(&fx), 0);
    usleep(1500000);
    assert_int_equal(fx_nats_up(&fx), 0);
}

static void test_js_nats_server_restart_mid_stream(void **state)
{
    (void)state;
    const int N = 1500;
    pid_t pid = fx_run_start(&fx, "run-natsrestart.log", RUN_SET);
    assert_true(pid > 0);
    fx_nsub_t *c = fx_nsub_new(&fx, "js.out", 1);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    fx_seen_t s;
    fx_seen_init(&s, "nrs", N, 1);
    int at = stream_with_fault("nrs", N, 200, restart_nats, &pid, &s, c, &msgs, &n, &cap);
    print_message("restarted nats-server with %d of %d results out\n", at, N);
    assert_true(at >= 200 && at < N);
    fx_nsub_until(c, &msgs, &n, &cap, fx_seen_pred, &s, 180000);
    check_stream_outcome("nrs", N, &s);
    fx_js_cstate_t st;
    wait_acked("JSIN", "weft_js-upper", &st);
    assert_int_equal(st.ack_pending, 0);
    assert_int_equal(st.pending, 0);
    /* The dispatcher survived it (no restart) and stops cleanly. */
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(msgs, n);
    fx_seen_free(&s);
    fx_nsub_destroy(c);
}

static int n_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    (void)msgs;
    return (int)n >= *(int *)ctx;
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

static void test_js_retries_then_dead_letter_subject(void **state)
{
    (void)state;
    fx_nats_t *p = fx_nats_new(&fx);
    pid_t pid = fx_run_start(&fx, "run-dlq.log", RUN_SET);
    assert_true(pid > 0);
    assert_int_equal(fx_nats_publish(p, 1, "js.f.in", "fatal-1", "t", "{\"fail\":\"fatal\"}", NULL),
                     0);
    assert_int_equal(fx_nats_publish(p, 1, "js.f.in", "retry-1", "t", "{\"fail\":\"retry\"}", NULL),
                     0);
    assert_int_equal(
        fx_nats_publish(p, 1, "js.f.in", "flaky-1", "t", "{\"fail\":\"retry-until-2\"}", NULL), 0);
    const char *bad_spec[] = {"ce-specversion=0.3", "ce-id=bad-1", "ce-source=/x", "ce-type=t",
                              NULL};
    assert_int_equal(fx_nats_publish(p, 1, "js.f.in", NULL, NULL, "{}", bad_spec), 0);
    const char *bad_pct[] = {"ce-specversion=1.0", "ce-id=pct%zz", "ce-source=/x", "ce-type=t",
                             NULL};
    assert_int_equal(fx_nats_publish(p, 1, "js.f.in", NULL, NULL, "{}", bad_pct), 0);
    assert_int_equal(fx_nats_publish_structured(p, 1, "js.f.in", "{\"id\": oops"), 0);
    /* Structured mode and a percent-encoded non-ASCII attribute succeed. */
    assert_int_equal(fx_nats_publish_structured(
                         p, 1, "js.f.in",
                         "{\"specversion\":\"1.0\",\"id\":\"struct-1\",\"source\":\"/weft/tests\","
                         "\"type\":\"t\",\"subject\":\"caf\\u00e9\",\"data\":{\"fine\":true}}"),
                     0);
    const char *utf8[] = {"ce-subject=na%C3%AFve%20one", NULL};
    assert_int_equal(fx_nats_publish(p, 1, "js.f.in", "ok-1", "t", "{\"fine\":true}", utf8), 0);

    fx_nsub_t *dlq = fx_nsub_new(&fx, "js.f.dlq", 1);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    int want = 5;
    nsub_settle(dlq, &msgs, &n, &cap, n_pred, &want, 60000, SETTLE_MS);
    assert_int_equal((int)n, 5);

    const fx_msg_t *m = find_by_header(msgs, n, "ce-id", "fatal-1");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce-weftreason"), "non_retryable");
    assert_string_equal(fx_header(m, "ce-weftattempts"), "1");
    assert_string_equal(fx_header(m, "ce-wefttrigger"), "js-faulty");
    assert_string_equal(fx_header(m, "ce-weftsrctopic"), "js.f.in");
    assert_string_equal(fx_header(m, "ce-weftsrcbroker"), "jetstream");
    assert_non_null(fx_header(m, "ce-weftsrcoffset"));
    assert_non_null(fx_header(m, "ce-weftdlqid"));
    assert_non_null(fx_header(m, "Nats-Msg-Id"));
    assert_string_equal(m->value, "{\"fail\":\"fatal\"}");

    m = find_by_header(msgs, n, "ce-id", "retry-1");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce-weftreason"), "max_attempts");
    assert_string_equal(fx_header(m, "ce-weftattempts"), "3");

    m = find_by_header(msgs, n, "ce-id", "bad-1");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce-weftreason"), "malformed");

    m = find_by_header(msgs, n, "ce-id", "pct%zz");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce-weftreason"), "malformed");

    m = find_by_header(msgs, n, "Content-Type", "application/cloudevents+json");
    assert_non_null(m);
    assert_string_equal(m->value, "{\"id\": oops");

    /* Retries waited their backoff (300 ms, then 600 ms, no jitter) as
     * NAKs with delay: three attempts spread over at least 0.8 s, each a
     * redelivery by the server. */
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE key = "
                                      "'ce:/weft/tests' || chr(31) || 'retry-1'"),
                     3);
    assert_true(fx_sql_long(&fx, "SELECT (extract(epoch FROM last_failure_at - "
                                 "first_failure_at) * 1000)::bigint FROM weft.ledger WHERE "
                                 "key = 'ce:/weft/tests' || chr(31) || 'retry-1'") >= 800);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'js-faulty' AND source_broker = 'jetstream'"),
                     5);

    fx_nsub_t *out = fx_nsub_new(&fx, "js.f.out", 1);
    fx_msg_t *res = NULL;
    size_t rn = 0, rcap = 0;
    int rwant = 3;
    nsub_settle(out, &res, &rn, &rcap, n_pred, &rwant, 30000, SETTLE_MS);
    assert_int_equal((int)rn, 3);
    assert_non_null(find_by_header(res, rn, "ce-weftinputid", "flaky-1"));
    assert_non_null(find_by_header(res, rn, "ce-weftinputid", "struct-1"));
    m = find_by_header(res, rn, "ce-weftinputid", "ok-1");
    assert_non_null(m);
    /* Non-ASCII attributes go back out percent-encoded. */
    assert_string_equal(fx_header(m, "ce-subject"), "na%C3%AFve%20one");
    m = find_by_header(res, rn, "ce-weftinputid", "struct-1");
    assert_string_equal(fx_header(m, "ce-subject"), "caf%C3%A9");
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE key = "
                                      "'ce:/weft/tests' || chr(31) || 'flaky-1'"),
                     2);
    fx_js_cstate_t st;
    wait_acked("JSIN", "faulty-durable", &st);
    assert_int_equal(st.ack_pending, 0);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(res, rn);
    fx_msgs_free(msgs, n);
    fx_nsub_destroy(out);
    fx_nsub_destroy(dlq);
    fx_nats_destroy(p);
}

/* A JetStream dead letter is re-driven to its subject once the function is
 * fixed, runs once, and a second re-drive finds nothing to do. */
static void test_js_redrive_after_fix(void **state)
{
    (void)state;
    /* The fix: the trigger runs a function that does not fail. */
    free(fx_sql(&fx, "UPDATE weft.triggers SET function = 'upper' WHERE name = 'js-faulty'"));
    pid_t pid = fx_run_start(&fx, "run-redrive.log", RUN_SET);
    assert_true(pid > 0);
    char id[32];
    long dl = fx_sql_long(&fx, "SELECT id FROM weft.dead_letters WHERE key = "
                               "'ce:/weft/tests' || chr(31) || 'fatal-1'");
    assert_true(dl > 0);
    snprintf(id, sizeof(id), "%ld", dl);
    char out[4096];
    const char *args[] = {"dlq", "redrive", "--id", id, NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), args), 0);
    assert_non_null(strstr(out, "re-drove 1 dead letter"));
    fx_nsub_t *res = fx_nsub_new(&fx, "js.f.out", 1);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    int want = 4; /* the three results of the previous test, then this one */
    nsub_settle(res, &msgs, &n, &cap, n_pred, &want, 60000, SETTLE_MS);
    assert_int_equal((int)n, 4);
    assert_int_equal(count_input(msgs, n, "fatal-1"), 1);
    const fx_msg_t *m = find_by_header(msgs, n, "ce-weftinputid", "fatal-1");
    assert_non_null(m);
    assert_string_equal(m->value, "{\"fail\":\"FATAL\"}");
    /* It kept its key: the ledger row is the same one, now completed. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE key = "
                                      "'ce:/weft/tests' || chr(31) || 'fatal-1' AND status = "
                                      "'completed' AND trigger = 'js-faulty'"),
                     1);
    assert_int_equal(fx_weft(&fx, out, sizeof(out), args), 0);
    assert_non_null(strstr(out, "nothing to re-drive"));
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    free(fx_sql(&fx, "UPDATE weft.triggers SET function = 'faulty' WHERE name = 'js-faulty'"));
    fx_msgs_free(msgs, n);
    fx_nsub_destroy(res);
}

/* weft replay from JetStream: by time with --reexecute (the functions run
 * again, new result ids), and by sequence honouring the ledger (nothing
 * runs). */
static void test_js_replay_by_time_and_sequence(void **state)
{
    (void)state;
    fx_nats_t *p = fx_nats_new(&fx);
    pid_t pid = fx_run_start(&fx, "run-replay.log", RUN_SET);
    assert_true(pid > 0);
    const char *early[] = {"rp-a1", "rp-a2", "rp-a3"}, *late[] = {"rp-b1", "rp-b2"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(fx_nats_publish(p, 1, "js.rp.in", early[i], "t", "{\"n\":\"a\"}", NULL),
                         0);
    fx_nsub_t *c = fx_nsub_new(&fx, "js.rp.out", 1);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    int want = 3;
    nsub_settle(c, &msgs, &n, &cap, n_pred, &want, 60000, SETTLE_MS);
    assert_int_equal((int)n, 3);
    usleep(1500 * 1000);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long from_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    usleep(200 * 1000);
    for (int i = 0; i < 2; i++)
        assert_int_equal(fx_nats_publish(p, 1, "js.rp.in", late[i], "t", "{\"n\":\"b\"}", NULL), 0);
    want = 5;
    nsub_settle(c, &msgs, &n, &cap, n_pred, &want, 60000, SETTLE_MS);
    assert_int_equal((int)n, 5);

    /* From a time after the last event: nothing to replay, and said so
     * without waiting for a message that will not come. */
    char from[48], out[8192];
    usleep(200 * 1000);
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(from, sizeof(from), "@%lld", (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    const char *none[] = {"replay", "--trigger", "js-replay", "--from-time", from, NULL};
    int rc = fx_weft(&fx, out, sizeof(out), none);
    print_message("weft replay --from-time (after the last): %d\n%s", rc, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "nothing to replay"));

    /* --reexecute from the time between the two groups: the late two run
     * again under a new generation. */
    snprintf(from, sizeof(from), "@%lld", from_ms);
    const char *rx[] = {"replay", "--trigger",   "js-replay", "--from-time",
                        from,     "--reexecute", "--yes",     NULL};
    rc = fx_weft(&fx, out, sizeof(out), rx);
    print_message("weft replay --from-time: %d\n%s", rc, out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "2 events read, 2 republished"));
    want = 7;
    nsub_settle(c, &msgs, &n, &cap, n_pred, &want, 60000, SETTLE_MS);
    assert_int_equal((int)n, 7);
    assert_int_equal(count_input(msgs, n, "rp-b1"), 2);
    assert_int_equal(count_input(msgs, n, "rp-b2"), 2);
    assert_int_equal(count_input(msgs, n, "rp-a1"), 1);
    const char *ids[2] = {NULL, NULL};
    for (size_t i = 0, k = 0; i < n && k < 2; i++)
        if (msgs[i].input_id && strcmp(msgs[i].input_id, "rp-b1") == 0)
            ids[k++] = msgs[i].ce_id;
    assert_string_not_equal(ids[0], ids[1]);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = "
                                      "'js-replay' AND generation > 0"),
                     2);

    /* By sequence, honouring the ledger: the first three re-emit their
     * stored results (JetStream drops the copies within its duplicate
     * window, as the ids are the same); no function runs. */
    const char *dry[] = {"replay", "--trigger", "js-replay", "--from-seq", "1", "--dry-run", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), dry), 0);
    assert_non_null(strstr(out, "events read, nothing published"));
    long runs_before = fx_sql_long(&fx, "SELECT sum(attempts) FROM weft.ledger WHERE trigger = "
                                        "'js-replay'");
    const char *seq[] = {"replay", "--topic", "jetstream://js.rp.in", "--from-seq", "1", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), seq), 0);
    assert_non_null(strstr(out, "done"));
    usleep(2000 * 1000);
    assert_int_equal(fx_sql_long(&fx, "SELECT sum(attempts) FROM weft.ledger WHERE trigger = "
                                      "'js-replay'"),
                     runs_before);
    /* weft status: the trigger's durable consumer has nothing left. */
    const char *stc[] = {"status", "--json", NULL};
    const char *want_lag = "\"name\":\"js-replay\",\"source\":\"jetstream\",\"topic\":"
                           "\"js.rp.in\",\"enabled\":true,\"function\":\"upper\",\"lag\":0,";
    uint64_t until = fx_now_ms() + 30000;
    int src;
    while ((src = fx_weft(&fx, out, sizeof(out), stc)) != 0 || !strstr(out, want_lag)) {
        if (fx_now_ms() > until)
            break;
        usleep(500 * 1000);
    }
    print_message("weft status --json: %d\n%s", src, out);
    assert_int_equal(src, 0);
    assert_non_null(strstr(out, want_lag));
    /* Offsets are for Kafka; core NATS keeps nothing to replay. */
    const char *bad[] = {"replay", "--trigger", "js-replay", "--from-offset", "3", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), bad), 2);
    assert_non_null(strstr(out, "--from-seq"));
    const char *core[] = {"replay", "--trigger", "core-upper", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), core), 2);
    assert_non_null(strstr(out, "keeps no messages"));
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(msgs, n);
    fx_nsub_destroy(c);
    fx_nats_destroy(p);
}

/* A saga whose steps and transitions travel on JetStream: one order goes
 * through, one is declined and its reservation released. */
static void test_js_saga(void **state)
{
    (void)state;
    fx_nats_t *p = fx_nats_new(&fx);
    pid_t pid = fx_run_start(&fx, "run-saga.log", RUN_SET);
    assert_true(pid > 0);
    assert_int_equal(fx_nats_publish(p, 1, "js.saga.orders", "jso-1", "order",
                                     "{\"order\":\"jso-1\",\"qty\":1,\"amount\":20}", NULL),
                     0);
    assert_int_equal(fx_nats_publish(p, 1, "js.saga.orders", "jso-2", "order",
                                     "{\"order\":\"jso-2\",\"qty\":1,\"amount\":5000}", NULL),
                     0);
    const char *final = "SELECT count(*) FROM weft.saga_instances WHERE saga = 'js-order'"
                        " AND status IN ('completed', 'aborted')";
    uint64_t until = fx_now_ms() + 60000;
    while (fx_sql_long(&fx, final) < 2 && fx_now_ms() < until)
        usleep(200 * 1000);
    assert_int_equal(fx_sql_long(&fx, final), 2);
    char *st = fx_sql(&fx, "SELECT string_agg(split_part(start_key, chr(31), 2) || '=' || status,"
                           " ',' ORDER BY start_key) FROM weft.saga_instances"
                           " WHERE saga = 'js-order'");
    assert_string_equal(st, "jso-1=completed,jso-2=aborted");
    free(st);
    /* The transitions are on the event subject. */
    fx_nsub_t *c = fx_nsub_new(&fx, "js.saga.events", 1);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    /* jso-1: started, step.completed x2, completed; jso-2: started,
     * step.completed, step.failed, compensating, step.compensated, aborted */
    int want = 10;
    nsub_settle(c, &msgs, &n, &cap, n_pred, &want, 30000, SETTLE_MS);
    assert_int_equal((int)n, 10);
    assert_non_null(find_by_header(msgs, n, "ce-type", "weft.saga.aborted"));
    assert_non_null(find_by_header(msgs, n, "ce-type", "weft.saga.completed"));
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(msgs, n);
    fx_nsub_destroy(c);
    fx_nats_destroy(p);
}

static void test_js_function_longer_than_ack_wait_runs_once(void **state)
{
    (void)state;
    fx_nats_t *p = fx_nats_new(&fx);
    pid_t pid = fx_run_start(&fx, "run-slow.log", RUN_SET);
    assert_true(pid > 0);
    /* AckWait is 1 s; the function takes 3.5 s. */
    assert_int_equal(
        fx_nats_publish(p, 1, "js.slow.in", "slow-1", "t", "{\"fail\":\"sleep-3500\"}", NULL), 0);
    fx_nsub_t *out = fx_nsub_new(&fx, "js.slow.out", 1);
    fx_msg_t *res = NULL;
    size_t rn = 0, rcap = 0;
    count_ctx_t cc = {.input_id = "slow-1", .want = 1};
    fx_nsub_until(out, &res, &rn, &rcap, count_pred, &cc, 60000);
    assert_int_equal(cc.got, 1);
    fx_js_cstate_t st;
    wait_acked("JSIN", "weft_js-slow", &st);
    assert_int_equal(st.ack_pending, 0);
    /* In-progress acks kept the server from redelivering it. */
    assert_int_equal(st.redelivered, 0);
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE trigger = "
                                      "'js-slow'"),
                     1);
    fx_nsub_until(out, &res, &rn, &rcap, never_pred, NULL, SETTLE_MS);
    assert_int_equal(count_input(res, rn, "slow-1"), 1);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(res, rn);
    fx_nsub_destroy(out);
    fx_nats_destroy(p);
}

static void test_kafka_to_jetstream_and_back(void **state)
{
    (void)state;
    pid_t pid = fx_run_start(&fx, "run-mixed.log", RUN_SET);
    assert_true(pid > 0);
    /* Kafka -> JetStream, with an attribute holding CR/LF (fine in Kafka
     * headers; percent-encoded on NATS) ... */
    fx_producer_t *kp = fx_producer_new(&fx);
    assert_int_equal(fx_produce(kp, "js.kin", "k", "k2j-1", "t", "{\"name\":\"ada\"}", NULL), 0);
    assert_int_equal(fx_produce_raw_header(kp, "js.kin", "k2j-2", "ce_subject", "a\r\nb", 4,
                                           "{\"name\":\"bob\"}"),
                     0);
    /* ... and a malformed one with a raw CR/LF header: its dead letter goes
     * to JetStream without that header (named in weft-dropped-headers). */
    const char *bad_spec[] = {"ce_specversion=0.3", "ce_id=k2j-bad",        "ce_source=/x",
                              "ce_type=t",          "x-note=line\r\nbreak", NULL};
    assert_int_equal(fx_produce(kp, "js.kin", "k", NULL, NULL, "{}", bad_spec), 0);
    assert_int_equal(fx_producer_flush(kp), 0);

    fx_nsub_t *out = fx_nsub_new(&fx, "js.k.out", 1);
    fx_msg_t *res = NULL;
    size_t rn = 0, rcap = 0;
    int want = 2;
    nsub_settle(out, &res, &rn, &rcap, n_pred, &want, 60000, SETTLE_MS);
    assert_int_equal((int)rn, 2);
    const fx_msg_t *m = find_by_header(res, rn, "ce-weftinputid", "k2j-1");
    assert_non_null(m);
    assert_string_equal(m->value, "{\"name\":\"ADA\"}");
    assert_string_equal(fx_header(m, "Nats-Msg-Id"), m->ce_id);
    m = find_by_header(res, rn, "ce-weftinputid", "k2j-2");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce-subject"), "a%0D%0Ab");

    fx_nsub_t *dlq = fx_nsub_new(&fx, "js.k.dlq", 1);
    fx_msg_t *dl = NULL;
    size_t dn = 0, dcap = 0;
    int dwant = 1;
    nsub_settle(dlq, &dl, &dn, &dcap, n_pred, &dwant, 60000, SETTLE_MS);
    assert_int_equal((int)dn, 1);
    m = find_by_header(dl, dn, "ce-id", "k2j-bad");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce-weftreason"), "malformed");
    assert_string_equal(fx_header(m, "ce-weftsrctopic"), "js.kin");
    assert_string_equal(fx_header(m, "weft-dropped-headers"), "x-note");
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'k2j' AND source_broker = 'kafka' AND "
                                      "headers::text LIKE '%x-note%'"),
                     1);

    /* JetStream -> Kafka. */
    fx_nats_t *p = fx_nats_new(&fx);
    assert_int_equal(fx_nats_publish(p, 1, "js.j2k.in", "j2k-1", "t", "{\"name\":\"cy\"}", NULL),
                     0);
    fx_consumer_t *kc = fx_consumer_new(&fx, "js.kout");
    fx_msg_t *km = NULL;
    size_t kn = 0, kcap = 0;
    count_ctx_t cc = {.input_id = "j2k-1", .want = 1};
    fx_consume_until(kc, &km, &kn, &kcap, count_pred, &cc, 60000);
    fx_consume_until(kc, &km, &kn, &kcap, never_pred, NULL, SETTLE_MS);
    assert_int_equal(count_input(km, kn, "j2k-1"), 1);
    assert_string_equal(km[0].value, "{\"name\":\"CY\"}");
    fx_js_cstate_t st;
    wait_acked("JSIN", "weft_j2k", &st);
    assert_int_equal(st.ack_pending, 0);

    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(km, kn);
    fx_consumer_destroy(kc);
    fx_msgs_free(dl, dn);
    fx_nsub_destroy(dlq);
    fx_msgs_free(res, rn);
    fx_nsub_destroy(out);
    fx_producer_destroy(kp);
    fx_nats_destroy(p);
}

static void test_core_nats_round_trip(void **state)
{
    (void)state;
    pid_t pid = fx_run_start(&fx, "run-core.log", RUN_SET);
    assert_true(pid > 0);
    fx_nsub_t *out = fx_nsub_new(&fx, "core.out", 0);
    assert_non_null(out);
    fx_nats_t *p = fx_nats_new(&fx);
    fx_msg_t *res = NULL;
    size_t rn = 0, rcap = 0;
    count_ctx_t cc = {.input_id = "core-1", .want = 1};
    /* At-most-once: a message published before the dispatcher subscribed
     * is gone, so publish until one result comes back. */
    uint64_t deadline = fx_now_ms() + 60000;
    while (cc.got == 0 && fx_now_ms() < deadline) {
        assert_int_equal(
            fx_nats_publish(p, 0, "core.in", "core-1", "t", "{\"name\":\"dee\"}", NULL), 0);
        fx_nsub_until(out, &res, &rn, &rcap, count_pred, &cc, 500);
    }
    assert_true(cc.got >= 1);
    const fx_msg_t *m = find_by_header(res, rn, "ce-weftinputid", "core-1");
    assert_non_null(m);
    assert_string_equal(m->value, "{\"name\":\"DEE\"}");
    /* Repeats of the same event ran the function once (the ledger). */
    assert_int_equal(fx_sql_long(&fx, "SELECT attempts FROM weft.ledger WHERE trigger = "
                                      "'core-upper'"),
                     1);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(res, rn);
    fx_nsub_destroy(out);
    fx_nats_destroy(p);
}

/* ---- core NATS: retries, dead letters, sagas (issue 25, bug 2) ---------- */

/* Core NATS keeps nothing for a subject nobody subscribes to: publishes a
 * probe event until its result is back on out. The dispatcher subscribes
 * to every core subject in one catalog sync, before it emits anything, so
 * once one result is back all its subscriptions are live. */
static void core_wait_subscribed(fx_nats_t *p, fx_nsub_t *out, const char *subject,
                                 const char *probe_id, fx_msg_t **msgs, size_t *n, size_t *cap)
{
    count_ctx_t cc = {.input_id = probe_id, .want = 1};
    uint64_t deadline = fx_now_ms() + 60000;
    while (cc.got == 0 && fx_now_ms() < deadline) {
        assert_int_equal(fx_nats_publish(p, 0, subject, probe_id, "t", "{\"ok\":true}", NULL), 0);
        fx_nsub_until(out, msgs, n, cap, count_pred, &cc, 500);
    }
    assert_true(cc.got >= 1);
}

/* A retryable failure on a core NATS trigger waits in the dispatcher (core
 * NATS cannot redeliver) and runs again: an event that fails twice gives
 * one result after three attempts; one that always fails gives exactly one
 * dead letter (max_attempts) and its ledger row ends 'dead'. */
static void test_core_nats_retries_wait_in_the_dispatcher(void **state)
{
    (void)state;
    pid_t pid = fx_run_start(&fx, "run-core-retry.log", RUN_SET);
    assert_true(pid > 0);
    fx_nsub_t *out = fx_nsub_new(&fx, "core.f.out", 0);
    fx_nsub_t *dlq = fx_nsub_new(&fx, "core.f.dlq", 0);
    assert_non_null(out);
    assert_non_null(dlq);
    fx_nats_t *p = fx_nats_new(&fx);
    fx_msg_t *res = NULL, *dl = NULL;
    size_t rn = 0, rcap = 0, dn = 0, dcap = 0;
    core_wait_subscribed(p, out, "core.f.in", "cprobe-1", &res, &rn, &rcap);
    assert_int_equal(
        fx_nats_publish(p, 0, "core.f.in", "cflaky-1", "t", "{\"fail\":\"retry-until-3\"}", NULL),
        0);
    assert_int_equal(
        fx_nats_publish(p, 0, "core.f.in", "cdead-1", "t", "{\"fail\":\"retry\"}", NULL), 0);
    count_ctx_t cc = {.input_id = "cflaky-1", .want = 1};
    nsub_settle(out, &res, &rn, &rcap, count_pred, &cc, 60000, 2000);
    hdr_ctx_t hc = {.hdr = "ce-id", .value = "cdead-1", .want = 1};
    nsub_settle(dlq, &dl, &dn, &dcap, hdr_pred, &hc, 60000, 2000);

    assert_int_equal(count_input(res, rn, "cflaky-1"), 1);
    assert_int_equal(count_input(res, rn, "cdead-1"), 0);
    assert_int_equal(count_header(dl, dn, "ce-id", "cdead-1"), 1);
    assert_int_equal(count_header(dl, dn, "ce-id", "cflaky-1"), 0);
    const fx_msg_t *m = find_by_header(dl, dn, "ce-id", "cdead-1");
    assert_non_null(m);
    assert_string_equal(fx_header(m, "ce-weftreason"), "max_attempts");
    assert_string_equal(fx_header(m, "ce-weftattempts"), "3");
    assert_string_equal(fx_header(m, "ce-weftsrcbroker"), "nats");
    assert_string_equal(m->value, "{\"fail\":\"retry\"}");
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE key = "
                                      "'ce:/weft/tests' || chr(31) || 'cflaky-1' AND "
                                      "attempts = 3 AND status = 'completed'"),
                     1);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE key = "
                                      "'ce:/weft/tests' || chr(31) || 'cdead-1' AND "
                                      "attempts = 3 AND status = 'dead'"),
                     1);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE trigger = "
                                      "'core-faulty' AND source_broker = 'nats' AND "
                                      "reason = 'max_attempts'"),
                     1);
    /* The retries waited their backoff in the dispatcher: 200 ms, then
     * 400 ms (no jitter). */
    assert_true(fx_sql_long(&fx, "SELECT (extract(epoch FROM last_failure_at - "
                                 "first_failure_at) * 1000)::bigint FROM weft.ledger WHERE "
                                 "key = 'ce:/weft/tests' || chr(31) || 'cdead-1'") >= 600);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(res, rn);
    fx_msgs_free(dl, dn);
    fx_nsub_destroy(out);
    fx_nsub_destroy(dlq);
    fx_nats_destroy(p);
}

/* A saga whose steps travel on core NATS: a step that fails retryably
 * (faulty.so, "retry-until-2") runs again and the saga completes. */
static void test_core_nats_saga_step_retried(void **state)
{
    (void)state;
    pid_t pid = fx_run_start(&fx, "run-core-saga.log", RUN_SET);
    assert_true(pid > 0);
    fx_nsub_t *ev = fx_nsub_new(&fx, "core.saga.events", 0);
    assert_non_null(ev);
    fx_nats_t *p = fx_nats_new(&fx);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    /* A probe order until its saga completes: the subscriptions are live. */
    hdr_ctx_t hc = {.hdr = "ce-type", .value = "weft.saga.completed", .want = 1};
    uint64_t deadline = fx_now_ms() + 60000;
    while (!hdr_pred(msgs, n, &hc) && fx_now_ms() < deadline) {
        assert_int_equal(fx_nats_publish(p, 0, "core.saga.orders", "cso-probe", "order",
                                         "{\"order\":\"probe\"}", NULL),
                         0);
        fx_nsub_until(ev, &msgs, &n, &cap, hdr_pred, &hc, 500);
    }
    assert_true(hdr_pred(msgs, n, &hc));
    assert_int_equal(fx_nats_publish(p, 0, "core.saga.orders", "cso-1", "order",
                                     "{\"order\":\"cso-1\",\"fail\":\"retry-until-2\"}", NULL),
                     0);
    const char *done = "SELECT count(*) FROM weft.saga_instances WHERE saga = 'core-order' AND "
                       "split_part(start_key, chr(31), 2) = 'cso-1' AND status = 'completed'";
    deadline = fx_now_ms() + 60000;
    while (fx_sql_long(&fx, done) < 1 && fx_now_ms() < deadline)
        usleep(200 * 1000);
    assert_int_equal(fx_sql_long(&fx, done), 1);
    /* The step ran twice (the ledger of the step's trigger), and no step
     * row is left unfinished. */
    assert_int_equal(fx_sql_long(&fx, "SELECT max(attempts) FROM weft.ledger WHERE trigger = "
                                      "'saga:core-order:1:do'"),
                     2);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = "
                                      "'saga:core-order:1:do' AND status <> 'completed'"),
                     0);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(msgs, n);
    fx_nsub_destroy(ev);
    fx_nats_destroy(p);
}

/* ---- structured protobuf CloudEvents ------------------------------------ */

typedef Io__Cloudevents__V1__CloudEvent ce_t;
typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue ce_val_t;
typedef Io__Cloudevents__V1__CloudEvent__AttributesEntry ce_entry_t;

/* The event of test_nats_structured_protobuf, packed (malloc()ed). */
static uint8_t *pb_event(const char *id, size_t *len)
{
    ce_t ev;
    io__cloudevents__v1__cloud_event__init(&ev);
    ev.id = (char *)id;
    ev.source = "/weft/tests/pb";
    ev.spec_version = "1.0";
    ev.type = "pb.order";
    ev.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA;
    ev.text_data = "{\"order\":7}";
    const char *keys[] = {"subject", "datacontenttype", "tenant", "priority"};
    ce_val_t vals[4];
    ce_entry_t entries[4], *ptrs[4];
    for (int i = 0; i < 4; i++) {
        io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&vals[i]);
        vals[i].attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
        io__cloudevents__v1__cloud_event__attributes_entry__init(&entries[i]);
        entries[i].key = (char *)keys[i];
        entries[i].value = &vals[i];
        ptrs[i] = &entries[i];
    }
    vals[0].ce_string = "order/7";
    vals[1].ce_string = "application/json";
    vals[2].ce_string = "acme";
    vals[3].attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
    vals[3].ce_integer = 5;
    ev.n_attributes = 4;
    ev.attributes = ptrs;
    *len = io__cloudevents__v1__cloud_event__get_packed_size(&ev);
    uint8_t *buf = malloc(*len);
    assert_non_null(buf);
    assert_int_equal(io__cloudevents__v1__cloud_event__pack(&ev, buf), *len);
    return buf;
}

/* What describe.so saw of the event, and the result's own attributes. */
static void check_pb_result(const fx_msg_t *res, size_t n, const char *trigger)
{
    assert_int_equal(count_input(res, n, "pbs-1"), 1);
    const fx_msg_t *m = find_by_header(res, n, "ce-weftinputid", "pbs-1");
    assert_non_null(m);
    static const char *const want[] = {
        "id=pbs-1\nsource=/weft/tests/pb\nspecversion=1.0\ntype=pb.order\n",
        "subject=order/7\n",
        "datacontenttype=application/json\n",
        "attr.tenant=acme\n",
        "attr.priority=5\n",
        "attempt=1\ndata_len=11\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(m->value, want[i]))
            fail_msg("%s: the function did not see \"%s\" in:\n%s", trigger, want[i], m->value);
    char tline[64];
    snprintf(tline, sizeof(tline), "trigger=%s\n", trigger);
    assert_non_null(strstr(m->value, tline));
    assert_string_equal(fx_header(m, "ce-type"), "pb.order.result");
    assert_string_equal(fx_header(m, "ce-subject"), "order/7");
    assert_string_equal(fx_header(m, "ce-wefttrigger"), trigger);
    assert_string_equal(fx_header(m, "Content-Type"), "text/plain");
}

/* A structured-mode protobuf CloudEvent (application/cloudevents+protobuf,
 * the official field numbers) on core NATS and on JetStream: the function
 * sees its attributes, extensions and data, and its result comes back. */
static void test_nats_structured_protobuf(void **state)
{
    (void)state;
    pid_t pid = fx_run_start(&fx, "run-pb.log", RUN_SET);
    assert_true(pid > 0);
    fx_nsub_t *core = fx_nsub_new(&fx, "core.d.out", 0);
    fx_nsub_t *js = fx_nsub_new(&fx, "js.d.out", 1);
    assert_non_null(core);
    assert_non_null(js);
    fx_nats_t *p = fx_nats_new(&fx);
    fx_msg_t *cres = NULL, *jres = NULL;
    size_t cn = 0, ccap = 0, jn = 0, jcap = 0;
    core_wait_subscribed(p, core, "core.d.in", "pbprobe-1", &cres, &cn, &ccap);
    size_t len;
    uint8_t *buf = pb_event("pbs-1", &len);
    assert_int_equal(
        fx_nats_publish_raw(p, 0, "core.d.in", "application/cloudevents+protobuf", NULL, buf, len),
        0);
    assert_int_equal(
        fx_nats_publish_raw(p, 1, "js.d.in", "application/cloudevents+protobuf", NULL, buf, len),
        0);
    free(buf);
    count_ctx_t cc = {.input_id = "pbs-1", .want = 1}, jc = cc;
    nsub_settle(core, &cres, &cn, &ccap, count_pred, &cc, 60000, 1000);
    nsub_settle(js, &jres, &jn, &jcap, count_pred, &jc, 60000, 1000);
    check_pb_result(cres, cn, "core-describe");
    check_pb_result(jres, jn, "js-describe");
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE key = "
                                      "'ce:/weft/tests/pb' || chr(31) || 'pbs-1' AND "
                                      "status = 'completed' AND attempts = 1 AND trigger IN "
                                      "('core-describe', 'js-describe')"),
                     2);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(cres, cn);
    fx_msgs_free(jres, jn);
    fx_nsub_destroy(core);
    fx_nsub_destroy(js);
    fx_nats_destroy(p);
}

/* ---- oversized messages on NATS ----------------------------------------- */

/* A message over dispatcher.max_event_bytes, on core NATS and on
 * JetStream: one dead letter each with reason oversized and the original
 * bytes, a weft.dead_letters row and a 'dead' ledger row; never a result,
 * never a silent loss. */
static void test_nats_oversized_input_dead_lettered(void **state)
{
    (void)state;
    pid_t pid = fx_run_start(&fx, "run-big-in.log", RUN_SET ";dispatcher.max_event_bytes=65536");
    assert_true(pid > 0);
    fx_nsub_t *out = fx_nsub_new(&fx, "core.f.out", 0);
    fx_nsub_t *cdlq = fx_nsub_new(&fx, "core.f.dlq", 0);
    fx_nsub_t *jdlq = fx_nsub_new(&fx, "js.f.dlq", 1);
    assert_non_null(out);
    assert_non_null(cdlq);
    assert_non_null(jdlq);
    fx_nats_t *p = fx_nats_new(&fx);
    fx_msg_t *res = NULL, *cdl = NULL, *jdl = NULL;
    size_t rn = 0, rcap = 0, cn = 0, ccap = 0, jn = 0, jcap = 0;
    core_wait_subscribed(p, out, "core.f.in", "bigprobe-1", &res, &rn, &rcap);
    const size_t big = 100000;
    char *data = malloc(big);
    assert_non_null(data);
    memset(data, 'x', big);
    const char *core_hdrs[] = {"ce-specversion=1.0", "ce-id=cbig-1", "ce-source=/weft/tests",
                               "ce-type=t", NULL};
    const char *js_hdrs[] = {"ce-specversion=1.0", "ce-id=jbig-1", "ce-source=/weft/tests",
                             "ce-type=t", NULL};
    assert_int_equal(
        fx_nats_publish_raw(p, 0, "core.f.in", "application/octet-stream", core_hdrs, data, big),
        0);
    assert_int_equal(
        fx_nats_publish_raw(p, 1, "js.f.in", "application/octet-stream", js_hdrs, data, big), 0);
    hdr_ctx_t ch = {.hdr = "ce-id", .value = "cbig-1", .want = 1};
    hdr_ctx_t jh = {.hdr = "ce-id", .value = "jbig-1", .want = 1};
    nsub_settle(cdlq, &cdl, &cn, &ccap, hdr_pred, &ch, 60000, 1000);
    nsub_settle(jdlq, &jdl, &jn, &jcap, hdr_pred, &jh, 60000, 1000);
    fx_nsub_until(out, &res, &rn, &rcap, never_pred, NULL, 500);
    assert_int_equal(count_header(cdl, cn, "ce-id", "cbig-1"), 1);
    assert_int_equal(count_header(jdl, jn, "ce-id", "jbig-1"), 1);
    assert_int_equal(count_input(res, rn, "cbig-1"), 0);
    const fx_msg_t *ms[] = {find_by_header(cdl, cn, "ce-id", "cbig-1"),
                            find_by_header(jdl, jn, "ce-id", "jbig-1")};
    for (int i = 0; i < 2; i++) {
        assert_non_null(ms[i]);
        assert_string_equal(fx_header(ms[i], "ce-weftreason"), "oversized");
        assert_int_equal(ms[i]->value_len, big);
        assert_memory_equal(ms[i]->value, data, big);
    }
    assert_string_equal(fx_header(ms[0], "ce-weftsrcbroker"), "nats");
    assert_string_equal(fx_header(ms[1], "ce-weftsrcbroker"), "jetstream");
    free(data);
    /* Undecoded, an oversized event is keyed by its coordinates. */
    const char *sel = "FROM weft.dead_letters d JOIN weft.ledger l ON l.trigger = d.trigger AND "
                      "l.key = d.key WHERE d.reason = 'oversized' AND ((d.trigger = 'core-faulty' "
                      "AND d.source_broker = 'nats') OR (d.trigger = 'js-faulty' AND "
                      "d.source_broker = 'jetstream'))";
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT count(*) %s", sel);
    assert_int_equal(fx_sql_long(&fx, sql), 2);
    /* It never ran: an attempt counts a run of the function, not a claim. */
    snprintf(sql, sizeof(sql), "SELECT count(*) %s AND l.status = 'dead' AND l.attempts = 0", sel);
    assert_int_equal(fx_sql_long(&fx, sql), 2);
    fx_js_cstate_t st;
    wait_acked("JSIN", "faulty-durable", &st);
    assert_int_equal(st.ack_pending, 0);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(res, rn);
    fx_msgs_free(cdl, cn);
    fx_msgs_free(jdl, jn);
    fx_nsub_destroy(out);
    fx_nsub_destroy(cdlq);
    fx_nsub_destroy(jdlq);
    fx_nats_destroy(p);
}

/* A result over the NATS server's max_payload (core NATS and JetStream)
 * can never be published: each is dead-lettered with a reason that names
 * the limit, once, instead of being retried every second forever with
 * its source held. */
static void test_nats_result_over_max_payload_dead_lettered(void **state)
{
    (void)state;
    pid_t pid = fx_run_start(&fx, "run-big-out.log", RUN_SET);
    assert_true(pid > 0);
    fx_nsub_t *core = fx_nsub_new(&fx, "core.big.out", 0);
    fx_nsub_t *js = fx_nsub_new(&fx, "js.big.out", 1);
    assert_non_null(core);
    assert_non_null(js);
    const size_t spaces = 400000;
    char *subj = malloc(spaces + sizeof("ce_subject="));
    assert_non_null(subj);
    strcpy(subj, "ce_subject=");
    memset(subj + strlen(subj), ' ', spaces);
    subj[sizeof("ce_subject=") - 1 + spaces] = '\0';
    const char *hdrs[] = {subj, NULL};
    fx_producer_t *kp = fx_producer_new(&fx);
    assert_int_equal(fx_produce(kp, "js.kbig", "k", "kbig-1", "t", "{\"name\":\"big\"}", hdrs), 0);
    assert_int_equal(fx_producer_flush(kp), 0);
    free(subj);
    fx_consumer_t *kc = fx_consumer_new(&fx, "js.kdlq");
    fx_msg_t *dl = NULL, *cres = NULL, *jres = NULL;
    size_t dn = 0, dcap = 0, cn = 0, ccap = 0, jn = 0, jcap = 0;
    hdr_ctx_t hc = {.hdr = "ce_id", .value = "kbig-1", .want = 2};
    fx_consume_until(kc, &dl, &dn, &dcap, hdr_pred, &hc, 60000);
    fx_consume_until(kc, &dl, &dn, &dcap, never_pred, NULL, 2000);
    fx_nsub_until(core, &cres, &cn, &ccap, never_pred, NULL, 500);
    fx_nsub_until(js, &jres, &jn, &jcap, never_pred, NULL, 500);
    assert_int_equal(count_header(dl, dn, "ce_id", "kbig-1"), 2);
    assert_int_equal(count_header(dl, dn, "ce_wefttrigger", "k2n-big"), 1);
    assert_int_equal(count_header(dl, dn, "ce_wefttrigger", "k2js-big"), 1);
    for (size_t i = 0; i < dn; i++) {
        /* fx_header answers in one static buffer: copies. */
        char *reason =
            fx_header(&dl[i], "ce_weftreason") ? strdup(fx_header(&dl[i], "ce_weftreason")) : NULL;
        char *err =
            fx_header(&dl[i], "ce_wefterror") ? strdup(fx_header(&dl[i], "ce_wefterror")) : NULL;
        print_message("dead letter of %s: reason=%s error=%s\n",
                      fx_header(&dl[i], "ce_wefttrigger"), reason ? reason : "(none)",
                      err ? err : "(none)");
        assert_non_null(reason);
        assert_true(*reason != '\0');
        assert_non_null(err);
        assert_non_null(strstr(err, "max_payload"));
        assert_string_equal(dl[i].value, "{\"name\":\"big\"}");
        free(reason);
        free(err);
    }
    assert_int_equal(count_input(cres, cn, "kbig-1"), 0);
    assert_int_equal(count_input(jres, jn, "kbig-1"), 0);
    assert_int_equal(fx_run_stop(pid, 60000), 0);
    fx_msgs_free(dl, dn);
    fx_msgs_free(cres, cn);
    fx_msgs_free(jres, jn);
    fx_consumer_destroy(kc);
    fx_producer_destroy(kp);
    fx_nsub_destroy(core);
    fx_nsub_destroy(js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_js_one_result_per_event),
        cmocka_unit_test(test_js_duplicate_runs_nothing),
        cmocka_unit_test(test_js_retries_then_dead_letter_subject),
        cmocka_unit_test(test_js_redrive_after_fix),
        cmocka_unit_test(test_js_replay_by_time_and_sequence),
        cmocka_unit_test(test_js_saga),
        cmocka_unit_test(test_js_function_longer_than_ack_wait_runs_once),
        cmocka_unit_test(test_kafka_to_jetstream_and_back),
        cmocka_unit_test(test_core_nats_round_trip),
        cmocka_unit_test(test_core_nats_retries_wait_in_the_dispatcher),
        cmocka_unit_test(test_core_nats_saga_step_retried),
        cmocka_unit_test(test_nats_structured_protobuf),
        cmocka_unit_test(test_nats_oversized_input_dead_lettered),
        cmocka_unit_test(test_nats_result_over_max_payload_dead_lettered),
        cmocka_unit_test(test_js_kill9_then_restart_loses_nothing),
        cmocka_unit_test(test_js_nats_server_restart_mid_stream),
    };
    /* WEFT_TEST_FILTER=name runs the matching tests only (while debugging). */
    if (getenv("WEFT_TEST_FILTER"))
        cmocka_set_test_filter(getenv("WEFT_TEST_FILTER"));
    return cmocka_run_group_tests_name("jetstream", tests, group_setup, group_teardown);
}
