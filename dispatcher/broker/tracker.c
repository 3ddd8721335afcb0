/*
 * tracker.c - a ring of in-flight offsets per partition (see tracker.h).
 *
 * Runs on the dispatcher loop thread. Slots are numbered by a monotonically
 * increasing sequence so a handle stays valid while the ring grows or
 * wraps; the head is the oldest unfinished message.
 */
#include "tracker.h"

#include <stdlib.h>

typedef struct slot {
    int64_t offset;
    int done;
} slot_t;

struct weft_tracker {
    slot_t *ring;
    size_t cap;        /* power of two */
    int64_t head_seq;  /* sequence number of ring head */
    int64_t tail_seq;  /* next sequence number to hand out */
    int64_t last_offset;
    int64_t position;
    size_t unfinished;
};

weft_tracker_t *weft_tracker_new(void)
{
    weft_tracker_t *tr = calloc(1, sizeof(*tr));
    if (!tr)
        return NULL;
    tr->cap = 64;
    tr->ring = calloc(tr->cap, sizeof(slot_t));
    if (!tr->ring) {
        free(tr);
        return NULL;
    }
    tr->last_offset = -1;
    tr->position = -1;
    return tr;
}

void weft_tracker_destroy(weft_tracker_t *tr)
{
    if (!tr)
        return;
    free(tr->ring);
    free(tr);
}

static int grow(weft_tracker_t *tr)
{
    size_t ncap = tr->cap * 2;
    slot_t *nr = malloc(ncap * sizeof(slot_t));
    if (!nr)
        return -1;
    for (int64_t s = tr->head_seq; s < tr->tail_seq; s++)
        nr[(size_t)s & (ncap - 1)] = tr->ring[(size_t)s & (tr->cap - 1)];
    free(tr->ring);
    tr->ring = nr;
    tr->cap = ncap;
    return 0;
}

int64_t weft_tracker_add(weft_tracker_t *tr, int64_t offset)
{
    if (offset <= tr->last_offset || offset < 0)
        return -1;
    if ((size_t)(tr->tail_seq - tr->head_seq) == tr->cap && grow(tr) != 0)
        return -1;
    slot_t *s = &tr->ring[(size_t)tr->tail_seq & (tr->cap - 1)];
    s->offset = offset;
    s->done = 0;
    tr->last_offset = offset;
    tr->unfinished++;
    return tr->tail_seq++;
}

int64_t weft_tracker_done(weft_tracker_t *tr, int64_t seq)
{
    if (seq < tr->head_seq || seq >= tr->tail_seq)
        return -1;
    if (tr->ring[(size_t)seq & (tr->cap - 1)].done)
        return -1;
    tr->ring[(size_t)seq & (tr->cap - 1)].done = 1;
    tr->unfinished--;
    int64_t advanced = -1;
    while (tr->head_seq < tr->tail_seq) {
        slot_t *h = &tr->ring[(size_t)tr->head_seq & (tr->cap - 1)];
        if (!h->done)
            break;
        advanced = tr->position = h->offset + 1;
        tr->head_seq++;
    }
    return advanced;
}

size_t weft_tracker_pending(const weft_tracker_t *tr)
{
    return tr->unfinished;
}

int64_t weft_tracker_position(const weft_tracker_t *tr)
{
    return tr->position;
}
