/*
 * test_saga.c - the saga state machine (migrations/0007_sagas.sql through
 * saga.c) against a real PostgreSQL: every transition, its events and
 * their order, compensations in reverse order exactly once, idempotent
 * repeats, the deadline, stuck compensations and the outbox.
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
#include "saga.h"

static fx_t fx;
static PGconn *pg;

static int setup(void **state)
{
    (void)state;
    if (fx_up_migrated(&fx, "s.in:1") != 0)
        return -1;
    pg = PQconnectdb(fx.pg);
    if (PQstatus(pg) != CONNECTION_OK)
        return -1;
    /* The order saga of the README: reserve -> charge -> ship, with
     * compensations for the first two. */
    PGresult *r = PQexec(
        pg, "INSERT INTO weft.functions (name, entry) VALUES ('reserve', 'x.so'),"
            " ('release', 'x.so'), ('charge', 'x.so'), ('refund', 'x.so'), ('ship', 'x.so');"
            "INSERT INTO weft.sagas (name, step_topic, event_topic, dead_letter_topic,"
            "                        deadline_ms)"
            " VALUES ('order', 'order.steps', 'order.events', 'order.dlq', 60000),"
            "        ('quick', 'quick.steps', 'quick.events', 'quick.dlq', 200);"
            "INSERT INTO weft.saga_steps (saga, position, name, function, compensation)"
            " VALUES ('order', 1, 'reserve', 'reserve', 'release'),"
            "        ('order', 2, 'charge', 'charge', 'refund'),"
            "        ('order', 3, 'ship', 'ship', NULL),"
            "        ('quick', 1, 'reserve', 'reserve', 'release'),"
            "        ('quick', 2, 'charge', 'charge', NULL);");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(pg);
    fx_down(&fx);
    return 0;
}

/* "type[step/phase]" of each event, space-separated, for compact asserts. */
static const char *shape(const weft_saga_events_t *e)
{
    static char buf[1024];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < e->n; i++) {
        const char *t = e->ev[i].type + (strncmp(e->ev[i].type, "weft.saga.", 10) == 0 ? 10 : 0);
        if (e->ev[i].phase)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s[%d/%s]", i ? " " : "", t,
                                  e->ev[i].step, e->ev[i].phase);
        else
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? " " : "", t);
    }
    return buf;
}

static void start(const char *saga, const char *key, const char *data, char inst[37],
                  weft_saga_events_t *out)
{
    char err[512];
    weft_saga_instance_id(inst, "t-order", 0, key);
    memset(out, 0, sizeof(*out));
    assert_int_equal(weft_saga_start(pg, inst, saga, "t-order", key, data, strlen(data),
                                     "application/json", out, err, sizeof(err)),
                     0);
}

