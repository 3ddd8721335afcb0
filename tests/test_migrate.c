/*
 * test_migrate.c - `weft migrate` against a real PostgreSQL: files apply in
 * order, once; an edited applied file is refused before anything runs; a
 * failing file leaves nothing behind; the catalog's constraints reject
 * invalid triggers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "migrate.h"

static fx_t fx;
static char dir[512];

static void write_file(const char *name, const char *body)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(body, f);
    fclose(f);
}

static void remove_file(const char *name)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

static int migrate(char *out, size_t len)
{
    const char *args[] = {"migrate", "--dir", dir, NULL};
    return fx_weft(&fx, out, len, args);
}

static int group_setup(void **state)
{
    (void)state;
    if (fx_up(&fx, "unused:1") != 0)
        return -1;
    snprintf(dir, sizeof(dir), "%s/user-migrations", fx.state_dir);
    return mkdir(dir, 0755);
}

static int group_teardown(void **state)
{
    (void)state;
    fx_down(&fx);
    return 0;
}

static void test_applies_in_order_once(void **state)
{
    (void)state;
    char out[8192];
    write_file("10_second.sql", "INSERT INTO seq VALUES (2);\n");
    write_file("2_first.sql", "CREATE TABLE seq (n int);\nINSERT INTO seq VALUES (1);\n");
    write_file("README.txt", "not a migration\n");
    assert_int_equal(migrate(out, sizeof(out)), 0);
    assert_non_null(strstr(out, "applied 0001_weft_schema.sql"));
    /* Numeric order: 2 before 10. */
    char *a = strstr(out, "2_first.sql"), *b = strstr(out, "10_second.sql");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(a < b);
    char *v = fx_sql(&fx, "SELECT string_agg(n::text, ',' ORDER BY n) FROM seq");
    assert_string_equal(v, "1,2");
    free(v);

    assert_int_equal(migrate(out, sizeof(out)), 0);
    assert_non_null(strstr(out, "up to date"));
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM seq"), 2);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.schema_migrations WHERE name IN "
                                      "('2_first.sql', '10_second.sql')"),
                     2);
}

static void test_edited_applied_file_is_refused(void **state)
{
    (void)state;
    char out[8192];
    write_file("2_first.sql", "CREATE TABLE seq (n int);\nINSERT INTO seq VALUES (100);\n");
    write_file("20_third.sql", "INSERT INTO seq VALUES (3);\n");
    int rc = migrate(out, sizeof(out));
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "2_first.sql was edited after it was applied"));
    assert_non_null(strstr(out, "refusing to migrate"));
    /* Nothing else ran: 20_third.sql was not applied. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM seq"), 2);
    assert_int_equal(
        fx_sql_long(&fx, "SELECT count(*) FROM weft.schema_migrations WHERE name = '20_third.sql'"),
        0);
    /* Restoring the file makes it apply again. */
    write_file("2_first.sql", "CREATE TABLE seq (n int);\nINSERT INTO seq VALUES (1);\n");
    assert_int_equal(migrate(out, sizeof(out)), 0);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM seq"), 3);
}

static void test_failing_file_leaves_nothing(void **state)
{
    (void)state;
    char out[8192];
    write_file("30_broken.sql", "INSERT INTO seq VALUES (4);\nINSERT INTO no_such_table VALUES (1);\n");
    int rc = migrate(out, sizeof(out));
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "30_broken.sql failed"));
    assert_non_null(strstr(out, "no_such_table"));
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM seq WHERE n = 4"), 0);
    assert_int_equal(
        fx_sql_long(&fx, "SELECT count(*) FROM weft.schema_migrations WHERE name = '30_broken.sql'"),
        0);
    remove_file("30_broken.sql");
}

/* Writes file with sql and expects weft migrate to refuse it (exit 1)
 * with want in its output. */
static void assert_refused(const char *file, const char *sql, const char *want)
{
    char out[8192];
    write_file(file, sql);
    assert_int_equal(migrate(out, sizeof(out)), 1);
    assert_non_null(strstr(out, want));
}

static void test_invalid_trigger_rows_are_rejected(void **state)
{
    (void)state;
    char out[8192];
    write_file("40_fn.sql", "INSERT INTO weft.functions (name, entry) VALUES ('f1', 'x.so');\n");
    assert_int_equal(migrate(out, sizeof(out)), 0);
    const char *ins = "INSERT INTO weft.triggers (name, topic, function, max_attempts)\n";
    char sql[256];
    snprintf(sql, sizeof(sql), "%sVALUES ('t1', 'topic with spaces', 'f1', 3);\n", ins);
    assert_refused("41_bad.sql", sql, "triggers_topic_check");
    snprintf(sql, sizeof(sql), "%sVALUES ('t1', 'orders', 'nope', 3);\n", ins);
    assert_refused("41_bad.sql", sql, "foreign key");
    snprintf(sql, sizeof(sql), "%sVALUES ('t1', 'orders', 'f1', 0);\n", ins);
    assert_refused("41_bad.sql", sql, "max_attempts");
    remove_file("41_bad.sql");
}

