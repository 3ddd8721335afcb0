/*
 * replay_kafka.c - `weft replay` on Kafka: the range (partitions, offsets,
 * offsets looked up by time) and the read loop.
 *
 * Runs in the CLI process, on its one thread. The range is read with this
 * process's own consumer (assign() through cli_kafka.c): the dispatcher's
 * consumer group is never joined and its committed offsets never move.
 *
 * Invariants: the end of each partition's range is fixed before the first
 * event is read (the copies land after it); a partition is done when its
 * next offset reaches that end or the broker reports the partition's end
 * past it.
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

#define KAFKA_TIMEOUT_MS 10000
#define STALL_MS 30000

int weft_replay_read_kafka(rp_t *r)
{
    char err[512];
    int32_t *ids = malloc((r->n_parts ? r->n_parts : 1) * sizeof(int32_t));
    int64_t *offs = malloc((r->n_parts ? r->n_parts : 1) * sizeof(int64_t));
    size_t na = 0;
    for (size_t i = 0; ids && offs && i < r->n_parts; i++) {
        if (r->parts[i].next >= r->parts[i].end) {
            r->parts[i].done = 1;
            continue;
        }
        ids[na] = r->parts[i].partition;
        offs[na++] = r->parts[i].next;
    }
    if (!ids || !offs) {
        free(ids);
        free(offs);
        fprintf(stderr, "weft replay: out of memory\n");
        return -1;
    }
    int rc = weft_clik_assign(r->ck, r->topic, ids, offs, na, err, sizeof(err));
    free(ids);
    free(offs);
    if (rc != 0) {
        fprintf(stderr, "weft replay: %s\n", err);
        return -1;
    }
    weft_cli_progress_t prog;
    weft_cli_progress_start(&prog, weft_replay_range_total(r), "events");
    int64_t last_msg = weft_cli_now_ms();
    rp_pace_t pc = {.t0 = last_msg, .last_cp = last_msg};
    rc = 0;
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < r->n_parts; i++)
            left += !r->parts[i].done;
        if (left == 0 || weft_replay_stop_requested)
            break;
        weft_kmsg_t km;
        int32_t eofp;
        int64_t eofo;
        weft_clik_ev_t ev = weft_clik_poll(r->ck, 100, &km, &eofp, &eofo, err, sizeof(err));
        int64_t now = weft_cli_now_ms();
        if (ev == WEFT_CLIK_MSG) {
            last_msg = now;
            rp_part_t *p = weft_replay_part_of(r, km.partition);
            if (p && !p->done && km.offset >= p->next && km.offset < p->end) {
                if (weft_replay_event(r, &km) != 0) {
                    weft_kafka_msg_free(&km);
                    rc = -1;
                    break;
                }
                p->next = km.offset + 1;
                weft_replay_pace_event(r, &pc, now);
            }
            if (p && (km.offset + 1 >= p->end)) {
                p->next = p->end;
                p->done = 1;
            }
            weft_kafka_msg_free(&km);
        } else if (ev == WEFT_CLIK_EOF) {
            last_msg = now;
            rp_part_t *p = weft_replay_part_of(r, eofp);
            /* The end of the partition: what is left of the range (offsets
             * of transaction markers, compacted keys) holds no event. */
            if (p && eofo >= p->end) {
                p->next = p->end;
                p->done = 1;
            }
        } else if (ev == WEFT_CLIK_ERROR) {
            weft_debug("replay consumer: %s", err);
        }
        if (now - last_msg > STALL_MS) {
            fprintf(stderr, "weft replay: no event from the broker for %d s (%s); stopping\n",
                    STALL_MS / 1000, ev == WEFT_CLIK_ERROR ? err : "is it reachable?");
            rc = -1;
            break;
        }
        if (weft_replay_pace_checkpoint(r, &pc, now) != 0) {
            rc = -1;
            break;
        }
        if (r->prod)
            weft_kafka_serve(r->prod);
        weft_cli_progress_update(&prog, weft_replay_progress_done(r));
    }
    rc = weft_replay_loop_end(r, &prog, rc);
    if (rc == 0 && weft_replay_stop_requested) {
        for (size_t i = 0; i < r->n_parts; i++)
            if (!r->parts[i].done)
                return 1;
    }
    return rc;
}

/* ---- the range --------------------------------------------------------------------- */

/* The timestamp of the last event of a partition (to tell "no event at or
 * after T" from a broker that cannot look offsets up by time). */
static int last_timestamp(rp_t *r, int32_t partition, int64_t high, int64_t *ts)
{
    char err[512];
    int64_t off = high - 1;
    if (weft_clik_assign(r->ck, r->topic, &partition, &off, 1, err, sizeof(err)) != 0)
        return -1;
    int64_t deadline = weft_cli_now_ms() + KAFKA_TIMEOUT_MS;
    int rc = -1;
    while (rc != 0 && weft_cli_now_ms() < deadline) {
        weft_kmsg_t km;
        int32_t ep;
        int64_t eo;
        weft_clik_ev_t ev = weft_clik_poll(r->ck, 100, &km, &ep, &eo, err, sizeof(err));
        if (ev == WEFT_CLIK_MSG) {
            if (km.partition == partition) {
                *ts = km.timestamp_ms;
                rc = 0;
            }
            weft_kafka_msg_free(&km);
        } else if (ev == WEFT_CLIK_EOF && ep == partition) {
            break; /* the last offset holds no event (a transaction marker) */
        }
    }
    weft_clik_assign(r->ck, r->topic, NULL, NULL, 0, err, sizeof(err));
    return rc;
}

