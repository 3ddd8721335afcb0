/*
 * faulty.c - example function that misbehaves on request, for tests.
 *
 * Loaded by weft-worker (shared_object runtime); see weft_function.h.
 *
 * The mode comes from the data (JSON containing "fail":"<mode>", found by a
 * plain substring scan) or else from the extension attribute `failmode`:
 *
 *   retry            WEFT_RETRY, error "asked to retry"
 *   retry-until-N    WEFT_RETRY while ev->attempt < N, then succeed
 *   fatal            WEFT_FAIL, error "asked to fail"
 *   drop             WEFT_DROP
 *   crash            abort()
 *   segv             raise(SIGSEGV)
 *   exit             _exit(7)
 *   hang             sleep forever (SIGTERM ends it)
 *   hang-hard        sleep forever ignoring SIGTERM (only SIGKILL ends it)
 *   sleep-N          sleep N ms, then succeed
 *   big              succeed with a 64 MiB result
 *   size-N           succeed with an N-byte result ('x' repeated)
 *   garbage          write an undecodable frame on the channel, then sleep
 *   wrongseq         write a valid Result frame for seq 2^40 (not the
 *                    invocation running) on the channel, then sleep
 *   spin             burn CPU forever (only the deadline ends it)
 *   blowup           allocate and touch 1 MiB blocks until malloc fails,
 *                    then use the NULL like careless code does (refused,
 *                    with WEFT_FAIL, when no RLIMIT_AS is set)
 *   leak             leak 1 MiB (touched) per call and answer
 *                    {"pid":P,"calls":N,"leaked_mb":N}
 *   stamp-N          sleep N ms and answer {"pid":P,"start_us":S,"end_us":E}
 *                    (CLOCK_MONOTONIC, comparable across processes)
 *
 * Anything else succeeds, returning the data unchanged as application/json.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "weft_function.h"

#define BIG_RESULT (64u * 1024u * 1024u)
#define CHANNEL_FD 3

WEFT_EXPORT const int weft_abi_version = WEFT_ABI_VERSION;

static int is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Finds "fail" : "<mode>" in data; 1 when found. */
static int mode_from_data(const uint8_t *p, size_t len, char *mode, size_t cap)
{
    static const char key[] = "\"fail\"";
    const uint8_t *end = p + len;
    const uint8_t *q = p;
    while ((q = memmem(q, (size_t)(end - q), key, sizeof(key) - 1)) != NULL) {
        const uint8_t *r = q + sizeof(key) - 1;
        q = r;
        while (r < end && is_ws(*r))
            r++;
        if (r == end || *r != ':')
            continue;
        r++;
        while (r < end && is_ws(*r))
            r++;
        if (r == end || *r != '"')
            continue;
        r++;
        size_t n = 0;
        while (r + n < end && r[n] != '"' && n + 1 < cap)
            n++;
        if (r + n == end || r[n] != '"')
            continue;
        memcpy(mode, r, n);
        mode[n] = '\0';
        return 1;
    }
    return 0;
}

static void sleep_forever(void) __attribute__((noreturn));
static void sleep_forever(void)
{
    for (;;)
        pause();
}

