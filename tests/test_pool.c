/*
 * test_pool.c - the worker pool against real weft-worker processes running
 * the real example functions (<build>/functions/NAME.so).
 *
 * The test process plays the dispatcher: it blocks SIGCHLD, SIGTERM and
 * SIGINT (as the dispatcher does for signalfd), runs a small epoll loop with
 * a signalfd for SIGCHLD, reaps with waitpid(-1, WNOHANG) into
 * weft_pool_reaped() and ticks the pool every 10 ms. Every expectation waits
 * in that loop with a bound; nothing sleeps to assert.
 *
 * Paths come from WEFT_BIN_DIR and WEFT_FUNCTIONS_DIR (set by ctest).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "match.h"
#include "envelope.h"
#include "exec_proto.h"
#include "pool.h"
#include "weft_io.h"

#define WAIT_MS 10000
#define TICK_MS 10

/* RLIMIT_AS cannot be combined with AddressSanitizer's shadow memory. */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

typedef struct rec {
    int calls;
    weft_outcome_kind_t kind;
    uint8_t *data;
    size_t len;
    char content_type[128];
    char error[1100];
    char reason[64];
    uint32_t retry_after_ms;
    pid_t pid;
    uint64_t at_ms;
} rec_t;

static struct {
    int epfd;
    weft_io_t sig_io;
    weft_pool_t *pool;
    char worker[PATH_MAX];
    char functions[PATH_MAX];
    int in_submit;
    int reentrant; /* callbacks made from inside weft_pool_submit */
    int reaped;    /* pool workers reaped by the loop */
    int by_signal[65];
    int strangers; /* reaped children the pool did not claim */
    uint64_t last_reap_ms;
} g;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void on_done(void *opaque, const weft_outcome_t *out, void *ctx)
{
    rec_t *r = opaque;
    (void)ctx;
    if (g.in_submit)
        g.reentrant++;
    r->calls++;
    r->kind = out->kind;
    free(r->data);
    r->data = NULL;
    r->len = out->len;
    if (out->len) {
        r->data = malloc(out->len);
        memcpy(r->data, out->data, out->len);
    }
    snprintf(r->content_type, sizeof(r->content_type), "%s", out->content_type);
    snprintf(r->error, sizeof(r->error), "%s", out->error);
    snprintf(r->reason, sizeof(r->reason), "%s", out->reason);
    r->retry_after_ms = out->retry_after_ms;
    r->pid = out->pid;
    r->at_ms = now_ms();
}

static void rec_clear(rec_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].data);
        memset(&r[i], 0, sizeof(r[i]));
    }
}

static void on_sigchld(weft_io_t *io, uint32_t events)
{
    struct signalfd_siginfo si;
    (void)events;
    while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (g.pool && weft_pool_reaped(g.pool, pid, st)) {
            g.reaped++;
            g.last_reap_ms = now_ms();
            if (WIFSIGNALED(st) && WTERMSIG(st) < 65)
                g.by_signal[WTERMSIG(st)]++;
        } else {
            g.strangers++;
        }
    }
}

/* One turn of the loop. */
static void loop_once(int timeout_ms)
{
    struct epoll_event evs[16];
    int n = epoll_wait(g.epfd, evs, 16, timeout_ms);
    for (int i = 0; i < n; i++) {
        weft_io_t *io = evs[i].data.ptr;
        io->handle(io, evs[i].events);
    }
    weft_pool_tick(g.pool, now_ms());
}

static void run_for(int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end)
        loop_once(TICK_MS);
}

/* Runs the loop until every record got its callback; 0, or -1 on timeout. */
static int wait_recs(rec_t *r, size_t n, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += r[i].calls > 0;
        if (done == n)
            return 0;
        if (now_ms() >= end)
            return -1;
        loop_once(TICK_MS);
    }
}

static int wait_int(const int *v, int want, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (*v < want) {
        if (now_ms() >= end)
            return -1;
        loop_once(TICK_MS);
    }
    return 0;
}

static void start_pool(const char *fn, int size, uint32_t timeout_ms, uint32_t max_result)
{
    char entry[PATH_MAX + 64], err[256] = "";
    snprintf(entry, sizeof(entry), "%s/%s.so", g.functions, fn);
    weft_pool_config_t cfg = {
        .function = fn,
        .runtime = "shared_object",
        .entry = entry,
        .size = size,
        .timeout_ms = timeout_ms,
        .max_result_bytes = max_result,
        .worker_path = g.worker,
    };
    g.pool = weft_pool_new(&cfg, g.epfd, on_done, NULL, err, sizeof(err));
    if (!g.pool)
        print_error("weft_pool_new: %s\n", err);
    assert_non_null(g.pool);
}

static const char *env_attr(void *ev, const char *name)
{
    return weft_envelope_attr(ev, name);
}

typedef struct attr_spec {
    const char *name;
    Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue val;
} attr_spec_t;

static void submit_full(const void *data, size_t len, rec_t *r, uint32_t attempt,
                        const attr_spec_t *attrs, size_t n_attrs, const char *trigger)
{
    Io__Cloudevents__V1__CloudEvent ce = IO__CLOUDEVENTS__V1__CLOUD_EVENT__INIT;
    Io__Cloudevents__V1__CloudEvent__AttributesEntry entries[12];
    Io__Cloudevents__V1__CloudEvent__AttributesEntry *ptrs[12];
    Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue vals[12];
    char err[256] = "";

    assert_true(n_attrs <= 12);
    ce.id = "ev-1";
    ce.source = "/tests/pool";
    ce.spec_version = "1.0";
    ce.type = "org.weft.test";
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    ce.binary_data.data = (uint8_t *)data;
    ce.binary_data.len = len;
    for (size_t i = 0; i < n_attrs; i++) {
        io__cloudevents__v1__cloud_event__attributes_entry__init(&entries[i]);
        vals[i] = attrs[i].val;
        entries[i].key = (char *)attrs[i].name;
        entries[i].value = &vals[i];
        ptrs[i] = &entries[i];
    }
    ce.n_attributes = n_attrs;
    ce.attributes = ptrs;

    g.in_submit = 1;
    int rc = weft_pool_submit(g.pool, &ce, trigger, attempt, r, err, sizeof(err));
    g.in_submit = 0;
    if (rc != 0)
        print_error("weft_pool_submit: %s\n", err);
    assert_int_equal(rc, 0);
}

static void submit(const char *data, rec_t *r)
{
    submit_full(data, strlen(data), r, 1, NULL, 0, "trig");
}

static attr_spec_t str_attr(const char *name, const char *value)
{
    attr_spec_t a = {name, IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a.val.attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    a.val.ce_string = (char *)value;
    return a;
}

static void assert_data(const rec_t *r, const char *want)
{
    size_t n = strlen(want);
    if (r->len != n || memcmp(r->data, want, n) != 0)
        print_error("got %zu bytes: %.*s\nwant: %s\n", r->len, (int)(r->len > 300 ? 300 : r->len),
                    r->data ? (const char *)r->data : "", want);
    assert_int_equal(r->len, n);
    assert_memory_equal(r->data, want, n);
}

/* ---- fixtures ------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    const char *bin = getenv("WEFT_BIN_DIR");
    const char *fns = getenv("WEFT_FUNCTIONS_DIR");
    if (!bin || !fns) {
        fprintf(stderr, "WEFT_BIN_DIR and WEFT_FUNCTIONS_DIR must be set (ctest sets them)\n");
        return -1;
    }
    snprintf(g.worker, sizeof(g.worker), "%s/weft-worker", bin);
    snprintf(g.functions, sizeof(g.functions), "%s", fns);
    static const char *const need[] = {"uppercase", "faulty",   "describe", "slowstart", "hygiene",
                                       "noop.so",   "upper.py", "upper.sh", "faulty.py"};
    if (access(g.worker, X_OK) != 0) {
        fprintf(stderr, "%s: %s (build target weft-worker)\n", g.worker, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        char p[PATH_MAX + 64];
        snprintf(p, sizeof(p), "%s/%s%s", fns, need[i], strchr(need[i], '.') ? "" : ".so");
        if (access(p, R_OK) != 0) {
            fprintf(stderr, "%s: %s (build target %s)\n", p, strerror(errno), need[i]);
            return -1;
        }
    }

#ifdef HAVE_ASAN
    /* Workers inherit ASAN_OPTIONS; a function's SIGSEGV must show as
     * signal 11, not as ASan's report and exit code 1. */
    char asan[600];
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof(asan), "%s%shandle_segv=0:handle_sigbus=0", old ? old : "",
             old && *old ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
#endif
    /* Like the dispatcher: these signals are read from a signalfd, so they
     * are blocked, and workers must not inherit that mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    g.epfd = epoll_create1(EPOLL_CLOEXEC);
    g.sig_io.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    g.sig_io.handle = on_sigchld;
    if (g.epfd < 0 || g.sig_io.fd < 0)
        return -1;
    struct epoll_event ee = {.events = EPOLLIN, .data.ptr = &g.sig_io};
    return epoll_ctl(g.epfd, EPOLL_CTL_ADD, g.sig_io.fd, &ee);
}

static int group_teardown(void **state)
{
    (void)state;
    close(g.sig_io.fd);
    close(g.epfd);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    struct signalfd_siginfo si;
    while (read(g.sig_io.fd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        ;
    g.pool = NULL;
    g.in_submit = g.reentrant = g.reaped = g.strangers = 0;
    memset(g.by_signal, 0, sizeof(g.by_signal));
    return 0;
}

/* Destroy must leave no child behind, and no callback may ever have come
 * from inside weft_pool_submit. */
static int teardown(void **state)
{
    (void)state;
    weft_pool_destroy(g.pool, 1000);
    g.pool = NULL;
    int st, bad = 0;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid != -1 || errno != ECHILD) {
        fprintf(stderr, "child left behind after weft_pool_destroy (pid %ld)\n", (long)pid);
        bad = 1;
    }
    if (g.reentrant) {
        fprintf(stderr, "%d callbacks ran inside weft_pool_submit\n", g.reentrant);
        bad = 1;
    }
    if (g.strangers) {
        fprintf(stderr, "%d reaped children not claimed by the pool\n", g.strangers);
        bad = 1;
    }
    return bad ? -1 : 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_uppercase_roundtrip(void **state)
{
    (void)state;
    rec_t r = {0};
    start_pool("uppercase", 1, 5000, 0);
    submit("{\"name\":\"ada lovelace\",\"tags\":[\"x\",\"y\\n\"],\"n\":-1.5e3,"
           "\"nested\":{\"k\":\"v\\u00e9\",\"ok\":true,\"nil\":null}}",
           &r);
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.kind, WEFT_OUTCOME_OK);
    assert_string_equal(r.content_type, "application/json");
    assert_string_equal(r.error, "");
    assert_string_equal(r.reason, "");
    assert_data(&r, "{\"name\":\"ADA LOVELACE\",\"tags\":[\"X\",\"Y\\n\"],\"n\":-1.5e3,"
                    "\"nested\":{\"k\":\"V\\u00e9\",\"ok\":true,\"nil\":null}}");
    rec_clear(&r, 1);
}

