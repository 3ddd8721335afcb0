/*
 * test_config.c - the key = value configuration (config.c): line parsing,
 * config files and their error messages, replacement in place, bounded
 * integers, and the environment overrides (WEFT_PG, WEFT_KAFKA_BROKERS,
 * WEFT_NATS_URL, WEFT_LOG_LEVEL, WEFT_FUNCTIONS_DIR, WEFT_SET).
 *
 * Config files are written to a private mkdtemp() directory that the group
 * teardown removes. Every test that sets environment variables clears them
 * again (the group setup starts from a clean slate too).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char tmpdir[256];

static const char *const env_names[] = {"WEFT_PG",        "WEFT_KAFKA_BROKERS", "WEFT_NATS_URL",
                                        "WEFT_LOG_LEVEL", "WEFT_FUNCTIONS_DIR", "WEFT_SET"};

static void clear_env(void)
{
    for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
        unsetenv(env_names[i]);
}

static int group_setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof(tmpdir), "%s/weft-test-config-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir))
        return -1;
    clear_env();
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    clear_env();
    return system(cmd) == 0 ? 0 : -1;
}

static int cfg_setup(void **state)
{
    *state = weft_config_new();
    return *state ? 0 : -1;
}

static int cfg_teardown(void **state)
{
    weft_config_destroy(*state);
    clear_env();
    return 0;
}

/* Writes body to <tmpdir>/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *body)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(body, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

typedef struct seen {
    int n;
    char keys[16][64];
    char values[16][64];
} seen_t;

static int collect(const char *key, const char *value, void *opaque)
{
    seen_t *s = opaque;
    if (s->n < 16) {
        snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
        snprintf(s->values[s->n], sizeof(s->values[0]), "%s", value);
    }
    s->n++;
    return 0;
}

static int count_all(const weft_config_t *cfg)
{
    seen_t s = {0};
    return weft_config_each(cfg, "", collect, &s);
}

static void test_parse_key_value(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    assert_int_equal(weft_config_parse_line(cfg, "log.level = debug", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "log.level", NULL), "debug");
    /* Surrounding space is trimmed, including a trailing newline. */
    assert_int_equal(
        weft_config_parse_line(cfg, "  \tnats.url\t=   nats://h:4222  \n", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "nats.url", NULL), "nats://h:4222");
    /* Only the first '=' separates: a conninfo keeps its own. */
    assert_int_equal(
        weft_config_parse_line(cfg, "pg.conninfo=host=db dbname=weft", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "pg.conninfo", NULL), "host=db dbname=weft");
    /* Keys may use letters, digits, '.', '_' and '-'. */
    assert_int_equal(
        weft_config_parse_line(cfg, "kafka.consumer.fetch_wait-max.ms2 = 10", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "kafka.consumer.fetch_wait-max.ms2", NULL), "10");
    /* An empty value is a value. */
    assert_int_equal(weft_config_parse_line(cfg, "empty =", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "empty", "default"), "");
    /* Absent keys give the default. */
    assert_string_equal(weft_config_get(cfg, "no.such.key", "dflt"), "dflt");
    assert_null(weft_config_get(cfg, "no.such.key", NULL));
}

static void test_comments_and_blank_lines(void **state)
{
    weft_config_t *cfg = *state;
    const char *lines[] = {
        "",  "   ", "\t\n", "# a comment = with equals", "; ini comment", "   # indented comment",
        "\n"};
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char err[256] = "";
        assert_int_equal(weft_config_parse_line(cfg, lines[i], err, sizeof(err)), 0);
    }
    assert_int_equal(count_all(cfg), 0);
}

static void test_quotes_keep_spaces(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    assert_int_equal(weft_config_parse_line(cfg, "a = \"  padded  \"", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "a", NULL), "  padded  ");
    assert_int_equal(weft_config_parse_line(cfg, "b = \"\"", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "b", NULL), "");
    /* Unbalanced quotes are kept as written. */
    assert_int_equal(weft_config_parse_line(cfg, "c = \"open", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "c", NULL), "\"open");
    assert_int_equal(weft_config_parse_line(cfg, "d = \"", err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "d", NULL), "\"");
}

static void test_invalid_key_rejected(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    assert_int_equal(weft_config_parse_line(cfg, "bad key = 1", err, sizeof(err)), -1);
    assert_string_equal(err, "invalid key \"bad key\"");
    err[0] = '\0';
    assert_int_equal(weft_config_parse_line(cfg, " = 1", err, sizeof(err)), -1);
    assert_string_equal(err, "invalid key \"\"");
    err[0] = '\0';
    assert_int_equal(weft_config_parse_line(cfg, "k$y = 1", err, sizeof(err)), -1);
    assert_string_equal(err, "invalid key \"k$y\"");
    assert_int_equal(count_all(cfg), 0);
}

