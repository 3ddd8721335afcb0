/*
 * fmt.h - building short strings without printf, for the per-event path.
 *
 * snprintf parses its format on every call: measured with callgrind on
 * the dispatcher under ops/bench, the dozen calls an event made cost
 * about a fifth of its instructions. These do the same few things
 * directly. Off the per-event path, snprintf stays: it is clearer.
 */
#ifndef WEFT_FMT_H
#define WEFT_FMT_H

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Length of the decimal form of v (with its sign). */
static inline size_t weft_fmt_i64_len(long long v)
{
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    size_t n = v < 0 ? 2 : 1;
    while (u >= 10) {
        u /= 10;
        n++;
    }
    return n;
}

/* Writes v in decimal at out (at least 21 bytes) with a NUL; returns the
 * length. */
static inline size_t weft_fmt_i64(char *out, long long v)
{
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    size_t n = weft_fmt_i64_len(v);
    out[n] = '\0';
    char *p = out + n;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return n;
}

/* Concatenates the n strings (NULL counts as "") into out of cap bytes,
 * truncating, always NUL-terminated when cap > 0. Returns the length the
 * whole would have, as snprintf does. */
static inline size_t weft_fmt_cat(char *out, size_t cap, const char *const *parts, size_t n)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = parts[i] ? parts[i] : "";
        size_t len = strlen(s);
        if (total < cap) {
            size_t room = cap - 1 - total;
            memcpy(out + total, s, len < room ? len : room);
        }
        total += len;
    }
    if (cap > 0)
        out[total < cap ? total : cap - 1] = '\0';
    return total;
}

/* The n strings (NULL counts as "") joined in a new malloc()ed string;
 * NULL when out of memory. */
static inline char *weft_fmt_join(const char *const *parts, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += parts[i] ? strlen(parts[i]) : 0;
    char *out = malloc(len + 1);
    if (out)
        weft_fmt_cat(out, len + 1, parts, n);
    return out;
}

/* weft_fmt_cat of one string. */
static inline size_t weft_fmt_copy(char *out, size_t cap, const char *s)
{
    return weft_fmt_cat(out, cap, &s, 1);
}

#endif
