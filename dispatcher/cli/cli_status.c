/*
 * cli_status.c - `weft status`: what the fabric is doing now. Per trigger
 * the consumer lag, in-flight events and outcomes (last minute and total);
 * per function pool its workers; which dispatchers are alive.
 *
 * Runs in the CLI process. Lag is the dispatcher group's committed offsets
 * against the high watermarks, read with a consumer handle that carries the
 * group's id but never joins it or commits (cli_kafka.c). In-flight work,
 * pools and dispatchers come from weft.dispatchers (each dispatcher's
 * heartbeat; older than 5 s means not running); outcomes from weft.ledger
 * and weft.dead_letters. When Kafka cannot be reached the rest is still
 * shown, lag as unknown, and the exit code is 1.
 */
#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_kafka.h"
#include "json.h"
#include "nats.h"

#define KAFKA_TIMEOUT_MS 10000
#define ALIVE "heartbeat_at > now() - interval '5 seconds'"

void weft_status_usage(FILE *f)
{
    fprintf(
        f,
        "usage: weft status [--json]\n"
        "\n"
        "Shows, per trigger: the consumer lag (Kafka: events published and not yet\n"
        "committed by the dispatchers' group; JetStream: messages the trigger's durable\n"
        "consumer has not delivered or not had acknowledged), events in flight, events\n"
        "waiting for a retry, and events in the last minute and in total: completed,\n"
        "ever failed (at least one failed attempt, however they ended), dead-lettered,\n"
        "dropped (cli/CLI.md defines each column). Then each function's pool (workers idle, busy,\n"
        "starting, stopping; queued invocations; crashes, timeouts) summed over live\n"
        "dispatchers, and the dispatchers with their last heartbeat. Lag is unknown\n"
        "(and the exit code 1) when Kafka or NATS cannot be reached within 10 s.\n"
        "\n"
        "examples:\n"
        "  weft status\n"
        "  weft status --json | jq '.triggers[] | select(.lag > 1000)'\n");
}

/* One pass over the ledger and one over the dead letters for all
 * triggers (the ledger's key leads with the idempotency key, 0011).
 * Every column counts events (ledger rows, dead letters), never attempts:
 * failed is the events with at least one failed attempt (first_failure_at),
 * however they ended; its last minute, those whose latest failure is that
 * recent. Retrying: events whose last attempt failed and that wait for (or
 * run) another. In flight: the events of the trigger that live
 * dispatchers hold, from their heartbeats. CLI.md names each column. */
#define TRIGGER_SQL                                                                                \
    "WITH l AS (SELECT trigger,"                                                                   \
    "   count(*) FILTER (WHERE status = 'completed'"                                               \
    "                      AND updated_at >= now() - interval '1 minute') AS done_1m,"             \
    "   count(*) FILTER (WHERE status = 'completed') AS done,"                                     \
    "   count(*) FILTER (WHERE last_failure_at >= now() - interval '1 minute') AS failed_1m,"      \
    "   count(*) FILTER (WHERE first_failure_at IS NOT NULL) AS failed,"                           \
    "   count(*) FILTER (WHERE status = 'dropped'"                                                 \
    "                      AND updated_at >= now() - interval '1 minute') AS dropped_1m,"          \
    "   count(*) FILTER (WHERE status = 'dropped') AS dropped,"                                    \
    "   count(*) FILTER (WHERE status = 'running' AND last_error IS NOT NULL) AS retrying"         \
    "   FROM weft.ledger GROUP BY trigger),"                                                       \
    " dl AS (SELECT trigger,"                                                                      \
    "   count(*) FILTER (WHERE created_at >= now() - interval '1 minute') AS dead_1m,"             \
    "   count(*) AS dead FROM weft.dead_letters GROUP BY trigger)"                                 \
    "SELECT t.name, t.source::text, t.topic, t.enabled, t.function,"                               \
    " (SELECT coalesce(sum((d.status->'triggers'->t.name->>'inflight')::bigint), 0)"               \
    "    FROM weft.dispatchers d WHERE d." ALIVE "),"                                              \
    " coalesce(l.done_1m, 0), coalesce(l.done, 0), coalesce(l.failed_1m, 0),"                      \
    " coalesce(l.failed, 0), coalesce(dl.dead_1m, 0), coalesce(dl.dead, 0),"                       \
    " coalesce(l.dropped_1m, 0), coalesce(l.dropped, 0), coalesce(l.retrying, 0),"                 \
    " coalesce(to_jsonb(t)->>'stream', ''),"                                                       \
    " coalesce(to_jsonb(t)->>'durable', 'weft_' || replace(t.name, '.', '_'))"                     \
    "  FROM weft.triggers t LEFT JOIN l ON l.trigger = t.name"                                     \
    "  LEFT JOIN dl ON dl.trigger = t.name ORDER BY t.name"

