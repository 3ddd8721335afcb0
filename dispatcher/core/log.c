/*
 * log.c - the log line format shared by every weft process.
 *
 * Runs in the dispatcher and the CLI. Lines are written with one write(2)
 * so that concurrent writers (librdkafka threads through the log callback,
 * workers sharing stderr) never interleave within a line.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
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

void weft_log(weft_log_level_t level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level], log_component,
                     (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
