/*
 * config_table.c - the one table of weft's settings, and everything made
 * from it: the defaults the code reads, validation at start, the
 * environment variables, `weft run --help-config` and the README's
 * configuration reference (`weft run --help-config --markdown`).
 *
 * Runs in the dispatcher and the CLI, after the configuration is loaded
 * and before any client library starts (librdkafka's rdkafka_conf.c and
 * Redis's config.c keep their settings the same way).
 *
 * Invariants: every key weft reads has one row here, and its default is
 * written only here (code reads it with weft_config_str / weft_config_int,
 * never with a default of its own); a key under a pass-through prefix
 * (kafka.*) is checked by the library it is passed to, not here; every
 * default lies in its row's range (tests/test_config.c checks both, and
 * that README.md carries the generated reference unchanged).
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef WEFT_MIGRATIONS_DIR
#define WEFT_MIGRATIONS_DIR "migrations"
#endif

/* Durations: at most ten years (in ms). */
#define DURATION_MAX 315360000000LL

/* clang-format off */
static const weft_config_def_t defs[] = {
    {"pg.conninfo", WEFT_CONFIG_STRING, NULL, "(required)", 0, 0, NULL, "WEFT_PG",
     "libpq conninfo of the database holding the catalog, the ledger and the dead letters, "
     "e.g. `host=127.0.0.1 port=5432 dbname=weft user=weft`"},
    {"kafka.bootstrap.servers", WEFT_CONFIG_STRING, NULL, "(unset: no Kafka)", 0, 0, NULL,
     "WEFT_KAFKA_BROKERS",
     "the Kafka brokers, `host:port,...`; a dispatcher needs this or `nats.url` (or both)"},
    {"kafka.group.id", WEFT_CONFIG_STRING, "weft", NULL, 0, 0, NULL, NULL,
     "consumer group; dispatchers with the same group share the partitions, and the CLI "
     "reads its offsets"},
    {"kafka.", WEFT_CONFIG_PREFIX, NULL, NULL, 0, 0, NULL, NULL,
     "passed to librdkafka for the consumer and the producer (e.g. `kafka.security.protocol`); "
     "a property only one of them knows (`session.timeout.ms`, `linger.ms`, ...) goes to that "
     "one only"},
    {"kafka.consumer.", WEFT_CONFIG_PREFIX, NULL, NULL, 0, 0, NULL, NULL,
     "passed to librdkafka's consumer only"},
    {"kafka.producer.", WEFT_CONFIG_PREFIX, NULL, NULL, 0, 0, NULL, NULL,
     "passed to librdkafka's producer only"},
    {"nats.url", WEFT_CONFIG_STRING, NULL, "(unset: no NATS)", 0, 0, NULL, "WEFT_NATS_URL",
     "the NATS server, e.g. `nats://127.0.0.1:4222` (JetStream and core NATS)"},
    {"nats.queue_group", WEFT_CONFIG_STRING, "weft", NULL, 0, 0, NULL, NULL,
     "the core NATS queue group; dispatchers with the same group share the messages"},
    {"nats.fetch_batch", WEFT_CONFIG_INT, "256", NULL, 1, 1024, NULL, NULL,
     "JetStream messages asked for in one fetch"},
    {"dispatcher.max_inflight", WEFT_CONFIG_INT, "10000", NULL, 1, 10000000, NULL, NULL,
     "consumed events in flight; see \"Backpressure\" in DESIGN.md"},
    {"dispatcher.ledger_connections", WEFT_CONFIG_INT, "2", NULL, 1,
     WEFT_LEDGER_CONNECTIONS_MAX, NULL, NULL,
     "PostgreSQL connections per ledger stage (claim, record); a dispatcher holds these, one "
     "more for the catalog and its heartbeat, and one for saga transitions once the first saga "
     "event arrives"},
    {"dispatcher.max_inflight_bytes", WEFT_CONFIG_BYTES, "33554432", NULL, 65536, 1LL << 40, NULL,
     NULL,
     "bytes of consumed events (value, key, headers) and their results in flight; the default "
     "keeps the dispatcher under 256 MiB with events of any size; see \"Backpressure\" in "
     "DESIGN.md"},
    {"dispatcher.max_event_bytes", WEFT_CONFIG_BYTES, "1048576", NULL, 1, 1 << 30, NULL, NULL,
     "larger messages are dead-lettered with reason `oversized`"},
    {"dispatcher.shutdown_timeout_ms", WEFT_CONFIG_MS, "10000", NULL, 0, 3600000, NULL, NULL,
     "on SIGTERM/SIGINT, how long to finish in-flight work"},
    {"dispatcher.stats_interval_ms", WEFT_CONFIG_MS, "10000", NULL, 100, 3600000, NULL, NULL,
     "how often the `stats` line is written"},
    {"dispatcher.max_takeovers", WEFT_CONFIG_INT, "10", NULL, 1, 1000, NULL, NULL,
     "a key taken over this many times from dispatchers that died holding it, without an "
     "outcome, is dead-lettered (`abandoned_claims`) at the next takeover; see \"Attempts and "
     "takeovers\" in dispatcher/DESIGN.md"},
    {"functions.dir", WEFT_CONFIG_PATH, NULL, "../functions from weft's directory", 0, 0, NULL,
     "WEFT_FUNCTIONS_DIR", "where a function `entry` without a `/` is looked up"},
    {"workers.path", WEFT_CONFIG_PATH, NULL, "weft-worker in weft's directory", 0, 0, NULL,
     NULL, "the worker binary"},
    {"migrations.dir", WEFT_CONFIG_PATH, WEFT_MIGRATIONS_DIR, "the source tree's migrations/",
     0, 0, NULL, NULL, "weft's own schema, applied by `weft migrate`"},
    /* Retention (store/retention.c): one dispatcher of a group deletes old
     * terminal rows, a batch per table at a time. */
    {"retention.ledger", WEFT_CONFIG_DURATION, "30d", NULL, 0, DURATION_MAX, NULL, NULL,
     "ledger rows finished (completed, dropped, dead) longer ago are deleted, and done "
     "replays; a redelivered or replayed event older than this runs again; 0 keeps them"},
    {"retention.dead_letters", WEFT_CONFIG_DURATION, "30d", NULL, 0, DURATION_MAX, NULL, NULL,
     "rows of `weft.dead_letters` older than this are deleted (the dead-letter topic keeps its "
     "own retention); 0 keeps them"},
    {"retention.sagas", WEFT_CONFIG_DURATION, "30d", NULL, 0, DURATION_MAX, NULL, NULL,
     "saga instances completed or aborted longer ago are deleted with their steps and events "
     "(never running, compensating or stuck ones); 0 keeps them"},
    {"retention.batch", WEFT_CONFIG_INT, "1000", NULL, 0, 100000, NULL, NULL,
     "rows per table deleted by one statement, once a second while old rows remain, else once "
     "a minute; 0 turns retention off"},
    {"log.level", WEFT_CONFIG_ENUM, "info", NULL, 0, 0, "debug,info,warn,error",
     "WEFT_LOG_LEVEL", "the lowest level written to stderr"},
};
/* clang-format on */

