/*
 * test_invoke.c - `weft invoke`, run as the real binary (<build>/bin/weft)
 * against the real worker and example functions: output, exit codes and
 * usage errors, the way a user sees them.
 *
 * Paths come from WEFT_BIN_DIR and WEFT_FUNCTIONS_DIR (set by ctest; the
 * latter is also how `weft invoke` finds functions by name here).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif

#define RUN_TIMEOUT_MS 20000

static char g_weft[PATH_MAX];
static char g_functions[PATH_MAX];

typedef struct run {
    int status; /* exit code, or 128 + signal */
    char out[1 << 16];
    size_t out_len;
    char err[1 << 16];
    size_t err_len;
    uint64_t took_ms;
} run_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void drain(int *fd, char *buf, size_t cap, size_t *len)
{
    ssize_t r = read(*fd, buf + *len, cap - 1 - *len);
    if (r > 0) {
        *len += (size_t)r;
        buf[*len] = '\0';
    } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        close(*fd);
        *fd = -1;
    }
}

/* Runs `weft invoke ARGS...` (NULL-terminated) with in on its stdin. */
static void run_invoke(run_t *r, const char *in, ...)
{
    const char *argv[64] = {g_weft, "invoke"};
    int argc = 2;
    va_list ap;
    va_start(ap, in);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;

    int pin[2], pout[2], perr[2];
    assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
    assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
    memset(r, 0, sizeof(*r));
    uint64_t t0 = now_ms();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        execv(g_weft, (char *const *)argv);
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    if (in) {
        size_t n = strlen(in);
        assert_int_equal(write(pin[1], in, n), (ssize_t)n);
    }
    close(pin[1]);
    int fo = pout[0], fe = perr[0];
    while (fo >= 0 || fe >= 0) {
        struct pollfd pfd[2] = {{.fd = fo, .events = POLLIN}, {.fd = fe, .events = POLLIN}};
        int left = (int)(t0 + RUN_TIMEOUT_MS - now_ms());
        if (left <= 0 || poll(pfd, 2, left) <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (fo >= 0 && pfd[0].revents)
            drain(&fo, r->out, sizeof(r->out), &r->out_len);
        if (fe >= 0 && pfd[1].revents)
            drain(&fe, r->err, sizeof(r->err), &r->err_len);
    }
    if (fo >= 0)
        close(fo);
    if (fe >= 0)
        close(fe);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->took_ms = now_ms() - t0;
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void expect(const run_t *r, int status, const char *in_out, const char *in_err)
{
    if (r->status != status || (in_out && !strstr(r->out, in_out)) ||
        (in_err && !strstr(r->err, in_err)))
        print_error("status %d (want %d)\nstdout: %s\nstderr: %s\n", r->status, status, r->out,
                    r->err);
    assert_int_equal(r->status, status);
    if (in_out)
        assert_non_null(strstr(r->out, in_out));
    if (in_err)
        assert_non_null(strstr(r->err, in_err));
}

static int group_setup(void **state)
{
    (void)state;
    const char *bin = getenv("WEFT_BIN_DIR");
    const char *fns = getenv("WEFT_FUNCTIONS_DIR");
    if (!bin || !fns) {
        fprintf(stderr, "WEFT_BIN_DIR and WEFT_FUNCTIONS_DIR must be set (ctest sets them)\n");
        return -1;
    }
    snprintf(g_weft, sizeof(g_weft), "%s/weft", bin);
    snprintf(g_functions, sizeof(g_functions), "%s", fns);
    if (access(g_weft, X_OK) != 0) {
        fprintf(stderr, "%s: %s (build target weft)\n", g_weft, strerror(errno));
        return -1;
    }
#ifdef HAVE_ASAN
    char asan[600];
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof(asan), "%s%shandle_segv=0", old ? old : "", old && *old ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
#endif
    return 0;
}

static void test_invoke_shared_object(void **state)
{
    (void)state;
    run_t r;
    run_invoke(&r, NULL, "uppercase", "--data", "{\"name\":\"ada lovelace\"}", NULL);
    expect(&r, 0, NULL, "weft invoke: ok content_type=application/json bytes=23");
    assert_string_equal(r.out, "{\"name\":\"ADA LOVELACE\"}"); /* data only, untouched */
}

static void test_invoke_exec_python_json(void **state)
{
    (void)state;
    run_t r;
    run_invoke(&r, NULL, "upper.py", "--data", "{\"a\":[\"b\",1]}", "--json", NULL);
    expect(&r, 0, "\"disposition\":\"ok\"", NULL);
    assert_non_null(strstr(r.out, "\"runtime\":\"exec\""));
    assert_non_null(
        strstr(r.out, "\"datacontenttype\":\"application/json\",\"data\":{\"a\":[\"B\",1]}"));
    /* The program's stderr reaches the log, prefixed and tagged. */
    assert_non_null(strstr(r.err, "info fn["));
    assert_non_null(strstr(r.err, "] upper.py ready (python"));
    assert_non_null(strstr(r.err, "function=upper.py"));
}

static void test_invoke_sh_data_from_file_and_stdin(void **state)
{
    (void)state;
    char path[] = "/tmp/weft-invoke-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *ev = "{\"greeting\":\"hello\",\"to\":{\"who\":\"world\"}}";
    assert_int_equal(write(fd, ev, strlen(ev)), (ssize_t)strlen(ev));
    close(fd);
    char at[sizeof(path) + 1];
    snprintf(at, sizeof(at), "@%s", path);
    run_t r;
    run_invoke(&r, NULL, "upper.sh", "--data", at, NULL);
    unlink(path);
    expect(&r, 0, NULL, "weft invoke: ok");
    assert_string_equal(r.out, "{\"greeting\":\"HELLO\",\"to\":{\"who\":\"WORLD\"}}");

    run_invoke(&r, "{\"x\":\"from stdin\"}", "--data", "-", "--functions-dir", g_functions,
               "upper.sh", NULL);
    expect(&r, 0, NULL, "weft invoke: ok");
    assert_string_equal(r.out, "{\"x\":\"FROM STDIN\"}");
}

static void test_invoke_event_attributes(void **state)
{
    (void)state;
    run_t r;
    run_invoke(&r, NULL, "describe", "--data", "hello", "--type", "org.example.t", "--source",
               "/src", "--id", "ID-1", "--subject", "orders/1", "--ext", "tenant=acme", "--trigger",
               "manual", "--attempt", "2", NULL);
    expect(&r, 0, "id=ID-1\nsource=/src\nspecversion=1.0\ntype=org.example.t\nsubject=orders/1\n",
           NULL);
    assert_non_null(strstr(r.out, "datacontenttype=application/octet-stream\n"));
    assert_non_null(strstr(r.out, "attr.tenant=acme\n"));
    assert_non_null(strstr(r.out, "trigger=manual\nattempt=2\ndata_len=5\n"));
}

static void test_invoke_failures_exit_1(void **state)
{
    (void)state;
    run_t r;
    run_invoke(&r, NULL, "faulty", "--data", "{\"fail\":\"fatal\"}", NULL);
    expect(&r, 1, NULL, "weft invoke: fail error=\"asked to fail\"");
    assert_int_equal(r.out_len, 0);

    run_invoke(&r, NULL, "faulty", "--data", "{\"fail\":\"retry\"}", "--json", NULL);
    expect(&r, 1, "\"disposition\":\"retry\"", NULL);
    assert_non_null(strstr(r.out, "\"error\":\"asked to retry\""));

    run_invoke(&r, NULL, "faulty", "--data", "{\"fail\":\"segv\"}", NULL);
    expect(&r, 1, NULL, "weft invoke: crash reason=signal:11");

    run_invoke(&r, NULL, "faulty.py", "--data", "{\"fail\":\"exit\"}", NULL);
    expect(&r, 1, NULL,
           "weft invoke: crash reason=exited error=\"function program exited with code 3");

    run_invoke(&r, NULL, "faulty", "--data", "{\"fail\":\"drop\"}", NULL);
    expect(&r, 0, NULL, "weft invoke: drop");
}

static void test_invoke_timeout(void **state)
{
    (void)state;
    run_t r;
    run_invoke(&r, NULL, "faulty", "--data", "{\"fail\":\"hang\"}", "--timeout-ms", "300", NULL);
    expect(&r, 1, NULL, "weft invoke: crash reason=timeout");
    assert_true(r.took_ms < 5000);
}

static void test_invoke_usage_errors(void **state)
{
    (void)state;
    run_t r;
    run_invoke(&r, NULL, "--help", NULL);
    expect(&r, 0, "usage: weft invoke FUNCTION", NULL);

    run_invoke(&r, NULL, NULL);
    expect(&r, 2, NULL, "weft invoke: which function?");
    run_invoke(&r, NULL, "no-such-function", NULL);
    expect(&r, 2, NULL, "function no-such-function not found in ");
    run_invoke(&r, NULL, "uppercase", "--bogus", NULL);
    expect(&r, 2, NULL, "weft invoke: unknown option --bogus");
    run_invoke(&r, NULL, "uppercase", "--timeout-ms", "soon", NULL);
    expect(&r, 2, NULL, "--timeout-ms soon: want a number of ms");
    run_invoke(&r, NULL, "uppercase", "--data", NULL);
    expect(&r, 2, NULL, "option --data needs a value");
    run_invoke(&r, NULL, "uppercase", "--ext", "NoEquals", NULL);
    expect(&r, 2, NULL, "--ext NoEquals: want NAME=VALUE");
    run_invoke(&r, NULL, "uppercase", "--runtime", "jvm", NULL);
    expect(&r, 2, NULL, "--runtime jvm: want shared_object or exec");
    run_invoke(&r, NULL, "uppercase", "--data", "@/nonexistent/event.json", NULL);
    expect(&r, 2, NULL, "--data @/nonexistent/event.json: No such file or directory");
    run_invoke(&r, NULL, "uppercase", "extra", NULL);
    expect(&r, 2, NULL, "unexpected argument \"extra\"");
    assert_non_null(strstr(r.err, "Run 'weft invoke --help'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invoke_shared_object),
        cmocka_unit_test(test_invoke_exec_python_json),
        cmocka_unit_test(test_invoke_sh_data_from_file_and_stdin),
        cmocka_unit_test(test_invoke_event_attributes),
        cmocka_unit_test(test_invoke_failures_exit_1),
        cmocka_unit_test(test_invoke_timeout),
        cmocka_unit_test(test_invoke_usage_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
