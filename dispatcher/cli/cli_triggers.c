/*
 * cli_triggers.c - `weft triggers`: which triggers fire on what, with
 * their filters, functions, result and dead-letter topics. The answer to
 * "what happens when I publish to X?".
 *
 * Runs in the CLI process; reads weft.triggers, weft.trigger_filters and
 * weft.functions (disabled triggers included, marked as such).
 */
#include <getopt.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void weft_triggers_usage(FILE *f)
{
    fprintf(f, "usage: weft triggers [--topic TOPIC | --topic URL] [--json]\n"
               "\n"
               "Lists the triggers: the broker and topic each consumes, its filters (the\n"
               "event_type column and weft.trigger_filters, all of which must hold), the\n"
               "function it runs (runtime and pool), where results and dead letters go,\n"
               "its ordering, max_attempts and whether it is enabled. With --topic, only\n"
               "the triggers consuming that topic: what happens when you publish to it.\n"
               "\n"
               "Filters read ATTRIBUTE=VALUE (exact), ATTRIBUTE^=VALUE (prefix) and\n"
               "ATTRIBUTE$=VALUE (suffix), joined by AND; \"*\" is every event.\n"
               "\n"
               "examples:\n"
               "  weft triggers\n"
               "  weft triggers --topic orders\n"
               "  weft triggers --topic kafka://orders --json | jq '.[].function'\n");
}

/* "BROKER://" before a result or dead-letter topic on another broker than
 * the trigger's source (columns result_broker / dead_letter_broker, read
 * through to_jsonb so this works with and without them), else "". */
#define SINK(col)                                                                                  \
    "CASE WHEN coalesce(to_jsonb(t)->>'" col "_broker', t.source::text) <> t.source::text"         \
    " THEN (to_jsonb(t)->>'" col "_broker') || '://' ELSE '' END"

#define TRIGGERS_SQL                                                                               \
    "SELECT t.name, t.source::text, t.topic,"                                                      \
    "       coalesce(nullif(concat_ws(' AND ',"                                                    \
    "           CASE WHEN t.event_type IS NOT NULL THEN 'type=' || t.event_type END,"              \
    "           (SELECT string_agg(fl.attribute || CASE fl.op WHEN 'exact' THEN '='"               \
    "                   WHEN 'prefix' THEN '^=' ELSE '$=' END || fl.value, ' AND '"                \
    "                   ORDER BY fl.attribute, fl.op, fl.value)"                                   \
    "              FROM weft.trigger_filters fl WHERE fl.trigger = t.name)), ''), '*'),"           \
    "       coalesce(t.function, 'saga ' || t.saga), coalesce(f.runtime::text, ''),"              \
    "       f.pool_mode, f.pool_size,"                                                             \
    "       coalesce(f.max_concurrency, f.pool_size),"                                             \
    "       coalesce(" SINK(                                                                       \
        "result") " || t.result_topic, ''),"                                                       \
                  "       " SINK(                                                                  \
                      "dead_letter") " || coalesce(t.dead_letter_topic, t.topic || '.dlq'),"       \
                                     "       t.ordering, t.max_attempts, t.enabled, "              \
                                     "coalesce(t.result_type, '')"                                 \
                                     "  FROM weft.triggers t LEFT JOIN weft.functions f"           \
                                     "    ON f.name = t.function"                                  \
                                     " WHERE ($1::text IS NULL OR t.topic = $1)"                   \
                                     "   AND ($2::text IS NULL OR t.source::text = $2)"            \
                                     " ORDER BY t.source, t.topic, t.name"

#define TRIGGERS_JSON_SQL                                                                          \
    "SELECT coalesce(json_agg(json_build_object("                                                  \
    "  'name', t.name, 'source', t.source, 'topic', t.topic, 'event_type', t.event_type,"          \
    "  'filters', (SELECT coalesce(json_agg(json_build_object('attribute', fl.attribute,"          \
    "                 'op', fl.op, 'value', fl.value) ORDER BY fl.attribute, fl.op, fl.value),"    \
    "                 '[]'::json) FROM weft.trigger_filters fl WHERE fl.trigger = t.name),"        \
    "  'function', t.function, 'saga', t.saga, 'runtime', f.runtime, 'pool_mode', f.pool_mode,"    \
    "  'pool_size', f.pool_size, 'max_workers', coalesce(f.max_concurrency, f.pool_size),"         \
    "  'timeout_ms', f.timeout_ms,"                                                                \
    "  'result_topic', t.result_topic, 'result_type', t.result_type,"                              \
    "  'dead_letter_topic', coalesce(t.dead_letter_topic, t.topic || '.dlq'),"                     \
    "  'result_broker', CASE WHEN t.result_topic IS NOT NULL THEN"                                 \
    "      coalesce(to_jsonb(t)->>'result_broker', t.source::text) END,"                           \
    "  'dead_letter_broker', coalesce(to_jsonb(t)->>'dead_letter_broker', t.source::text),"        \
    "  'ordering', t.ordering, 'max_attempts', t.max_attempts, 'max_inflight', t.max_inflight,"    \
    "  'enabled', t.enabled) ORDER BY t.source, t.topic, t.name), '[]'::json)"                     \
    "  FROM weft.triggers t LEFT JOIN weft.functions f ON f.name = t.function"                     \
    " WHERE ($1::text IS NULL OR t.topic = $1)"                                                    \
    "   AND ($2::text IS NULL OR t.source::text = $2)"

