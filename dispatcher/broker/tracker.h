/*
 * tracker.h - per-partition offset tracking: which offset may be stored.
 *
 * Messages of one partition are added in the order they were consumed and
 * finish in any order; the committable position is one past the last
 * offset of the contiguous finished prefix. It never passes an unfinished
 * message, and it tolerates gaps in offsets (compaction, transaction
 * markers).
 */
#ifndef WEFT_TRACKER_H
#define WEFT_TRACKER_H

#include <stddef.h>
#include <stdint.h>

typedef struct weft_tracker weft_tracker_t;

weft_tracker_t *weft_tracker_new(void);
void weft_tracker_destroy(weft_tracker_t *tr);

/* Registers a consumed offset; offsets must increase. Returns a slot
 * handle for weft_tracker_done, or -1 (offset not increasing / no memory). */
int64_t weft_tracker_add(weft_tracker_t *tr, int64_t offset);

/* Marks the slot finished. Returns the new committable position (next
 * offset to consume) when it advanced, else -1. */
int64_t weft_tracker_done(weft_tracker_t *tr, int64_t slot);

/* Offsets added and not yet finished. */
size_t weft_tracker_pending(const weft_tracker_t *tr);

/* Committable position so far, -1 if nothing finished yet. */
int64_t weft_tracker_position(const weft_tracker_t *tr);

#endif