static void test_missing_equals_rejected(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    assert_int_equal(weft_config_parse_line(cfg, "log.level debug", err, sizeof(err)), -1);
    assert_string_equal(err, "expected \"key = value\"");
    assert_int_equal(count_all(cfg), 0);
}

static void test_line_too_long_rejected(void **state)
{
    weft_config_t *cfg = *state;
    size_t n = 5000;
    char *line = malloc(n + 1);
    assert_non_null(line);
    memcpy(line, "k = ", 4);
    memset(line + 4, 'v', n - 4);
    line[n] = '\0';
    char err[256] = "";
    assert_int_equal(weft_config_parse_line(cfg, line, err, sizeof(err)), -1);
    assert_string_equal(err, "line too long");
    assert_null(weft_config_get(cfg, "k", NULL));
    free(line);
}

static void test_load_file(void **state)
{
    weft_config_t *cfg = *state;
    const char *path = write_file("ok.conf", "# weft test configuration\n"
                                             "\n"
                                             "pg.conninfo = host=localhost dbname=weft\n"
                                             "  ; another comment\n"
                                             "kafka.bootstrap.servers = k1:9092,k2:9092\n"
                                             "kafka.client.id = \" weft \"\n"
                                             "log.level = info\n"
                                             "log.level = debug\n"
                                             "last.line.without.newline = yes");
    char err[256] = "";
    assert_int_equal(weft_config_load_file(cfg, path, err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "pg.conninfo", NULL), "host=localhost dbname=weft");
    assert_string_equal(weft_config_get(cfg, "kafka.bootstrap.servers", NULL), "k1:9092,k2:9092");
    assert_string_equal(weft_config_get(cfg, "kafka.client.id", NULL), " weft ");
    assert_string_equal(weft_config_get(cfg, "log.level", NULL), "debug");
    assert_string_equal(weft_config_get(cfg, "last.line.without.newline", NULL), "yes");
    assert_int_equal(count_all(cfg), 5);
}

static void test_load_file_error_names_file_and_line(void **state)
{
    weft_config_t *cfg = *state;
    const char *path = write_file("bad.conf", "# ok\n"
                                              "a = 1\n"
                                              "this line has no equals sign\n"
                                              "b = 2\n");
    char want[600];
    snprintf(want, sizeof(want), "%s:3: expected \"key = value\"", path);
    char err[600] = "";
    assert_int_equal(weft_config_load_file(cfg, path, err, sizeof(err)), -1);
    assert_string_equal(err, want);

    path = write_file("badkey.conf", "a = 1\nb c = 2\n");
    snprintf(want, sizeof(want), "%s:2: invalid key \"b c\"", path);
    err[0] = '\0';
    assert_int_equal(weft_config_load_file(cfg, path, err, sizeof(err)), -1);
    assert_string_equal(err, want);
}

static void test_load_file_missing(void **state)
{
    weft_config_t *cfg = *state;
    char path[512], want[700], err[700] = "";
    snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
    snprintf(want, sizeof(want), "cannot open config file %s: No such file or directory", path);
    assert_int_equal(weft_config_load_file(cfg, path, err, sizeof(err)), -1);
    assert_string_equal(err, want);
}

/*
 * BUG (config.c, weft_config_load_file): a line longer than the 4096-byte
 * fgets() buffer is split and its tail parsed as the next line, so the
 * "line too long" check in weft_config_parse_line can never fire from a
 * file: the head is applied with a truncated value and the error (if any)
 * names the wrong line. Expected: the load fails with "<file>:1: line too
 * long" and nothing of the line is applied.
 */
static void test_load_file_long_line_rejected(void **state)
{
    weft_config_t *cfg = *state;
    size_t n = 5000;
    char *body = malloc(n + 2);
    assert_non_null(body);
    memcpy(body, "pg.conninfo = ", 14);
    memset(body + 14, 'x', n - 14);
    body[n] = '\n';
    body[n + 1] = '\0';
    const char *path = write_file("long.conf", body);
    free(body);
    char want[600], err[600] = "";
    snprintf(want, sizeof(want), "%s:1: line too long", path);
    assert_int_equal(weft_config_load_file(cfg, path, err, sizeof(err)), -1);
    assert_string_equal(err, want);
    assert_null(weft_config_get(cfg, "pg.conninfo", NULL));
}

