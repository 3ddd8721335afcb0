/*
 * cli_ledger.c - `weft ledger prune`: delete finished ledger rows (and
 * done replays) older than a given age now, in the batches the
 * dispatchers' retention uses (store/retention.c), for an operator who
 * wants space back at once or keeps retention.ledger at 0.
 *
 * Runs in the CLI process, waiting for each batch. Invariants: the same
 * statement as the dispatchers' sweep, so only terminal rows go (never a
 * 'running' one: claimed or retrying), rows a dispatcher holds are
 * skipped, and a run stopped between or within batches leaves every row
 * either kept or deleted (each batch is one transaction).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "pgconn.h"
#include "retention.h"

/* A prune with retention.batch at 0 (retention off) still goes in
 * batches of this many. */
#define PRUNE_BATCH 1000

void weft_ledger_usage(FILE *f)
{
    fprintf(f, "usage: weft ledger prune [--older-than DURATION] [--dry-run] [--json]\n"
               "\n"
               "Deletes the ledger rows that finished (completed, dropped or dead) more\n"
               "than DURATION ago, and replays done as long ago, now, in batches of\n"
               "retention.batch, oldest first. Rows still running (claimed, or waiting\n"
               "for a retry) are never deleted. The dispatchers do the same on their own\n"
               "(retention.ledger); this is for space back at once.\n"
               "\n"
               "An event whose ledger row is gone runs again when it is redelivered or\n"
               "replayed, instead of re-emitting its stored result.\n"
               "\n"
               "  --older-than D  30d, 12h, 90m ... (default: retention.ledger)\n"
               "  --dry-run       count what would be deleted (and what is kept: still\n"
               "                  running), delete nothing\n"
               "  --json          one object: older_than_ms, dry_run, ledger, replays,\n"
               "                  running, batches\n"
               "\n"
               "examples:\n"
               "  weft ledger prune --older-than 14d --dry-run\n"
               "  weft ledger prune --older-than 14d\n");
}

static int prune(weft_pg_conn_t *pg, const weft_retention_t *rt, const char *age, int dry_run,
                 int json)
{
    char err[512];
    int64_t terminal = 0, running = 0, replays = 0, batches = 0;
    if (weft_retention_count_ledger(pg, rt->ledger_ms, &terminal, &running, &replays, err,
                                    sizeof(err)) != 0) {
        fprintf(stderr, "weft ledger: %s\n", err);
        return 1;
    }
    if (!dry_run) {
        terminal = replays = 0;
        weft_retention_counts_t c;
        do {
            if (weft_retention_sweep(pg, rt, &c, err, sizeof(err)) != 0) {
                fprintf(stderr, "weft ledger: %s (deleted so far: %lld ledger rows)\n", err,
                        (long long)terminal);
                return 1;
            }
            terminal += c.ledger;
            replays += c.replays;
            batches++;
        } while (c.ledger + c.replays > 0);
    }
    if (json) {
        printf("{\"older_than_ms\":%lld,\"dry_run\":%s,\"ledger\":%lld,\"replays\":%lld,"
               "\"running\":%lld,\"batches\":%lld}\n",
               (long long)rt->ledger_ms, dry_run ? "true" : "false", (long long)terminal,
               (long long)replays, (long long)running, (long long)batches);
        return 0;
    }
    printf("%s %lld ledger rows and %lld replays finished more than %s ago\n",
           dry_run ? "would delete" : "deleted", (long long)terminal, (long long)replays, age);
    if (running)
        printf("kept %lld ledger rows of that age still running (claimed or retrying)\n",
               (long long)running);
    return 0;
}

int weft_ledger_main(const weft_config_t *cfg, int argc, char **argv)
{
    static const struct option opts[] = {{"older-than", required_argument, NULL, 'o'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    if (argc < 2 || strcmp(argv[1], "prune") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
            weft_ledger_usage(stdout);
            return 0;
        }
        fprintf(stderr, "weft ledger: expected a subcommand: prune\n");
        weft_ledger_usage(stderr);
        return 2;
    }
    const char *older = NULL;
    int dry_run = 0, json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "o:njh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            older = optarg;
            break;
        case 'n':
            dry_run = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            weft_ledger_usage(stdout);
            return 0;
        default:
            weft_ledger_usage(stderr);
            return 2;
        }
    }
    if (optind < argc - 1) {
        fprintf(stderr, "weft ledger prune: unexpected argument \"%s\"\n", argv[optind + 1]);
        return 2;
    }
    weft_retention_t rt;
    char err[512];
    if (weft_retention_config(cfg, &rt, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft ledger prune: %s\n", err);
        return 2;
    }
    if (older && weft_config_parse_duration(older, &rt.ledger_ms) != 0) {
        fprintf(stderr,
                "weft ledger prune: --older-than \"%s\": expected a duration (a number and ms, "
                "s, m, h or d, e.g. 30d)\n",
                older);
        return 2;
    }
    if (!older)
        older = weft_config_str(cfg, "retention.ledger");
    if (rt.ledger_ms <= 0) {
        fprintf(stderr, "weft ledger prune: give --older-than (retention.ledger is 0: keep "
                        "everything)\n");
        return 2;
    }
    /* The ledger and the replays only: dead letters and sagas keep their
     * own retention. */
    rt.dead_letters_ms = rt.sagas_ms = 0;
    if (rt.batch <= 0)
        rt.batch = PRUNE_BATCH;
    weft_pg_conn_t *pg = weft_cli_pg_connect(cfg, "weft ledger prune");
    if (!pg)
        return 1;
    int rc = prune(pg, &rt, older, dry_run, json);
    weft_pgconn_close(pg);
    return rc;
}
