/*
 * loop.h - the event-loop skeleton of every single-threaded weft process
 * that supervises children: one epoll set whose registrations point at a
 * weft_io_t (weft_io.h), and a signalfd for the signals the process takes
 * (blocked, so they arrive only through the loop).
 *
 * Signals are turned into calls on the loop's thread: on_child for every
 * child reaped after SIGCHLD (waitpid(-1, WNOHANG) until none is left),
 * on_signal for every other signal. Handlers only set flags or do the
 * work a callback may do; nothing runs in signal context.
 */
#ifndef WEFT_LOOP_H
#define WEFT_LOOP_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "weft_io.h"

typedef struct weft_loop weft_loop_t;
typedef void (*weft_loop_signal_fn)(weft_loop_t *loop, int signo);
typedef void (*weft_loop_child_fn)(weft_loop_t *loop, pid_t pid, int status);

struct weft_loop {
    int epfd;
    weft_io_t sig;                 /* the signalfd (handled by the loop itself) */
    weft_loop_signal_fn on_signal; /* may be NULL */
    weft_loop_child_fn on_child;   /* may be NULL: children are reaped all the same */
    void *opaque;                  /* the owner's, for the callbacks */
    sigset_t mask, old_mask;
};

/* Blocks the n signals in the calling thread (pthread_sigmask: call it
 * before starting threads, which inherit the mask, so that none of them
 * takes the signals; weft_loop_close restores the mask), creates the epoll
 * set and the signalfd. Set on_signal, on_child and opaque before the
 * first weft_loop_run_once. 0, or -1 with errstr filled (nothing left
 * open). */
int weft_loop_open(weft_loop_t *loop, const int *signals, size_t n, char *errstr, size_t errlen);

/* Registers io for events (*cur: what it is registered for, 0 when it is
 * not; updated). An fd of -1 or an unchanged set is a no-op. 0 or -1. */
int weft_loop_watch(weft_loop_t *loop, weft_io_t *io, uint32_t *cur, uint32_t events);
/* Removes io from the set and marks it closed (io->fd = -1; the caller
 * closes the descriptor). */
void weft_loop_unwatch(weft_loop_t *loop, weft_io_t *io, uint32_t *cur);

/* Waits up to timeout_ms (-1: no bound) and calls the handler of each
 * ready registration. Returns how many were ready, 0 on timeout or EINTR,
 * -1 with errno on an epoll_wait() failure. */
int weft_loop_run_once(weft_loop_t *loop, int timeout_ms);

/* Closes the signalfd and the epoll set and restores the signal mask
 * weft_loop_open found. No-op on a loop already closed or that
 * weft_loop_open failed to open (not on a merely zeroed one). */
void weft_loop_close(weft_loop_t *loop);

#endif
