/*
 * main.c - the `weft` command: subcommand dispatch, configuration loading
 * and help texts.
 *
 * Runs in the CLI process (and becomes the dispatcher for `weft run`).
 * Exit codes: 0 success, 1 runtime error, 2 usage or configuration error.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_sagas.h"
#include "config.h"
#include "dispatcher.h"
#include "invoke.h"
#include "dlq.h"
#include "log.h"
#include "migrate.h"

#ifndef WEFT_VERSION
#define WEFT_VERSION "0.0.0"
#endif

#ifdef WEFT_JEMALLOC
/* Read by jemalloc at startup (MALLOC_CONF in the environment still wins).
 * Freed pages stay for jemalloc's default 10 s before they go back to the
 * system. At 1 s the dispatcher faulted ~4,200 pages a second back in
 * under ops/bench even with 2 MiB fetches (kafka.c), at 10 s 1,000-2,000,
 * and a fault costs 11-16 us on a virtual machine. Peak RSS through a
 * 1M-event backlog stayed at 189-205 MiB (four runs). */
const char *malloc_conf = "dirty_decay_ms:10000,muzzy_decay_ms:0";
#endif

static void usage_main(FILE *f)
{
    fprintf(f, "usage: weft COMMAND [OPTIONS]\n"
               "\n"
               "commands:\n"
               "  run       run the dispatcher in the foreground\n"
               "  migrate   apply weft's schema and your trigger migrations\n"
               "  publish   publish a CloudEvent (or one per line of stdin)\n"
               "  triggers  which triggers fire on what: filters, functions, topics\n"
               "  status    consumer lag, in-flight events, outcomes, pools, dispatchers\n"
               "  replay    re-dispatch a topic range (recover results, or --reexecute)\n"
               "  sagas     saga instances and the timeline of one\n"
               "  invoke    run a function once, locally, and print its result\n"
               "  dlq       list, show and re-drive dead letters\n"
               "  ledger    prune: delete finished ledger rows older than an age now\n"
               "  version   print the version\n"
               "\n"
               "Run 'weft COMMAND --help' for a command's options.\n"
               "Configuration: --config FILE, then the environment (WEFT_PG,\n"
               "WEFT_KAFKA_BROKERS, WEFT_NATS_URL, WEFT_LOG_LEVEL, WEFT_SET), then --set.\n");
}

static void usage_run(FILE *f)
{
    fprintf(f, "usage: weft run [--config FILE] [--set KEY=VALUE ...]\n"
               "       weft run --help-config [--markdown]\n"
               "\n"
               "Runs the dispatcher in the foreground until SIGTERM or SIGINT, then\n"
               "finishes in-flight work (dispatcher.shutdown_timeout_ms), commits and\n"
               "exits 0.\n"
               "\n"
               "--help-config prints every configuration key with its type, default,\n"
               "range and meaning (--markdown: as the README's reference table).\n"
               "\n"
               "examples:\n"
               "  weft run --config /etc/weft/weft.conf\n"
               "  WEFT_PG='host=127.0.0.1 port=5432 dbname=weft' \\\n"
               "  WEFT_KAFKA_BROKERS=127.0.0.1:9092 weft run --set log.level=debug\n");
}

static void usage_migrate(FILE *f)
{
    fprintf(f,
            "usage: weft migrate [--config FILE] [--dir DIR ...] [--dry-run]\n"
            "\n"
            "Applies weft's own schema (%s), then the numbered .sql files of each\n"
            "--dir in order, each file in one transaction. Applied files are recorded\n"
            "with their checksum in weft.schema_migrations; an applied file that was\n"
            "edited stops the run with a non-zero exit before anything is applied.\n"
            "\n"
            "examples:\n"
            "  weft migrate\n"
            "  weft migrate --dir ./triggers --dry-run\n",
            weft_config_def_find("migrations.dir")->def);
}

typedef struct common_opts {
    const char *config_path;
    const char *sets[64];
    int n_sets;
} common_opts_t;

/* Loads the configuration (file, environment, --set) and starts logging
 * as component at log.level. */
