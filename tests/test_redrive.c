/*
 * test_redrive.c - `weft dlq` against a real PostgreSQL, Apache Kafka (or
 * the mock) and `weft run` as a real child: `list --json --since`, and
 * `redrive` with its provenance headers, `--dry-run`, `--new-key`, and its
 * scope: a dead letter goes back to its source topic for the trigger it
 * died in only, even when another trigger reads the same topic.
 *
 * Every count is of what arrived within a settle time, never "until N".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "checker.h"
#include "fixture.h"
#include "json.h"

#define TOPICS "r.shared:1 r.a.out:1 r.b.out:1 r.dlq:1"
#define RUN_SET                                                                                    \
    "dispatcher.shutdown_timeout_ms=10000;kafka.session.timeout.ms=6000;"                          \
    "kafka.heartbeat.interval.ms=500"
#define SETTLE_MS 3000
/* The idempotency key of an event published by fx_produce. */
#define KEY_OF(id) "ce:/weft/tests\x1f" id

static fx_t fx;
static pid_t run_pid;

static int group_setup(void **state)
{
    (void)state;
    if (fx_check_setup(&fx, TOPICS, 1, "redrive") != 0)
        return -1;
    run_pid = fx_run_start(&fx, "run.log", RUN_SET);
    return run_pid > 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = run_pid > 0 ? fx_run_stop(run_pid, 20000) : 0;
    fx_down(&fx);
    return rc == 0 ? 0 : -1;
}

/* Messages of topic: until there are want (or timeout), then whatever
 * else arrives within the settle time. */
static size_t collect(const char *topic, size_t want, int timeout_ms, fx_msg_t **msgs)
{
    return fx_collect(&fx, topic, want, timeout_ms, SETTLE_MS, msgs);
}

/* The message of msgs whose header h is v and that has header must (or
 * lacks it, must NULL... see callers); NULL when none. */
static const fx_msg_t *find(const fx_msg_t *msgs, size_t n, const char *h, const char *v,
                            const char *with)
{
    for (size_t i = 0; i < n; i++) {
        const char *x = fx_header(&msgs[i], h);
        if (x && strcmp(x, v) == 0 && (!with || fx_header(&msgs[i], with)))
            return &msgs[i];
    }
    return NULL;
}

/* Occurrences of needle in hay. */
static int occurrences(const char *hay, const char *needle)
{
    int k = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        k++;
    return k;
}

static char out[65536];

static int weft(const char *const *args)
{
    int rc = fx_weft(&fx, out, sizeof(out), args);
    print_message("weft %s %s: %d\n%s", args[0], args[1] ? args[1] : "", rc, out);
    return rc;
}

/* The dead letter id of input id in trigger r-a (caller frees). */
static char *dl_id(const char *id)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT id FROM weft.dead_letters WHERE trigger = 'r-a' AND key LIKE '%%%s'", id);
    char *v = fx_sql(&fx, sql);
    assert_non_null(v);
    assert_true(*v);
    return v;
}

/* Three events on the shared topic: r-a dead-letters each (its function
 * fails them), r-b runs each. Then the dead letters are listed, re-driven
 * dry, re-driven by id keeping the key, and with a new key. */
