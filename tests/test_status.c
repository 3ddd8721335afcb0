/*
 * test_status.c - `weft status` against a real PostgreSQL, Kafka and a
 * running `weft run`: each column of a trigger's row shows what its header
 * says, with values that are not zero. In flight: a slow function holds
 * its events; retrying: a failing function's events wait out a long
 * backoff; dead and failed: a poison event fails three times and is
 * dead-lettered (one failed event, not three); lag: events published
 * while no dispatcher runs.
 *
 * Each check first waits for a condition read elsewhere (the ledger, the
 * dead letters, a heartbeat taken after it), then reads `weft status`
 * once and compares exact numbers: nothing is polled until it matches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "json.h"

#define TOPICS                                                                                     \
    "st.slow:1 st.slow.out:1 st.retry:1 st.retry.out:1 st.poison:1 st.poison.out:1 st.lag:1 "      \
    "st.lag.out:1 st.dlq:1"
#define RUN_SET                                                                                    \
    "dispatcher.shutdown_timeout_ms=3000;kafka.session.timeout.ms=6000;"                           \
    "kafka.heartbeat.interval.ms=500"
#define N_SLOW 4
#define N_RETRY 3
#define N_POISON 2
#define N_LAG_DONE 2
#define N_LAG 5

static fx_t fx;
static pid_t run_pid;
static fx_producer_t *prod;
static char out[65536];

static int group_setup(void **state)
{
    (void)state;
    if (fx_up(&fx, TOPICS) != 0)
        return -1;
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/status", fx.src_dir);
    const char *args[] = {"migrate", "--dir", dir, NULL};
    if (fx_weft(&fx, out, sizeof(out), args) != 0) {
        fprintf(stderr, "weft migrate failed: %s\n", out);
        return -1;
    }
    prod = fx_producer_new(&fx);
    run_pid = fx_run_start(&fx, "run.log", RUN_SET);
    return prod && run_pid > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (run_pid > 0)
        fx_run_stop(run_pid, 20000);
    fx_producer_destroy(prod);
    fx_down(&fx);
    return 0;
}

static void publish(const char *topic, const char *pfx, int n, const char *mode)
{
    char data[128];
    snprintf(data, sizeof(data), "{\"fail\":\"%s\"}", mode);
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s-%d", pfx, i);
        assert_int_equal(fx_produce(prod, topic, id, id, "t", data, NULL), 0);
    }
    assert_int_equal(fx_producer_flush(prod), 0);
}

/* Waits until the SQL's count reaches want (a precondition, not the
 * assertion under test). */
static void wait_count(const char *sql, long want, int timeout_ms)
{
    uint64_t deadline = fx_now_ms() + (uint64_t)timeout_ms;
    long n;
    while ((n = fx_sql_long(&fx, sql)) < want && fx_now_ms() < deadline)
        usleep(100000);
    print_message("%s -> %ld (want %ld)\n", sql, n, want);
    assert_int_equal(n, want);
}

/* Waits for two heartbeats after now: the in-flight counts they carry
 * were taken after every precondition held. */
static void wait_fresh_heartbeat(void)
{
    char *t = fx_sql(&fx, "SELECT (now() + interval '1 second')::text");
    assert_non_null(t);
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM weft.dispatchers WHERE heartbeat_at > '%s'",
             t);
    free(t);
    wait_count(sql, 1, 30000);
}

static void status_json(void)
{
    const char *args[] = {"status", "--json", NULL};
    int rc = fx_weft(&fx, out, sizeof(out), args);
    print_message("$ weft status --json -> %d\n%s", rc, out);
    assert_int_equal(rc, 0);
    assert_true(weft_json_valid(out, strlen(out)));
}

/* A number member after key in the trigger's object (-1: missing). */
static long long trig_num(const char *trigger, const char *section, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "{\"name\":\"%s\"", trigger);
    const char *t = strstr(out, pat);
    assert_non_null(t);
    if (section) {
        snprintf(pat, sizeof(pat), "\"%s\":", section);
        t = strstr(t, pat);
        assert_non_null(t);
    }
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(t, pat);
    assert_non_null(p);
    return atoll(p + strlen(pat));
}

