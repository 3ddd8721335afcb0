/*
 * runtime.h - how weft-worker runs a function: the runtime loads it once and
 * then calls it once per event. Only the shared-object runtime exists today
 * (runtime_so.c); an exec runtime would be a second constructor returning
 * the same opaque type.
 *
 * Runs in the weft-worker process only, single-threaded.
 */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <stddef.h>

#include "weft_function.h"

typedef struct weft_runtime weft_runtime_t;

/* Loads the shared object at entry (an absolute path), resolves symbol
 * (NULL = "weft_handle"), checks weft_abi_version when exported and runs
 * weft_init when exported. NULL with errstr filled on any failure: all of
 * them are configuration errors. */
weft_runtime_t *weft_runtime_so_open(const char *entry, const char *symbol, char *errstr,
                                     size_t errlen);

/* Calls the function; returns its disposition as is (may be out of range). */
int weft_runtime_invoke(weft_runtime_t *rt, const weft_event_t *ev, weft_result_t *res);

/* Frees the runtime. NULL is a no-op. */
void weft_runtime_close(weft_runtime_t *rt);

#endif
