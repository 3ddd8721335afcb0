/*
 * faults.h - the fault suite: one table of the faults DESIGN.md names,
 * injected the same way on every broker, each run checked by the same
 * invariants (checker.h), from the outside.
 *
 * Each fault is a case with its own trigger and topics (migrations
 * tests/migrations/faults-kafka and faults-jetstream): trigger "<b>-<name>"
 * consumes "<b>.<name>.in" and produces "<b>.<name>.out" and
 * "<b>.<name>.dlq" (b = k: Kafka, j: JetStream). Its inputs are FAULT_N
 * events "<b>-<name>-<i>" published in order; a poison case makes every
 * input i with i % FAULT_POISON_EVERY == FAULT_POISON_AT poison, a crash
 * case makes one input slow.
 */
#ifndef WEFT_FAULTS_H
#define WEFT_FAULTS_H

#include "checker.h"
#include "fixture.h"

#define FAULT_N 200
#define FAULT_POISON_EVERY 80
#define FAULT_POISON_AT 7
/* In a crash case, input FAULT_SLOW_AT runs FAULT_SLOW (under the
 * function's 1 s deadline) while the others flow past it: the crash comes
 * while it runs, so a mark of the source that passed it is seen. */
#define FAULT_SLOW_AT 10
#define FAULT_SLOW "sleep-900"
/* The triggers' max_attempts (the migrations say the same). */
#define FAULT_MAX_ATTEMPTS 3

typedef enum fault_kind {
    FAULT_CRASH,  /* kill -9 of the dispatcher at a crash point */
    FAULT_POISON, /* some inputs are poison: the function or the input */
    FAULT_PG,     /* PostgreSQL stopped and started under load */
    FAULT_BROKER, /* the broker stopped and started under load */
} fault_kind_t;

typedef struct fault {
    const char *name; /* the case, and the stem of its trigger and topics */
    fault_kind_t kind;
    const char *crash_at; /* FAULT_CRASH: "<point>:<N>" (crashpoint.h) */
    const char *poison;   /* FAULT_POISON: faulty.so's mode, or "malformed" */
    const char *reason;   /* FAULT_POISON: the dead letters' reason (a prefix), */
    const char *error;    /* and a part of their error (NULL: any) */
} fault_t;

extern const fault_t weft_faults[];
extern const size_t weft_n_faults;

/* The broker the suite runs on: set once by the test program. */
typedef struct fault_bus {
    fx_t *fx;
    int js;          /* 0 Kafka, 1 JetStream */
    const char *run; /* the dispatchers' WEFT_SET */
} fault_bus_t;

extern fault_bus_t fault_bus;

struct CMUnitTest;

/* The cmocka test of one fault: state is its fault_t. */
void fault_run(void **state);

/* The test programs' case list: one cmocka test per fault of the table,
 * named after it (tests must hold weft_n_faults). */
void fault_tests(struct CMUnitTest *tests);

#endif
