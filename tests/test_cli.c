/*
 * test_cli.c - the operator's commands against a real PostgreSQL, Kafka
 * (Apache Kafka, or the mock) and a running `weft run`: publish (one event and
 * --lines with a bad line) through dispatch to the result; replay honouring
 * the ledger (nothing runs, the same result ids), with --reexecute (runs
 * again, new ids), after the loss of a result topic, as a dry run, and
 * interrupted then resumed; triggers and status output; bad arguments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "json.h"

extern char **environ;

#define TOPICS                                                                                     \
    "c.in:2 c.out:1 c.out2:1 c.dlq:1 c.bulk:2 c.bulk.out:1 c.rp:2 c.rp.out:1 c.rx:2 c.rx.out:1 "   \
    "c.loss:1 c.loss.out:1 c.loss.new:1 c.dry:1 c.dry.out:1 c.int:1 c.int.out:1 c.time:2 "         \
    "c.time.out:1"
#define RUN_SET                                                                                    \
    "dispatcher.shutdown_timeout_ms=10000;kafka.session.timeout.ms=6000;"                          \
    "kafka.heartbeat.interval.ms=500"

static fx_t fx;
static pid_t run_pid;
static char out[65536];

static int group_setup(void **state)
{
    (void)state;
    if (fx_up(&fx, TOPICS) != 0)
        return -1;
    /* Commands run through the shell (stdin redirections) see the stack. */
    setenv("WEFT_PG", fx.pg, 1);
    setenv("WEFT_KAFKA_BROKERS", fx.brokers, 1);
    setenv("WEFT_NATS_URL", fx.nats, 1);
    unsetenv("WEFT_SET");
    if (fx_js_stream(&fx, "CJS", "cjs.in cjs.out cjs.dlq cjs.nats.out") != 0)
        return -1;
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/cli", fx.src_dir);
    const char *args[] = {"migrate", "--dir", dir, NULL};
    if (fx_weft(&fx, out, sizeof(out), args) != 0) {
        fprintf(stderr, "weft migrate failed: %s\n", out);
        return -1;
    }
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

