/*
 * faults.c - the fault suite's table and its one runner (see faults.h),
 * shared by test_faults_kafka.c and test_faults_jetstream.c.
 *
 * Runs in the test process; the dispatcher is `weft run`, a real child
 * killed with SIGKILL at crash points compiled into test builds only
 * (dispatcher/core/crashpoint.h, -DWEFT_TEST_HOOKS=ON). Every case ends
 * with the same invariants, read from the broker and the ledger only
 * (checker.h): each input has exactly one terminal outcome (its result,
 * or for a poison input its dead letter), at most one distinct result id,
 * no good input dead-lettered, attempts within max_attempts, lag zero;
 * and after each kill -9, before anything restarts, no committed offset
 * or ack floor above an input without an outcome.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "faults.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* RLIMIT_AS cannot be combined with AddressSanitizer's shadow memory: the
 * worker applies no memory limit there and faulty.so's blowup refuses to
 * run (a non-retryable failure), so only the plain build names the reason. */
#if defined(__SANITIZE_ADDRESS__)
#define FAULT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FAULT_ASAN 1
#endif
#endif
#ifdef FAULT_ASAN
#define MEMORY_REASON NULL, NULL
#else
#define MEMORY_REASON "max_attempts", "memory"
#endif

/* The crash points' N: mid-stream, with work before and after it. A
 * retryable crash of the function is dead-lettered as max_attempts once
 * the last attempt failed, its error saying how. */
const fault_t weft_faults[] = {
    {"claim", FAULT_CRASH, "after_claim:100", NULL, NULL, NULL},
    {"invoke", FAULT_CRASH, "after_invoke:100", NULL, NULL, NULL},
    {"record", FAULT_CRASH, "after_record:100", NULL, NULL, NULL},
    {"produce", FAULT_CRASH, "after_produce:100", NULL, NULL, NULL},
    {"segv", FAULT_POISON, NULL, "segv", "max_attempts", "signal:"},
    {"hang", FAULT_POISON, NULL, "hang", "max_attempts", "timeout"},
    {"memory", FAULT_POISON, NULL, "blowup", MEMORY_REASON},
    {"garbage", FAULT_POISON, NULL, "garbage", "max_attempts", "bad_frame"},
    {"fatal", FAULT_POISON, NULL, "fatal", NULL, "asked to fail"},
    {"malformed", FAULT_POISON, NULL, "malformed", "malformed", NULL},
    /* The same poison with the pool's crash-storm brake on: the quarantine
     * that follows must not use up attempts the function never ran
     * (issue 25, bug 1), so the dead letter still names the crash. */
    {"storm", FAULT_POISON, NULL, "segv", "max_attempts", "signal:"},
    {"pg", FAULT_PG, NULL, NULL, NULL, NULL},
    {"broker", FAULT_BROKER, NULL, NULL, NULL, NULL},
};
const size_t weft_n_faults = sizeof(weft_faults) / sizeof(weft_faults[0]);

fault_bus_t fault_bus;

/* The names of one case on the suite's broker. */
typedef struct names {
    char trigger[64], in[64], out[64], dlq[64], stream[64], log[80];
} names_t;

static void names_of(const fault_t *f, names_t *nm)
{
    const char *b = fault_bus.js ? "j" : "k";
    snprintf(nm->trigger, sizeof(nm->trigger), "%s-%s", b, f->name);
    snprintf(nm->in, sizeof(nm->in), "%s.%s.in", b, f->name);
    snprintf(nm->out, sizeof(nm->out), "%s.%s.out", b, f->name);
    snprintf(nm->dlq, sizeof(nm->dlq), "%s.%s.dlq", b, f->name);
    snprintf(nm->stream, sizeof(nm->stream), "FJ-%s", f->name);
    snprintf(nm->log, sizeof(nm->log), "%s.log", nm->trigger);
}

