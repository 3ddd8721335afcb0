/*
 * cli_replay.c - `weft replay`: re-dispatch a range of a Kafka topic or a
 * JetStream subject.
 *
 * Runs in the CLI process. The range is read with this process's own
 * consumer (Kafka: assign() through cli_kafka.c; JetStream: a reader of
 * nats.c): the dispatcher's consumer group is never joined and its
 * committed offsets never move. Each event of the
 * range that a trigger would take is republished to its source topic with
 * its original key, value and headers plus:
 *
 *   weft-key             the idempotency key the dispatcher derived for the
 *                        original (the same weft_event_key()), so the
 *                        copy claims the same ledger row
 *   weft-replay-trigger  with --trigger: only that trigger considers it
 *   weft-replay-id       the replay's id (provenance)
 *   weft-generation      with --reexecute: the replay's new generation
 *
 * Default (honour the ledger): a completed key re-emits its stored result
 * with the same id, an unfinished one runs. --reexecute allocates a new
 * ledger generation (sequence weft.replay_generation), so every event runs
 * again and its result gets a new id.
 *
 * Invariants: the end of the range is fixed when the replay starts (the
 * copies it publishes land after it and are never read again); a
 * partition's saved position (weft.replay_partitions.next_offset) only
 * passes events whose copies the broker acknowledged, so a replay stopped
 * by SIGINT, a crash or a broker failure resumes (--resume ID) without
 * losing an event; an event republished twice is harmless (same key).
 * One process works on a replay at a time (an advisory lock on its id).
 */
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
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
#include "wire.h"

#define KAFKA_TIMEOUT_MS 10000
#define ACK_TIMEOUT_MS 30000
#define JS_QUIET_MS 3000
#define STALL_MS 30000
#define CHECKPOINT_EVENTS 500
#define CHECKPOINT_MS 1000
/* pg_advisory_lock(LOCK_CLASS, id) is held by the process working on a
 * replay: 0x77656674, "weft". */
#define LOCK_CLASS "2003134068"

void weft_replay_usage(FILE *f)
{
    fprintf(f,
            "usage: weft replay (--trigger T | --topic TOPIC) [RANGE] [--reexecute [--yes]]\n"
            "                   [--dry-run] [--rate N] [--json]\n"
            "       weft replay --resume ID [--rate N] [--json]\n"
            "       weft replay --list [--json]\n"
            "\n"
            "Reads a range of a Kafka topic or a JetStream subject with its own consumer\n"
            "(the dispatcher's consumer group, durable consumers and committed offsets\n"
            "are never touched) and republishes each event to the same topic, for one\n"
            "trigger (--trigger) or for every trigger of the topic (--topic\n"
            "kafka://TOPIC or jetstream://SUBJECT), keeping its idempotency key.\n"
            "\n"
            "By default the ledger is honoured: an event whose key completed re-emits\n"
            "its stored result with the same id (recovering results lost downstream),\n"
            "one that never finished runs, one that was dead-lettered is dead-lettered\n"
            "again. With --reexecute the functions run again under a new ledger\n"
            "generation and the results get new ids (after fixing a function); it says\n"
            "how many events that is and asks first (--yes skips the question, and is\n"
            "required when stdin is not a terminal).\n"
            "\n"
            "RANGE (default: everything in the topic now; the end is fixed at the start):\n"
            "  --from-offset N | P:N[,P:N...]   first offset (every partition, or those named)\n"
            "  --to-offset N | P:N[,P:N...]     last offset, inclusive\n"
            "  --from-time TIME                 first event at or after TIME\n"
            "  --to-time TIME                   last event before or at TIME\n"
            "  --from-seq N, --to-seq N         JetStream: first and last stream sequence\n"
            "  TIME: 2024-05-01T10:00:00Z, \"2024-05-01 10:00\" (UTC), @EPOCH_MS, or ago:\n"
            "        30s, 15m, 2h, 7d. Kafka needs a broker that looks up offsets by time;\n"
            "        JetStream always can.\n"
            "\n"
            "  --dry-run    count what would happen, per outcome, without publishing\n"
            "  --rate N     publish at most N events per second\n"
            "  --resume ID  go on with an interrupted or failed replay where it stopped\n"
            "  --list       the replays, their state and counts\n"
            "\n"
            "Progress is shown on a terminal. Ctrl-C stops after saving the position;\n"
            "the exit code is then 130, and --resume ID goes on.\n"
            "\n"
            "examples:\n"
            "  weft replay --trigger greet --dry-run\n"
            "  weft replay --trigger greet --from-time 2h\n"
            "  weft replay --topic orders --from-offset 0:1200,1:1180 --to-offset 0:1300,1:1290\n"
            "  weft replay --trigger greet --from-time '2024-05-01 10:00' --reexecute --yes\n"
            "  weft replay --topic jetstream://orders.created --from-seq 1200 --to-seq 1300\n"
            "  weft replay --resume 12\n");
}

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

typedef struct rp_part {
    int32_t partition;
    int64_t start, end, next;
    int done;
} rp_part_t;

typedef struct rp_counts {
    long long read, published, reemit, run, dead, dropped, skipped;
} rp_counts_t;

/* A matched (trigger, generation, key) waiting to be classified. */
typedef struct rp_pending {
    const char *trigger;
    int generation;
    char *key;
} rp_pending_t;

typedef struct rp {
    weft_config_t *cfg;
    PGconn *pg;
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
    long delivered, failed, produced_batch;
    char last_err[256];
    char idbuf[24], genbuf[16];
} rp_t;