#define POOL_SQL                                                                                   \
    "SELECT p.key, max(p.value->>'mode'),"                                                         \
    " sum((p.value->>'workers')::bigint), sum((p.value->>'max_workers')::bigint),"                 \
    " sum((p.value->>'idle')::bigint), sum((p.value->>'busy')::bigint),"                           \
    " sum((p.value->>'starting')::bigint), sum((p.value->>'stopping')::bigint),"                   \
    " sum((p.value->>'queued')::bigint), bool_or((p.value->>'quarantined')::boolean),"             \
    " sum((p.value->>'invocations')::bigint), sum((p.value->>'crashes')::bigint),"                 \
    " sum((p.value->>'timeouts')::bigint)"                                                         \
    "  FROM weft.dispatchers d, jsonb_each(d.status->'pools') p"                                   \
    " WHERE d." ALIVE " GROUP BY p.key ORDER BY p.key"

#define DISPATCHER_SQL                                                                             \
    "SELECT owner, host, pid,"                                                                     \
    " to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),"                            \
    " round(extract(epoch FROM now() - heartbeat_at)::numeric, 1), " ALIVE ","                     \
    " coalesce(status->>'inflight_msgs', '0'), coalesce(status->>'waiting', '0'),"                 \
    " coalesce(status->>'paused', 'false')"                                                        \
    "  FROM weft.dispatchers ORDER BY owner"

typedef struct topic_lag {
    char *topic;
    long long lag; /* -1: unknown */
} topic_lag_t;

/* What a trigger's lag is filed under: its Kafka topic (the group's lag
 * is per topic), or "@TRIGGER" for JetStream (each trigger has its own
 * durable consumer). */
static const char *lag_key(PGresult *tr, int i, char *buf, size_t len)
{
    if (strcmp(PQgetvalue(tr, i, 1), "jetstream") == 0) {
        snprintf(buf, len, "@%s", PQgetvalue(tr, i, 0));
        return buf;
    }
    return PQgetvalue(tr, i, 2);
}

/* JetStream: messages the trigger's durable consumer has not delivered yet
 * plus those delivered and not acknowledged. */
static int read_js_lags(const weft_config_t *cfg, PGresult *trigs, topic_lag_t *out, size_t *n)
{
    weft_nats_t *nc = NULL;
    int rc = 0;
    char err[512];
    for (int i = 0; i < PQntuples(trigs); i++) {
        if (strcmp(PQgetvalue(trigs, i, 1), "jetstream") != 0 || *PQgetvalue(trigs, i, 3) != 't')
            continue;
        topic_lag_t *l = &out[(*n)++];
        char key[300];
        l->topic = strdup(lag_key(trigs, i, key, sizeof(key)));
        l->lag = -1;
        if (!nc) {
            const char *url = weft_config_str(cfg, "nats.url");
            if (!url) {
                fprintf(stderr, "weft status: JetStream lag unknown: nats.url is not set (config "
                                "file or WEFT_NATS_URL)\n");
                return -1;
            }
            nc = weft_nats_connect(url, KAFKA_TIMEOUT_MS, err, sizeof(err));
            if (!nc) {
                fprintf(stderr, "weft status: JetStream lag unknown: %s\n", err);
                return -1;
            }
        }
        uint64_t pending;
        int64_t ack_pending;
        if (weft_nats_consumer_lag(nc, PQgetvalue(trigs, i, 15), PQgetvalue(trigs, i, 16),
                                   &pending, &ack_pending, err, sizeof(err)) != 0) {
            /* No consumer yet: no dispatcher has run the trigger. */
            fprintf(stderr, "weft status: lag of %s unknown: %s\n", PQgetvalue(trigs, i, 0), err);
            continue;
        }
        l->lag = (long long)pending + (ack_pending > 0 ? ack_pending : 0);
    }
    weft_nats_destroy(nc);
    return rc;
}

/* Lag of the group on each Kafka topic of an enabled trigger. Returns 0,
 * or -1 when some lag could not be read (reported on stderr). */