static void test_later_setting_replaces_in_place(void **state)
{
    weft_config_t *cfg = *state;
    assert_int_equal(weft_config_set(cfg, "kafka.a", "1"), 0);
    assert_int_equal(weft_config_set(cfg, "nats.url", "x"), 0);
    assert_int_equal(weft_config_set(cfg, "kafka.b", "2"), 0);
    assert_int_equal(weft_config_set(cfg, "kafka.c", "3"), 0);
    assert_int_equal(weft_config_set(cfg, "kafka.a", "one"), 0);

    seen_t s = {0};
    assert_int_equal(weft_config_each(cfg, "kafka.", collect, &s), 3);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.keys[0], "kafka.a");
    assert_string_equal(s.values[0], "one");
    assert_string_equal(s.keys[1], "kafka.b");
    assert_string_equal(s.keys[2], "kafka.c");
    assert_int_equal(count_all(cfg), 4);

    memset(&s, 0, sizeof(s));
    assert_int_equal(weft_config_each(cfg, "nats.", collect, &s), 1);
    assert_string_equal(s.keys[0], "nats.url");
    memset(&s, 0, sizeof(s));
    assert_int_equal(weft_config_each(cfg, "pg.", collect, &s), 0);
    assert_int_equal(s.n, 0);
}

static int stop_at_second(const char *key, const char *value, void *opaque)
{
    (void)key;
    (void)value;
    int *calls = opaque;
    return ++*calls == 2 ? 1 : 0;
}

static void test_each_stops_when_callback_says_so(void **state)
{
    weft_config_t *cfg = *state;
    for (int i = 0; i < 5; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k.%d", i);
        assert_int_equal(weft_config_set(cfg, k, "v"), 0);
    }
    int calls = 0;
    assert_int_equal(weft_config_each(cfg, "k.", stop_at_second, &calls), 2);
    assert_int_equal(calls, 2);
}

static void test_many_keys(void **state)
{
    weft_config_t *cfg = *state;
    for (int i = 0; i < 200; i++) {
        char k[16], v[16];
        snprintf(k, sizeof(k), "key.%03d", i);
        snprintf(v, sizeof(v), "%d", i * 7);
        assert_int_equal(weft_config_set(cfg, k, v), 0);
    }
    for (int i = 0; i < 200; i++) {
        char k[16], v[16];
        snprintf(k, sizeof(k), "key.%03d", i);
        snprintf(v, sizeof(v), "%d", i * 7);
        assert_string_equal(weft_config_get(cfg, k, NULL), v);
    }
    assert_int_equal(count_all(cfg), 200);
}

