/*
 * measure.c - small helpers: time, messages, CPU and memory of processes from /proc, percentiles.
 *
 * Part of weft-bench (ops/weft-bench/main.c says what it measures); runs
 * in the benchmark process, never in weft.
 */
#include "bench.h"

/* ---- small helpers ------------------------------------------------------ */

uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
    fprintf(stderr, "bench: %s", prefix);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
}

void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("", fmt, ap);
    va_end(ap);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsay("error: ", fmt, ap);
    va_end(ap);
    fx_down(&fx);
    exit(1);
}

/* From /proc/PID/stat: the parent (ppid, may be NULL) and utime + stime in
 * microseconds (cpu_us, may be NULL); with reaped, also the CPU of its
 * children that have exited and been waited for (cutime + cstime). 0, or
 * -1 when pid is gone. */
static int proc_stat_ex(pid_t pid, pid_t *ppid, uint64_t *cpu_us, int reaped)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the comm: state(3) ppid(4) ... utime(14) stime(15). */
    char *p = strrchr(buf, ')');
    int pp = -1;
    unsigned long long ut = 0, st = 0, cut = 0, cst = 0;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu", &pp,
                     &ut, &st, &cut, &cst) != 5)
        return -1;
    if (ppid)
        *ppid = pp;
    if (!reaped)
        cut = cst = 0;
    if (cpu_us)
        *cpu_us = (ut + st + cut + cst) * 1000000ull / (unsigned long long)sysconf(_SC_CLK_TCK);
    return 0;
}

static int proc_stat(pid_t pid, pid_t *ppid, uint64_t *cpu_us)
{
    return proc_stat_ex(pid, ppid, cpu_us, 0);
}

uint64_t proc_cpu_us(pid_t pid)
{
    uint64_t us = 0;
    return proc_stat(pid, NULL, &us) == 0 ? us : 0;
}

/* The whole machine's CPU time from /proc/stat's first line, in clock
 * ticks: busy (everything but idle and iowait) and in all. */

machine_cpu_t machine_cpu(void)
{
    machine_cpu_t m = {0, 0};
    FILE *f = fopen("/proc/stat", "r");
    unsigned long long v[8] = {0};
    if (f && fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                    &v[4], &v[5], &v[6], &v[7]) == 8) {
        for (int i = 0; i < 8; i++)
            m.all += v[i];
        m.busy = m.all - v[3] - v[4];
    }
    if (f)
        fclose(f);
    return m;
}

/* Cores kept busy since `from`, on average, by every process together. */
double machine_busy_cores(machine_cpu_t from)
{
    machine_cpu_t to = machine_cpu();
    if (to.all <= from.all)
        return NAN;
    return (double)(to.busy - from.busy) / (double)(to.all - from.all) *
           (double)sysconf(_SC_NPROCESSORS_ONLN);
}

/* CPU of the stack's PostgreSQL: the postmaster, its live children and
 * the children it has reaped (a backend that disconnected, an autovacuum
 * worker that finished), so the sum never goes down between two reads. */
uint64_t pg_cpu_us(void)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/postgres.pid", fx.state_dir);
    FILE *f = fopen(path, "r");
    int pm = 0;
    if (!f || fscanf(f, "%d", &pm) != 1) {
        if (f)
            fclose(f);
        return 0;
    }
    fclose(f);
    uint64_t total = 0;
    if (proc_stat_ex(pm, NULL, &total, 1) != 0)
        total = 0;
    DIR *dir = opendir("/proc");
    struct dirent *de;
    while (dir && (de = readdir(dir)) != NULL) {
        pid_t pid = (pid_t)atoi(de->d_name), pp;
        uint64_t us;
        if (pid > 0 && proc_stat(pid, &pp, &us) == 0 && pp == pm)
            total += us;
    }
    if (dir)
        closedir(dir);
    return total;
}

/* CPU microseconds per event between two readings; NAN (printed "-")
 * when there is nothing to divide or the readings went backwards. */
double cpu_per_event(uint64_t before, uint64_t after, long events)
{
    if (events <= 0 || after < before)
        return NAN;
    return (double)(after - before) / (double)events;
}

/* VmHWM or VmRSS of pid in KiB. */
long proc_mem_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            v = atol(line + fl + 1);
    if (f)
        fclose(f);
    return v;
}

/* Gives the heap the bench no longer uses back and starts its own peak
 * RSS (VmHWM) over from there, so the ceiling's RSS is the passthrough's,
 * not the peak of the preload and of every run the bench did before it. */
void reset_own_peak_rss(void)
{
    malloc_trim(0);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f || fputs("5", f) < 0)
        say("warning: cannot reset the peak RSS: %s", strerror(errno));
    if (f)
        fclose(f);
}

int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

double pct(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(p / 100.0 * (double)n);
    if (i > 0)
        i--;
    if (i >= n)
        i = n - 1;
    return (double)sorted[i] / 1000.0;
}
