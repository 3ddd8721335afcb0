/*
 * slowstart.c - example function with an expensive initialisation:
 * weft_init takes half a second (think: loading a model or a large table),
 * then every event is answered with its data unchanged.
 *
 * Loaded by weft-worker (shared_object runtime); see weft_function.h.
 * tests/test_pool.c uses it to check that loading time is not charged to
 * the first invocation's deadline.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weft_function.h"

WEFT_EXPORT const int weft_abi_version = WEFT_ABI_VERSION;

static int g_ready;

int weft_init(void)
{
    struct timespec ts = {0, 500 * 1000 * 1000};
    while (nanosleep(&ts, &ts) != 0)
        ;
    g_ready = 1;
    return 0;
}

int weft_handle(const weft_event_t *ev, weft_result_t *res)
{
    if (!g_ready)
        return weft_result_error(res, WEFT_FAIL, "weft_init did not run");
    if (ev->data_len) {
        res->data = malloc(ev->data_len);
        if (!res->data)
            return weft_result_error(res, WEFT_RETRY, "out of memory");
        memcpy(res->data, ev->data, ev->data_len);
        res->data_len = ev->data_len;
    }
    snprintf(res->content_type, sizeof(res->content_type), "%s",
             *ev->datacontenttype ? ev->datacontenttype : "application/octet-stream");
    return WEFT_OK;
}
