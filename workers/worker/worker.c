/*
 * worker.c - weft-worker, the process a pool starts to run one function.
 *
 *   weft-worker --runtime shared_object|exec --entry /abs/path
 *               [--symbol weft_handle] [--max-result-bytes N]
 *               [--function NAME] [--memory-mb N] [--ppid PID]
 *               [--run-as-user USER] [--run-as-group GROUP]
 *
 * Runs as its own process, spawned by the dispatcher (pool.c) with the
 * channel on fd 3, stdin on /dev/null, stdout on stderr. It loads the
 * function once and says so with a ready frame (a Result with seq 0), then
 * answers each Invoke frame with exactly one Result frame carrying the same
 * seq, strictly one at a time and in the order received (the pool may send
 * several Invokes ahead; they wait in the channel). It never touches a
 * broker or the database, and holds no secrets: it is a fresh exec image
 * (nothing of the dispatcher's memory), its environment is the function's
 * allow-list built by the pool, and it has no fds but 0-3.
 *
 * Hygiene, in this order, before any function code is loaded: run-as
 * group/user (setgroups, setgid, setuid; refusing to go on if root could
 * be regained), PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG, RLIMIT_CORE 0,
 * RLIMIT_AS when a memory limit is set, the channel made close-on-exec.
 *
 * Exit codes (channel.h): 0 channel closed, 1 channel I/O error,
 * 2 configuration error (the function cannot be loaded or initialised),
 * 3 undecodable frame from the dispatcher, 4 out of memory outside the
 * function. A function that crashes takes the process with it; the pool
 * reports that and starts a new worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "exec_proto.h"
#include "ce_attr.h"
#include "channel.h"
#include "frame.h"
#include "frames.pb-c.h"
#include "log.h"
#include "runtime.h"
#include "worker_log.h"

#if defined(__SANITIZE_ADDRESS__)
#define WORKER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WORKER_ASAN 1
#endif
#endif

/* The worker's own lines: `worker[pid] ... function=NAME`. */
#define wlog(level, ...) weft_worker_log("worker", (long)getpid(), level, __VA_ARGS__)

static void die_nomem(void) __attribute__((noreturn));
static void die_nomem(void)
{
    wlog(WEFT_LOG_ERROR, "out of memory");
    _exit(WEFT_WORKER_EXIT_NOMEM);
}

/* protobuf-c returns NULL both for undecodable input and for a failed
 * allocation; this allocator tells the two apart, so that running out of
 * memory is reported as such (exit 4) and not as a protocol error. */
static int g_alloc_failed;

static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    void *p = malloc(size);
    if (!p)
        g_alloc_failed = 1;
    return p;
}

static void pb_free(void *data, void *p)
{
    (void)data;
    free(p);
}

static ProtobufCAllocator g_pb_allocator = {pb_alloc, pb_free, NULL};

/* ---- CloudEvent -> weft_event_t ---------------------------------------- */

/* Strings made for one invocation, freed after it. */
typedef struct scratch {
    char **strs;
    size_t n, cap;
} scratch_t;

static char *scratch_keep(scratch_t *s, char *p)
{
    if (!p)
        die_nomem();
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **q = realloc(s->strs, cap * sizeof(*q));
        if (!q)
            die_nomem();
        s->strs = q;
        s->cap = cap;
    }
    s->strs[s->n++] = p;
    return p;
}

static void scratch_free(scratch_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->strs[i]);
    s->n = 0;
}

/* The attribute's text as a function sees it: weft_ce_attr_text's, the
 * same a trigger filter matches; "" when it has none. */
static const char *attr_string(const Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue *v,
                               scratch_t *s)
{
    const char *text;
    char *owned;
    int rc = weft_ce_attr_text(v, &text, &owned);
    if (rc < 0)
        die_nomem();
    if (rc == 0)
        return "";
    if (owned)
        scratch_keep(s, owned);
    return text;
}

static const char *str_or_empty(const char *p)
{
    return p ? p : "";
}

/* Fills ev from the Invoke; ev points into inv and into scratch, which must
 * outlive the call. *attrs_out is malloc()ed (caller frees). */