static int poison_at(const fault_t *f, int i)
{
    return f->kind == FAULT_POISON && i % FAULT_POISON_EVERY == FAULT_POISON_AT;
}

/* Publishes the case's inputs in order (offset or stream sequence i + 1
 * is input i): good ones paced by the function (checker.h), poison ones
 * per the fault. */
static void publish(const fault_t *f, const names_t *nm)
{
    fx_producer_t *p = fault_bus.js ? NULL : fx_producer_new(fault_bus.fx);
    fx_nats_t *nc = fault_bus.js ? fx_nats_new(fault_bus.fx) : NULL;
    assert_true(p || nc);
    for (int i = 0; i < FAULT_N; i++) {
        char id[96], data[128];
        int bad = poison_at(f, i), malformed = bad && strcmp(f->poison, "malformed") == 0;
        snprintf(id, sizeof(id), "%s-%d", nm->trigger, i);
        const char *mode = bad && !malformed ? f->poison : FX_CHECK_SLOW;
        if (f->kind == FAULT_CRASH && i == FAULT_SLOW_AT)
            mode = FAULT_SLOW;
        snprintf(data, sizeof(data), "{\"fail\":\"%s\",\"n\":%d}", mode, i);
        int rc;
        if (malformed && nc) {
            /* A bad percent escape in a CloudEvents header. */
            const char *hdrs[] = {"ce-subject=%zz", NULL};
            rc = fx_nats_publish(nc, 1, nm->in, id, "check.item", data, hdrs);
        } else if (malformed) {
            /* An attribute that is not UTF-8. */
            rc = fx_produce_raw_header(p, nm->in, id, "ce_subject", "\xff\xfe", 2, data);
            if (rc == 0)
                rc = fx_producer_flush(p);
        } else if (nc) {
            rc = fx_nats_publish(nc, 1, nm->in, id, "check.item", data, NULL);
        } else {
            rc = fx_produce(p, nm->in, "k", id, "check.item", data, NULL);
        }
        assert_int_equal(rc, 0);
    }
    if (p) {
        assert_int_equal(fx_producer_flush(p), 0);
        fx_producer_destroy(p);
    }
    fx_nats_destroy(nc);
}

/* Starts a dispatcher, crashing at crash_at when given. */
static pid_t start(const names_t *nm, const char *crash_at)
{
    if (crash_at)
        setenv("WEFT_TEST_CRASH_AT", crash_at, 1);
    pid_t pid = fx_run_start(fault_bus.fx, nm->log, fault_bus.run);
    unsetenv("WEFT_TEST_CRASH_AT");
    assert_true(pid > 0);
    return pid;
}

/* Waits until the dispatcher is working on the case's input. */
static void wait_working(const names_t *nm)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count(*) FROM weft.ledger WHERE trigger = '%s'",
             nm->trigger);
    uint64_t deadline = fx_now_ms() + 60000;
    while (fx_sql_long(fault_bus.fx, sql) <= 0 && fx_now_ms() < deadline)
        usleep(20000);
    assert_true(fx_sql_long(fault_bus.fx, sql) > 0);
}

/* The work is still under way when the fault strikes. */
static void assert_unfinished(const names_t *nm, const char *when)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM weft.ledger WHERE trigger = '%s' AND status <> 'running'",
             nm->trigger);
    long done = fx_sql_long(fault_bus.fx, sql);
    print_message("%s: %ld of %d inputs finished\n", when, done, FAULT_N);
    assert_true(done >= 0 && done < FAULT_N);
}

