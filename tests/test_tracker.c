/*
 * test_tracker.c - per-partition offset tracking (tracker.c): the
 * committable position only advances over the contiguous finished prefix
 * and is one past the last offset of that prefix, whatever the completion
 * order, across gaps in offsets and past the initial 64-slot ring.
 *
 * The randomized tests check every step against a straightforward model
 * (an array of offsets and done flags), with a fixed seed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "tracker.h"

static int tr_setup(void **state)
{
    *state = weft_tracker_new();
    return *state ? 0 : -1;
}

static int tr_teardown(void **state)
{
    weft_tracker_destroy(*state);
    return 0;
}

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic across libcs. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void test_empty(void **state)
{
    weft_tracker_t *tr = *state;
    assert_int_equal(weft_tracker_pending(tr), 0);
    assert_true(weft_tracker_position(tr) == -1);
    weft_tracker_destroy(NULL);
}

static void test_in_order(void **state)
{
    weft_tracker_t *tr = *state;
    int64_t s[5];
    for (int i = 0; i < 5; i++) {
        s[i] = weft_tracker_add(tr, 100 + i);
        assert_true(s[i] >= 0);
    }
    assert_int_equal(weft_tracker_pending(tr), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(weft_tracker_done(tr, s[i]), 100 + i + 1);
        assert_int_equal(weft_tracker_position(tr), 100 + i + 1);
        assert_int_equal(weft_tracker_pending(tr), (size_t)(4 - i));
    }
}

static void test_out_of_order(void **state)
{
    weft_tracker_t *tr = *state;
    int64_t s0 = weft_tracker_add(tr, 0);
    int64_t s1 = weft_tracker_add(tr, 1);
    int64_t s2 = weft_tracker_add(tr, 2);
    int64_t s3 = weft_tracker_add(tr, 3);
    assert_true(s0 >= 0 && s1 >= 0 && s2 >= 0 && s3 >= 0);

    /* Later messages finish first: the position may not pass offset 0. */
    assert_true(weft_tracker_done(tr, s2) == -1);
    assert_true(weft_tracker_position(tr) == -1);
    assert_true(weft_tracker_done(tr, s1) == -1);
    assert_true(weft_tracker_position(tr) == -1);
    /* The head finishes: position jumps over everything finished. */
    assert_int_equal(weft_tracker_done(tr, s0), 3);
    assert_int_equal(weft_tracker_position(tr), 3);
    assert_int_equal(weft_tracker_pending(tr), 1);
    assert_int_equal(weft_tracker_done(tr, s3), 4);
    assert_int_equal(weft_tracker_pending(tr), 0);
}

/* Compaction and transaction markers leave holes in offsets: the position
 * is one past the last finished offset, not past an offset never seen. */
static void test_gaps_in_offsets(void **state)
{
    weft_tracker_t *tr = *state;
    int64_t a = weft_tracker_add(tr, 10);
    int64_t b = weft_tracker_add(tr, 20);
    int64_t c = weft_tracker_add(tr, 35);
    assert_true(weft_tracker_done(tr, b) == -1);
    assert_int_equal(weft_tracker_done(tr, a), 21);
    assert_int_equal(weft_tracker_position(tr), 21);
    assert_int_equal(weft_tracker_done(tr, c), 36);
    /* The first offset need not be 0, and may be large. */
    int64_t d = weft_tracker_add(tr, INT64_C(5000000000));
    assert_true(d >= 0);
    assert_true(weft_tracker_done(tr, d) == INT64_C(5000000001));
}

static void test_non_increasing_offset_rejected(void **state)
{
    weft_tracker_t *tr = *state;
    assert_true(weft_tracker_add(tr, -1) == -1);
    int64_t s5 = weft_tracker_add(tr, 5);
    assert_true(s5 >= 0);
    assert_true(weft_tracker_add(tr, 5) == -1);
    assert_true(weft_tracker_add(tr, 4) == -1);
    assert_true(weft_tracker_add(tr, 0) == -1);
    assert_int_equal(weft_tracker_pending(tr), 1);
    /* Still rejected after the earlier one finished and left the ring. */
    assert_int_equal(weft_tracker_done(tr, s5), 6);
    assert_int_equal(weft_tracker_pending(tr), 0);
    assert_true(weft_tracker_add(tr, 5) == -1);
    assert_true(weft_tracker_add(tr, 6) >= 0);
    assert_true(weft_tracker_add(tr, 6) == -1);
    assert_int_equal(weft_tracker_pending(tr), 1);
    assert_int_equal(weft_tracker_position(tr), 6);
}

