/*
 * latency.c - see latency.h.
 */
#include "latency.h"

#include <stdio.h>
#include <string.h>

static unsigned bucket_of(uint64_t us)
{
    if (us < 16)
        return (unsigned)us;
    unsigned e = 63u - (unsigned)__builtin_clzll(us); /* 4 .. 39 */
    unsigned sub = (unsigned)(us >> (e - 3)) & 7u;
    return 16u + (e - 4u) * 8u + sub;
}

static uint64_t bucket_upper(unsigned b)
{
    if (b < 16)
        return b;
    unsigned e = 4u + (b - 16u) / 8u, sub = (b - 16u) % 8u;
    uint64_t width = UINT64_C(1) << (e - 3);
    return (8u + sub) * width + width - 1;
}

void weft_lat_add(weft_lat_t *h, uint64_t us)
{
    if (us > WEFT_LAT_MAX_US)
        us = WEFT_LAT_MAX_US;
    h->n[bucket_of(us)]++;
    h->count++;
    if (us > h->max_us)
        h->max_us = us;
}

uint64_t weft_lat_quantile(const weft_lat_t *h, double q)
{
    if (h->count == 0)
        return 0;
    double want = q * (double)h->count; /* the rank is its ceiling, in 1..count */
    uint64_t rank = want <= 1 ? 1 : want >= (double)h->count ? h->count : (uint64_t)want;
    if ((double)rank < want)
        rank++;
    uint64_t seen = 0;
    for (unsigned b = 0; b < WEFT_LAT_BUCKETS; b++) {
        seen += h->n[b];
        if (seen >= rank) {
            uint64_t up = bucket_upper(b);
            return up < h->max_us ? up : h->max_us;
        }
    }
    return h->max_us;
}

static int fmt_ms(char *out, size_t len, uint64_t us)
{
    double ms = (double)us / 1000.0;
    return snprintf(out, len, ms < 10 ? "%.2f" : ms < 100 ? "%.1f" : "%.0f", ms);
}

int weft_lat_fmt(const weft_lat_t *h, char *out, size_t len)
{
    if (len == 0)
        return -1;
    if (h->count == 0)
        return len > 1 ? snprintf(out, len, "-") : -1;
    const uint64_t v[3] = {weft_lat_quantile(h, 0.50), weft_lat_quantile(h, 0.99), h->max_us};
    size_t at = 0;
    for (int i = 0; i < 3; i++) {
        if (i > 0) {
            if (at + 1 >= len)
                return -1;
            out[at++] = '/';
        }
        int w = fmt_ms(out + at, len - at, v[i]);
        if (w < 0 || (size_t)w >= len - at)
            return -1;
        at += (size_t)w;
    }
    return (int)at;
}

void weft_lat_reset(weft_lat_t *h)
{
    memset(h, 0, sizeof(*h));
}
