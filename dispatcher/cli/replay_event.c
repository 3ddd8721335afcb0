/*
 * replay_event.c - `weft replay`, one event of the range: which triggers
 * take it and what the dispatcher will do with it (the ledger, one round
 * trip per checkpoint), its copy on the source topic, and the position
 * saved in PostgreSQL. Shared by the Kafka and JetStream read loops.
 *
 * Runs in the CLI process (cli_replay.c's command), on its one thread.
 *
 * Invariants: the copy carries the key the dispatcher derived for the
 * original (the same decoding, coordinates and weft_event_key()); a saved
 * position never passes a copy the broker has not acknowledged (a
 * checkpoint flushes and checks every delivery first).
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
#include "encode.h"
#include "eventkey.h"
#include "nats.h"
#include "cli_kafka.h"
#include "json.h"
#include "kafka.h"
#include "ledger.h"
#include "log.h"
#include "replay.h"
#include "replays.h"
#include "wire.h"

#define ACK_TIMEOUT_MS 30000
#define CHECKPOINT_EVENTS 500
#define CHECKPOINT_MS 1000

/* ---- classification ---------------------------------------------------------- */

static const char *env_attr(void *ev, const char *name)
{
    return weft_envelope_attr(ev, name);
}

static int pend_add(rp_t *r, const char *trigger, int generation, const char *key)
{
    if (r->n_pend == r->cap_pend) {
        size_t ncap = r->cap_pend ? r->cap_pend * 2 : 256;
        rp_pending_t *nv = realloc(r->pend, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        r->pend = nv;
        r->cap_pend = ncap;
    }
    char *k = strdup(key);
    if (!k)
        return -1;
    r->pend[r->n_pend++] = (rp_pending_t){trigger, generation, k};
    return 0;
}

/* Looks the pending keys up in the ledger (one round trip) and counts
 * what the dispatcher will do with each. */
static int classify_pending(rp_t *r)
{
    if (r->n_pend == 0)
        return 0;
    int rc = 0;
    if (r->reexecute) {
        r->c.run += (long long)r->n_pend;
        goto out;
    }
    const char **trigs = calloc(r->n_pend, sizeof(*trigs));
    const char **keys = calloc(r->n_pend, sizeof(*keys));
    int *gens = calloc(r->n_pend, sizeof(*gens));
    char err[1024] = "out of memory\n";
    for (size_t i = 0; trigs && keys && gens && i < r->n_pend; i++) {
        trigs[i] = r->pend[i].trigger;
        gens[i] = r->pend[i].generation;
        keys[i] = r->pend[i].key;
    }
    if (!trigs || !keys || !gens ||
        weft_replay_ledger_classify(r->pg, trigs, gens, keys, r->n_pend, &r->c.reemit, &r->c.dead,
                                    &r->c.dropped, &r->c.run, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft replay: reading the ledger: %s", err);
        rc = -1;
    }
    free(trigs);
    free(keys);
    free(gens);
out:
    for (size_t i = 0; i < r->n_pend; i++)
        free(r->pend[i].key);
    r->n_pend = 0;
    return rc;
}

static int is_weft_header(const char *name)
{
    static const char *const own[] = {WEFT_HDR_KEY,        WEFT_HDR_REPLAY_TRIGGER,
                                      WEFT_HDR_REPLAY_ID,  WEFT_HDR_REDRIVE_TRIGGER,
                                      WEFT_HDR_REDRIVE_ID, WEFT_HDR_GENERATION};
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (strcmp(name, own[i]) == 0)
            return 1;
    return 0;
}

/* One event of the range: which triggers take it, and (unless a dry run)
 * its copy. Returns 0, or -1 when it cannot be queued. */
int weft_replay_event(rp_t *r, weft_kmsg_t *km)
{
    r->c.read++;
    char plain_id[600], plain_src[300], err[512];
    int js = r->broker == WEFT_BROKER_JETSTREAM;
    /* The same coordinates, decoding and key as the dispatcher's. */
    weft_plain_coords(km, NULL, plain_id, sizeof(plain_id), plain_src, sizeof(plain_src));
    weft_envelope_t env;
    weft_env_status_t es = weft_envelope_decode_binding(
        &env, js ? WEFT_BINDING_NATS : WEFT_BINDING_KAFKA, km->hdrs, km->n_hdrs, km->value,
        km->value_len, plain_id, plain_src, err, sizeof(err));
    int ce = es == WEFT_ENV_OK && env.mode != WEFT_ENV_PLAIN;
    char *key =
        weft_event_key(km, ce ? env.ce->source : NULL, ce ? env.ce->id : NULL, plain_src, plain_id);
    if (!key) {
        weft_envelope_free(&env);
        fprintf(stderr, "weft replay: out of memory\n");
        return -1;
    }
    /* The original's own restriction and generation (a copy made by an
     * earlier replay or re-drive), as the dispatcher honours them. */
    char orig_only[256] = "";
    int orig_gen = 0;
    for (size_t i = 0; i < km->n_hdrs; i++) {
        const weft_header_t *h = &km->hdrs[i];
        if ((strcmp(h->name, WEFT_HDR_REDRIVE_TRIGGER) == 0 ||
             strcmp(h->name, WEFT_HDR_REPLAY_TRIGGER) == 0) &&
            h->value && h->len < sizeof(orig_only)) {
            memcpy(orig_only, h->value, h->len);
            orig_only[h->len] = '\0';
        } else if (strcmp(h->name, WEFT_HDR_GENERATION) == 0) {
            orig_gen = weft_event_generation(h->value, h->len);
        }
    }
    int gen = r->reexecute ? r->generation : orig_gen;
    const weft_trigger_t *cands[256];
    size_t nc = 0;
    if (r->only)
        cands[nc++] = r->only;
    else
        nc = weft_catalog_on_topic(r->cat, r->broker, km->topic, cands, 256);
    int matched = 0, rc = 0;
    for (size_t i = 0; i < nc; i++) {
        const weft_trigger_t *t = cands[i];
        if (orig_only[0] && strcmp(orig_only, t->name) != 0)
            continue;
        /* Undecodable input goes to every trigger of the topic (each
         * dead-letters it), as in the dispatcher. */
        if (es == WEFT_ENV_OK &&
            !weft_trigger_matches(t, r->broker, km->topic, weft_envelope_attr(&env, "type"),
                                  env_attr, &env))
            continue;
        matched++;
        if (pend_add(r, t->name, gen, key) != 0) {
            fprintf(stderr, "weft replay: out of memory\n");
            rc = -1;
        }
    }
    weft_envelope_free(&env);
    if (!matched) {
        r->c.skipped++;
        free(key);
        return rc;
    }
    if (r->retention_cutoff_ms > 0 && km->timestamp_ms > 0 &&
        km->timestamp_ms < r->retention_cutoff_ms)
        r->c.older++;
    if (r->dry_run || rc != 0) {
        free(key);
        return rc;
    }
    size_t cap = km->n_hdrs + 4;
    weft_header_t *hdrs = malloc(cap * sizeof(*hdrs));
    if (!hdrs) {
        free(key);
        fprintf(stderr, "weft replay: out of memory\n");
        return -1;
    }
    size_t nh = 0;
    for (size_t i = 0; i < km->n_hdrs; i++)
        if (!is_weft_header(km->hdrs[i].name))
            hdrs[nh++] = km->hdrs[i];
    /* weft-key, the replay's id and trigger, the generation (on NATS
     * the key is percent-encoded like the ce- values). */
    const char *only = r->only ? r->only->name : orig_only[0] ? orig_only : NULL;
    char genbuf[16], *wkey;
    snprintf(genbuf, sizeof(genbuf), "%d", gen);
    if (weft_ce_republish_headers(WEFT_REPUBLISH_REPLAY,
                                  js ? WEFT_BINDING_NATS : WEFT_BINDING_KAFKA, key, r->idbuf,
                                  only, gen > 0 ? genbuf : NULL, hdrs, &nh, &wkey) != 0) {
        free(hdrs);
        free(key);
        fprintf(stderr, "weft replay: out of memory\n");
        return -1;
    }
    int retriable;
    if (js) {
        /* Synchronous: the copy's PubAck before the position moves on. Its
         * own Nats-Msg-Id (replacing the original's), one per replay and
         * source message, so that a resumed replay does not store a copy
         * twice. */
        char msg_id[96];
        snprintf(msg_id, sizeof(msg_id), WEFT_MSGID_REPLAY "%s-%lld", r->idbuf,
                 (long long)km->offset);
        rc = weft_nats_js_publish(r->nc, km->topic, msg_id, hdrs, nh, km->value, km->value_len,
                                  ACK_TIMEOUT_MS, NULL, NULL, err, sizeof(err));
        if (rc == 0)
            r->delivered++;
    } else {
        for (int tries = 0;; tries++) {
            rc = weft_kafka_produce(r->prod, km->topic, km->key, km->key_len, km->value,
                                    km->value_len, hdrs, nh, NULL, &retriable, err, sizeof(err));
            if (rc == 0 || !retriable || tries > 300)
                break;
            weft_kafka_flush(r->prod, 100);
        }
    }
    free(hdrs);
    free(wkey);
    free(key);
    if (rc != 0) {
        fprintf(stderr, "weft replay: %s\n", err);
        return -1;
    }
    r->c.published++;
    if (!js)
        r->produced_batch++;
    return 0;
}

/* ---- state in PostgreSQL -------------------------------------------------------- */

/* Waits for the copies' acknowledgements, classifies, then saves positions
 * and counts in one statement. Positions never pass an unacknowledged
 * copy: nothing is saved unless every copy so far was acknowledged. */
int weft_replay_checkpoint(rp_t *r)
{
    if (!r->dry_run && r->produced_batch) {
        int left = weft_kafka_flush(r->prod, ACK_TIMEOUT_MS);
        if (left || r->failed) {
            fprintf(stderr,
                    "weft replay: the broker did not acknowledge every republished "
                    "event: %s\n",
                    r->failed ? r->last_err : "no answer in time (is the broker reachable?)");
            return -1;
        }
        r->produced_batch = 0;
    }
    if (classify_pending(r) != 0)
        return -1;
    if (r->dry_run)
        return 0;
    weft_replay_part_t *ps = calloc(r->n_parts ? r->n_parts : 1, sizeof(*ps));
    char err[1024] = "out of memory\n";
    for (size_t i = 0; ps && i < r->n_parts; i++)
        ps[i] = (weft_replay_part_t){r->parts[i].partition, r->parts[i].start, r->parts[i].end,
                                     r->parts[i].next};
    weft_replay_counts_t c = {r->c.read, r->c.published, r->c.reemit, r->c.run,
                              r->c.dead, r->c.dropped,   r->c.skipped};
    int ok = ps && weft_replay_save(r->pg, r->id, ps, r->n_parts, &c, err, sizeof(err)) == 0;
    free(ps);
    if (!ok)
        fprintf(stderr, "weft replay: saving the position: %s", err);
    return ok ? 0 : -1;
}

/* ---- the read loop --------------------------------------------------------------- */

rp_part_t *weft_replay_part_of(rp_t *r, int32_t partition)
{
    for (size_t i = 0; i < r->n_parts; i++)
        if (r->parts[i].partition == partition)
            return &r->parts[i];
    return NULL;
}

int64_t weft_replay_progress_done(const rp_t *r)
{
    int64_t d = 0;
    for (size_t i = 0; i < r->n_parts; i++)
        d += r->parts[i].next - r->parts[i].start;
    return d;
}

int64_t weft_replay_range_total(const rp_t *r)
{
    int64_t t = 0;
    for (size_t i = 0; i < r->n_parts; i++)
        t += r->parts[i].end - r->parts[i].start;
    return t;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (!weft_replay_stop_requested && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* One more event was republished: wait when --rate says so. */
void weft_replay_pace_event(const rp_t *r, rp_pace_t *pc, int64_t now)
{
    pc->sent++;
    pc->since_cp++;
    if (r->rate > 0) {
        int64_t due = pc->t0 + (int64_t)((double)pc->sent * 1000.0 / r->rate);
        if (due > now)
            sleep_ms(due - now);
    }
}

/* Saves the position when it is time. 0, or -1 when the checkpoint failed. */
int weft_replay_pace_checkpoint(rp_t *r, rp_pace_t *pc, int64_t now)
{
    if (pc->since_cp < CHECKPOINT_EVENTS && !(pc->since_cp && now - pc->last_cp >= CHECKPOINT_MS))
        return 0;
    if (weft_replay_checkpoint(r) != 0)
        return -1;
    pc->since_cp = 0;
    pc->last_cp = now;
    return 0;
}

/* The end of a read loop: the last checkpoint and the progress line.
 * Returns rc, -1 when the checkpoint failed. */
int weft_replay_loop_end(rp_t *r, weft_cli_progress_t *prog, int rc)
{
    if (rc == 0 && weft_replay_checkpoint(r) != 0)
        rc = -1;
    weft_cli_progress_update(prog, weft_replay_progress_done(r));
    weft_cli_progress_end(prog);
    return rc;
}