static void on_delivered(void *opaque, void *msg_opaque, const char *err)
{
    (void)msg_opaque;
    rp_t *r = opaque;
    if (err) {
        r->failed++;
        snprintf(r->last_err, sizeof(r->last_err), "%s", err);
    } else {
        r->delivered++;
    }
}

static void on_noop(void *opaque, const char *topic, int32_t partition)
{
    (void)opaque;
    (void)topic;
    (void)partition;
}

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
    weft_buf_t t = {0}, g = {0}, k = {0};
    for (size_t i = 0; i < r->n_pend; i++) {
        char gen[16];
        snprintf(gen, sizeof(gen), "%d", r->pend[i].generation);
        weft_pg_array_add(&t, r->pend[i].trigger, strlen(r->pend[i].trigger), 0);
        weft_pg_array_add(&g, gen, strlen(gen), 0);
        weft_pg_array_add(&k, r->pend[i].key, strlen(r->pend[i].key), 0);
    }
    weft_buf_append(&t, "}", 2);
    weft_buf_append(&g, "}", 2);
    weft_buf_append(&k, "}", 2);
    const char *params[3] = {t.p, g.p, k.p};
    PGresult *res = PQexecParams(
        r->pg,
        "SELECT coalesce(l.status::text, '') FROM unnest($1::text[], $2::int[], $3::text[])"
        "       WITH ORDINALITY AS u(t, g, k, ord)"
        "  LEFT JOIN weft.ledger l ON l.trigger = u.t AND l.generation = u.g AND l.key = u.k"
        " ORDER BY u.ord",
        3, NULL, params, NULL, NULL, 0);
    weft_buf_free(&t);
    weft_buf_free(&g);
    weft_buf_free(&k);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || (size_t)PQntuples(res) != r->n_pend) {
        fprintf(stderr, "weft replay: reading the ledger: %s", PQresultErrorMessage(res));
        rc = -1;
    } else {
        for (int i = 0; i < PQntuples(res); i++) {
            const char *st = PQgetvalue(res, i, 0);
            if (strcmp(st, "completed") == 0)
                r->c.reemit++;
            else if (strcmp(st, "dead") == 0)
                r->c.dead++;
            else if (strcmp(st, "dropped") == 0)
                r->c.dropped++;
            else
                r->c.run++;
        }
    }
    PQclear(res);
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

static int parse_gen(const void *v, size_t len)
{
    const char *s = v;
    long long g = 0;
    if (!v || len == 0 || len > 10)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        g = g * 10 + (s[i] - '0');
    }
    return g <= INT32_MAX ? (int)g : 0;
}

/* One event of the range: which triggers take it, and (unless a dry run)
 * its copy. Returns 0, or -1 when it cannot be queued. */
static int replay_event(rp_t *r, weft_kmsg_t *km)
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
    char *key = weft_event_key(km, ce ? env.ce->source : NULL, ce ? env.ce->id : NULL, plain_src,
                               plain_id);
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
            orig_gen = parse_gen(h->value, h->len);
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
static int checkpoint(rp_t *r)
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
    weft_buf_t parts = {0}, nexts = {0};
    for (size_t i = 0; i < r->n_parts; i++) {
        char p[16], n[24];
        snprintf(p, sizeof(p), "%d", (int)r->parts[i].partition);
        snprintf(n, sizeof(n), "%lld", (long long)r->parts[i].next);
        weft_pg_array_add(&parts, p, strlen(p), 0);
        weft_pg_array_add(&nexts, n, strlen(n), 0);
    }
    weft_buf_append(&parts, "}", 2);
    weft_buf_append(&nexts, "}", 2);
    char v[9][24];
    long long vals[7] = {r->c.read, r->c.published, r->c.reemit, r->c.run,
                         r->c.dead, r->c.dropped,   r->c.skipped};
    for (int i = 0; i < 7; i++)
        snprintf(v[i], sizeof(v[i]), "%lld", vals[i]);
    const char *params[10] = {r->idbuf, parts.p, nexts.p, v[0], v[1], v[2], v[3], v[4], v[5], v[6]};
    PGresult *res = PQexecParams(
        r->pg,
        "WITH p AS (UPDATE weft.replay_partitions rp SET next_offset = u.n"
        "             FROM unnest($2::int[], $3::bigint[]) AS u(p, n)"
        "            WHERE rp.replay = $1::bigint AND rp.partition = u.p RETURNING 1)"
        " UPDATE weft.replays SET read = $4, published = $5, reemit = $6, run = $7, dead = $8,"
        "        dropped = $9, skipped = $10, updated_at = now()"
        "  WHERE id = $1::bigint",
        10, NULL, params, NULL, NULL, 0);
    weft_buf_free(&parts);
    weft_buf_free(&nexts);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "weft replay: saving the position: %s", PQresultErrorMessage(res));
    PQclear(res);
    return ok ? 0 : -1;
}

