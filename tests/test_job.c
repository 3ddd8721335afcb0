/*
 * test_job.c - the job state machine without a broker or a database:
 * admission (a duplicate follows the active job of its key), per-key
 * ordering chains of ordered triggers, backoff and jitter bounds, and what
 * each claim answer and each failed attempt makes of a job.
 *
 * Runs as a unit test. Messages finish through a recording adapter (the
 * broker interface's finish op), so the test sees when a message would be
 * acknowledged; nothing else of a broker is involved.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h"
#include "job.h"

/* ---- a dispatcher state with just the job tables ----------------------- */

static int n_finished;

static void rec_finish(weft_adapter_t *a, weft_bmsg_t *m, weft_finish_t how, int delay_ms)
{
    (void)a;
    (void)m;
    (void)how;
    (void)delay_ms;
    n_finished++;
}

static const weft_adapter_ops_t rec_ops = {.finish = rec_finish};
static weft_adapter_t rec_adapter = {.ops = &rec_ops, .name = "test"};

static dsp_t *dsp_new(void)
{
    dsp_t *d = calloc(1, sizeof(*d));
    assert_non_null(d);
    d->active_cap = 16;
    d->active = calloc(d->active_cap, sizeof(*d->active));
    d->order_tab = calloc(d->active_cap, sizeof(*d->order_tab));
    assert_non_null(d->active);
    assert_non_null(d->order_tab);
    d->cat = weft_catalog_new(); /* empty: the tests' triggers are their own */
    assert_non_null(d->cat);
    n_finished = 0;
    return d;
}

static void dsp_free(dsp_t *d)
{
    assert_null(d->all_jobs); /* every job was freed */
    weft_catalog_unref(d->cat);
    free(d->active);
    free(d->order_tab);
    free(d);
}

/* A message of `key` (the idempotency key) with Kafka message key mkey. */
static msg_t *msg_new(dsp_t *d, const char *key, const char *mkey)
{
    msg_t *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->bk = &rec_adapter;
    m->key = strdup(key);
    m->km.topic = "orders";
    m->km.partition = 0;
    m->km.key = mkey;
    m->km.key_len = strlen(mkey);
    d->inflight_msgs++;
    return m;
}

static job_t *admit(dsp_t *d, msg_t *m, weft_trigger_t *t)
{
    job_t *j = dsp_job_new(d, m, t);
    assert_non_null(j);
    dsp_job_admit(d, j);
    return j;
}

/* ---- admission ---------------------------------------------------------- */

static void test_admit_new_key_is_claimed(void **state)
{
    (void)state;
    dsp_t *d = dsp_new();
    weft_trigger_t t = {.name = "t"};
    job_t *a = admit(d, msg_new(d, "k1", "a"), &t);
    job_t *b = admit(d, msg_new(d, "k2", "a"), &t);
    assert_int_equal(d->claim_q.n, 2);
    assert_int_equal(a->state, J_CLAIM);
    assert_int_equal(b->state, J_CLAIM);
    assert_int_equal(t.inflight, 2);
    assert_ptr_equal(dsp_jq_pop(&d->claim_q), a);
    assert_ptr_equal(dsp_jq_pop(&d->claim_q), b);
    dsp_job_terminal(d, a);
    dsp_job_terminal(d, b);
    assert_int_equal(n_finished, 2);
    assert_int_equal(d->inflight_msgs, 0);
    assert_int_equal(t.inflight, 0);
    dsp_free(d);
}

static void test_admit_duplicate_follows_and_ends_with_leader(void **state)
{
    (void)state;
    dsp_t *d = dsp_new();
    weft_trigger_t t = {.name = "t"};
    job_t *a = admit(d, msg_new(d, "k1", "a"), &t);
    job_t *dup = admit(d, msg_new(d, "k1", "a"), &t);
    /* The duplicate is not claimed a second time: it follows. */
    assert_int_equal(d->claim_q.n, 1);
    assert_int_equal(dup->state, J_FOLLOW);
    assert_ptr_equal(a->followers, dup);
    /* Another generation of the same key is a different job. */
    msg_t *replay = msg_new(d, "k1", "a");
    replay->generation = 2;
    admit(d, replay, &t);
    assert_int_equal(d->claim_q.n, 2);
    assert_ptr_equal(dsp_jq_pop(&d->claim_q), a);
    job_t *g2 = dsp_jq_pop(&d->claim_q);
    /* The leader's end finishes its follower's message too. */
    dsp_job_terminal(d, a);
    assert_int_equal(n_finished, 2);
    assert_int_equal(t.inflight, 1);
    /* The key is free again: a new copy is claimed, not followed. */
    job_t *again = admit(d, msg_new(d, "k1", "a"), &t);
    assert_int_equal(again->state, J_CLAIM);
    dsp_job_terminal(d, dsp_jq_pop(&d->claim_q));
    dsp_job_terminal(d, g2);
    assert_int_equal(n_finished, 4);
    assert_int_equal(d->inflight_msgs, 0);
    dsp_free(d);
}