/* Offsets of the first events at or after ms (the end where none). */
static int offsets_for_time(rp_t *r, const int32_t *ids, const int64_t *low, const int64_t *high,
                            size_t n, int64_t ms, int64_t *out)
{
    char err[512];
    for (size_t i = 0; i < n; i++)
        out[i] = ms;
    int rc = weft_clik_offsets_for_times(r->ck, r->topic, ids, n, out, KAFKA_TIMEOUT_MS, err,
                                         sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "weft replay: %s\n", err);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i] >= 0)
            continue;
        int64_t ts;
        /* "None" from a partition whose last event is at or after ms is a
         * broker that does not really look offsets up by time. */
        if (high[i] > low[i] && last_timestamp(r, ids[i], high[i], &ts) == 0 && ts >= ms) {
            fprintf(stderr,
                    "weft replay: the broker does not support looking up offsets by time "
                    "(partition %d answered \"no event\", but its last event is newer); use "
                    "--from-offset/--to-offset\n",
                    (int)ids[i]);
            return -1;
        }
        out[i] = high[i];
    }
    return 0;
}

/* Fills r->parts from the arguments. Returns 0, 1 (runtime) or 2 (usage). */
int weft_replay_range_kafka(rp_t *r, const rp_args_t *a)
{
    char err[512];
    weft_cli_offsets_t from = {0}, to = {0};
    int64_t from_ms = 0, to_ms = 0, now = weft_cli_now_ms();
    if ((a->from_off && weft_cli_parse_offsets(a->from_off, &from, err, sizeof(err)) != 0) ||
        (a->to_off && weft_cli_parse_offsets(a->to_off, &to, err, sizeof(err)) != 0) ||
        (a->from_time && weft_cli_parse_time(a->from_time, now, &from_ms, err, sizeof(err))) ||
        (a->to_time && weft_cli_parse_time(a->to_time, now, &to_ms, err, sizeof(err)))) {
        fprintf(stderr, "weft replay: %s\n", err);
        weft_cli_offsets_free(&from);
        weft_cli_offsets_free(&to);
        return 2;
    }
    int rc = 0;
    int32_t *all = NULL, *ids = NULL;
    int64_t *low = NULL, *high = NULL, *tmp = NULL;
    size_t n_all = 0, n = 0;
    int prc =
        weft_clik_partitions(r->ck, r->topic, KAFKA_TIMEOUT_MS, &all, &n_all, err, sizeof(err));
    if (prc != 0) {
        fprintf(stderr, "weft replay: %s\n", err);
        rc = 1;
        goto out;
    }
    int only_named = !from.has_all && !to.has_all && (from.n || to.n);
    weft_cli_offsets_t *specs[2] = {&from, &to};
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; i < specs[s]->n; i++) {
            int found = 0;
            for (size_t k = 0; k < n_all; k++)
                found |= all[k] == specs[s]->v[i].partition;
            if (!found) {
                fprintf(stderr, "weft replay: topic %s has no partition %d (it has %zu)\n",
                        r->topic, (int)specs[s]->v[i].partition, n_all);
                rc = 2;
                goto out;
            }
        }
    }
    ids = calloc(n_all, sizeof(*ids));
    low = calloc(n_all, sizeof(*low));
    high = calloc(n_all, sizeof(*high));
    tmp = calloc(n_all, sizeof(*tmp));
    r->parts = calloc(n_all, sizeof(*r->parts));
    if (!ids || !low || !high || !tmp || !r->parts) {
        fprintf(stderr, "weft replay: out of memory\n");
        rc = 1;
        goto out;
    }
    for (size_t k = 0; k < n_all; k++) {
        if (only_named && !weft_cli_offsets_names(&from, all[k]) &&
            !weft_cli_offsets_names(&to, all[k]))
            continue;
        ids[n] = all[k];
        if (weft_clik_watermarks(r->ck, r->topic, all[k], KAFKA_TIMEOUT_MS, &low[n], &high[n], err,
                                 sizeof(err)) != 0) {
            fprintf(stderr, "weft replay: %s\n", err);
            rc = 1;
            goto out;
        }
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        rp_part_t *p = &r->parts[i];
        p->partition = ids[i];
        p->start = low[i];
        p->end = high[i];
        if (a->from_off) {
            int64_t s = weft_cli_offsets_get(&from, ids[i], low[i]);
            p->start = s < low[i] ? low[i] : s > high[i] ? high[i] : s;
        }
        if (a->to_off) {
            int64_t e = weft_cli_offsets_get(&to, ids[i], high[i] - 1);
            e = e >= INT64_MAX - 1 ? high[i] : e + 1;
            p->end = e > high[i] ? high[i] : e;
        }
    }
    if (a->from_time) {
        if (offsets_for_time(r, ids, low, high, n, from_ms, tmp) != 0) {
            rc = 1;
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            r->parts[i].start = tmp[i];
    }
    if (a->to_time) {
        if (offsets_for_time(r, ids, low, high, n, to_ms + 1, tmp) != 0) {
            rc = 1;
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            r->parts[i].end = tmp[i];
    }
    for (size_t i = 0; i < n; i++) {
        if (r->parts[i].end < r->parts[i].start)
            r->parts[i].end = r->parts[i].start;
        r->parts[i].next = r->parts[i].start;
    }
    r->n_parts = n;
out:
    free(all);
    free(ids);
    free(low);
    free(high);
    free(tmp);
    weft_cli_offsets_free(&from);
    weft_cli_offsets_free(&to);
    return rc;
}
