/*
 * clock.c - the dispatcher's clocks: monotonic µs/ms for timers and stage
 * timing, wall-clock ms as broker timestamps count them, and RFC 3339 text
 * for ce_time.
 *
 * Runs on the dispatcher loop thread (now_rfc3339 keeps a one-entry cache
 * in static storage, so it is not for other threads). Gathered here so
 * that the base library's clock can replace all four at once.
 */
#include "internal.h"

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t now_ms(void)
{
    return now_us() / 1000;
}

/* Wall-clock milliseconds, as broker timestamps count them. */
int64_t realtime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The time now, to the millisecond, as ce_time wants it. Results come
 * in bursts, so the text of the last millisecond is kept. */
void now_rfc3339(char *out, size_t len)
{
    static long long last_ms = -1;
    static char last[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (ms != last_ms) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(last, sizeof(last), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(ts.tv_nsec / 1000000) % 1000);
        last_ms = ms;
    }
    weft_fmt_copy(out, len, last);
}