static weft_config_t *load_config(const common_opts_t *o, const char *component)
{
    char err[1024];
    weft_config_t *cfg = weft_config_new();
    if (!cfg) {
        fprintf(stderr, "weft: out of memory\n");
        return NULL;
    }
    if (o->config_path && weft_config_load_file(cfg, o->config_path, err, sizeof(err)) != 0)
        goto fail;
    if (weft_config_load_env(cfg, err, sizeof(err)) != 0)
        goto fail;
    for (int i = 0; i < o->n_sets; i++)
        if (weft_config_parse_line(cfg, o->sets[i], err, sizeof(err)) != 0) {
            fprintf(stderr, "weft: --set %s: %s\n", o->sets[i], err);
            weft_config_destroy(cfg);
            return NULL;
        }
    /* Unknown keys and bad values stop every command here, before
     * anything starts. */
    if (weft_config_validate(cfg, err, sizeof(err)) != 0)
        goto fail;
    weft_log_level_t lvl = WEFT_LOG_INFO;
    const char *ls = weft_config_str(cfg, "log.level");
    if (weft_log_level_parse(ls, &lvl) != 0) {
        snprintf(err, sizeof(err), "log.level: unknown level \"%s\" (debug, info, warn, error)",
                 ls);
        goto fail;
    }
    weft_log_init(component, lvl);
    return cfg;
fail:
    fprintf(stderr, "weft: %s\n", err);
    weft_config_destroy(cfg);
    return NULL;
}

static int cmd_run(int argc, char **argv)
{
    common_opts_t o = {0};
    int help_config = 0, markdown = 0;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},         {"help-config", no_argument, NULL, 'H'},
        {"markdown", no_argument, NULL, 'm'},     {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.config_path = optarg;
            break;
        case 's':
            if (o.n_sets < 64)
                o.sets[o.n_sets++] = optarg;
            break;
        case 'h':
            usage_run(stdout);
            return 0;
        case 'H':
            help_config = 1;
            break;
        case 'm':
            markdown = 1;
            break;
        default:
            usage_run(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft run: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (markdown && !help_config) {
        fprintf(stderr, "weft run: --markdown goes with --help-config\n");
        return 2;
    }
    if (help_config) {
        weft_config_print(stdout, markdown ? WEFT_CONFIG_MARKDOWN : WEFT_CONFIG_TEXT);
        return 0;
    }
    weft_config_t *cfg = load_config(&o, "dispatcher");
    if (!cfg)
        return 2;
    int rc = weft_dispatcher_run(cfg);
    weft_config_destroy(cfg);
    return rc;
}

static int cmd_migrate(int argc, char **argv)
{
    common_opts_t o = {0};
    const char *dirs[64];
    int n_dirs = 0, dry_run = 0;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"set", required_argument, NULL, 's'},
                                         {"dir", required_argument, NULL, 'd'},
                                         {"dry-run", no_argument, NULL, 'n'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:s:d:nh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            o.config_path = optarg;
            break;
        case 's':
            if (o.n_sets < 64)
                o.sets[o.n_sets++] = optarg;
            break;
        case 'd':
            if (n_dirs == 64) {
                fprintf(stderr, "weft migrate: at most 64 --dir\n");
                return 2;
            }
            dirs[n_dirs++] = optarg;
            break;
        case 'n':
            dry_run = 1;
            break;
        case 'h':
            usage_migrate(stdout);
            return 0;
        default:
            usage_migrate(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft migrate: unexpected argument \"%s\" (use --dir DIR)\n",
                argv[optind]);
        return 2;
    }
    weft_config_t *cfg = load_config(&o, "weft");
    if (!cfg)
        return 2;
    const char *conninfo = weft_config_str(cfg, "pg.conninfo");
    if (!conninfo) {
        fprintf(stderr, "weft migrate: pg.conninfo is not set (config file or WEFT_PG)\n");
        weft_config_destroy(cfg);
        return 2;
    }
    weft_migration_list_t list = {0};
    char err[2048];
    int rc = 0;
    const char *own = weft_config_str(cfg, "migrations.dir");
    if (weft_migrate_scan_dir(&list, own, err, sizeof(err)) != 0) {
        rc = 2;
        goto out;
    }
    for (int i = 0; i < n_dirs; i++)
        if (weft_migrate_scan_dir(&list, dirs[i], err, sizeof(err)) != 0) {
            rc = 2;
            goto out;
        }
    if (weft_migrate_apply(conninfo, &list, dry_run, err, sizeof(err)) != 0)
        rc = 1;
out:
    if (rc)
        fprintf(stderr, "weft migrate: %s\n", err);
    weft_migrate_list_free(&list);
    weft_config_destroy(cfg);
    return rc;
}

