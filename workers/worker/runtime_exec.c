/*
 * runtime_exec.c - the exec runtime of weft-worker: the function is a
 * long-lived program in any language, started once per worker and spoken to
 * over its stdin/stdout with the exec protocol (exec_proto.h,
 * workers/proto/EXEC_PROTOCOL.md). One program instance serves many events, one at a time.
 *
 * Runs in the weft-worker process only, single-threaded. The worker is a
 * fresh exec image holding no secrets and no threads, so a plain fork()
 * here is safe; the child sets PR_SET_PDEATHSIG so that a worker killed by
 * the pool (deadline, shutdown) never leaves its program behind, and it
 * stays in the worker's process group, which is what the pool signals.
 *
 * Invariants:
 *  - the program has fds 0, 1 and 2 (pipes to the worker) and nothing
 *    else: every other fd in the worker is close-on-exec;
 *  - the worker never blocks writing a request while the program blocks
 *    writing its stderr or reply: all three pipes are non-blocking and
 *    served by one poll() loop;
 *  - the program's stderr is relayed line by line into the log, prefixed
 *    `fn[pid]` and tagged function=NAME, while busy and while idle;
 *  - a program that dies, or answers with something that is not a reply
 *    frame, ends the invocation with a crash reason ("exited", "signal:N",
 *    "bad_frame") and is started again at the next invocation, not in a
 *    loop: a program that cannot stay up shows as a crash per event, which
 *    the pool's crash-storm brake turns into a quarantine.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec_proto.h"
#include "channel.h"
#include "clock.h"
#include "runtime.h"
#include "worker_log.h"

#define ERRLINE_MAX 4000
/* How long a program may take to exit after EOF on its stdin. */
#define EXIT_GRACE_MS 1000
/* Room in a reply beyond the data: base64 or JSON escaping of the data,
 * the error text, the member names. */
#define REPLY_SLACK (64u * 1024u)

extern char **environ;

typedef struct exec_runtime {
    weft_runtime_t base; /* first */
    char *entry;
    char *function;
    size_t max_result;
    size_t max_frame;
    pid_t pid; /* 0: no program running */
    int in_fd, out_fd, err_fd;
    weft_buf_t errline;
    weft_buf_t req;
    weft_buf_t rep;
} exec_runtime_t;

static uint64_t mono_ms(void)
{
    return weft_clock_mono_ms();
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* ---- stderr relay --------------------------------------------------------- */

static void relay_flush(exec_runtime_t *rt)
{
    weft_buf_t *b = &rt->errline;
    if (!b->len)
        return;
    size_t n = b->len;
    if (n && b->data[n - 1] == '\r')
        n--;
    weft_worker_log("fn", (long)rt->pid, WEFT_LOG_INFO, "%.*s", (int)n, (const char *)b->data);
    b->len = 0;
}

static void relay_bytes(exec_runtime_t *rt, const uint8_t *p, size_t len)
{
    weft_buf_t *b = &rt->errline;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            relay_flush(rt);
            continue;
        }
        if (weft_buf_reserve(b, 1) < 0)
            return;
        b->data[b->len++] = p[i];
        if (b->len >= ERRLINE_MAX)
            relay_flush(rt); /* an endless line is logged in pieces */
    }
}

