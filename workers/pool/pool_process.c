/*
 * pool_process.c - a worker's process: spawning it with posix_spawn (in
 * its own process group, from a clean environment), signalling its group,
 * logging how it ended, and dispatching queued invocations to ready
 * workers.
 *
 * Runs in the dispatcher, on its loop thread only (PR_SET_PDEATHSIG fires
 * when the spawning thread ends, and the loop thread lives as long as the
 * dispatcher).
 *
 * Invariants: at most max_workers processes exist (a slot is reused only
 * once its previous process was reaped); a pid and its group are
 * signalled only while the slot holds it unreaped.
 */

#include "pool.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"
#include "log.h"
#include "frames.pb-c.h"
#include "weft_io.h"
#include "pool_internal.h"

/* ---- processes: signals --------------------------------------------------- */

/* The worker leads its own process group: signalling the group reaches an
 * exec program and its children too. */
void worker_signal(pool_worker_t *wk, int sig)
{
    if (wk->pid <= 0)
        return;
    if (kill(-wk->pid, sig) != 0)
        (void)kill(wk->pid, sig);
}

/* ---- processes: start and end --------------------------------------------- */

int worker_spawn(weft_pool_t *pool, pool_worker_t *wk, uint64_t now, char *errstr, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
        snprintf(errstr, errlen, "socketpair() failed: %s", strerror(errno));
        return -1;
    }
    /* The worker reads its end with plain blocking reads. */
    int fl = fcntl(sv[1], F_GETFL);
    if (fl >= 0)
        (void)fcntl(sv[1], F_SETFL, fl & ~O_NONBLOCK);
    /* The file actions write fds 0, 1 and 3: the worker end must not sit on
     * one of them (it can when the caller runs with low fds closed). */
    if (sv[1] <= WEFT_CHANNEL_FD) {
        int fd = fcntl(sv[1], F_DUPFD_CLOEXEC, WEFT_CHANNEL_FD + 1);
        close(sv[1]);
        if (fd < 0) {
            snprintf(errstr, errlen, "fcntl(F_DUPFD) failed: %s", strerror(errno));
            close(sv[0]);
            return -1;
        }
        sv[1] = fd;
    }

    char max_result[24], memory[24], ppid[24];
    snprintf(max_result, sizeof(max_result), "%u", pool->max_result_bytes);
    snprintf(memory, sizeof(memory), "%u", pool->memory_mb);
    snprintf(ppid, sizeof(ppid), "%ld", (long)getpid());
    char *argv[24];
    int ac = 0;
    argv[ac++] = pool->worker_path;
    argv[ac++] = "--runtime";
    argv[ac++] = pool->runtime;
    argv[ac++] = "--entry";
    argv[ac++] = pool->entry;
    argv[ac++] = "--symbol";
    argv[ac++] = pool->symbol;
    argv[ac++] = "--function";
    argv[ac++] = pool->function;
    argv[ac++] = "--max-result-bytes";
    argv[ac++] = max_result;
    argv[ac++] = "--memory-mb";
    argv[ac++] = memory;
    argv[ac++] = "--ppid";
    argv[ac++] = ppid;
    if (pool->run_as_user) {
        argv[ac++] = "--run-as-user";
        argv[ac++] = pool->run_as_user;
    }
    if (pool->run_as_group) {
        argv[ac++] = "--run-as-group";
        argv[ac++] = pool->run_as_group;
    }
    if (pool->quiet)
        argv[ac++] = "--quiet";
    argv[ac] = NULL;

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t empty, dfl;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_adddup2(&fa, sv[1], WEFT_CHANNEL_FD);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
    posix_spawn_file_actions_addclosefrom_np(&fa, WEFT_CHANNEL_FD + 1);
    sigemptyset(&empty);
    sigemptyset(&dfl);
    static const int defaults[] = {SIGTERM, SIGINT,  SIGCHLD, SIGPIPE, SIGHUP,
                                   SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
        sigaddset(&dfl, defaults[i]);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);

    pid_t pid;
    int rc = posix_spawn(&pid, pool->worker_path, &fa, &attr, argv, pool->envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(sv[1]);
    if (rc != 0) {
        snprintf(errstr, errlen, "posix_spawn(%s) failed: %s", pool->worker_path, strerror(rc));
        close(sv[0]);
        return -1;
    }

    pool->n_spawns++;
    wk->pid = pid;
    wk->io.fd = sv[0];
    wk->started_ms = now;
    wk->idle_since_ms = now;
    wk->served = 0;
    wk->ready = 0;
    wk->stopping = wk->retiring = wk->term_sent = wk->killed = 0;
    wk->term_at_ms = wk->kill_at_ms = 0;
    wk->out_off = 0;
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &wk->io};
    if (epoll_ctl(pool->epfd, EPOLL_CTL_ADD, sv[0], &ee) < 0) {
        plog(pool, pid, WEFT_LOG_ERROR, "epoll_ctl() failed: %s", strerror(errno));
        worker_terminate(wk, now);
        return 0; /* the process exists: it is reaped like any other */
    }
    wk->ep_events = EPOLLIN;
    plog(pool, pid, WEFT_LOG_INFO, "worker started");
    return 0;
}