static int read_lags(const weft_config_t *cfg, PGresult *trigs, topic_lag_t **out, size_t *n)
{
    *out = calloc((size_t)PQntuples(trigs) + 1, sizeof(topic_lag_t));
    *n = 0;
    if (!*out)
        return -1;
    int js_rc = read_js_lags(cfg, trigs, *out, n);
    size_t n_js = *n;
    for (int i = 0; i < PQntuples(trigs); i++) {
        if (strcmp(PQgetvalue(trigs, i, 1), "kafka") != 0 || *PQgetvalue(trigs, i, 3) != 't')
            continue;
        int seen = 0;
        for (size_t k = 0; k < *n; k++)
            seen |= strcmp((*out)[k].topic, PQgetvalue(trigs, i, 2)) == 0;
        if (!seen) {
            (*out)[*n].topic = strdup(PQgetvalue(trigs, i, 2));
            (*out)[*n].lag = -1;
            (*n)++;
        }
    }
    if (*n == n_js)
        return js_rc;
    char err[512];
    weft_clik_t *k = weft_clik_new(cfg, weft_cli_group_id(cfg), err, sizeof(err));
    if (!k) {
        fprintf(stderr, "weft status: %s\n", err);
        return -1;
    }
    int rc = js_rc;
    for (size_t t = n_js; t < *n; t++) {
        int32_t *parts = NULL;
        size_t np = 0;
        int prc = weft_clik_partitions(k, (*out)[t].topic, KAFKA_TIMEOUT_MS, &parts, &np, err,
                                       sizeof(err));
        if (prc == -2) {
            (*out)[t].lag = 0; /* nothing published yet */
            continue;
        }
        if (prc != 0) {
            fprintf(stderr, "weft status: lag unknown: %s\n", err);
            rc = -1;
            break; /* the broker is unreachable: do not wait again per topic */
        }
        int64_t *committed = calloc(np, sizeof(int64_t));
        long long lag = 0;
        if (!committed || weft_clik_committed(k, (*out)[t].topic, parts, np, committed,
                                              KAFKA_TIMEOUT_MS, err, sizeof(err)) != 0) {
            fprintf(stderr, "weft status: lag of %s unknown: %s\n", (*out)[t].topic,
                    committed ? err : "out of memory");
            rc = -1;
            lag = -1;
        }
        for (size_t p = 0; lag >= 0 && p < np; p++) {
            int64_t lo, hi;
            if (weft_clik_watermarks(k, (*out)[t].topic, parts[p], KAFKA_TIMEOUT_MS, &lo, &hi, err,
                                     sizeof(err)) != 0) {
                fprintf(stderr, "weft status: lag of %s unknown: %s\n", (*out)[t].topic, err);
                rc = -1;
                lag = -1;
                break;
            }
            int64_t pos = committed[p] >= 0 ? committed[p] : lo;
            if (pos < lo)
                pos = lo;
            lag += hi > pos ? hi - pos : 0;
        }
        (*out)[t].lag = lag;
        free(committed);
        free(parts);
    }
    weft_clik_destroy(k);
    return rc;
}

static long long lag_of(const topic_lag_t *lags, size_t n, const char *topic)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(lags[i].topic, topic) == 0)
            return lags[i].lag;
    return -1;
}

