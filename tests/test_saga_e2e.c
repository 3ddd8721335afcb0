/*
 * test_saga_e2e.c - sagas through the real dispatcher: the order saga of
 * the README (orders.so) on Kafka and a real PostgreSQL.
 * The happy path; a permanent failure at each step with compensations in
 * reverse order exactly once; a failing compensation ends 'stuck' with a
 * dead letter; a replayed start event starts nothing new; kill -9 during a
 * step and during a compensation, then restart; the deadline; a saga held
 * by a lock holds up no other trigger.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "fixture.h"
#include "json.h"

#define WEFT_SET "kafka.session.timeout.ms=6000;kafka.heartbeat.interval.ms=500"

static fx_t fx;
static pid_t run_pid;
static fx_producer_t *prod;

static int setup(void **state)
{
    (void)state;
    if (fx_up(&fx, "orders:2 quick.orders:1 order.steps:2 quick.steps:1 order.events:1 "
                   "quick.events:1 order.dlq:1 orders.dlq:1 plain.in:1 plain.out:1") != 0)
        return -1;
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/saga", fx.src_dir);
    const char *args[] = {"migrate", "--dir", dir, NULL};
    char out[8192];
    if (fx_weft(&fx, out, sizeof(out), args) != 0) {
        fprintf(stderr, "migrate failed:\n%s\n", out);
        return -1;
    }
    run_pid = fx_run_start(&fx, "run.log", WEFT_SET);
    prod = fx_producer_new(&fx);
    return run_pid > 0 && prod ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (prod)
        fx_producer_destroy(prod);
    if (run_pid > 0)
        fx_run_stop(run_pid, 20000);
    fx_down(&fx);
    return 0;
}

static void place(const char *topic, const char *id, const char *order_json)
{
    assert_int_equal(fx_produce(prod, topic, id, id, "shop.order.placed", order_json, NULL), 0);
    assert_int_equal(fx_producer_flush(prod), 0);
}

/* SQL with one %s for the start event's id; the first column of the first
 * row, or "" (caller frees). */
