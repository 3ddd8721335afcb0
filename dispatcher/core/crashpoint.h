/*
 * crashpoint.h - test builds only: kill the dispatcher with SIGKILL at a
 * named point of an event's path, so the fault suite (tests/faults.c) can
 * crash it exactly where DESIGN.md says a crash must lose nothing.
 *
 *   WEFT_TEST_CRASH_AT=<point>:<N>   the N-th event to pass <point> kills
 *                                    the process (N >= 1)
 *
 * Points (DESIGN.md, "The path of one event"): after_claim (the claim is
 * committed, the function has not run), after_invoke (the function
 * returned, its outcome is not recorded), after_record (the outcome is
 * committed, nothing produced), after_produce (the broker acknowledged the
 * outcome, the source is not marked done).
 *
 * Runs on the dispatcher loop thread. Compiled in only with
 * -DWEFT_TEST_HOOKS=ON (ops/test sets it for its trees); otherwise
 * WEFT_CRASH_POINT expands to nothing and a production binary cannot be
 * told to crash, whatever its environment holds.
 */
#ifndef WEFT_CRASHPOINT_H
#define WEFT_CRASHPOINT_H

#ifdef WEFT_TEST_HOOKS
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Counts n events through point; SIGKILLs the process when the armed
 * point's count reaches its N. Each file that includes this has its own
 * copy, which is enough: every point is in one file. */
static inline void weft_test_crash_point(const char *point, size_t n)
{
    static int armed = -1; /* -1: environment not read yet */
    static char want[32];
    static unsigned long left;
    if (armed < 0) {
        const char *v = getenv("WEFT_TEST_CRASH_AT");
        const char *colon = v ? strchr(v, ':') : NULL;
        armed = colon && (size_t)(colon - v) < sizeof(want) && atol(colon + 1) > 0;
        if (armed) {
            memcpy(want, v, (size_t)(colon - v));
            want[colon - v] = '\0';
            left = (unsigned long)atol(colon + 1);
        }
    }
    if (!armed || n == 0 || strcmp(point, want) != 0)
        return;
    if (n < left) {
        left -= n;
        return;
    }
    fprintf(stderr, "test hook: crashing at %s (WEFT_TEST_CRASH_AT)\n", point);
    kill(getpid(), SIGKILL);
}
#define WEFT_CRASH_POINT(point, n) weft_test_crash_point((point), (n))
#else
#define WEFT_CRASH_POINT(point, n) ((void)0)
#endif

#endif
