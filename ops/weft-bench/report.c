/*
 * report.c - the table's rows, printed as a table or as JSON.
 *
 * Part of weft-bench (ops/weft-bench/main.c says what it measures); runs
 * in the benchmark process, never in weft.
 */
#include "bench.h"

/* ---- results -------------------------------------------------------------- */

row_t rows[16];
int n_rows;

void row_init(row_t *r, const char *name, const char *what)
{
    memset(r, 0, sizeof(*r));
    r->name = name;
    r->what = what;
    r->p50 = r->p99 = r->p999 = NAN;
    r->disp_cpu_us = r->pg_cpu_us = NAN;
    r->rss_kib = -1;
    r->busy = NAN;
}

row_t *row_add(const char *name, const char *what)
{
    row_t *r = &rows[n_rows++];
    row_init(r, name, what);
    return r;
}

row_t *row_find(const char *name)
{
    for (int i = 0; i < n_rows; i++)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    return NULL;
}

int want(const char *name)
{
    if (!opt.only)
        return 1;
    char buf[256];
    snprintf(buf, sizeof(buf), ",%s,", opt.only);
    char needle[64];
    snprintf(needle, sizeof(needle), ",%s,", name);
    return strstr(buf, needle) != NULL;
}

/* The ceiling a run is compared with: JetStream runs with the JetStream
 * passthrough, everything else with the Kafka one. */
static row_t *ceiling_for(const row_t *r)
{
    int js = strncmp(r->name, "weft-js", 7) == 0 || strncmp(r->name, "js-", 3) == 0;
    return row_find(js ? "js-ceiling" : "ceiling");
}

void print_table(void)
{
    row_t *fork_r = row_find("fork-exec");
    printf("\nbroker: %s\n", broker_desc);
    printf("\n%-13s %10s %9s %8s %8s %9s %9s %8s %8s %8s %8s %6s  %s\n", "run", "events/s",
           "vs ceil", "vs fork", "events", "seconds", "cpu/ev", "pg/ev", "p50", "p99", "p99.9",
           "busy", "RSS");
    printf("%-13s %10s %9s %8s %8s %9s %9s %8s %8s %8s %8s %6s  %s\n", "", "", "", "", "", "",
           "(us)", "(us)", "(ms)", "(ms)", "(ms)", "(core)", "(MiB)");
    for (int i = 0; i < n_rows; i++) {
        row_t *r = &rows[i];
        row_t *ceil_r = ceiling_for(r);
        char eps[32] = "-", vc[32] = "-", vf[32] = "-", cpu[32] = "-", pg[32] = "-", p50[32] = "-",
             p99[32] = "-", p999[32] = "-", rss[32] = "-", secs[32] = "-", busy[32] = "-";
        if (r->eps > 0)
            snprintf(eps, sizeof(eps), "%.0f", r->eps);
        else if (r->offered > 0)
            snprintf(eps, sizeof(eps), "(%.0f)", r->offered);
        if (r->eps > 0 && ceil_r && ceil_r->eps > 0)
            snprintf(vc, sizeof(vc), "%.3fx", r->eps / ceil_r->eps);
        if (r->eps > 0 && fork_r && fork_r->eps > 0)
            snprintf(vf, sizeof(vf), "%.1fx", r->eps / fork_r->eps);
        if (r->seconds > 0)
            snprintf(secs, sizeof(secs), "%.2f", r->seconds);
        if (!isnan(r->disp_cpu_us))
            snprintf(cpu, sizeof(cpu), "%.1f", r->disp_cpu_us);
        if (!isnan(r->pg_cpu_us))
            snprintf(pg, sizeof(pg), "%.1f", r->pg_cpu_us);
        if (!isnan(r->p50)) {
            snprintf(p50, sizeof(p50), "%.2f", r->p50);
            snprintf(p99, sizeof(p99), "%.2f", r->p99);
            snprintf(p999, sizeof(p999), "%.2f", r->p999);
        }
        if (r->rss_kib >= 0)
            snprintf(rss, sizeof(rss), "%.1f", (double)r->rss_kib / 1024.0);
        if (!isnan(r->busy))
            snprintf(busy, sizeof(busy), "%.2f", r->busy);
        printf("%-13s %10s %9s %8s %8ld %9s %9s %8s %8s %8s %8s %6s  %s\n", r->name, eps, vc, vf,
               r->events, secs, cpu, pg, p50, p99, p999, busy, rss);
    }
    printf("\n");
    for (int i = 0; i < n_rows; i++)
        printf("  %-13s %s\n", rows[i].name, rows[i].what);
    printf("  (events/s in parentheses: the offered load of a latency run)\n"
           "  cpu/ev: CPU of the dispatcher (for the ceiling: of the passthrough) per event;\n"
           "  pg/ev: CPU of all PostgreSQL processes per event; RSS: peak (VmHWM).\n"
           "  busy: cores kept busy on the whole machine (every process) during a\n"
           "  latency run, out of %d.\n"
           "  %d cores; partitions per input topic: %d (latency topics: %d); workers per\n"
           "  no-op pool: %d.\n",
           (int)sysconf(_SC_NPROCESSORS_ONLN), (int)sysconf(_SC_NPROCESSORS_ONLN), opt.partitions,
           opt.lat_partitions, opt.pool_size);
    if (n_pairs > 1 && paired()) {
        printf("  weft-so / ceiling in %d interleaved pairs (events/s), the table's is the\n"
               "  median:",
               n_pairs);
        for (int i = 0; i < n_pairs; i++)
            printf("%s %.3fx (%.0f / %.0f)", i ? "," : "", pair_ratio(i), pair_so[i].eps,
                   pair_ceil[i].eps);
        printf("\n");
    }
}

