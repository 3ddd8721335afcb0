/*
 * cli_sagas.c - `weft sagas list` and `weft sagas show ID`: saga instances
 * and the timeline of one, read from PostgreSQL (weft.saga_instances,
 * weft.saga_step_runs, weft.saga_events).
 */
#include "cli_sagas.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hash.h"
#include "json.h"
#include "pgconn.h"
#include "saga_admin.h"

void weft_sagas_usage(FILE *f)
{
    fprintf(f,
            "usage: weft sagas list [--saga NAME] [--status STATUS] [--since TIME]\n"
            "                       [--limit N] [--json]\n"
            "       weft sagas show ID [--json]\n"
            "\n"
            "list: saga instances, newest first (default limit 50). STATUS is running,\n"
            "compensating, completed, aborted or stuck; TIME as in weft replay (RFC 3339,\n"
            "'2024-05-01 10:00', '@MILLIS' or a duration ago such as 15m, 2h, 7d).\n"
            "show: one instance: its steps (input, output, status of each step and\n"
            "compensation) and its timeline, every event it published, in order.\n"
            "\n"
            "examples:\n"
            "  weft sagas list --status stuck\n"
            "  weft sagas list --saga order --since 1h --json\n"
            "  weft sagas show 3f1c2a9e-0b7d-8c4e-9a51-2f6d0e8b7c11\n");
}


static const char *const STATUSES[] = {"running", "compensating", "completed", "aborted",
                                       "stuck"};

static void print_json_str(const char *s)
{
    weft_buf_t b = {0};
    if (s && weft_json_append_string(&b, s, strlen(s)) == 0 && b.p)
        fwrite(b.p, 1, b.len, stdout);
    else
        fputs("null", stdout);
    weft_buf_free(&b);
}

static int sagas_list(weft_pg_conn_t *pg, int argc, char **argv)
{
    static const struct option lo[] = {
        {"saga", required_argument, NULL, 's'},   {"status", required_argument, NULL, 't'},
        {"since", required_argument, NULL, 'S'},  {"limit", required_argument, NULL, 'l'},
        {"json", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *saga = NULL, *status = NULL;
    char since[32] = "", limit[16] = "50";
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 's': saga = optarg; break;
        case 't': {
            int ok = 0;
            for (size_t i = 0; i < sizeof(STATUSES) / sizeof(STATUSES[0]); i++)
                ok |= strcmp(optarg, STATUSES[i]) == 0;
            if (!ok) {
                fprintf(stderr,
                        "weft sagas: unknown status '%s' (running, compensating, completed, "
                        "aborted, stuck)\n",
                        optarg);
                return 2;
            }
            status = optarg;
            break;
        }
        case 'S': {
            char err[256];
            int64_t ms;
            if (weft_cli_parse_time(optarg, weft_cli_now_ms(), &ms, err, sizeof(err)) != 0) {
                fprintf(stderr, "weft sagas: --since: %s\n", err);
                return 2;
            }
            weft_cli_format_time(ms, since);
            break;
        }
        case 'l': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 100000) {
                fprintf(stderr, "weft sagas: --limit must be 1..100000\n");
                return 2;
            }
            snprintf(limit, sizeof(limit), "%ld", v);
            break;
        }
        case 'j': json = 1; break;
        case 'h': weft_sagas_usage(stdout); return 0;
        default: weft_sagas_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft sagas list: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    const char *params[4] = {saga, status, since[0] ? since : NULL, limit};
    char err[1024];
    weft_pg_result_t *r = weft_saga_admin_list(pg, params, err, sizeof(err));
    if (!r) {
        fprintf(stderr, "weft sagas list: %s", err);
        return 1;
    }
    int n = weft_pgresult_rows(r);
    if (json) {
        printf("[");
        for (int i = 0; i < n; i++) {
            printf("%s{\"id\":\"%s\",\"saga\":", i ? "," : "", weft_pgresult_value(r, i, 0));
            print_json_str(weft_pgresult_value(r, i, 1));
            printf(",\"status\":\"%s\",\"current_step\":%s,\"failed_step\":%s,"
                   "\"started_at\":\"%s\",\"updated_at\":\"%s\",\"trigger\":",
                   weft_pgresult_value(r, i, 2), weft_pgresult_value(r, i, 3),
                   weft_pgresult_value(r, i, 4)[0] ? weft_pgresult_value(r, i, 4) : "null",
                   weft_pgresult_value(r, i, 5), weft_pgresult_value(r, i, 6));
            print_json_str(weft_pgresult_value(r, i, 8));
            printf(",\"error\":");
            print_json_str(weft_pgresult_value(r, i, 7)[0] ? weft_pgresult_value(r, i, 7) : NULL);
            printf("}");
        }
        printf("]\n");
    } else if (n == 0) {
        printf("no saga instances\n");
    } else {
        printf("%-36s  %-16s %-12s %4s  %-24s  %s\n", "ID", "SAGA", "STATUS", "STEP", "STARTED",
               "ERROR");
        for (int i = 0; i < n; i++)
            printf("%-36s  %-16s %-12s %4s  %-24s  %.60s\n", weft_pgresult_value(r, i, 0),
                   weft_pgresult_value(r, i, 1), weft_pgresult_value(r, i, 2),
                   weft_pgresult_value(r, i, 4)[0] ? weft_pgresult_value(r, i, 4)
                                                   : weft_pgresult_value(r, i, 3),
                   weft_pgresult_value(r, i, 5), weft_pgresult_value(r, i, 7));
    }
    weft_pgresult_free(r);
    return 0;
}