/* Reads what the program wrote on stderr; closes the pipe at EOF. */
static void relay_read(exec_runtime_t *rt)
{
    uint8_t buf[8192];
    for (;;) {
        ssize_t r = read(rt->err_fd, buf, sizeof(buf));
        if (r > 0) {
            relay_bytes(rt, buf, (size_t)r);
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        relay_flush(rt);
        close_fd(&rt->err_fd);
        return;
    }
}

/* ---- the program's life --------------------------------------------------- */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* fork + exec of the program. The classic close-on-exec status pipe tells
 * a failed exec (ENOENT, EACCES, ENOEXEC) from a program that started. */
static int prog_start(exec_runtime_t *rt, char *errstr, size_t errlen)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, st[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0 ||
        pipe2(st, O_CLOEXEC) < 0) {
        snprintf(errstr, errlen, "pipe2() failed: %s", strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errstr, errlen, "fork() failed: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        /* Child: only async-signal-safe calls until execve. */
        int e;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || getppid() != parent)
            _exit(127);
        if (dup2(in[0], 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
            goto child_fail;
        /* The worker ignores SIGPIPE; an ignored disposition would survive
         * exec. */
        signal(SIGPIPE, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        char *argv[] = {rt->entry, NULL};
        execve(rt->entry, argv, environ);
    child_fail:
        e = errno;
        if (write(st[1], &e, sizeof(e)) < 0)
            _exit(127);
        _exit(127);
    }
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&err[1]);
    close_fd(&st[1]);
    int e = 0;
    ssize_t r;
    do
        r = read(st[0], &e, sizeof(e));
    while (r < 0 && errno == EINTR);
    close_fd(&st[0]);
    if (r > 0) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        snprintf(errstr, errlen, "cannot execute %s: %s", rt->entry, strerror(e));
        goto fail;
    }
    rt->pid = pid;
    rt->in_fd = in[1];
    rt->out_fd = out[0];
    rt->err_fd = err[0];
    set_nonblock(rt->in_fd);
    set_nonblock(rt->out_fd);
    set_nonblock(rt->err_fd);
    rt->rep.len = 0;
    rt->errline.len = 0;
    weft_worker_log("worker", (long)getpid(), WEFT_LOG_INFO,
                    "program started program_pid=%ld entry=%s", (long)pid, rt->entry);
    return 0;
fail:
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&out[0]);
    close_fd(&out[1]);
    close_fd(&err[0]);
    close_fd(&err[1]);
    close_fd(&st[0]);
    close_fd(&st[1]);
    return -1;
}

/* Waits up to grace_ms for the program to end (relaying its last stderr
 * lines, which usually explain why), then SIGKILLs it. Fills *status. */
