/*
 * dlq.c - `weft dlq list | show | redrive`: the operator's view of dead
 * letters (weft.dead_letters) and their re-drive to the source topic.
 *
 * Runs in the CLI process. A re-drive holds the dead letters' rows and
 * their ledger rows locked in one transaction while it publishes and waits
 * for the broker's acknowledgement, and only then commits. So a dead letter
 * is re-driven at most once (the row is marked), and a dispatcher that
 * consumes the re-driven event before the commit waits on the ledger row
 * and then sees it reset, never the stale 'dead' state. A crash before the
 * commit leaves the dead letter as it was: re-drive it again.
 */
#include "dlq.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "encode.h"
#include "json.h"
#include "deadletters.h"
#include "kafka.h"
#include "nats.h"
#include "pgconn.h"
#include "ledger.h"
#include "wire.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: weft dlq list    [--trigger T] [--since TIME|DURATION] [--limit N] [--json]\n"
            "       weft dlq show    ID [--json]\n"
            "       weft dlq redrive (--trigger T | --id ID ...) [--new-key] [--dry-run]\n"
            "\n"
            "Dead letters are events that failed for good (max_attempts reached, a\n"
            "non-retryable error, or undecodable input). They are on each trigger's\n"
            "dead-letter topic and in weft.dead_letters.\n"
            "\n"
            "redrive republishes the original value and headers to the source topic\n"
            "(Kafka, JetStream or core NATS, where the event came from), for the\n"
            "trigger it died in only, with provenance headers (weft-redrive-id,\n"
            "weft-redrive-trigger). It keeps the event's idempotency key (the ledger\n"
            "entry is reset so it runs again) unless --new-key. A dead letter is\n"
            "re-driven at most once.\n"
            "\n"
            "examples:\n"
            "  weft dlq list --trigger greet --since 1h\n"
            "  weft dlq show 42\n"
            "  weft dlq redrive --trigger greet\n"
            "  weft dlq redrive --id 42 --id 43 --new-key\n");
}

static weft_pg_conn_t *connect_pg(const weft_config_t *cfg)
{
    const char *conninfo = weft_config_str(cfg, "pg.conninfo");
    if (!conninfo) {
        fprintf(stderr, "weft dlq: pg.conninfo is not set (config file or WEFT_PG)\n");
        return NULL;
    }
    char err[1024];
    weft_pg_conn_t *pg = weft_pgconn_connect(conninfo, err, sizeof(err));
    if (!pg)
        fprintf(stderr, "weft dlq: cannot connect to PostgreSQL: %s", err);
    return pg;
}

/* "15m", "2h", "7d", "30s" -> an interval literal; anything else is taken
 * as a timestamp by PostgreSQL. */
static int since_is_duration(const char *s, char *out, size_t len)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || end[0] == '\0' || end[1] != '\0')
        return 0;
    const char *unit = end[0] == 's'   ? "seconds"
                       : end[0] == 'm' ? "minutes"
                       : end[0] == 'h' ? "hours"
                       : end[0] == 'd' ? "days"
                                       : NULL;
    if (!unit)
        return 0;
    snprintf(out, len, "%ld %s", v, unit);
    return 1;
}