static char *q(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *q(const char *fmt, ...)
{
    char sql[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    char *v = fx_sql(&fx, sql);
    assert_non_null(v);
    return v;
}

#define INSTANCE_OF                                                                            \
    "(SELECT id FROM weft.saga_instances WHERE split_part(start_key, chr(31), 2) = '%s')"

/* Waits until the instance started by event id has a final status. */
static char *wait_final(const char *id, int timeout_ms)
{
    uint64_t end = fx_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *s = q("SELECT status FROM weft.saga_instances"
                    " WHERE split_part(start_key, chr(31), 2) = '%s'",
                    id);
        if (strcmp(s, "completed") == 0 || strcmp(s, "aborted") == 0 ||
            strcmp(s, "stuck") == 0 || fx_now_ms() > end)
            return s;
        free(s);
        usleep(100 * 1000);
    }
}

/* The instance's transitions as "type[step/phase] ...", from the outbox. */
static char *timeline(const char *id)
{
    return q("SELECT coalesce(string_agg(replace(type, 'weft.saga.', '') ||"
             "  coalesce('[' || step || '/' || phase || ']', ''), ' ' ORDER BY seq), '')"
             " FROM weft.saga_events WHERE instance = " INSTANCE_OF,
             id);
}

static void assert_final(const char *id, const char *status, const char *want_timeline)
{
    char *s = wait_final(id, 60000);
    char *t = timeline(id);
    if (strcmp(s, status) != 0 || strcmp(t, want_timeline) != 0)
        print_message("saga %s: status %s, timeline: %s\n", id, s, t);
    assert_string_equal(s, status);
    assert_string_equal(t, want_timeline);
    free(s);
    free(t);
}

/* Every step and compensation of the instance finished at most once, and
 * every event of its outbox reached the topic (all published). */
static void assert_once_and_published(const char *id)
{
    char *dups = q("SELECT count(*) FROM (SELECT cause, type, step, phase FROM weft.saga_events"
                   " WHERE instance = " INSTANCE_OF " GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d",
                   id);
    assert_string_equal(dups, "0");
    free(dups);
}

typedef struct want_types {
    const char *instance;
    const char *last_type;
} want_types_t;

/* How long a collector reads on once it has what it waited for. */
#define SETTLE_MS 2000

/* Never satisfied: fx_consume_until reads for its whole timeout. */
static int never(const fx_msg_t *msgs, size_t n, void *ctx)
{
    (void)msgs;
    (void)n;
    (void)ctx;
    return 0;
}

static int have_type(const fx_msg_t *msgs, size_t n, void *ctx)
{
    want_types_t *w = ctx;
    for (size_t i = 0; i < n; i++) {
        const char *inst = fx_header(&msgs[i], "ce_weftinstance");
        if (inst && strcmp(inst, w->instance) == 0) {
            const char *t = fx_header(&msgs[i], "ce_type");
            if (t && strcmp(t, w->last_type) == 0)
                return 1;
        }
    }
    return 0;
}

static void test_happy_path(void **state)
{
    (void)state;
    place("orders", "o-happy",
          "{\"order\":\"o-happy\",\"item\":\"book\",\"qty\":1,\"amount\":25,"
          "\"card\":\"4242424242424242\"}");
    assert_final("o-happy", "completed",
                 "started step[1/do] step.completed step[2/do] step.completed step[3/do] "
                 "step.completed completed");
    /* The output of each step was the input of the next. */
    char *out = q("SELECT convert_from(output, 'UTF8') FROM weft.saga_step_runs"
                  " WHERE instance = " INSTANCE_OF " AND position = 3 AND phase = 'do'",
                  "o-happy");
    assert_non_null(strstr(out, "\"reservation\":\"r-o-happy\""));
    assert_non_null(strstr(out, "\"charge\":\"ch-o-happy\""));
    assert_non_null(strstr(out, "\"shipment\":\"sh-o-happy\""));
    free(out);
    /* The transitions are on the saga's event topic, in order. */
    char *inst = q("SELECT " INSTANCE_OF "::text", "o-happy");
    fx_consumer_t *c = fx_consumer_new(&fx, "order.events");
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    want_types_t w = {inst, "weft.saga.completed"};
    fx_consume_until(c, &msgs, &n, &cap, have_type, &w, 30000);
    /* A transition published twice would come late: read on. */
    fx_consume_until(c, &msgs, &n, &cap, never, NULL, SETTLE_MS);
    char seen[512] = "";
    size_t sl = 0;
    for (size_t i = 0; i < n; i++) {
        const char *mi = fx_header(&msgs[i], "ce_weftinstance");
        if (mi && strcmp(mi, inst) == 0)
            sl += (size_t)snprintf(seen + sl, sizeof(seen) - sl, "%s%s", sl ? " " : "",
                                   fx_header(&msgs[i], "ce_type") + 10);
    }
    assert_string_equal(seen, "started step.completed step.completed step.completed completed");
    fx_msgs_free(msgs, n);
    fx_consumer_destroy(c);
    free(inst);
    assert_once_and_published("o-happy");
}

static void test_failure_at_each_step_compensates_in_reverse(void **state)
{
    (void)state;
    place("orders", "o-stock", "{\"order\":\"o-stock\",\"qty\":500,\"amount\":25}");
    place("orders", "o-declined",
          "{\"order\":\"o-declined\",\"qty\":1,\"amount\":25,\"card\":\"4000000000000002\"}");
    place("orders", "o-nowhere",
          "{\"order\":\"o-nowhere\",\"qty\":1,\"amount\":25,\"address\":\"nowhere\"}");
    assert_final("o-stock", "aborted", "started step[1/do] step.failed aborted");
    assert_final("o-declined", "aborted",
                 "started step[1/do] step.completed step[2/do] step.failed compensating "
                 "step[1/compensate] step.compensated aborted");
    assert_final("o-nowhere", "aborted",
                 "started step[1/do] step.completed step[2/do] step.completed step[3/do] "
                 "step.failed compensating step[2/compensate] step.compensated "
                 "step[1/compensate] step.compensated aborted");
    /* Each compensation ran once: one ledger row, one attempt. */
    char *att = q("SELECT string_agg(r.position || ':' || l.attempts, ',' ORDER BY r.position)"
                  " FROM weft.saga_step_runs r JOIN weft.saga_events e"
                  "   ON e.instance = r.instance AND e.step = r.position AND e.phase = r.phase"
                  "  AND e.type = 'weft.saga.step'"
                  " JOIN weft.ledger l ON l.key = 'ce:/weft/sagas/order' || chr(31) || e.id"
                  " WHERE r.instance = " INSTANCE_OF " AND r.phase = 'compensate'",
                  "o-nowhere");
    assert_string_equal(att, "1:1,2:1");
    free(att);
    assert_once_and_published("o-nowhere");
}

static void test_failing_compensation_ends_stuck(void **state)
{
    (void)state;
    place("orders", "o-stuck",
          "{\"order\":\"o-stuck\",\"qty\":1,\"amount\":25,\"card\":\"4000000000000341\","
          "\"address\":\"nowhere\"}");
    assert_final("o-stuck", "stuck",
                 "started step[1/do] step.completed step[2/do] step.completed step[3/do] "
                 "step.failed compensating step[2/compensate] step.failed stuck");
    /* The compensation's event is a dead letter, never silent. */
    char *dl = q("SELECT count(*) FROM weft.dead_letters d JOIN weft.saga_events e"
                 "   ON d.key = 'ce:/weft/sagas/order' || chr(31) || e.id"
                 " WHERE e.instance = " INSTANCE_OF " AND e.phase = 'compensate'",
                 "o-stuck");
    assert_string_equal(dl, "1");
    free(dl);
    /* It was retried first: max_attempts of the step is 2. */
    char *att = q("SELECT l.attempts FROM weft.ledger l JOIN weft.saga_events e"
                  "   ON l.key = 'ce:/weft/sagas/order' || chr(31) || e.id"
                  " WHERE e.instance = " INSTANCE_OF " AND e.phase = 'compensate'",
                  "o-stuck");
    assert_string_equal(att, "2");
    free(att);
    char log[700];
    snprintf(log, sizeof(log), "grep -q 'saga stuck' '%s/run.log'", fx.state_dir);
    assert_int_equal(system(log), 0);
}

static void test_replayed_start_starts_nothing_new(void **state)
{
    (void)state;
    const char *order = "{\"order\":\"o-twice\",\"qty\":1,\"amount\":25}";
    place("orders", "o-twice", order);
    assert_final("o-twice", "completed",
                 "started step[1/do] step.completed step[2/do] step.completed step[3/do] "
                 "step.completed completed");
    place("orders", "o-twice", order); /* the same CloudEvent again */
    /* Give the copy time to be processed; nothing may change. */
    usleep(3000 * 1000);
    char *n = q("SELECT count(*) FROM weft.saga_instances"
                " WHERE split_part(start_key, chr(31), 2) = '%s'",
                "o-twice");
    assert_string_equal(n, "1");
    free(n);
    char *runs = q("SELECT count(*) FROM weft.saga_step_runs WHERE instance = " INSTANCE_OF,
                   "o-twice");
    assert_string_equal(runs, "3");
    free(runs);
}

/* Waits until the instance's step (position/phase) is running. */
static void wait_running(const char *id, int position, const char *phase)
{
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.saga_step_runs WHERE instance = " INSTANCE_OF
             " AND position = %d AND phase = '%s' AND status = 'running'",
             id, position, phase);
    uint64_t end = fx_now_ms() + 30000;
    while (fx_sql_long(&fx, sql) != 1 && fx_now_ms() < end)
        usleep(50 * 1000);
    assert_int_equal(fx_sql_long(&fx, sql), 1);
}

