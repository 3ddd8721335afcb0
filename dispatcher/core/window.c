/*
 * window.c - the claim window: how far claims may run ahead of a
 * function's pool.
 *
 * Runs on the dispatcher loop thread. A job that will run a function
 * takes a slot of its function's window before its claim is sent, and
 * gives it back when its invocation ends (or when the claim's answer
 * says it will not run); while the window is full it waits here,
 * unclaimed, in arrival order. So the keys claimed and not yet finished
 * running are at most the window: what the pool will start within
 * SOON_MS, plus what it finishes while a claim is answered (its claims'
 * average time from slot to answer, which grows with batch sizes under
 * load), at the rate it has been finishing invocations; never less
 * than FLOOR_PER_WORKER keys per worker (one running, and the next ones
 * claimed while it runs). A slow function's claimed keys thus wait
 * behind at most three calls each, not behind a backlog, before their
 * lease starts to matter; a fast one has as many as batching needs.
 * Without it, a backlog was claimed as fast as it was consumed (thousands
 * of keys ahead of a pool of two), and a dispatcher that died left every
 * one of them claimed: each waited out its lease on restart, and each was
 * taken over. A count alone would not do: a cheap function finishes tens
 * of thousands of invocations a second, and a window of a few dozen keys
 * would cut its claim batches (and its throughput) to a few dozen.
 *
 * Invariants: w->claimed counts exactly the jobs whose j->win is w; a job
 * held here is in w->held (state J_HOLD) and in no other queue; windows
 * live as long as the dispatcher (one per function name, so a job's slot
 * outlives pool and catalog changes), and their limit follows the
 * function's current definition.
 */
#include "internal.h"

/* How far ahead claims may run, in time at the pool's rate; and how often
 * that rate is measured. */
#define SOON_MS 50
#define RATE_EVERY_MS 100
#define FLOOR_PER_WORKER 4

struct claim_win {
    char *function;
    size_t claimed; /* jobs holding a slot */
    jq_t held;      /* jobs waiting for one, oldest first */
    uint64_t done;  /* invocations ended since rate_at */
    uint64_t rate_at;
    double rate;     /* invocations ended per second, a moving average */
    double claim_us; /* from slot to the claim's answer, a moving average */
    struct claim_win *next;
};

static size_t win_limit(const claim_win_t *w, const weft_function_t *fn)
{
    size_t workers = (size_t)(fn->max_concurrency > 0 ? fn->max_concurrency : fn->pool_size);
    size_t floor = (workers > 0 ? workers : 1) * FLOOR_PER_WORKER;
    size_t soon = (size_t)(w->rate * (SOON_MS / 1000.0 + w->claim_us / 1e6));
    return soon > floor ? soon : floor;
}

/* One more invocation ended: the rate moves every RATE_EVERY_MS. */
static void win_count(claim_win_t *w)
{
    uint64_t now = dsp_now_ms();
    w->done++;
    if (w->rate_at == 0)
        w->rate_at = now;
    uint64_t span = now - w->rate_at;
    if (span < RATE_EVERY_MS)
        return;
    /* An idle spell counts as its own span of no work, so the rate (and
     * the window) falls back after it instead of holding a burst's. */
    double r = (double)w->done * 1000.0 / (double)span;
    w->rate = span > 10 * RATE_EVERY_MS ? r : 0.5 * w->rate + 0.5 * r;
    w->done = 0;
    w->rate_at = now;
}

static claim_win_t *win_for(dsp_t *d, const char *function)
{
    for (claim_win_t *w = d->wins; w; w = w->next)
        if (strcmp(w->function, function) == 0)
            return w;
    claim_win_t *w = calloc(1, sizeof(*w));
    if (!w || !(w->function = strdup(function))) {
        free(w);
        return NULL;
    }
    w->next = d->wins;
    d->wins = w;
    return w;
}

/* Lets held jobs take the free slots, oldest first. */
static void win_pump(dsp_t *d, claim_win_t *w)
{
    while (w->held.n > 0 && w->claimed < win_limit(w, w->held.head->trig->fn)) {
        job_t *h = dsp_jq_pop(&w->held);
        w->claimed++;
        h->win = w;
        dsp_claim_push(d, h);
    }
}

int dsp_win_enter(dsp_t *d, job_t *j)
{
    /* Only a job that will run a function needs a slot: bad input is
     * dead-lettered and a saga's start runs nothing. */
    if (j->win || !j->trig->fn || j->preset_reason)
        return 0;
    claim_win_t *w = win_for(d, j->trig->fn->name);
    if (!w)
        return 0; /* out of memory: unbounded rather than stuck */
    j->state = J_HOLD;
    dsp_jq_push(&w->held, j);
    win_pump(d, w);
    return 1;
}

void dsp_win_claimed(job_t *j, uint64_t waited_us)
{
    claim_win_t *w = j->win;
    if (w)
        w->claim_us =
            w->claim_us > 0 ? 0.9 * w->claim_us + 0.1 * (double)waited_us : (double)waited_us;
}

void dsp_win_release(dsp_t *d, job_t *j)
{
    claim_win_t *w = j->win;
    if (!w)
        return;
    j->win = NULL;
    w->claimed--;
    if (j->ran) /* an invocation ended: the pool's pace, not a re-emit's */
        win_count(w);
    /* Tearing down, the pools end their invocations: nothing is claimed. */
    if (!d->closing)
        win_pump(d, w);
}

void dsp_win_drop(job_t *j)
{
    if (j->win)
        j->win->claimed--;
    j->win = NULL;
}

size_t dsp_win_held(const dsp_t *d)
{
    size_t n = 0;
    for (const claim_win_t *w = d->wins; w; w = w->next)
        n += w->held.n;
    return n;
}

void dsp_win_free_all(dsp_t *d)
{
    while (d->wins) {
        claim_win_t *w = d->wins;
        d->wins = w->next;
        free(w->function);
        free(w);
    }
}
