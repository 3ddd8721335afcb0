/*
 * noop.c - example function that does nothing: answers WEFT_OK with no
 * data. weft-bench-pool measures the pool's own cost with it.
 *
 * Loaded by weft-worker (shared_object runtime); see weft_function.h.
 */
#include "weft_function.h"

WEFT_EXPORT const int weft_abi_version = WEFT_ABI_VERSION;

int weft_handle(const weft_event_t *ev, weft_result_t *res)
{
    (void)ev;
    (void)res;
    return WEFT_OK;
}