static void test_done_twice_and_unknown_slot(void **state)
{
    weft_tracker_t *tr = *state;
    int64_t a = weft_tracker_add(tr, 1);
    int64_t b = weft_tracker_add(tr, 2);
    int64_t c = weft_tracker_add(tr, 3);
    assert_int_equal(weft_tracker_done(tr, a), 2);
    /* Done again after the position passed it. */
    assert_true(weft_tracker_done(tr, a) == -1);
    assert_int_equal(weft_tracker_position(tr), 2);
    /* Done twice while still behind an unfinished one changes nothing. */
    assert_true(weft_tracker_done(tr, c) == -1);
    assert_true(weft_tracker_done(tr, c) == -1);
    assert_int_equal(weft_tracker_position(tr), 2);
    /* Never handed out, or negative. */
    assert_true(weft_tracker_done(tr, c + 1) == -1);
    assert_true(weft_tracker_done(tr, c + 1000) == -1);
    assert_true(weft_tracker_done(tr, -1) == -1);
    assert_true(weft_tracker_done(tr, INT64_MIN) == -1);
    assert_true(weft_tracker_done(tr, INT64_MAX) == -1);
    assert_int_equal(weft_tracker_done(tr, b), 4);
    assert_int_equal(weft_tracker_pending(tr), 0);
}

/* A stale handle (finished, then its ring cell reused after a wrap) must
 * not finish the message that now lives in that cell. */
static void test_stale_handle_after_wrap(void **state)
{
    weft_tracker_t *tr = *state;
    int64_t slots[65];
    for (int64_t o = 0; o < 64; o++)
        slots[o] = weft_tracker_add(tr, o);
    assert_int_equal(weft_tracker_done(tr, slots[0]), 1);
    /* 63 in flight: the next add reuses the first cell without growing. */
    slots[64] = weft_tracker_add(tr, 64);
    assert_true(slots[64] >= 0);
    assert_true(weft_tracker_done(tr, slots[0]) == -1);
    for (int64_t o = 1; o < 63; o++)
        assert_int_equal(weft_tracker_done(tr, slots[o]), o + 1);
    assert_int_equal(weft_tracker_done(tr, slots[63]), 64);
    /* Offset 64 is still unfinished: the position stops before it. */
    assert_int_equal(weft_tracker_position(tr), 64);
    assert_int_equal(weft_tracker_pending(tr), 1);
    assert_int_equal(weft_tracker_done(tr, slots[64]), 65);
}

/* The model: offsets[i] of the i-th add, done[i], first unfinished index. */
typedef struct model {
    int64_t *offsets;
    int64_t *slots;
    char *done;
    size_t n, head;
    size_t unfinished;
    int64_t position;
} model_t;

/* Pending is at least the unfinished messages and at most everything the
 * position has not passed (test_pending_counts_unfinished pins which). */
static void assert_pending(const weft_tracker_t *tr, const model_t *m)
{
    size_t p = weft_tracker_pending(tr);
    assert_in_range(p, m->unfinished, m->n - m->head);
}

static void model_init(model_t *m, size_t cap)
{
    memset(m, 0, sizeof(*m));
    m->offsets = calloc(cap, sizeof(int64_t));
    m->slots = calloc(cap, sizeof(int64_t));
    m->done = calloc(cap, 1);
    assert_non_null(m->offsets);
    assert_non_null(m->slots);
    assert_non_null(m->done);
    m->position = -1;
}

static void model_free(model_t *m)
{
    free(m->offsets);
    free(m->slots);
    free(m->done);
}

static void model_add(model_t *m, weft_tracker_t *tr, int64_t offset)
{
    int64_t slot = weft_tracker_add(tr, offset);
    assert_true(slot >= 0);
    m->offsets[m->n] = offset;
    m->slots[m->n] = slot;
    m->n++;
    m->unfinished++;
    assert_pending(tr, m);
}

/* Finishes the i-th added message and checks the tracker against the
 * model. */
static void model_done(model_t *m, weft_tracker_t *tr, size_t i)
{
    assert_false(m->done[i]);
    m->done[i] = 1;
    int64_t want = -1;
    while (m->head < m->n && m->done[m->head]) {
        want = m->position = m->offsets[m->head] + 1;
        m->head++;
    }
    int64_t got = weft_tracker_done(tr, m->slots[i]);
    if (got != want)
        print_error("done(#%zu offset %lld): got %lld, want %lld\n", i, (long long)m->offsets[i],
                    (long long)got, (long long)want);
    assert_true(got == want);
    assert_true(weft_tracker_position(tr) == m->position);
    m->unfinished--;
    assert_pending(tr, m);
}

/* 10,000 messages with gaps, all added first (the ring grows from 64),
 * finished in a random order. */