static void done(const char *inst, int step, const char *phase, int ok, const char *output,
                 weft_saga_events_t *out)
{
    char err[512];
    weft_saga_outcome_t o = {.instance = inst,
                             .step = step,
                             .phase = phase,
                             .ok = ok,
                             .output = output,
                             .output_len = output ? strlen(output) : 0,
                             .output_type = output ? "application/json" : NULL,
                             .reason = ok ? NULL : "failed",
                             .error = ok ? NULL : "declined",
                             .attempts = 3};
    memset(out, 0, sizeof(*out));
    int rc = weft_saga_step_done(pg, &o, out, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
}

static char *sql1(const char *fmt, ...)
{
    char q[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof(q), fmt, ap);
    va_end(ap);
    char *v = fx_sql(&fx, q);
    assert_non_null(v);
    return v;
}

static void assert_status(const char *inst, const char *want)
{
    char *s = sql1("SELECT status FROM weft.saga_instances WHERE id = '%s'", inst);
    assert_string_equal(s, want);
    free(s);
}

static void test_happy_path_passes_outputs_along(void **state)
{
    (void)state;
    char inst[37];
    weft_saga_events_t e;
    start("order", "o-1", "{\"order\":1}", inst, &e);
    assert_string_equal(shape(&e), "started step[1/do]");
    assert_string_equal(e.ev[0].topic, "order.events");
    assert_string_equal(e.ev[1].topic, "order.steps");
    assert_memory_equal(e.ev[1].data, "{\"order\":1}", e.ev[1].data_len);
    weft_saga_events_free(&e);

    done(inst, 1, "do", 1, "{\"reserved\":true}", &e);
    assert_string_equal(shape(&e), "step.completed step[2/do]");
    /* The output of step 1 is the input of step 2. */
    assert_int_equal(e.ev[1].data_len, strlen("{\"reserved\":true}"));
    assert_memory_equal(e.ev[1].data, "{\"reserved\":true}", e.ev[1].data_len);
    weft_saga_events_free(&e);

    done(inst, 2, "do", 1, "{\"charged\":10}", &e);
    assert_string_equal(shape(&e), "step.completed step[3/do]");
    weft_saga_events_free(&e);
    done(inst, 3, "do", 1, "{\"shipped\":true}", &e);
    assert_string_equal(shape(&e), "step.completed completed");
    assert_non_null(strstr((char *)e.ev[1].data, "\"shipped\": true"));
    weft_saga_events_free(&e);
    assert_status(inst, "completed");
}

static void test_repeats_return_the_same_events(void **state)
{
    (void)state;
    char inst[37];
    weft_saga_events_t a, b;
    start("order", "o-2", "{\"order\":2}", inst, &a);
    /* A redelivered or replayed start event: same instance, same events. */
    start("order", "o-2", "{\"order\":2}", inst, &b);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++)
        assert_string_equal(a.ev[i].id, b.ev[i].id);
    char *n = sql1("SELECT count(*) FROM weft.saga_instances WHERE start_key = 'o-2'");
    assert_string_equal(n, "1");
    free(n);
    weft_saga_events_free(&a);
    weft_saga_events_free(&b);

    /* A redelivered step result: the saga moves once. */
    done(inst, 1, "do", 1, "{\"r\":1}", &a);
    done(inst, 1, "do", 1, "{\"r\":1}", &b);
    assert_string_equal(shape(&a), "step.completed step[2/do]");
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++)
        assert_string_equal(a.ev[i].id, b.ev[i].id);
    n = sql1("SELECT count(*) FROM weft.saga_step_runs WHERE instance = '%s'", inst);
    assert_string_equal(n, "2");
    free(n);
    weft_saga_events_free(&a);
    weft_saga_events_free(&b);
}

static void test_failure_at_last_step_compensates_in_reverse_once(void **state)
{
    (void)state;
    char inst[37];
    weft_saga_events_t e;
    start("order", "o-3", "{\"order\":3}", inst, &e);
    weft_saga_events_free(&e);
    done(inst, 1, "do", 1, "{\"reserved\":3}", &e);
    weft_saga_events_free(&e);
    done(inst, 2, "do", 1, "{\"charged\":3}", &e);
    weft_saga_events_free(&e);
    done(inst, 3, "do", 0, NULL, &e);
    assert_string_equal(shape(&e), "step.failed compensating step[2/compensate]");
    /* A compensation gets its step's input and output. */
    const char *cin = (const char *)e.ev[2].data;
    assert_non_null(strstr(cin, "\"input\": {\"reserved\": 3}"));
    assert_non_null(strstr(cin, "\"output\": {\"charged\": 3}"));
    weft_saga_events_free(&e);
    assert_status(inst, "compensating");

    done(inst, 2, "compensate", 1, NULL, &e);
    assert_string_equal(shape(&e), "step.compensated step[1/compensate]");
    weft_saga_events_free(&e);
    done(inst, 2, "compensate", 1, NULL, &e); /* redelivered: nothing new */
    assert_string_equal(shape(&e), "step.compensated step[1/compensate]");
    weft_saga_events_free(&e);
    done(inst, 1, "compensate", 1, NULL, &e);
    assert_string_equal(shape(&e), "step.compensated aborted");
    weft_saga_events_free(&e);
    assert_status(inst, "aborted");
    char *order = sql1("SELECT string_agg(step::text, ',' ORDER BY seq) FROM"
                       " weft.saga_events WHERE instance = '%s' AND type = 'weft.saga.step'"
                       " AND phase = 'compensate'",
                       inst);
    assert_string_equal(order, "2,1");
    free(order);
}

static void test_failure_at_each_step(void **state)
{
    (void)state;
    char inst[37];
    weft_saga_events_t e;
    /* Step 1: nothing completed, nothing to undo. */
    start("order", "o-4", "{}", inst, &e);
    weft_saga_events_free(&e);
    done(inst, 1, "do", 0, NULL, &e);
    assert_string_equal(shape(&e), "step.failed aborted");
    weft_saga_events_free(&e);
    assert_status(inst, "aborted");
    /* Step 2: step 1 is undone. */
    start("order", "o-5", "{}", inst, &e);
    weft_saga_events_free(&e);
    done(inst, 1, "do", 1, "{}", &e);
    weft_saga_events_free(&e);
    done(inst, 2, "do", 0, NULL, &e);
    assert_string_equal(shape(&e), "step.failed compensating step[1/compensate]");
    weft_saga_events_free(&e);
    done(inst, 1, "compensate", 1, NULL, &e);
    assert_string_equal(shape(&e), "step.compensated aborted");
    weft_saga_events_free(&e);
}

