/*
 * log.h - one line per event of interest:
 *     2026-11-22T18:00:00.123Z info dispatcher[123] message k=v ...
 * Payloads are never logged by default; credentials never.
 */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

typedef enum { WEFT_LOG_DEBUG = 0, WEFT_LOG_INFO, WEFT_LOG_WARN, WEFT_LOG_ERROR } weft_log_level_t;

void weft_log_init(const char *component, weft_log_level_t min_level);
int weft_log_level_parse(const char *s, weft_log_level_t *out);
void weft_log(weft_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define weft_debug(...) weft_log(WEFT_LOG_DEBUG, __VA_ARGS__)
#define weft_info(...) weft_log(WEFT_LOG_INFO, __VA_ARGS__)
#define weft_warn(...) weft_log(WEFT_LOG_WARN, __VA_ARGS__)
#define weft_error(...) weft_log(WEFT_LOG_ERROR, __VA_ARGS__)

#endif
