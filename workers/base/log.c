/*
 * log.c - the log line format shared by every weft process (STYLE.md,
 * "Logging and output").
 *
 * Runs in the dispatcher, the CLI, the pool (inside the dispatcher) and
 * weft-worker. Invariant: a line is written with one write(2), so that
 * concurrent writers (librdkafka threads through the log callback, workers
 * sharing stderr) never interleave within a line.
 */
#include "log.h"
#include "clock.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static char log_component[32] = "weft";
static weft_log_level_t log_min = WEFT_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void weft_log_init(const char *component, weft_log_level_t min_level)
{
    snprintf(log_component, sizeof(log_component), "%s", component);
    log_min = min_level;
}

int weft_log_level_parse(const char *s, weft_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (weft_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

const char *weft_log_level_name(weft_log_level_t level)
{
    return level >= WEFT_LOG_DEBUG && level <= WEFT_LOG_ERROR ? level_names[level] : "info";
}

void weft_log_vline(weft_log_level_t level, const char *component, long pid, const char *suffix,
                    const char *fmt, va_list ap)
{
    char line[WEFT_LOG_LINE_MAX];
    char ts[WEFT_RFC3339_MAX];
    weft_clock_rfc3339_now(ts, sizeof(ts));
    int n = snprintf(line, sizeof(line), "%s %s %.64s[%ld] ", ts, weft_log_level_name(level),
                     component, pid);
    size_t slen = suffix ? strnlen(suffix, sizeof(line) / 4) : 0;
    /* The message may use what is left after the suffix and the newline. */
    size_t room = sizeof(line) - (size_t)n - slen - 1;
    int m = vsnprintf(line + n, room, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > (size_t)n + room - 1)
        len = (size_t)n + room - 1;
    memcpy(line + len, suffix ? suffix : "", slen);
    len += slen;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void weft_log(weft_log_level_t level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    weft_log_vline(level, log_component, (long)getpid(), NULL, fmt, ap);
    va_end(ap);
}