static void event_from_invoke(const Weft__V1__Invoke *inv, weft_event_t *ev,
                              weft_attr_t **attrs_out, scratch_t *s)
{
    const Io__Cloudevents__V1__CloudEvent *ce = inv->event;
    memset(ev, 0, sizeof(*ev));
    ev->id = str_or_empty(ce->id);
    ev->source = str_or_empty(ce->source);
    ev->specversion = str_or_empty(ce->spec_version);
    ev->type = str_or_empty(ce->type);
    ev->subject = ev->time = ev->datacontenttype = "";
    ev->trigger = str_or_empty(inv->trigger);
    ev->attempt = inv->attempt;
    ev->deadline_ms = inv->deadline_ms;

    weft_attr_t *attrs = NULL;
    size_t n = 0;
    if (ce->n_attributes) {
        attrs = calloc(ce->n_attributes, sizeof(*attrs));
        if (!attrs)
            die_nomem();
    }
    for (size_t i = 0; i < ce->n_attributes; i++) {
        const Io__Cloudevents__V1__CloudEvent__AttributesEntry *e = ce->attributes[i];
        if (!e || !e->key || !*e->key)
            continue;
        const char *val = attr_string(e->value, s);
        if (strcmp(e->key, "subject") == 0)
            ev->subject = val;
        else if (strcmp(e->key, "time") == 0)
            ev->time = val;
        else if (strcmp(e->key, "datacontenttype") == 0)
            ev->datacontenttype = val;
        else {
            attrs[n].name = e->key;
            attrs[n].value = val;
            n++;
        }
    }
    ev->attrs = attrs;
    ev->n_attrs = n;
    *attrs_out = attrs;

    switch (ce->data_case) {
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA:
        ev->data = ce->binary_data.data;
        ev->data_len = ce->binary_data.len;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA:
        ev->data = (const uint8_t *)str_or_empty(ce->text_data);
        ev->data_len = strlen((const char *)ev->data);
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA:
        /* The packed inner message; its type is the Any's type_url. */
        if (ce->proto_data) {
            ev->data = ce->proto_data->value.data;
            ev->data_len = ce->proto_data->value.len;
        }
        break;
    default:
        break;
    }
}

/* ---- the loop ------------------------------------------------------------ */

typedef struct worker_opts {
    const char *runtime;
    const char *entry;
    const char *symbol;
    const char *function;
    uint64_t max_result_bytes;
    uint64_t memory_mb;
    long ppid;
    const char *run_as_user;
    const char *run_as_group;
} worker_opts_t;

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

static void usage_exit(const char *why) __attribute__((noreturn));
static void usage_exit(const char *why)
{
    wlog(WEFT_LOG_ERROR, "%s", why);
    fprintf(stderr, "usage: weft-worker --runtime shared_object|exec --entry /abs/path "
                    "[--symbol NAME] [--max-result-bytes N] [--function NAME] "
                    "[--memory-mb N] [--ppid PID] [--run-as-user USER] "
                    "[--run-as-group GROUP] [--quiet]\n");
    exit(WEFT_WORKER_EXIT_CONFIG);
}

static void parse_args(int argc, char **argv, worker_opts_t *o)
{
    static const struct option longopts[] = {
        {"runtime", required_argument, NULL, 'r'},
        {"entry", required_argument, NULL, 'e'},
        {"symbol", required_argument, NULL, 's'},
        {"max-result-bytes", required_argument, NULL, 'm'},
        {"function", required_argument, NULL, 'f'},
        {"memory-mb", required_argument, NULL, 'M'},
        {"ppid", required_argument, NULL, 'p'},
        {"run-as-user", required_argument, NULL, 'u'},
        {"run-as-group", required_argument, NULL, 'g'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->runtime = "shared_object";
    o->max_result_bytes = WEFT_POOL_DEFAULT_MAX_RESULT;
    o->ppid = -1;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'r':
            o->runtime = optarg;
            break;
        case 'e':
            o->entry = optarg;
            break;
        case 's':
            o->symbol = optarg;
            break;
        case 'f':
            o->function = optarg;
            break;
        case 'm':
            if (parse_u64(optarg, &v) < 0 || v == 0 || v > WEFT_FRAME_MAX)
                usage_exit("invalid --max-result-bytes");
            o->max_result_bytes = v;
            break;
        case 'M':
            if (parse_u64(optarg, &v) < 0 || v > (1u << 30))
                usage_exit("invalid --memory-mb");
            o->memory_mb = v;
            break;
        case 'p':
            if (parse_u64(optarg, &v) < 0 || v < 1 || v > INT32_MAX)
                usage_exit("invalid --ppid");
            o->ppid = (long)v;
            break;
        case 'u':
            o->run_as_user = *optarg ? optarg : NULL;
            break;
        case 'g':
            o->run_as_group = *optarg ? optarg : NULL;
            break;
        case 'q':
            weft_worker_log_quiet(1);
            break;
        default:
            usage_exit("invalid arguments");
        }
    }
    if (optind != argc)
        usage_exit("unexpected argument");
    if (strcmp(o->runtime, "shared_object") != 0 && strcmp(o->runtime, "exec") != 0)
        usage_exit("unsupported runtime (shared_object or exec)");
    if (!o->entry)
        usage_exit("--entry is required");
}