static void test_invalid_function_rows_are_rejected(void **state)
{
    (void)state;
    char out[8192];
    /* Out of range: pipeline_depth is 0..64 (0008), pool_size 1..256. */
    assert_refused("42_badfn.sql",
                   "INSERT INTO weft.functions (name, entry, pipeline_depth)\n"
                   "VALUES ('fdeep', 'x.so', 65);\n",
                   "functions_pipeline_depth_check");
    assert_refused("42_badfn.sql",
                   "INSERT INTO weft.functions (name, entry, pipeline_depth)\n"
                   "VALUES ('fdeep', 'x.so', -1);\n",
                   "functions_pipeline_depth_check");
    assert_refused("42_badfn.sql",
                   "INSERT INTO weft.functions (name, entry, pool_size)\n"
                   "VALUES ('fdeep', 'x.so', 0);\n",
                   "functions_pool_size_check");
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.functions WHERE name = 'fdeep'"),
                     0);
    /* In range, the same file applies. */
    write_file("42_badfn.sql", "INSERT INTO weft.functions (name, entry, pipeline_depth)\n"
                               "VALUES ('fdeep', 'x.so', 64);\n");
    assert_int_equal(migrate(out, sizeof(out)), 0);
    assert_int_equal(
        fx_sql_long(&fx, "SELECT pipeline_depth FROM weft.functions WHERE name = 'fdeep'"), 64);
}

static void test_bad_names_and_arguments(void **state)
{
    (void)state;
    char out[8192];
    write_file("nonumber.sql", "SELECT 1;\n");
    assert_int_equal(migrate(out, sizeof(out)), 2);
    assert_non_null(strstr(out, "must start with a number"));
    remove_file("nonumber.sql");
    const char *missing[] = {"migrate", "--dir", "/nonexistent/dir", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), missing), 2);
    assert_non_null(strstr(out, "cannot open migration directory /nonexistent/dir"));
    const char *bogus[] = {"migrate", "--frobnicate", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), bogus), 2);
    const char *help[] = {"migrate", "--help", NULL};
    assert_int_equal(fx_weft(&fx, out, sizeof(out), help), 0);
    assert_non_null(strstr(out, "usage: weft migrate"));
}

/* `weft run` against a database whose weft schema is behind this build
 * refuses at once (exit 1) and says to run `weft migrate`; and
 * WEFT_SCHEMA_LATEST names the newest of weft's own migrations. */
static void test_run_refuses_a_schema_behind_it(void **state)
{
    (void)state;
    char path[700], err[512];
    snprintf(path, sizeof(path), "%s/migrations", fx.src_dir);
    weft_migration_list_t own = {0};
    assert_int_equal(weft_migrate_scan_dir(&own, path, err, sizeof(err)), 0);
    assert_true(own.n > 0);
    assert_string_equal(own.v[own.n - 1].name, WEFT_SCHEMA_LATEST);
    weft_migrate_list_free(&own);

    free(fx_sql(&fx, "UPDATE weft.schema_migrations SET name = name || '.away'"
                     " WHERE name = '" WEFT_SCHEMA_LATEST "'"));
    pid_t pid = fx_run_start(&fx, "run-behind.log", NULL);
    assert_true(pid > 0);
    uint64_t end = fx_now_ms() + 20000;
    while (fx_now_ms() < end) {
        siginfo_t si = {0};
        if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
            break;
        usleep(50 * 1000);
    }
    int rc = fx_run_stop(pid, 20000); /* reaps it; stops it if it still runs */
    free(fx_sql(&fx, "UPDATE weft.schema_migrations SET name = '" WEFT_SCHEMA_LATEST "'"
                     " WHERE name = '" WEFT_SCHEMA_LATEST ".away'"));
    assert_int_equal(rc, 1);
    assert_true(
        fx_log_wait(&fx, "run-behind.log", WEFT_SCHEMA_LATEST " is not applied.*weft migrate", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_applies_in_order_once),
        cmocka_unit_test(test_edited_applied_file_is_refused),
        cmocka_unit_test(test_failing_file_leaves_nothing),
        cmocka_unit_test(test_invalid_trigger_rows_are_rejected),
        cmocka_unit_test(test_invalid_function_rows_are_rejected),
        cmocka_unit_test(test_bad_names_and_arguments),
        cmocka_unit_test(test_run_refuses_a_schema_behind_it),
    };
    return cmocka_run_group_tests_name("migrate", tests, group_setup, group_teardown);
}
