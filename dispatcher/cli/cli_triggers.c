/*
 * cli_triggers.c - `weft triggers`: which triggers fire on what, with
 * their filters, functions, result and dead-letter topics. The answer to
 * "what happens when I publish to X?".
 *
 * Runs in the CLI process; reads weft.triggers, weft.trigger_filters and
 * weft.functions (disabled triggers included, marked as such).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pgconn.h"

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

static void print_table(const weft_trigger_list_t *l, const char *topic_url)
{
    int n = (int)l->n;
    static const char *const heads[N_COLS] = {"TRIGGER",  "SOURCE",   "FILTER",
                                              "FUNCTION", "RESULTS",  "DEAD LETTERS",
                                              "ORDER",    "ATTEMPTS", "ENABLED"};
    char **cells = calloc((size_t)n * N_COLS + 1, sizeof(char *));
    int width[N_COLS];
    for (int c = 0; c < N_COLS; c++)
        width[c] = (int)strlen(heads[c]);
    for (int i = 0; cells && i < n; i++) {
        char **row = &cells[i * N_COLS];
        const weft_trigger_row_t *t = &l->rows[i];
        if (asprintf(&row[C_NAME], "%s", t->name) < 0 ||
            asprintf(&row[C_SOURCE], "%s://%s", t->source, t->topic) < 0 ||
            asprintf(&row[C_FILTER], "%s", t->filter) < 0 ||
            (*t->runtime
                 ? asprintf(&row[C_FUNCTION], "%s (%s, %s %s)", t->function, t->runtime,
                            t->pool_mode,
                            strcmp(t->pool_mode, "static") == 0 ? t->pool_size : t->max_workers)
                 : asprintf(&row[C_FUNCTION], "%s", t->function)) < 0 ||
            asprintf(&row[C_RESULTS], "%s", *t->results ? t->results : "-") < 0 ||
            asprintf(&row[C_DLQ], "%s", t->dead_letters) < 0 ||
            asprintf(&row[C_ORDER], "%s", t->ordering) < 0 ||
            asprintf(&row[C_ATTEMPTS], "%s", t->max_attempts) < 0 ||
            asprintf(&row[C_ENABLED], "%s", t->enabled ? "yes" : "no") < 0) {
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
            enabled += l->rows[i].enabled;
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
    weft_pg_conn_t *pg = weft_cli_pg_connect(cfg, "weft triggers");
    if (!pg)
        return 1;
    char err[1024];
    int rc = 0;
    if (json) {
        char *text = weft_catalog_list_json(pg, topic, source, err, sizeof(err));
        if (text)
            printf("%s\n", text);
        free(text);
        rc = text ? 0 : 1;
    } else {
        weft_trigger_list_t l;
        rc = weft_catalog_list(pg, topic, source, &l, err, sizeof(err)) == 0 ? 0 : 1;
        if (rc == 0)
            print_table(&l, topic ? topic_url : NULL);
        weft_trigger_list_free(&l);
    }
    if (rc)
        fprintf(stderr, "weft triggers: %s", err);
    weft_pgconn_close(pg);
    return rc;
}