/* Takes --config FILE and --set K=V (anywhere on the line) into o and
 * copies the other arguments to rest (NULL-terminated, at most cap - 1).
 * Returns their count; cap - 1 means there were too many. */
static int split_config_opts(int argc, char **argv, common_opts_t *o, char **rest, int cap)
{
    int n = 0;
    for (int i = 0; i < argc && n < cap - 1; i++) {
        if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "--set") == 0) && i + 1 < argc) {
            if (argv[i][2] == 'c')
                o->config_path = argv[++i];
            else if (o->n_sets < 64)
                o->sets[o->n_sets++] = argv[++i];
            continue;
        }
        rest[n++] = argv[i];
    }
    rest[n] = NULL;
    return n;
}

/* `weft dlq SUB [--config FILE] [--set K=V] ...`: the config options are
 * taken out here, the rest goes to dlq.c. */
static int cmd_dlq(int argc, char **argv)
{
    common_opts_t o = {0};
    char *rest[256];
    int n = split_config_opts(argc, argv, &o, rest, 256);
    int wants_help = n < 2 || strcmp(rest[1], "--help") == 0 || strcmp(rest[1], "-h") == 0;
    weft_config_t *cfg = wants_help ? weft_config_new() : load_config(&o, "weft");
    if (!cfg)
        return 2;
    int rc = weft_dlq_main(cfg, n, rest);
    weft_config_destroy(cfg);
    return rc;
}

/* `weft publish | replay | triggers | status | sagas [--config FILE]
 * [--set K=V] ...`: the config options are taken out here (anywhere on
 * the line), the rest goes to the command's file in cli/. Help needs no
 * configuration. A command that adjusts the configuration it was given
 * (publish and replay set producer timeouts) has main; the others, which
 * only read it, have main_ro. */
typedef struct cli_cmd {
    const char *name;
    int (*main)(weft_config_t *cfg, int argc, char **argv);
    int (*main_ro)(const weft_config_t *cfg, int argc, char **argv);
    void (*usage)(FILE *f);
} cli_cmd_t;

static const cli_cmd_t cli_cmds[] = {
    {"publish", weft_publish_main, NULL, weft_publish_usage},
    {"replay", weft_replay_main, NULL, weft_replay_usage},
    {"triggers", NULL, weft_triggers_main, weft_triggers_usage},
    {"status", NULL, weft_status_main, weft_status_usage},
    {"sagas", NULL, weft_sagas_main, weft_sagas_usage},
    {"ledger", NULL, weft_ledger_main, weft_ledger_usage},
};

static int cmd_cli(int argc, char **argv, const cli_cmd_t *cmd)
{
    common_opts_t o = {0};
    char *rest[256];
    int n = split_config_opts(argc, argv, &o, rest, 256);
    for (int i = 0; i < n; i++) {
        if (strcmp(rest[i], "--help") == 0 || strcmp(rest[i], "-h") == 0) {
            cmd->usage(stdout);
            return 0;
        }
    }
    if (n == 255) {
        fprintf(stderr, "weft %s: too many arguments\n", argv[0]);
        return 2;
    }
    weft_config_t *cfg = load_config(&o, "weft");
    if (!cfg)
        return 2;
    int rc = cmd->main ? cmd->main(cfg, n, rest) : cmd->main_ro(cfg, n, rest);
    weft_config_destroy(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_main(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage_main(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("weft %s\n", WEFT_VERSION);
        return 0;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "migrate") == 0)
        return cmd_migrate(argc - 1, argv + 1);
    if (strcmp(cmd, "invoke") == 0)
        return weft_invoke_main(argc - 1, argv + 1);
    if (strcmp(cmd, "dlq") == 0)
        return cmd_dlq(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(cli_cmds) / sizeof(cli_cmds[0]); i++)
        if (strcmp(cmd, cli_cmds[i].name) == 0)
            return cmd_cli(argc - 1, argv + 1, &cli_cmds[i]);
    fprintf(stderr, "weft: unknown command \"%s\"\n\n", cmd);
    usage_main(stderr);
    return 2;
}
