/*
 * invoke.c - `weft invoke FUNCTION --data ...`: runs a function once on
 * this machine, without brokers or PostgreSQL, and prints its result. The
 * quickest way to try a function while writing it.
 *
 * Runs in the CLI process (the `weft` binary), single-threaded: it plays
 * the dispatcher for one static pool of one worker, on the base event loop
 * (workers/base/loop.h: SIGCHLD, SIGINT, SIGTERM), so the function runs
 * exactly as it would under `weft run` (same worker binary, same hygiene,
 * same deadline and limits).
 *
 * Output: the result data on stdout, untouched; one line with the
 * disposition and timings on stderr (or, with --json, one JSON object on
 * stdout instead). Exit codes: 0 ok or drop, 1 retry, fail or crash,
 * 2 usage error, 130 interrupted.
 */
#include "invoke.h"

#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exe.h"
#include "exec_proto.h"
#include "loop.h"
#include "pool.h"
#include "weft_io.h"

#define MAX_EXTS 32
#define MAX_ENV 64
#define MAX_DATA (256u * 1024u * 1024u)

typedef struct invoke_opts {
    const char *function;
    const char *data_arg;
    const char *type;
    const char *source;
    const char *id;
    const char *subject;
    const char *content_type;
    const char *runtime;
    const char *entry;
    const char *symbol;
    const char *functions_dir;
    const char *worker;
    const char *trigger;
    const char *exts[MAX_EXTS];
    int n_exts;
    const char *env[MAX_ENV];
    int n_env;
    uint32_t timeout_ms;
    uint32_t memory_mb;
    uint32_t max_result_bytes;
    uint32_t attempt;
    int json;
    int verbose;
} invoke_opts_t;

typedef struct invoke_state {
    int done;
    weft_outcome_kind_t kind;
    uint8_t *data;
    size_t len;
    char content_type[128];
    char error[1400];
    char reason[64];
    uint32_t retry_after_ms;
    pid_t pid;
    uint64_t dispatched_us, answered_us;
} invoke_state_t;

static void usage(FILE *f)
{
    fprintf(f, "usage: weft invoke FUNCTION [--data DATA|@FILE|-] [--type T] [--source S]\n"
               "                   [--id ID] [--subject S] [--content-type CT] [--ext K=V ...]\n"
               "                   [--runtime shared_object|exec] [--entry PATH] [--symbol NAME]\n"
               "                   [--timeout-ms N] [--memory-mb N] [--max-result-bytes N]\n"
               "                   [--env NAME[=VALUE] ...] [--trigger NAME] [--attempt N]\n"
               "                   [--functions-dir DIR] [--json] [--verbose]\n"
               "\n"
               "Runs FUNCTION once in a real worker, without brokers or PostgreSQL, and\n"
               "prints its result data on stdout and the disposition and timing on stderr.\n"
               "FUNCTION is a path, or a name looked up in the functions directory\n"
               "(--functions-dir, else $WEFT_FUNCTIONS_DIR, else <weft's dir>/../functions)\n"
               "as NAME, then NAME.so. A .so runs in the shared_object runtime, any other\n"
               "executable in the exec runtime; --runtime overrides that guess.\n"
               "\n"
               "  --data DATA     the event's data; @FILE reads a file, - reads stdin\n"
               "  --content-type  datacontenttype (default: application/json when the data\n"
               "                  is JSON, else application/octet-stream)\n"
               "  --ext K=V       a CloudEvents extension attribute (repeatable)\n"
               "  --timeout-ms N  the invocation's deadline (default 30000)\n"
               "  --env NAME[=V]  allow NAME into the worker's environment (repeatable)\n"
               "  --json          print one JSON object with the outcome on stdout\n"
               "\n"
               "Exit status: 0 ok or drop, 1 retry, fail or crash, 2 usage error.\n"
               "\n"
               "examples:\n"
               "  weft invoke uppercase --data '{\"name\":\"ada\"}'\n"
               "  weft invoke upper.py --data @event.json --ext tenant=acme --json\n"
               "  echo '{\"n\":1}' | weft invoke ./my-function.sh --data - --timeout-ms 2000\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "weft invoke: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nRun 'weft invoke --help' for usage.\n");
    return 2;
}


static int parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < min || v > max)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