/* Runs `weft ARGS` through sh (ARGS may redirect stdin); output in out. */
static int sh_weft(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh_weft(const char *fmt, ...)
{
    char args[4096], cmd[6000], outfile[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(outfile, sizeof(outfile), "%s/sh.out", fx.state_dir);
    snprintf(cmd, sizeof(cmd), "cd '%s' && '%s/weft' %s >'%s' 2>&1", fx.state_dir, fx.bin_dir, args,
             outfile);
    int st = system(cmd);
    FILE *f = fopen(outfile, "r");
    size_t n = f ? fread(out, 1, sizeof(out) - 1, f) : 0;
    out[n] = '\0';
    if (f)
        fclose(f);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    print_message("$ weft %s\n-> %d\n%s", args, rc, out);
    return rc;
}

static void write_file(const char *name, const char *text)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", fx.state_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A number member of a flat JSON object (replay --json), or -1. */
static long long json_num(const char *json, const char *key)
{
    char pat[80];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? atoll(p + strlen(pat)) : -1;
}

/* How long a collector reads on once it has what it waited for. */
#define SETTLE_MS 2000

/* Collects messages of topic until there are want (or timeout), then
 * whatever else arrives within the settle time: a caller comparing the
 * count with want sees copies and strays that come late. */
static size_t collect(const char *topic, size_t want, int timeout_ms, fx_msg_t **msgs)
{
    return fx_collect(&fx, topic, want, timeout_ms, SETTLE_MS, msgs);
}

static const fx_msg_t *by_header(const fx_msg_t *msgs, size_t n, const char *h, const char *v)
{
    for (size_t i = 0; i < n; i++) {
        const char *x = fx_header(&msgs[i], h);
        if (x && strcmp(x, v) == 0)
            return &msgs[i];
    }
    return NULL;
}

/* Publishes n events with ids PREFIX-0.. to topic through `weft publish
 * --lines` and waits for their n results on out_topic. */
static size_t publish_and_wait(const char *topic, const char *prefix, int n, const char *out_topic,
                               fx_msg_t **res)
{
    char *text = calloc(1, (size_t)n * 128 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(text + len,
                               "{\"type\":\"t\",\"id\":\"%s-%d\",\"data\":{\"name\":\"%s %d\"}}\n",
                               prefix, i, prefix, i);
    char file[64];
    snprintf(file, sizeof(file), "%s.jsonl", prefix);
    write_file(file, text);
    free(text);
    assert_int_equal(sh_weft("publish --to kafka://%s --lines --source /t < %s", topic, file), 0);
    size_t rn = collect(out_topic, (size_t)n, 60000, res);
    assert_int_equal(rn, (size_t)n);
    return rn;
}

/* ---- publish ---------------------------------------------------------------------- */

static void test_publish_round_trip(void **state)
{
    (void)state;
    assert_int_equal(sh_weft("publish --to kafka://c.in --type order.created --id rt-1 "
                             "--subject orders/1 --ext region=eu --key k1 "
                             "--data '{\"name\":\"ada\"}'"),
                     0);
    assert_non_null(strstr(out, "published rt-1 to kafka://c.in"));
    write_file("rt2.json", "{\"name\":\"grace\"}");
    assert_int_equal(sh_weft("publish --to kafka://c.in --type order.created --id rt-2 "
                             "--structured --data @rt2.json"),
                     0);
    /* Data from stdin and a generated id. */
    assert_int_equal(sh_weft("publish --to kafka://c.in --type t --source /stdin --data - "
                             "< rt2.json"),
                     0);
    fx_msg_t *res;
    size_t rn = collect("c.out", 3, 60000, &res);
    assert_int_equal(rn, 3);
    const fx_msg_t *m1 = by_header(res, rn, "ce_weftinputid", "rt-1");
    const fx_msg_t *m2 = by_header(res, rn, "ce_weftinputid", "rt-2");
    assert_non_null(m1);
    assert_non_null(m2);
    assert_string_equal(m1->value, "{\"name\":\"ADA\"}");
    assert_string_equal(m2->value, "{\"name\":\"GRACE\"}");
    assert_string_equal(fx_header(m1, "ce_subject"), "orders/1");
    assert_string_equal(fx_header(m1, "ce_type"), "order.created.result");
    fx_msgs_free(res, rn);
    /* The input as the dispatcher saw it: binary mode with our attributes. */
    rn = collect("c.in", 3, 30000, &res);
    const fx_msg_t *in1 = by_header(res, rn, "ce_id", "rt-1");
    assert_non_null(in1);
    assert_string_equal(fx_header(in1, "ce_specversion"), "1.0");
    assert_string_equal(fx_header(in1, "ce_source"), "/weft/cli");
    assert_string_equal(fx_header(in1, "ce_region"), "eu");
    assert_string_equal(fx_header(in1, "content-type"), "application/json");
    assert_non_null(fx_header(in1, "ce_time"));
    const fx_msg_t *in2 = NULL;
    for (size_t i = 0; i < rn; i++)
        if (strstr(res[i].value, "\"id\":\"rt-2\""))
            in2 = &res[i];
    assert_non_null(in2); /* structured: the id is in the document */
    assert_non_null(strstr(fx_header(in2, "content-type"), "application/cloudevents+json"));
    fx_msgs_free(res, rn);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = "
                                      "'c-round' AND status = 'completed'"),
                     3);
}

static void test_publish_to_jetstream_and_nats(void **state)
{
    (void)state;
    /* JetStream: waits for the PubAck; the event id is the Nats-Msg-Id. */
    assert_int_equal(sh_weft("publish --to jetstream://cjs.in --type order.created --id js-1 "
                             "--ext region=eu --data '{\"name\":\"ada\"}'"),
                     0);
    assert_non_null(strstr(out, "published js-1 to jetstream://cjs.in"));
    /* Core NATS (at most once): the trigger's result goes to JetStream. */
    assert_int_equal(sh_weft("publish --to nats://cnats.in --type order.created --id n-1 "
                             "--data '{\"name\":\"grace\"}'"),
                     0);
    fx_nsub_t *c = fx_nsub_new(&fx, "cjs.out", 1);
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    size_t w = 1, all = SIZE_MAX;
    fx_nsub_until(c, &msgs, &n, &cap, fx_have_n, &w, 60000);
    fx_nsub_until(c, &msgs, &n, &cap, fx_have_n, &all, SETTLE_MS);
    assert_int_equal(n, 1);
    assert_string_equal(msgs[0].value, "{\"name\":\"ADA\"}");
    assert_string_equal(msgs[0].input_id, "js-1");
    fx_msgs_free(msgs, n);
    fx_nsub_destroy(c);
    c = fx_nsub_new(&fx, "cjs.nats.out", 1);
    msgs = NULL;
    n = cap = 0;
    fx_nsub_until(c, &msgs, &n, &cap, fx_have_n, &w, 60000);
    fx_nsub_until(c, &msgs, &n, &cap, fx_have_n, &all, SETTLE_MS);
    assert_int_equal(n, 1);
    assert_string_equal(msgs[0].value, "{\"name\":\"GRACE\"}");
    fx_msgs_free(msgs, n);
    fx_nsub_destroy(c);
    /* The same event again: JetStream keeps one copy (duplicate window). */
    assert_int_equal(sh_weft("publish --to jetstream://cjs.in --type order.created --id js-1 "
                             "--data '{\"name\":\"ada\"}'"),
                     0);
    assert_non_null(strstr(out, "duplicate"));
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'c-js'"),
                     1);
    /* No stream for the subject: a clear error, exit 1. */
    assert_int_equal(sh_weft("publish --to jetstream://nostream.here --type t --data x"), 1);
    assert_non_null(strstr(out, "jetstream://nostream.here"));
}