static void test_status_in_flight_retrying_dead_failed(void **state)
{
    (void)state;
    assert_true(fx_log_wait(&fx, "run.log", "partition assigned", 60000));
    publish("st.slow", "slow", N_SLOW, "sleep-100000");
    publish("st.retry", "retry", N_RETRY, "retry");
    publish("st.poison", "poison", N_POISON, "retry");
    publish("st.lag", "lag", N_LAG_DONE, "ok");
    /* Every slow event claimed (two run, two wait in the pool), every
     * retry event failed once, every poison event dead. */
    wait_count("SELECT count(*) FROM weft.ledger WHERE trigger = 'st-slow' AND status = 'running'",
               N_SLOW, 60000);
    wait_count("SELECT count(*) FROM weft.ledger WHERE trigger = 'st-retry' AND status = "
               "'running' AND last_error IS NOT NULL",
               N_RETRY, 60000);
    wait_count("SELECT count(*) FROM weft.dead_letters WHERE trigger = 'st-poison'", N_POISON,
               60000);
    wait_count("SELECT count(*) FROM weft.ledger WHERE trigger = 'st-lag' AND status = "
               "'completed'",
               N_LAG_DONE, 60000);
    /* Three failed attempts per poison event: the FAILED column counts
     * events, so it must not show these. */
    assert_int_equal(fx_sql_long(&fx, "SELECT sum(attempts) FROM weft.ledger WHERE trigger = "
                                      "'st-poison'"),
                     3 * N_POISON);
    wait_fresh_heartbeat();
    status_json();

    assert_int_equal(trig_num("st-slow", NULL, "inflight"), N_SLOW);
    assert_int_equal(trig_num("st-slow", NULL, "retrying"), 0);
    assert_int_equal(trig_num("st-slow", "total", "failed"), 0);

    assert_int_equal(trig_num("st-retry", NULL, "inflight"), N_RETRY);
    assert_int_equal(trig_num("st-retry", NULL, "retrying"), N_RETRY);
    assert_int_equal(trig_num("st-retry", "total", "failed"), N_RETRY);
    assert_int_equal(trig_num("st-retry", "total", "dead"), 0);

    assert_int_equal(trig_num("st-poison", NULL, "inflight"), 0);
    assert_int_equal(trig_num("st-poison", NULL, "retrying"), 0);
    assert_int_equal(trig_num("st-poison", "total", "dead"), N_POISON);
    assert_int_equal(trig_num("st-poison", "last_minute", "dead"), N_POISON);
    assert_int_equal(trig_num("st-poison", "total", "failed"), N_POISON);
    assert_int_equal(trig_num("st-poison", "total", "completed"), 0);

    assert_int_equal(trig_num("st-lag", "total", "completed"), N_LAG_DONE);
    assert_int_equal(trig_num("st-lag", NULL, "inflight"), 0);

    /* The table says the same, under headers that say what they count. */
    const char *args[] = {"status", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), args), 0);
    print_message("$ weft status\n%s", out);
    assert_non_null(strstr(out, "EVER FAILED"));
    const char *row = strstr(out, "\nst-retry ");
    assert_non_null(row);
    char name[64], src[128];
    long long lag, inflight, retrying;
    assert_int_equal(
        sscanf(row, "%63s %127s %lld %lld %lld", name, src, &lag, &inflight, &retrying), 5);
    assert_int_equal(inflight, N_RETRY);
    assert_int_equal(retrying, N_RETRY);
}

/* With no dispatcher running, what is published waits: the lag counts
 * it, and the slow events that never finished are lag too. */
static void test_status_lag_while_stopped(void **state)
{
    (void)state;
    assert_int_equal(fx_run_stop(run_pid, 30000), 0);
    run_pid = 0;
    publish("st.lag", "lag-late", N_LAG, "ok");
    status_json();
    assert_int_equal(trig_num("st-lag", NULL, "lag"), N_LAG);
    assert_int_equal(trig_num("st-slow", NULL, "lag"), N_SLOW);
    assert_int_equal(trig_num("st-poison", NULL, "lag"), 0);
    /* No live dispatcher (a clean stop removes its row): nothing is in
     * flight. */
    assert_int_equal(trig_num("st-slow", NULL, "inflight"), 0);
    assert_non_null(strstr(out, "\"dispatchers\":[]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_in_flight_retrying_dead_failed),
        cmocka_unit_test(test_status_lag_while_stopped),
    };
    return cmocka_run_group_tests_name("status", tests, group_setup, group_teardown);
}
