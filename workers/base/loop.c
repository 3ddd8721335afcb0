/*
 * loop.c - the epoll + signalfd loop skeleton (see loop.h).
 *
 * Runs in the dispatcher's loop thread, `weft invoke` and the pool
 * benchmark. Invariant: every registration's data.ptr is a weft_io_t
 * whose handler is set, the signalfd's included (its handler is here).
 */
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_signalfd(weft_io_t *io, uint32_t events)
{
    (void)events;
    weft_loop_t *loop = (weft_loop_t *)((char *)io - offsetof(weft_loop_t, sig));
    struct signalfd_siginfo si;
    int child = 0;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD)
            child = 1;
        else if (loop->on_signal)
            loop->on_signal(loop, (int)si.ssi_signo);
    }
    /* SIGCHLD coalesces: one siginfo may stand for many ended children,
     * so reap until none is left rather than once per siginfo. */
    if (child) {
        int st;
        pid_t pid;
        while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
            if (loop->on_child)
                loop->on_child(loop, pid, st);
    }
}

int weft_loop_open(weft_loop_t *loop, const int *signals, size_t n, char *errstr, size_t errlen)
{
    memset(loop, 0, sizeof(*loop));
    loop->epfd = loop->sig.fd = -1;
    sigemptyset(&loop->mask);
    for (size_t i = 0; i < n; i++)
        sigaddset(&loop->mask, signals[i]);
    pthread_sigmask(SIG_BLOCK, &loop->mask, &loop->old_mask);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        snprintf(errstr, errlen, "epoll_create1() failed: %s", strerror(errno));
        weft_loop_close(loop);
        return -1;
    }
    loop->sig.fd = signalfd(-1, &loop->mask, SFD_NONBLOCK | SFD_CLOEXEC);
    loop->sig.handle = on_signalfd;
    uint32_t cur = 0;
    if (loop->sig.fd < 0 || weft_loop_watch(loop, &loop->sig, &cur, EPOLLIN) != 0) {
        snprintf(errstr, errlen, "signalfd() failed: %s", strerror(errno));
        weft_loop_close(loop);
        return -1;
    }
    return 0;
}

int weft_loop_watch(weft_loop_t *loop, weft_io_t *io, uint32_t *cur, uint32_t events)
{
    if (io->fd < 0 || *cur == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = io};
    if (epoll_ctl(loop->epfd, *cur ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, io->fd, &ev) != 0)
        return -1;
    *cur = events;
    return 0;
}

void weft_loop_unwatch(weft_loop_t *loop, weft_io_t *io, uint32_t *cur)
{
    if (io->fd >= 0 && *cur)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    *cur = 0;
    io->fd = -1;
}

int weft_loop_run_once(weft_loop_t *loop, int timeout_ms)
{
    struct epoll_event evs[64];
    int n = epoll_wait(loop->epfd, evs, 64, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -1;
    for (int i = 0; i < n; i++) {
        weft_io_t *io = evs[i].data.ptr;
        io->handle(io, evs[i].events);
    }
    return n;
}

void weft_loop_close(weft_loop_t *loop)
{
    if (loop->epfd < 0 && loop->sig.fd < 0)
        return;
    if (loop->sig.fd >= 0)
        close(loop->sig.fd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    loop->sig.fd = loop->epfd = -1;
    pthread_sigmask(SIG_SETMASK, &loop->old_mask, NULL);
}
