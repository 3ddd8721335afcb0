/*
 * weft_function.h - the C ABI a weft function implements.
 *
 * A function is a shared object that exports
 *
 *     int weft_handle(const weft_event_t *ev, weft_result_t *res);
 *
 * (the symbol name can be changed per function in the catalog). weft loads
 * the object once per worker process and calls weft_handle once per event,
 * always from the same single thread. An optional
 *
 *     int weft_init(void);
 *
 * runs once after loading; a non-zero return makes the worker exit and the
 * pool report the function as broken.
 *
 * The event and all strings in it belong to weft and are valid only during
 * the call. The function answers by filling *res and returning a
 * disposition:
 *
 *   WEFT_OK     success: res->data (may be NULL for an empty result) and
 *               res->content_type are emitted as the result event.
 *   WEFT_RETRY  a retryable failure: weft retries with the trigger's backoff,
 *               or after res->retry_after_ms when that is non-zero, until the
 *               trigger's max_attempts; then the event is dead-lettered.
 *   WEFT_FAIL   a permanent failure: the event is dead-lettered now with
 *               res->error as the reason text.
 *   WEFT_DROP   acknowledge the event without a result; recorded as dropped.
 *
 * Ownership: res->data, when set, must be allocated with malloc(); weft
 * frees it. res->error and res->content_type are fixed-size buffers inside
 * *res; use weft_result_error() / snprintf to fill them.
 *
 * ABI version: WEFT_ABI_VERSION. A function may export
 * `const int weft_abi_version = WEFT_ABI_VERSION;` so that a future weft can
 * refuse an incompatible object instead of crashing it.
 */
#ifndef WEFT_FUNCTION_H
#define WEFT_FUNCTION_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEFT_ABI_VERSION 1

enum {
    WEFT_OK = 0,
    WEFT_RETRY = 1,
    WEFT_FAIL = 2,
    WEFT_DROP = 3,
};

/* One CloudEvents extension (or optional) attribute, as a string: the
 * text a trigger filter compares and the exec protocol carries. Boolean
 * "true"/"false", Integer in decimal, Binary in base64, Timestamp in RFC
 * 3339 UTC with the fraction received (none, 3, 6 or 9 digits); strings,
 * URIs and URI-references as they are. ev->time follows the same rule. */
typedef struct weft_attr {
    const char *name;
    const char *value;
} weft_attr_t;

/* The event handed to a function: CloudEvents 1.0 context attributes and
 * the data. Absent optional attributes are "" (never NULL). */
typedef struct weft_event {
    const char *id;
    const char *source;
    const char *specversion;
    const char *type;
    const char *subject;
    const char *time;
    const char *datacontenttype;
    const weft_attr_t *attrs; /* extension attributes */
    size_t n_attrs;
    const uint8_t *data;
    size_t data_len;
    const char *trigger;  /* the trigger that fired */
    uint32_t attempt;     /* 1 on the first attempt */
    uint32_t deadline_ms; /* wall-clock budget of this call; 0 = none. Past
                           * it the worker is killed (appended in ABI 1:
                           * older functions simply do not read it) */
} weft_event_t;

typedef struct weft_result {
    void *data; /* malloc()ed by the function; weft frees it */
    size_t data_len;
    char content_type[128];
    char error[1024];
    uint32_t retry_after_ms;
} weft_result_t;

typedef int (*weft_handle_fn)(const weft_event_t *ev, weft_result_t *res);
typedef int (*weft_init_fn)(void);

/* Marks the entry points public when a function is built with
 * -fvisibility=hidden (recommended: nothing else needs to be exported). */
#define WEFT_EXPORT __attribute__((visibility("default")))

/* Prototypes of the default entry points, so that a function compiles clean
 * with -Wmissing-prototypes. A function exporting its handler under another
 * name declares that one itself. */
WEFT_EXPORT int weft_handle(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int weft_init(void);
WEFT_EXPORT extern const int weft_abi_version;

/* Convenience: fill res->error printf-style and return `disposition`. */
static inline int weft_result_error(weft_result_t *res, int disposition, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline int weft_result_error(weft_result_t *res, int disposition, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof(res->error), fmt, ap);
    va_end(ap);
    return disposition;
}

/* Look up an extension attribute by name; NULL when absent. */
static inline const char *weft_event_attr(const weft_event_t *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_attrs; i++) {
        const char *a = ev->attrs[i].name, *b = name;
        while (*a && *a == *b) {
            a++;
            b++;
        }
        if (*a == *b)
            return ev->attrs[i].value;
    }
    return NULL;
}

#ifdef __cplusplus
}
#endif
#endif
