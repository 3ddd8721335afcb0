/*
 * latency.h - a fixed-size latency histogram for the stats line: how long
 * jobs spent in each stage during the last interval, as p50 / p99 / max.
 *
 * Values are microseconds. Below 16 every value has its own bucket; above,
 * each power of two is split in 8, so a reported quantile is the upper
 * bound of its bucket, at most 12.5% above the true value, and never above
 * the largest value seen (one sample reports itself exactly). Adding is a
 * few instructions and no allocation: it runs once per job per stage.
 */
#ifndef WEFT_LATENCY_H
#define WEFT_LATENCY_H

#include <stddef.h>
#include <stdint.h>

#define WEFT_LAT_MAX_US ((UINT64_C(1) << 40) - 1) /* ~12.7 days; more is clamped */
#define WEFT_LAT_BUCKETS (16 + (40 - 4) * 8)

typedef struct weft_lat {
    uint64_t count;
    uint64_t max_us;
    uint32_t n[WEFT_LAT_BUCKETS];
} weft_lat_t;

void weft_lat_add(weft_lat_t *h, uint64_t us);

/* The q-quantile (0 < q <= 1) in microseconds: the upper bound of the
 * bucket holding the ceil(q * count)-th smallest value, capped at the
 * largest value. 0 when empty. */
uint64_t weft_lat_quantile(const weft_lat_t *h, double q);

/* "p50/p99/max" in milliseconds (two decimals below 10 ms, one below 100,
 * none above), or "-" when empty. Returns the length, or -1 when it does
 * not fit in len. */
int weft_lat_fmt(const weft_lat_t *h, char *out, size_t len);

void weft_lat_reset(weft_lat_t *h);

#endif