/* Starts up to n workers in free slots; returns how many started. */
int spawn_some(weft_pool_t *pool, int n, uint64_t now)
{
    int started = 0;
    for (int i = 0; i < pool->max_workers && started < n; i++) {
        pool_worker_t *wk = &pool->workers[i];
        if (wk->pid > 0)
            continue;
        char err[256];
        if (worker_spawn(pool, wk, now, err, sizeof(err)) < 0) {
            plog(pool, 0, WEFT_LOG_ERROR, "%s", err);
            snprintf(pool->spawn_error, sizeof(pool->spawn_error), "%s", err);
            pool->spawn_failed = 1;
            pool->hold_until_ms = now + next_backoff(pool);
            break;
        }
        started++;
    }
    return started;
}

void log_end(const weft_pool_t *pool, const pool_worker_t *wk, pid_t pid, int status, uint64_t now)
{
    double secs = (double)(now - wk->started_ms) / 1000.0;
    if (WIFEXITED(status))
        plog(pool, pid, WEXITSTATUS(status) == 0 || wk->retiring ? WEFT_LOG_INFO : WEFT_LOG_WARN,
             "worker exited with code %d after %.3f s", WEXITSTATUS(status), secs);
    else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        int ours = (wk->term_sent && sig == SIGTERM) || (wk->killed && sig == SIGKILL);
        plog(pool, pid, ours ? WEFT_LOG_INFO : WEFT_LOG_WARN,
             "worker killed by signal %d after %.3f s", sig, secs);
    } else
        plog(pool, pid, WEFT_LOG_WARN, "worker ended with status 0x%x after %.3f s",
             (unsigned)status, secs);
}

int worker_idle(const pool_worker_t *wk)
{
    return wk->pid > 0 && wk->io.fd >= 0 && wk->ready && !wk->inv && !wk->stopping;
}

/* Running an invocation, and fit to take more behind it. */
static int worker_busy(const pool_worker_t *wk)
{
    return wk->pid > 0 && wk->io.fd >= 0 && wk->ready && wk->inv && !wk->stopping;
}

/* How many invocations wk may hold now (pipelining, pool.h). */
static int worker_depth(const weft_pool_t *pool, const pool_worker_t *wk)
{
    if (pool->depth <= 1 || !pool->svc_known)
        return 1;
    uint64_t per = pool->svc16 / 16u;
    uint64_t fit = 1u + pool->budget_us / (per ? per : 1u);
    int d = fit < (uint64_t)pool->depth ? (int)fit : pool->depth;
    if (pool->max_requests && pool->max_requests - wk->served < (uint64_t)d)
        d = (int)(pool->max_requests - wk->served); /* never beyond its last */
    return d;
}

/* Hands waiting invocations to workers: one to each idle ready worker
 * first; then, if invocations still wait and `more` (a worker that has just
 * delivered Results, so it is alive and fast) has drained to half its
 * depth, queues a fair share of them behind its running invocation. Only
 * that worker: one whose invocation has been running for a while may be
 * stuck in it, and what is queued behind it would wait. */
void pool_dispatch(weft_pool_t *pool, pool_worker_t *more)
{
    if (pool->quarantined || !pool->head)
        return;
    uint64_t now = now_us();
    int busy = 0;
    for (int i = 0; i < pool->max_workers && pool->head; i++) {
        pool_worker_t *wk = &pool->workers[i];
        if (worker_idle(wk)) {
            worker_push(wk, queue_pop(pool), now);
            worker_flush(wk);
        }
    }
    if (!more || !pool->head || !worker_busy(more))
        return;
    int depth = worker_depth(pool, more);
    if (more->n_inv > depth / 2)
        return;
    for (int i = 0; i < pool->max_workers; i++)
        busy += worker_busy(&pool->workers[i]);
    /* A fair share, so that one worker does not take a short backlog
     * while the others run dry. */
    size_t share = (pool->queued + (size_t)busy - 1) / (size_t)busy;
    int added = 0;
    while (pool->head && more->n_inv < depth && (size_t)added < share &&
           pool->head->frame_len <= PIPELINE_MAX_FRAME &&
           more->queued_bytes + pool->head->frame_len <= PIPELINE_MAX_BYTES) {
        worker_push(more, queue_pop(pool), now);
        added++;
    }
    if (added)
        worker_flush(more);
}