static void test_failing_compensation_ends_stuck(void **state)
{
    (void)state;
    char inst[37];
    weft_saga_events_t e;
    start("order", "o-6", "{}", inst, &e);
    weft_saga_events_free(&e);
    done(inst, 1, "do", 1, "{}", &e);
    weft_saga_events_free(&e);
    done(inst, 2, "do", 0, NULL, &e);
    weft_saga_events_free(&e);
    done(inst, 1, "compensate", 0, NULL, &e);
    assert_string_equal(shape(&e), "step.failed stuck");
    weft_saga_events_free(&e);
    assert_status(inst, "stuck");
}

static void test_deadline_fails_and_compensates(void **state)
{
    (void)state;
    char inst[37], err[512];
    weft_saga_events_t e;
    start("quick", "q-1", "{}", inst, &e);
    weft_saga_events_free(&e);
    done(inst, 1, "do", 1, "{\"r\":1}", &e);
    weft_saga_events_free(&e);
    usleep(400 * 1000); /* deadline_ms is 200 */
    memset(&e, 0, sizeof(e));
    assert_int_equal(weft_saga_expire(pg, 100, &e, err, sizeof(err)), 0);
    assert_string_equal(shape(&e), "step.failed compensating step[1/compensate]");
    assert_non_null(strstr((char *)e.ev[0].data, "\"reason\": \"deadline\""));
    weft_saga_events_free(&e);
    /* The step that was running finishes late: kept, publishes nothing. */
    done(inst, 2, "do", 1, "{\"late\":true}", &e);
    assert_int_equal(e.n, 0);
    char *s = sql1("SELECT status FROM weft.saga_step_runs WHERE instance = '%s' AND"
                   " position = 2 AND phase = 'do'",
                   inst);
    assert_string_equal(s, "late");
    free(s);
    /* Expiry events are re-published until marked published. */
    usleep(50 * 1000);
    memset(&e, 0, sizeof(e));
    assert_int_equal(weft_saga_unpublished(pg, 10, 100, &e, err, sizeof(err)), 0);
    assert_int_equal(e.n, 3);
    assert_int_equal(weft_saga_published(pg, &e, err, sizeof(err)), 0);
    weft_saga_events_free(&e);
    memset(&e, 0, sizeof(e));
    assert_int_equal(weft_saga_unpublished(pg, 10, 100, &e, err, sizeof(err)), 0);
    assert_int_equal(e.n, 0);
    /* Nothing else is past its deadline. */
    assert_int_equal(weft_saga_expire(pg, 100, &e, err, sizeof(err)), 0);
    assert_int_equal(e.n, 0);
    done(inst, 1, "compensate", 1, NULL, &e);
    assert_string_equal(shape(&e), "step.compensated aborted");
    weft_saga_events_free(&e);
}

/* Refusals (-2) are told apart from PostgreSQL failures (-1): the
 * dispatcher retries the latter and never the former. */
static void test_unknown_saga_and_instance_are_refused(void **state)
{
    (void)state;
    char err[512];
    weft_saga_events_t e = {0};
    assert_int_equal(weft_saga_start(pg, "00000000-0000-4000-8000-000000000001", "nope", "t",
                                     "k", "{}", 2, "application/json", &e, err, sizeof(err)),
                     -2);
    assert_non_null(strstr(err, "unknown saga"));
    weft_saga_outcome_t o = {.instance = "00000000-0000-4000-8000-000000000002",
                             .step = 1,
                             .phase = "do",
                             .ok = 1};
    assert_int_equal(weft_saga_step_done(pg, &o, &e, err, sizeof(err)), -2);
    assert_non_null(strstr(err, "unknown saga instance"));
    assert_int_equal(e.n, 0);
}

/* Sends reqs as one batch on pg and reads its answer into res. */
static void batch(const weft_saga_req_t *reqs, size_t n, weft_saga_res_t *res)
{
    char err[512];
    assert_int_equal(weft_saga_batch_send(pg, reqs, n, err, sizeof(err)), 0);
    PGresult *r = PQgetResult(pg);
    int rc = weft_saga_batch_answer(r, res, n, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, 0);
    PQclear(r);
    while ((r = PQgetResult(pg)) != NULL)
        PQclear(r);
}