static void test_kill9_during_a_step_then_restart(void **state)
{
    (void)state;
    place("orders", "o-crash",
          "{\"order\":\"o-crash\",\"qty\":1,\"amount\":25,\"sleep_ms\":1500,"
          "\"sleep_in\":\"charge_payment\"}");
    wait_running("o-crash", 2, "do");
    usleep(300 * 1000); /* charge_payment is sleeping now */
    fx_run_kill9(run_pid);
    run_pid = fx_run_start(&fx, "run-2.log", WEFT_SET);
    assert_true(run_pid > 0);
    assert_final("o-crash", "completed",
                 "started step[1/do] step.completed step[2/do] step.completed step[3/do] "
                 "step.completed completed");
    assert_once_and_published("o-crash");
}

static void test_kill9_during_a_compensation_then_restart(void **state)
{
    (void)state;
    place("orders", "o-crash-comp",
          "{\"order\":\"o-crash-comp\",\"qty\":1,\"amount\":25,\"address\":\"nowhere\","
          "\"sleep_ms\":1500,\"sleep_in\":\"refund_payment\"}");
    wait_running("o-crash-comp", 2, "compensate");
    usleep(300 * 1000);
    fx_run_kill9(run_pid);
    run_pid = fx_run_start(&fx, "run-3.log", WEFT_SET);
    assert_true(run_pid > 0);
    assert_final("o-crash-comp", "aborted",
                 "started step[1/do] step.completed step[2/do] step.completed step[3/do] "
                 "step.failed compensating step[2/compensate] step.compensated "
                 "step[1/compensate] step.compensated aborted");
    assert_once_and_published("o-crash-comp");
}