static void test_publish_lines_with_a_bad_line(void **state)
{
    (void)state;
    write_file("bulk.jsonl", "{\"type\":\"t\",\"id\":\"b-1\",\"data\":{\"name\":\"one\"}}\n"
                             "{\"type\":\"t\",\"id\":\"b-2\",\"data\":{\"name\":\"two\"}}\n"
                             "{\"type\":\"t\",\"id\":\"b-3\",\"data\":{\"name\":\n"
                             "\n"
                             "{\"id\":\"b-5\",\"data\":{\"name\":\"five\"}}\n"
                             "{\"type\":\"t\",\"id\":\"b-6\",\"data\":{\"name\":\"six\"},"
                             "\"partitionkey\":\"p\"}\n");
    /* Line 5 has no type: --type gives it one; line 3 is broken. */
    assert_int_equal(sh_weft("publish --to kafka://c.bulk --lines --type dflt < bulk.jsonl"), 1);
    assert_non_null(strstr(out, "line 3: invalid JSON"));
    assert_null(strstr(out, "line 4"));
    assert_non_null(strstr(out, "published 4 events to kafka://c.bulk"));
    fx_msg_t *res;
    size_t rn = collect("c.bulk.out", 4, 60000, &res);
    assert_int_equal(rn, 4);
    const char *ids[] = {"b-1", "b-2", "b-5", "b-6"};
    for (int i = 0; i < 4; i++)
        assert_non_null(by_header(res, rn, "ce_weftinputid", ids[i]));
    assert_string_equal(fx_header(by_header(res, rn, "ce_weftinputid", "b-5"), "ce_type"),
                        "dflt.result");
    fx_msgs_free(res, rn);
    /* Without a type for a line at all: every line is bad. */
    write_file("notype.jsonl", "{\"id\":\"n-1\"}\n");
    assert_int_equal(sh_weft("publish --to kafka://c.bulk --lines < notype.jsonl"), 1);
    assert_non_null(strstr(out, "line 1: the CloudEvent has no type"));
    assert_non_null(strstr(out, "published 0 events"));
}

/* ---- replay ----------------------------------------------------------------------- */