/* Numeric ids are taken as they are; names go through NSS (files in a
 * container). 0 or -1 with the reason logged. */
static int lookup_user(const char *name, uid_t *uid, gid_t *gid)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(name, &end, 10);
    if (*name && !*end && !errno) {
        struct passwd *pw = getpwuid((uid_t)v);
        *uid = (uid_t)v;
        *gid = pw ? pw->pw_gid : (gid_t)v;
        return 0;
    }
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        wlog(WEFT_LOG_ERROR, "run-as user %s does not exist", name);
        return -1;
    }
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

static int lookup_group(const char *name, gid_t *gid)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(name, &end, 10);
    if (*name && !*end && !errno) {
        *gid = (gid_t)v;
        return 0;
    }
    struct group *gr = getgrnam(name);
    if (!gr) {
        wlog(WEFT_LOG_ERROR, "run-as group %s does not exist", name);
        return -1;
    }
    *gid = gr->gr_gid;
    return 0;
}

/* Drops to the function's user and group. Done in the worker, before the
 * function is loaded, because posix_spawn has no portable way to change
 * ids; the dispatcher must hold CAP_SETUID/CAP_SETGID (normally: run as
 * root) for it to work. Supplementary groups are replaced by the one
 * group, and the drop is verified: a worker that could become root again
 * refuses to run. */
static void drop_privileges(const worker_opts_t *o)
{
    if (!o->run_as_user && !o->run_as_group)
        return;
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (o->run_as_user && lookup_user(o->run_as_user, &uid, &gid) < 0)
        exit(WEFT_WORKER_EXIT_CONFIG);
    if (o->run_as_group && lookup_group(o->run_as_group, &gid) < 0)
        exit(WEFT_WORKER_EXIT_CONFIG);
    if (setgroups(1, &gid) != 0 || setresgid(gid, gid, gid) != 0) {
        wlog(WEFT_LOG_ERROR, "setgid(%ld) failed: %s", (long)gid, strerror(errno));
        exit(WEFT_WORKER_EXIT_CONFIG);
    }
    if (o->run_as_user && setresuid(uid, uid, uid) != 0) {
        wlog(WEFT_LOG_ERROR, "setuid(%ld) failed: %s", (long)uid, strerror(errno));
        exit(WEFT_WORKER_EXIT_CONFIG);
    }
    if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
        wlog(WEFT_LOG_ERROR, "privileges could be regained after dropping to uid %ld", (long)uid);
        exit(WEFT_WORKER_EXIT_CONFIG);
    }
}

#ifndef WORKER_ASAN
/* With a memory limit, an allocation that fails inside the function is
 * usually followed by a crash on the NULL it got (SIGSEGV) or an abort()
 * in an xmalloc-style wrapper. errno still says ENOMEM at that moment:
 * report such a death as reason "memory" (exit 4) rather than as an
 * unexplained signal. Any other fault is re-raised with the default
 * action, so the pool sees the real signal. */
