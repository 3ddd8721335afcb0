/*
 * runtime_so.c - the shared-object runtime of weft-worker: a function is a
 * .so exporting weft_handle (weft_function.h), loaded once per worker.
 *
 * Runs in the weft-worker process only. RTLD_NOW so that a missing symbol is
 * a load-time configuration error (exit 2, no fast respawn), not a crash in
 * the middle of an invocation; RTLD_LOCAL so two functions' private symbols
 * never interpose on each other or on the worker.
 *
 * The object is never dlclose()d: the worker process ends soon after it stops
 * using it, and unloading would run destructors of code that may not expect
 * to be unloaded.
 */
#include "runtime.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct so_runtime {
    weft_runtime_t base; /* first */
    void *dl;
    weft_handle_fn handle;
} so_runtime_t;

static int so_invoke(weft_runtime_t *rt, const weft_call_t *call, weft_result_t *res, char *crash,
                     size_t crashlen)
{
    (void)crash;
    (void)crashlen;
    return ((so_runtime_t *)rt)->handle(call->ev, res);
}

static void so_close(weft_runtime_t *rt)
{
    free(rt);
}

static const weft_runtime_ops_t so_ops = {
    .invoke = so_invoke,
    .close = so_close,
};

weft_runtime_t *weft_runtime_so_open(const char *entry, const char *symbol, char *errstr,
                                     size_t errlen)
{
    if (!symbol || !*symbol)
        symbol = "weft_handle";
    if (!entry || entry[0] != '/') {
        /* A relative name would go through the library search path. */
        snprintf(errstr, errlen, "entry must be an absolute path: %s", entry ? entry : "(none)");
        return NULL;
    }
    void *dl = dlopen(entry, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(errstr, errlen, "dlopen() failed: %s", dlerror());
        return NULL;
    }
    const int *abi = dlsym(dl, "weft_abi_version");
    if (abi && *abi != WEFT_ABI_VERSION) {
        snprintf(errstr, errlen, "function has abi version %d, this worker runs version %d", *abi,
                 WEFT_ABI_VERSION);
        return NULL;
    }
    weft_handle_fn handle;
    /* POSIX guarantees object and function pointers convert through dlsym. */
    *(void **)&handle = dlsym(dl, symbol);
    if (!handle) {
        snprintf(errstr, errlen, "dlsym(%s) failed: %s", symbol, dlerror());
        return NULL;
    }
    weft_init_fn init;
    *(void **)&init = dlsym(dl, "weft_init");
    if (init) {
        int rc = init();
        if (rc != 0) {
            snprintf(errstr, errlen, "weft_init() returned %d", rc);
            return NULL;
        }
    }
    so_runtime_t *rt = calloc(1, sizeof(*rt));
    if (!rt) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    rt->base.ops = &so_ops;
    rt->dl = dl;
    rt->handle = handle;
    return &rt->base;
}