/* Reads all of fd (at most MAX_DATA bytes). */
static uint8_t *read_all(int fd, size_t *len, char *errstr, size_t errlen)
{
    weft_frame_buf_t b = {0};
    for (;;) {
        if (weft_frame_buf_reserve(&b, 64 * 1024) < 0) {
            snprintf(errstr, errlen, "out of memory");
            weft_frame_buf_free(&b);
            return NULL;
        }
        ssize_t r = read(fd, b.data + b.len, b.cap - b.len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(errstr, errlen, "read() failed: %s", strerror(errno));
            weft_frame_buf_free(&b);
            return NULL;
        }
        if (r == 0)
            break;
        b.len += (size_t)r;
        if (b.len > MAX_DATA) {
            snprintf(errstr, errlen, "data larger than %u bytes", MAX_DATA);
            weft_frame_buf_free(&b);
            return NULL;
        }
    }
    *len = b.len;
    if (!b.data)
        b.data = calloc(1, 1);
    return b.data;
}

static uint8_t *load_data(const char *arg, size_t *len, char *errstr, size_t errlen)
{
    if (!arg) {
        *len = 0;
        return calloc(1, 1);
    }
    if (strcmp(arg, "-") == 0)
        return read_all(STDIN_FILENO, len, errstr, errlen);
    if (arg[0] == '@') {
        int fd = open(arg + 1, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            snprintf(errstr, errlen, "--data %s: %s", arg, strerror(errno));
            return NULL;
        }
        uint8_t *p = read_all(fd, len, errstr, errlen);
        close(fd);
        return p;
    }
    *len = strlen(arg);
    uint8_t *p = malloc(*len + 1);
    if (p)
        memcpy(p, arg, *len + 1);
    else
        snprintf(errstr, errlen, "out of memory");
    return p;
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* FUNCTION -> absolute entry path. */
static int resolve_function(const invoke_opts_t *o, char *entry, size_t len)
{
    char want[PATH_MAX * 2];
    if (o->entry) {
        snprintf(want, sizeof(want), "%s", o->entry);
    } else if (strchr(o->function, '/')) {
        snprintf(want, sizeof(want), "%s", o->function);
    } else {
        char dir[PATH_MAX + 32], exe[PATH_MAX];
        const char *d = o->functions_dir ? o->functions_dir : getenv("WEFT_FUNCTIONS_DIR");
        if (!d || !*d) {
            weft_exe_dir(exe, sizeof(exe));
            snprintf(dir, sizeof(dir), "%s/../functions", exe);
            d = dir;
        }
        snprintf(want, sizeof(want), "%s/%s", d, o->function);
        if (!is_file(want)) {
            snprintf(want, sizeof(want), "%s/%s.so", d, o->function);
            if (!is_file(want))
                return usage_error("function %s not found in %s (tried %s and %s.so)", o->function,
                                   d, o->function, o->function);
        }
    }
    if (!is_file(want))
        return usage_error("%s: %s", want, errno ? strerror(errno) : "not a regular file");
    char *abs = realpath(want, NULL);
    if (!abs || strlen(abs) >= len) {
        free(abs);
        return usage_error("%s: cannot resolve the path", want);
    }
    snprintf(entry, len, "%s", abs);
    free(abs);
    return 0;
}

static void on_done(void *opaque, const weft_outcome_t *out, void *ctx)
{
    invoke_state_t *st = opaque;
    (void)ctx;
    st->done = 1;
    st->answered_us = weft_clock_mono_us();
    st->kind = out->kind;
    st->pid = out->pid;
    if (out->len) {
        st->data = malloc(out->len);
        if (st->data) {
            memcpy(st->data, out->data, out->len);
            st->len = out->len;
        }
    }
    snprintf(st->content_type, sizeof(st->content_type), "%s", out->content_type);
    snprintf(st->error, sizeof(st->error), "%s", out->error);
    snprintf(st->reason, sizeof(st->reason), "%s", out->reason);
    st->retry_after_ms = out->retry_after_ms;
}

static const char *kind_name(weft_outcome_kind_t k)
{
    switch (k) {
    case WEFT_OUTCOME_OK:
        return "ok";
    case WEFT_OUTCOME_RETRY:
        return "retry";
    case WEFT_OUTCOME_FAIL:
        return "fail";
    case WEFT_OUTCOME_DROP:
        return "drop";
    default:
        return "crash";
    }
}

static int print_json(const invoke_opts_t *o, const char *runtime, const invoke_state_t *st,
                      double start_ms, double dur_ms)
{
    weft_frame_buf_t b = {0};
    int rc = weft_exec_buf_puts(&b, "{\"function\":");
    rc |= weft_exec_json_string(&b, o->function, strlen(o->function));
    rc |= weft_exec_buf_printf(
        &b, ",\"runtime\":\"%s\",\"disposition\":\"%s\",\"reason\":", runtime, kind_name(st->kind));
    rc |= weft_exec_json_string(&b, st->reason, strlen(st->reason));
    rc |= weft_exec_buf_puts(&b, ",\"error\":");
    rc |= weft_exec_json_string(&b, st->error, strlen(st->error));
    rc |= weft_exec_buf_printf(
        &b, ",\"retry_after_ms\":%" PRIu32 ",\"datacontenttype\":", st->retry_after_ms);
    rc |= weft_exec_json_string(&b, st->content_type, strlen(st->content_type));
    if (st->len) {
        if (weft_json_content_type(st->content_type) &&
            weft_json_valid(st->data, st->len)) {
            rc |= weft_exec_buf_puts(&b, ",\"data\":");
            rc |= weft_exec_json_compact(&b, st->data, st->len);
        } else if (strncmp(st->content_type, "text/", 5) == 0 &&
                   weft_utf8_valid(st->data, st->len)) {
            rc |= weft_exec_buf_puts(&b, ",\"data\":");
            rc |= weft_exec_json_string(&b, st->data, st->len);
        } else {
            char *b64 = weft_base64_encode(st->data, st->len);
            rc |= !b64;
            rc |= weft_exec_buf_puts(&b, ",\"data_base64\":\"");
            rc |= weft_exec_buf_puts(&b, b64 ? b64 : "");
            rc |= weft_exec_buf_puts(&b, "\"");
            free(b64);
        }
    }
    rc |= weft_exec_buf_printf(&b,
                               ",\"bytes\":%zu,\"start_ms\":%.3f,\"duration_ms\":%.3f,"
                               "\"pid\":%ld}\n",
                               st->len, start_ms, dur_ms, (long)st->pid);
    if (rc == 0)
        fwrite(b.data, 1, b.len, stdout);
    weft_frame_buf_free(&b);
    if (rc != 0) {
        fprintf(stderr, "weft invoke: out of memory\n");
        return -1;
    }
    return 0;
}

/* The loop and what its signals decide: SIGINT/SIGTERM interrupt, an
 * ended child goes to the pool. */
typedef struct invoke_loop {
    weft_loop_t loop;
    weft_pool_t *pool;
    int interrupted;
} invoke_loop_t;

static void invoke_on_signal(weft_loop_t *loop, int signo)
{
    if (signo == SIGINT || signo == SIGTERM)
        ((invoke_loop_t *)loop->opaque)->interrupted = 1;
}

static void invoke_on_child(weft_loop_t *loop, pid_t pid, int status)
{
    invoke_loop_t *il = loop->opaque;
    if (il->pool)
        weft_pool_reaped(il->pool, pid, status);
}

static int build_and_run(const invoke_opts_t *o, const char *entry, const char *runtime,
                         const uint8_t *data, size_t len)
{
    /* The event. */
    Io__Cloudevents__V1__CloudEvent ce = IO__CLOUDEVENTS__V1__CLOUD_EVENT__INIT;
    Io__Cloudevents__V1__CloudEvent__AttributesEntry entries[MAX_EXTS + 4];
    Io__Cloudevents__V1__CloudEvent__AttributesEntry *ptrs[MAX_EXTS + 4];
    Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue vals[MAX_EXTS + 4];
    char *ext_copies[MAX_EXTS];
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    ts.seconds = now.tv_sec;
    ts.nanos = (int32_t)(now.tv_nsec / 1000000 * 1000000);
    char idbuf[64];
    snprintf(idbuf, sizeof(idbuf), "invoke-%ld-%lld%03ld", (long)getpid(), (long long)now.tv_sec,
             now.tv_nsec / 1000000);
    ce.id = (char *)(o->id ? o->id : idbuf);
    ce.source = (char *)(o->source ? o->source : "/weft/invoke");
    ce.spec_version = "1.0";
    ce.type = (char *)(o->type ? o->type : "org.weft.invoke");
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    ce.binary_data.data = (uint8_t *)data;
    ce.binary_data.len = len;
    size_t na = 0;
    const char *ct = o->content_type;
    if (!ct && len)
        ct = weft_json_valid(data, len) ? "application/json" : "application/octet-stream";
    struct {
        const char *k, *v;
    } std_attrs[] = {{"datacontenttype", ct}, {"subject", o->subject}};
    for (size_t i = 0; i < 2; i++) {
        if (!std_attrs[i].v)
            continue;
        io__cloudevents__v1__cloud_event__attributes_entry__init(&entries[na]);
        io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&vals[na]);
        vals[na].attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
        vals[na].ce_string = (char *)std_attrs[i].v;
        entries[na].key = (char *)std_attrs[i].k;
        entries[na].value = &vals[na];
        ptrs[na] = &entries[na];
        na++;
    }
    io__cloudevents__v1__cloud_event__attributes_entry__init(&entries[na]);
    io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&vals[na]);
    vals[na].attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    vals[na].ce_timestamp = &ts;
    entries[na].key = "time";
    entries[na].value = &vals[na];
    ptrs[na] = &entries[na];
    na++;
    for (int i = 0; i < o->n_exts; i++) {
        ext_copies[i] = strdup(o->exts[i]);
        if (!ext_copies[i]) {
            for (int j = 0; j < i; j++)
                free(ext_copies[j]);
            fprintf(stderr, "weft invoke: out of memory\n");
            return 1;
        }
        char *eq = strchr(ext_copies[i], '=');
        *eq = '\0';
        io__cloudevents__v1__cloud_event__attributes_entry__init(&entries[na]);
        io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&vals[na]);
        vals[na].attr_case =
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
        vals[na].ce_string = eq + 1;
        entries[na].key = ext_copies[i];
        entries[na].value = &vals[na];
        ptrs[na] = &entries[na];
        na++;
    }
    ce.n_attributes = na;
    ce.attributes = ptrs;

    /* The loop: SIGCHLD, SIGINT and SIGTERM through the base loop's
     * signalfd (workers/base/loop.h). */
    int rc = 1;
    static const int signals[] = {SIGCHLD, SIGINT, SIGTERM};
    invoke_loop_t il = {0};
    weft_pool_t *pool = NULL;
    invoke_state_t st = {0};
    char err[512];
    if (weft_loop_open(&il.loop, signals, 3, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft invoke: %s\n", err);
        goto out;
    }
    il.loop.on_signal = invoke_on_signal;
    il.loop.on_child = invoke_on_child;
    il.loop.opaque = &il;

    char worker[PATH_MAX + 32], dir[PATH_MAX];
    if (o->worker) {
        snprintf(worker, sizeof(worker), "%s", o->worker);
    } else {
        weft_exe_dir(dir, sizeof(dir));
        snprintf(worker, sizeof(worker), "%s/weft-worker", dir);
    }
    const char *name = strrchr(o->function, '/') ? strrchr(o->function, '/') + 1 : o->function;
    weft_pool_config_t cfg = {
        .function = name,
        .runtime = runtime,
        .entry = entry,
        .symbol = o->symbol,
        .mode = WEFT_POOL_STATIC,
        .size = 1,
        .crash_storm_count = -1,
        .env = o->env,
        .n_env = (size_t)o->n_env,
        .quiet = !o->verbose,
        .timeout_ms = o->timeout_ms,
        .memory_mb = o->memory_mb,
        .max_result_bytes = o->max_result_bytes,
        .worker_path = worker,
    };
    uint64_t t0 = weft_clock_mono_us();
    pool = il.pool = weft_pool_new(&cfg, il.loop.epfd, on_done, NULL, err, sizeof(err));
    if (!pool) {
        fprintf(stderr, "weft invoke: %s\n", err);
        rc = 2;
        goto out;
    }
    if (weft_pool_submit(pool, &ce, o->trigger ? o->trigger : "invoke", o->attempt, &st, err,
                         sizeof(err)) != 0) {
        fprintf(stderr, "weft invoke: %s\n", err);
        goto out;
    }
    while (!st.done && !il.interrupted) {
        weft_loop_run_once(&il.loop, 10);
        if (!st.dispatched_us) {
            weft_pool_stats_t ps;
            weft_pool_stats(pool, &ps);
            if (ps.running)
                st.dispatched_us = weft_clock_mono_us();
        }
        weft_pool_tick(pool, weft_clock_mono_us() / 1000);
    }
    if (il.interrupted) {
        fprintf(stderr, "weft invoke: interrupted\n");
        rc = 130;
        goto out;
    }
    if (!st.dispatched_us)
        st.dispatched_us = st.answered_us;
    double start_ms = (double)(st.dispatched_us - t0) / 1000.0;
    double dur_ms = (double)(st.answered_us - st.dispatched_us) / 1000.0;
    rc = st.kind == WEFT_OUTCOME_OK || st.kind == WEFT_OUTCOME_DROP ? 0 : 1;
    if (o->json) {
        if (print_json(o, runtime, &st, start_ms, dur_ms) < 0)
            rc = 1;
    } else {
        if (st.len) {
            fwrite(st.data, 1, st.len, stdout);
            if (isatty(STDOUT_FILENO) && st.data[st.len - 1] != '\n')
                fputc('\n', stdout);
        }
        if (st.kind == WEFT_OUTCOME_OK)
            fprintf(stderr,
                    "weft invoke: ok content_type=%s bytes=%zu duration_ms=%.3f start_ms=%.3f "
                    "pid=%ld\n",
                    *st.content_type ? st.content_type : "-", st.len, dur_ms, start_ms,
                    (long)st.pid);
        else if (st.kind == WEFT_OUTCOME_DROP)
            fprintf(stderr, "weft invoke: drop duration_ms=%.3f start_ms=%.3f pid=%ld\n", dur_ms,
                    start_ms, (long)st.pid);
        else if (st.kind == WEFT_OUTCOME_RETRY)
            fprintf(stderr,
                    "weft invoke: retry error=\"%s\" retry_after_ms=%" PRIu32
                    " duration_ms=%.3f pid=%ld\n",
                    st.error, st.retry_after_ms, dur_ms, (long)st.pid);
        else if (st.kind == WEFT_OUTCOME_FAIL)
            fprintf(stderr, "weft invoke: fail%s%s error=\"%s\" duration_ms=%.3f pid=%ld\n",
                    *st.reason ? " reason=" : "", st.reason, st.error, dur_ms, (long)st.pid);
        else
            fprintf(stderr, "weft invoke: crash reason=%s error=\"%s\" duration_ms=%.3f\n",
                    st.reason, st.error, dur_ms);
    }
    fflush(stdout);
out:
    weft_pool_destroy(pool, 2000);
    /* Children reaped by weft_pool_destroy leave nothing; drain any
     * other. */
    int status;
    while (waitpid(-1, &status, WNOHANG) > 0)
        ;
    weft_loop_close(&il.loop);
    for (int i = 0; i < o->n_exts; i++)
        free(ext_copies[i]);
    free(st.data);
    return rc;
}

