/*
 * clock.c - the dispatcher's clocks: monotonic µs/ms for timers and stage
 * timing, wall-clock ms as broker timestamps count them, and RFC 3339 text
 * for ce_time.
 *
 * Runs on the dispatcher loop thread (dsp_now_rfc3339 keeps a one-entry cache
 * in static storage, so it is not for other threads). The clocks and the
 * formatting are the base library's (workers/base/clock.h); these are the
 * dispatcher's short names for them.
 */
#include "internal.h"

#include "clock.h"

uint64_t dsp_now_us(void)
{
    return weft_clock_mono_us();
}

uint64_t dsp_now_ms(void)
{
    return weft_clock_mono_ms();
}

/* Wall-clock milliseconds, as broker timestamps count them. */
int64_t dsp_realtime_ms(void)
{
    return weft_clock_real_ms();
}

/* The time now, to the millisecond, as ce_time wants it. Results come
 * in bursts, so the text of the last millisecond is kept. */
void dsp_now_rfc3339(char *out, size_t len)
{
    static long long last_ms = -1;
    static char last[64];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (ms != last_ms) {
        weft_clock_rfc3339(last, sizeof(last), (int64_t)ts.tv_sec, (int32_t)ts.tv_nsec, 3);
        last_ms = ms;
    }
    weft_fmt_copy(out, len, last);
}