static int cmd_list(const weft_config_t *cfg, const char *trigger, const char *since,
                    long limit, int json)
{
    weft_pg_conn_t *pg = connect_pg(cfg);
    if (!pg)
        return 1;
    char interval[64] = "";
    const char *params[4] = {trigger, NULL, NULL, NULL};
    char lim[32];
    snprintf(lim, sizeof(lim), "%ld", limit);
    params[3] = lim;
    if (since && since_is_duration(since, interval, sizeof(interval)))
        params[1] = interval;
    else
        params[2] = since;
    char err[1024];
    weft_pg_result_t *r =
        weft_deadletters_list(pg, params[0], params[1], params[2], params[3], err, sizeof(err));
    if (!r) {
        fprintf(stderr, "weft dlq list: %s", err);
        weft_pgconn_close(pg);
        return 1;
    }
    int n = weft_pgresult_rows(r);
    if (json) {
        weft_buf_t b = {0};
        weft_buf_append(&b, "[", 1);
        for (int i = 0; i < n; i++) {
            weft_buf_printf(&b, "%s{\"id\":%s,\"trigger\":", i ? "," : "",
                            weft_pgresult_value(r, i, 0));
            weft_json_append_string(&b, weft_pgresult_value(r, i, 1),
                                    strlen(weft_pgresult_value(r, i, 1)));
            weft_buf_append(&b, ",\"reason\":", 10);
            weft_json_append_string(&b, weft_pgresult_value(r, i, 2),
                                    strlen(weft_pgresult_value(r, i, 2)));
            weft_buf_printf(&b, ",\"attempts\":%s,\"source_topic\":", weft_pgresult_value(r, i, 3));
            weft_json_append_string(&b, weft_pgresult_value(r, i, 4),
                                    strlen(weft_pgresult_value(r, i, 4)));
            weft_buf_printf(&b,
                            ",\"source_partition\":%s,\"source_offset\":%s,\"created_at\":\"%s\","
                            "\"redriven\":%s}",
                            weft_pgresult_value(r, i, 5), weft_pgresult_value(r, i, 6),
                            weft_pgresult_value(r, i, 7),
                            *weft_pgresult_value(r, i, 8) ? "true" : "false");
        }
        weft_buf_append(&b, "]\n", 2);
        fputs(b.p, stdout);
        weft_buf_free(&b);
    } else if (n == 0) {
        printf("no dead letters\n");
    } else {
        static const char *const heads[] = {"ID",     "TRIGGER", "REASON",   "ATTEMPTS",
                                            "SOURCE", "CREATED", "REDRIVEN", "ERROR"};
        int w[8];
        for (int c = 0; c < 8; c++)
            w[c] = (int)strlen(heads[c]);
        char src[512];
        for (int i = 0; i < n; i++) {
            int cols[8] = {0, 1, 2, 3, -1, 7, 8, 9};
            for (int c = 0; c < 8; c++) {
                int len;
                if (cols[c] < 0)
                    len = snprintf(src, sizeof(src), "%s/%s@%s", weft_pgresult_value(r, i, 4),
                                   weft_pgresult_value(r, i, 5), weft_pgresult_value(r, i, 6));
                else
                    len = (int)strlen(weft_pgresult_value(r, i, cols[c]));
                if (len > w[c])
                    w[c] = len;
            }
        }
        printf("%-*s  %-*s  %-*s  %*s  %-*s  %-*s  %-*s  %s\n", w[0], heads[0], w[1], heads[1],
               w[2], heads[2], w[3], heads[3], w[4], heads[4], w[5], heads[5], w[6], heads[6],
               heads[7]);
        for (int i = 0; i < n; i++) {
            snprintf(src, sizeof(src), "%s/%s@%s", weft_pgresult_value(r, i, 4),
                     weft_pgresult_value(r, i, 5), weft_pgresult_value(r, i, 6));
            printf("%-*s  %-*s  %-*s  %*s  %-*s  %-*s  %-*s  %s\n", w[0],
                   weft_pgresult_value(r, i, 0), w[1], weft_pgresult_value(r, i, 1), w[2],
                   weft_pgresult_value(r, i, 2), w[3], weft_pgresult_value(r, i, 3), w[4], src,
                   w[5], weft_pgresult_value(r, i, 7), w[6],
                   *weft_pgresult_value(r, i, 8) ? weft_pgresult_value(r, i, 8) : "-",
                   weft_pgresult_value(r, i, 9));
        }
        printf("%d dead letter%s\n", n, n == 1 ? "" : "s");
    }
    weft_pgresult_free(r);
    weft_pgconn_close(pg);
    return 0;
}

static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\n' && c != '\r' && c != '\t')
            return 0;
    }
    return 1;
}