/* The dispatcher's batches: one statement, each transition answered on
 * its own. A refusal (-2) and a failure (-1) leave the others applied;
 * bytes and text travel exactly; a transition asked for again alone
 * returns the events the batch returned. */
static void test_a_batch_answers_each_transition_on_its_own(void **state)
{
    (void)state;
    char a[37], b[37], c[37], d[37];
    weft_saga_instance_id(a, "t-order", 0, "batch-a");
    weft_saga_instance_id(b, "t-order", 0, "batch-b");
    weft_saga_instance_id(d, "t-order", 0, "batch-d");
    weft_saga_events_t e;
    start("order", "batch-c", "{\"n\":3}", c, &e);
    weft_saga_events_free(&e);
    static const char output[] = "{\"q\":\"a \\\"quoted\\\" \\\\ word\"}\0\xff";
    const weft_saga_req_t reqs[] = {
        {.instance = a,
         .saga = "order",
         .trigger = "t-order",
         .key = "batch-a",
         .data = "{\"n\":1}",
         .len = 7,
         .content_type = "application/json"},
        {.instance = "00000000-0000-4000-8000-000000000003",
         .saga = "nope",
         .trigger = "t-order",
         .key = "batch-x",
         .data = "{}",
         .len = 2},
        {.done = {.instance = "00000000-0000-4000-8000-000000000004",
                  .step = 1,
                  .phase = "do",
                  .ok = 1}},
        {.instance = b, .saga = "order", .trigger = "t-order", .key = "batch-b"},
        {.done = {.instance = c,
                  .step = 1,
                  .phase = "do",
                  .ok = 1,
                  .output = output,
                  .output_len = sizeof(output) - 1,
                  .output_type = "application/octet-stream",
                  .reason = "it's \"fine\"",
                  .error = "bad \xc3 byte",
                  .attempts = 2}},
        {.instance = d, .saga = "order", .trigger = NULL, .key = "batch-d"},
    };
    enum { N = sizeof(reqs) / sizeof(reqs[0]) };
    weft_saga_res_t res[N];
    batch(reqs, N, res);
    assert_int_equal(res[0].rc, 0);
    assert_string_equal(shape(&res[0].ev), "started step[1/do]");
    assert_int_equal(res[1].rc, -2);
    assert_non_null(strstr(res[1].error, "unknown saga nope"));
    assert_int_equal(res[2].rc, -2);
    assert_non_null(strstr(res[2].error, "unknown saga instance"));
    assert_int_equal(res[3].rc, 0);
    assert_string_equal(shape(&res[3].ev), "started step[1/do]");
    assert_null(res[3].ev.ev[1].data); /* a start without data: step 1 gets none */
    assert_int_equal(res[4].rc, 0);
    assert_string_equal(shape(&res[4].ev), "step.completed step[2/do]");
    /* The output is step 2's input, byte for byte. */
    assert_int_equal(res[4].ev.ev[1].data_len, sizeof(output) - 1);
    assert_memory_equal(res[4].ev.ev[1].data, output, sizeof(output) - 1);
    assert_string_equal(res[4].ev.ev[1].content_type, "application/octet-stream");
    /* Not a refusal: a NOT NULL column (retried by the dispatcher). */
    assert_int_equal(res[5].rc, -1);
    assert_non_null(res[5].error);
    assert_status(a, "running");
    assert_status(c, "running");
    char *n = sql1("SELECT count(*) FROM weft.saga_instances WHERE id = '%s'", d);
    assert_string_equal(n, "0");
    free(n);
    /* Asked again alone, the same transition returns the same events. */
    weft_saga_events_t again;
    done(c, 1, "do", 1, "{}", &again);
    assert_int_equal(again.n, res[4].ev.n);
    for (size_t i = 0; i < again.n; i++)
        assert_string_equal(again.ev[i].id, res[4].ev.ev[i].id);
    weft_saga_events_free(&again);
    for (size_t i = 0; i < N; i++)
        weft_saga_res_clear(&res[i]);
    /* An empty batch is a statement that answers nothing. */
    batch(NULL, 0, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path_passes_outputs_along),
        cmocka_unit_test(test_repeats_return_the_same_events),
        cmocka_unit_test(test_failure_at_last_step_compensates_in_reverse_once),
        cmocka_unit_test(test_failure_at_each_step),
        cmocka_unit_test(test_failing_compensation_ends_stuck),
        cmocka_unit_test(test_deadline_fails_and_compensates),
        cmocka_unit_test(test_unknown_saga_and_instance_are_refused),
        cmocka_unit_test(test_a_batch_answers_each_transition_on_its_own),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