enum {
    C_NAME,
    C_SOURCE,
    C_FILTER,
    C_FUNCTION,
    C_RESULTS,
    C_DLQ,
    C_ORDER,
    C_ATTEMPTS,
    C_ENABLED,
    N_COLS
};

static void print_table(PGresult *r, const char *topic_url)
{
    int n = PQntuples(r);
    static const char *const heads[N_COLS] = {"TRIGGER",  "SOURCE",   "FILTER",
                                              "FUNCTION", "RESULTS",  "DEAD LETTERS",
                                              "ORDER",    "ATTEMPTS", "ENABLED"};
    char **cells = calloc((size_t)n * N_COLS + 1, sizeof(char *));
    int width[N_COLS];
    for (int c = 0; c < N_COLS; c++)
        width[c] = (int)strlen(heads[c]);
    for (int i = 0; cells && i < n; i++) {
        char **row = &cells[i * N_COLS];
        const char *pool_mode = PQgetvalue(r, i, 6);
        if (asprintf(&row[C_NAME], "%s", PQgetvalue(r, i, 0)) < 0 ||
            asprintf(&row[C_SOURCE], "%s://%s", PQgetvalue(r, i, 1), PQgetvalue(r, i, 2)) < 0 ||
            asprintf(&row[C_FILTER], "%s", PQgetvalue(r, i, 3)) < 0 ||
            (*PQgetvalue(r, i, 5)
                 ? asprintf(&row[C_FUNCTION], "%s (%s, %s %s)", PQgetvalue(r, i, 4),
                            PQgetvalue(r, i, 5), pool_mode,
                            strcmp(pool_mode, "static") == 0 ? PQgetvalue(r, i, 7)
                                                             : PQgetvalue(r, i, 8))
                 : asprintf(&row[C_FUNCTION], "%s", PQgetvalue(r, i, 4))) < 0 ||
            asprintf(&row[C_RESULTS], "%s", *PQgetvalue(r, i, 9) ? PQgetvalue(r, i, 9) : "-") < 0 ||
            asprintf(&row[C_DLQ], "%s", PQgetvalue(r, i, 10)) < 0 ||
            asprintf(&row[C_ORDER], "%s", PQgetvalue(r, i, 11)) < 0 ||
            asprintf(&row[C_ATTEMPTS], "%s", PQgetvalue(r, i, 12)) < 0 ||
            asprintf(&row[C_ENABLED], "%s", *PQgetvalue(r, i, 13) == 't' ? "yes" : "no") < 0) {
            fprintf(stderr, "weft triggers: out of memory\n");
            exit(1);
        }
        for (int c = 0; c < N_COLS; c++)
            if ((int)strlen(row[c]) > width[c])
                width[c] = (int)strlen(row[c]);
    }
    if (topic_url) {
        int enabled = 0;
        for (int i = 0; i < n; i++)
            enabled += *PQgetvalue(r, i, 13) == 't';
        if (enabled == 0)
            printf("nothing runs for events published to %s: no enabled trigger consumes it\n",
                   topic_url);
        else
            printf("an event published to %s runs each enabled trigger below whose filter it "
                   "matches:\n\n",
                   topic_url);
        if (n == 0) {
            free(cells);
            return;
        }
    } else if (n == 0) {
        printf("no triggers (add them with a migration: weft migrate --dir DIR)\n");
        free(cells);
        return;
    }
    for (int c = 0; c < N_COLS; c++)
        printf("%-*s%s", c == N_COLS - 1 ? 0 : width[c], heads[c], c == N_COLS - 1 ? "\n" : "  ");
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < N_COLS; c++) {
            char *v = cells[i * N_COLS + c];
            printf("%-*s%s", c == N_COLS - 1 ? 0 : width[c], v, c == N_COLS - 1 ? "\n" : "  ");
            free(v);
        }
    }
    free(cells);
}

int weft_triggers_main(const weft_config_t *cfg, int argc, char **argv)
{
    const char *topic = NULL;
    int json = 0;
    static const struct option opts[] = {{"topic", required_argument, NULL, 't'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "t:jh", opts, NULL)) != -1) {
        switch (c) {
        case 't':
            topic = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            weft_triggers_usage(stdout);
            return 0;
        default:
            weft_triggers_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft triggers: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    const char *source = NULL;
    weft_cli_url_t url;
    char topic_url[300] = "";
    if (topic && strstr(topic, "://")) {
        char err[512];
        if (weft_cli_parse_url(topic, &url, err, sizeof(err)) != 0) {
            fprintf(stderr, "weft triggers: --topic %s\n", err);
            return 2;
        }
        source = weft_cli_scheme(url.broker);
        topic = url.name;
    }
    if (topic)
        snprintf(topic_url, sizeof(topic_url), "%s://%s", source ? source : "kafka", topic);
    PGconn *pg = weft_cli_pg_connect(cfg, "weft triggers");
    if (!pg)
        return 1;
    const char *params[2] = {topic, source};
    PGresult *r =
        PQexecParams(pg, json ? TRIGGERS_JSON_SQL : TRIGGERS_SQL, 2, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "weft triggers: %s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(pg);
        return 1;
    }
    if (json)
        printf("%s\n", PQgetvalue(r, 0, 0));
    else
        print_table(r, topic ? topic_url : NULL);
    PQclear(r);
    PQfinish(pg);
    return 0;
}
