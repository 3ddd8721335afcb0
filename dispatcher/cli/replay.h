/*
 * replay.h - what the pieces of `weft replay` share (internal to the CLI;
 * the command's entry points are in cli.h).
 *
 * cli_replay.c is the command (arguments, the replay's row, the summary),
 * replay_event.c the work on one event of the range (which triggers take
 * it, its copy, the saved position), replay_kafka.c and replay_jetstream.c
 * the range and the read loop for each broker. All of it runs in the CLI
 * process, on its one thread.
 */
#ifndef WEFT_REPLAY_H
#define WEFT_REPLAY_H

#include <signal.h>
#include <stdint.h>

#include "cli.h"
#include "cli_kafka.h"
#include "kafka.h"
#include "nats.h"

/* Set by SIGINT/SIGTERM (cli_replay.c): the read loops stop after saving
 * the position. */
extern volatile sig_atomic_t weft_replay_stop_requested;

typedef struct rp_part {
    int32_t partition;
    int64_t start, end, next;
    int done;
} rp_part_t;

typedef struct rp_counts {
    long long read, published, reemit, run, dead, dropped, skipped;
    /* matched events older than the ledger's retention (not saved) */
    long long older;
} rp_counts_t;

/* A matched (trigger, generation, key) waiting to be classified. */
typedef struct rp_pending {
    const char *trigger;
    int generation;
    char *key;
} rp_pending_t;

typedef struct rp {
    weft_config_t *cfg;
    weft_pg_conn_t *pg;
    weft_catalog_t *cat;
    const weft_trigger_t *only;
    char topic[256];
    int reexecute, dry_run, json;
    int generation;
    long long id;
    double rate;
    rp_part_t *parts;
    size_t n_parts;
    rp_counts_t c;
    rp_pending_t *pend;
    size_t n_pend, cap_pend;
    weft_clik_t *ck;
    weft_kafka_t *prod;
    /* JetStream: the stream holding topic, and the connection */
    weft_broker_t broker;
    char stream[256];
    weft_nats_t *nc;
    int64_t to_time_ms; /* JetStream --to-time: stop after it (0: none) */
    /* Events with a broker timestamp before this may have lost their
     * ledger rows to retention (0: retention.ledger is off, or
     * --reexecute, which runs everything anyway). */
    int64_t retention_cutoff_ms;
    long delivered, failed, produced_batch;
    char last_err[256];
    char idbuf[24], genbuf[16];
} rp_t;

/* The read loops' bookkeeping: --rate pacing and checkpoints every
 * CHECKPOINT_EVENTS events or CHECKPOINT_MS. */
typedef struct rp_pace {
    int64_t t0, last_cp;
    long long sent, since_cp;
} rp_pace_t;

/* cli_replay.c: the arguments of the command. */

typedef struct rp_args {
    const char *trigger, *topic, *from_off, *to_off, *from_time, *to_time, *from_seq, *to_seq;
    int reexecute, yes, dry_run, json, list;
    const char *resume;
    double rate;
} rp_args_t;

/* replay_event.c */
int weft_replay_event(rp_t *r, weft_kmsg_t *km);
int weft_replay_checkpoint(rp_t *r);
rp_part_t *weft_replay_part_of(rp_t *r, int32_t partition);
int64_t weft_replay_progress_done(const rp_t *r);
int64_t weft_replay_range_total(const rp_t *r);
void weft_replay_pace_event(const rp_t *r, rp_pace_t *pc, int64_t now);
int weft_replay_pace_checkpoint(rp_t *r, rp_pace_t *pc, int64_t now);
int weft_replay_loop_end(rp_t *r, weft_cli_progress_t *prog, int rc);

/* replay_kafka.c and replay_jetstream.c: the range (fills r->parts; 0, 1
 * runtime or 2 usage) and the read loop. */
int weft_replay_range_kafka(rp_t *r, const rp_args_t *a);
int weft_replay_range_js(rp_t *r, const rp_args_t *a);
/* Returns 0 (range done), 1 (stopped by a signal) or -1 (error). */
int weft_replay_read_kafka(rp_t *r);
int weft_replay_read_js(rp_t *r);

#endif