static void test_uppercase_validation(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } good[] = {
        {"\"abc\"", "\"ABC\""},
        {" [ ] ", " [ ] "},
        {"{}", "{}"},
        {"[\"a\",[\"b\",{\"c\":\"d\"}],0]", "[\"A\",[\"B\",{\"c\":\"D\"}],0]"},
        {"{\"k\\\"ey\":\"va\\\\l\\\"ue\"}", "{\"k\\\"ey\":\"VA\\\\L\\\"UE\"}"},
        {"\"caf\xc3\xa9\"", "\"CAF\xc3\xa9\""},
    };
    static const char *const bad[] = {
        "{\"a\":\"b\"",    "{\"a\" \"b\"}", "[1,]", "\"abc",
        "{\"a\":\"\\q\"}", "nope",          "{} x", "[1 2]",
        "{\"a\":1,}",      "\"\\u12\"",     "]",    "{\"a\":\"x\"]",
        "[[[[[[",          "\"a\\",         "-",
    };
    size_t ng = sizeof(good) / sizeof(good[0]), nb = sizeof(bad) / sizeof(bad[0]);
    rec_t rg[8] = {{0}}, rb[16] = {{0}}, empty = {0};

    start_pool("uppercase", 2, 5000, 0);
    for (size_t i = 0; i < ng; i++)
        submit(good[i].in, &rg[i]);
    for (size_t i = 0; i < nb; i++)
        submit(bad[i], &rb[i]);
    submit_full("", 0, &empty, 1, NULL, 0, "trig");
    assert_int_equal(wait_recs(rg, ng, WAIT_MS), 0);
    assert_int_equal(wait_recs(rb, nb, WAIT_MS), 0);
    assert_int_equal(wait_recs(&empty, 1, WAIT_MS), 0);
    for (size_t i = 0; i < ng; i++) {
        assert_int_equal(rg[i].kind, WEFT_OUTCOME_OK);
        assert_data(&rg[i], good[i].out);
    }
    for (size_t i = 0; i < nb; i++) {
        if (rb[i].kind != WEFT_OUTCOME_FAIL)
            print_error("accepted as JSON: %s\n", bad[i]);
        assert_int_equal(rb[i].kind, WEFT_OUTCOME_FAIL);
        assert_string_equal(rb[i].error, "data is not JSON");
    }
    assert_int_equal(empty.kind, WEFT_OUTCOME_FAIL);
    assert_string_equal(empty.error, "data is empty");
    assert_int_equal(g.reaped, 0);
    rec_clear(rg, ng);
    rec_clear(rb, nb);
    rec_clear(&empty, 1);
}

static void test_many_on_two_workers(void **state)
{
    (void)state;
    enum { N = 2000 };
    rec_t *r = calloc(N, sizeof(*r));
    char buf[64], want[64];

    start_pool("uppercase", 2, 5000, 0);
    uint64_t t0 = now_ms();
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf), "{\"i\":\"item-%d\"}", i);
        submit(buf, &r[i]);
    }
    assert_int_equal(weft_pool_inflight(g.pool), N);
    assert_int_equal(wait_recs(r, N, 30000), 0);
    uint64_t dt = now_ms() - t0;
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof(want), "{\"i\":\"ITEM-%d\"}", i);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
        assert_data(&r[i], want);
    }
    assert_int_equal(weft_pool_inflight(g.pool), 0);
    assert_int_equal(g.reaped, 0);
    print_message("%d uppercase invocations through a pool of 2 in %llu ms: %.0f/s\n", N,
                  (unsigned long long)dt, dt ? N * 1000.0 / (double)dt : 0.0);
    rec_clear(r, N);
    free(r);
}

static void test_dispositions(void **state)
{
    (void)state;
    rec_t r[8] = {{0}};
    attr_spec_t fatal_attr = str_attr("failmode", "fatal");

    start_pool("faulty", 1, 5000, 0);
    submit("{\"fail\":\"fatal\"}", &r[0]);
    submit("{\"fail\" : \"retry\"}", &r[1]);
    submit("{\"x\":1,\"fail\":\"drop\"}", &r[2]);
    submit_full("{}", 2, &r[3], 1, &fatal_attr, 1, "trig");
    submit("{\"fail\":\"retry-until-3\"}", &r[4]);
    submit_full("{\"fail\":\"retry-until-3\"}", 24, &r[5], 3, NULL, 0, "trig");
    submit("{\"ok\":\"yes\"}", &r[6]);
    assert_int_equal(wait_recs(r, 7, WAIT_MS), 0);

    assert_int_equal(r[0].kind, WEFT_OUTCOME_FAIL);
    assert_string_equal(r[0].error, "asked to fail");
    assert_string_equal(r[0].reason, "");
    assert_int_equal(r[1].kind, WEFT_OUTCOME_RETRY);
    assert_string_equal(r[1].error, "asked to retry");
    assert_int_equal(r[2].kind, WEFT_OUTCOME_DROP);
    assert_int_equal(r[2].len, 0);
    assert_int_equal(r[3].kind, WEFT_OUTCOME_FAIL);
    assert_string_equal(r[3].error, "asked to fail");
    assert_int_equal(r[4].kind, WEFT_OUTCOME_RETRY);
    assert_int_equal(r[5].kind, WEFT_OUTCOME_OK);
    assert_data(&r[5], "{\"fail\":\"retry-until-3\"}");
    assert_int_equal(r[6].kind, WEFT_OUTCOME_OK);
    assert_string_equal(r[6].content_type, "application/json");
    assert_data(&r[6], "{\"ok\":\"yes\"}");
    for (int i = 0; i < 7; i++)
        assert_int_equal(r[i].calls, 1);
    assert_int_equal(g.reaped, 0);
    rec_clear(r, 8);
}