static void test_deadline_fails_and_compensates(void **state)
{
    (void)state;
    /* quick-order's deadline is 1.5 s; charging takes 3 s. */
    place("quick.orders", "q-slow",
          "{\"order\":\"q-slow\",\"qty\":1,\"amount\":25,\"sleep_ms\":3000,"
          "\"sleep_in\":\"charge_payment\"}");
    assert_final("q-slow", "aborted",
                 "started step[1/do] step.completed step[2/do] step.failed compensating "
                 "step[1/compensate] step.compensated aborted");
    char *r = q("SELECT convert_from(data, 'UTF8')::jsonb->>'reason' FROM weft.saga_events"
                " WHERE instance = " INSTANCE_OF " AND type = 'weft.saga.step.failed'",
                "q-slow");
    assert_string_equal(r, "deadline");
    free(r);
    /* The charge finishes late: kept, nothing published for it. */
    uint64_t end = fx_now_ms() + 20000;
    char *late = NULL;
    for (;;) {
        late = q("SELECT status FROM weft.saga_step_runs WHERE instance = " INSTANCE_OF
                 " AND position = 2 AND phase = 'do'",
                 "q-slow");
        if (strcmp(late, "late") == 0 || fx_now_ms() > end)
            break;
        free(late);
        usleep(100 * 1000);
    }
    assert_string_equal(late, "late");
    free(late);
}

/* A step event that names no instance (forged, or from a broken
 * producer) runs nothing and is dead-lettered with its reason. */