static void test_replay_honours_the_ledger(void **state)
{
    (void)state;
    fx_msg_t *res;
    size_t rn = publish_and_wait("c.rp", "rp", 6, "c.rp.out", &res);
    long attempts =
        fx_sql_long(&fx, "SELECT sum(attempts) FROM weft.ledger WHERE trigger = 'c-rp'");
    assert_int_equal(attempts, 6);
    assert_int_equal(sh_weft("replay --trigger c-rp --json"), 0);
    assert_int_equal(json_num(out, "read"), 6);
    assert_int_equal(json_num(out, "published"), 6);
    assert_int_equal(json_num(out, "reemit"), 6);
    assert_int_equal(json_num(out, "run"), 0);
    assert_non_null(strstr(out, "\"status\":\"done\""));
    fx_msg_t *all;
    size_t an = collect("c.rp.out", 12, 60000, &all);
    assert_int_equal(an, 12);
    /* Every result twice, with the same id and value; nothing ran again. */
    for (size_t i = 0; i < rn; i++) {
        assert_int_equal(fx_count_header(all, an, "ce_id", res[i].ce_id), 2);
        for (size_t k = 0; k < an; k++)
            if (strcmp(all[k].ce_id, res[i].ce_id) == 0)
                assert_string_equal(all[k].value, res[i].value);
    }
    assert_int_equal(fx_sql_long(&fx, "SELECT sum(attempts) FROM weft.ledger WHERE trigger = "
                                      "'c-rp'"),
                     6);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'c-rp'"),
                     6);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.replays WHERE trigger = 'c-rp' "
                                      "AND status = 'done' AND generation = 0"),
                     1);
    fx_msgs_free(all, an);
    fx_msgs_free(res, rn);
}

static void test_replay_reexecute(void **state)
{
    (void)state;
    fx_msg_t *res;
    size_t rn = publish_and_wait("c.rx", "rx", 4, "c.rx.out", &res);
    /* Not a terminal and no --yes: refused, nothing recorded. */
    assert_int_equal(sh_weft("replay --trigger c-rx --reexecute < /dev/null"), 2);
    assert_non_null(strstr(out, "up to 4 events"));
    assert_non_null(strstr(out, "--yes"));
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.replays WHERE trigger = 'c-rx'"),
                     0);
    assert_int_equal(sh_weft("replay --trigger c-rx --reexecute --yes --json < /dev/null"), 0);
    long long gen = json_num(out, "generation");
    assert_true(gen > 0);
    assert_int_equal(json_num(out, "run"), 4);
    assert_int_equal(json_num(out, "reemit"), 0);
    fx_msg_t *all;
    size_t an = collect("c.rx.out", 8, 60000, &all);
    assert_int_equal(an, 8);
    /* The functions ran again: new result ids, the same values. */
    for (size_t i = 0; i < rn; i++) {
        assert_int_equal(fx_count_header(all, an, "ce_id", res[i].ce_id), 1);
        assert_int_equal(fx_count_header(all, an, "ce_weftinputid", res[i].input_id), 2);
    }
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.ledger WHERE trigger = 'c-rx' AND generation = %lld "
             "AND status = 'completed' AND attempts = 1",
             gen);
    assert_int_equal(fx_sql_long(&fx, sql), 4);
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.ledger WHERE trigger = 'c-rx' "
                                      "AND generation = 0"),
                     4);
    fx_msgs_free(all, an);
    fx_msgs_free(res, rn);
}

static void test_replay_recovers_lost_results(void **state)
{
    (void)state;
    fx_msg_t *res;
    size_t rn = publish_and_wait("c.loss", "loss", 5, "c.loss.out", &res);
    /* The result topic's data is lost: results now go to a fresh topic
     * (as after recreating it), which holds nothing. */
    char *r = fx_sql(&fx, "UPDATE weft.triggers SET result_topic = 'c.loss.new' WHERE name = "
                          "'c-loss'");
    free(r);
    assert_true(fx_log_wait(&fx, "run.log", "name=c-loss .*result_topic=c.loss.new", 30000));
    assert_int_equal(sh_weft("replay --trigger c-loss --json"), 0);
    assert_int_equal(json_num(out, "reemit"), 5);
    fx_msg_t *rec;
    size_t cn = collect("c.loss.new", 5, 60000, &rec);
    assert_int_equal(cn, 5);
    for (size_t i = 0; i < rn; i++) {
        const fx_msg_t *m = by_header(rec, cn, "ce_id", res[i].ce_id);
        assert_non_null(m);
        assert_string_equal(m->value, res[i].value);
    }
    assert_int_equal(fx_sql_long(&fx, "SELECT sum(attempts) FROM weft.ledger WHERE trigger = "
                                      "'c-loss'"),
                     5);
    fx_msgs_free(rec, cn);
    fx_msgs_free(res, rn);
}