static void test_event_mapping(void **state)
{
    (void)state;
    rec_t r = {0};
    attr_spec_t a[7];
    a[0] = str_attr("subject", "orders/42");
    a[1] =
        (attr_spec_t){"time", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = 1795284000; /* 2026-11-21T18:00:00Z */
    ts.nanos = 123000000;
    a[1].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    a[1].val.ce_timestamp = &ts;
    a[2] = str_attr("datacontenttype", "application/json");
    a[3] =
        (attr_spec_t){"flag", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a[3].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN;
    a[3].val.ce_boolean = 1;
    a[4] =
        (attr_spec_t){"count", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a[4].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
    a[4].val.ce_integer = -5;
    a[5] =
        (attr_spec_t){"link", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a[5].val.attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI;
    a[5].val.ce_uri = "https://example.org/x";
    a[6] =
        (attr_spec_t){"raw", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a[6].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES;
    a[6].val.ce_bytes.data = (uint8_t *)"hi!?";
    a[6].val.ce_bytes.len = 4;

    start_pool("describe", 1, 5000, 0);
    submit_full("hello", 5, &r, 3, a, 7, "orders-to-mail");
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(r.kind, WEFT_OUTCOME_OK);
    assert_string_equal(r.content_type, "text/plain");
    assert_data(&r, "id=ev-1\nsource=/tests/pool\nspecversion=1.0\ntype=org.weft.test\n"
                    "subject=orders/42\ntime=2026-11-21T18:00:00.123Z\n"
                    "datacontenttype=application/json\n"
                    "attr.flag=true\nattr.count=-5\nattr.link=https://example.org/x\n"
                    "attr.raw=aGkhPw==\n"
                    "trigger=orders-to-mail\nattempt=3\ndata_len=5\n");
    rec_clear(&r, 1);
}

/* A trigger filter, the exec protocol and the C ABI must see the same
 * text for an attribute, or a filter passes an event whose function sees
 * something else. One event with every attribute type goes three ways:
 * decoded as the dispatcher decodes it and matched by exact filters (one
 * trigger per attribute), written as an exec request, and handed to a
 * real worker running describe.so. */
static void test_filter_and_function_see_same_text(void **state)
{
    (void)state;
    typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue val_t;
    enum { N = 9 };
    static const struct {
        const char *name, *text;
        int literal; /* a JSON literal in the exec request, not a string */
    } want[N] = {
        {"subject", "orders/42", 0},
        {"tenant", "acme", 0},
        {"count", "-7", 1},
        {"flag", "true", 1},
        {"link", "https://example.org/o?id=42", 0},
        {"ref", "../orders/42#x", 0},
        {"raw", "aGkhPw==", 0},
        {"time", "2026-11-21T18:00:00.120Z", 0},
        {"at", "2026-11-21T18:00:00.123456789Z", 0},
    };
    Google__Protobuf__Timestamp ts_ms = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts_ms.seconds = 1795284000;
    ts_ms.nanos = 120000000;
    Google__Protobuf__Timestamp ts_ns = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts_ns.seconds = 1795284000;
    ts_ns.nanos = 123456789;
    attr_spec_t a[N];
    a[0] = str_attr("subject", "orders/42");
    a[1] = str_attr("tenant", "acme");
    for (size_t i = 2; i < N; i++)
        a[i] = (attr_spec_t){want[i].name,
                             IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a[2].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
    a[2].val.ce_integer = -7;
    a[3].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN;
    a[3].val.ce_boolean = 1;
    a[4].val.attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI;
    a[4].val.ce_uri = "https://example.org/o?id=42";
    a[5].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF;
    a[5].val.ce_uri_ref = "../orders/42#x";
    a[6].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES;
    a[6].val.ce_bytes.data = (uint8_t *)"hi!?";
    a[6].val.ce_bytes.len = 4;
    a[7].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    a[7].val.ce_timestamp = &ts_ms;
    a[8].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    a[8].val.ce_timestamp = &ts_ns;

    /* The event, as a producer sends it in protobuf structured mode. */
    Io__Cloudevents__V1__CloudEvent ce = IO__CLOUDEVENTS__V1__CLOUD_EVENT__INIT;
    Io__Cloudevents__V1__CloudEvent__AttributesEntry entries[N], *ptrs[N];
    val_t vals[N];
    ce.id = "ev-1";
    ce.source = "/tests/pool";
    ce.spec_version = "1.0";
    ce.type = "org.weft.test";
    for (size_t i = 0; i < N; i++) {
        io__cloudevents__v1__cloud_event__attributes_entry__init(&entries[i]);
        vals[i] = a[i].val;
        entries[i].key = (char *)a[i].name;
        entries[i].value = &vals[i];
        ptrs[i] = &entries[i];
    }
    ce.n_attributes = N;
    ce.attributes = ptrs;
    size_t plen = io__cloudevents__v1__cloud_event__get_packed_size(&ce);
    uint8_t *packed = malloc(plen);
    assert_non_null(packed);
    io__cloudevents__v1__cloud_event__pack(&ce, packed);

    /* 1. What a filter matches: the dispatcher's decoding, and an exact
     * filter per attribute on the text the function should see. */
    static const char ct[] = "application/cloudevents+protobuf";
    weft_header_t hdr = {"content-type", ct, sizeof(ct) - 1};
    weft_envelope_t env;
    char err[256] = "";
    assert_int_equal(weft_envelope_decode(&env, &hdr, 1, packed, plen, "p", "s", err, sizeof(err)),
                     WEFT_ENV_OK);
    weft_catalog_t *cat = weft_catalog_new();
    assert_non_null(cat);
    weft_function_t fn = {.name = "describe", .entry = "describe.so", .timeout_ms = 1000};
    assert_int_equal(weft_catalog_add_function(cat, &fn), 0);
    for (size_t i = 0; i < N; i++) {
        weft_trigger_t t = {.name = (char *)want[i].name,
                            .broker = WEFT_BROKER_KAFKA,
                            .topic = "t",
                            .function = "describe",
                            .max_attempts = 1};
        assert_int_equal(weft_catalog_add_trigger(cat, &t), 0);
        assert_int_equal(weft_catalog_add_filter(cat, want[i].name, want[i].name, WEFT_FILTER_EXACT,
                                                 want[i].text),
                         0);
    }
    assert_int_equal(weft_catalog_link(cat, err, sizeof(err)), 0);
    int differ = 0; /* every difference is reported before the test fails */
    for (size_t i = 0; i < N; i++) {
        const weft_trigger_t *t = NULL;
        for (size_t k = 0; k < cat->n_trigs; k++)
            if (strcmp(cat->trigs[k].name, want[i].name) == 0)
                t = &cat->trigs[k];
        assert_non_null(t);
        if (!weft_trigger_matches(t, WEFT_BROKER_KAFKA, "t", "org.weft.test", env_attr, &env)) {
            const char *seen = weft_envelope_attr(&env, want[i].name);
            print_error("filter sees %s=%s, want %s\n", want[i].name, seen ? seen : "(absent)",
                        want[i].text);
            differ++;
        }
    }

    /* 2. What the exec protocol carries. */
    Weft__V1__Invoke inv = WEFT__V1__INVOKE__INIT;
    inv.event = &ce;
    inv.trigger = "t";
    weft_buf_t req = {0};
    assert_int_equal(weft_exec_request(&inv, &req), 0);
    assert_int_equal(weft_buf_append(&req, "", 1), 0);
    for (size_t i = 0; i < N; i++) {
        char member[160];
        snprintf(member, sizeof(member), want[i].literal ? "\"%s\":%s" : "\"%s\":\"%s\"",
                 want[i].name, want[i].text);
        if (!strstr((const char *)req.p, member)) {
            print_error("exec request lacks %s: %s\n", member, (const char *)req.p);
            differ++;
        }
    }

    /* 3. What the C ABI hands the function (describe.so prints it). */
    rec_t r = {0};
    start_pool("describe", 1, 5000, 0);
    submit_full("x", 1, &r, 1, a, N, "t");
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(r.kind, WEFT_OUTCOME_OK);
    char *seen = strndup((const char *)r.data, r.len);
    assert_non_null(seen);
    for (size_t i = 0; i < N; i++) {
        int ctx_attr = strcmp(want[i].name, "subject") == 0 || strcmp(want[i].name, "time") == 0;
        char line[160];
        snprintf(line, sizeof(line), "\n%s%s=%s\n", ctx_attr ? "" : "attr.", want[i].name,
                 want[i].text);
        if (!strstr(seen, line)) {
            print_error("function lacks %s in:\n%s\n", line + 1, seen);
            differ++;
        }
    }
    free(seen);
    assert_int_equal(differ, 0);
    rec_clear(&r, 1);
    weft_buf_free(&req);
    weft_catalog_unref(cat);
    weft_envelope_free(&env);
    free(packed);
}

static void test_crash_is_reported_and_worker_replaced(void **state)
{
    (void)state;
    rec_t r[2] = {{0}};

    start_pool("faulty", 1, 5000, 0); /* one worker: the next call needs a new one */
    submit("{\"fail\":\"crash\"}", &r[0]);
    submit("{\"after\":\"crash\"}", &r[1]);
    assert_int_equal(wait_recs(r, 2, WAIT_MS), 0);
    assert_int_equal(r[0].kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(r[0].reason, "signal:6");
    assert_non_null(strstr(r[0].error, "signal 6"));
    assert_int_equal(r[1].kind, WEFT_OUTCOME_OK);
    assert_data(&r[1], "{\"after\":\"crash\"}");
    assert_int_equal(g.reaped, 1);
    rec_clear(r, 2);
}

static void test_timeout_while_other_worker_serves(void **state)
{
    (void)state;
    rec_t hang = {0}, quick = {0}, after[2] = {{0}};

    start_pool("faulty", 2, 300, 0);
    uint64_t t0 = now_ms();
    submit("{\"fail\":\"hang\"}", &hang);
    submit("{\"quick\":\"yes\"}", &quick);
    assert_int_equal(wait_recs(&quick, 1, WAIT_MS), 0);
    assert_int_equal(quick.kind, WEFT_OUTCOME_OK);
    assert_int_equal(hang.calls, 0); /* the quick one did not wait for it */
    assert_int_equal(wait_recs(&hang, 1, WAIT_MS), 0);
    uint64_t took = hang.at_ms - t0;
    assert_int_equal(hang.kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(hang.reason, "timeout");
    assert_true(took >= 300);
    assert_true(took < 2000); /* includes the workers' start */
    /* SIGTERM ends it although the test process blocks SIGTERM: workers
     * start with an empty signal mask. No SIGKILL needed. */
    assert_int_equal(wait_int(&g.reaped, 1, WAIT_MS), 0);
    assert_int_equal(g.by_signal[SIGTERM], 1);
    assert_int_equal(g.by_signal[SIGKILL], 0);
    /* Both workers serve again. */
    submit("{\"n\":\"1\"}", &after[0]);
    submit("{\"n\":\"2\"}", &after[1]);
    assert_int_equal(wait_recs(after, 2, WAIT_MS), 0);
    assert_int_equal(after[0].kind, WEFT_OUTCOME_OK);
    assert_int_equal(after[1].kind, WEFT_OUTCOME_OK);
    assert_int_equal(hang.calls, 1);
    rec_clear(&hang, 1);
    rec_clear(&quick, 1);
    rec_clear(after, 2);
}

static void test_timeout_escalates_to_sigkill(void **state)
{
    (void)state;
    rec_t hang = {0};

    start_pool("faulty", 1, 300, 0);
    uint64_t t0 = now_ms();
    submit("{\"fail\":\"hang-hard\"}", &hang);
    assert_int_equal(wait_recs(&hang, 1, WAIT_MS), 0);
    assert_string_equal(hang.reason, "timeout");
    assert_true(hang.at_ms - t0 >= 300);
    assert_int_equal(g.reaped, 0);
    /* SIGTERM is ignored: SIGKILL follows after the 1 s grace, and the
     * callback came at the deadline, without waiting for it. */
    assert_int_equal(wait_int(&g.reaped, 1, WAIT_MS), 0);
    assert_int_equal(g.by_signal[SIGKILL], 1);
    assert_true(g.last_reap_ms - hang.at_ms >= 900);
    rec_clear(&hang, 1);
}

static void test_exit_is_reported(void **state)
{
    (void)state;
    rec_t r[2] = {{0}};

    start_pool("faulty", 1, 5000, 0);
    submit("{\"fail\":\"exit\"}", &r[0]);
    submit("{}", &r[1]);
    assert_int_equal(wait_recs(r, 2, WAIT_MS), 0);
    assert_int_equal(r[0].kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(r[0].reason, "exited");
    assert_non_null(strstr(r[0].error, "code 7"));
    assert_int_equal(r[1].kind, WEFT_OUTCOME_OK);
    rec_clear(r, 2);
}

static void test_garbage_is_bad_frame(void **state)
{
    (void)state;
    rec_t r[2] = {{0}};

    start_pool("faulty", 1, 5000, 0);
    uint64_t t0 = now_ms();
    submit("{\"fail\":\"garbage\"}", &r[0]);
    submit("{}", &r[1]);
    assert_int_equal(wait_recs(r, 2, WAIT_MS), 0);
    assert_int_equal(r[0].kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(r[0].reason, "bad_frame");
    assert_true(r[0].at_ms - t0 < 2000); /* detected, not timed out */
    assert_int_equal(r[1].kind, WEFT_OUTCOME_OK);
    assert_int_equal(wait_int(&g.reaped, 1, WAIT_MS), 0);
    rec_clear(r, 2);
}

static void test_result_too_large(void **state)
{
    (void)state;
    rec_t r[2] = {{0}};

    start_pool("faulty", 1, 10000, 1024 * 1024);
    submit("{\"fail\":\"big\"}", &r[0]);
    submit("{\"still\":\"alive\"}", &r[1]);
    assert_int_equal(wait_recs(r, 2, WAIT_MS), 0);
    assert_int_equal(r[0].kind, WEFT_OUTCOME_FAIL);
    assert_string_equal(r[0].reason, "result_too_large");
    assert_int_equal(
        strncmp(r[0].error, WEFT_POOL_RESULT_TOO_LARGE, strlen(WEFT_POOL_RESULT_TOO_LARGE)), 0);
    assert_non_null(strstr(r[0].error, "67108864"));
    assert_int_equal(r[0].len, 0);
    assert_int_equal(r[1].kind, WEFT_OUTCOME_OK);
    assert_int_equal(g.reaped, 0); /* the same worker answered both */
    rec_clear(r, 2);
}

static void test_large_input_round_trips(void **state)
{
    (void)state;
    enum { BLOB = 2 * 1024 * 1024, COPIES = 3 };
    size_t len = BLOB + 32;
    char *in = malloc(len), *want = malloc(len);
    rec_t r[COPIES] = {{0}};

    int n = snprintf(in, len, "{\"blob\":\"");
    for (int i = 0; i < BLOB; i++)
        in[n + i] = (char)('a' + i % 26);
    snprintf(in + n + BLOB, len - (size_t)n - BLOB, "\"}");
    memcpy(want, in, strlen(in) + 1);
    for (int i = 0; i < BLOB; i++)
        want[n + i] = (char)('A' + i % 26);

    start_pool("uppercase", 2, 10000, 4 * 1024 * 1024);
    uint64_t t0 = now_ms();
    for (int i = 0; i < COPIES; i++)
        submit(in, &r[i]);
    assert_int_equal(wait_recs(r, COPIES, WAIT_MS), 0);
    print_message("%d round trips of a 2 MiB event in %llu ms (including worker start)\n", COPIES,
                  (unsigned long long)(now_ms() - t0));
    for (int i = 0; i < COPIES; i++) {
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
        assert_int_equal(r[i].len, strlen(want));
        assert_memory_equal(r[i].data, want, r[i].len);
    }
    rec_clear(r, COPIES);
    free(in);
    free(want);
}

static void test_config_error_no_fast_respawn(void **state)
{
    (void)state;
    rec_t r[3] = {{0}};

    start_pool("no-such-function", 2, 5000, 0);
    for (int i = 0; i < 3; i++)
        submit("{}", &r[i]);
    /* No worker can start: the queue is answered instead of stalling. */
    assert_int_equal(wait_recs(r, 3, WAIT_MS), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].kind, WEFT_OUTCOME_CRASH);
        assert_string_equal(r[i].reason, "config");
        assert_non_null(strstr(r[i].error, "could not start"));
    }
    assert_int_equal(wait_int(&g.reaped, 2, WAIT_MS), 0);
    /* With the 50 ms backoff a broken function would be restarted ~20
     * times in a second; a configuration error waits 5 s. */
    run_for(1000);
    assert_int_equal(g.reaped, 2);
    assert_int_equal(weft_pool_inflight(g.pool), 0);
    rec_clear(r, 3);
}

static void test_slow_init_not_charged_to_deadline(void **state)
{
    (void)state;
    rec_t r = {0};

    uint64_t t0 = now_ms();
    start_pool("slowstart", 1, 300, 0); /* weft_init takes 500 ms */
    submit("{\"slow\":\"start\"}", &r);
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(r.kind, WEFT_OUTCOME_OK);
    assert_data(&r, "{\"slow\":\"start\"}");
    assert_true(r.at_ms - t0 >= 500);
    assert_int_equal(g.reaped, 0);
    rec_clear(&r, 1);
}

static void test_memory_limit(void **state)
{
    (void)state;
#ifdef HAVE_ASAN
    skip();
#else
    enum { HUGE = 40 * 1024 * 1024 };
    rec_t r[3] = {{0}};
    char err[256] = "", entry[PATH_MAX + 64];
    snprintf(entry, sizeof(entry), "%s/faulty.so", g.functions);
    weft_pool_config_t cfg = {
        .function = "faulty",
        .entry = entry,
        .size = 1,
        .timeout_ms = 10000,
        .memory_mb = 48,
        .max_result_bytes = 128 * 1024 * 1024,
        .worker_path = g.worker,
    };
    g.pool = weft_pool_new(&cfg, g.epfd, on_done, NULL, err, sizeof(err));
    assert_non_null(g.pool);

    /* The function's own malloc fails under the limit: its error path. */
    submit("{\"fail\":\"big\"}", &r[0]);
    assert_int_equal(wait_recs(&r[0], 1, WAIT_MS), 0);
    assert_int_equal(r[0].kind, WEFT_OUTCOME_FAIL);
    assert_non_null(strstr(r[0].error, "cannot allocate"));

    /* The worker cannot hold the invocation itself: reason "memory". */
    char *huge = malloc(HUGE);
    memset(huge, ' ', HUGE);
    huge[0] = '{';
    huge[HUGE - 1] = '}';
    submit_full(huge, HUGE, &r[1], 1, NULL, 0, "trig");
    free(huge);
    assert_int_equal(wait_recs(&r[1], 1, WAIT_MS), 0);
    assert_int_equal(r[1].kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(r[1].reason, "memory");

    submit("{}", &r[2]);
    assert_int_equal(wait_recs(&r[2], 1, WAIT_MS), 0);
    assert_int_equal(r[2].kind, WEFT_OUTCOME_OK);
    rec_clear(r, 3);
#endif
}

static void test_bad_worker_path(void **state)
{
    (void)state;
    char err[256] = "";
    weft_pool_config_t cfg = {
        .function = "x",
        .entry = "/nonexistent.so",
        .size = 1,
        .worker_path = "/nonexistent/weft-worker",
    };
    assert_null(weft_pool_new(&cfg, g.epfd, on_done, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/weft-worker"));
}

static void test_destroy_drops_queue_without_callbacks(void **state)
{
    (void)state;
    rec_t r[3] = {{0}};

    start_pool("faulty", 1, 0, 0);
    submit("{\"fail\":\"hang\"}", &r[0]);
    submit("{}", &r[1]);
    submit("{}", &r[2]);
    run_for(100);
    assert_int_equal(weft_pool_inflight(g.pool), 3);
    weft_pool_destroy(g.pool, 500);
    g.pool = NULL;
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].calls, 0);
    rec_clear(r, 3);
}

/* ---- pool modes, limits, hygiene, exec runtime --------------------------- */

/* Starts a pool from cfg; entry is a file name in the functions dir. */
static void start_cfg(weft_pool_config_t *cfg, const char *file)
{
    char entry[PATH_MAX + 64], err[256] = "";
    snprintf(entry, sizeof(entry), "%s/%s", g.functions, file);
    cfg->entry = entry;
    cfg->worker_path = g.worker;
    if (!cfg->function)
        cfg->function = file;
    g.pool = weft_pool_new(cfg, g.epfd, on_done, NULL, err, sizeof(err));
    if (!g.pool)
        print_error("weft_pool_new: %s\n", err);
    assert_non_null(g.pool);
}

static weft_pool_stats_t stats(void)
{
    weft_pool_stats_t st;
    weft_pool_stats(g.pool, &st);
    return st;
}

/* Runs the loop until the pool has n idle workers; 0 or -1. */
static int wait_idle(int n, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    while (stats().idle != n) {
        if (now_ms() >= end)
            return -1;
        loop_once(TICK_MS);
    }
    return 0;
}

/* The integer after "key": in r's data; -1 when absent. */
static long long json_num(const rec_t *r, const char *key)
{
    char pat[64], buf[4096];
    size_t n = r->len < sizeof(buf) - 1 ? r->len : sizeof(buf) - 1;
    memcpy(buf, r->data ? (const char *)r->data : "", n);
    buf[n] = '\0';
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(buf, pat);
    return p ? strtoll(p + strlen(pat), NULL, 10) : -1;
}

/* r's data as a NUL-terminated string (static buffer). */
static const char *text(const rec_t *r)
{
    static char buf[1 << 16];
    size_t n = r->len < sizeof(buf) - 1 ? r->len : sizeof(buf) - 1;
    memcpy(buf, r->data ? (const char *)r->data : "", n);
    buf[n] = '\0';
    return buf;
}

static void test_segfault_others_unaffected(void **state)
{
    (void)state;
    rec_t slow = {0}, segv = {0}, after = {0};
    weft_pool_config_t cfg = {.size = 2, .timeout_ms = 5000};
    start_cfg(&cfg, "faulty.so");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    submit("{\"fail\":\"stamp-400\"}", &slow);
    submit("{\"fail\":\"segv\"}", &segv);
    assert_int_equal(wait_recs(&segv, 1, WAIT_MS), 0);
    assert_int_equal(segv.kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(segv.reason, "signal:11");
    assert_int_equal(slow.calls, 0); /* still running, untouched */
    submit("{\"after\":\"segv\"}", &after);
    assert_int_equal(wait_recs(&slow, 1, WAIT_MS), 0);
    assert_int_equal(wait_recs(&after, 1, WAIT_MS), 0);
    assert_int_equal(slow.kind, WEFT_OUTCOME_OK);
    assert_int_equal(json_num(&slow, "pid"), slow.pid);
    assert_int_equal(after.kind, WEFT_OUTCOME_OK);
    assert_int_equal(g.reaped, 1);
    assert_int_equal(stats().crashes, 1);
    rec_clear(&slow, 1);
    rec_clear(&segv, 1);
    rec_clear(&after, 1);
}

static void test_infinite_loop_caught_by_deadline(void **state)
{
    (void)state;
    rec_t spin = {0}, quick[3] = {{0}};
    weft_pool_config_t cfg = {.size = 2, .timeout_ms = 300};
    start_cfg(&cfg, "faulty.so");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    uint64_t t0 = now_ms();
    submit("{\"fail\":\"spin\"}", &spin);
    for (int i = 0; i < 3; i++)
        submit("{\"quick\":\"yes\"}", &quick[i]);
    assert_int_equal(wait_recs(quick, 3, WAIT_MS), 0);
    assert_int_equal(spin.calls, 0);
    assert_int_equal(wait_recs(&spin, 1, WAIT_MS), 0);
    assert_int_equal(spin.kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(spin.reason, "timeout");
    assert_true(spin.at_ms - t0 >= 300 && spin.at_ms - t0 < 2000);
    for (int i = 0; i < 3; i++)
        assert_int_equal(quick[i].kind, WEFT_OUTCOME_OK);
    /* A CPU-bound function dies of SIGTERM like a sleeping one. */
    assert_int_equal(wait_int(&g.reaped, 1, WAIT_MS), 0);
    assert_int_equal(g.by_signal[SIGTERM], 1);
    assert_int_equal(stats().timeouts, 1);
    rec_clear(&spin, 1);
    rec_clear(quick, 3);
}

static void test_memory_blowup(void **state)
{
    (void)state;
#ifdef HAVE_ASAN
    skip();
#else
    rec_t slow = {0}, blow = {0}, after = {0};
    weft_pool_config_t cfg = {.size = 2, .timeout_ms = 10000, .memory_mb = 96};
    start_cfg(&cfg, "faulty.so");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    submit("{\"fail\":\"stamp-300\"}", &slow);
    submit("{\"fail\":\"blowup\"}", &blow);
    assert_int_equal(wait_recs(&blow, 1, WAIT_MS), 0);
    assert_int_equal(blow.kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(blow.reason, "memory");
    submit("{}", &after);
    assert_int_equal(wait_recs(&slow, 1, WAIT_MS), 0);
    assert_int_equal(wait_recs(&after, 1, WAIT_MS), 0);
    assert_int_equal(slow.kind, WEFT_OUTCOME_OK);
    assert_int_equal(after.kind, WEFT_OUTCOME_OK);
    rec_clear(&slow, 1);
    rec_clear(&blow, 1);
    rec_clear(&after, 1);
#endif
}

static void test_leak_recycled_after_max_requests(void **state)
{
    (void)state;
    enum { N = 7 };
    rec_t r[N] = {{0}};
    weft_pool_config_t cfg = {.size = 1, .timeout_ms = 5000, .max_requests = 3};
    start_cfg(&cfg, "faulty.so");
    for (int i = 0; i < N; i++)
        submit("{\"fail\":\"leak\"}", &r[i]);
    assert_int_equal(wait_recs(r, N, WAIT_MS), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
        assert_int_equal(json_num(&r[i], "pid"), r[i].pid);
        /* Each process serves 3 and leaks at most 3 MiB. */
        assert_int_equal(json_num(&r[i], "leaked_mb"), i % 3 + 1);
        assert_int_equal(r[i].pid, r[i - i % 3].pid);
    }
    assert_true(r[0].pid != r[3].pid && r[3].pid != r[6].pid && r[0].pid != r[6].pid);
    weft_pool_stats_t st = stats();
    assert_int_equal(st.recycles, 2);
    assert_int_equal(st.crashes, 0);
    /* Recycled workers exited on their own (EOF), no signal needed. */
    assert_int_equal(wait_int(&g.reaped, 2, WAIT_MS), 0);
    for (int s = 1; s < 65; s++)
        assert_int_equal(g.by_signal[s], 0);
    rec_clear(r, N);
}

static void test_ondemand_scale_to_zero_and_back(void **state)
{
    (void)state;
    rec_t first = {0}, second = {0};
    weft_pool_config_t cfg = {.mode = WEFT_POOL_ONDEMAND,
                              .max_concurrency = 2,
                              .idle_timeout_ms = 300,
                              .timeout_ms = 5000};
    start_cfg(&cfg, "faulty.so");
    run_for(50);
    assert_int_equal(stats().workers, 0); /* nothing until an event arrives */
    submit("{\"fail\":\"stamp-0\"}", &first);
    assert_int_equal(wait_recs(&first, 1, WAIT_MS), 0);
    assert_int_equal(first.kind, WEFT_OUTCOME_OK);
    assert_int_equal(stats().workers, 1);
    /* Idle for idle_timeout_ms: the worker exits, the pool is at zero. */
    uint64_t end = now_ms() + WAIT_MS;
    while (stats().workers > 0 && now_ms() < end)
        loop_once(TICK_MS);
    weft_pool_stats_t st = stats();
    assert_int_equal(st.workers, 0);
    assert_true(now_ms() - first.at_ms >= 300);
    assert_int_equal(st.idle_exits, 1);
    assert_int_equal(st.crashes, 0);
    assert_int_equal(g.reaped, 1);
    assert_int_equal(g.by_signal[SIGTERM] + g.by_signal[SIGKILL], 0);
    /* And back: the next event starts a new worker. */
    submit("{\"fail\":\"stamp-0\"}", &second);
    assert_int_equal(wait_recs(&second, 1, WAIT_MS), 0);
    assert_int_equal(second.kind, WEFT_OUTCOME_OK);
    assert_true(second.pid != first.pid);
    assert_int_equal(stats().workers, 1);
    assert_int_equal(stats().spawns, 2);
    rec_clear(&first, 1);
    rec_clear(&second, 1);
}

static void test_max_concurrency_under_burst(void **state)
{
    (void)state;
    enum { N = 12, MAXC = 3 };
    rec_t r[N] = {{0}};
    weft_pool_config_t cfg = {
        .mode = WEFT_POOL_ONDEMAND, .max_concurrency = MAXC, .timeout_ms = 5000};
    start_cfg(&cfg, "faulty.so");
    for (int i = 0; i < N; i++)
        submit("{\"fail\":\"stamp-100\"}", &r[i]);
    int max_workers = 0, max_busy = 0;
    uint64_t end = now_ms() + WAIT_MS;
    for (;;) {
        weft_pool_stats_t st = stats();
        max_workers = st.workers > max_workers ? st.workers : max_workers;
        max_busy = st.busy > max_busy ? st.busy : max_busy;
        assert_true(st.running <= MAXC);
        int done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].calls;
        if (done == N || now_ms() >= end)
            break;
        loop_once(TICK_MS);
    }
    assert_true(max_workers <= MAXC);
    assert_true(max_busy <= MAXC);
    /* What the functions saw: never more than MAXC running at once (their
     * own monotonic stamps), and the burst did run in parallel. */
    long long s[N], e[N];
    pid_t pids[N];
    int npids = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
        s[i] = json_num(&r[i], "start_us");
        e[i] = json_num(&r[i], "end_us");
        int seen = 0;
        for (int j = 0; j < npids; j++)
            seen |= pids[j] == r[i].pid;
        if (!seen)
            pids[npids++] = r[i].pid;
    }
    int peak = 0;
    for (int i = 0; i < N; i++) {
        int at = 0;
        for (int j = 0; j < N; j++)
            at += s[j] <= s[i] && s[i] < e[j];
        peak = at > peak ? at : peak;
    }
    print_message("burst of %d: peak %d running, %d workers\n", N, peak, npids);
    assert_true(peak <= MAXC);
    assert_true(peak >= 2);
    assert_true(npids <= MAXC);
    rec_clear(r, N);
}

static void test_dynamic_spare_management(void **state)
{
    (void)state;
    enum { N = 6 };
    rec_t r[N] = {{0}};
    weft_pool_config_t cfg = {.mode = WEFT_POOL_DYNAMIC,
                              .size = 1,
                              .min_spare = 2,
                              .max_spare = 3,
                              .max_concurrency = 5,
                              .timeout_ms = 10000};
    start_cfg(&cfg, "faulty.so");
    /* Start: max(size, min_spare) workers, all idle. */
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    assert_int_equal(stats().workers, 2);
    for (int i = 0; i < N; i++)
        submit("{\"fail\":\"stamp-1500\"}", &r[i]);
    /* Under load the pool grows in rounds one second apart, up to max. */
    uint64_t spawn_at[16];
    int rounds = 0, peak = 0;
    uint64_t last_spawns = stats().spawns, end = now_ms() + 20000;
    for (;;) {
        weft_pool_stats_t st = stats();
        assert_true(st.workers <= 5);
        peak = st.workers > peak ? st.workers : peak;
        if (st.spawns > last_spawns && rounds < 16) {
            spawn_at[rounds++] = now_ms();
            last_spawns = st.spawns;
        }
        int done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].calls;
        if (done == N || now_ms() >= end)
            break;
        loop_once(TICK_MS);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
    assert_int_equal(peak, 5);
    assert_true(rounds >= 2);
    for (int i = 1; i < rounds; i++)
        assert_true(spawn_at[i] - spawn_at[i - 1] >= 700); /* 1 s, seen from the loop */
    /* Idle again: surplus workers above max_spare are retired, one per
     * second, gracefully. */
    end = now_ms() + 10000;
    while ((stats().idle > 3 || stats().stopping) && now_ms() < end)
        loop_once(TICK_MS);
    weft_pool_stats_t st = stats();
    assert_int_equal(st.idle, 3);
    assert_int_equal(st.workers, 3);
    assert_int_equal(st.idle_exits, 2);
    assert_int_equal(st.crashes, 0);
    rec_clear(r, N);
}

static void test_crash_storm_quarantine_and_recovery(void **state)
{
    (void)state;
    rec_t slow = {0}, crash[3] = {{0}}, queued[2] = {{0}}, refused = {0}, after = {0};
    weft_pool_config_t cfg = {.size = 2,
                              .timeout_ms = 5000,
                              .crash_storm_count = 3,
                              .crash_storm_window_ms = 5000,
                              .quarantine_ms = 1500};
    start_cfg(&cfg, "faulty.so");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    submit("{\"fail\":\"stamp-800\"}", &slow);
    for (int i = 0; i < 3; i++)
        submit("{\"fail\":\"crash\"}", &crash[i]);
    for (int i = 0; i < 2; i++)
        submit("{\"queued\":\"behind\"}", &queued[i]);
    assert_int_equal(wait_recs(queued, 2, WAIT_MS), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(crash[i].kind, WEFT_OUTCOME_CRASH);
        assert_string_equal(crash[i].reason, "signal:6");
    }
    /* The storm quarantined the pool: the queue is answered, retryable. */
    uint64_t q_at = queued[0].at_ms;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(queued[i].kind, WEFT_OUTCOME_CRASH);
        assert_string_equal(queued[i].reason, "quarantined");
        assert_true(queued[i].retry_after_ms > 0 && queued[i].retry_after_ms <= 1500);
    }
    weft_pool_stats_t st = stats();
    assert_int_equal(st.quarantined, 1);
    assert_int_equal(st.quarantines, 1);
    assert_int_equal(st.crashes, 3);
    /* New invocations are refused (from the loop, not from submit). */
    submit("{}", &refused);
    assert_int_equal(refused.calls, 0);
    assert_int_equal(wait_recs(&refused, 1, WAIT_MS), 0);
    assert_string_equal(refused.reason, "quarantined");
    /* The invocation in flight was not touched. */
    assert_int_equal(wait_recs(&slow, 1, WAIT_MS), 0);
    assert_int_equal(slow.kind, WEFT_OUTCOME_OK);
    assert_true(slow.at_ms < q_at + 1500);
    /* After the cool-down the pool starts again by itself. */
    uint64_t end = now_ms() + WAIT_MS;
    while (stats().quarantined && now_ms() < end)
        loop_once(TICK_MS);
    assert_int_equal(stats().quarantined, 0);
    assert_true(now_ms() - q_at >= 1400);
    submit("{\"recovered\":\"yes\"}", &after);
    assert_int_equal(wait_recs(&after, 1, WAIT_MS), 0);
    assert_int_equal(after.kind, WEFT_OUTCOME_OK);
    assert_data(&after, "{\"recovered\":\"yes\"}");
    rec_clear(&slow, 1);
    rec_clear(crash, 3);
    rec_clear(queued, 2);
    rec_clear(&refused, 1);
    rec_clear(&after, 1);
}

/* The names of the members of the "env" object in a hygiene answer,
 * comma-separated, sorted as they come. */
static void env_names(const char *json, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = strstr(json, "\"env\":{");
    assert_non_null(p);
    p += 7;
    int key = 1;
    size_t n = 0;
    while (*p && *p != '}') {
        if (*p != '"') {
            p++;
            continue;
        }
        const char *q = ++p;
        while (*q && *q != '"')
            q += *q == '\\' ? 2 : 1;
        if (key)
            n += (size_t)snprintf(out + n, cap - n, "%s%.*s", n ? "," : "", (int)(q - p), p);
        key = !key;
        p = *q ? q + 1 : q;
    }
}

/* Sanitizer variables the pool forwards in sanitizer builds only. */
static int allowed_extra(const char *name, size_t len)
{
    static const char *const san[] = {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
    for (size_t i = 0; i < 3; i++)
        if (strlen(san[i]) == len && strncmp(name, san[i], len) == 0)
            return 1;
    return 0;
}

static void assert_env_exactly(const char *names, const char *const *want, size_t n_want)
{
    size_t found = 0;
    for (const char *p = names; *p;) {
        size_t len = strcspn(p, ",");
        int ok = allowed_extra(p, len);
        for (size_t i = 0; i < n_want; i++)
            if (strlen(want[i]) == len && strncmp(p, want[i], len) == 0) {
                ok = 1;
                found++;
            }
        if (!ok)
            print_error("unexpected variable in the worker's environment: %.*s\n", (int)len, p);
        assert_true(ok);
        p += len + (p[len] == ',');
    }
    assert_int_equal(found, n_want);
}

static void test_hygiene_fds_and_env(void **state)
{
    (void)state;
    rec_t r = {0};
    setenv("FROM_PARENT", "parent-value", 1);
    setenv("WEFT_PG", "host=db password=secret-pg", 1);
    setenv("PGPASSWORD", "secret-pw", 1);
    setenv("SECRET_TOKEN", "secret-token", 1);
    static const char *const env[] = {"KEEP_ME=yes", "FROM_PARENT", "NOT_SET_ANYWHERE", "WEFT_PG",
                                      "PGPASSWORD"};
    weft_pool_config_t cfg = {.size = 1, .timeout_ms = 5000, .env = env, .n_env = 5};
    start_cfg(&cfg, "hygiene.so");
    submit("{}", &r);
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(r.kind, WEFT_OUTCOME_OK);
    const char *j = text(&r);
    print_message("%s\n", j);
    assert_non_null(strstr(j, "\"fds\":[0,1,2,3]"));
    assert_non_null(strstr(j, "\"no_new_privs\":1"));
    assert_non_null(strstr(j, "\"core_limit\":0"));
    assert_non_null(strstr(j, "\"KEEP_ME\":\"yes\""));
    assert_non_null(strstr(j, "\"FROM_PARENT\":\"parent-value\""));
    assert_non_null(strstr(j, "\"PATH\":\"/usr/bin:/bin\""));
    assert_null(strstr(j, "secret"));
    char names[1024];
    env_names(j, names, sizeof(names));
    static const char *const want[] = {"PATH", "LANG", "KEEP_ME", "FROM_PARENT"};
    assert_env_exactly(names, want, 4);
    rec_clear(&r, 1);
}

static void test_exec_hygiene(void **state)
{
    (void)state;
    rec_t r = {0};
    setenv("SECRET_TOKEN", "secret-token", 1);
    static const char *const env[] = {"KEEP_ME=yes"};
    weft_pool_config_t cfg = {
        .runtime = "exec", .size = 1, .timeout_ms = 5000, .env = env, .n_env = 1};
    start_cfg(&cfg, "faulty.py");
    submit("{\"fail\":\"env\"}", &r);
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(r.kind, WEFT_OUTCOME_OK);
    const char *j = text(&r);
    /* The program has its three pipes and nothing else: not the channel. */
    assert_non_null(strstr(j, "\"fds\":[0,1,2]"));
    assert_null(strstr(j, "secret"));
    char names[1024];
    env_names(j, names, sizeof(names));
    static const char *const want[] = {"PATH", "LANG", "KEEP_ME"};
    assert_env_exactly(names, want, 3);
    rec_clear(&r, 1);
}

static void test_run_as_nobody(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        print_message("not root: run-as cannot be tested\n");
        skip();
    }
    rec_t r = {0};
    weft_pool_config_t cfg = {.size = 1, .timeout_ms = 5000, .run_as_user = "nobody"};
    start_cfg(&cfg, "hygiene.so");
    submit("{}", &r);
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(r.kind, WEFT_OUTCOME_OK);
    const char *j = text(&r);
    assert_non_null(strstr(j, "\"uid\":65534,\"euid\":65534,\"gid\":65534,\"egid\":65534"));
    assert_non_null(strstr(j, "\"groups\":[65534]"));
    rec_clear(&r, 1);
}

static void test_exec_python_round_trips(void **state)
{
    (void)state;
    enum { N = 20 };
    rec_t r[N] = {{0}};
    char buf[64], want[64];
    weft_pool_config_t cfg = {.runtime = "exec", .size = 2, .timeout_ms = 5000};
    start_cfg(&cfg, "upper.py");
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf), "{\"i\":\"item-%d\",\"n\":[%d,\"x\"]}", i, i);
        submit(buf, &r[i]);
    }
    assert_int_equal(wait_recs(r, N, WAIT_MS), 0);
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof(want), "{\"i\":\"ITEM-%d\",\"n\":[%d,\"X\"]}", i, i);
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
        assert_string_equal(r[i].content_type, "application/json");
        assert_data(&r[i], want);
    }
    assert_int_equal(g.reaped, 0); /* one program per worker served them all */
    rec_clear(r, N);
}

static void test_exec_sh_round_trips(void **state)
{
    (void)state;
    enum { N = 10 };
    rec_t r[N] = {{0}}, bad = {0};
    char buf[96], want[96];
    weft_pool_config_t cfg = {.runtime = "exec", .size = 2, .timeout_ms = 5000};
    start_cfg(&cfg, "upper.sh");
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf),
                 "{\"i\":\"item-%d\",\"esc\":\"a\\\"b\\u00e9\",\"o\":{\"k\":\"v\"}}", i);
        submit(buf, &r[i]);
    }
    submit_full("\x01\x02", 2, &bad, 1, NULL, 0, "trig");
    assert_int_equal(wait_recs(r, N, WAIT_MS), 0);
    assert_int_equal(wait_recs(&bad, 1, WAIT_MS), 0);
    for (int i = 0; i < N; i++) {
        snprintf(want, sizeof(want),
                 "{\"i\":\"ITEM-%d\",\"esc\":\"A\\\"B\\u00e9\",\"o\":{\"k\":\"V\"}}", i);
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
        assert_data(&r[i], want);
    }
    assert_int_equal(bad.kind, WEFT_OUTCOME_FAIL);
    assert_string_equal(bad.error, "data is empty or not JSON");
    assert_int_equal(g.reaped, 0);
    rec_clear(r, N);
    rec_clear(&bad, 1);
}

static void test_exec_request_format(void **state)
{
    (void)state;
    rec_t r = {0}, bin = {0};
    attr_spec_t a[6];
    a[0] = str_attr("subject", "orders/42");
    a[1] =
        (attr_spec_t){"time", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
    ts.seconds = 1795284000;
    ts.nanos = 123000000;
    a[1].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    a[1].val.ce_timestamp = &ts;
    a[2] = str_attr("datacontenttype", "application/json");
    a[3] =
        (attr_spec_t){"flag", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a[3].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN;
    a[3].val.ce_boolean = 1;
    a[4] =
        (attr_spec_t){"count", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a[4].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
    a[4].val.ce_integer = -5;
    a[5] =
        (attr_spec_t){"raw", IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__INIT};
    a[5].val.attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES;
    a[5].val.ce_bytes.data = (uint8_t *)"hi!?";
    a[5].val.ce_bytes.len = 4;
    attr_spec_t octet = str_attr("datacontenttype", "application/octet-stream");

    weft_pool_config_t cfg = {.runtime = "exec", .size = 1, .timeout_ms = 5000};
    start_cfg(&cfg, "faulty.py");
    const char *data = "{ \"a\" : \"b\",\n  \"n\": [1, 2.5e3] }";
    submit_full(data, strlen(data), &r, 3, a, 6, "orders");
    submit_full("\x00\x01\xff", 3, &bin, 1, &octet, 1, "t");
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(wait_recs(&bin, 1, WAIT_MS), 0);
    assert_int_equal(r.kind, WEFT_OUTCOME_OK);
    /* faulty.py echoes the request; Python keeps member order. */
    const char *want =
        "\"request\":{\"event\":{\"specversion\":\"1.0\",\"id\":\"ev-1\",\"source\":\"/tests/"
        "pool\","
        "\"type\":\"org.weft.test\",\"subject\":\"orders/"
        "42\",\"time\":\"2026-11-21T18:00:00.123Z\","
        "\"datacontenttype\":\"application/json\",\"flag\":true,\"count\":-5,\"raw\":\"aGkhPw==\","
        "\"data\":{\"a\":\"b\",\"n\":[1,2.5e3]}},\"trigger\":\"orders\",\"attempt\":3,"
        "\"deadline_ms\":5000}";
    /* Python prints 2.5e3 as 2500.0: compare the member it reserialized. */
    const char *j = text(&r);
    char want_py[1024];
    snprintf(want_py, sizeof(want_py), "%s", want);
    char *num = strstr(want_py, "2.5e3");
    memmove(num + 6, num + 5, strlen(num + 5) + 1);
    memcpy(num, "2500.0", 6);
    if (!strstr(j, want_py))
        print_error("got  %s\nwant %s\n", j, want_py);
    assert_non_null(strstr(j, want_py));
    assert_int_equal(bin.kind, WEFT_OUTCOME_OK);
    assert_non_null(strstr(text(&bin), "\"data_base64\":\"AAH/\""));
    rec_clear(&r, 1);
    rec_clear(&bin, 1);
}

static void test_exec_program_exits_mid_stream(void **state)
{
    (void)state;
    rec_t slow = {0}, ex = {0}, before = {0}, after = {0};
    weft_pool_config_t cfg = {.runtime = "exec", .size = 2, .timeout_ms = 5000};
    start_cfg(&cfg, "faulty.py");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    submit("{\"fail\":\"sleep-1500\"}", &slow);
    submit("{\"fail\":\"none\"}", &before);
    assert_int_equal(wait_recs(&before, 1, WAIT_MS), 0);
    submit("{\"fail\":\"exit\"}", &ex);
    assert_int_equal(wait_recs(&ex, 1, WAIT_MS), 0);
    assert_int_equal(ex.kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(ex.reason, "exited");
    assert_non_null(strstr(ex.error, "code 3"));
    assert_int_equal(ex.pid, before.pid); /* the worker survived */
    /* The same worker restarts the program for the next event. */
    submit("{\"fail\":\"none\"}", &after);
    assert_int_equal(wait_recs(&after, 1, WAIT_MS), 0);
    assert_int_equal(after.kind, WEFT_OUTCOME_OK);
    assert_int_equal(after.pid, before.pid);
    assert_int_equal(json_num(&after, "count"), 1);
    assert_true(json_num(&after, "pid") != json_num(&before, "pid"));
    /* The other worker's invocation went on. */
    assert_int_equal(wait_recs(&slow, 1, WAIT_MS), 0);
    assert_int_equal(slow.kind, WEFT_OUTCOME_OK);
    assert_int_equal(g.reaped, 0);
    assert_int_equal(stats().crashes, 1);
    rec_clear(&slow, 1);
    rec_clear(&ex, 1);
    rec_clear(&before, 1);
    rec_clear(&after, 1);
}

static void test_exec_bad_replies(void **state)
{
    (void)state;
    static const struct {
        const char *data;
        weft_outcome_kind_t kind;
        const char *reason;
    } cases[] = {
        {"{\"fail\":\"garbage\"}", WEFT_OUTCOME_CRASH, "bad_frame"},
        {"{\"fail\":\"badjson\"}", WEFT_OUTCOME_CRASH, "bad_frame"},
        {"{\"fail\":\"big-300000\"}", WEFT_OUTCOME_FAIL, "result_too_large"},
        {"{\"fail\":\"big-5000000\"}", WEFT_OUTCOME_FAIL, "result_too_large"},
        {"{\"fail\":\"kill\"}", WEFT_OUTCOME_CRASH, "signal:9"},
        {"{\"fail\":\"retry\"}", WEFT_OUTCOME_RETRY, ""},
        {"{\"fail\":\"fatal\"}", WEFT_OUTCOME_FAIL, ""},
        {"{\"fail\":\"drop\"}", WEFT_OUTCOME_DROP, ""},
        {"{\"fail\":\"text\"}", WEFT_OUTCOME_OK, ""},
        {"{\"fail\":\"binary\"}", WEFT_OUTCOME_OK, ""},
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    rec_t r[N] = {{0}}, ok[N] = {{0}};
    weft_pool_config_t cfg = {
        .runtime = "exec", .size = 1, .timeout_ms = 5000, .max_result_bytes = 200000};
    start_cfg(&cfg, "faulty.py");
    for (size_t i = 0; i < N; i++) {
        submit(cases[i].data, &r[i]);
        submit("{\"fail\":\"none\"}", &ok[i]); /* the program serves on */
    }
    assert_int_equal(wait_recs(r, N, WAIT_MS), 0);
    assert_int_equal(wait_recs(ok, N, WAIT_MS), 0);
    for (size_t i = 0; i < N; i++) {
        if (r[i].kind != cases[i].kind || strcmp(r[i].reason, cases[i].reason) != 0)
            print_error("%s: kind %d reason %s error %s\n", cases[i].data, r[i].kind, r[i].reason,
                        r[i].error);
        assert_int_equal(r[i].kind, cases[i].kind);
        assert_string_equal(r[i].reason, cases[i].reason);
        assert_int_equal(ok[i].kind, WEFT_OUTCOME_OK);
    }
    assert_int_equal(r[5].retry_after_ms, 1500);
    assert_string_equal(r[5].error, "asked to retry");
    assert_string_equal(r[6].error, "asked to fail");
    assert_string_equal(r[8].content_type, "text/plain");
    assert_data(&r[8], "plain text");
    assert_string_equal(r[9].content_type, "application/octet-stream");
    assert_int_equal(r[9].len, 4);
    assert_memory_equal(r[9].data, "\x00\x01\x02\xff", 4);
    assert_int_equal(g.reaped, 0); /* one worker throughout */
    rec_clear(r, N);
    rec_clear(ok, N);
}

static void test_exec_timeout_kills_program(void **state)
{
    (void)state;
    rec_t who = {0}, hang = {0}, after = {0};
    weft_pool_config_t cfg = {.runtime = "exec", .size = 1, .timeout_ms = 400};
    start_cfg(&cfg, "faulty.py");
    submit("{\"fail\":\"none\"}", &who);
    assert_int_equal(wait_recs(&who, 1, WAIT_MS), 0);
    pid_t prog = (pid_t)json_num(&who, "pid");
    assert_true(prog > 0);
    submit("{\"fail\":\"hang\"}", &hang);
    assert_int_equal(wait_recs(&hang, 1, WAIT_MS), 0);
    assert_string_equal(hang.reason, "timeout");
    assert_int_equal(wait_int(&g.reaped, 1, WAIT_MS), 0);
    /* The program went with its worker (same process group). */
    uint64_t end = now_ms() + WAIT_MS;
    while (kill(prog, 0) == 0 && now_ms() < end)
        loop_once(TICK_MS);
    assert_int_equal(kill(prog, 0), -1);
    assert_int_equal(errno, ESRCH);
    submit("{\"fail\":\"none\"}", &after);
    assert_int_equal(wait_recs(&after, 1, WAIT_MS), 0);
    assert_int_equal(after.kind, WEFT_OUTCOME_OK);
    rec_clear(&who, 1);
    rec_clear(&hang, 1);
    rec_clear(&after, 1);
}

static void test_exec_missing_program_is_config_error(void **state)
{
    (void)state;
    rec_t r = {0};
    weft_pool_config_t cfg = {.runtime = "exec", .size = 1, .timeout_ms = 5000};
    start_cfg(&cfg, "no-such-program.py");
    submit("{}", &r);
    assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
    assert_int_equal(r.kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(r.reason, "config");
    rec_clear(&r, 1);
}

/* ---- pipelining ------------------------------------------------------------ */

/* Runs n cheap calls one at a time, so the pool has measured the function
 * as cheap (it pipelines nothing before that); returns the pid that ran
 * them (a pool of one). */
static pid_t warm_up(int n)
{
    pid_t pid = 0;
    for (int i = 0; i < n; i++) {
        rec_t r = {0};
        submit("{\"fail\":\"stamp-0\"}", &r);
        assert_int_equal(wait_recs(&r, 1, WAIT_MS), 0);
        assert_int_equal(r.kind, WEFT_OUTCOME_OK);
        pid = r.pid;
        rec_clear(&r, 1);
    }
    return pid;
}

/* Like wait_recs, also recording the most invocations seen queued on
 * workers at once. */
/* For the tests that count what was pipelined: with the default budget
 * (5 ms of expected work per worker) a loaded machine's slow warm-up calls
 * lower the depth, and the count with them (seen in CI: 1 instead of 5
 * queued behind a crash while other builds ran). */
#define BIG_BUDGET_US 60000000u

static int wait_recs_pipelined(rec_t *r, size_t n, int timeout_ms, size_t *max_pipelined)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        weft_pool_stats_t st = stats();
        if (st.pipelined > *max_pipelined)
            *max_pipelined = st.pipelined;
        size_t done = 0;
        for (size_t i = 0; i < n; i++)
            done += r[i].calls > 0;
        if (done == n)
            return 0;
        if (now_ms() >= end)
            return -1;
        loop_once(TICK_MS);
    }
}

/* A backlog is pipelined; every Result matches its invocation (distinct
 * data in, the same data uppercased out), one callback each. */
static void test_pipeline_backlog_in_order(void **state)
{
    (void)state;
    enum { N = 3000 };
    rec_t *r = calloc(N, sizeof(*r));
    char buf[64], want[64];
    /* A budget no service time reaches: how many invocations a worker
     * takes must not depend on how fast this machine ran the calls. */
    weft_pool_config_t cfg = {
        .size = 2, .timeout_ms = 5000, .pipeline_depth = 8, .pipeline_budget_us = BIG_BUDGET_US};
    start_cfg(&cfg, "uppercase.so");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    submit("\"warm\"", &r[0]);
    assert_int_equal(wait_recs(r, 1, WAIT_MS), 0);
    for (int i = 1; i < N; i++) {
        snprintf(buf, sizeof(buf), "{\"i\":\"item-%d\"}", i);
        submit(buf, &r[i]);
    }
    /* submit never pipelines: one running per worker, the rest in the
     * pool's queue. */
    weft_pool_stats_t st = stats();
    assert_int_equal(st.running, 2);
    assert_int_equal(st.pipelined, 0);
    assert_int_equal(st.queued, N - 3);
    assert_int_equal(st.pipeline_depth, 8);
    size_t max_pipelined = 0;
    assert_int_equal(wait_recs_pipelined(r, N, 30000, &max_pipelined), 0);
    for (int i = 1; i < N; i++) {
        snprintf(want, sizeof(want), "{\"i\":\"ITEM-%d\"}", i);
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
        assert_data(&r[i], want);
    }
    print_message("most invocations queued on workers at once: %zu\n", max_pipelined);
    assert_true(max_pipelined >= 2);
    assert_true(max_pipelined <= 2 * 7); /* depth 8: 1 running + 7 queued per worker */
    assert_int_equal(weft_pool_inflight(g.pool), 0);
    assert_int_equal(g.reaped, 0);
    rec_clear(r, N);
    free(r);
}

/* pipeline_depth 1 never queues on a worker; out-of-range depths are
 * refused. */
static void test_pipeline_depth_one_and_limits(void **state)
{
    (void)state;
    enum { N = 300 };
    rec_t r[N] = {{0}};
    char err[256] = "";
    weft_pool_config_t bad = {
        .size = 1, .entry = "/x.so", .worker_path = g.worker, .pipeline_depth = -1};
    assert_null(weft_pool_new(&bad, g.epfd, on_done, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "pipeline_depth"));
    bad.pipeline_depth = WEFT_POOL_MAX_PIPELINE_DEPTH + 1;
    assert_null(weft_pool_new(&bad, g.epfd, on_done, NULL, err, sizeof(err)));

    weft_pool_config_t cfg = {.size = 2, .timeout_ms = 5000, .pipeline_depth = 1};
    start_cfg(&cfg, "faulty.so");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    for (int i = 0; i < N; i++)
        submit("{\"fail\":\"stamp-0\"}", &r[i]);
    size_t max_pipelined = 0;
    assert_int_equal(wait_recs_pipelined(r, N, WAIT_MS, &max_pipelined), 0);
    assert_int_equal(max_pipelined, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
    rec_clear(r, N);
}

/* A lone event goes out at once to an idle worker, never behind another
 * one: with one worker busy on a slow call, the next event runs on the
 * other worker. */
static void test_pipeline_idle_worker_first(void **state)
{
    (void)state;
    rec_t slow = {0}, lone = {0};
    weft_pool_config_t cfg = {.size = 2, .timeout_ms = 5000};
    start_cfg(&cfg, "faulty.so");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    submit("{\"fail\":\"stamp-0\"}", &lone); /* measured cheap */
    assert_int_equal(wait_recs(&lone, 1, WAIT_MS), 0);
    rec_clear(&lone, 1);
    submit("{\"fail\":\"stamp-400\"}", &slow);
    uint64_t t0 = now_ms();
    submit("{\"fail\":\"stamp-0\"}", &lone);
    weft_pool_stats_t st = stats();
    assert_int_equal(st.running, 2); /* sent at once, no batching window */
    assert_int_equal(st.queued, 0);
    assert_int_equal(wait_recs(&lone, 1, WAIT_MS), 0);
    assert_true(lone.at_ms - t0 < 300);
    assert_int_equal(slow.calls, 0);
    assert_int_equal(wait_recs(&slow, 1, WAIT_MS), 0);
    assert_true(lone.pid != slow.pid);
    rec_clear(&slow, 1);
    rec_clear(&lone, 1);
}

/* On one worker: three 200 ms calls queued behind cheap ones, then a hang
 * and one more, with a 300 ms timeout. The queued calls take 600 ms in all
 * but none is charged for its wait; the hang times out 300 ms after the
 * Result before it arrived; the call behind it never ran there and goes to
 * the next worker. */
static void test_pipeline_deadline_counts_from_start(void **state)
{
    (void)state;
    rec_t cheap[3] = {{0}}, slow[3] = {{0}}, hang = {0}, after = {0};
    weft_pool_config_t cfg = {
        .size = 1, .timeout_ms = 300, .pipeline_depth = 8, .pipeline_budget_us = BIG_BUDGET_US};
    start_cfg(&cfg, "faulty.so");
    pid_t first = warm_up(5);
    /* The first goes to the idle worker; the rest wait, then follow it on
     * the worker when its Result arrives. */
    for (int i = 0; i < 3; i++)
        submit("{\"fail\":\"stamp-0\"}", &cheap[i]);
    for (int i = 0; i < 3; i++)
        submit("{\"fail\":\"stamp-200\"}", &slow[i]);
    submit("{\"fail\":\"hang\"}", &hang);
    submit("{\"fail\":\"stamp-0\"}", &after);
    size_t max_pipelined = 0;
    assert_int_equal(wait_recs_pipelined(slow, 3, WAIT_MS, &max_pipelined), 0);
    assert_true(max_pipelined >= 5);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cheap[i].kind, WEFT_OUTCOME_OK);
        assert_int_equal(slow[i].kind, WEFT_OUTCOME_OK);
        assert_int_equal(slow[i].pid, first);
    }
    assert_true(slow[2].at_ms - slow[0].at_ms >= 390); /* they did queue */
    assert_int_equal(wait_recs(&hang, 1, WAIT_MS), 0);
    assert_int_equal(hang.kind, WEFT_OUTCOME_CRASH);
    assert_string_equal(hang.reason, "timeout");
    assert_true(hang.at_ms - slow[2].at_ms >= 300);
    assert_int_equal(wait_recs(&after, 1, WAIT_MS), 0);
    assert_int_equal(after.calls, 1);
    assert_int_equal(after.kind, WEFT_OUTCOME_OK);
    assert_true(after.pid != first); /* requeued, run by the new worker */
    weft_pool_stats_t st = stats();
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.crashes, 1); /* the timeout, nothing else */
    assert_int_equal(hang.calls, 1);
    rec_clear(cheap, 3);
    rec_clear(slow, 3);
    rec_clear(&hang, 1);
    rec_clear(&after, 1);
}

/* A worker that crashes, exits or sends a bad frame (undecodable, or a
 * Result for another seq) in the middle of its FIFO: the running call gets
 * CRASH, the ones queued behind it run once, on another worker. */
static void test_pipeline_crash_requeues_the_rest(void **state)
{
    (void)state;
    static const struct {
        const char *mode, *reason;
    } cases[] = {
        {"crash", "signal:6"},
        {"exit", "exited"},
        {"garbage", "bad_frame"},
        {"wrongseq", "bad_frame"},
    };
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        enum { Q = 5 };
        rec_t before[2] = {{0}}, bad = {0}, queued[Q] = {{0}};
        char data[64];
        weft_pool_config_t cfg = {.size = 1,
                                  .timeout_ms = 5000,
                                  .crash_storm_count = -1,
                                  .pipeline_budget_us = BIG_BUDGET_US};
        setup(NULL);
        start_cfg(&cfg, "faulty.so");
        pid_t first = warm_up(5);
        for (int i = 0; i < 2; i++)
            submit("{\"fail\":\"stamp-0\"}", &before[i]);
        snprintf(data, sizeof(data), "{\"fail\":\"%s\"}", cases[c].mode);
        submit(data, &bad);
        for (int i = 0; i < Q; i++)
            submit("{\"fail\":\"leak\"}", &queued[i]);
        size_t max_pipelined = 0;
        assert_int_equal(wait_recs_pipelined(&bad, 1, WAIT_MS, &max_pipelined), 0);
        assert_true(max_pipelined >= Q); /* they were queued behind it */
        assert_int_equal(bad.kind, WEFT_OUTCOME_CRASH);
        assert_string_equal(bad.reason, cases[c].reason);
        assert_int_equal(wait_recs(queued, Q, WAIT_MS), 0);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(before[i].kind, WEFT_OUTCOME_OK);
            assert_int_equal(before[i].pid, first);
        }
        for (int i = 0; i < Q; i++) {
            assert_int_equal(queued[i].calls, 1);
            assert_int_equal(queued[i].kind, WEFT_OUTCOME_OK);
            assert_true(queued[i].pid != first);
            /* Run in order on the new worker, each exactly once there. */
            assert_int_equal(json_num(&queued[i], "calls"), i + 1);
        }
        assert_int_equal(stats().crashes, 1);
        assert_int_equal(weft_pool_inflight(g.pool), 0);
        assert_int_equal(teardown(NULL), 0);
        rec_clear(before, 2);
        rec_clear(&bad, 1);
        rec_clear(queued, Q);
    }
}

/* max_requests counts what a worker was handed: no worker ever holds an
 * invocation beyond its last, so recycling never requeues or drops one. */
static void test_pipeline_max_requests(void **state)
{
    (void)state;
    enum { N = 60, MAXR = 7 };
    rec_t r[N] = {{0}};
    weft_pool_config_t cfg = {.size = 2, .timeout_ms = 5000, .max_requests = MAXR};
    start_cfg(&cfg, "faulty.so");
    assert_int_equal(wait_idle(2, WAIT_MS), 0);
    for (int i = 0; i < N; i++)
        submit("{\"fail\":\"stamp-0\"}", &r[i]);
    size_t max_pipelined = 0;
    assert_int_equal(wait_recs_pipelined(r, N, 30000, &max_pipelined), 0);
    assert_true(max_pipelined >= 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].kind, WEFT_OUTCOME_OK);
        assert_int_equal(json_num(&r[i], "pid"), r[i].pid);
        int same = 0;
        for (int j = 0; j < N; j++)
            same += r[j].pid == r[i].pid;
        assert_true(same <= MAXR);
    }
    weft_pool_stats_t st = stats();
    assert_int_equal(st.crashes, 0);
    assert_true(st.recycles >= N / MAXR - 1);
    for (int s = 1; s < 65; s++)
        assert_int_equal(g.by_signal[s], 0);
    rec_clear(r, N);
}