static void print_json(PGresult *tr, PGresult *po, PGresult *di, const topic_lag_t *lags, size_t nl,
                       const char *group)
{
    weft_buf_t b = {0};
    weft_buf_append(&b, "{\"group\":", 9);
    weft_json_append_string(&b, group, strlen(group));
    weft_buf_append(&b, ",\"triggers\":[", 13);
    for (int i = 0; i < PQntuples(tr); i++) {
        char key[300];
        long long lag = lag_of(lags, nl, lag_key(tr, i, key, sizeof(key)));
        weft_buf_printf(&b, "%s{\"name\":", i ? "," : "");
        weft_json_append_string(&b, PQgetvalue(tr, i, 0), strlen(PQgetvalue(tr, i, 0)));
        weft_buf_printf(&b, ",\"source\":\"%s\",\"topic\":", PQgetvalue(tr, i, 1));
        weft_json_append_string(&b, PQgetvalue(tr, i, 2), strlen(PQgetvalue(tr, i, 2)));
        weft_buf_printf(
            &b, ",\"enabled\":%s,\"function\":", *PQgetvalue(tr, i, 3) == 't' ? "true" : "false");
        weft_json_append_string(&b, PQgetvalue(tr, i, 4), strlen(PQgetvalue(tr, i, 4)));
        if (lag >= 0)
            weft_buf_printf(&b, ",\"lag\":%lld", lag);
        else
            weft_buf_printf(&b, ",\"lag\":null");
        weft_buf_printf(&b,
                        ",\"inflight\":%s,\"retrying\":%s,"
                        "\"last_minute\":{\"completed\":%s,\"failed\":%s,\"dead\":%s,"
                        "\"dropped\":%s},"
                        "\"total\":{\"completed\":%s,\"failed\":%s,\"dead\":%s,\"dropped\":%s}}",
                        PQgetvalue(tr, i, 5), PQgetvalue(tr, i, 14), PQgetvalue(tr, i, 6),
                        PQgetvalue(tr, i, 8), PQgetvalue(tr, i, 10), PQgetvalue(tr, i, 12),
                        PQgetvalue(tr, i, 7), PQgetvalue(tr, i, 9), PQgetvalue(tr, i, 11),
                        PQgetvalue(tr, i, 13));
    }
    weft_buf_append(&b, "],\"pools\":[", 11);
    for (int i = 0; po && i < PQntuples(po); i++) {
        weft_buf_printf(&b, "%s{\"function\":", i ? "," : "");
        weft_json_append_string(&b, PQgetvalue(po, i, 0), strlen(PQgetvalue(po, i, 0)));
        weft_buf_printf(&b, ",\"mode\":");
        weft_json_append_string(&b, PQgetvalue(po, i, 1), strlen(PQgetvalue(po, i, 1)));
        weft_buf_printf(&b,
                        ",\"workers\":%s,\"max_workers\":%s,\"idle\":%s,\"busy\":%s,"
                        "\"starting\":%s,\"stopping\":%s,\"queued\":%s,\"quarantined\":%s,"
                        "\"invocations\":%s,\"crashes\":%s,\"timeouts\":%s}",
                        PQgetvalue(po, i, 2), PQgetvalue(po, i, 3), PQgetvalue(po, i, 4),
                        PQgetvalue(po, i, 5), PQgetvalue(po, i, 6), PQgetvalue(po, i, 7),
                        PQgetvalue(po, i, 8), *PQgetvalue(po, i, 9) == 't' ? "true" : "false",
                        PQgetvalue(po, i, 10), PQgetvalue(po, i, 11), PQgetvalue(po, i, 12));
    }
    weft_buf_append(&b, "],\"dispatchers\":[", 17);
    for (int i = 0; di && i < PQntuples(di); i++) {
        weft_buf_printf(&b, "%s{\"owner\":", i ? "," : "");
        weft_json_append_string(&b, PQgetvalue(di, i, 0), strlen(PQgetvalue(di, i, 0)));
        weft_buf_printf(&b, ",\"host\":");
        weft_json_append_string(&b, PQgetvalue(di, i, 1), strlen(PQgetvalue(di, i, 1)));
        weft_buf_printf(&b,
                        ",\"pid\":%s,\"started_at\":\"%sZ\",\"heartbeat_age_s\":%s,"
                        "\"alive\":%s,\"inflight_msgs\":%s,\"waiting\":%s,\"paused\":%s}",
                        PQgetvalue(di, i, 2), PQgetvalue(di, i, 3), PQgetvalue(di, i, 4),
                        *PQgetvalue(di, i, 5) == 't' ? "true" : "false", PQgetvalue(di, i, 6),
                        PQgetvalue(di, i, 7),
                        strcmp(PQgetvalue(di, i, 8), "true") == 0 ? "true" : "false");
    }
    weft_buf_append(&b, "]}\n", 4);
    fputs(b.p, stdout);
    weft_buf_free(&b);
}