static void test_get_int(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    int64_t v = 0;

    assert_int_equal(weft_config_get_int(cfg, "absent", 17, 0, 100, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 17);

    weft_config_set(cfg, "n", "42");
    assert_int_equal(weft_config_get_int(cfg, "n", 0, 0, 100, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 42);

    weft_config_set(cfg, "n", "-5");
    assert_int_equal(weft_config_get_int(cfg, "n", 0, -10, 10, &v, err, sizeof(err)), 0);
    assert_true(v == -5);

    /* Bounds are inclusive. */
    weft_config_set(cfg, "n", "10");
    assert_int_equal(weft_config_get_int(cfg, "n", 0, 0, 10, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 10);
    weft_config_set(cfg, "n", "0");
    assert_int_equal(weft_config_get_int(cfg, "n", 5, 0, 10, &v, err, sizeof(err)), 0);
    assert_int_equal(v, 0);

    weft_config_set(cfg, "n", "9223372036854775807");
    assert_int_equal(weft_config_get_int(cfg, "n", 0, 0, INT64_MAX, &v, err, sizeof(err)), 0);
    assert_true(v == INT64_MAX);
}

static void test_get_int_out_of_range(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    int64_t v = 1234;
    weft_config_set(cfg, "pool.size", "11");
    assert_int_equal(weft_config_get_int(cfg, "pool.size", 1, 0, 10, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "config key pool.size: 11 is out of range [0, 10]");
    assert_int_equal(v, 1234);

    weft_config_set(cfg, "pool.size", "-1");
    assert_int_equal(weft_config_get_int(cfg, "pool.size", 1, 0, 10, &v, err, sizeof(err)), -1);
    assert_string_equal(err, "config key pool.size: -1 is out of range [0, 10]");
    assert_int_equal(v, 1234);
}

static void test_get_int_rejects_non_integers(void **state)
{
    weft_config_t *cfg = *state;
    const char *bad[] = {"", "abc", "12abc", "1.5", "0x10", "10 ms", "99999999999999999999", "-"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "", want[256];
        int64_t v = 777;
        weft_config_set(cfg, "timeout_ms", bad[i]);
        assert_int_equal(
            weft_config_get_int(cfg, "timeout_ms", 1, INT64_MIN, INT64_MAX, &v, err, sizeof(err)),
            -1);
        snprintf(want, sizeof(want), "config key timeout_ms: \"%s\" is not an integer", bad[i]);
        assert_string_equal(err, want);
        assert_int_equal(v, 777);
    }
}

static void test_env_named_overrides(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    /* The environment overrides the file. */
    weft_config_set(cfg, "pg.conninfo", "host=from-file");
    weft_config_set(cfg, "kafka.bootstrap.servers", "file:9092");
    setenv("WEFT_PG", "host=from-env dbname=weft", 1);
    setenv("WEFT_KAFKA_BROKERS", "env1:9092,env2:9092", 1);
    setenv("WEFT_NATS_URL", "nats://env:4222", 1);
    setenv("WEFT_LOG_LEVEL", "warn", 1);
    setenv("WEFT_FUNCTIONS_DIR", "/opt/fns", 1);
    assert_int_equal(weft_config_load_env(cfg, err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "pg.conninfo", NULL), "host=from-env dbname=weft");
    assert_string_equal(weft_config_get(cfg, "kafka.bootstrap.servers", NULL),
                        "env1:9092,env2:9092");
    assert_string_equal(weft_config_get(cfg, "nats.url", NULL), "nats://env:4222");
    assert_string_equal(weft_config_get(cfg, "log.level", NULL), "warn");
    assert_string_equal(weft_config_get(cfg, "functions.dir", NULL), "/opt/fns");
    /* Replaced in place: the file's key order is kept. */
    seen_t s = {0};
    weft_config_each(cfg, "", collect, &s);
    assert_string_equal(s.keys[0], "pg.conninfo");
    assert_string_equal(s.keys[1], "kafka.bootstrap.servers");
}

static void test_env_empty_is_ignored(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    weft_config_set(cfg, "pg.conninfo", "host=from-file");
    setenv("WEFT_PG", "", 1);
    setenv("WEFT_SET", "", 1);
    assert_int_equal(weft_config_load_env(cfg, err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "pg.conninfo", NULL), "host=from-file");
    assert_int_equal(count_all(cfg), 1);
}

static void test_env_unset_changes_nothing(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    assert_int_equal(weft_config_load_env(cfg, err, sizeof(err)), 0);
    assert_int_equal(count_all(cfg), 0);
}

static void test_env_weft_set(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    setenv("WEFT_SET", "a=1;b = 2;;kafka.acks = all;quoted = \" x \";", 1);
    assert_int_equal(weft_config_load_env(cfg, err, sizeof(err)), 0);
    assert_string_equal(weft_config_get(cfg, "a", NULL), "1");
    assert_string_equal(weft_config_get(cfg, "b", NULL), "2");
    assert_string_equal(weft_config_get(cfg, "kafka.acks", NULL), "all");
    assert_string_equal(weft_config_get(cfg, "quoted", NULL), " x ");
    assert_int_equal(count_all(cfg), 4);
    /* WEFT_SET is not modified by parsing it. */
    assert_string_equal(getenv("WEFT_SET"), "a=1;b = 2;;kafka.acks = all;quoted = \" x \";");
}

static void test_env_weft_set_bad_entry(void **state)
{
    weft_config_t *cfg = *state;
    char err[256] = "";
    setenv("WEFT_SET", "a=1;nonsense;b=2", 1);
    assert_int_equal(weft_config_load_env(cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "WEFT_SET: expected \"key = value\"");
    assert_null(weft_config_get(cfg, "b", NULL));

    err[0] = '\0';
    setenv("WEFT_SET", "bad key=1", 1);
    assert_int_equal(weft_config_load_env(cfg, err, sizeof(err)), -1);
    assert_string_equal(err, "WEFT_SET: invalid key \"bad key\"");
}

#define CFG_TEST(f) cmocka_unit_test_setup_teardown(f, cfg_setup, cfg_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        CFG_TEST(test_parse_key_value),
        CFG_TEST(test_comments_and_blank_lines),
        CFG_TEST(test_quotes_keep_spaces),
        CFG_TEST(test_invalid_key_rejected),
        CFG_TEST(test_missing_equals_rejected),
        CFG_TEST(test_line_too_long_rejected),
        CFG_TEST(test_load_file),
        CFG_TEST(test_load_file_error_names_file_and_line),
        CFG_TEST(test_load_file_missing),
        CFG_TEST(test_load_file_long_line_rejected),
        CFG_TEST(test_later_setting_replaces_in_place),
        CFG_TEST(test_each_stops_when_callback_says_so),
        CFG_TEST(test_many_keys),
        CFG_TEST(test_get_int),
        CFG_TEST(test_get_int_out_of_range),
        CFG_TEST(test_get_int_rejects_non_integers),
        CFG_TEST(test_env_named_overrides),
        CFG_TEST(test_env_empty_is_ignored),
        CFG_TEST(test_env_unset_changes_nothing),
        CFG_TEST(test_env_weft_set),
        CFG_TEST(test_env_weft_set_bad_entry),
    };
    return cmocka_run_group_tests_name("config", tests, group_setup, group_teardown);
}