static void json_num(const char *k, double v, int last)
{
    if (isnan(v))
        printf("\"%s\":null%s", k, last ? "" : ",");
    else
        printf("\"%s\":%.3f%s", k, v, last ? "" : ",");
}

void print_json(void)
{
    row_t *fork_r = row_find("fork-exec");
    printf("{\"broker\":\"%s\",\"broker_kind\":\"%s\",", broker_desc, fx.kafka_kind);
    printf("\"cores\":%d,\"partitions\":%d,\"latency_partitions\":%d,\"pool_size\":%d,",
           (int)sysconf(_SC_NPROCESSORS_ONLN), opt.partitions, opt.lat_partitions, opt.pool_size);
    printf("\"pairs\":[");
    for (int i = 0; i < n_pairs && paired(); i++) {
        printf("%s{", i ? "," : "");
        json_num("ceiling_events_per_s", pair_ceil[i].eps, 0);
        json_num("weft_so_events_per_s", pair_so[i].eps, 0);
        json_num("vs_ceiling", pair_ratio(i), 1);
        printf("}");
    }
    printf("],\"runs\":[");
    for (int i = 0; i < n_rows; i++) {
        row_t *r = &rows[i];
        row_t *ceil_r = ceiling_for(r);
        printf("%s{\"run\":\"%s\",\"what\":\"%s\",\"events\":%ld,", i ? "," : "", r->name, r->what,
               r->events);
        json_num("seconds", r->seconds > 0 ? r->seconds : NAN, 0);
        json_num("events_per_s", r->eps > 0 ? r->eps : NAN, 0);
        json_num("vs_ceiling", r->eps > 0 && ceil_r && ceil_r->eps > 0 ? r->eps / ceil_r->eps : NAN,
                 0);
        json_num("vs_fork_exec",
                 r->eps > 0 && fork_r && fork_r->eps > 0 ? r->eps / fork_r->eps : NAN, 0);
        json_num("offered_per_s", r->offered > 0 ? r->offered : NAN, 0);
        json_num("cpu_us_per_event", r->disp_cpu_us, 0);
        json_num("pg_cpu_us_per_event", r->pg_cpu_us, 0);
        json_num("p50_ms", r->p50, 0);
        json_num("p99_ms", r->p99, 0);
        json_num("p999_ms", r->p999, 0);
        json_num("machine_busy_cores", r->busy, 0);
        json_num("peak_rss_mib", r->rss_kib >= 0 ? (double)r->rss_kib / 1024.0 : NAN, 1);
        printf("}");
    }
    printf("]}\n");
}
