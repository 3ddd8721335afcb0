/*
 * log.h - one line per event of interest, the same in every weft process:
 *     2026-11-22T18:00:00.123Z info dispatcher[123] message k=v ...
 * Payloads are never logged by default; credentials never.
 */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

#include <stdarg.h>

typedef enum { WEFT_LOG_DEBUG = 0, WEFT_LOG_INFO, WEFT_LOG_WARN, WEFT_LOG_ERROR } weft_log_level_t;

/* Longest line written, newline included; a longer message is cut so that
 * the suffix (below) still fits. */
#define WEFT_LOG_LINE_MAX 4400

void weft_log_init(const char *component, weft_log_level_t min_level);
int weft_log_level_parse(const char *s, weft_log_level_t *out);
const char *weft_log_level_name(weft_log_level_t level);
void weft_log(weft_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The writer under weft_log(), also used directly by the pool and the
 * worker, which name their own component and pid and end every line with
 * the same fields: writes "ts level component[pid] message suffix\n" to
 * stderr in one write(2). suffix may be NULL. No level filtering. */
void weft_log_vline(weft_log_level_t level, const char *component, long pid, const char *suffix,
                    const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

#define weft_debug(...) weft_log(WEFT_LOG_DEBUG, __VA_ARGS__)
#define weft_info(...) weft_log(WEFT_LOG_INFO, __VA_ARGS__)
#define weft_warn(...) weft_log(WEFT_LOG_WARN, __VA_ARGS__)
#define weft_error(...) weft_log(WEFT_LOG_ERROR, __VA_ARGS__)

#endif
