/*
 * fixture.h - integration test fixtures: a private stack (PostgreSQL,
 * nats-server, Apache Kafka or, with WEFT_KAFKA=mock, the mock cluster) per
 * test program, started by ops/stack in a temporary state directory and
 * stopped at teardown; the weft binary run as a real child process; Kafka
 * produce/consume/administration helpers.
 */
#ifndef WEFT_FIXTURE_H
#define WEFT_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct fx {
    char state_dir[256];
    char bin_dir[512];
    char src_dir[512];
    char pg[512];
    char brokers[256];
    char nats[256];
    char kafka_kind[16]; /* "apache" or "mock" (WEFT_KAFKA) */
    int kafka_nodes;
} fx_t;

/* Starts a stack with the given topics ("name:parts name:parts"), created
 * with replication factor min(nodes, 3). Apache Kafka unless WEFT_KAFKA=mock;
 * auto-creation of topics is off, so a test creates every topic it uses.
 * Returns 0 or -1 (with a message on stderr). */
int fx_up(fx_t *fx, const char *topics);
/* fx_up with a Kafka cluster of kafka_nodes nodes (3: RF 3, min ISR 2). */
int fx_up_cluster(fx_t *fx, const char *topics, int kafka_nodes);
/* fx_up, then `weft migrate`. Returns 0 or -1 (with its output on stderr). */
int fx_up_migrated(fx_t *fx, const char *topics);
void fx_down(fx_t *fx);

/* Runs `weft ARGS...` to completion; returns its exit code, output (stdout
 * and stderr) in out if given. */
int fx_weft(const fx_t *fx, char *out, size_t outlen, const char *const *args);

/* Starts `weft run` in the background with extra WEFT_SET settings; its
 * log goes to STATE/<logname>. Returns the pid. */
pid_t fx_run_start(const fx_t *fx, const char *logname, const char *set);
/* SIGTERM, waits up to timeout_ms; returns the exit code, or -1 (killed). */
int fx_run_stop(pid_t pid, int timeout_ms);
void fx_run_kill9(pid_t pid);

/* Executes SQL, returns the first column of the first row as a newly
 * allocated string ("" when no rows), or NULL on error. */
char *fx_sql(const fx_t *fx, const char *sql);
long fx_sql_long(const fx_t *fx, const char *sql);

/* Produces a binary-mode CloudEvent (or a plain message when id is NULL)
 * and waits for delivery. extra_hdrs: "name=value" pairs, NULL-terminated. */
typedef struct fx_producer fx_producer_t;
fx_producer_t *fx_producer_new(const fx_t *fx);
int fx_produce(fx_producer_t *p, const char *topic, const char *key, const char *id,
               const char *type, const char *data, const char *const *extra_hdrs);
/* Produces a message with one header given as raw bytes (may hold NUL, CR,
 * LF) besides the binary-mode CloudEvent headers of id (NULL: none). */
int fx_produce_raw_header(fx_producer_t *p, const char *topic, const char *id, const char *hname,
                          const void *hvalue, size_t hlen, const char *data);
int fx_producer_flush(fx_producer_t *p);
void fx_producer_destroy(fx_producer_t *p);

/* A consumed message with its CloudEvents headers of interest. */
typedef struct fx_msg {
    char *ce_id;
    char *input_id;
    char *headers; /* "name=value\n..." of all headers */
    char *value;
    size_t value_len;
} fx_msg_t;

typedef struct fx_consumer fx_consumer_t;
/* Reads topic from the beginning (all partitions). */
fx_consumer_t *fx_consumer_new(const fx_t *fx, const char *topic);
/* Appends messages to *msgs until pred(msgs, n, ctx) is true or timeout.
 * Returns the number of messages collected so far. */
typedef int (*fx_pred_fn)(const fx_msg_t *msgs, size_t n, void *ctx);
size_t fx_consume_until(fx_consumer_t *c, fx_msg_t **msgs, size_t *n, size_t *cap, fx_pred_fn pred,
                        void *ctx, int timeout_ms);
void fx_consumer_destroy(fx_consumer_t *c);
void fx_msgs_free(fx_msg_t *msgs, size_t n);
/* Value of header name in m->headers (static buffer), or NULL. */
const char *fx_header(const fx_msg_t *m, const char *name);

uint64_t fx_now_ms(void);

/* Waits up to timeout_ms for a line of STATE/<logname> matching the grep
 * pattern (basic regular expression). 1 found, 0 not. */
int fx_log_wait(const fx_t *fx, const char *logname, const char *pattern, int timeout_ms);