static int ext_ok(const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || eq - kv > 20)
        return 0;
    for (const char *p = kv; p < eq; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return 0;
    static const char *const reserved[] = {"id",   "source", "specversion",     "type",
                                           "data", "time",   "datacontenttype", "subject"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if ((size_t)(eq - kv) == strlen(reserved[i]) &&
            strncmp(kv, reserved[i], (size_t)(eq - kv)) == 0)
            return 0;
    return 1;
}

int weft_invoke_main(int argc, char **argv)
{
    invoke_opts_t o = {.timeout_ms = 30000, .attempt = 1};
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"type", required_argument, NULL, 't'},
        {"source", required_argument, NULL, 's'},
        {"id", required_argument, NULL, 'i'},
        {"subject", required_argument, NULL, 'S'},
        {"content-type", required_argument, NULL, 'C'},
        {"ext", required_argument, NULL, 'x'},
        {"runtime", required_argument, NULL, 'r'},
        {"entry", required_argument, NULL, 'e'},
        {"symbol", required_argument, NULL, 'y'},
        {"timeout-ms", required_argument, NULL, 'T'},
        {"memory-mb", required_argument, NULL, 'M'},
        {"max-result-bytes", required_argument, NULL, 'R'},
        {"env", required_argument, NULL, 'E'},
        {"trigger", required_argument, NULL, 'g'},
        {"attempt", required_argument, NULL, 'a'},
        {"functions-dir", required_argument, NULL, 'F'},
        {"worker", required_argument, NULL, 'W'},
        {"json", no_argument, NULL, 'j'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hd:", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.data_arg = optarg;
            break;
        case 't':
            o.type = optarg;
            break;
        case 's':
            o.source = optarg;
            break;
        case 'i':
            o.id = optarg;
            break;
        case 'S':
            o.subject = optarg;
            break;
        case 'C':
            o.content_type = optarg;
            break;
        case 'x':
            if (!ext_ok(optarg))
                return usage_error("--ext %s: want NAME=VALUE with a CloudEvents extension "
                                   "name (a-z, 0-9, at most 20, not a core attribute)",
                                   optarg);
            if (o.n_exts == MAX_EXTS)
                return usage_error("at most %d --ext", MAX_EXTS);
            o.exts[o.n_exts++] = optarg;
            break;
        case 'r':
            if (strcmp(optarg, "shared_object") != 0 && strcmp(optarg, "exec") != 0)
                return usage_error("--runtime %s: want shared_object or exec", optarg);
            o.runtime = optarg;
            break;
        case 'e':
            o.entry = optarg;
            break;
        case 'y':
            o.symbol = optarg;
            break;
        case 'T':
            if (parse_u32(optarg, 1, 3600000, &o.timeout_ms) < 0)
                return usage_error("--timeout-ms %s: want a number of ms, 1..3600000", optarg);
            break;
        case 'M':
            if (parse_u32(optarg, 0, 65536, &o.memory_mb) < 0)
                return usage_error("--memory-mb %s: want 0..65536", optarg);
            break;
        case 'R':
            if (parse_u32(optarg, 1, 512u * 1024u * 1024u, &o.max_result_bytes) < 0)
                return usage_error("--max-result-bytes %s: want 1..536870912", optarg);
            break;
        case 'E':
            if (o.n_env == MAX_ENV)
                return usage_error("at most %d --env", MAX_ENV);
            o.env[o.n_env++] = optarg;
            break;
        case 'g':
            o.trigger = optarg;
            break;
        case 'a':
            if (parse_u32(optarg, 1, 1000000, &o.attempt) < 0)
                return usage_error("--attempt %s: want a number from 1", optarg);
            break;
        case 'F':
            o.functions_dir = optarg;
            break;
        case 'W':
            o.worker = optarg;
            break;
        case 'j':
            o.json = 1;
            break;
        case 'v':
            o.verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        o.function = argv[optind++];
    if (optind < argc)
        return usage_error("unexpected argument \"%s\"", argv[optind]);
    if (!o.function || !*o.function)
        return usage_error("which function? give FUNCTION (a name in the functions "
                           "directory, or a path)");

    char entry[PATH_MAX];
    int r = resolve_function(&o, entry, sizeof(entry));
    if (r != 0)
        return r;
    const char *runtime = o.runtime;
    if (!runtime) {
        if (ends_with(entry, ".so"))
            runtime = "shared_object";
        else if (access(entry, X_OK) == 0)
            runtime = "exec";
        else
            return usage_error("%s is neither a .so nor an executable program (chmod +x it, "
                               "or give --runtime)",
                               entry);
    }
    char err[256];
    size_t len = 0;
    uint8_t *data = load_data(o.data_arg, &len, err, sizeof(err));
    if (!data)
        return usage_error("%s", err);
    int rc = build_and_run(&o, entry, runtime, data, len);
    free(data);
    return rc;
}