static int cmd_show(const weft_config_t *cfg, const char *id, int json)
{
    char *end;
    strtoll(id, &end, 10);
    if (!*id || *end) {
        fprintf(stderr, "weft dlq show: \"%s\" is not a dead letter id (a number)\n", id);
        return 2;
    }
    weft_pg_conn_t *pg = connect_pg(cfg);
    if (!pg)
        return 1;
    weft_pg_result_t *r = NULL, *v = NULL;
    char err[1024];
    int found = weft_deadletters_show(pg, id, &r, &v, err, sizeof(err));
    if (found < 0) {
        fprintf(stderr, "weft dlq show: %s", err);
        weft_pgconn_close(pg);
        return 1;
    }
    if (found == 1) {
        fprintf(stderr, "weft dlq show: no dead letter with id %s\n", id);
        weft_pgconn_close(pg);
        return 1;
    }
    /* The value, decoded, for display. */
    const char *val = v && weft_pgresult_rows(v) && !weft_pgresult_isnull(v, 0, 0)
                          ? weft_pgresult_value(v, 0, 0)
                          : "";
    size_t vlen = v && weft_pgresult_rows(v) ? (size_t)weft_pgresult_length(v, 0, 0) : 0;
    static const char *const names[] = {
        "id",       "trigger",           "generation",     "key",           "reason",
        "error",    "attempts",          "source_broker",  "source_topic",  "source_partition",
        "source_offset", "dead_letter_topic", "first_failure_at", "last_failure_at",
        "created_at", "redriven_at"};
    if (json) {
        weft_buf_t b = {0};
        weft_buf_append(&b, "{", 1);
        for (int c = 0; c < 16; c++) {
            weft_buf_printf(&b, "%s\"%s\":", c ? "," : "", names[c]);
            if (weft_pgresult_isnull(r, 0, c))
                weft_buf_append(&b, "null", 4);
            else
                weft_json_append_string(&b, weft_pgresult_value(r, 0, c),
                                        strlen(weft_pgresult_value(r, 0, c)));
        }
        weft_buf_printf(&b, ",\"headers\":%s,\"value_base64\":", weft_pgresult_value(r, 0, 16));
        weft_json_append_string(&b, weft_pgresult_value(r, 0, 17),
                                strlen(weft_pgresult_value(r, 0, 17)));
        weft_buf_append(&b, "}\n", 2);
        fputs(b.p, stdout);
        weft_buf_free(&b);
    } else {
        for (int c = 0; c < 16; c++)
            printf("%-18s %s\n", names[c],
                   weft_pgresult_isnull(r, 0, c) ? "-" : weft_pgresult_value(r, 0, c));
        printf("%-18s %s\n", "headers", weft_pgresult_value(r, 0, 16));
        printf("%-18s %s bytes\n", "value", weft_pgresult_value(r, 0, 20));
        if (vlen && printable(val, vlen)) {
            fwrite(val, 1, vlen, stdout);
            printf("\n");
        } else if (vlen) {
            for (size_t i = 0; i < vlen && i < 4096; i++)
                printf("%02x%s", (unsigned char)val[i], (i % 32 == 31) ? "\n" : " ");
            printf("\n");
        }
    }
    weft_pgresult_free(v);
    weft_pgresult_free(r);
    weft_pgconn_close(pg);
    return 0;
}

/* ---- redrive ------------------------------------------------------------ */

typedef struct rd_state {
    int delivered, failed;
    char last_err[256];
} rd_state_t;

static void rd_delivered(void *opaque, void *msg_opaque, const char *err)
{
    (void)msg_opaque;
    rd_state_t *st = opaque;
    if (err) {
        st->failed++;
        snprintf(st->last_err, sizeof(st->last_err), "%s", err);
    } else {
        st->delivered++;
    }
}
static void rd_noop(void *opaque, const char *topic, int32_t partition)
{
    (void)opaque;
    (void)topic;
    (void)partition;
}

typedef struct hdr_collect {
    weft_header_t *h;
    size_t n, cap;
    char **owned;
    size_t n_owned;
} hdr_collect_t;

static char *keep(hdr_collect_t *hc, char *p)
{
    hc->owned = realloc(hc->owned, (hc->n_owned + 1) * sizeof(char *));
    hc->owned[hc->n_owned++] = p;
    return p;
}

/* One element of the headers array: {"name": ..., "value_base64": ...}. */
typedef struct one_hdr {
    char *name;
    char *value;
    size_t len;
    int null_value;
} one_hdr_t;

static int hdr_member(const char *key, const weft_json_val_t *val, void *opaque)
{
    one_hdr_t *oh = opaque;
    if (strcmp(key, "name") == 0 && val->type == WEFT_JSON_STRING) {
        oh->name = weft_json_unescape(val, NULL);
    } else if (strcmp(key, "value_base64") == 0) {
        if (val->type == WEFT_JSON_NULL) {
            oh->null_value = 1;
        } else if (val->type == WEFT_JSON_STRING) {
            oh->value = (char *)weft_base64_decode(val->p + 1, val->len - 2, &oh->len);
            if (!oh->value)
                return 1; /* not base64: this is not a header weft stored */
        }
    }
    return 0;
}