static void sleep_ms(unsigned long ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int answer(weft_result_t *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int answer(weft_result_t *res, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    res->data = malloc((size_t)n);
    if (!res->data)
        return weft_result_error(res, WEFT_RETRY, "out of memory");
    memcpy(res->data, buf, (size_t)n);
    res->data_len = (size_t)n;
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    return WEFT_OK;
}

typedef struct leak {
    struct leak *next;
} leak_t;

static leak_t *g_leaked;
static unsigned long g_calls, g_leaked_mb;

static int blowup(weft_result_t *res)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return weft_result_error(res, WEFT_FAIL, "blowup refused: no memory limit is set");
    for (;;) {
        char *p = malloc(1024 * 1024);
        /* Careless code: no NULL check. */
        memset(p, 1, 1024 * 1024);
        *(char **)p = (char *)g_leaked;
        g_leaked = (leak_t *)(void *)p;
    }
}

static int echo(const weft_event_t *ev, weft_result_t *res)
{
    if (ev->data_len) {
        res->data = malloc(ev->data_len);
        if (!res->data)
            return weft_result_error(res, WEFT_RETRY, "out of memory");
        memcpy(res->data, ev->data, ev->data_len);
        res->data_len = ev->data_len;
    }
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    return WEFT_OK;
}

int weft_handle(const weft_event_t *ev, weft_result_t *res)
{
    char mode[64] = "";
    if (!mode_from_data(ev->data, ev->data_len, mode, sizeof(mode))) {
        const char *m = weft_event_attr(ev, "failmode");
        if (m)
            snprintf(mode, sizeof(mode), "%s", m);
    }

    if (strcmp(mode, "retry") == 0)
        return weft_result_error(res, WEFT_RETRY, "asked to retry");
    if (strncmp(mode, "retry-until-", 12) == 0) {
        unsigned long n = strtoul(mode + 12, NULL, 10);
        if (ev->attempt < n)
            return weft_result_error(res, WEFT_RETRY, "asked to retry until attempt %lu", n);
        return echo(ev, res);
    }
    if (strcmp(mode, "fatal") == 0)
        return weft_result_error(res, WEFT_FAIL, "asked to fail");
    if (strcmp(mode, "drop") == 0)
        return WEFT_DROP;
    if (strcmp(mode, "crash") == 0)
        abort();
    if (strcmp(mode, "segv") == 0) {
        raise(SIGSEGV);
        abort(); /* a handler that returned */
    }
    if (strcmp(mode, "exit") == 0)
        _exit(7);
    if (strcmp(mode, "hang") == 0)
        sleep_forever();
    if (strcmp(mode, "hang-hard") == 0) {
        signal(SIGTERM, SIG_IGN);
        sleep_forever();
    }
    if (strncmp(mode, "sleep-", 6) == 0) {
        sleep_ms(strtoul(mode + 6, NULL, 10));
        return echo(ev, res);
    }
    if (strcmp(mode, "spin") == 0) {
        volatile uint64_t n = 0;
        for (;;)
            n++;
    }
    if (strcmp(mode, "blowup") == 0)
        return blowup(res);
    if (strcmp(mode, "leak") == 0) {
        leak_t *p = malloc(1024 * 1024);
        if (!p)
            return weft_result_error(res, WEFT_RETRY, "out of memory");
        memset(p, 1, 1024 * 1024);
        p->next = g_leaked;
        g_leaked = p;
        g_calls++;
        g_leaked_mb++;
        return answer(res, "{\"pid\":%ld,\"calls\":%lu,\"leaked_mb\":%lu}", (long)getpid(), g_calls,
                      g_leaked_mb);
    }
    if (strncmp(mode, "stamp-", 6) == 0) {
        uint64_t start = mono_us();
        sleep_ms(strtoul(mode + 6, NULL, 10));
        return answer(res, "{\"pid\":%ld,\"start_us\":%llu,\"end_us\":%llu}", (long)getpid(),
                      (unsigned long long)start, (unsigned long long)mono_us());
    }
    if (strncmp(mode, "size-", 5) == 0) {
        size_t n = strtoul(mode + 5, NULL, 10);
        res->data = malloc(n ? n : 1);
        if (!res->data)
            return weft_result_error(res, WEFT_FAIL, "cannot allocate %zu bytes", n);
        memset(res->data, 'x', n);
        res->data_len = n;
        snprintf(res->content_type, sizeof(res->content_type), "application/octet-stream");
        return WEFT_OK;
    }
    if (strcmp(mode, "big") == 0) {
        res->data = malloc(BIG_RESULT);
        if (!res->data)
            return weft_result_error(res, WEFT_FAIL, "cannot allocate %u bytes", BIG_RESULT);
        memset(res->data, 'x', BIG_RESULT);
        res->data_len = BIG_RESULT;
        snprintf(res->content_type, sizeof(res->content_type), "application/octet-stream");
        return WEFT_OK;
    }
    if (strcmp(mode, "garbage") == 0) {
        /* A well-formed length prefix followed by bytes that do not decode:
         * an unterminated varint. */
        static const uint8_t junk[] = {0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        ssize_t w = write(CHANNEL_FD, junk, sizeof(junk));
        (void)w;
        sleep_forever();
    }
    if (strcmp(mode, "wrongseq") == 0) {
        /* Result { seq = 2^40 }: field 1 varint, hand-encoded. */
        static const uint8_t frame[] = {0, 0, 0, 7, 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20};
        ssize_t w = write(CHANNEL_FD, frame, sizeof(frame));
        (void)w;
        sleep_forever();
    }
    return echo(ev, res);
}