/* ---- ordering chains ---------------------------------------------------- */

static void test_ordered_key_waits_for_previous_event(void **state)
{
    (void)state;
    dsp_t *d = dsp_new();
    weft_trigger_t t = {.name = "t", .ordered = 1};
    job_t *a1 = admit(d, msg_new(d, "e1", "A"), &t);
    job_t *a2 = admit(d, msg_new(d, "e2", "A"), &t);
    job_t *a3 = admit(d, msg_new(d, "e3", "A"), &t);
    job_t *b1 = admit(d, msg_new(d, "e4", "B"), &t);
    /* Only the first of each message key is claimed. */
    assert_int_equal(d->claim_q.n, 2);
    assert_int_equal(a2->state, J_ORDER);
    assert_int_equal(a3->state, J_ORDER);
    assert_ptr_equal(dsp_jq_pop(&d->claim_q), a1);
    assert_ptr_equal(dsp_jq_pop(&d->claim_q), b1);
    /* Each terminal outcome lets exactly the next event of its key go. */
    dsp_job_terminal(d, a1);
    assert_int_equal(d->claim_q.n, 1);
    assert_ptr_equal(dsp_jq_pop(&d->claim_q), a2);
    assert_int_equal(a3->state, J_ORDER);
    dsp_job_terminal(d, b1);
    assert_int_equal(d->claim_q.n, 0);
    dsp_job_terminal(d, a2);
    assert_ptr_equal(dsp_jq_pop(&d->claim_q), a3);
    dsp_job_terminal(d, a3);
    assert_int_equal(d->claim_q.n, 0);
    /* The chain is gone: the next event of A is claimed at once. */
    job_t *a4 = admit(d, msg_new(d, "e5", "A"), &t);
    assert_int_equal(a4->state, J_CLAIM);
    for (size_t i = 0; i < d->active_cap; i++)
        if (d->order_tab[i])
            assert_ptr_equal(d->order_tab[i]->tail, a4);
    dsp_job_terminal(d, dsp_jq_pop(&d->claim_q));
    for (size_t i = 0; i < d->active_cap; i++)
        assert_null(d->order_tab[i]);
    assert_int_equal(n_finished, 5);
    dsp_free(d);
}

static void test_unordered_trigger_does_not_chain(void **state)
{
    (void)state;
    dsp_t *d = dsp_new();
    weft_trigger_t t = {.name = "t", .ordered = 0};
    admit(d, msg_new(d, "e1", "A"), &t);
    admit(d, msg_new(d, "e2", "A"), &t);
    assert_int_equal(d->claim_q.n, 2);
    dsp_job_terminal(d, dsp_jq_pop(&d->claim_q));
    dsp_job_terminal(d, dsp_jq_pop(&d->claim_q));
    dsp_free(d);
}

/* ---- backoff and jitter ------------------------------------------------- */

static void test_backoff_grows_and_caps(void **state)
{
    (void)state;
    /* No jitter: exactly initial * multiplier^(attempts-1), capped. */
    assert_int_equal(weft_job_backoff_ms(100, 2.0, 1000, 0.0, 1, 0.5), 100);
    assert_int_equal(weft_job_backoff_ms(100, 2.0, 1000, 0.0, 2, 0.5), 200);
    assert_int_equal(weft_job_backoff_ms(100, 2.0, 1000, 0.0, 4, 0.5), 800);
    assert_int_equal(weft_job_backoff_ms(100, 2.0, 1000, 0.0, 5, 0.5), 1000);
    assert_int_equal(weft_job_backoff_ms(100, 2.0, 1000, 0.0, 1000, 0.5), 1000);
}

static void test_backoff_jitter_bounds(void **state)
{
    (void)state;
    /* The delay lies in [b * (1 - jitter), b] whatever is drawn. */
    assert_int_equal(weft_job_backoff_ms(1000, 2.0, 60000, 0.25, 1, 0.0), 1000);
    assert_int_equal(weft_job_backoff_ms(1000, 2.0, 60000, 0.25, 1, 1.0), 750);
    assert_int_equal(weft_job_backoff_ms(1000, 2.0, 60000, 0.25, 3, 1.0), 3000);
    for (int i = 0; i <= 100; i++) {
        int ms = weft_job_backoff_ms(1000, 2.0, 60000, 0.25, 3, i / 100.0);
        assert_in_range(ms, 3000, 4000);
    }
    /* The trigger's form draws the jitter itself: still within bounds. */
    weft_trigger_t t = {.backoff_initial_ms = 1000,
                        .backoff_multiplier = 2.0,
                        .backoff_max_ms = 5000,
                        .backoff_jitter = 0.5};
    for (int i = 0; i < 1000; i++)
        assert_in_range(dsp_backoff_ms(&t, 10), 2500, 5000);
}

/* ---- claim answers and attempts ---------------------------------------- */