static void prog_reap(exec_runtime_t *rt, uint64_t grace_ms, int *status)
{
    uint64_t end = mono_ms() + grace_ms;
    close_fd(&rt->in_fd);
    close_fd(&rt->out_fd);
    *status = 0;
    for (;;) {
        pid_t r = waitpid(rt->pid, status, WNOHANG);
        if (r == rt->pid || (r < 0 && errno != EINTR))
            break;
        uint64_t now = mono_ms();
        if (now >= end) {
            kill(rt->pid, SIGKILL);
            while (waitpid(rt->pid, status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        if (rt->err_fd >= 0) {
            struct pollfd pfd = {.fd = rt->err_fd, .events = POLLIN};
            int left = (int)(end - now);
            if (poll(&pfd, 1, left < 10 ? left : 10) > 0)
                relay_read(rt);
        } else {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    if (rt->err_fd >= 0) {
        relay_read(rt); /* what is already in the pipe */
        relay_flush(rt);
        close_fd(&rt->err_fd);
    }
    rt->pid = 0;
}

/* Describes how the program ended, into reason/error. */
static void describe_end(int status, char *reason, size_t rlen, char *error, size_t elen,
                         const char *when)
{
    if (WIFSIGNALED(status)) {
        snprintf(reason, rlen, "signal:%d", WTERMSIG(status));
        snprintf(error, elen, "function program killed by signal %d (%s) %s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)), when);
    } else {
        snprintf(reason, rlen, "exited");
        snprintf(error, elen, "function program exited with code %d %s",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1, when);
    }
}

static void prog_kill(exec_runtime_t *rt)
{
    if (rt->pid > 0) {
        kill(rt->pid, SIGKILL);
        int status;
        prog_reap(rt, 1000, &status);
    }
}

/* ---- one invocation ------------------------------------------------------- */

/* Looks for a whole reply frame at the start of rt->rep. 1: *plen and
 * *hlen (header length) set; 0: need more; -1: not a frame (errstr). */
static int reply_peek(exec_runtime_t *rt, size_t *hlen, size_t *plen, char *errstr, size_t errlen)
{
    const uint8_t *p = rt->rep.data;
    size_t n = rt->rep.len, i = 0;
    uint64_t v = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9' && i < WEFT_EXEC_LEN_DIGITS) {
        v = v * 10 + (uint64_t)(p[i] - '0');
        i++;
    }
    if (i == n)
        return 0;
    if (i == 0 || p[i] != '\n') {
        snprintf(errstr, errlen, "reply does not start with a decimal length line");
        return -1;
    }
    *hlen = i + 1;
    *plen = (size_t)v;
    if (v > rt->max_frame)
        return 2; /* too large: the caller decides */
    if (n < *hlen + *plen + 1)
        return 0;
    if (p[*hlen + *plen] != '\n') {
        snprintf(errstr, errlen, "reply of %zu bytes is not followed by a newline", *plen);
        return -1;
    }
    return 1;
}

static int exec_invoke(weft_runtime_t *base, const weft_call_t *call, weft_result_t *res,
                       char *crash, size_t crashlen)
{
    exec_runtime_t *rt = (exec_runtime_t *)base;
    char err[512];

    if (rt->pid == 0 && prog_start(rt, err, sizeof(err)) < 0) {
        snprintf(crash, crashlen, "exited");
        snprintf(res->error, sizeof(res->error), "function program could not be started: %s", err);
        return WEFT_FAIL;
    }

    rt->req.len = 0;
    char hdr[32];
    weft_buf_t body = {0};
    if (weft_exec_request(call->inv, &body) < 0) {
        weft_buf_free(&body);
        snprintf(crash, crashlen, "memory");
        snprintf(res->error, sizeof(res->error), "out of memory building the request");
        return WEFT_FAIL;
    }
    int hn = snprintf(hdr, sizeof(hdr), "%zu\n", body.len);
    if (weft_buf_append(&rt->req, hdr, (size_t)hn) < 0 ||
        weft_buf_append(&rt->req, body.data, body.len) < 0 ||
        weft_buf_append(&rt->req, "\n", 1) < 0) {
        weft_buf_free(&body);
        snprintf(crash, crashlen, "memory");
        snprintf(res->error, sizeof(res->error), "out of memory building the request");
        return WEFT_FAIL;
    }
    weft_buf_free(&body);

    size_t sent = 0, hlen = 0, plen = 0;
    int ended = 0, bad = 0, too_large = 0;
    rt->rep.len = 0;
    for (;;) {
        int pk = reply_peek(rt, &hlen, &plen, err, sizeof(err));
        if (pk == 1)
            break;
        if (pk < 0) {
            bad = 1;
            break;
        }
        if (pk == 2) {
            too_large = 1;
            break;
        }
        struct pollfd pfd[3];
        int n = 0, in_i = -1, out_i = -1, err_i = -1;
        if (rt->in_fd >= 0 && sent < rt->req.len) {
            in_i = n;
            pfd[n++] = (struct pollfd){.fd = rt->in_fd, .events = POLLOUT};
        }
        if (rt->out_fd >= 0) {
            out_i = n;
            pfd[n++] = (struct pollfd){.fd = rt->out_fd, .events = POLLIN};
        }
        if (rt->err_fd >= 0) {
            err_i = n;
            pfd[n++] = (struct pollfd){.fd = rt->err_fd, .events = POLLIN};
        }
        if (out_i < 0) {
            ended = 1;
            break;
        }
        if (poll(pfd, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, sizeof(err), "poll() failed: %s", strerror(errno));
            bad = 1;
            break;
        }
        if (err_i >= 0 && pfd[err_i].revents)
            relay_read(rt);
        if (in_i >= 0 && pfd[in_i].revents) {
            ssize_t w = write(rt->in_fd, rt->req.data + sent, rt->req.len - sent);
            if (w > 0)
                sent += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                close_fd(&rt->in_fd); /* EPIPE: the program is gone or closed stdin */
        }
        if (pfd[out_i].revents) {
            if (weft_buf_reserve(&rt->rep, 64 * 1024) < 0) {
                snprintf(crash, crashlen, "memory");
                snprintf(res->error, sizeof(res->error), "out of memory reading the reply");
                prog_kill(rt);
                return WEFT_FAIL;
            }
            ssize_t r = read(rt->out_fd, rt->rep.data + rt->rep.len, rt->rep.cap - rt->rep.len);
            if (r > 0)
                rt->rep.len += (size_t)r;
            else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                close_fd(&rt->out_fd);
        }
    }

    if (ended) {
        int status;
        prog_reap(rt, EXIT_GRACE_MS, &status);
        describe_end(status, crash, crashlen, res->error, sizeof(res->error),
                     "in the middle of an invocation");
        weft_worker_log("worker", (long)getpid(), WEFT_LOG_WARN, "%s", res->error);
        return WEFT_FAIL;
    }
    if (bad) {
        snprintf(crash, crashlen, "bad_frame");
        snprintf(res->error, sizeof(res->error), "bad reply from the function program: %s", err);
        weft_worker_log("worker", (long)getpid(), WEFT_LOG_WARN, "%s, restarting it", res->error);
        prog_kill(rt);
        return WEFT_FAIL;
    }
    if (too_large) {
        /* The stream cannot be resynchronised without reading it all. */
        snprintf(res->error, sizeof(res->error),
                 WEFT_POOL_RESULT_TOO_LARGE "reply of %zu bytes exceeds the limit of %zu for "
                                            "max_result_bytes %zu",
                 plen, rt->max_frame, rt->max_result);
        weft_worker_log("worker", (long)getpid(), WEFT_LOG_WARN, "%s, restarting the program",
                        res->error);
        prog_kill(rt);
        return WEFT_FAIL;
    }

    int disp = weft_exec_reply_parse(rt->rep.data + hlen, plen, res, err, sizeof(err));
    size_t used = hlen + plen + 1;
    if (disp < 0) {
        snprintf(crash, crashlen, "bad_frame");
        snprintf(res->error, sizeof(res->error), "bad reply from the function program: %s", err);
        weft_worker_log("worker", (long)getpid(), WEFT_LOG_WARN, "%s, restarting it", res->error);
        prog_kill(rt);
        return WEFT_FAIL;
    }
    if (rt->rep.len > used || sent < rt->req.len) {
        /* Answered before reading the whole request, or wrote more than one
         * reply: the result stands, but the stream is out of step. */
        weft_worker_log("worker", (long)getpid(), WEFT_LOG_WARN,
                        "function program is out of step with the protocol (%s), restarting it",
                        rt->rep.len > used ? "extra bytes after its reply"
                                           : "replied before reading the request");
        prog_kill(rt);
    }
    rt->rep.len = 0;
    weft_buf_trim(&rt->rep, 1024 * 1024);
    weft_buf_trim(&rt->req, 0);
    rt->req.len = 0;
    return disp;
}

/* ---- idle and close ------------------------------------------------------- */

static int exec_idle_fd(weft_runtime_t *base)
{
    return ((exec_runtime_t *)base)->err_fd;
}

static void exec_idle_io(weft_runtime_t *base)
{
    exec_runtime_t *rt = (exec_runtime_t *)base;
    relay_read(rt);
    if (rt->err_fd >= 0 || rt->pid == 0)
        return;
    /* stderr closed: usually the program ended while idle. */
    int status;
    pid_t r = waitpid(rt->pid, &status, WNOHANG);
    if (r == rt->pid) {
        rt->pid = 0;
        close_fd(&rt->in_fd);
        close_fd(&rt->out_fd);
        char reason[32], error[256];
        describe_end(status, reason, sizeof(reason), error, sizeof(error),
                     "while idle; restarting it at the next invocation");
        weft_worker_log("worker", (long)getpid(), WEFT_LOG_WARN, "%s", error);
    }
}

static void exec_close(weft_runtime_t *base)
{
    exec_runtime_t *rt = (exec_runtime_t *)base;
    if (rt->pid > 0) {
        int status;
        prog_reap(rt, EXIT_GRACE_MS, &status); /* EOF on stdin asks it to exit */
    }
    weft_buf_free(&rt->errline);
    weft_buf_free(&rt->req);
    weft_buf_free(&rt->rep);
    free(rt->entry);
    free(rt->function);
    free(rt);
}

static const weft_runtime_ops_t exec_ops = {
    .invoke = exec_invoke,
    .idle_fd = exec_idle_fd,
    .idle_io = exec_idle_io,
    .close = exec_close,
};

weft_runtime_t *weft_runtime_exec_open(const char *entry, const char *function,
                                       size_t max_result_bytes, char *errstr, size_t errlen)
{
    if (!entry || entry[0] != '/') {
        snprintf(errstr, errlen, "entry must be an absolute path: %s", entry ? entry : "(none)");
        return NULL;
    }
    if (access(entry, X_OK) != 0) {
        snprintf(errstr, errlen, "function program %s: %s", entry, strerror(errno));
        return NULL;
    }
    exec_runtime_t *rt = calloc(1, sizeof(*rt));
    if (!rt || !(rt->entry = strdup(entry)) || !(rt->function = strdup(function ? function : ""))) {
        if (rt)
            free(rt->entry);
        free(rt);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    rt->base.ops = &exec_ops;
    rt->max_result = max_result_bytes;
    rt->max_frame = max_result_bytes * 4 + REPLY_SLACK;
    if (rt->max_frame > WEFT_FRAME_MAX)
        rt->max_frame = WEFT_FRAME_MAX;
    rt->in_fd = rt->out_fd = rt->err_fd = -1;
    /* Writing to a program that died must be an EPIPE, not our death. */
    signal(SIGPIPE, SIG_IGN);
    if (prog_start(rt, errstr, errlen) < 0) {
        exec_close(&rt->base);
        return NULL;
    }
    return &rt->base;
}
