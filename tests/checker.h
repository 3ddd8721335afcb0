/*
 * checker.h - the delivery contract, checked from the outside.
 *
 * After a run in which inputs "<pfx>-<i>" (i < n) were published to a
 * trigger's topic, reads what is on the broker and in the ledger and
 * counts every way the contract can break: an input without a terminal
 * outcome, an input with two different result ids, a result whose body is
 * not its input's, a good input dead-lettered, attempts past the bound, a
 * consumer group whose committed offsets never reach the end of the input.
 * Nothing here stops at the count it hopes for: results are read until
 * every input has one or the timeout passes, and then for a settle time
 * more, so duplicates and strays that arrive late are counted too.
 *
 * Inputs carry {"fail":"<mode>","n":<i>} (workers/examples/faulty.c reads
 * the mode; "sleep-N" succeeds after N ms, returning the data unchanged).
 */
#ifndef WEFT_CHECKER_H
#define WEFT_CHECKER_H

#include "fixture.h"

/* Work whose pace does not depend on the machine: faulty.so sleeps 5 ms
 * per event, so a dispatcher with a pool of 2 finishes at most 400 events
 * a second, and a backlog published at once is still in flight seconds
 * later, however fast the machine is. */
#define FX_CHECK_SLOW "sleep-5"

/* The dispatchers' settings in the failure tests: a killed member's
 * partitions move after its session times out (6 s). */
#define FX_CHECK_RUN_SET                                                                           \
    "dispatcher.shutdown_timeout_ms=15000;kafka.session.timeout.ms=6000;"                          \
    "kafka.heartbeat.interval.ms=500"
/* Their consumer group: weft's default. */
#define FX_CHECK_GROUP "weft"

typedef struct fx_check {
    int inputs;         /* n */
    int with_result;    /* inputs with at least one result */
    int conflicts;      /* inputs with two or more distinct result ids */
    long result_msgs;   /* result messages of our inputs (copies included) */
    long stray;         /* result messages of no input of ours */
    int bad_content;    /* results whose body is not their input's */
    long dead_letters;  /* messages on the dead-letter topic */
    long dead_rows;     /* weft.dead_letters rows of the trigger */
    long ledger_rows;   /* weft.ledger rows of the trigger */
    long not_completed; /* ledger rows of the trigger not 'completed' */
    long max_attempts;  /* the highest attempt count in the ledger */
    long lag;           /* input high watermarks minus the group's commits */
    int first_missing;  /* an input without a result, or -1 */
    /* Runs with poison inputs (spec.poison) and JetStream. */
    int poison;         /* poison inputs among the n */
    int dead_inputs;    /* inputs with at least one dead letter */
    int dead_conflicts; /* inputs with two or more distinct dead-letter ids */
    int both;           /* inputs with a result and a dead letter */
    int good_dead;      /* good inputs dead-lettered */
    int poison_result;  /* poison inputs with a result */
    int bad_reason;     /* dead letters whose reason or error is not spec's */
    int no_outcome;     /* inputs with neither a result nor a dead letter */
    long stray_dead;    /* dead letters of no input of ours */
    long dead_read;     /* dead letters read (all on the topic: dead_letters) */
    long completed;     /* ledger rows of the trigger 'completed' */
    long dead_status;   /* ledger rows of the trigger 'dead' */
} fx_check_t;

typedef struct fx_check_spec {
    const char *pfx;
    int n;
    const char *in_topic;
    const char *out_topic;
    const char *dlq_topic;
    const char *trigger;
    const char *group; /* the dispatchers' consumer group */
    int timeout_ms;    /* for every input to have a result, and lag to drain */
    int settle_ms;     /* further reading for late copies */
} fx_check_spec_t;

/* More of a run, for fx_check_run_mixed (all zero: a Kafka run of good
 * inputs only, as fx_check_run reads). */
typedef struct fx_check_more {
    int js;                      /* the topics are JetStream subjects */
    const char *stream;          /* js: the input's stream, */
    const char *durable;         /* and the trigger's durable consumer */
    const unsigned char *poison; /* per input: 1 when it must be dead-lettered */
    const char *reason;          /* the poison's dead-letter reason (a prefix), or NULL */
    const char *error;           /* a part of its dead-letter error, or NULL */
} fx_check_more_t;

/* Publishes inputs [from, to) of pfx to topic (keys "k<i % 97>"), data
 * {"fail":"<mode>","n":<i>}. 0 or -1. */
int fx_check_publish(fx_producer_t *p, const char *topic, const char *pfx, const char *mode,
                     int from, int to);

/* Reads the outcome of spec's run into res. 0, or -1 when something could
 * not be read at all (a broker or database error: see stderr). */
int fx_check_run(const fx_t *fx, const fx_check_spec_t *spec, fx_check_t *res);
/* fx_check_run for a run on either broker, with poison inputs. */
int fx_check_run_mixed(const fx_t *fx, const fx_check_spec_t *spec, const fx_check_more_t *more,
                       fx_check_t *res);

/* A failure test's group setup: a stack with kafka_nodes Kafka nodes and
 * the topics, then `weft migrate --dir tests/migrations/<migrations>`.
 * 0 or -1 (with the reason on stderr). */
int fx_check_setup(fx_t *fx, const char *topics, int kafka_nodes, const char *migrations);

/* Skips the running cmocka test unless the stack runs Apache Kafka: the
 * mock cannot restart or lose a node. */
void fx_check_need_apache(const fx_t *fx);

/* fx_check_publish with mode, then waits until the broker has every event
 * (cmocka assertions). */
void fx_check_publish_all(fx_producer_t *p, const char *topic, const char *pfx, const char *mode,
                          int from, int to);

/* A cmocka teardown for each failure test: a test that failed half-way
 * leaves its dispatchers in the group, where they would keep the next
 * test's partitions; they are killed. */
int fx_check_teardown(void **state);

/* cmocka assertions of the whole contract for a run of n good inputs:
 * each has exactly one distinct result id and its own body, nothing
 * stray, nothing dead-lettered, every ledger row completed within
 * max_attempts, lag zero. */
void fx_check_assert(const fx_check_t *res, int n, long max_attempts);

/* cmocka assertions of the whole contract for a run whose poison inputs
 * (more->poison) must each end as exactly one dead letter and whose good
 * inputs must each end as exactly one distinct result: one terminal
 * outcome per input, nothing good dead-lettered, the reason as more says,
 * attempts within max_attempts, lag zero. */
void fx_check_assert_mixed(const fx_check_t *res, long max_attempts);

/* No offset or ack passed unfinished work: with no dispatcher running,
 * reads how far the source is marked done (Kafka: the group's commit on
 * the input's single partition; JetStream: the consumer's ack floor, the
 * input stream holding only spec's inputs, in order) and returns how many
 * inputs below it have no terminal outcome on the broker (0 is right), or
 * -1 when something could not be read. *frontier gets the mark. */
long fx_check_frontier(const fx_t *fx, const fx_check_spec_t *spec, const fx_check_more_t *more,
                       long *frontier);

/* Prints res on stderr under a title. */
void fx_check_print(const char *title, const fx_check_t *res);

/* The group's committed offsets behind the input's high watermarks, summed
 * over the topic's partitions (a partition with no commit counts from its
 * low watermark). -1 on error. */
long fx_group_lag(const fx_t *fx, const char *group, const char *topic);

/* The broker id leading partition of topic, or -1. */
int fx_partition_leader(const fx_t *fx, const char *topic, int partition);

#endif
