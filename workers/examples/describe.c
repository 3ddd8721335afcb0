/*
 * describe.c - example function that answers with a plain-text description
 * of the event it was given, one `name=value` line per context attribute,
 * then the extension attributes as `attr.NAME=value`, the trigger, the
 * attempt and the data length. Useful to see what a function receives, and
 * used by tests/test_pool.c to check the CloudEvent -> weft_event_t mapping.
 *
 * Loaded by weft-worker (shared_object runtime); see weft_function.h.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "weft_function.h"

WEFT_EXPORT const int weft_abi_version = WEFT_ABI_VERSION;

typedef struct out {
    char *p;
    size_t len, cap;
    int failed;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if (o->p && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = (o->cap ? o->cap : 256) + (size_t)n + 1;
        char *q = realloc(o->p, cap * 2);
        if (!q) {
            o->failed = 1;
            return;
        }
        o->p = q;
        o->cap = cap * 2;
    }
}

int weft_handle(const weft_event_t *ev, weft_result_t *res)
{
    out_t o = {0};
    put(&o, "id=%s\nsource=%s\nspecversion=%s\ntype=%s\n", ev->id, ev->source, ev->specversion,
        ev->type);
    put(&o, "subject=%s\ntime=%s\ndatacontenttype=%s\n", ev->subject, ev->time,
        ev->datacontenttype);
    for (size_t i = 0; i < ev->n_attrs; i++)
        put(&o, "attr.%s=%s\n", ev->attrs[i].name, ev->attrs[i].value);
    put(&o, "trigger=%s\nattempt=%u\ndata_len=%zu\n", ev->trigger, (unsigned)ev->attempt,
        ev->data_len);
    if (o.failed) {
        free(o.p);
        return weft_result_error(res, WEFT_RETRY, "out of memory");
    }
    res->data = o.p;
    res->data_len = o.len;
    snprintf(res->content_type, sizeof(res->content_type), "text/plain");
    return WEFT_OK;
}
