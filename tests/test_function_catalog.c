/*
 * test_function_catalog.c - the pool columns of weft.functions (migration
 * 0002_function_pools.sql) against a real PostgreSQL: their defaults keep
 * the old behaviour, their CHECK constraints refuse nonsense, and
 * weft_catalog_load reads every one of them (the env text[] included) into
 * weft_function_t, with a version that changes whenever a pool must
 * restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "fixture.h"

static fx_t fx;

static int group_setup(void **state)
{
    (void)state;
    return fx_up_migrated(&fx, "unused:1");
}

static int group_teardown(void **state)
{
    (void)state;
    fx_down(&fx);
    return 0;
}

static weft_catalog_t *load(void)
{
    PGconn *pg = PQconnectdb(fx.pg);
    assert_int_equal(PQstatus(pg), CONNECTION_OK);
    char err[512] = "";
    weft_catalog_t *cat = weft_catalog_load(pg, err, sizeof(err));
    if (!cat)
        print_error("weft_catalog_load: %s\n", err);
    assert_non_null(cat);
    PQfinish(pg);
    return cat;
}

static void test_defaults_and_values(void **state)
{
    (void)state;
    char *r =
        fx_sql(&fx, "INSERT INTO weft.functions (name, entry) VALUES ('plain', 'uppercase.so');"
                    "INSERT INTO weft.functions (name, runtime, entry, pool_mode, pool_size,"
                    " max_concurrency, min_spare, max_spare, max_spawn_rate, idle_timeout_ms,"
                    " max_requests, crash_storm_count, crash_storm_window_ms, quarantine_ms,"
                    " env, run_as_user, run_as_group) VALUES ('tuned', 'exec', 'upper.py',"
                    " 'dynamic', 3, 12, 2, 5, 8, 2500, 1000, 4, 2000, 5000,"
                    " ARRAY['A=x y', 'B=q\"uote,{}', 'C', 'D=back\\slash'], 'nobody', 'nogroup');"
                    "INSERT INTO weft.triggers (name, topic, function) VALUES"
                    " ('t-plain', 'in.plain', 'plain'), ('t-tuned', 'in.tuned', 'tuned');"
                    "SELECT 'ok'");
    assert_non_null(r);
    assert_string_equal(r, "ok");
    free(r);

    weft_catalog_t *cat = load();
    const weft_function_t *p = weft_catalog_function(cat, "plain");
    const weft_function_t *t = weft_catalog_function(cat, "tuned");
    assert_non_null(p);
    assert_non_null(t);
    /* Defaults: a static pool of pool_size, as before 0002. */
    assert_string_equal(p->pool_mode, "static");
    assert_int_equal(p->max_concurrency, 0);
    assert_int_equal(p->min_spare, 1);
    assert_int_equal(p->max_spare, 3);
    assert_int_equal(p->max_spawn_rate, 32);
    assert_int_equal(p->idle_timeout_ms, 10000);
    assert_int_equal(p->max_requests, 0);
    assert_int_equal(p->crash_storm_count, 10);
    assert_int_equal(p->crash_storm_window_ms, 10000);
    assert_int_equal(p->quarantine_ms, 30000);
    assert_int_equal(p->n_env, 0);
    assert_null(p->run_as_user);
    assert_null(p->run_as_group);

    assert_string_equal(t->runtime, "exec");
    assert_string_equal(t->pool_mode, "dynamic");
    assert_int_equal(t->pool_size, 3);
    assert_int_equal(t->max_concurrency, 12);
    assert_int_equal(t->min_spare, 2);
    assert_int_equal(t->max_spare, 5);
    assert_int_equal(t->max_spawn_rate, 8);
    assert_int_equal(t->idle_timeout_ms, 2500);
    assert_int_equal(t->max_requests, 1000);
    assert_int_equal(t->crash_storm_count, 4);
    assert_int_equal(t->crash_storm_window_ms, 2000);
    assert_int_equal(t->quarantine_ms, 5000);
    assert_int_equal(t->n_env, 4);
    assert_string_equal(t->env[0], "A=x y");
    assert_string_equal(t->env[1], "B=q\"uote,{}");
    assert_string_equal(t->env[2], "C");
    assert_string_equal(t->env[3], "D=back\\slash");
    assert_string_equal(t->run_as_user, "nobody");
    assert_string_equal(t->run_as_group, "nogroup");
    char v1[65];
    memcpy(v1, t->version, sizeof(v1));
    weft_catalog_unref(cat);

    /* Any pool knob is part of the version: changing one restarts the
     * pool; reloading without a change does not. */
    cat = load();
    assert_string_equal(weft_catalog_function(cat, "tuned")->version, v1);
    weft_catalog_unref(cat);
    static const char *const changes[] = {
        "UPDATE weft.functions SET max_requests = 1001 WHERE name = 'tuned'",
        "UPDATE weft.functions SET env = ARRAY['A=x y'] WHERE name = 'tuned'",
        "UPDATE weft.functions SET pool_mode = 'ondemand' WHERE name = 'tuned'",
        "UPDATE weft.functions SET run_as_user = NULL WHERE name = 'tuned'",
        "UPDATE weft.functions SET quarantine_ms = 6000 WHERE name = 'tuned'",
    };
    for (size_t i = 0; i < sizeof(changes) / sizeof(changes[0]); i++) {
        char sql[512];
        snprintf(sql, sizeof(sql), "%s; SELECT 'ok'", changes[i]);
        r = fx_sql(&fx, sql);
        assert_non_null(r);
        free(r);
        cat = load();
        const char *v2 = weft_catalog_function(cat, "tuned")->version;
        if (strcmp(v1, v2) == 0)
            print_error("version unchanged after: %s\n", changes[i]);
        assert_string_not_equal(v1, v2);
        memcpy(v1, v2, sizeof(v1));
        weft_catalog_unref(cat);
    }
}

static void test_constraints_refuse_nonsense(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "pool_mode = 'turbo'",       "max_concurrency = 0",
        "max_concurrency = 5000",    "min_spare = 4, max_spare = 2",
        "max_spawn_rate = 0",        "idle_timeout_ms = 5",
        "max_requests = -1",         "crash_storm_window_ms = 1",
        "quarantine_ms = 0",         "env = ARRAY['BAD NAME=1']",
        "env = ARRAY['=value']",     "env = ARRAY['1ABC=x']",
        "env = ARRAY[NULL]::text[]", "run_as_user = 'Bad User'",
        "run_as_group = 'x;y'",
    };
    char *r = fx_sql(&fx, "INSERT INTO weft.functions (name, entry) VALUES ('victim', 'x.so');"
                          "SELECT 'ok'");
    assert_non_null(r);
    free(r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "UPDATE weft.functions SET %s WHERE name = 'victim'; SELECT 'ok'", bad[i]);
        r = fx_sql(&fx, sql);
        if (r)
            print_error("accepted: %s\n", bad[i]);
        assert_null(r);
    }
    r = fx_sql(&fx, "UPDATE weft.functions SET env = ARRAY['PATH=/opt/bin:/usr/bin', 'TZ'],"
                    " run_as_user = '65534', run_as_group = 'nogroup' WHERE name = 'victim';"
                    " SELECT 'ok'");
    assert_non_null(r);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_values),
        cmocka_unit_test(test_constraints_refuse_nonsense),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
