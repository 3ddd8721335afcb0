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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_kafka.h"
#include "json.h"
#include "nats.h"
#include "pgconn.h"
#include "status.h"

#define KAFKA_TIMEOUT_MS 10000

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

typedef struct topic_lag {
    char *topic;
    long long lag; /* -1: unknown */
} topic_lag_t;

/* What a trigger's lag is filed under: its Kafka topic (the group's lag
 * is per topic), or "@TRIGGER" for JetStream (each trigger has its own
 * durable consumer). */
static const char *lag_key(const weft_status_trigger_t *t, char *buf, size_t len)
{
    if (strcmp(t->source, "jetstream") == 0) {
        snprintf(buf, len, "@%s", t->name);
        return buf;
    }
    return t->topic;
}

/* JetStream: messages the trigger's durable consumer has not delivered yet
 * plus those delivered and not acknowledged. */
static int read_js_lags(const weft_config_t *cfg, const weft_status_t *st, topic_lag_t *out,
                        size_t *n)
{
    weft_nats_t *nc = NULL;
    int rc = 0;
    char err[512];
    for (size_t i = 0; i < st->n_trigs; i++) {
        const weft_status_trigger_t *t = &st->trigs[i];
        if (strcmp(t->source, "jetstream") != 0 || !t->enabled)
            continue;
        topic_lag_t *l = &out[(*n)++];
        char key[300];
        l->topic = strdup(lag_key(t, key, sizeof(key)));
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
        if (weft_nats_consumer_lag(nc, t->stream, t->durable, &pending, &ack_pending, err,
                                   sizeof(err)) != 0) {
            /* No consumer yet: no dispatcher has run the trigger. */
            fprintf(stderr, "weft status: lag of %s unknown: %s\n", t->name, err);
            continue;
        }
        l->lag = (long long)pending + (ack_pending > 0 ? ack_pending : 0);
    }
    weft_nats_destroy(nc);
    return rc;
}

/* Lag of the group on each Kafka topic of an enabled trigger. Returns 0,
 * or -1 when some lag could not be read (reported on stderr). */