static weft_job_next_t after(weft_job_claim_t c, const char **reason)
{
    if (c.max_attempts == 0)
        c.max_attempts = 3;
    if (c.max_takeovers == 0)
        c.max_takeovers = 10;
    return weft_job_after_claim(&c, reason);
}

static void test_claim_run_and_its_refusals(void **state)
{
    (void)state;
    const char *r;
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN}, &r), WEFT_JOB_RUN);
    assert_null(r);
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .bad_input = 1}, &r),
                     WEFT_JOB_FAIL);
    assert_null(r); /* the message's own reason (malformed, oversized) */
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .expired = 1}, &r),
                     WEFT_JOB_FAIL);
    assert_string_equal(r, "expired");
    /* attempts counts the runs recorded before: after two of three the
     * third runs; after three (max_attempts lowered since) none does */
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .attempts = 2}, &r),
                     WEFT_JOB_RUN);
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .attempts = 3}, &r),
                     WEFT_JOB_FAIL);
    assert_string_equal(r, "max_attempts");
    /* Takeovers from owners that died holding the key are bounded on
     * their own: up to max_takeovers the event runs (however many
     * dispatchers died during a backlog), one more is dead-lettered. */
    assert_int_equal(
        after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .takeovers = 10, .max_takeovers = 10}, &r),
        WEFT_JOB_RUN);
    assert_int_equal(
        after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .takeovers = 11, .max_takeovers = 10}, &r),
        WEFT_JOB_FAIL);
    assert_string_equal(r, "abandoned_claims");
    /* Exhausted attempts are named first. */
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN,
                                              .attempts = 3,
                                              .takeovers = 11,
                                              .max_takeovers = 10},
                           &r),
                     WEFT_JOB_FAIL);
    assert_string_equal(r, "max_attempts");
    /* bad input wins over everything; expiry over exhausted attempts */
    assert_int_equal(
        after(
            (weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .bad_input = 1, .expired = 1, .attempts = 9},
            &r),
        WEFT_JOB_FAIL);
    assert_null(r);
    assert_int_equal(
        after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .expired = 1, .attempts = 9}, &r),
        WEFT_JOB_FAIL);
    assert_string_equal(r, "expired");
}

static void test_claim_sagas(void **state)
{
    (void)state;
    const char *r;
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .saga_start = 1}, &r),
                     WEFT_JOB_START_SAGA);
    assert_int_equal(
        after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .saga_step = 1, .instance_valid = 1}, &r),
        WEFT_JOB_RUN);
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_RUN, .saga_step = 1}, &r),
                     WEFT_JOB_FAIL);
    assert_string_equal(r, "malformed");
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_DROPPED, .saga_step = 1}, &r),
                     WEFT_JOB_DROP_STEP);
}

static void test_claim_terminal_answers(void **state)
{
    (void)state;
    const char *r;
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_COMPLETED}, &r), WEFT_JOB_REEMIT);
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_DROPPED}, &r), WEFT_JOB_DROP);
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_DEAD}, &r),
                     WEFT_JOB_REPUBLISH_DEAD);
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_BUSY}, &r), WEFT_JOB_WAIT);
    /* A done key is never run again, however its attempts stand. */
    assert_int_equal(after((weft_job_claim_t){.kind = WEFT_CLAIM_COMPLETED, .attempts = 9}, &r),
                     WEFT_JOB_REEMIT);
}

static void test_attempt_outcomes(void **state)
{
    (void)state;
    assert_int_equal(weft_job_after_attempt(WEFT_REC_RETRY, 1, 3), WEFT_REC_RETRY);
    assert_int_equal(weft_job_after_attempt(WEFT_REC_RETRY, 2, 3), WEFT_REC_RETRY);
    assert_int_equal(weft_job_after_attempt(WEFT_REC_RETRY, 3, 3), WEFT_REC_DEAD);
    assert_int_equal(weft_job_after_attempt(WEFT_REC_COMPLETED, 3, 3), WEFT_REC_COMPLETED);
    assert_int_equal(weft_job_after_attempt(WEFT_REC_DROPPED, 9, 3), WEFT_REC_DROPPED);
    assert_int_equal(weft_job_after_attempt(WEFT_REC_DEAD, 1, 3), WEFT_REC_DEAD);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admit_new_key_is_claimed),
        cmocka_unit_test(test_admit_duplicate_follows_and_ends_with_leader),
        cmocka_unit_test(test_ordered_key_waits_for_previous_event),
        cmocka_unit_test(test_unordered_trigger_does_not_chain),
        cmocka_unit_test(test_backoff_grows_and_caps),
        cmocka_unit_test(test_backoff_jitter_bounds),
        cmocka_unit_test(test_claim_run_and_its_refusals),
        cmocka_unit_test(test_claim_sagas),
        cmocka_unit_test(test_attempt_outcomes),
        cmocka_unit_test(test_claim_terminal_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
