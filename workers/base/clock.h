/*
 * clock.h - the clocks weft reads and the one RFC 3339 formatter.
 *
 * Monotonic time measures durations and deadlines (never goes back);
 * real time stamps what leaves the process (log lines, ce_time, broker
 * timestamps in milliseconds since the epoch).
 */
#ifndef WEFT_CLOCK_H
#define WEFT_CLOCK_H

#include <stddef.h>
#include <stdint.h>

uint64_t weft_clock_mono_us(void);
uint64_t weft_clock_mono_ms(void);
/* Milliseconds since the epoch, as broker timestamps count them. */
int64_t weft_clock_real_ms(void);

/* Fraction digits: as protobuf's JSON mapping prints a Timestamp (none,
 * 3, 6 or 9, the fewest that lose nothing). */
#define WEFT_RFC3339_AUTO (-1)
/* Enough for any year gmtime_r() accepts, 9 fraction digits and the NUL. */
#define WEFT_RFC3339_MAX 48

/* Writes seconds + nanos since the epoch as RFC 3339 in UTC
 * ("2026-12-07T21:12:14.123Z") to out: digits fraction digits (0..9), or
 * WEFT_RFC3339_AUTO. nanos outside [0, 1e9) prints no fraction with AUTO.
 * Returns the length, or -1 with out "" when the time cannot be broken
 * down (gmtime_r() fails on years past INT_MAX). */
int weft_clock_rfc3339(char *out, size_t cap, int64_t seconds, int32_t nanos, int digits);
/* The real time now with milliseconds, as log lines and ce_time carry it. */
int weft_clock_rfc3339_now(char *out, size_t cap);

#endif