/* Destroy drops what is queued on workers too, without callbacks. */
static void test_pipeline_destroy_drops_without_callbacks(void **state)
{
    (void)state;
    enum { N = 6 };
    rec_t r[N] = {{0}};
    weft_pool_config_t cfg = {.size = 1, .timeout_ms = 0};
    start_cfg(&cfg, "faulty.so");
    warm_up(5);
    submit("{\"fail\":\"stamp-0\"}", &r[0]);
    submit("{\"fail\":\"hang\"}", &r[1]);
    for (int i = 2; i < N; i++)
        submit("{}", &r[i]);
    assert_int_equal(wait_recs(r, 1, WAIT_MS), 0);
    run_for(100);
    weft_pool_stats_t st = stats();
    assert_int_equal(st.pipelined, N - 2);
    assert_int_equal(weft_pool_inflight(g.pool), N - 1);
    weft_pool_destroy(g.pool, 500);
    g.pool = NULL;
    for (int i = 1; i < N; i++)
        assert_int_equal(r[i].calls, 0);
    rec_clear(r, N);
}

static void test_bad_env_entry_refused(void **state)
{
    (void)state;
    char err[256] = "", entry[PATH_MAX + 64];
    static const char *const env[] = {"OK=1", "BAD NAME=x"};
    snprintf(entry, sizeof(entry), "%s/noop.so", g.functions);
    weft_pool_config_t cfg = {
        .size = 1, .entry = entry, .worker_path = g.worker, .env = env, .n_env = 2};
    assert_null(weft_pool_new(&cfg, g.epfd, on_done, NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "BAD NAME"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_uppercase_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uppercase_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_on_two_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dispositions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_mapping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filter_and_function_see_same_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_is_reported_and_worker_replaced, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_timeout_while_other_worker_serves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_escalates_to_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_is_bad_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_result_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_input_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_error_no_fast_respawn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_init_not_charged_to_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_worker_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_drops_queue_without_callbacks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_segfault_others_unaffected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_infinite_loop_caught_by_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_blowup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leak_recycled_after_max_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ondemand_scale_to_zero_and_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_concurrency_under_burst, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dynamic_spare_management, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_storm_quarantine_and_recovery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hygiene_fds_and_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_hygiene, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_as_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_python_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_sh_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_request_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_program_exits_mid_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_bad_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_timeout_kills_program, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_missing_program_is_config_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_env_entry_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_backlog_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_depth_one_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_idle_worker_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_deadline_counts_from_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_crash_requeues_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_max_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_destroy_drops_without_callbacks, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