static void test_redrive(void **state)
{
    (void)state;
    fx_producer_t *p = fx_producer_new(&fx);
    const char *ids[3] = {"red-1", "red-2", "red-3"};
    for (int i = 0; i < 3; i++) {
        char data[96];
        snprintf(data, sizeof(data), "{\"name\":\"item %d\",\"fail\":\"fatal\"}", i + 1);
        assert_int_equal(fx_produce(p, "r.shared", ids[i], ids[i], "t", data, NULL), 0);
    }
    assert_int_equal(fx_producer_flush(p), 0);
    fx_producer_destroy(p);
    fx_msg_t *dl, *b;
    size_t dn = collect("r.dlq", 3, 60000, &dl);
    size_t bn = collect("r.b.out", 3, 60000, &b);
    assert_int_equal(dn, 3);
    assert_int_equal(bn, 3);
    assert_int_equal(fx_count_header(dl, dn, "ce_wefttrigger", "r-a"), 3);
    fx_msgs_free(dl, dn);
    fx_msgs_free(b, bn);

    /* ---- dlq list --json --since ---- */
    const char *list_1h[] = {"dlq", "list", "--json", "--since", "1h", NULL};
    assert_int_equal(weft(list_1h), 0);
    assert_true(weft_json_valid(out, strlen(out)));
    assert_int_equal(occurrences(out, "\"trigger\":\"r-a\""), 3);
    assert_int_equal(occurrences(out, "\"reason\":\"non_retryable\""), 3);
    assert_int_equal(occurrences(out, "\"redriven\":false"), 3);
    /* One dead letter two hours old: out of the last hour, inside the
     * last three hours and after an absolute time three hours ago. */
    char *id3 = dl_id("red-3");
    char sql[256];
    snprintf(sql, sizeof(sql),
             "UPDATE weft.dead_letters SET created_at = now() - interval '2 hours' WHERE id = %s",
             id3);
    free(fx_sql(&fx, sql));
    assert_int_equal(weft(list_1h), 0);
    assert_int_equal(occurrences(out, "\"trigger\":\"r-a\""), 2);
    char idpat[64];
    snprintf(idpat, sizeof(idpat), "{\"id\":%s,", id3);
    assert_null(strstr(out, idpat));
    const char *list_3h[] = {"dlq", "list", "--json", "--since", "3h", NULL};
    assert_int_equal(weft(list_3h), 0);
    assert_int_equal(occurrences(out, "\"trigger\":\"r-a\""), 3);
    char since[64];
    time_t t3 = time(NULL) - 3 * 3600;
    strftime(since, sizeof(since), "%Y-%m-%dT%H:%MZ", gmtime(&t3));
    const char *list_abs[] = {"dlq", "list", "--json", "--since", since, NULL};
    assert_int_equal(weft(list_abs), 0);
    assert_int_equal(occurrences(out, "\"trigger\":\"r-a\""), 3);
    const char *list_future[] = {"dlq", "list", "--json", "--since", "2099-01-01T00:00Z", NULL};
    assert_int_equal(weft(list_future), 0);
    assert_string_equal(out, "[]\n");

    /* ---- --dry-run: counts, publishes and records nothing ---- */
    const char *dry[] = {"dlq", "redrive", "--trigger", "r-a", "--dry-run", NULL};
    assert_int_equal(weft(dry), 0);
    assert_non_null(strstr(out, "would re-drive 3 dead letters"));
    fx_kafka_offsets_t o;
    assert_int_equal(fx_kafka_group_offsets(&fx, FX_CHECK_GROUP, "r.shared", &o), 0);
    assert_int_equal(o.high[0], 3);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.dead_letters WHERE "
                                      "redriven_at IS NOT NULL"),
                     0);

    /* The function is fixed: a new pool runs uppercase.so. */
    free(fx_sql(&fx, "UPDATE weft.functions SET entry = 'uppercase.so' WHERE name = 'r-fixable'"));
    assert_true(
        fx_log_wait(&fx, "run.log", "pool started function=r-fixable .*uppercase.so", 30000));

    /* ---- by id, keeping the key; and with --new-key ---- */
    char *id1 = dl_id("red-1"), *id2 = dl_id("red-2");
    const char *keep[] = {"dlq", "redrive", "--id", id1, NULL};
    assert_int_equal(weft(keep), 0);
    assert_non_null(strstr(out, "re-drove 1 dead letter"));
    const char *fresh[] = {"dlq", "redrive", "--id", id2, "--new-key", NULL};
    assert_int_equal(weft(fresh), 0);
    assert_non_null(strstr(out, "re-drove 1 dead letter"));

    /* The copies on the source topic: the original event with the
     * provenance headers. */
    fx_msg_t *in;
    size_t in_n = collect("r.shared", 5, 30000, &in);
    assert_int_equal(in_n, 5);
    const fx_msg_t *c1 = find(in, in_n, "ce_id", "red-1", "weft-redrive-id");
    const fx_msg_t *c2 = find(in, in_n, "ce_id", "red-2", "weft-redrive-id");
    assert_non_null(c1);
    assert_non_null(c2);
    assert_string_equal(fx_header(c1, "weft-redrive-id"), id1);
    assert_string_equal(fx_header(c1, "weft-redrive-trigger"), "r-a");
    assert_string_equal(fx_header(c1, "weft-key"), KEY_OF("red-1"));
    assert_string_equal(c1->value, "{\"name\":\"item 1\",\"fail\":\"fatal\"}");
    assert_string_equal(fx_header(c1, "ce_source"), "/weft/tests");
    assert_string_equal(fx_header(c2, "weft-redrive-id"), id2);
    assert_string_equal(fx_header(c2, "weft-redrive-trigger"), "r-a");
    char newkey[128];
    snprintf(newkey, sizeof(newkey), "redrive:%s:" KEY_OF("red-2"), id2);
    assert_string_equal(fx_header(c2, "weft-key"), newkey);
    assert_null(find(in, in_n, "ce_id", "red-3", "weft-redrive-id"));
    fx_msgs_free(in, in_n);

    /* r-a ran both again, now fixed; r-b, on the same topic, did not see
     * them: exactly its three first results, each run once. */
    fx_msg_t *a;
    size_t an = collect("r.a.out", 2, 60000, &a);
    bn = collect("r.b.out", 3, 30000, &b);
    assert_int_equal(an, 2);
    assert_int_equal(bn, 3);
    assert_int_equal(fx_count_header(a, an, "ce_weftinputid", "red-1"), 1);
    assert_int_equal(fx_count_header(a, an, "ce_weftinputid", "red-2"), 1);
    assert_string_equal(find(a, an, "ce_weftinputid", "red-1", NULL)->value,
                        "{\"name\":\"ITEM 1\",\"fail\":\"FATAL\"}");
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'r-b'"), 3);
    assert_int_equal(fx_sql_long(&fx, "SELECT sum(attempts) FROM weft.ledger WHERE trigger = "
                                      "'r-b'"),
                     3);
    fx_msgs_free(a, an);
    fx_msgs_free(b, bn);

    /* The ledger: red-1's own row ran again; red-2 ran under its new key
     * and its old row stays dead; red-3 was not touched. */
    char *st = fx_sql(&fx, "SELECT status || '/' || attempts FROM weft.ledger WHERE trigger = "
                           "'r-a' AND key = 'ce:/weft/tests' || chr(31) || 'red-1'");
    assert_string_equal(st, "completed/1");
    free(st);
    st = fx_sql(&fx, "SELECT status FROM weft.ledger WHERE trigger = 'r-a' AND key = "
                     "'ce:/weft/tests' || chr(31) || 'red-2'");
    assert_string_equal(st, "dead");
    free(st);
    snprintf(sql, sizeof(sql),
             "SELECT status || '/' || attempts FROM weft.ledger WHERE trigger = 'r-a' AND key = "
             "'redrive:%s:ce:/weft/tests' || chr(31) || 'red-2'",
             id2);
    st = fx_sql(&fx, sql);
    assert_string_equal(st, "completed/1");
    free(st);
    st = fx_sql(&fx, "SELECT status FROM weft.ledger WHERE trigger = 'r-a' AND key = "
                     "'ce:/weft/tests' || chr(31) || 'red-3'");
    assert_string_equal(st, "dead");
    free(st);
    /* Each re-drive recorded on its dead letter, once. */
    snprintf(sql, sizeof(sql),
             "SELECT string_agg(id || ':' || coalesce(redrive_new_key::text, '-'), ',' ORDER BY "
             "key) FROM weft.dead_letters WHERE trigger = 'r-a' AND redriven_at IS NOT NULL");
    st = fx_sql(&fx, sql);
    char want[128];
    snprintf(want, sizeof(want), "%s:false,%s:true", id1, id2);
    assert_string_equal(st, want);
    free(st);
    assert_int_equal(weft(keep), 0);
    assert_non_null(strstr(out, "nothing to re-drive"));
    /* The dry run now sees the one left. */
    assert_int_equal(weft(dry), 0);
    assert_non_null(strstr(out, "would re-drive 1 dead letter"));
    const char *list_r[] = {"dlq", "list", "--json", "--since", "3h", NULL};
    assert_int_equal(weft(list_r), 0);
    assert_int_equal(occurrences(out, "\"redriven\":true"), 2);
    assert_int_equal(occurrences(out, "\"redriven\":false"), 1);
    free(id1);
    free(id2);
    free(id3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redrive),
    };
    return cmocka_run_group_tests_name("redrive", tests, group_setup, group_teardown);
}
