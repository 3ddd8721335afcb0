/*
 * clock.c - clock readings and RFC 3339 formatting (see clock.h).
 *
 * Linked into every weft process through weft_base; no state, safe from
 * any thread (gmtime_r, not gmtime).
 */
#include "clock.h"

#include <stdio.h>
#include <time.h>

uint64_t weft_clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t weft_clock_mono_ms(void)
{
    return weft_clock_mono_us() / 1000u;
}

int64_t weft_clock_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int weft_clock_rfc3339(char *out, size_t cap, int64_t seconds, int32_t nanos, int digits)
{
    static const int32_t scale[10] = {1000000000, 100000000, 10000000, 1000000, 100000,
                                      10000,      1000,      100,      10,      1};
    struct tm tm;
    time_t secs = (time_t)seconds;
    if (cap == 0)
        return -1;
    out[0] = '\0';
    if (!gmtime_r(&secs, &tm))
        return -1;
    if (digits == WEFT_RFC3339_AUTO) {
        if (nanos <= 0 || nanos >= 1000000000)
            digits = 0;
        else if (nanos % 1000000 == 0)
            digits = 3;
        else if (nanos % 1000 == 0)
            digits = 6;
        else
            digits = 9;
    } else if (digits < 0 || digits > 9) {
        digits = 0;
    }
    if (nanos < 0 || nanos >= 1000000000)
        nanos = 0;
    int n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    if (digits > 0) {
        int m = snprintf(out + n, cap - (size_t)n, ".%0*d", digits, (int)(nanos / scale[digits]));
        if (m < 0 || (size_t)m >= cap - (size_t)n)
            return -1;
        n += m;
    }
    if ((size_t)n + 2 > cap)
        return -1;
    out[n++] = 'Z';
    out[n] = '\0';
    return n;
}

int weft_clock_rfc3339_now(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return weft_clock_rfc3339(out, cap, (int64_t)ts.tv_sec, (int32_t)ts.tv_nsec, 3);
}