static int read_lags(const weft_config_t *cfg, const weft_status_t *st, topic_lag_t **out,
                     size_t *n)
{
    *out = calloc(st->n_trigs + 1, sizeof(topic_lag_t));
    *n = 0;
    if (!*out)
        return -1;
    int js_rc = read_js_lags(cfg, st, *out, n);
    size_t n_js = *n;
    for (size_t i = 0; i < st->n_trigs; i++) {
        const weft_status_trigger_t *t = &st->trigs[i];
        if (strcmp(t->source, "kafka") != 0 || !t->enabled)
            continue;
        int seen = 0;
        for (size_t k = 0; k < *n; k++)
            seen |= strcmp((*out)[k].topic, t->topic) == 0;
        if (!seen) {
            (*out)[*n].topic = strdup(t->topic);
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

static void json_str(weft_buf_t *b, const char *s)
{
    weft_json_append_string(b, s, strlen(s));
}

static void print_json(const weft_status_t *st, const topic_lag_t *lags, size_t nl,
                       const char *group)
{
    weft_buf_t b = {0};
    weft_buf_append(&b, "{\"group\":", 9);
    json_str(&b, group);
    weft_buf_append(&b, ",\"triggers\":[", 13);
    for (size_t i = 0; i < st->n_trigs; i++) {
        const weft_status_trigger_t *t = &st->trigs[i];
        char key[300];
        long long lag = lag_of(lags, nl, lag_key(t, key, sizeof(key)));
        weft_buf_printf(&b, "%s{\"name\":", i ? "," : "");
        json_str(&b, t->name);
        weft_buf_printf(&b, ",\"source\":\"%s\",\"topic\":", t->source);
        json_str(&b, t->topic);
        weft_buf_printf(&b, ",\"enabled\":%s,\"function\":", t->enabled ? "true" : "false");
        json_str(&b, t->function);
        if (lag >= 0)
            weft_buf_printf(&b, ",\"lag\":%lld", lag);
        else
            weft_buf_printf(&b, ",\"lag\":null");
        weft_buf_printf(&b,
                        ",\"inflight\":%s,\"retrying\":%s,"
                        "\"last_minute\":{\"completed\":%s,\"failed\":%s,\"dead\":%s,"
                        "\"dropped\":%s},"
                        "\"total\":{\"completed\":%s,\"failed\":%s,\"dead\":%s,\"dropped\":%s}}",
                        t->inflight, t->retrying, t->completed[0], t->failed[0], t->dead[0],
                        t->dropped[0], t->completed[1], t->failed[1], t->dead[1], t->dropped[1]);
    }
    weft_buf_append(&b, "],\"pools\":[", 11);
    for (size_t i = 0; i < st->n_pools; i++) {
        const weft_status_pool_t *p = &st->pools[i];
        weft_buf_printf(&b, "%s{\"function\":", i ? "," : "");
        json_str(&b, p->function);
        weft_buf_printf(&b, ",\"mode\":");
        json_str(&b, p->mode);
        weft_buf_printf(&b,
                        ",\"workers\":%s,\"max_workers\":%s,\"idle\":%s,\"busy\":%s,"
                        "\"starting\":%s,\"stopping\":%s,\"queued\":%s,\"quarantined\":%s,"
                        "\"invocations\":%s,\"crashes\":%s,\"timeouts\":%s}",
                        p->workers, p->max_workers, p->idle, p->busy, p->starting, p->stopping,
                        p->queued, p->quarantined ? "true" : "false", p->invocations, p->crashes,
                        p->timeouts);
    }
    weft_buf_append(&b, "],\"dispatchers\":[", 17);
    for (size_t i = 0; i < st->n_disps; i++) {
        const weft_status_dispatcher_t *w = &st->disps[i];
        weft_buf_printf(&b, "%s{\"owner\":", i ? "," : "");
        json_str(&b, w->owner);
        weft_buf_printf(&b, ",\"host\":");
        json_str(&b, w->host);
        weft_buf_printf(&b,
                        ",\"pid\":%s,\"started_at\":\"%sZ\",\"heartbeat_age_s\":%s,"
                        "\"alive\":%s,\"inflight_msgs\":%s,\"waiting\":%s,\"paused\":%s}",
                        w->pid, w->started_at, w->heartbeat_age_s, w->alive ? "true" : "false",
                        w->inflight_msgs, w->waiting, w->paused ? "true" : "false");
    }
    weft_buf_append(&b, "]}\n", 4);
    fputs(b.p, stdout);
    weft_buf_free(&b);
}

static void print_text(const weft_status_t *st, const topic_lag_t *lags, size_t nl,
                       const char *group)
{
    printf("TRIGGERS (lag: Kafka group \"%s\", JetStream durable consumers; events, last "
           "minute / total)\n",
           group);
    printf("%-24s %-28s %8s %9s %8s %17s %15s %15s %15s\n", "TRIGGER", "SOURCE", "LAG", "IN-FLIGHT",
           "RETRYING", "COMPLETED", "EVER FAILED", "DEAD", "DROPPED");
    for (size_t i = 0; i < st->n_trigs; i++) {
        const weft_status_trigger_t *t = &st->trigs[i];
        char src[300], lag[32], c[4][48];
        snprintf(src, sizeof(src), "%s://%s%s", t->source, t->topic, t->enabled ? "" : " (off)");
        char key[300];
        long long l = lag_of(lags, nl, lag_key(t, key, sizeof(key)));
        if (!t->enabled)
            snprintf(lag, sizeof(lag), "-");
        else if (l >= 0)
            snprintf(lag, sizeof(lag), "%lld", l);
        else
            snprintf(lag, sizeof(lag), "?");
        char *const *cols[4] = {t->completed, t->failed, t->dead, t->dropped};
        for (int k = 0; k < 4; k++)
            snprintf(c[k], sizeof(c[k]), "%s / %s", cols[k][0], cols[k][1]);
        printf("%-24s %-28s %8s %9s %8s %17s %15s %15s %15s\n", t->name, src, lag, t->inflight,
               t->retrying, c[0], c[1], c[2], c[3]);
    }
    if (st->n_trigs == 0)
        printf("(no triggers)\n");
    printf("\nPOOLS (live dispatchers)\n");
    if (st->n_pools == 0) {
        printf("(none: no dispatcher is running)\n");
    } else {
        printf("%-24s %-9s %8s %5s %5s %9s %9s %7s %12s %8s %9s %s\n", "FUNCTION", "MODE",
               "WORKERS", "IDLE", "BUSY", "STARTING", "STOPPING", "QUEUED", "INVOCATIONS",
               "CRASHES", "TIMEOUTS", "STATE");
        for (size_t i = 0; i < st->n_pools; i++) {
            const weft_status_pool_t *p = &st->pools[i];
            char w[48];
            snprintf(w, sizeof(w), "%s/%s", p->workers, p->max_workers);
            printf("%-24s %-9s %8s %5s %5s %9s %9s %7s %12s %8s %9s %s\n", p->function, p->mode, w,
                   p->idle, p->busy, p->starting, p->stopping, p->queued, p->invocations,
                   p->crashes, p->timeouts, p->quarantined ? "quarantined" : "ok");
        }
    }
    printf("\nDISPATCHERS\n");
    if (st->n_disps == 0) {
        printf("(none has reported: is weft run started?)\n");
        return;
    }
    printf("%-40s %-8s %-19s %10s %9s %8s %s\n", "OWNER", "PID", "STARTED (UTC)", "HEARTBEAT",
           "IN-FLIGHT", "WAITING", "STATE");
    for (size_t i = 0; i < st->n_disps; i++) {
        const weft_status_dispatcher_t *w = &st->disps[i];
        char hb[32];
        snprintf(hb, sizeof(hb), "%ss ago", w->heartbeat_age_s);
        const char *state = !w->alive ? "not running" : w->paused ? "alive, paused" : "alive";
        printf("%-40s %-8s %-19s %10s %9s %8s %s\n", w->owner, w->pid, w->started_at, hb,
               w->inflight_msgs, w->waiting, state);
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
    weft_pg_conn_t *pg = weft_cli_pg_connect(cfg, "weft status");
    if (!pg)
        return 1;
    weft_status_t st;
    char err[2048];
    int rc = 0;
    if (weft_status_read(pg, &st, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft status: %s", err);
        rc = 1;
    } else {
        topic_lag_t *lags = NULL;
        size_t nl = 0;
        if (read_lags(cfg, &st, &lags, &nl) != 0)
            rc = 1;
        if (json)
            print_json(&st, lags, nl, weft_cli_group_id(cfg));
        else
            print_text(&st, lags, nl, weft_cli_group_id(cfg));
        for (size_t i = 0; lags && i < nl; i++)
            free(lags[i].topic);
        free(lags);
        weft_status_free(&st);
    }
    weft_pgconn_close(pg);
    return rc;
}