const weft_config_def_t *weft_config_defs(size_t *n)
{
    *n = sizeof(defs) / sizeof(defs[0]);
    return defs;
}

const weft_config_def_t *weft_config_def_find(const char *key)
{
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
        if (defs[i].type != WEFT_CONFIG_PREFIX && strcmp(defs[i].key, key) == 0)
            return &defs[i];
    return NULL;
}

/* The row a key is under: its own, or else the pass-through prefix it
 * starts with. NULL: not a weft key. */
static const weft_config_def_t *def_for(const char *key)
{
    const weft_config_def_t *d = weft_config_def_find(key);
    if (d)
        return d;
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
        if (defs[i].type == WEFT_CONFIG_PREFIX &&
            strncmp(defs[i].key, key, strlen(defs[i].key)) == 0)
            return &defs[i];
    return NULL;
}

/* A row the code asks for must exist: a missing one is a bug in weft,
 * not in the configuration. */
static const weft_config_def_t *must_find(const char *key)
{
    const weft_config_def_t *d = weft_config_def_find(key);
    if (!d) {
        fprintf(stderr, "weft: BUG: configuration key %s is not in config_table.c\n", key);
        abort();
    }
    return d;
}

static int is_number(weft_config_type_t t)
{
    return t == WEFT_CONFIG_INT || t == WEFT_CONFIG_MS || t == WEFT_CONFIG_BYTES ||
           t == WEFT_CONFIG_DURATION;
}

/* The units of a duration, largest first (the reference prints a range
 * in the largest unit that divides it). */
static const struct {
    const char *unit;
    int64_t ms;
} units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};

/* "30d", "12h", "90s", "250ms" or "0" in ms. A number without a unit is
 * refused: "30" meaning 30 ms where days were meant would delete every
 * row older than 30 ms. 0, or -1. */
int weft_config_parse_duration(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0 || *s == '-' || *s == '+')
        return -1;
    if (*end == '\0') {
        if (v != 0)
            return -1;
        *ms = 0;
        return 0;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > INT64_MAX / units[i].ms)
                return -1;
            *ms = v * units[i].ms;
            return 0;
        }
    }
    return -1;
}