static void test_replay_dry_run_counts(void **state)
{
    (void)state;
    write_file("dry.jsonl", "{\"type\":\"keep\",\"id\":\"d-1\",\"data\":{\"n\":1}}\n"
                            "{\"type\":\"keep\",\"id\":\"d-2\",\"data\":{\"n\":2}}\n"
                            "{\"type\":\"other\",\"id\":\"d-3\",\"data\":{\"n\":3}}\n"
                            "{\"type\":\"keep\",\"id\":\"d-4\",\"data\":{\"n\":4}}\n");
    assert_int_equal(sh_weft("publish --to kafka://c.dry --lines --source /t < dry.jsonl"), 0);
    fx_msg_t *res;
    size_t rn = collect("c.dry.out", 3, 60000, &res);
    assert_int_equal(rn, 3);
    fx_msgs_free(res, rn);
    /* One key unknown to the ledger (as if never claimed): it would run. */
    char *r = fx_sql(&fx, "DELETE FROM weft.ledger WHERE trigger = 'c-dry' AND key LIKE '%d-4'");
    free(r);
    assert_int_equal(sh_weft("replay --trigger c-dry --dry-run --json"), 0);
    assert_int_equal(json_num(out, "read"), 4);
    assert_int_equal(json_num(out, "reemit"), 2);
    assert_int_equal(json_num(out, "run"), 1);
    assert_int_equal(json_num(out, "skipped"), 1);
    assert_int_equal(json_num(out, "published"), 0);
    assert_int_equal(sh_weft("replay --topic c.dry --dry-run"), 0);
    assert_non_null(strstr(out, "would re-emit a stored result"));
    assert_non_null(strstr(out, "4 events read, nothing published"));
    /* Nothing was published or recorded. */
    assert_int_equal(fx_sql_long(&fx, "SELECT count(*) FROM weft.replays WHERE trigger = "
                                      "'c-dry' OR topic = 'c.dry'"),
                     0);
    assert_int_equal(sh_weft("replay --trigger c-dry --dry-run --from-offset 3 --json"), 0);
    assert_int_equal(json_num(out, "read"), 1);
    assert_int_equal(json_num(out, "run"), 1);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --from-time/--to-time on Kafka: the broker looks the offsets up by time
 * (ListOffsets with a timestamp); three early events, then two late ones,
 * and a range of each by time alone. The mock cannot do it (see
 * test_bad_arguments). */
static void test_replay_by_time(void **state)
{
    (void)state;
    if (strcmp(fx.kafka_kind, "mock") == 0)
        skip();
    write_file("early.jsonl", "{\"type\":\"t\",\"id\":\"tm-1\",\"data\":{\"n\":1}}\n"
                              "{\"type\":\"t\",\"id\":\"tm-2\",\"data\":{\"n\":2}}\n"
                              "{\"type\":\"t\",\"id\":\"tm-3\",\"data\":{\"n\":3}}\n");
    write_file("late.jsonl", "{\"type\":\"t\",\"id\":\"tm-4\",\"data\":{\"n\":4}}\n"
                             "{\"type\":\"t\",\"id\":\"tm-5\",\"data\":{\"n\":5}}\n");
    long long t0 = now_ms();
    assert_int_equal(sh_weft("publish --to kafka://c.time --lines --source /t < early.jsonl"), 0);
    /* The broker stamps each message with the producer's create time, in
     * milliseconds: a gap on both sides of the boundary keeps it apart. */
    usleep(300 * 1000);
    long long mid = now_ms();
    usleep(300 * 1000);
    assert_int_equal(sh_weft("publish --to kafka://c.time --lines --source /t < late.jsonl"), 0);
    fx_msg_t *res;
    size_t rn = collect("c.time.out", 5, 60000, &res);
    assert_int_equal(rn, 5);
    fx_msgs_free(res, rn);
    long long t1 = now_ms();

    assert_int_equal(sh_weft("replay --trigger c-time --dry-run --json --from-time @%lld", mid), 0);
    assert_int_equal(json_num(out, "read"), 2);
    assert_int_equal(json_num(out, "reemit"), 2);
    assert_int_equal(sh_weft("replay --trigger c-time --dry-run --json --to-time @%lld", mid), 0);
    assert_int_equal(json_num(out, "read"), 3);
    assert_int_equal(
        sh_weft("replay --trigger c-time --dry-run --json --from-time @%lld --to-time @%lld", t0,
                t1),
        0);
    assert_int_equal(json_num(out, "read"), 5);
    /* After the last event: nothing to read, said at once. */
    usleep(50 * 1000);
    assert_int_equal(
        sh_weft("replay --trigger c-time --dry-run --json --from-time @%lld", now_ms()), 0);
    assert_non_null(strstr(out, "holds no event"));
    /* --json answers JSON on an empty range too. */
    assert_true(weft_json_valid(out, strlen(out)));
    assert_non_null(strstr(out, "\"status\":\"empty\""));
    assert_int_equal(json_num(out, "read"), 0);
    /* A relative time works the same way: the last hour holds all five. */
    assert_int_equal(sh_weft("replay --trigger c-time --dry-run --json --from-time 1h"), 0);
    assert_int_equal(json_num(out, "read"), 5);
}

static pid_t spawn_weft_bg(const char *const *args, const char *outname)
{
    char path[600], outfile[400];
    snprintf(path, sizeof(path), "%s/weft", fx.bin_dir);
    snprintf(outfile, sizeof(outfile), "%s/%s", fx.state_dir, outname);
    const char *argv[32];
    int a = 0;
    argv[a++] = path;
    for (int i = 0; args[i] && a < 31; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? pid : -1;
}

static int wait_exit(pid_t pid, int timeout_ms)
{
    uint64_t deadline = fx_now_ms() + (uint64_t)timeout_ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (fx_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(20000);
    }
}

static void test_interrupted_replay_resumes(void **state)
{
    (void)state;
    fx_msg_t *res;
    size_t rn = publish_and_wait("c.int", "int", 40, "c.int.out", &res);
    const char *args[] = {"replay", "--trigger", "c-int", "--rate", "8", NULL};
    pid_t pid = spawn_weft_bg(args, "replay-int.out");
    assert_true(pid > 0);
    /* Interrupt once some progress is saved. */
    uint64_t deadline = fx_now_ms() + 60000;
    while (fx_sql_long(&fx, "SELECT coalesce(max(p.next_offset), 0) FROM "
                            "weft.replay_partitions p JOIN weft.replays r ON r.id = p.replay "
                            "WHERE r.trigger = 'c-int'") < 3 &&
           fx_now_ms() < deadline)
        usleep(50000);
    kill(pid, SIGINT);
    assert_int_equal(wait_exit(pid, 60000), 130);
    char *id = fx_sql(&fx, "SELECT id FROM weft.replays WHERE trigger = 'c-int'");
    assert_non_null(id);
    char *st = fx_sql(&fx, "SELECT status FROM weft.replays WHERE trigger = 'c-int'");
    assert_string_equal(st, "interrupted");
    free(st);
    long stopped = fx_sql_long(&fx, "SELECT p.next_offset FROM weft.replay_partitions p JOIN "
                                    "weft.replays r ON r.id = p.replay WHERE r.trigger = 'c-int'");
    print_message("interrupted at offset %ld of 40\n", stopped);
    assert_true(stopped >= 3 && stopped < 40);
    assert_int_equal(sh_weft("replay --list"), 0);
    assert_non_null(strstr(out, "interrupted"));
    assert_int_equal(sh_weft("replay --resume %s --json", id), 0);
    assert_non_null(strstr(out, "\"status\":\"done\""));
    assert_int_equal(json_num(out, "reemit"), 40);
    assert_int_equal(sh_weft("replay --resume %s", id), 1);
    assert_non_null(strstr(out, "is done"));
    fx_msg_t *all;
    size_t an = collect("c.int.out", 80, 90000, &all);
    assert_true(an >= 80);
    /* Every result re-emitted at least once (an event republished both
     * before the interruption and after it is re-emitted twice). */
    for (size_t i = 0; i < rn; i++)
        assert_true(fx_count_header(all, an, "ce_id", res[i].ce_id) >= 2);
    assert_int_equal(fx_sql_long(&fx, "SELECT sum(attempts) FROM weft.ledger WHERE trigger = "
                                      "'c-int'"),
                     40);
    free(id);
    fx_msgs_free(all, an);
    fx_msgs_free(res, rn);
}

/* ---- introspection ------------------------------------------------------------------ */

static void test_triggers_output(void **state)
{
    (void)state;
    assert_int_equal(sh_weft("triggers"), 0);
    assert_non_null(strstr(out, "TRIGGER"));
    assert_non_null(strstr(out, "c-rp"));
    assert_int_equal(sh_weft("triggers --topic c.in"), 0);
    assert_non_null(strstr(out, "an event published to kafka://c.in runs"));
    assert_non_null(strstr(out, "c-round"));
    assert_non_null(strstr(out, "type=x.only AND subject^=orders/"));
    assert_non_null(strstr(out, "c-upper (shared_object, static 2)"));
    assert_null(strstr(out, "c-rp "));
    assert_int_equal(sh_weft("triggers --topic kafka://c.in --json"), 0);
    assert_true(weft_json_valid(out, strlen(out)));
    assert_non_null(strstr(out, "\"name\" : \"c-filtered\""));
    assert_non_null(strstr(out, "\"op\" : \"prefix\""));
    assert_non_null(strstr(out, "\"result_topic\" : \"c.out2\""));
    assert_int_equal(sh_weft("triggers --topic nobody.listens"), 0);
    assert_non_null(strstr(out, "nothing runs"));
    assert_int_equal(sh_weft("triggers --topic kafka://nobody --json"), 0);
    assert_string_equal(out, "[]\n");
}

static void test_status_output(void **state)
{
    (void)state;
    /* Wait for a heartbeat that has seen the pools. */
    uint64_t deadline = fx_now_ms() + 30000;
    while (fx_sql_long(&fx, "SELECT count(*) FROM weft.dispatchers WHERE status->'pools' ? "
                            "'c-upper'") < 1 &&
           fx_now_ms() < deadline)
        usleep(100000);
    assert_int_equal(sh_weft("status --json"), 0);
    assert_true(weft_json_valid(out, strlen(out)));
    const char *t = strstr(out, "{\"name\":\"c-round\"");
    assert_non_null(t);
    assert_int_equal(json_num(strstr(t, "\"total\":"), "completed"), 3);
    assert_int_equal(json_num(t, "lag"), 0);
    assert_non_null(strstr(out, "\"alive\":true"));
    const char *p = strstr(out, "{\"function\":\"c-upper\"");
    assert_non_null(p);
    assert_int_equal(json_num(p, "max_workers"), 2);
    assert_true(json_num(p, "invocations") >= 3);
    assert_int_equal(sh_weft("status"), 0);
    assert_non_null(strstr(out, "TRIGGERS"));
    assert_non_null(strstr(out, "c-round"));
    assert_non_null(strstr(out, "alive"));
}

/* ---- bad arguments ------------------------------------------------------------------ */

static void test_bad_arguments(void **state)
{
    (void)state;
    struct {
        const char *args;
        int rc;
        const char *msg;
    } cases[] = {
        {"publish --type t", 2, "--to kafka://TOPIC"},
        {"publish --to kafka://c.in", 2, "--type is required"},
        {"publish --to c.in --type t", 2, "not a broker URL"},
        {"publish --to 'kafka://bad topic' --type t", 2, "[A-Za-z0-9._-]"},
        {"publish --to nats://a.b", 2, "--type is required"},
        {"publish --to 'jetstream://a b' --type t", 2, "without spaces or wildcards"},
        {"publish --set nats.url=nats://127.0.0.1:1 --to jetstream://a.b --type t", 1,
         "127.0.0.1:1"},
        {"publish --to kafka://c.in --type t --ext Bad=1", 2, "NAME=VALUE"},
        {"publish --to kafka://c.in --type t --ext id=1", 2, "own flag"},
        {"publish --to kafka://c.in --type t --data @/nonexistent", 2, "cannot open"},
        {"publish --to kafka://c.in --type t --data x --lines", 2, "--data does not apply"},
        {"publish --to kafka://c.in --type t --bogus", 2, "usage: weft publish"},
        {"replay", 2, "--trigger T or --topic TOPIC"},
        {"replay --trigger a --topic b", 2, "one of them"},
        {"replay --trigger c-rp --from-offset abc", 2, "is not an offset"},
        {"replay --trigger c-rp --to-offset 0:1,0:2", 2, "given twice"},
        {"replay --trigger c-rp --from-time yesterday", 2, "is not a time"},
        {"replay --trigger c-rp --from-offset 1 --from-time 1h", 2, "not both"},
        {"replay --trigger c-rp --yes", 2, "--yes confirms --reexecute"},
        {"replay --trigger c-rp --rate 0", 2, "--rate"},
        {"replay --resume 1 --trigger c-rp", 2, "only --resume"},
        {"replay --trigger nope", 1, "unknown trigger \"nope\""},
        {"replay --topic nobody.listens", 1, "no enabled trigger consumes"},
        {"replay --trigger c-rp --from-offset 9:0", 2, "has no partition 9"},
        {"replay --resume 999999", 1, "no replay 999999"},
        {"replay --trigger c-rp --from-seq 5", 2, "JetStream"},
        {"triggers --bogus", 2, "usage: weft triggers"},
        {"status extra", 2, "unexpected argument"},
        {NULL, 0, NULL},
    };
    for (int i = 0; cases[i].args; i++) {
        int rc = sh_weft("%s < /dev/null", cases[i].args);
        if (rc != cases[i].rc || !strstr(out, cases[i].msg))
            fail_msg("weft %s: exit %d (want %d), output \"%s\" (want \"%s\")", cases[i].args, rc,
                     cases[i].rc, out, cases[i].msg);
    }
    /* The mock answers "no event" to a lookup by time: a clear error, not
     * an empty replay (test_replay_by_time covers real Kafka). */
    if (strcmp(fx.kafka_kind, "mock") == 0) {
        assert_int_equal(sh_weft("replay --trigger c-rp --from-time 1h < /dev/null"), 1);
        assert_non_null(strstr(out, "does not support looking up offsets by time"));
    }
    const char *helps[] = {"publish", "replay", "triggers", "status", NULL};
    for (int i = 0; helps[i]; i++) {
        assert_int_equal(sh_weft("%s --help", helps[i]), 0);
        assert_non_null(strstr(out, "examples:"));
    }
    assert_int_equal(sh_weft("--help"), 0);
    assert_non_null(strstr(out, "replay"));
}

static void test_unreachable_broker(void **state)
{
    (void)state;
    /* A port nobody listens on: bounded waits, clear errors. */
    uint64_t t0 = fx_now_ms();
    assert_int_equal(sh_weft("publish --set kafka.bootstrap.servers=127.0.0.1:1 "
                             "--to kafka://c.in --type t --data x"),
                     1);
    assert_non_null(strstr(out, "did not acknowledge"));
    assert_int_equal(sh_weft("replay --set kafka.bootstrap.servers=127.0.0.1:1 --trigger c-rp "
                             "--dry-run"),
                     1);
    assert_non_null(strstr(out, "cannot read the metadata of topic c.rp"));
    assert_int_equal(sh_weft("status --set kafka.bootstrap.servers=127.0.0.1:1"), 1);
    assert_non_null(strstr(out, "lag unknown"));
    assert_non_null(strstr(out, "c-round")); /* the rest is still shown */
    print_message("three commands against an unreachable broker took %llu ms\n",
                  (unsigned long long)(fx_now_ms() - t0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_round_trip),
        cmocka_unit_test(test_publish_to_jetstream_and_nats),
        cmocka_unit_test(test_publish_lines_with_a_bad_line),
        cmocka_unit_test(test_replay_honours_the_ledger),
        cmocka_unit_test(test_replay_reexecute),
        cmocka_unit_test(test_replay_recovers_lost_results),
        cmocka_unit_test(test_replay_dry_run_counts),
        cmocka_unit_test(test_replay_by_time),
        cmocka_unit_test(test_interrupted_replay_resumes),
        cmocka_unit_test(test_triggers_output),
        cmocka_unit_test(test_status_output),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_unreachable_broker),
    };
    return cmocka_run_group_tests_name("cli", tests, group_setup, group_teardown);
}