static void fault_handler(int sig)
{
    int e = errno;
    if (e == ENOMEM) {
        static const char msg[] = "worker: function crashed after an allocation failed "
                                  "(out of memory under its memory limit)\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)w;
        _exit(WEFT_WORKER_EXIT_NOMEM);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_fault_handler(void)
{
    static char altstack[64 * 1024];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = fault_handler;
    sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    sigaction(SIGABRT, &sa, NULL);
}
#endif

/* Hygiene before any function code runs. PDEATHSIG makes the kernel kill
 * us when the spawning thread goes away, so a dispatcher that dies hard
 * (kill -9) does not leave functions running; the getppid() check closes
 * the window where the parent died before prctl() took effect. */
static void harden(const worker_opts_t *o)
{
    drop_privileges(o);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        wlog(WEFT_LOG_WARN, "prctl(PR_SET_NO_NEW_PRIVS) failed: %s", strerror(errno));
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        wlog(WEFT_LOG_WARN, "prctl(PR_SET_PDEATHSIG) failed: %s", strerror(errno));
    if (o->ppid > 0 && getppid() != (pid_t)o->ppid) {
        wlog(WEFT_LOG_INFO, "parent %ld is gone, exiting", o->ppid);
        _exit(0);
    }
    struct rlimit rl = {0, 0};
    if (setrlimit(RLIMIT_CORE, &rl) != 0)
        wlog(WEFT_LOG_WARN, "setrlimit(RLIMIT_CORE) failed: %s", strerror(errno));
    if (o->memory_mb) {
#ifdef WORKER_ASAN
        /* ASan reserves terabytes of shadow address space up front. */
        wlog(WEFT_LOG_WARN,
             "memory limit not applied in an AddressSanitizer build memory_mb=%" PRIu64,
             o->memory_mb);
#else
        rl.rlim_cur = rl.rlim_max = (rlim_t)o->memory_mb * 1024 * 1024;
        if (setrlimit(RLIMIT_AS, &rl) != 0) {
            wlog(WEFT_LOG_ERROR, "setrlimit(RLIMIT_AS) failed: %s", strerror(errno));
            exit(WEFT_WORKER_EXIT_CONFIG);
        }
        if (strcmp(o->runtime, "shared_object") == 0)
            install_fault_handler();
#endif
    }

    int fl = fcntl(WEFT_CHANNEL_FD, F_GETFD);
    if (fl < 0) {
        wlog(WEFT_LOG_ERROR, "channel fd %d is not open", WEFT_CHANNEL_FD);
        exit(WEFT_WORKER_EXIT_CONFIG);
    }
    /* Anything the function execs must not inherit the channel. */
    (void)fcntl(WEFT_CHANNEL_FD, F_SETFD, fl | FD_CLOEXEC);
    fl = fcntl(WEFT_CHANNEL_FD, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK))
        (void)fcntl(WEFT_CHANNEL_FD, F_SETFL, fl & ~O_NONBLOCK);
}

static Weft__V1__Result__Disposition disposition_of(int rc)
{
    switch (rc) {
    case WEFT_OK:
        return WEFT__V1__RESULT__DISPOSITION__OK;
    case WEFT_RETRY:
        return WEFT__V1__RESULT__DISPOSITION__RETRY;
    case WEFT_DROP:
        return WEFT__V1__RESULT__DISPOSITION__DROP;
    default:
        return WEFT__V1__RESULT__DISPOSITION__FAIL;
    }
}

/* Runs one invocation and sends its Result. Returns 0, or -1 when the
 * channel failed (errno set). */
static int serve_one(weft_runtime_t *rt, const worker_opts_t *o, const Weft__V1__Invoke *inv)
{
    scratch_t s = {0};
    weft_attr_t *attrs = NULL;
    weft_event_t ev;
    weft_result_t res;

    event_from_invoke(inv, &ev, &attrs, &s);
    memset(&res, 0, sizeof(res));
    char crash[32];
    weft_call_t call = {.ev = &ev, .inv = inv};
    int rc = weft_runtime_invoke(rt, &call, &res, crash, sizeof(crash));
    res.content_type[sizeof(res.content_type) - 1] = '\0';
    res.error[sizeof(res.error) - 1] = '\0';

    Weft__V1__Result out = WEFT__V1__RESULT__INIT;
    out.seq = inv->seq;
    out.disposition = disposition_of(rc);
    out.content_type = res.content_type;
    out.error = res.error;
    if (crash[0]) {
        out.crash = crash;
        out.disposition = WEFT__V1__RESULT__DISPOSITION__FAIL;
        free(res.data);
        res.data = NULL;
    } else if (rc == WEFT_OK) {
        out.error = "";
        if (res.data_len > 0 && !res.data) {
            snprintf(res.error, sizeof(res.error), "function returned data_len %zu with no data",
                     res.data_len);
            out.disposition = WEFT__V1__RESULT__DISPOSITION__FAIL;
            out.error = res.error;
        } else if (res.data_len > o->max_result_bytes) {
            snprintf(res.error, sizeof(res.error),
                     WEFT_POOL_RESULT_TOO_LARGE
                     "result of %zu bytes exceeds max_result_bytes %" PRIu64,
                     res.data_len, o->max_result_bytes);
            wlog(WEFT_LOG_WARN, "%s", res.error);
            out.disposition = WEFT__V1__RESULT__DISPOSITION__FAIL;
            out.error = res.error;
        } else {
            out.data.data = res.data;
            out.data.len = res.data_len;
        }
    } else if (rc == WEFT_RETRY) {
        out.retry_after_ms = res.retry_after_ms;
    } else if (rc != WEFT_FAIL && rc != WEFT_DROP) {
        snprintf(res.error, sizeof(res.error), "function returned unknown status %d", rc);
        out.error = res.error;
    }

    int w = weft_frame_write_msg(WEFT_CHANNEL_FD, &out.base);
    int saved = errno;
    free(res.data);
    free(attrs);
    scratch_free(&s);
    free(s.strs);
    errno = saved;
    return w;
}

int main(int argc, char **argv)
{
    worker_opts_t o;
    char err[512];

    parse_args(argc, argv, &o);
    if (o.function)
        weft_worker_log_function(o.function);
    harden(&o);

    weft_runtime_t *rt =
        strcmp(o.runtime, "exec") == 0
            ? weft_runtime_exec_open(o.entry, o.function, o.max_result_bytes, err, sizeof(err))
            : weft_runtime_so_open(o.entry, o.symbol, err, sizeof(err));
    if (!rt) {
        wlog(WEFT_LOG_ERROR, "%s entry=%s", err, o.entry);
        exit(WEFT_WORKER_EXIT_CONFIG);
    }

    /* The ready frame: a Result with seq 0 (invocation seqs start at 1).
     * The pool hands out no invocation before it, so a slow weft_init does
     * not eat into the first invocation's deadline. */
    Weft__V1__Result hello = WEFT__V1__RESULT__INIT;
    if (weft_frame_write_msg(WEFT_CHANNEL_FD, &hello.base) < 0) {
        wlog(WEFT_LOG_ERROR, "send() failed on channel: %s", strerror(errno));
        exit(1);
    }

    /* Under a backlog the pool sends several Invoke frames back to back
     * (pipelining, pool.h): one read() takes all that is buffered and they
     * run strictly one after the other, each Result sent as soon as it is
     * known. Results are never held back to be coalesced: the pool starts
     * an invocation's deadline when the Result before it arrives, so a
     * Result kept while the next call runs long would be charged to the
     * wrong invocation. */
    weft_buf_t in = {0};
    size_t off = 0;
    for (;;) {
        /* While waiting for the next frame, keep relaying what an exec
         * program writes on stderr (it must never block on a full pipe). */
        int ifd;
        while (!weft_frame_buffered(&in, off, WEFT_FRAME_MAX) &&
               (ifd = weft_runtime_idle_fd(rt)) >= 0) {
            struct pollfd pfd[2] = {{.fd = WEFT_CHANNEL_FD, .events = POLLIN},
                                    {.fd = ifd, .events = POLLIN}};
            if (poll(pfd, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            if (pfd[1].revents)
                weft_runtime_idle_io(rt);
            if (pfd[0].revents)
                break;
        }
        size_t poff, plen;
        int r = weft_frame_next(WEFT_CHANNEL_FD, &in, &off, WEFT_FRAME_MAX, &poff, &plen);
        if (r == 0)
            break;
        if (r < 0) {
            if (errno == ENOMEM)
                die_nomem();
            if (errno == EPROTO) {
                wlog(WEFT_LOG_ERROR, "bad frame from dispatcher: truncated or oversized");
                exit(WEFT_WORKER_EXIT_PROTOCOL);
            }
            wlog(WEFT_LOG_ERROR, "read() failed on channel: %s", strerror(errno));
            exit(1);
        }
        g_alloc_failed = 0;
        Weft__V1__Invoke *inv = weft__v1__invoke__unpack(&g_pb_allocator, plen, in.data + poff);
        if (!inv && g_alloc_failed)
            die_nomem();
        if (!inv || !inv->event) {
            wlog(WEFT_LOG_ERROR, "bad frame from dispatcher: cannot decode Invoke of %zu bytes",
                 plen);
            exit(WEFT_WORKER_EXIT_PROTOCOL);
        }
        int w = serve_one(rt, &o, inv);
        weft__v1__invoke__free_unpacked(inv, &g_pb_allocator);
        if (w < 0) {
            if (errno == EPIPE || errno == ECONNRESET) {
                /* The pool closed the channel: it gave up on this call. */
                wlog(WEFT_LOG_INFO, "channel closed while sending a result, exiting");
                break;
            }
            wlog(WEFT_LOG_ERROR, "send() failed on channel: %s", strerror(errno));
            exit(1);
        }
    }
    weft_buf_free(&in);
    weft_runtime_close(rt);
    return 0;
}