/* One stored header (an object of the array); weft's own failure and
 * re-drive metadata is left out. */
static int header_element(const weft_json_val_t *val, void *opaque)
{
    hdr_collect_t *hc = opaque;
    one_hdr_t oh = {0};
    char err[128];
    if (val->type != WEFT_JSON_OBJECT ||
        weft_json_object_each(val->p, val->len, hdr_member, &oh, err, sizeof(err)) != 0 ||
        !oh.name) {
        free(oh.name);
        free(oh.value);
        return -1;
    }
    if (strncmp(oh.name, WEFT_CE_KAFKA_OWN, WEFT_CE_OWN_LEN) == 0 ||
        strncmp(oh.name, WEFT_HDR_PREFIX, WEFT_HDR_PREFIX_LEN) == 0) {
        free(oh.name);
        free(oh.value);
        return 0;
    }
    if (hc->n == hc->cap) {
        hc->cap = hc->cap ? hc->cap * 2 : 16;
        hc->h = realloc(hc->h, hc->cap * sizeof(weft_header_t));
    }
    hc->h[hc->n].name = keep(hc, oh.name);
    hc->h[hc->n].value = oh.null_value ? NULL : keep(hc, oh.value ? oh.value : strdup(""));
    hc->h[hc->n].len = oh.null_value ? 0 : oh.len;
    hc->n++;
    return 0;
}

/* Parses the stored headers (a JSON array of objects) into hc. */
static int parse_headers(const char *json, hdr_collect_t *hc)
{
    char err[128];
    return weft_json_array_each(json, strlen(json), header_element, hc, err, sizeof(err)) == 0
               ? 0
               : -1;
}

static void hc_free(hdr_collect_t *hc)
{
    for (size_t i = 0; i < hc->n_owned; i++)
        free(hc->owned[i]);
    free(hc->owned);
    free(hc->h);
    memset(hc, 0, sizeof(*hc));
}

static int pg_ok(weft_pg_conn_t *pg, const char *sql)
{
    char err[1024];
    int ok = weft_deadletters_tx(pg, sql, err, sizeof(err)) == 0;
    if (!ok)
        fprintf(stderr, "weft dlq redrive: %s", err);
    return ok;
}

