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
 *   garbage          write an undecodable frame on the channel, then sleep
 *
 * Anything else succeeds, returning the data unchanged as application/json.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <signal.h>
#include <stdlib.h>
#include <string.h>
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
        unsigned long ms = strtoul(mode + 6, NULL, 10);
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0)
            ;
        return echo(ev, res);
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
    return echo(ev, res);
}
