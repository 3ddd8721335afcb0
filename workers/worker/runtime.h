/*
 * runtime.h - how weft-worker runs a function: a runtime loads it once and
 * then calls it once per event.
 *
 *   shared_object  (runtime_so.c)   a .so exporting weft_handle, dlopen()ed
 *                                   into the worker;
 *   exec           (runtime_exec.c) a long-lived program in any language,
 *                                   spoken to over its stdin/stdout with the
 *                                   exec protocol (exec_proto.h).
 *
 * Runs in the weft-worker process only, single-threaded. Both constructors
 * return the same opaque type; the calls below dispatch on it.
 */
#ifndef WEFT_RUNTIME_H
#define WEFT_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include "frames.pb-c.h"
#include "log.h"
#include "weft_function.h"

typedef struct weft_runtime weft_runtime_t;

/* One call: the event in the C ABI's form, and the frame it was decoded
 * from (the exec runtime serializes the CloudEvent from the frame, so that
 * attribute types survive). */
typedef struct weft_call {
    const weft_event_t *ev;
    const Weft__V1__Invoke *inv;
} weft_call_t;

typedef struct weft_runtime_ops {
    int (*invoke)(weft_runtime_t *rt, const weft_call_t *call, weft_result_t *res, char *crash,
                  size_t crashlen);
    int (*idle_fd)(weft_runtime_t *rt);
    void (*idle_io)(weft_runtime_t *rt);
    void (*close)(weft_runtime_t *rt);
} weft_runtime_ops_t;

struct weft_runtime {
    const weft_runtime_ops_t *ops;
};

/* Loads the shared object at entry (an absolute path), resolves symbol
 * (NULL = "weft_handle"), checks weft_abi_version when exported and runs
 * weft_init when exported. NULL with errstr filled on any failure: all of
 * them are configuration errors. */
weft_runtime_t *weft_runtime_so_open(const char *entry, const char *symbol, char *errstr,
                                     size_t errlen);

/* Starts the program at entry (an absolute path to an executable file)
 * with the worker's environment, fds 0-2 on pipes and nothing else open.
 * NULL with errstr filled when it cannot be executed (a configuration
 * error). max_result_bytes bounds what a reply may carry. */
weft_runtime_t *weft_runtime_exec_open(const char *entry, const char *function,
                                       size_t max_result_bytes, char *errstr, size_t errlen);

/* Calls the function; returns its disposition as is (may be out of range).
 * When the function ended abnormally but the worker lives on (exec: the
 * program died or broke the protocol), crash receives the reason
 * ("exited", "signal:N", "bad_frame") and res->error the details; the
 * return value is then meaningless. */
static inline int weft_runtime_invoke(weft_runtime_t *rt, const weft_call_t *call,
                                      weft_result_t *res, char *crash, size_t crashlen)
{
    crash[0] = '\0';
    return rt->ops->invoke(rt, call, res, crash, crashlen);
}

/* An fd to watch while the worker waits for the next invocation (the exec
 * program's stderr), or -1; weft_runtime_idle_io() when it is readable. */
static inline int weft_runtime_idle_fd(weft_runtime_t *rt)
{
    return rt->ops->idle_fd ? rt->ops->idle_fd(rt) : -1;
}

static inline void weft_runtime_idle_io(weft_runtime_t *rt)
{
    if (rt->ops->idle_io)
        rt->ops->idle_io(rt);
}

/* Frees the runtime (the exec program is asked to exit: EOF on its stdin,
 * SIGKILL after 1 s). NULL is a no-op. */
static inline void weft_runtime_close(weft_runtime_t *rt)
{
    if (rt)
        rt->ops->close(rt);
}

#endif