static int cmd_redrive(const weft_config_t *cfg, const char *trigger, const char **ids,
                       int n_ids, int new_key, int dry_run)
{
    weft_pg_conn_t *pg = connect_pg(cfg);
    if (!pg)
        return 1;
    weft_buf_t idarr = {0};
    for (int i = 0; i < n_ids; i++) {
        char *end;
        strtoll(ids[i], &end, 10);
        if (!*ids[i] || *end) {
            fprintf(stderr, "weft dlq redrive: \"%s\" is not a dead letter id (a number)\n",
                    ids[i]);
            weft_buf_free(&idarr);
            weft_pgconn_close(pg);
            return 2;
        }
        weft_pg_array_add(&idarr, ids[i], strlen(ids[i]), 0);
    }
    if (n_ids)
        weft_buf_append(&idarr, "}", 1);
    if (!pg_ok(pg, "BEGIN")) {
        weft_buf_free(&idarr);
        weft_pgconn_close(pg);
        return 1;
    }
    const char *params[2] = {trigger, n_ids ? idarr.p : NULL};
    /* Lock the dead letters; SKIP LOCKED leaves those another re-drive is
     * handling right now. */
    char lerr[1024];
    weft_pg_result_t *r = weft_deadletters_lock(pg, params[0], params[1], lerr, sizeof(lerr));
    weft_buf_free(&idarr);
    if (!r) {
        fprintf(stderr, "weft dlq redrive: %s", lerr);
        weft_pgconn_close(pg);
        return 1;
    }
    int n = weft_pgresult_rows(r);
    if (n == 0) {
        printf("nothing to re-drive (no matching dead letter that was not re-driven)\n");
        weft_pgresult_free(r);
        pg_ok(pg, "ROLLBACK");
        weft_pgconn_close(pg);
        return 0;
    }
    if (dry_run) {
        printf("would re-drive %d dead letter%s\n", n, n == 1 ? "" : "s");
        weft_pgresult_free(r);
        pg_ok(pg, "ROLLBACK");
        weft_pgconn_close(pg);
        return 0;
    }
    rd_state_t st = {0};
    weft_kafka_cbs_t cbs = {rd_noop, rd_noop, rd_delivered, &st};
    char err[512];
    /* Connections are made for the brokers the dead letters came from. */
    weft_kafka_t *k = NULL;
    weft_nats_t *nc = NULL;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        const char *broker = weft_pgresult_value(r, i, 7);
        if (strcmp(broker, "kafka") == 0 && !k) {
            k = weft_kafka_producer_new(cfg, &cbs, err, sizeof(err));
            rc = k ? 0 : 1;
        } else if (strcmp(broker, "kafka") != 0 && !nc) {
            const char *url = weft_config_str(cfg, "nats.url");
            if (!url)
                snprintf(err, sizeof(err), "nats.url is not set (config file or WEFT_NATS_URL)");
            nc = url ? weft_nats_connect(url, 10000, err, sizeof(err)) : NULL;
            rc = nc ? 0 : 1;
        }
    }
    if (rc) {
        fprintf(stderr, "weft dlq redrive: %s\n", err);
        weft_kafka_destroy(k, 1000);
        weft_nats_destroy(nc);
        weft_pgresult_free(r);
        pg_ok(pg, "ROLLBACK");
        weft_pgconn_close(pg);
        return 1;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        const char *id = weft_pgresult_value(r, i, 0), *trig = weft_pgresult_value(r, i, 1);
        const char *gen = weft_pgresult_value(r, i, 2), *key = weft_pgresult_value(r, i, 3);
        char *newkey = NULL;
        if (new_key && asprintf(&newkey, "redrive:%s:%s", id, key) < 0)
            newkey = NULL;
        /* Keep the key: reset its ledger entry so it runs again (lease
         * already expired, attempts and takeovers from zero). */
        if (weft_deadletters_mark(pg, id, trig, gen, key, new_key, err, sizeof(err)) != 0) {
            fprintf(stderr, "weft dlq redrive: %s", err);
            rc = 1;
        }
        if (rc)
            break;
        weft_pg_result_t *v = weft_deadletters_message(pg, id);
        hdr_collect_t hc = {0};
        if (!v || parse_headers(weft_pgresult_value(r, i, 5), &hc) != 0) {
            fprintf(stderr, "weft dlq redrive: cannot read dead letter %s\n", id);
            weft_pgresult_free(v);
            hc_free(&hc);
            free(newkey);
            rc = 1;
            break;
        }
        if (hc.n + 4 > hc.cap) {
            hc.cap = hc.n + 4;
            hc.h = realloc(hc.h, hc.cap * sizeof(weft_header_t));
        }
        const char *broker = weft_pgresult_value(r, i, 7);
        int on_nats = strcmp(broker, "kafka") != 0;
        /* NATS header values cannot carry every byte a key may hold (keys
         * join their parts with 0x1f): weft-key is percent-encoded there,
         * as ce- values are, and the dispatcher decodes it. A dead letter
         * of a replay's generation is re-driven under it. */
        char *wkey;
        if (weft_ce_republish_headers(WEFT_REPUBLISH_REDRIVE,
                                      on_nats ? WEFT_BINDING_NATS : WEFT_BINDING_KAFKA,
                                      newkey ? newkey : key, id, trig, gen, hc.h, &hc.n,
                                      &wkey) != 0) {
            fprintf(stderr, "weft dlq redrive: out of memory\n");
            weft_pgresult_free(v);
            hc_free(&hc);
            free(newkey);
            rc = 1;
            break;
        }
        int retriable;
        const char *mkey = weft_pgresult_isnull(v, 0, 1) ? NULL : weft_pgresult_value(v, 0, 1);
        int sent;
        if (!on_nats) {
            sent = weft_kafka_produce(k, weft_pgresult_value(r, i, 4), mkey,
                                      mkey ? (size_t)weft_pgresult_length(v, 0, 1) : 0,
                                      weft_pgresult_value(v, 0, 0),
                                      (size_t)weft_pgresult_length(v, 0, 0), hc.h, hc.n, NULL,
                                      &retriable, err, sizeof(err));
        } else {
            /* Its own Nats-Msg-Id, one per dead letter (it replaces the
             * original's, which JetStream would drop as a duplicate). */
            char msg_id[48];
            snprintf(msg_id, sizeof(msg_id), WEFT_MSGID_REDRIVE "%s", id);
            if (strcmp(broker, "jetstream") == 0)
                sent = weft_nats_js_publish(nc, weft_pgresult_value(r, i, 4), msg_id, hc.h, hc.n,
                                            weft_pgresult_value(v, 0, 0),
                                            (size_t)weft_pgresult_length(v, 0, 0), 10000, NULL,
                                            NULL, err, sizeof(err));
            else
                sent = weft_nats_publish(nc, weft_pgresult_value(r, i, 4), hc.h, hc.n,
                                         weft_pgresult_value(v, 0, 0),
                                         (size_t)weft_pgresult_length(v, 0, 0), err, sizeof(err));
            if (sent == 0)
                st.delivered++;
        }
        if (sent != 0) {
            fprintf(stderr, "weft dlq redrive: %s://%s: %s\n", broker, weft_pgresult_value(r, i, 4),
                    err);
            rc = 1;
        }
        weft_pgresult_free(v);
        hc_free(&hc);
        free(newkey);
        free(wkey);
    }
    if (rc == 0 && k && weft_kafka_flush(k, 30000) != 0) {
        fprintf(stderr, "weft dlq redrive: the broker did not acknowledge every message\n");
        rc = 1;
    }
    if (rc == 0 && st.failed) {
        fprintf(stderr, "weft dlq redrive: publishing failed: %s\n", st.last_err);
        rc = 1;
    }
    if (rc == 0 && pg_ok(pg, "COMMIT")) {
        printf("re-drove %d dead letter%s to their source topics\n", n, n == 1 ? "" : "s");
    } else {
        pg_ok(pg, "ROLLBACK");
        fprintf(stderr, "weft dlq redrive: nothing was recorded; re-drive again (events that "
                        "were published will not run twice)\n");
        rc = 1;
    }
    weft_kafka_destroy(k, 1000);
    weft_nats_destroy(nc);
    weft_pgresult_free(r);
    weft_pgconn_close(pg);
    return rc;
}