/* A bytea column for display: the text when it is printable UTF-8 (cut
 * at max bytes), else its size; "-" when NULL or empty. */
static void print_data(const weft_pg_result_t *r, int row, int col, int max)
{
    size_t len = 0;
    unsigned char *v = weft_pgresult_bytea(r, row, col, &len);
    if (!v || len == 0) {
        printf("-");
        free(v);
        return;
    }
    int printable = weft_utf8_valid(v, len);
    for (size_t i = 0; printable && i < len; i++)
        printable = v[i] >= 0x20 || v[i] == '\t';
    if (!printable)
        printf("(%zu bytes)", len);
    else if (len > (size_t)max)
        printf("%.*s...", max, (const char *)v);
    else
        printf("%.*s", (int)len, (const char *)v);
    free(v);
}

static int sagas_show(weft_pg_conn_t *pg, int argc, char **argv)
{
    static const struct option lo[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'j': json = 1; break;
        case 'h': weft_sagas_usage(stdout); return 0;
        default: weft_sagas_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "weft sagas show: give exactly one instance ID\n");
        return 2;
    }
    const char *id = argv[optind];
    if (!weft_uuid_valid(id)) {
        fprintf(stderr, "weft sagas show: '%s' is not a saga instance id (a UUID)\n", id);
        return 2;
    }
    weft_pg_result_t *h = NULL, *s = NULL, *e = NULL;
    char err[1024];
    int found = weft_saga_admin_show(pg, id, &h, &s, &e, err, sizeof(err));
    if (found == 1) {
        fprintf(stderr, "weft sagas show: no saga instance %s\n", id);
        return 1;
    }

    int rc = 0;
    if (found < 0) {
        fprintf(stderr, "weft sagas show: %s", err);
        rc = 1;
    } else if (json) {
        printf("{\"id\":\"%s\",\"saga\":", id);
        print_json_str(weft_pgresult_value(h, 0, 0));
        printf(",\"status\":\"%s\",\"trigger\":", weft_pgresult_value(h, 0, 1));
        print_json_str(weft_pgresult_value(h, 0, 2));
        printf(",\"start_key\":");
        print_json_str(weft_pgresult_value(h, 0, 3));
        printf(",\"current_step\":%s,\"failed_step\":%s,\"error\":", weft_pgresult_value(h, 0, 4),
               weft_pgresult_value(h, 0, 5)[0] ? weft_pgresult_value(h, 0, 5) : "null");
        print_json_str(weft_pgresult_value(h, 0, 6)[0] ? weft_pgresult_value(h, 0, 6) : NULL);
        printf(",\"started_at\":\"%s\",\"finished_at\":", weft_pgresult_value(h, 0, 7));
        print_json_str(weft_pgresult_value(h, 0, 8)[0] ? weft_pgresult_value(h, 0, 8) : NULL);
        printf(",\"deadline_at\":\"%s\",\"steps\":[", weft_pgresult_value(h, 0, 9));
        for (int i = 0; i < weft_pgresult_rows(s); i++) {
            printf("%s{\"step\":%s,\"name\":", i ? "," : "", weft_pgresult_value(s, i, 0));
            print_json_str(weft_pgresult_value(s, i, 1));
            printf(",\"phase\":\"%s\",\"status\":\"%s\",\"error\":", weft_pgresult_value(s, i, 2),
                   weft_pgresult_value(s, i, 3));
            print_json_str(weft_pgresult_value(s, i, 6)[0] ? weft_pgresult_value(s, i, 6) : NULL);
            printf(",\"started_at\":\"%s\",\"finished_at\":", weft_pgresult_value(s, i, 7));
            print_json_str(weft_pgresult_value(s, i, 8)[0] ? weft_pgresult_value(s, i, 8) : NULL);
            printf("}");
        }
        printf("],\"timeline\":[");
        for (int i = 0; i < weft_pgresult_rows(e); i++) {
            printf("%s{\"seq\":%s,\"at\":\"%s\",\"type\":\"%s\",\"step\":%s,\"phase\":",
                   i ? "," : "", weft_pgresult_value(e, i, 0), weft_pgresult_value(e, i, 1),
                   weft_pgresult_value(e, i, 2),
                   weft_pgresult_value(e, i, 3)[0] ? weft_pgresult_value(e, i, 3) : "null");
            print_json_str(weft_pgresult_value(e, i, 4)[0] ? weft_pgresult_value(e, i, 4) : NULL);
            printf(",\"topic\":");
            print_json_str(weft_pgresult_value(e, i, 5));
            printf(",\"id\":\"%s\",\"cause\":", weft_pgresult_value(e, i, 6));
            print_json_str(weft_pgresult_value(e, i, 9));
            printf("}");
        }
        printf("]}\n");
    } else {
        printf("saga %s  instance %s\n", weft_pgresult_value(h, 0, 0), id);
        printf("  status     %s", weft_pgresult_value(h, 0, 1));
        if (weft_pgresult_value(h, 0, 5)[0])
            printf(" (failed at step %s)", weft_pgresult_value(h, 0, 5));
        printf("\n  trigger    %s\n  started    %s\n", weft_pgresult_value(h, 0, 2),
               weft_pgresult_value(h, 0, 7));
        if (weft_pgresult_value(h, 0, 8)[0])
            printf("  finished   %s\n", weft_pgresult_value(h, 0, 8));
        else
            printf("  deadline   %s\n", weft_pgresult_value(h, 0, 9));
        if (weft_pgresult_value(h, 0, 6)[0])
            printf("  error      %s\n", weft_pgresult_value(h, 0, 6));
        printf("\nsteps:\n");
        for (int i = 0; i < weft_pgresult_rows(s); i++) {
            printf("  %2s %-14s %-10s %-9s in=", weft_pgresult_value(s, i, 0),
                   weft_pgresult_value(s, i, 1), weft_pgresult_value(s, i, 2),
                   weft_pgresult_value(s, i, 3));
            print_data(s, i, 4, 60);
            printf(" out=");
            print_data(s, i, 5, 60);
            if (weft_pgresult_value(s, i, 6)[0])
                printf(" error=%s", weft_pgresult_value(s, i, 6));
            printf("\n");
        }
        printf("\ntimeline:\n");
        for (int i = 0; i < weft_pgresult_rows(e); i++) {
            printf("  %s  %-27s", weft_pgresult_value(e, i, 1), weft_pgresult_value(e, i, 2));
            if (weft_pgresult_value(e, i, 3)[0])
                printf(" step %s/%s", weft_pgresult_value(e, i, 3), weft_pgresult_value(e, i, 4));
            printf("  -> %s%s\n", weft_pgresult_value(e, i, 5),
                   weft_pgresult_value(e, i, 8)[0] == 't' ||
                           strcmp(weft_pgresult_value(e, i, 9), "deadline") != 0
                       ? ""
                       : " (not yet published)");
        }
    }
    weft_pgresult_free(h);
    weft_pgresult_free(s);
    weft_pgresult_free(e);
    return rc;
}

int weft_sagas_main(const weft_config_t *cfg, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        weft_sagas_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "list") != 0 && strcmp(sub, "show") != 0) {
        fprintf(stderr, "weft sagas: unknown subcommand '%s' (list, show)\n", sub);
        return 2;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            weft_sagas_usage(stdout);
            return 0;
        }
    if (strcmp(sub, "show") == 0) {
        /* Arguments first: a typo is a usage error, whatever the database. */
        int ids = 0;
        for (int i = 2; i < argc; i++) {
            if (argv[i][0] == '-')
                continue;
            ids++;
            if (!weft_uuid_valid(argv[i])) {
                fprintf(stderr, "weft sagas show: '%s' is not a saga instance id (a UUID)\n",
                        argv[i]);
                return 2;
            }
        }
        if (ids != 1) {
            fprintf(stderr, "weft sagas show: give exactly one instance ID\n");
            return 2;
        }
    }
    weft_pg_conn_t *pg = weft_cli_pg_connect(cfg, "weft sagas");
    if (!pg)
        return 1;
    int rc = strcmp(sub, "list") == 0 ? sagas_list(pg, argc - 1, argv + 1)
                                      : sagas_show(pg, argc - 1, argv + 1);
    weft_pgconn_close(pg);
    return rc;
}
