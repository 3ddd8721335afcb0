/*
 * bench.h - what the parts of weft-bench share: the options, the stack,
 * the table's rows, and the helpers each run uses. See main.c for what the
 * benchmark measures and how.
 */
#ifndef WEFT_BENCH_H
#define WEFT_BENCH_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include <nats/nats.h>

#include "fixture.h"

extern char **environ;

#define MAX_PAIRS 9

typedef struct bench_opt {
    int json;
    long n_ceiling;
    long n_weft;
    long n_exec;
    long n_fork;
    long n_backlog;
    long n_js;
    long n_js_weft;
    int pool_size;
    int partitions;
    int low_rate;
    int half_rate;
    int lat_seconds;
    int lat_partitions;
    int backlog_seconds;
    int pairs;
    const char *only;
    const char *perf_dir;
    const char *weft_set_extra;
} bench_opt_t;
extern bench_opt_t opt;

typedef struct {
    uint64_t busy, all;
} machine_cpu_t;

typedef struct row {
    const char *name;
    const char *what;
    long events;
    double seconds;
    double eps;
    double disp_cpu_us; /* per event; the passthrough's own CPU for the ceiling */
    double pg_cpu_us;
    long rss_kib;
    double p50, p99, p999; /* ms; NAN when not measured */
    double offered;        /* latency runs: offered events/s */
    long lat_n;
    double busy; /* latency runs: cores busy on the whole machine; NAN when not measured */
} row_t;

typedef struct collector {
    pthread_t th;
    char topic[128];
    atomic_int stop;
    atomic_int ready; /* every partition read to its end once */
    atomic_long count;
    atomic_uint_fast64_t first_us, last_us;
    /* latency: publish times by sequence, per id prefix */
    const char *lat_prefix;
    _Atomic uint64_t *pub_us;
    uint64_t *lat_us; /* filled by the thread: arrival - publish */
    atomic_long n_lat;
    long lat_cap;
} collector_t;

extern fx_t fx;
extern char functions_dir[600];
extern char bench_topics[1024];
extern char broker_desc[128];
extern const char *fetch_wait_ms;
extern char weft_set[256];
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
extern atomic_long dr_errors;
extern row_t rows[16];
extern int n_rows;
extern int n_pairs;
extern row_t pair_ceil[MAX_PAIRS], pair_so[MAX_PAIRS];

/* kafka.c */
rd_kafka_conf_t *conf_new(void);
void conf_set(rd_kafka_conf_t *c, const char *k, const char *v);
void preload_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
rd_kafka_t *producer_new(int linger_ms, int idempotent,
                         void (*dr)(rd_kafka_t *, const rd_kafka_message_t *, void *));
void produce_event(rd_kafka_t *rk, const char *topic, int parts, const char *prefix, long seq);
int topic_partitions(rd_kafka_t *rk, const char *topic);
void preload(const char *topic, long n);
collector_t *collector_start(const char *topic, const char *lat_prefix, long lat_cap);
long collector_wait(collector_t *c, long n, int idle_ms, int max_s);
void collector_stop(collector_t *c);

/* latency.c */
void run_latency(void);

/* measure.c */
uint64_t now_us(void);
uint64_t proc_cpu_us(pid_t pid);
machine_cpu_t machine_cpu(void);
double machine_busy_cores(machine_cpu_t from);
uint64_t pg_cpu_us(void);
double cpu_per_event(uint64_t before, uint64_t after, long events);
long proc_mem_kib(pid_t pid, const char *field);
void reset_own_peak_rss(void);
int cmp_u64(const void *a, const void *b);
double pct(const uint64_t *sorted, size_t n, double p);

/* other_runs.c */
void run_fork(void);
natsConnection *js_connect(jsCtx **js);
void js_stream(jsCtx *js, const char *name, const char *subject);
void run_js_ceiling(void);
void run_weft_js(void);

/* report.c */
void row_init(row_t *r, const char *name, const char *what);
row_t *row_add(const char *name, const char *what);
row_t *row_find(const char *name);
int want(const char *name);
void print_table(void);
void print_json(void);

/* runs.c */
rd_kafka_conf_t *passthrough_consumer_conf(const char *group);
void kafka_run_begin(void);
pid_t weft_start(const char *log, const char *trigger);
void weft_stop(pid_t pid);
pid_t perf_start(const char *run, pid_t target);
void perf_stop(pid_t pid);
void run_weft(row_t *r, const char *log, int perf_it, const char *trigger, const char *in,
              const char *out, long n);
int paired(void);
double pair_ratio(int i);
void run_ceiling_and_weft_so(void);
void run_backlog(void);

#endif