static void test_malformed_step_event_is_dead_lettered(void **state)
{
    (void)state;
    const char *hdrs[] = {"ce_weftsaga=order", "ce_weftstep=1", "ce_weftphase=do", NULL};
    assert_int_equal(fx_produce(prod, "order.steps", "x", "forged-1", "weft.saga.step",
                                "{\"order\":\"forged\"}", hdrs),
                     0);
    assert_int_equal(fx_producer_flush(prod), 0);
    const char *sql = "SELECT count(*) FROM weft.dead_letters WHERE trigger = 'saga:order:1:do'"
                      " AND reason = 'malformed' AND key LIKE '%forged-1'";
    uint64_t until = fx_now_ms() + 60000;
    while (fx_sql_long(&fx, sql) < 1 && fx_now_ms() < until)
        usleep(100 * 1000);
    assert_int_equal(fx_sql_long(&fx, sql), 1);
    /* It moved no saga: no step run records it. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.saga_step_runs"
                                      " WHERE convert_from(input, 'UTF8') LIKE '%forged%'"),
                     0);
}

/* The dispatcher's transition of a saga, waiting for a row lock. */
#define TRANSITION_WAITING                                                                         \
    "FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%saga_transitions%'"

static int have_any(const fx_msg_t *msgs, size_t n, void *ctx)
{
    (void)msgs;
    (void)ctx;
    return n > 0;
}

/* An operator's open transaction holds a saga instance's row while its
 * step finishes. The transition waits for the lock, and only it: a plain
 * trigger's event runs meanwhile. Then the saga goes on. */
static void test_a_held_saga_holds_up_only_itself(void **state)
{
    (void)state;
    place("orders", "o-held",
          "{\"order\":\"o-held\",\"qty\":1,\"amount\":25,\"sleep_ms\":1000,"
          "\"sleep_in\":\"charge_payment\"}");
    wait_running("o-held", 2, "do");
    PGconn *hold = PQconnectdb(fx.pg);
    assert_int_equal(PQstatus(hold), CONNECTION_OK);
    PQclear(PQexec(hold, "BEGIN"));
    PGresult *r = PQexec(hold, "SELECT 1 FROM weft.saga_instances WHERE id = (SELECT id FROM"
                               " weft.saga_instances WHERE split_part(start_key, chr(31), 2) ="
                               " 'o-held') FOR UPDATE");
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(r), 1);
    PQclear(r);
    /* The charge finishes; its transition waits for the row. */
    uint64_t end = fx_now_ms() + 20000;
    while (fx_sql_long(&fx, "SELECT count(*) " TRANSITION_WAITING) == 0 && fx_now_ms() < end)
        usleep(20 * 1000);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) " TRANSITION_WAITING), 1);

    fx_consumer_t *c = fx_consumer_new(&fx, "plain.out");
    assert_non_null(c);
    assert_int_equal(fx_produce(prod, "plain.in", "p-1", "p-1", "plain", "{\"v\":\"held\"}", NULL),
                     0);
    assert_int_equal(fx_producer_flush(prod), 0);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    fx_consume_until(c, &msgs, &n, &cap, have_any, NULL, 30000);
    fx_consume_until(c, &msgs, &n, &cap, never, NULL, SETTLE_MS);
    assert_int_equal(n, 1);
    assert_string_equal(msgs[0].value, "{\"v\":\"HELD\"}");
    fx_msgs_free(msgs, n);
    fx_consumer_destroy(c);
    /* The result came while the saga was still held. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) " TRANSITION_WAITING), 1);

    r = PQexec(hold, "COMMIT");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(hold);
    assert_final("o-held", "completed",
                 "started step[1/do] step.completed step[2/do] step.completed step[3/do] "
                 "step.completed completed");
    assert_once_and_published("o-held");
}

/* Occurrences of needle in hay. */
static int occurrences(const char *hay, const char *needle)
{
    int k = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        k++;
    return k;
}

/* `weft sagas list|show` against the instances the tests above left:
 * the list filters by status, saga and time and agrees with the tables;
 * show prints one instance's steps and timeline. Runs last. */
