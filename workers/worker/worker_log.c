/*
 * worker_log.c - see worker_log.h. Runs in the weft-worker process, which
 * is single-threaded: the two settings are plain statics.
 */
#include "worker_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *log_function = "";
static int log_quiet;

void weft_worker_log_function(const char *function)
{
    log_function = function ? function : "";
}

void weft_worker_log_quiet(int quiet)
{
    log_quiet = quiet;
}

void weft_worker_log(const char *component, long pid, weft_log_level_t level, const char *fmt, ...)
{
    if (log_quiet && level == WEFT_LOG_INFO && strcmp(component, "worker") == 0)
        return;
    char suffix[64] = "";
    if (*log_function)
        snprintf(suffix, sizeof(suffix), " function=%.40s", log_function);
    va_list ap;
    va_start(ap, fmt);
    weft_log_vline(level, component, pid, suffix, fmt, ap);
    va_end(ap);
}
