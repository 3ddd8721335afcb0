/*
 * replay_jetstream.c - `weft replay` on JetStream: the range (stream
 * sequences, kept as partition 0, or the first message at or after a
 * time) and the read loop over an ordered consumer.
 *
 * Runs in the CLI process, on its one thread, with its own connection
 * (nats.c's reader): the triggers' durable consumers are never touched.
 *
 * Invariants: the range's end is the stream's last sequence when the
 * replay starts (its own copies come after it); each copy waits for its
 * PubAck, so a saved position never passes an unacknowledged copy.
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "eventkey.h"
#include "nats.h"
#include "cli_kafka.h"
#include "json.h"
#include "kafka.h"
#include "ledger.h"
#include "log.h"
#include "replay.h"

#define JS_QUIET_MS 3000

/* JetStream: one ordered consumer over the stream from the next sequence
 * to the end fixed when the replay started (its own copies come after the
 * end, so they are never read again). Each copy waits for its PubAck, so
 * a saved position never passes an unacknowledged copy. */
int weft_replay_read_js(rp_t *r)
{
    char err[512];
    rp_part_t *p = &r->parts[0];
    if (p->next >= p->end)
        p->done = 1;
    if (p->done)
        return weft_replay_checkpoint(r);
    weft_nats_reader_t *rd = weft_nats_reader_new(r->nc, r->stream, r->topic, (uint64_t)p->next, 0,
                                                  NULL, err, sizeof(err));
    if (!rd) {
        fprintf(stderr, "weft replay: %s\n", err);
        return -1;
    }
    weft_cli_progress_t prog;
    weft_cli_progress_start(&prog, weft_replay_range_total(r), "events");
    int64_t last_msg = weft_cli_now_ms();
    rp_pace_t pc = {.t0 = last_msg, .last_cp = last_msg};
    int rc = 0;
    while (!p->done && !weft_replay_stop_requested) {
        weft_bmsg_t km;
        uint64_t left = 0;
        int got = weft_nats_reader_next(rd, 200, &km, &left, err, sizeof(err));
        int64_t now = weft_cli_now_ms();
        if (got < 0) {
            fprintf(stderr, "weft replay: %s\n", err);
            rc = -1;
            break;
        }
        if (got == 1) {
            last_msg = now;
            if (km.offset >= p->end || (r->to_time_ms > 0 && km.timestamp_ms > r->to_time_ms)) {
                p->next = p->end;
                p->done = 1;
                break;
            }
            if (weft_replay_event(r, &km) != 0) {
                rc = -1;
                break;
            }
            p->next = km.offset + 1;
            if (left == 0 || p->next >= p->end) {
                p->next = p->end;
                p->done = 1;
            }
            weft_replay_pace_event(r, &pc, now);
        } else if (now - last_msg > JS_QUIET_MS) {
            /* The ordered consumer pushes everything it has at once: a
             * quiet connection means the rest of the range holds no
             * message of this subject (others' messages, deleted ones). */
            if (!weft_nats_connected(r->nc)) {
                fprintf(stderr, "weft replay: the connection to NATS is lost; stopping\n");
                rc = -1;
                break;
            }
            p->next = p->end;
            p->done = 1;
        }
        if (weft_replay_pace_checkpoint(r, &pc, now) != 0) {
            rc = -1;
            break;
        }
        weft_cli_progress_update(&prog, weft_replay_progress_done(r));
    }
    weft_nats_reader_destroy(rd);
    rc = weft_replay_loop_end(r, &prog, rc);
    if (rc == 0 && weft_replay_stop_requested && !p->done)
        return 1;
    return rc;
}

/* ---- the range --------------------------------------------------------------------- */

static int parse_seq(const char *s, const char *flag, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || v == 0 || *s == '-') {
        fprintf(stderr, "weft replay: %s \"%s\": expected a stream sequence (1 or more)\n", flag,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

/* JetStream: one range of stream sequences (kept as partition 0), from
 * --from-seq or the first message at or after --from-time (or the
 * stream's start) to --to-seq or the stream's last message now. */
int weft_replay_range_js(rp_t *r, const rp_args_t *a)
{
    char err[512];
    int64_t now = weft_cli_now_ms(), from_ms = 0, to_ms = 0;
    uint64_t from = 1, to = 0, last = 0;
    if ((a->from_seq && parse_seq(a->from_seq, "--from-seq", &from) != 0) ||
        (a->to_seq && parse_seq(a->to_seq, "--to-seq", &to) != 0))
        return 2;
    if ((a->from_time && weft_cli_parse_time(a->from_time, now, &from_ms, err, sizeof(err))) ||
        (a->to_time && weft_cli_parse_time(a->to_time, now, &to_ms, err, sizeof(err)))) {
        fprintf(stderr, "weft replay: %s\n", err);
        return 2;
    }
    if (weft_nats_stream_last_seq(r->nc, r->stream, &last, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft replay: %s\n", err);
        return 1;
    }
    if (a->from_time &&
        weft_nats_stream_seq_for_time(r->nc, r->stream, from_ms, &from, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft replay: %s\n", err);
        return 1;
    }
    r->to_time_ms = a->to_time ? to_ms : 0;
    r->parts = calloc(1, sizeof(*r->parts));
    if (!r->parts) {
        fprintf(stderr, "weft replay: out of memory\n");
        return 1;
    }
    uint64_t end = last + 1;
    if (a->to_seq && to + 1 < end)
        end = to + 1;
    r->parts[0].partition = 0;
    r->parts[0].start = (int64_t)from;
    r->parts[0].end = (int64_t)(end > from ? end : from);
    r->parts[0].next = r->parts[0].start;
    r->n_parts = 1;
    return 0;
}