static void test_sagas_list_and_show(void **state)
{
    (void)state;
    static char out[1 << 16];
    char *happy = q("SELECT " INSTANCE_OF "::text", "o-happy");
    char *stuck = q("SELECT " INSTANCE_OF "::text", "o-stuck");
    assert_true(strlen(happy) == 36 && strlen(stuck) == 36);
    long all = fx_sql_long(&fx, "SELECT count(*) FROM weft.saga_instances WHERE saga = 'order'");
    long n_stuck = fx_sql_long(&fx, "SELECT count(*) FROM weft.saga_instances WHERE status = "
                                    "'stuck'");
    assert_true(all >= 5);
    assert_true(n_stuck >= 1);

    const char *list[] = {"sagas", "list", "--saga", "order", "--since", "1h",
                          "--limit", "1000", "--json", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), list), 0);
    assert_true(weft_json_valid(out, strlen(out)));
    assert_int_equal(occurrences(out, "\"saga\":\"order\""), all);
    char pat[128];
    snprintf(pat, sizeof(pat), "{\"id\":\"%s\",\"saga\":\"order\",\"status\":\"completed\"",
             happy);
    assert_non_null(strstr(out, pat));

    const char *st[] = {"sagas", "list", "--status", "stuck", "--json", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), st), 0);
    assert_int_equal(occurrences(out, "\"status\":\"stuck\""), n_stuck);
    assert_int_equal(occurrences(out, "\"status\":"), n_stuck);
    assert_non_null(strstr(out, stuck));
    assert_null(strstr(out, happy));
    const char *st_text[] = {"sagas", "list", "--status", "stuck", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), st_text), 0);
    assert_non_null(strstr(out, "STATUS"));
    assert_non_null(strstr(out, stuck));
    /* Nothing started in the future. */
    const char *later[] = {"sagas", "list", "--since", "2099-01-01T00:00:00Z", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), later), 0);
    assert_non_null(strstr(out, "no saga instances"));

    const char *show[] = {"sagas", "show", happy, NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), show), 0);
    assert_non_null(strstr(out, happy));
    assert_non_null(strstr(out, "status     completed"));
    assert_non_null(strstr(out, "reserve"));
    assert_non_null(strstr(out, "charge"));
    assert_non_null(strstr(out, "ship"));
    /* Each step's input and output (cut at 60 bytes). */
    assert_non_null(strstr(out, "\"order\":\"o-happy\""));
    assert_true(occurrences(out, " in=") >= 3);
    assert_true(occurrences(out, " out=") >= 3);
    assert_non_null(strstr(out, "timeline:"));
    const char *show_json[] = {"sagas", "show", happy, "--json", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), show_json), 0);
    assert_true(weft_json_valid(out, strlen(out)));
    assert_non_null(strstr(out, "\"status\":\"completed\""));
    /* Three steps done, each once; the timeline's transitions as the
     * outbox holds them. */
    assert_int_equal(occurrences(out, "\"phase\":\"do\",\"status\":\"completed\""), 3);
    long events = fx_sql_long(&fx, "SELECT count(*) FROM weft.saga_events WHERE instance = "
                                   "(SELECT id FROM weft.saga_instances WHERE "
                                   "split_part(start_key, chr(31), 2) = 'o-happy')");
    assert_int_equal(occurrences(out, "{\"seq\":"), events);

    const char *show_stuck[] = {"sagas", "show", stuck, NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), show_stuck), 0);
    assert_non_null(strstr(out, "status     stuck (failed at step 3)"));
    assert_non_null(strstr(out, "compensate"));

    const char *unknown[] = {"sagas", "show", "00000000-0000-4000-8000-000000000000", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), unknown), 1);
    assert_non_null(strstr(out, "no saga instance"));
    const char *bad[] = {"sagas", "show", "not-a-uuid", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), bad), 2);
    free(happy);
    free(stuck);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path),
        cmocka_unit_test(test_failure_at_each_step_compensates_in_reverse),
        cmocka_unit_test(test_failing_compensation_ends_stuck),
        cmocka_unit_test(test_replayed_start_starts_nothing_new),
        cmocka_unit_test(test_kill9_during_a_step_then_restart),
        cmocka_unit_test(test_kill9_during_a_compensation_then_restart),
        cmocka_unit_test(test_deadline_fails_and_compensates),
        cmocka_unit_test(test_malformed_step_event_is_dead_lettered),
        cmocka_unit_test(test_a_held_saga_holds_up_only_itself),
        cmocka_unit_test(test_sagas_list_and_show),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