static void fmt_duration(char *out, size_t len, int64_t ms)
{
    if (ms == 0) {
        snprintf(out, len, "0");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms % units[i].ms == 0) {
            snprintf(out, len, "%" PRId64 "%s", ms / units[i].ms, units[i].unit);
            return;
        }
    }
}

static int duration_int(const weft_config_t *cfg, const weft_config_def_t *d, int64_t *out,
                        char *errstr, size_t errlen)
{
    const char *s = weft_config_get(cfg, d->key, d->def);
    int64_t v;
    if (weft_config_parse_duration(s, &v) != 0) {
        snprintf(errstr, errlen,
                 "config key %s: \"%s\" is not a duration (a number and ms, s, m, h or d, "
                 "e.g. 30d; or 0)",
                 d->key, s);
        return -1;
    }
    if (v < d->min || v > d->max) {
        char lo[32], hi[32];
        fmt_duration(lo, sizeof(lo), d->min);
        fmt_duration(hi, sizeof(hi), d->max);
        snprintf(errstr, errlen, "config key %s: %s is out of range [%s, %s]", d->key, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

const char *weft_config_str(const weft_config_t *cfg, const char *key)
{
    const weft_config_def_t *d = must_find(key);
    return weft_config_get(cfg, key, d->def);
}

int weft_config_int(const weft_config_t *cfg, const char *key, int64_t *out, char *errstr,
                    size_t errlen)
{
    const weft_config_def_t *d = must_find(key);
    if (!is_number(d->type)) {
        fprintf(stderr, "weft: BUG: configuration key %s is not a number\n", key);
        abort();
    }
    if (d->type == WEFT_CONFIG_DURATION)
        return duration_int(cfg, d, out, errstr, errlen);
    return weft_config_get_int(cfg, key, strtoll(d->def, NULL, 10), d->min, d->max, out, errstr,
                               errlen);
}

/* Is value one of the comma-separated values (case does not matter)? */
static int enum_has(const char *values, const char *value)
{
    size_t vl = strlen(value);
    for (const char *p = values; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == vl && strncasecmp(p, value, n) == 0)
            return 1;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

static const char *type_name(weft_config_type_t t)
{
    switch (t) {
    case WEFT_CONFIG_INT:
        return "int";
    case WEFT_CONFIG_MS:
        return "ms";
    case WEFT_CONFIG_BYTES:
        return "bytes";
    case WEFT_CONFIG_DURATION:
        return "duration";
    case WEFT_CONFIG_STRING:
        return "string";
    case WEFT_CONFIG_PATH:
        return "path";
    case WEFT_CONFIG_ENUM:
        return "enum";
    case WEFT_CONFIG_PREFIX:
        return "prefix";
    }
    return "?";
}

/* n with a comma every three digits from 10,000 on (1024, 10,000). */
static void fmt_num(char *out, size_t len, int64_t n)
{
    char digits[32];
    int dl = snprintf(digits, sizeof(digits), "%" PRId64, n < 0 ? -n : n);
    size_t o = 0;
    if (n < 0 && o + 1 < len)
        out[o++] = '-';
    for (int i = 0; i < dl && o + 2 < len; i++) {
        if (dl > 4 && i > 0 && (dl - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

/* The range column: "1–1,024" for numbers, the values of an enum. */
static void fmt_range(char *out, size_t len, const weft_config_def_t *d)
{
    out[0] = '\0';
    if (d->type == WEFT_CONFIG_DURATION) {
        char lo[32], hi[32];
        fmt_duration(lo, sizeof(lo), d->min);
        fmt_duration(hi, sizeof(hi), d->max);
        snprintf(out, len, "%s-%s", lo, hi);
    } else if (is_number(d->type)) {
        char lo[32], hi[32];
        fmt_num(lo, sizeof(lo), d->min);
        fmt_num(hi, sizeof(hi), d->max);
        snprintf(out, len, "%s-%s", lo, hi);
    } else if (d->type == WEFT_CONFIG_ENUM) {
        size_t o = 0;
        for (const char *p = d->values; *p && o + 3 < len; p++) {
            out[o++] = *p;
            if (*p == ',')
                out[o++] = ' ';
        }
        out[o] = '\0';
    }
}

static void fmt_key(char *out, size_t len, const weft_config_def_t *d)
{
    snprintf(out, len, "%s%s", d->key, d->type == WEFT_CONFIG_PREFIX ? "*" : "");
}

typedef struct check_ctx {
    const weft_config_t *cfg;
    char *errstr;
    size_t errlen;
    int failed;
} check_ctx_t;

static int check_one(const char *key, const char *value, void *opaque)
{
    check_ctx_t *c = opaque;
    const weft_config_def_t *d = def_for(key);
    if (!d) {
        snprintf(c->errstr, c->errlen,
                 "config key %s: unknown key (weft run --help-config lists them)", key);
        c->failed = 1;
        return 1;
    }
    if (is_number(d->type)) {
        int64_t v;
        if (weft_config_int(c->cfg, key, &v, c->errstr, c->errlen) != 0) {
            c->failed = 1;
            return 1;
        }
    } else if (d->type == WEFT_CONFIG_ENUM && !enum_has(d->values, value)) {
        char range[256];
        fmt_range(range, sizeof(range), d);
        snprintf(c->errstr, c->errlen, "config key %s: \"%s\" is not one of %s", key, value,
                 range);
        c->failed = 1;
        return 1;
    }
    return 0;
}

int weft_config_validate(const weft_config_t *cfg, char *errstr, size_t errlen)
{
    check_ctx_t c = {cfg, errstr, errlen, 0};
    weft_config_each(cfg, "", check_one, &c);
    return c.failed ? -1 : 0;
}

/* Text without the markdown's backticks, for a terminal. */
static void put_plain(FILE *f, const char *s)
{
    for (; *s; s++)
        if (*s != '`')
            fputc(*s, f);
}

/* A table cell: a '|' would end it. */
static void put_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputc('\\', f);
        fputc(*s, f);
    }
}

static void print_text(FILE *f)
{
    size_t n = sizeof(defs) / sizeof(defs[0]);
    int wk = 3, wt = 4, wd = 7, wr = 5;
    char key[128], range[128];
    for (size_t i = 0; i < n; i++) {
        const weft_config_def_t *d = &defs[i];
        const char *def = d->def ? d->def : d->def_doc ? d->def_doc : "";
        fmt_key(key, sizeof(key), d);
        fmt_range(range, sizeof(range), d);
        int kl = (int)strlen(key), tl = (int)strlen(type_name(d->type));
        int dl = (int)strlen(def), rl = (int)strlen(range);
        wk = kl > wk ? kl : wk;
        wt = tl > wt ? tl : wt;
        wd = dl > wd ? dl : wd;
        wr = rl > wr ? rl : wr;
    }
    fprintf(f, "%-*s  %-*s  %-*s  %-*s  %s\n", wk, "key", wt, "type", wd, "default", wr, "range",
            "help");
    for (size_t i = 0; i < n; i++) {
        const weft_config_def_t *d = &defs[i];
        fmt_key(key, sizeof(key), d);
        fmt_range(range, sizeof(range), d);
        fprintf(f, "%-*s  %-*s  %-*s  %-*s  ", wk, key, wt, type_name(d->type), wd,
                d->def       ? d->def
                : d->def_doc ? d->def_doc
                             : "",
                wr, range);
        put_plain(f, d->help);
        if (d->env)
            fprintf(f, " (environment: %s)", d->env);
        fputc('\n', f);
    }
    fprintf(f, "\nThe environment comes after --config FILE and before --set KEY=VALUE;\n"
               "WEFT_SET=\"key=value;key=value\" sets any keys.\n");
}

static void print_markdown(FILE *f)
{
    size_t n = sizeof(defs) / sizeof(defs[0]);
    char key[128], range[128];
    fprintf(f, "| environment | key |\n|---|---|\n");
    for (size_t i = 0; i < n; i++)
        if (defs[i].env)
            fprintf(f, "| `%s` | `%s` |\n", defs[i].env, defs[i].key);
    fprintf(f, "| `WEFT_SET` | any keys: `\"key=value;key=value\"` |\n\n");
    fprintf(f, "| key | type | default | range | meaning |\n|---|---|---|---|---|\n");
    for (size_t i = 0; i < n; i++) {
        const weft_config_def_t *d = &defs[i];
        fmt_key(key, sizeof(key), d);
        fmt_range(range, sizeof(range), d);
        fprintf(f, "| `%s` | %s | ", key, type_name(d->type));
        if (d->def_doc)
            put_cell(f, d->def_doc);
        else if (d->def)
            fprintf(f, "`%s`", d->def);
        fprintf(f, " | ");
        put_cell(f, range);
        fprintf(f, " | ");
        put_cell(f, d->help);
        fprintf(f, " |\n");
    }
}

void weft_config_print(FILE *f, weft_config_format_t format)
{
    if (format == WEFT_CONFIG_MARKDOWN)
        print_markdown(f);
    else
        print_text(f);
}