static void test_growth_random_completion(void **state)
{
    weft_tracker_t *tr = *state;
    enum { N = 10000 };
    model_t m;
    model_init(&m, N);
    rng_state = 0x9e3779b97f4a7c15ULL;
    int64_t off = 7;
    for (size_t i = 0; i < N; i++) {
        model_add(&m, tr, off);
        off += 1 + (int64_t)(rng() % 3); /* gaps of 0..2 */
    }
    size_t *order = malloc(N * sizeof(size_t));
    assert_non_null(order);
    for (size_t i = 0; i < N; i++)
        order[i] = i;
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)(rng() % (i + 1));
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < N; i++)
        model_done(&m, tr, order[i]);
    assert_int_equal(weft_tracker_pending(tr), 0);
    assert_true(weft_tracker_position(tr) == m.offsets[N - 1] + 1);
    free(order);
    model_free(&m);
}

/* Adds and completions interleaved, so the ring wraps around and grows
 * while its head is not at index 0. */
static void test_interleaved_wrap_and_grow(void **state)
{
    weft_tracker_t *tr = *state;
    enum { N = 20000 };
    model_t m;
    model_init(&m, N);
    rng_state = 42;
    size_t *pending = malloc(N * sizeof(size_t));
    assert_non_null(pending);
    size_t n_pending = 0;
    int64_t off = 0;
    while (m.n < N || n_pending > 0) {
        /* Phases: mostly adds for a while, then mostly completions. */
        int add_bias = (m.n / 1000) % 2 == 0 ? 70 : 30;
        if (m.n < N && (n_pending == 0 || (int)(rng() % 100) < add_bias)) {
            pending[n_pending++] = m.n;
            model_add(&m, tr, off);
            off += 1 + (int64_t)(rng() % 2);
        } else {
            size_t k = (size_t)(rng() % n_pending);
            size_t idx = pending[k];
            pending[k] = pending[--n_pending];
            model_done(&m, tr, idx);
        }
    }
    assert_int_equal(weft_tracker_pending(tr), 0);
    assert_true(weft_tracker_position(tr) == m.offsets[N - 1] + 1);
    free(pending);
    model_free(&m);
}

/* Slot handles stay valid while the ring grows underneath them. */
static void test_handles_survive_growth(void **state)
{
    weft_tracker_t *tr = *state;
    enum { N = 1000 };
    int64_t slots[N];
    for (int64_t o = 0; o < N; o++) {
        slots[o] = weft_tracker_add(tr, o);
        assert_true(slots[o] >= 0);
    }
    assert_true(weft_tracker_done(tr, slots[500]) == -1);
    assert_int_equal(weft_tracker_done(tr, slots[0]), 1);
    assert_int_equal(weft_tracker_position(tr), 1);
    /* The rest finish through their handles in reverse: nothing advances
     * until offset 1 is done, then everything does. */
    for (int64_t o = N - 1; o >= 2; o--) {
        if (o != 500)
            assert_true(weft_tracker_done(tr, slots[o]) == -1);
    }
    assert_int_equal(weft_tracker_position(tr), 1);
    assert_int_equal(weft_tracker_done(tr, slots[1]), N);
    assert_int_equal(weft_tracker_position(tr), N);
    assert_int_equal(weft_tracker_pending(tr), 0);
}

/*
 * BUG (tracker.c vs tracker.h): weft_tracker_pending is documented as
 * "Offsets added and not yet finished", but it returns every entry the
 * position has not passed yet, counting messages that already finished
 * behind an unfinished one. Here three of four finished and it reports 4.
 * Either the comment or the count is wrong; nothing in the dispatcher
 * calls it yet.
 */
static void test_pending_counts_unfinished(void **state)
{
    weft_tracker_t *tr = *state;
    int64_t s0 = weft_tracker_add(tr, 0);
    int64_t s1 = weft_tracker_add(tr, 1);
    int64_t s2 = weft_tracker_add(tr, 2);
    int64_t s3 = weft_tracker_add(tr, 3);
    assert_int_equal(weft_tracker_pending(tr), 4);
    assert_true(weft_tracker_done(tr, s1) == -1);
    assert_true(weft_tracker_done(tr, s2) == -1);
    assert_true(weft_tracker_done(tr, s3) == -1);
    assert_int_equal(weft_tracker_pending(tr), 1);
    assert_int_equal(weft_tracker_done(tr, s0), 4);
    assert_int_equal(weft_tracker_pending(tr), 0);
}

#define TR_TEST(f) cmocka_unit_test_setup_teardown(f, tr_setup, tr_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TR_TEST(test_empty),
        TR_TEST(test_in_order),
        TR_TEST(test_out_of_order),
        TR_TEST(test_gaps_in_offsets),
        TR_TEST(test_non_increasing_offset_rejected),
        TR_TEST(test_done_twice_and_unknown_slot),
        TR_TEST(test_stale_handle_after_wrap),
        TR_TEST(test_growth_random_completion),
        TR_TEST(test_interleaved_wrap_and_grow),
        TR_TEST(test_handles_survive_growth),
        TR_TEST(test_pending_counts_unfinished),
    };
    return cmocka_run_group_tests_name("tracker", tests, NULL, NULL);
}