static void print_text(PGresult *tr, PGresult *po, PGresult *di, const topic_lag_t *lags, size_t nl,
                       const char *group)
{
    printf("TRIGGERS (lag: Kafka group \"%s\", JetStream durable consumers; events, last "
           "minute / total)\n",
           group);
    printf("%-24s %-28s %8s %9s %8s %17s %15s %15s %15s\n", "TRIGGER", "SOURCE", "LAG", "IN-FLIGHT",
           "RETRYING", "COMPLETED", "EVER FAILED", "DEAD", "DROPPED");
    for (int i = 0; i < PQntuples(tr); i++) {
        char src[300], lag[32], c[4][48];
        snprintf(src, sizeof(src), "%s://%s%s", PQgetvalue(tr, i, 1), PQgetvalue(tr, i, 2),
                 *PQgetvalue(tr, i, 3) == 't' ? "" : " (off)");
        char key[300];
        long long l = lag_of(lags, nl, lag_key(tr, i, key, sizeof(key)));
        if (*PQgetvalue(tr, i, 3) != 't')
            snprintf(lag, sizeof(lag), "-");
        else if (l >= 0)
            snprintf(lag, sizeof(lag), "%lld", l);
        else
            snprintf(lag, sizeof(lag), "?");
        for (int k = 0; k < 4; k++)
            snprintf(c[k], sizeof(c[k]), "%s / %s", PQgetvalue(tr, i, 6 + 2 * k),
                     PQgetvalue(tr, i, 7 + 2 * k));
        printf("%-24s %-28s %8s %9s %8s %17s %15s %15s %15s\n", PQgetvalue(tr, i, 0), src, lag,
               PQgetvalue(tr, i, 5), PQgetvalue(tr, i, 14), c[0], c[1], c[2], c[3]);
    }
    if (PQntuples(tr) == 0)
        printf("(no triggers)\n");
    printf("\nPOOLS (live dispatchers)\n");
    if (!po || PQntuples(po) == 0) {
        printf("(none: no dispatcher is running)\n");
    } else {
        printf("%-24s %-9s %8s %5s %5s %9s %9s %7s %12s %8s %9s %s\n", "FUNCTION", "MODE",
               "WORKERS", "IDLE", "BUSY", "STARTING", "STOPPING", "QUEUED", "INVOCATIONS",
               "CRASHES", "TIMEOUTS", "STATE");
        for (int i = 0; i < PQntuples(po); i++) {
            char w[48];
            snprintf(w, sizeof(w), "%s/%s", PQgetvalue(po, i, 2), PQgetvalue(po, i, 3));
            printf("%-24s %-9s %8s %5s %5s %9s %9s %7s %12s %8s %9s %s\n", PQgetvalue(po, i, 0),
                   PQgetvalue(po, i, 1), w, PQgetvalue(po, i, 4), PQgetvalue(po, i, 5),
                   PQgetvalue(po, i, 6), PQgetvalue(po, i, 7), PQgetvalue(po, i, 8),
                   PQgetvalue(po, i, 10), PQgetvalue(po, i, 11), PQgetvalue(po, i, 12),
                   *PQgetvalue(po, i, 9) == 't' ? "quarantined" : "ok");
        }
    }
    printf("\nDISPATCHERS\n");
    if (!di || PQntuples(di) == 0) {
        printf("(none has reported: is weft run started?)\n");
        return;
    }
    printf("%-40s %-8s %-19s %10s %9s %8s %s\n", "OWNER", "PID", "STARTED (UTC)", "HEARTBEAT",
           "IN-FLIGHT", "WAITING", "STATE");
    for (int i = 0; i < PQntuples(di); i++) {
        char hb[32];
        snprintf(hb, sizeof(hb), "%ss ago", PQgetvalue(di, i, 4));
        const char *state = *PQgetvalue(di, i, 5) != 't'                ? "not running"
                            : strcmp(PQgetvalue(di, i, 8), "true") == 0 ? "alive, paused"
                                                                        : "alive";
        printf("%-40s %-8s %-19s %10s %9s %8s %s\n", PQgetvalue(di, i, 0), PQgetvalue(di, i, 2),
               PQgetvalue(di, i, 3), hb, PQgetvalue(di, i, 6), PQgetvalue(di, i, 7), state);
    }
}

int weft_status_main(const weft_config_t *cfg, int argc, char **argv)
{
    int json = 0;
    static const struct option opts[] = {
        {"json", no_argument, NULL, 'j'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
            break;
        case 'h':
            weft_status_usage(stdout);
            return 0;
        default:
            weft_status_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft status: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    PGconn *pg = weft_cli_pg_connect(cfg, "weft status");
    if (!pg)
        return 1;
    PGresult *tr = PQexec(pg, TRIGGER_SQL);
    PGresult *po = PQexec(pg, POOL_SQL);
    PGresult *di = PQexec(pg, DISPATCHER_SQL);
    int rc = 0;
    PGresult *all[3] = {tr, po, di};
    for (int i = 0; i < 3; i++) {
        if (PQresultStatus(all[i]) != PGRES_TUPLES_OK) {
            fprintf(stderr, "weft status: %s", PQresultErrorMessage(all[i]));
            rc = 1;
        }
    }
    if (rc == 0) {
        topic_lag_t *lags = NULL;
        size_t nl = 0;
        if (read_lags(cfg, tr, &lags, &nl) != 0)
            rc = 1;
        if (json)
            print_json(tr, po, di, lags, nl, weft_cli_group_id(cfg));
        else
            print_text(tr, po, di, lags, nl, weft_cli_group_id(cfg));
        for (size_t i = 0; lags && i < nl; i++)
            free(lags[i].topic);
        free(lags);
    }
    for (int i = 0; i < 3; i++)
        PQclear(all[i]);
    PQfinish(pg);
    return rc;
}