int weft_dlq_main(const weft_config_t *cfg, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    const char *trigger = NULL, *since = NULL;
    const char *ids[1024];
    int n_ids = 0, json = 0, new_key = 0, dry_run = 0;
    long limit = 100;
    static const struct option opts[] = {{"trigger", required_argument, NULL, 't'},
                                         {"since", required_argument, NULL, 's'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"new-key", no_argument, NULL, 'k'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "t:s:l:i:jknh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            trigger = optarg;
            break;
        case 's':
            since = optarg;
            break;
        case 'l':
            limit = strtol(optarg, NULL, 10);
            if (limit <= 0) {
                fprintf(stderr, "weft dlq: --limit must be a positive number\n");
                return 2;
            }
            break;
        case 'i':
            if (n_ids < 1024)
                ids[n_ids++] = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'k':
            new_key = 1;
            break;
        case 'n':
            dry_run = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(sub, "list") == 0) {
        if (optind < argc) {
            fprintf(stderr, "weft dlq list: unexpected argument \"%s\"\n", argv[optind]);
            return 2;
        }
        return cmd_list(cfg, trigger, since, limit, json);
    }
    if (strcmp(sub, "show") == 0) {
        if (optind != argc - 1) {
            fprintf(stderr, "weft dlq show: expected one dead letter id\n");
            return 2;
        }
        return cmd_show(cfg, argv[optind], json);
    }
    if (strcmp(sub, "redrive") == 0) {
        if (!trigger && n_ids == 0) {
            fprintf(stderr, "weft dlq redrive: say which dead letters: --trigger T or --id ID\n");
            return 2;
        }
        if (optind < argc) {
            fprintf(stderr, "weft dlq redrive: unexpected argument \"%s\"\n", argv[optind]);
            return 2;
        }
        return cmd_redrive(cfg, trigger, ids, n_ids, new_key, dry_run);
    }
    fprintf(stderr, "weft dlq: unknown subcommand \"%s\" (list, show, redrive)\n", sub);
    return 2;
}