static void spec_of(const fault_t *f, const names_t *nm, unsigned char *poison,
                    fx_check_spec_t *spec, fx_check_more_t *more)
{
    for (int i = 0; i < FAULT_N; i++)
        poison[i] = (unsigned char)poison_at(f, i);
    fx_check_spec_t s = {.pfx = nm->trigger,
                         .n = FAULT_N,
                         .in_topic = nm->in,
                         .out_topic = nm->out,
                         .dlq_topic = nm->dlq,
                         .trigger = nm->trigger,
                         .group = FX_CHECK_GROUP,
                         .timeout_ms = 120000,
                         .settle_ms = 2000};
    fx_check_more_t m = {.js = fault_bus.js,
                         .stream = nm->stream,
                         .durable = nm->trigger,
                         .poison = poison,
                         .reason = f->reason,
                         .error = f->error};
    *spec = s;
    *more = m;
}

void fault_run(void **state)
{
    const fault_t *f = *state;
    fx_t *fx = fault_bus.fx;
    names_t nm;
    names_of(f, &nm);
    unsigned char poison[FAULT_N];
    fx_check_spec_t spec;
    fx_check_more_t more;
    spec_of(f, &nm, poison, &spec, &more);
#ifndef WEFT_TEST_HOOKS
    if (f->kind == FAULT_CRASH) {
        print_message("skipped: the crash points need -DWEFT_TEST_HOOKS=ON (ops/test sets it)\n");
        skip();
    }
#endif
    if (f->kind == FAULT_BROKER && !fault_bus.js && strcmp(fx->kafka_kind, "apache") != 0) {
        print_message("skipped: the mock Kafka cannot be stopped and started\n");
        skip();
    }

    uint64_t t0 = fx_now_ms();
    publish(f, &nm);
    pid_t d = start(&nm, f->kind == FAULT_CRASH ? f->crash_at : NULL);
    switch (f->kind) {
    case FAULT_CRASH: {
        char line[128];
        snprintf(line, sizeof(line), "test hook: crashing at %.*s", (int)strcspn(f->crash_at, ":"),
                 f->crash_at);
        assert_true(fx_log_wait(fx, nm.log, line, 90000));
        fx_run_kill9(d); /* reaps it: it killed itself already */
        assert_unfinished(&nm, "at the crash");
        long mark;
        long passed = fx_check_frontier(fx, &spec, &more, &mark);
        print_message("after the crash: source marked done up to %ld; inputs below the mark "
                      "without an outcome: %ld\n",
                      mark, passed);
        assert_int_equal(passed, 0);
        d = start(&nm, NULL);
        break;
    }
    case FAULT_PG:
        wait_working(&nm);
        assert_unfinished(&nm, "when PostgreSQL stopped");
        assert_int_equal(fx_pg_down(fx), 0);
        sleep(2);
        assert_int_equal(fx_pg_up(fx), 0);
        break;
    case FAULT_BROKER:
        wait_working(&nm);
        assert_unfinished(&nm, "when the broker stopped");
        assert_int_equal(fault_bus.js ? fx_nats_down(fx) : fx_kafka_node_stop(fx, 1), 0);
        sleep(2);
        assert_int_equal(fault_bus.js ? fx_nats_up(fx) : fx_kafka_node_start(fx, 1), 0);
        break;
    case FAULT_POISON:
        break;
    }

    uint64_t t1 = fx_now_ms();
    fx_check_t r;
    assert_int_equal(fx_check_run_mixed(fx, &spec, &more, &r), 0);
    fx_check_print(f->name, &r);
    fx_check_assert_mixed(&r, FAULT_MAX_ATTEMPTS);
    assert_int_equal(fx_run_stop(d, 30000), 0);
    print_message("%s: %.1f s (fault %.1f s, check %.1f s)\n", f->name,
                  (double)(fx_now_ms() - t0) / 1000.0, (double)(t1 - t0) / 1000.0,
                  (double)(fx_now_ms() - t1) / 1000.0);
}

void fault_tests(struct CMUnitTest *tests)
{
    for (size_t i = 0; i < weft_n_faults; i++) {
        struct CMUnitTest t = {weft_faults[i].name, fault_run, NULL, fx_check_teardown,
                               (void *)&weft_faults[i]};
        tests[i] = t;
    }
}