static void set_status(rp_t *r, const char *status, const char *error)
{
    const char *params[3] = {r->idbuf, status, error};
    PGresult *res = PQexecParams(r->pg,
                                 "UPDATE weft.replays SET status = $2, error = $3,"
                                 " updated_at = now(),"
                                 " finished_at = CASE WHEN $2 = 'done' THEN now() END"
                                 " WHERE id = $1::bigint",
                                 3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        fprintf(stderr, "weft replay: recording the replay's state: %s", PQresultErrorMessage(res));
    PQclear(res);
}

/* ---- the read loop --------------------------------------------------------------- */

static rp_part_t *part_of(rp_t *r, int32_t partition)
{
    for (size_t i = 0; i < r->n_parts; i++)
        if (r->parts[i].partition == partition)
            return &r->parts[i];
    return NULL;
}

static int64_t progress_done(const rp_t *r)
{
    int64_t d = 0;
    for (size_t i = 0; i < r->n_parts; i++)
        d += r->parts[i].next - r->parts[i].start;
    return d;
}

static int64_t range_total(const rp_t *r)
{
    int64_t t = 0;
    for (size_t i = 0; i < r->n_parts; i++)
        t += r->parts[i].end - r->parts[i].start;
    return t;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (!stop_requested && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Returns 0 (range done), 1 (stopped by a signal) or -1 (error). */
/* The read loops' bookkeeping: --rate pacing and checkpoints every
 * CHECKPOINT_EVENTS events or CHECKPOINT_MS. */
typedef struct rp_pace {
    int64_t t0, last_cp;
    long long sent, since_cp;
} rp_pace_t;

/* One more event was republished: wait when --rate says so. */
static void pace_event(const rp_t *r, rp_pace_t *pc, int64_t now)
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
static int pace_checkpoint(rp_t *r, rp_pace_t *pc, int64_t now)
{
    if (pc->since_cp < CHECKPOINT_EVENTS && !(pc->since_cp && now - pc->last_cp >= CHECKPOINT_MS))
        return 0;
    if (checkpoint(r) != 0)
        return -1;
    pc->since_cp = 0;
    pc->last_cp = now;
    return 0;
}

/* The end of a read loop: the last checkpoint and the progress line.
 * Returns rc, -1 when the checkpoint failed. */
static int loop_end(rp_t *r, weft_cli_progress_t *prog, int rc)
{
    if (rc == 0 && checkpoint(r) != 0)
        rc = -1;
    weft_cli_progress_update(prog, progress_done(r));
    weft_cli_progress_end(prog);
    return rc;
}

static int read_loop(rp_t *r)
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
    weft_cli_progress_start(&prog, range_total(r), "events");
    int64_t last_msg = weft_cli_now_ms();
    rp_pace_t pc = {.t0 = last_msg, .last_cp = last_msg};
    rc = 0;
    for (;;) {
        size_t left = 0;
        for (size_t i = 0; i < r->n_parts; i++)
            left += !r->parts[i].done;
        if (left == 0 || stop_requested)
            break;
        weft_kmsg_t km;
        int32_t eofp;
        int64_t eofo;
        weft_clik_ev_t ev = weft_clik_poll(r->ck, 100, &km, &eofp, &eofo, err, sizeof(err));
        int64_t now = weft_cli_now_ms();
        if (ev == WEFT_CLIK_MSG) {
            last_msg = now;
            rp_part_t *p = part_of(r, km.partition);
            if (p && !p->done && km.offset >= p->next && km.offset < p->end) {
                if (replay_event(r, &km) != 0) {
                    weft_kafka_msg_free(&km);
                    rc = -1;
                    break;
                }
                p->next = km.offset + 1;
                pace_event(r, &pc, now);
            }
            if (p && (km.offset + 1 >= p->end)) {
                p->next = p->end;
                p->done = 1;
            }
            weft_kafka_msg_free(&km);
        } else if (ev == WEFT_CLIK_EOF) {
            last_msg = now;
            rp_part_t *p = part_of(r, eofp);
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
        if (pace_checkpoint(r, &pc, now) != 0) {
            rc = -1;
            break;
        }
        if (r->prod)
            weft_kafka_serve(r->prod);
        weft_cli_progress_update(&prog, progress_done(r));
    }
    rc = loop_end(r, &prog, rc);
    if (rc == 0 && stop_requested) {
        for (size_t i = 0; i < r->n_parts; i++)
            if (!r->parts[i].done)
                return 1;
    }
    return rc;
}

/* JetStream: one ordered consumer over the stream from the next sequence
 * to the end fixed when the replay started (its own copies come after the
 * end, so they are never read again). Each copy waits for its PubAck, so
 * a saved position never passes an unacknowledged copy. */
static int read_loop_js(rp_t *r)
{
    char err[512];
    rp_part_t *p = &r->parts[0];
    if (p->next >= p->end)
        p->done = 1;
    if (p->done)
        return checkpoint(r);
    weft_nats_reader_t *rd = weft_nats_reader_new(r->nc, r->stream, r->topic, (uint64_t)p->next,
                                                  0, NULL, err, sizeof(err));
    if (!rd) {
        fprintf(stderr, "weft replay: %s\n", err);
        return -1;
    }
    weft_cli_progress_t prog;
    weft_cli_progress_start(&prog, range_total(r), "events");
    int64_t last_msg = weft_cli_now_ms();
    rp_pace_t pc = {.t0 = last_msg, .last_cp = last_msg};
    int rc = 0;
    while (!p->done && !stop_requested) {
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
            if (replay_event(r, &km) != 0) {
                rc = -1;
                break;
            }
            p->next = km.offset + 1;
            if (left == 0 || p->next >= p->end) {
                p->next = p->end;
                p->done = 1;
            }
            pace_event(r, &pc, now);
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
        if (pace_checkpoint(r, &pc, now) != 0) {
            rc = -1;
            break;
        }
        weft_cli_progress_update(&prog, progress_done(r));
    }
    weft_nats_reader_destroy(rd);
    rc = loop_end(r, &prog, rc);
    if (rc == 0 && stop_requested && !p->done)
        return 1;
    return rc;
}

/* ---- the range --------------------------------------------------------------------- */

typedef struct rp_args {
    const char *trigger, *topic, *from_off, *to_off, *from_time, *to_time, *from_seq, *to_seq;
    int reexecute, yes, dry_run, json, list;
    const char *resume;
    double rate;
} rp_args_t;

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
static int parse_seq(const char *s, const char *flag, uint64_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || v == 0 || *s == '-') {
        fprintf(stderr, "weft replay: %s \"%s\": expected a stream sequence (1 or more)\n",
                flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

/* JetStream: one range of stream sequences (kept as partition 0), from
 * --from-seq or the first message at or after --from-time (or the
 * stream's start) to --to-seq or the stream's last message now. */
static int build_range_js(rp_t *r, const rp_args_t *a)
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

static int build_range(rp_t *r, const rp_args_t *a)
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

static char *request_json(const rp_args_t *a)
{
    weft_buf_t b = {0};
    const char *names[] = {"from_offset", "to_offset", "from_time", "to_time", "from_seq",
                           "to_seq"};
    const char *vals[] = {a->from_off, a->to_off, a->from_time, a->to_time, a->from_seq,
                          a->to_seq};
    int first = 1;
    weft_buf_append(&b, "{", 1);
    for (int i = 0; i < 6; i++) {
        if (!vals[i])
            continue;
        weft_buf_printf(&b, "%s\"%s\":", first ? "" : ",", names[i]);
        weft_json_append_string(&b, vals[i], strlen(vals[i]));
        first = 0;
    }
    if (a->rate > 0)
        weft_buf_printf(&b, "%s\"rate\":%g", first ? "" : ",", a->rate);
    weft_buf_append(&b, "}", 2);
    return b.p;
}

/* Records the replay and its partitions; allocates its generation. */
static int create_replay(rp_t *r, const rp_args_t *a)
{
    char *req = request_json(a);
    weft_buf_t parts = {0}, starts = {0}, ends = {0};
    for (size_t i = 0; i < r->n_parts; i++) {
        char p[16], s[24], e[24];
        snprintf(p, sizeof(p), "%d", (int)r->parts[i].partition);
        snprintf(s, sizeof(s), "%lld", (long long)r->parts[i].start);
        snprintf(e, sizeof(e), "%lld", (long long)r->parts[i].end);
        weft_pg_array_add(&parts, p, strlen(p), 0);
        weft_pg_array_add(&starts, s, strlen(s), 0);
        weft_pg_array_add(&ends, e, strlen(e), 0);
    }
    weft_buf_append(&parts, "}", 2);
    weft_buf_append(&starts, "}", 2);
    weft_buf_append(&ends, "}", 2);
    const char *params[8] = {r->topic,
                             r->only ? r->only->name : NULL,
                             r->reexecute ? "true" : "false",
                             req ? req : "{}",
                             parts.p,
                             starts.p,
                             ends.p,
                             weft_broker_name(r->broker)};
    PGresult *res = PQexecParams(
        r->pg,
        "WITH r AS (INSERT INTO weft.replays (topic, trigger, reexecute, generation, request,"
        "                                     broker)"
        "           VALUES ($1, $2, $3::boolean,"
        "                   CASE WHEN $3::boolean THEN nextval('weft.replay_generation')"
        "                        ELSE 0 END, $4::jsonb, $8::weft.broker)"
        "           RETURNING id, generation),"
        "     p AS (INSERT INTO weft.replay_partitions"
        "             (replay, partition, start_offset, end_offset, next_offset)"
        "           SELECT r.id, u.p, u.s, u.e, u.s FROM r,"
        "                  unnest($5::int[], $6::bigint[], $7::bigint[]) AS u(p, s, e))"
        " SELECT id, generation FROM r",
        8, NULL, params, NULL, NULL, 0);
    free(req);
    weft_buf_free(&parts);
    weft_buf_free(&starts);
    weft_buf_free(&ends);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, "weft replay: recording the replay: %s", PQresultErrorMessage(res));
        PQclear(res);
        return -1;
    }
    r->id = atoll(PQgetvalue(res, 0, 0));
    r->generation = atoi(PQgetvalue(res, 0, 1));
    PQclear(res);
    return 0;
}

static int lock_replay(rp_t *r)
{
    const char *params[2] = {LOCK_CLASS, r->idbuf};
    PGresult *res = PQexecParams(r->pg, "SELECT pg_try_advisory_lock($1::int, $2::int)", 2, NULL,
                                 params, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK && *PQgetvalue(res, 0, 0) == 't';
    PQclear(res);
    return ok ? 0 : -1;
}

/* Finds the trigger to replay for, enabled and on Kafka. 0, 1 or 2. */
static int find_trigger(rp_t *r, const char *name)
{
    for (size_t i = 0; i < r->cat->n_trigs; i++)
        if (strcmp(r->cat->trigs[i].name, name) == 0)
            r->only = &r->cat->trigs[i];
    if (!r->only) {
        const char *params[1] = {name};
        PGresult *res = PQexecParams(r->pg, "SELECT 1 FROM weft.triggers WHERE name = $1", 1, NULL,
                                     params, NULL, NULL, 0);
        int exists = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1;
        PQclear(res);
        if (exists)
            fprintf(stderr, "weft replay: trigger %s is disabled; enable it first\n", name);
        else
            fprintf(stderr, "weft replay: unknown trigger \"%s\" (weft triggers lists them)\n",
                    name);
        return 1;
    }
    if (r->only->broker == WEFT_BROKER_NATS) {
        fprintf(stderr,
                "weft replay: trigger %s consumes core NATS (nats://%s), which keeps no "
                "messages: there is nothing to replay\n",
                name, r->only->topic);
        return 2;
    }
    r->broker = r->only->broker;
    if (r->broker == WEFT_BROKER_JETSTREAM)
        snprintf(r->stream, sizeof(r->stream), "%s", r->only->stream ? r->only->stream : "");
    snprintf(r->topic, sizeof(r->topic), "%s", r->only->topic);
    return 0;
}

static int confirm(const rp_t *r, const rp_args_t *a, int64_t total)
{
    char what[800];
    snprintf(what, sizeof(what),
             "--reexecute runs the function%s of %s again for up to %lld event%s of %s://%s "
             "(%zu partition%s) under a new ledger generation; their results get new ids",
             r->only ? "" : "s", r->only ? r->only->name : "every trigger of the topic",
             (long long)total, total == 1 ? "" : "s", weft_cli_scheme(r->broker), r->topic,
             r->n_parts, r->n_parts == 1 ? "" : "s");
    if (a->yes) {
        fprintf(stderr, "weft replay: %s\n", what);
        return 0;
    }
    if (!isatty(STDIN_FILENO)) {
        fprintf(stderr,
                "weft replay: %s.\nweft replay: stdin is not a terminal: confirm with "
                "--yes\n",
                what);
        return 2;
    }
    fprintf(stderr, "%s.\nContinue? [y/N] ", what);
    char line[32];
    if (!fgets(line, sizeof(line), stdin) ||
        (strcmp(line, "y\n") != 0 && strcmp(line, "yes\n") != 0 && strcmp(line, "Y\n") != 0)) {
        fprintf(stderr, "weft replay: not confirmed; nothing was replayed\n");
        return 1;
    }
    return 0;
}

static void print_summary(const rp_t *r, const char *status)
{
    if (r->json) {
        printf("{\"id\":%lld,\"status\":\"%s\",\"dry_run\":%s,\"topic\":", r->id, status,
               r->dry_run ? "true" : "false");
        weft_buf_t b = {0};
        weft_json_append_string(&b, r->topic, strlen(r->topic));
        weft_buf_append(&b, ",\"trigger\":", 11);
        if (r->only)
            weft_json_append_string(&b, r->only->name, strlen(r->only->name));
        else
            weft_buf_append(&b, "null", 4);
        weft_buf_append(&b, "", 1);
        printf("%s,\"generation\":%d,\"total\":%lld,\"read\":%lld,\"published\":%lld,"
               "\"reemit\":%lld,\"run\":%lld,\"dead\":%lld,\"dropped\":%lld,\"skipped\":%lld}\n",
               b.p, r->generation, (long long)range_total(r), r->c.read, r->c.published,
               r->c.reemit, r->c.run, r->c.dead, r->c.dropped, r->c.skipped);
        weft_buf_free(&b);
        return;
    }
    const char *w = r->dry_run ? "would " : "";
    if (r->dry_run)
        printf("dry run: %s://%s%s%s, %lld events read, nothing published\n",
               weft_cli_scheme(r->broker), r->topic,
               r->only ? " for trigger " : " for every trigger", r->only ? r->only->name : "",
               r->c.read);
    else
        printf("replay %lld %s: %s://%s%s%s, %lld events read, %lld republished\n", r->id,
               status, weft_cli_scheme(r->broker), r->topic,
               r->only ? " for trigger " : " for every trigger", r->only ? r->only->name : "",
               r->c.read, r->c.published);
    if (r->generation)
        printf("  ledger generation %d: every matching event runs again\n", r->generation);
    else if (r->reexecute)
        printf("  with --reexecute every matching event would run again\n");
    if (!r->only)
        printf("  (counted per matching trigger)\n");
    printf("  %s%-30s %lld\n", w, "re-emit a stored result", r->c.reemit);
    printf("  %s%-30s %lld\n", w, "run the function", r->c.run);
    printf("  %s%-30s %lld\n", w, "dead-letter again", r->c.dead);
    printf("  %s%-30s %lld\n", w, "do nothing (dropped before)", r->c.dropped);
    printf("  %s%-30s %lld\n", w, "skip (no matching trigger)", r->c.skipped);
}

static int list_replays(const weft_config_t *cfg, int json)
{
    PGconn *pg = weft_cli_pg_connect(cfg, "weft replay");
    if (!pg)
        return 1;
    const char *sql =
        json ? "SELECT coalesce(json_agg(json_build_object('id', r.id, 'status', r.status,"
               " 'topic', r.topic, 'trigger', r.trigger, 'reexecute', r.reexecute,"
               " 'generation', r.generation, 'request', r.request, 'error', r.error,"
               " 'total', (SELECT coalesce(sum(end_offset - start_offset), 0) FROM"
               "   weft.replay_partitions WHERE replay = r.id),"
               " 'done', (SELECT coalesce(sum(next_offset - start_offset), 0) FROM"
               "   weft.replay_partitions WHERE replay = r.id),"
               " 'read', r.read, 'published', r.published, 'reemit', r.reemit, 'run', r.run,"
               " 'dead', r.dead, 'dropped', r.dropped, 'skipped', r.skipped,"
               " 'created_at', r.created_at, 'updated_at', r.updated_at,"
               " 'finished_at', r.finished_at) ORDER BY r.id), '[]'::json) FROM weft.replays r"
             : "SELECT r.id, CASE WHEN r.status = 'running' AND NOT EXISTS (SELECT 1"
               "   FROM pg_locks l WHERE l.locktype = 'advisory' AND l.classid = " LOCK_CLASS
               "    AND l.objid = r.id AND l.objsubid = 2) THEN 'stopped' ELSE r.status END,"
               " coalesce(r.trigger, '*'), r.topic, r.generation,"
               " (SELECT coalesce(sum(next_offset - start_offset), 0) || '/' ||"
               "         coalesce(sum(end_offset - start_offset), 0)"
               "    FROM weft.replay_partitions WHERE replay = r.id),"
               " r.reemit || '/' || r.run || '/' || r.dead || '/' || r.skipped,"
               " to_char(r.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"
               " r.request::text FROM weft.replays r ORDER BY r.id";
    PGresult *res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "weft replay --list: %s", PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(pg);
        return 1;
    }
    if (json) {
        printf("%s\n", PQgetvalue(res, 0, 0));
    } else if (PQntuples(res) == 0) {
        printf("no replays\n");
    } else {
        printf("%-6s %-12s %-20s %-24s %-4s %-15s %-20s %-19s %s\n", "ID", "STATUS", "TRIGGER",
               "TOPIC", "GEN", "OFFSETS", "REEMIT/RUN/DEAD/SKIP", "CREATED (UTC)", "RANGE");
        for (int i = 0; i < PQntuples(res); i++)
            printf("%-6s %-12s %-20s %-24s %-4s %-15s %-20s %-19s %s\n", PQgetvalue(res, i, 0),
                   PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
                   PQgetvalue(res, i, 4), PQgetvalue(res, i, 5), PQgetvalue(res, i, 6),
                   PQgetvalue(res, i, 7), PQgetvalue(res, i, 8));
    }
    PQclear(res);
    PQfinish(pg);
    return 0;
}

/* Loads an earlier replay to go on with. 0, 1 or 2. */
static int load_replay(rp_t *r, const char *id)
{
    char *end;
    long long v = strtoll(id, &end, 10);
    if (!*id || *end || v <= 0) {
        fprintf(stderr, "weft replay: --resume \"%s\": expected a replay id (a number)\n", id);
        return 2;
    }
    r->id = v;
    snprintf(r->idbuf, sizeof(r->idbuf), "%lld", v);
    const char *params[1] = {r->idbuf};
    PGresult *res = PQexecParams(r->pg,
                                 "SELECT topic, trigger, reexecute, generation, status, read,"
                                 " published, reemit, run, dead, dropped, skipped, broker"
                                 " FROM weft.replays WHERE id = $1::bigint",
                                 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, "weft replay: no replay %s (weft replay --list shows them)\n", id);
        PQclear(res);
        return 1;
    }
    if (strcmp(PQgetvalue(res, 0, 4), "done") == 0) {
        fprintf(stderr, "weft replay: replay %s is done; nothing to resume\n", id);
        PQclear(res);
        return 1;
    }
    int rc = 0;
    if (!PQgetisnull(res, 0, 1)) {
        rc = find_trigger(r, PQgetvalue(res, 0, 1));
    }
    snprintf(r->topic, sizeof(r->topic), "%s", PQgetvalue(res, 0, 0));
    weft_broker_parse(PQgetvalue(res, 0, 12), &r->broker);
    if (r->broker == WEFT_BROKER_JETSTREAM && !r->stream[0]) {
        const weft_trigger_t *on[1];
        if (weft_catalog_on_topic(r->cat, r->broker, r->topic, on, 1) == 0) {
            fprintf(stderr, "weft replay: no enabled trigger consumes jetstream://%s any more\n",
                    r->topic);
            PQclear(res);
            return 1;
        }
        snprintf(r->stream, sizeof(r->stream), "%s", on[0]->stream ? on[0]->stream : "");
    }
    r->reexecute = *PQgetvalue(res, 0, 2) == 't';
    r->generation = atoi(PQgetvalue(res, 0, 3));
    long long *cs[7] = {&r->c.read, &r->c.published, &r->c.reemit, &r->c.run,
                        &r->c.dead, &r->c.dropped,   &r->c.skipped};
    for (int i = 0; i < 7; i++)
        *cs[i] = atoll(PQgetvalue(res, 0, 5 + i));
    PQclear(res);
    if (rc != 0)
        return rc;
    res = PQexecParams(r->pg,
                       "SELECT partition, start_offset, end_offset, next_offset"
                       "  FROM weft.replay_partitions WHERE replay = $1::bigint ORDER BY partition",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "weft replay: %s", PQresultErrorMessage(res));
        PQclear(res);
        return 1;
    }
    r->n_parts = (size_t)PQntuples(res);
    r->parts = calloc(r->n_parts ? r->n_parts : 1, sizeof(*r->parts));
    for (size_t i = 0; r->parts && i < r->n_parts; i++) {
        r->parts[i].partition = atoi(PQgetvalue(res, (int)i, 0));
        r->parts[i].start = atoll(PQgetvalue(res, (int)i, 1));
        r->parts[i].end = atoll(PQgetvalue(res, (int)i, 2));
        r->parts[i].next = atoll(PQgetvalue(res, (int)i, 3));
    }
    PQclear(res);
    return r->parts ? 0 : 1;
}

static int run_replay(rp_t *r, const rp_args_t *a)
{
    char err[512];
    int rc;
    r->pg = weft_cli_pg_connect(r->cfg, "weft replay");
    if (!r->pg)
        return 1;
    r->cat = weft_catalog_load(r->pg, err, sizeof(err));
    if (!r->cat) {
        fprintf(stderr, "weft replay: %s\n", err);
        return 1;
    }
    if (a->resume) {
        if ((rc = load_replay(r, a->resume)) != 0)
            return rc;
        if (lock_replay(r) != 0) {
            fprintf(stderr, "weft replay: replay %s is running in another process\n", r->idbuf);
            return 1;
        }
    } else if (a->trigger) {
        if ((rc = find_trigger(r, a->trigger)) != 0)
            return rc;
    } else {
        weft_cli_url_t url;
        if (strstr(a->topic, "://")) {
            if (weft_cli_parse_url(a->topic, &url, err, sizeof(err)) != 0) {
                fprintf(stderr, "weft replay: --topic %s\n", err);
                return 2;
            }
            if (url.broker == WEFT_BROKER_NATS) {
                fprintf(stderr, "weft replay: %s: core NATS keeps no messages; there is "
                                "nothing to replay\n",
                        a->topic);
                return 2;
            }
            r->broker = url.broker;
            snprintf(r->topic, sizeof(r->topic), "%s", url.name);
        } else {
            snprintf(r->topic, sizeof(r->topic), "%s", a->topic);
        }
        const weft_trigger_t *on[1];
        if (weft_catalog_on_topic(r->cat, r->broker, r->topic, on, 1) == 0) {
            fprintf(stderr,
                    "weft replay: no enabled trigger consumes %s://%s (weft triggers "
                    "lists them)\n",
                    weft_cli_scheme(r->broker), r->topic);
            return 1;
        }
        if (r->broker == WEFT_BROKER_JETSTREAM)
            snprintf(r->stream, sizeof(r->stream), "%s", on[0]->stream ? on[0]->stream : "");
    }
    int js = r->broker == WEFT_BROKER_JETSTREAM;
    const char *scheme = weft_cli_scheme(r->broker);
    if (!a->resume && js && (a->from_off || a->to_off)) {
        fprintf(stderr, "weft replay: %s://%s is a JetStream subject: give its range with "
                        "--from-seq/--to-seq or --from-time/--to-time\n",
                scheme, r->topic);
        return 2;
    }
    if (!a->resume && !js && (a->from_seq || a->to_seq)) {
        fprintf(stderr, "weft replay: --from-seq/--to-seq are JetStream stream sequences; "
                        "kafka://%s takes --from-offset/--to-offset\n",
                r->topic);
        return 2;
    }
    if (js) {
        const char *url = weft_config_get(r->cfg, "nats.url", NULL);
        if (!url) {
            fprintf(stderr, "weft replay: nats.url is not set (config file or WEFT_NATS_URL)\n");
            return 2;
        }
        r->nc = weft_nats_connect(url, 10000, err, sizeof(err));
        if (!r->nc) {
            fprintf(stderr, "weft replay: %s\n", err);
            return 1;
        }
    } else {
        r->ck = weft_clik_new(r->cfg, "weft-replay", err, sizeof(err));
        if (!r->ck) {
            fprintf(stderr, "weft replay: %s\n", err);
            return 2;
        }
    }
    if (!a->resume) {
        if ((rc = js ? build_range_js(r, a) : build_range(r, a)) != 0)
            return rc;
        int64_t total = range_total(r);
        if (total == 0) {
            printf("nothing to replay: the range of %s://%s holds no event\n", scheme, r->topic);
            return 0;
        }
        if (r->reexecute && !r->dry_run && (rc = confirm(r, a, total)) != 0)
            return rc;
        if (!r->dry_run) {
            if (create_replay(r, a) != 0)
                return 1;
            snprintf(r->idbuf, sizeof(r->idbuf), "%lld", r->id);
            if (lock_replay(r) != 0) {
                fprintf(stderr, "weft replay: cannot lock replay %s\n", r->idbuf);
                return 1;
            }
        }
    } else {
        set_status(r, "running", NULL);
    }
    if (!r->dry_run && !js) {
        if (!weft_config_get(r->cfg, "kafka.producer.message.timeout.ms", NULL) &&
            !weft_config_get(r->cfg, "kafka.message.timeout.ms", NULL))
            weft_config_set(r->cfg, "kafka.producer.message.timeout.ms", "30000");
        weft_kafka_cbs_t cbs = {on_noop, on_noop, on_delivered, r};
        r->prod = weft_kafka_producer_new(r->cfg, &cbs, err, sizeof(err));
        if (!r->prod) {
            fprintf(stderr, "weft replay: %s\n", err);
            set_status(r, "failed", err);
            return 2;
        }
    }
    if (!r->dry_run && !r->json)
        fprintf(stderr, "weft replay: replay %s of %s://%s: %lld of %lld %s to go\n", r->idbuf,
                scheme, r->topic, (long long)(range_total(r) - progress_done(r)),
                (long long)range_total(r), js ? "stream sequences" : "events");
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = js ? read_loop_js(r) : read_loop(r);
    if (r->dry_run) {
        print_summary(r, rc == 0 ? "done" : "failed");
        return rc == 0 ? 0 : rc == 1 ? 130 : 1;
    }
    if (rc == 0) {
        set_status(r, "done", NULL);
        print_summary(r, "done");
        return 0;
    }
    set_status(r, rc == 1 ? "interrupted" : "failed", rc == 1 ? NULL : "see the command's output");
    print_summary(r, rc == 1 ? "interrupted" : "failed");
    fprintf(stderr, "weft replay: %s at %lld of %lld events; go on with: weft replay --resume %s\n",
            rc == 1 ? "interrupted" : "stopped", (long long)progress_done(r),
            (long long)range_total(r), r->idbuf);
    return rc == 1 ? 130 : 1;
}

int weft_replay_main(weft_config_t *cfg, int argc, char **argv)
{
    rp_args_t a;
    memset(&a, 0, sizeof(a));
    static const struct option opts[] = {{"trigger", required_argument, NULL, 't'},
                                         {"topic", required_argument, NULL, 'T'},
                                         {"from-offset", required_argument, NULL, 'f'},
                                         {"to-offset", required_argument, NULL, 'o'},
                                         {"from-time", required_argument, NULL, 'F'},
                                         {"to-time", required_argument, NULL, 'O'},
                                         {"reexecute", no_argument, NULL, 'x'},
                                         {"yes", no_argument, NULL, 'y'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"resume", required_argument, NULL, 'R'},
                                         {"list", no_argument, NULL, 'l'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"from-seq", required_argument, NULL, 'S'},
                                         {"to-seq", required_argument, NULL, 'E'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "t:T:f:o:F:O:xynr:R:ljS:E:h", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            a.trigger = optarg;
            break;
        case 'T':
            a.topic = optarg;
            break;
        case 'f':
            a.from_off = optarg;
            break;
        case 'o':
            a.to_off = optarg;
            break;
        case 'F':
            a.from_time = optarg;
            break;
        case 'O':
            a.to_time = optarg;
            break;
        case 'x':
            a.reexecute = 1;
            break;
        case 'y':
            a.yes = 1;
            break;
        case 'n':
            a.dry_run = 1;
            break;
        case 'r': {
            char *end;
            a.rate = strtod(optarg, &end);
            if (*end || !(a.rate > 0)) {
                fprintf(stderr, "weft replay: --rate must be a positive number of events per "
                                "second\n");
                return 2;
            }
            break;
        }
        case 'R':
            a.resume = optarg;
            break;
        case 'l':
            a.list = 1;
            break;
        case 'j':
            a.json = 1;
            break;
        case 'S':
            a.from_seq = optarg;
            break;
        case 'E':
            a.to_seq = optarg;
            break;
        case 'h':
            weft_replay_usage(stdout);
            return 0;
        default:
            weft_replay_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft replay: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (a.list)
        return list_replays(cfg, a.json);
    int has_range = a.from_off || a.to_off || a.from_time || a.to_time || a.from_seq || a.to_seq;
    if (a.resume && (a.trigger || a.topic || has_range || a.reexecute || a.dry_run)) {
        fprintf(stderr, "weft replay: --resume goes on with a replay as it was started; give "
                        "only --resume ID (and --rate, --json)\n");
        return 2;
    }
    if (!a.resume && !!a.trigger == !!a.topic) {
        fprintf(stderr, "weft replay: say what to replay: --trigger T or --topic TOPIC (one of "
                        "them)\n");
        return 2;
    }
    if ((a.from_off && a.from_time) || (a.to_off && a.to_time) || (a.from_seq && a.from_time) ||
        (a.to_seq && a.to_time) || (a.from_seq && a.from_off) || (a.to_seq && a.to_off)) {
        fprintf(stderr, "weft replay: give a range by offsets or by time, not both for the same "
                        "end\n");
        return 2;
    }
    if (a.yes && !a.reexecute) {
        fprintf(stderr, "weft replay: --yes confirms --reexecute; the default replay needs no "
                        "confirmation\n");
        return 2;
    }
    /* Check the range's syntax before connecting anywhere. */
    char err[512];
    weft_cli_offsets_t tmp;
    int64_t ms;
    const char *offs[2] = {a.from_off, a.to_off}, *times[2] = {a.from_time, a.to_time};
    for (int i = 0; i < 2; i++) {
        if (offs[i]) {
            if (weft_cli_parse_offsets(offs[i], &tmp, err, sizeof(err)) != 0) {
                fprintf(stderr, "weft replay: --%s-offset %s\n", i ? "to" : "from", err);
                return 2;
            }
            weft_cli_offsets_free(&tmp);
        }
        if (times[i] &&
            weft_cli_parse_time(times[i], weft_cli_now_ms(), &ms, err, sizeof(err)) != 0) {
            fprintf(stderr, "weft replay: --%s-time %s\n", i ? "to" : "from", err);
            return 2;
        }
    }
    rp_t r;
    memset(&r, 0, sizeof(r));
    r.cfg = cfg;
    r.reexecute = a.reexecute;
    r.dry_run = a.dry_run;
    r.json = a.json;
    r.rate = a.rate;
    int rc = run_replay(&r, &a);
    for (size_t i = 0; i < r.n_pend; i++)
        free(r.pend[i].key);
    free(r.pend);
    free(r.parts);
    weft_kafka_destroy(r.prod, 1000);
    weft_clik_destroy(r.ck);
    weft_nats_destroy(r.nc);
    if (r.cat)
        weft_catalog_unref(r.cat);
    if (r.pg)
        PQfinish(r.pg);
    return rc;
}