/* Results of the inputs "<pfx>-N", N < count, each expected to hold
 * {"name":"USER N","n":N}: per input its result id, counting distinct
 * inputs, inputs with two different result ids (conflicts), wrong content
 * and (check_msg_id, JetStream) a Nats-Msg-Id that is not the result id.
 * fx_seen_pred is an fx_pred_fn: true once every input has a result. */
typedef struct fx_seen {
    const char *pfx;
    int count;
    char **result_id; /* by N */
    int distinct;
    int conflicts;
    int bad_content;
    int bad_msg_id;
    int check_msg_id;
    size_t scanned;
} fx_seen_t;
void fx_seen_init(fx_seen_t *s, const char *pfx, int count, int check_msg_id);
void fx_seen_free(fx_seen_t *s);
int fx_seen_pred(const fx_msg_t *msgs, size_t n, void *ctx);

/* ---- NATS and JetStream (nats-server -js of the stack) ------------------ */

/* Creates (or keeps) a file-store stream capturing the space-separated
 * subjects. Returns 0 or -1. */
int fx_js_stream(const fx_t *fx, const char *stream, const char *subjects);

typedef struct fx_nats fx_nats_t;
fx_nats_t *fx_nats_new(const fx_t *fx);
void fx_nats_destroy(fx_nats_t *n);
/* Publishes a binary-mode CloudEvent with ce- headers (a plain message
 * when id is NULL); extra_hdrs are "name=value" pairs sent as they are.
 * js: publish to JetStream and wait for the PubAck (no Nats-Msg-Id, so a
 * second copy is stored); else core NATS. Returns 0 or -1. */
int fx_nats_publish(fx_nats_t *n, int js, const char *subject, const char *id, const char *type,
                    const char *data, const char *const *extra_hdrs);
/* Publishes a structured-mode CloudEvent (application/cloudevents+json). */
int fx_nats_publish_structured(fx_nats_t *n, int js, const char *subject, const char *json);

/* Collects messages of a subject: from the start of its JetStream stream
 * (js) or, core NATS, from now on. fx_msg_t as for Kafka: ce_id and
 * input_id are the percent-decoded ce-id / ce-weftinputid; headers hold the
 * wire values. */
typedef struct fx_nsub fx_nsub_t;
fx_nsub_t *fx_nsub_new(const fx_t *fx, const char *subject, int js);
size_t fx_nsub_until(fx_nsub_t *c, fx_msg_t **msgs, size_t *n, size_t *cap, fx_pred_fn pred,
                     void *ctx, int timeout_ms);
void fx_nsub_destroy(fx_nsub_t *c);

/* A durable consumer's state: -1 on error. */
typedef struct fx_js_cstate {
    long ack_pending; /* delivered, not acknowledged */
    long pending;     /* not delivered yet */
    long redelivered; /* messages delivered more than once */
} fx_js_cstate_t;
int fx_js_consumer_state(const fx_t *fx, const char *stream, const char *durable,
                         fx_js_cstate_t *st);

/* Stops / starts the stack's nats-server (same port, same store). */
int fx_nats_down(const fx_t *fx);
int fx_nats_up(const fx_t *fx);
/* Stops PostgreSQL / starts it again on its port with its data. */
int fx_pg_down(const fx_t *fx);
int fx_pg_up(const fx_t *fx);
/* Replaces the Kafka cluster with a new, empty one holding `topics` (as
 * for fx_up); fx->brokers is updated (the mock's address changes). 0 or -1. */
int fx_kafka_fresh(fx_t *fx, const char *topics);

/* Apache Kafka only. Creates topics ("name:parts ...", replication factor
 * min(nodes, 3); existing ones are kept) and waits until every partition
 * has a leader. 0 or -1. */
int fx_kafka_create_topics(const fx_t *fx, const char *topics);
/* Node N (1..kafka_nodes): stop (SIGTERM, controlled shutdown), kill
 * (SIGKILL) or start again on its ports and data (returns once it answers
 * metadata requests). 0 or -1. */
int fx_kafka_node_stop(const fx_t *fx, int node);
int fx_kafka_node_kill(const fx_t *fx, int node);
int fx_kafka_node_start(const fx_t *fx, int node);

/* A consumer group's committed offsets on a topic and the topic's
 * watermarks, per partition; lag sums high - committed (high - low where
 * the group has committed nothing). 0 or -1. */
#define FX_MAX_PARTITIONS 64
typedef struct fx_kafka_offsets {
    int partitions;
    int64_t committed[FX_MAX_PARTITIONS]; /* -1: nothing committed */
    int64_t low[FX_MAX_PARTITIONS];
    int64_t high[FX_MAX_PARTITIONS];
    int64_t lag;
} fx_kafka_offsets_t;
int fx_kafka_group_offsets(const fx_t *fx, const char *group, const char *topic,
                           fx_kafka_offsets_t *out);

#endif
