/*
 * window.c - the claim window: how far claims may run ahead of a
 * function's pool.
 *
 * Runs on the dispatcher loop thread. A job that will run a function
 * takes a slot of its function's window before its claim is sent, and
 * gives it back when its invocation ends (or when the claim's answer
 * says it will not run); while the window is full it waits here,
 * unclaimed, in arrival order. So the keys claimed and not yet finished
 * running are at most the window, max_workers * (pipeline_depth + 2): what
 * the pool can hand its workers at once, and two more each to cover the
 * claim's round trip. Without it, a backlog was claimed as fast as it was
 * consumed (thousands of keys ahead of a pool of two), and a dispatcher
 * that died left every one of them claimed: each waited out its lease on
 * restart, and each was taken over.
 *
 * Invariants: w->claimed counts exactly the jobs whose j->win is w; a job
 * held here is in w->held (state J_HOLD) and in no other queue; windows
 * live as long as the dispatcher (one per function name, so a job's slot
 * outlives pool and catalog changes), and their limit follows the
 * function's current definition.
 */
#include "internal.h"

struct claim_win {
    char *function;
    size_t claimed; /* jobs holding a slot */
    jq_t held;      /* jobs waiting for one, oldest first */
    struct claim_win *next;
};

static size_t win_limit(const weft_function_t *fn)
{
    size_t workers = (size_t)(fn->max_concurrency > 0 ? fn->max_concurrency : fn->pool_size);
    size_t depth =
        (size_t)(fn->pipeline_depth > 0 ? fn->pipeline_depth : WEFT_POOL_DEFAULT_PIPELINE_DEPTH);
    return (workers > 0 ? workers : 1) * (depth + 2);
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
    while (w->held.n > 0 && w->claimed < win_limit(w->held.head->trig->fn)) {
        job_t *h = jq_pop(&w->held);
        w->claimed++;
        h->win = w;
        claim_push(d, h);
    }
}

int win_enter(dsp_t *d, job_t *j)
{
    /* Only a job that will run a function needs a slot: bad input is
     * dead-lettered and a saga's start runs nothing. */
    if (j->win || !j->trig->fn || j->preset_reason)
        return 0;
    claim_win_t *w = win_for(d, j->trig->fn->name);
    if (!w)
        return 0; /* out of memory: unbounded rather than stuck */
    j->state = J_HOLD;
    jq_push(&w->held, j);
    win_pump(d, w);
    return 1;
}

void win_release(dsp_t *d, job_t *j)
{
    claim_win_t *w = j->win;
    if (!w)
        return;
    j->win = NULL;
    w->claimed--;
    /* Tearing down, the pools end their invocations: nothing is claimed. */
    if (!d->closing)
        win_pump(d, w);
}

void win_drop(job_t *j)
{
    if (j->win)
        j->win->claimed--;
    j->win = NULL;
}

size_t win_held(const dsp_t *d)
{
    size_t n = 0;
    for (const claim_win_t *w = d->wins; w; w = w->next)
        n += w->held.n;
    return n;
}

void win_free_all(dsp_t *d)
{
    while (d->wins) {
        claim_win_t *w = d->wins;
        d->wins = w->next;
        free(w->function);
        free(w);
    }
}
