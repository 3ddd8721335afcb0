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
 *
 * This file is the command: its arguments, the replay's row in
 * PostgreSQL, the confirmation and the summary. The work on each event
 * is in replay_event.c, the range and the read loop of each broker in
 * replay_kafka.c and replay_jetstream.c (shared state: replay.h).
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
#include "pgconn.h"
#include "replay.h"
#include "replays.h"
#include "retention.h"

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
            "Ledger rows finished longer ago than retention.ledger (default 30d) are\n"
            "deleted: such an old event runs again instead of re-emitting. The summary\n"
            "(and --dry-run) says how many events of the range are that old.\n"
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

volatile sig_atomic_t weft_replay_stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    weft_replay_stop_requested = 1;
}

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

static void set_status(rp_t *r, const char *status, const char *error)
{
    char err[1024];
    if (weft_replay_set_status(r->pg, r->id, status, error, err, sizeof(err)) != 0)
        fprintf(stderr, "weft replay: recording the replay's state: %s", err);
}

static char *request_json(const rp_args_t *a)
{
    weft_buf_t b = {0};
    const char *names[] = {"from_offset", "to_offset", "from_time",
                           "to_time",     "from_seq",  "to_seq"};
    const char *vals[] = {a->from_off, a->to_off, a->from_time, a->to_time, a->from_seq, a->to_seq};
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

/* The partitions as the store takes them (a new array, or NULL). */
static weft_replay_part_t *store_parts(const rp_t *r)
{
    weft_replay_part_t *ps = calloc(r->n_parts ? r->n_parts : 1, sizeof(*ps));
    for (size_t i = 0; ps && i < r->n_parts; i++)
        ps[i] = (weft_replay_part_t){r->parts[i].partition, r->parts[i].start, r->parts[i].end,
                                     r->parts[i].next};
    return ps;
}

/* Records the replay and its partitions; allocates its generation. */
static int create_replay(rp_t *r, const rp_args_t *a)
{
    char *req = request_json(a);
    weft_replay_part_t *ps = store_parts(r);
    char err[1024] = "out of memory\n";
    int rc = ps ? weft_replay_create(r->pg, r->topic, r->only ? r->only->name : NULL, r->reexecute,
                                     req ? req : "{}", weft_broker_name(r->broker), ps, r->n_parts,
                                     &r->id, &r->generation, err, sizeof(err))
                : -1;
    free(req);
    free(ps);
    if (rc != 0)
        fprintf(stderr, "weft replay: recording the replay: %s", err);
    return rc;
}

static int lock_replay(rp_t *r)
{
    return weft_replay_lock(r->pg, r->id) ? 0 : -1;
}

/* Finds the trigger to replay for, enabled and on Kafka. 0, 1 or 2. */
static int find_trigger(rp_t *r, const char *name)
{
    for (size_t i = 0; i < r->cat->n_trigs; i++)
        if (strcmp(r->cat->trigs[i].name, name) == 0)
            r->only = &r->cat->trigs[i];
    if (!r->only) {
        if (weft_catalog_trigger_exists(r->pg, name) == 1)
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

/* note: a sentence for --json (an empty range says so in it), or NULL. */
static void print_summary(const rp_t *r, const char *status, const char *note)
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
        if (note) {
            weft_buf_append(&b, ",\"note\":", 8);
            weft_json_append_string(&b, note, strlen(note));
        }
        weft_buf_append(&b, "", 1);
        printf("%s,\"generation\":%d,\"total\":%lld,\"read\":%lld,\"published\":%lld,"
               "\"reemit\":%lld,\"run\":%lld,\"dead\":%lld,\"dropped\":%lld,\"skipped\":%lld,"
               "\"older_than_retention\":%lld}\n",
               b.p, r->generation, (long long)weft_replay_range_total(r), r->c.read, r->c.published,
               r->c.reemit, r->c.run, r->c.dead, r->c.dropped, r->c.skipped, r->c.older);
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
        printf("replay %lld %s: %s://%s%s%s, %lld events read, %lld republished\n", r->id, status,
               weft_cli_scheme(r->broker), r->topic,
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
    if (r->c.older)
        printf("warning: %lld events are older than the ledger's retention (retention.ledger = "
               "%s):\n  one whose ledger row was deleted %s instead of re-emitting its result\n",
               r->c.older, weft_config_str(r->cfg, "retention.ledger"),
               r->dry_run ? "would run again (counted above as such)" : "ran again");
}

/* Events older than retention.ledger may have lost their ledger rows, and
 * then run again instead of re-emitting (store/LEDGER.md "Retention"):
 * the read loops count them, and a --from-time before the cutoff is
 * said at once. 0, or 2 (a bad retention.ledger). */
static int retention_cutoff(rp_t *r, const rp_args_t *a)
{
    weft_retention_t rt;
    char err[512];
    if (weft_retention_config(r->cfg, &rt, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft replay: %s\n", err);
        return 2;
    }
    if (r->reexecute || rt.ledger_ms == 0 || rt.batch == 0)
        return 0;
    int64_t now = weft_cli_now_ms(), from;
    r->retention_cutoff_ms = now - rt.ledger_ms;
    if (a->from_time && weft_cli_parse_time(a->from_time, now, &from, err, sizeof(err)) == 0 &&
        from < r->retention_cutoff_ms)
        fprintf(stderr,
                "weft replay: warning: --from-time is older than the ledger's retention "
                "(retention.ledger = %s): events older than that whose ledger rows were deleted "
                "run again instead of re-emitting their results\n",
                weft_config_str(r->cfg, "retention.ledger"));
    return 0;
}

static int list_replays(const weft_config_t *cfg, int json)
{
    weft_pg_conn_t *pg = weft_cli_pg_connect(cfg, "weft replay");
    if (!pg)
        return 1;
    char err[1024];
    int rc = 0;
    if (json) {
        char *text = weft_replay_list_json(pg, err, sizeof(err));
        if (text)
            printf("%s\n", text);
        free(text);
        rc = text ? 0 : 1;
    } else {
        weft_replay_list_t l;
        rc = weft_replay_list(pg, &l, err, sizeof(err)) == 0 ? 0 : 1;
        if (rc == 0 && l.n == 0) {
            printf("no replays\n");
        } else if (rc == 0) {
            printf("%-6s %-12s %-20s %-24s %-4s %-15s %-20s %-19s %s\n", "ID", "STATUS", "TRIGGER",
                   "TOPIC", "GEN", "OFFSETS", "REEMIT/RUN/DEAD/SKIP", "CREATED (UTC)", "RANGE");
            for (size_t i = 0; i < l.n; i++)
                printf("%-6s %-12s %-20s %-24s %-4s %-15s %-20s %-19s %s\n", l.rows[i][0],
                       l.rows[i][1], l.rows[i][2], l.rows[i][3], l.rows[i][4], l.rows[i][5],
                       l.rows[i][6], l.rows[i][7], l.rows[i][8]);
        }
        weft_replay_list_free(&l);
    }
    if (rc)
        fprintf(stderr, "weft replay --list: %s", err);
    weft_pgconn_close(pg);
    return rc;
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
    weft_replay_row_t row;
    if (weft_replay_load(r->pg, r->id, &row) != 0) {
        fprintf(stderr, "weft replay: no replay %s (weft replay --list shows them)\n", id);
        return 1;
    }
    if (strcmp(row.status, "done") == 0) {
        fprintf(stderr, "weft replay: replay %s is done; nothing to resume\n", id);
        return 1;
    }
    int rc = 0;
    if (row.trigger[0])
        rc = find_trigger(r, row.trigger);
    snprintf(r->topic, sizeof(r->topic), "%s", row.topic);
    weft_broker_parse(row.broker, &r->broker);
    if (r->broker == WEFT_BROKER_JETSTREAM && !r->stream[0]) {
        const weft_trigger_t *on[1];
        if (weft_catalog_on_topic(r->cat, r->broker, r->topic, on, 1) == 0) {
            fprintf(stderr, "weft replay: no enabled trigger consumes jetstream://%s any more\n",
                    r->topic);
            return 1;
        }
        snprintf(r->stream, sizeof(r->stream), "%s", on[0]->stream ? on[0]->stream : "");
    }
    r->reexecute = row.reexecute;
    r->generation = row.generation;
    r->c = (rp_counts_t){row.c.read, row.c.published, row.c.reemit,  row.c.run,
                         row.c.dead, row.c.dropped,   row.c.skipped, 0};
    if (rc != 0)
        return rc;
    weft_replay_part_t *ps = NULL;
    char err[1024];
    if (weft_replay_load_parts(r->pg, r->id, &ps, &r->n_parts, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft replay: %s", err);
        return 1;
    }
    r->parts = calloc(r->n_parts ? r->n_parts : 1, sizeof(*r->parts));
    for (size_t i = 0; r->parts && i < r->n_parts; i++) {
        r->parts[i].partition = ps[i].partition;
        r->parts[i].start = ps[i].start;
        r->parts[i].end = ps[i].end;
        r->parts[i].next = ps[i].next;
    }
    free(ps);
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
                fprintf(stderr,
                        "weft replay: %s: core NATS keeps no messages; there is "
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
        fprintf(stderr,
                "weft replay: %s://%s is a JetStream subject: give its range with "
                "--from-seq/--to-seq or --from-time/--to-time\n",
                scheme, r->topic);
        return 2;
    }
    if (!a->resume && !js && (a->from_seq || a->to_seq)) {
        fprintf(stderr,
                "weft replay: --from-seq/--to-seq are JetStream stream sequences; "
                "kafka://%s takes --from-offset/--to-offset\n",
                r->topic);
        return 2;
    }
    if (js) {
        const char *url = weft_config_str(r->cfg, "nats.url");
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
    if ((rc = retention_cutoff(r, a)) != 0)
        return rc;
    if (!a->resume) {
        if ((rc = js ? weft_replay_range_js(r, a) : weft_replay_range_kafka(r, a)) != 0)
            return rc;
        int64_t total = weft_replay_range_total(r);
        if (total == 0) {
            char note[600];
            snprintf(note, sizeof(note), "nothing to replay: the range of %s://%s holds no event",
                     scheme, r->topic);
            /* --json answers JSON here too: the summary, status "empty"
             * (no replay was created: id 0, every count 0). */
            if (r->json)
                print_summary(r, "empty", note);
            else
                printf("%s\n", note);
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
                scheme, r->topic,
                (long long)(weft_replay_range_total(r) - weft_replay_progress_done(r)),
                (long long)weft_replay_range_total(r), js ? "stream sequences" : "events");
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    rc = js ? weft_replay_read_js(r) : weft_replay_read_kafka(r);
    if (r->dry_run) {
        print_summary(r, rc == 0 ? "done" : "failed", NULL);
        return rc == 0 ? 0 : rc == 1 ? 130 : 1;
    }
    if (rc == 0) {
        set_status(r, "done", NULL);
        print_summary(r, "done", NULL);
        return 0;
    }
    set_status(r, rc == 1 ? "interrupted" : "failed", rc == 1 ? NULL : "see the command's output");
    print_summary(r, rc == 1 ? "interrupted" : "failed", NULL);
    fprintf(stderr, "weft replay: %s at %lld of %lld events; go on with: weft replay --resume %s\n",
            rc == 1 ? "interrupted" : "stopped", (long long)weft_replay_progress_done(r),
            (long long)weft_replay_range_total(r), r->idbuf);
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
        weft_pgconn_close(r.pg);
    return rc;
}
