/*
 * loop.c - `weft run`: setup (configuration, connections, adapters,
 * pools, catalog), the epoll loop, and the ordered shutdown.
 *
 * Runs in the `weft run` process on its one loop thread (the epoll +
 * signalfd skeleton of workers/base/loop.h). Invariant: this
 * process never forks (library threads, credentials): workers are
 * posix_spawn()ed. Shutdown drains in-flight jobs for at most
 * dispatcher.shutdown_timeout_ms before the adapters and pools are closed.
 */
#include "internal.h"

#include "exe.h"

/* ---- setup and the loop ------------------------------------------------ */

static int setup(dsp_t *d, char *err, size_t errlen)
{
    int64_t v;
    if (weft_config_int(d->cfg, "dispatcher.max_inflight", &v, err, errlen))
        return 2;
    d->max_inflight = v;
    if (weft_config_int(d->cfg, "dispatcher.max_event_bytes", &v, err, errlen))
        return 2;
    d->max_event_bytes = v;
    if (weft_config_int(d->cfg, "dispatcher.max_inflight_bytes", &v, err, errlen))
        return 2;
    d->max_inflight_bytes = v;
    if (weft_config_int(d->cfg, "dispatcher.shutdown_timeout_ms", &v, err, errlen))
        return 2;
    d->shutdown_ms = v;
    if (weft_config_int(d->cfg, "dispatcher.max_takeovers", &v, err, errlen))
        return 2;
    d->max_takeovers = v;
    if (weft_config_int(d->cfg, "dispatcher.stats_interval_ms", &v, err, errlen))
        return 2;
    d->stats_ms = v;
    if (dsp_retention_setup(d, err, errlen) != 0)
        return 2;
    if (weft_config_int(d->cfg, "dispatcher.ledger_connections", &v, err, errlen))
        return 2;
    d->n_lc = 2 * (int)v + 1;
    for (int i = 0; i < d->n_lc; i++) {
        d->lc[i].d = d;
        d->lc[i].stage = i < (int)v ? LS_CLAIM : i < 2 * (int)v ? LS_RECORD : LS_SAGA;
        d->lc[i].io.fd = -1;
        d->lc[i].io.handle = dsp_lc_on_io;
    }
    char dir[PATH_MAX];
    weft_exe_dir(dir, sizeof(dir));
    /* workers.path and functions.dir unset: beside the weft binary. */
    const char *wpath = weft_config_str(d->cfg, "workers.path");
    snprintf(d->worker_path, sizeof(d->worker_path), "%s", wpath ? wpath : "");
    if (!d->worker_path[0] && snprintf(d->worker_path, sizeof(d->worker_path), "%s/weft-worker",
                                       dir) >= (int)sizeof(d->worker_path))
        return 2;
    const char *fdir = weft_config_str(d->cfg, "functions.dir");
    int fl = fdir ? snprintf(d->functions_dir, sizeof(d->functions_dir), "%s", fdir)
                  : snprintf(d->functions_dir, sizeof(d->functions_dir), "%s/../functions", dir);
    if (fl < 0 || (size_t)fl >= sizeof(d->functions_dir)) {
        snprintf(err, errlen, "functions.dir is too long");
        return 2;
    }
    if (access(d->worker_path, X_OK) != 0) {
        snprintf(err, errlen, "worker binary %.900s is not executable (set workers.path)",
                 d->worker_path);
        return 2;
    }

    char host[64] = "host";
    gethostname(host, sizeof(host) - 1);
    snprintf(d->host, sizeof(d->host), "%s", host);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srand((unsigned)(ts.tv_nsec ^ getpid()));
    snprintf(d->owner, sizeof(d->owner), "%s/%d/%08lx", host, (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)rand()));

    const char *conninfo = weft_config_str(d->cfg, "pg.conninfo");
    if (!conninfo) {
        snprintf(err, errlen, "pg.conninfo is not set (config file or WEFT_PG)");
        return 2;
    }
    char cerr[512];
    d->pg = weft_pgconn_connect(conninfo, cerr, sizeof(cerr));
    if (!d->pg) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", cerr);
        return 1;
    }
    if (weft_migrate_check(d->pg, err, errlen) != 0)
        return 1;
    char lerr[512];
    if (weft_catalog_listen(d->pg, lerr, sizeof(lerr)) != 0) {
        snprintf(err, errlen, "LISTEN failed: %s", lerr);
        return 1;
    }
    d->cat = weft_catalog_load(d->pg, err, errlen);
    if (!d->cat)
        return 1;

    for (int i = 0; i < d->n_lc; i++) {
        lconn_t *lc = &d->lc[i];
        char why[512];
        if (DSP_STAGE[lc->stage].ledger && dsp_lc_connect_now(d, lc, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "cannot connect to PostgreSQL for the ledger: %s", why);
            return 1;
        }
    }
    d->pg_io.fd = weft_pgconn_socket(d->pg);
    d->pg_io.handle = dsp_on_pg;
    dsp_io_watch(d, &d->pg_io, &d->pg_events, EPOLLIN);

    /* Kafka when kafka.bootstrap.servers is set, NATS (JetStream and
     * core) when nats.url is; at least one of them. */
    weft_adapter_cbs_t cbs = {dsp_on_delivered, d};
    int want_kafka = weft_config_str(d->cfg, "kafka.bootstrap.servers") != NULL;
    int want_nats = weft_config_str(d->cfg, "nats.url") != NULL;
    if (want_kafka || !want_nats) {
        weft_adapter_t *k = weft_adapter_kafka_new(d->cfg, &cbs, err, errlen);
        if (!k)
            return 2;
        d->adapters[d->n_adapters++] = k;
        d->bk[WEFT_BROKER_KAFKA] = k;
    }
    if (want_nats) {
        weft_adapter_t *n = weft_adapter_nats_new(d->cfg, &cbs, err, errlen);
        if (!n)
            return 2;
        d->adapters[d->n_adapters++] = n;
        d->bk[WEFT_BROKER_JETSTREAM] = d->bk[WEFT_BROKER_NATS] = n;
    }
    for (size_t a = 0; a < d->n_adapters; a++) {
        d->bk_io[a].fd = weft_adapter_wake_fd(d->adapters[a]);
        d->bk_io[a].handle = dsp_on_broker;
        dsp_io_watch(d, &d->bk_io[a], &d->bk_events[a], EPOLLIN);
    }

    d->active_cap = 1;
    while (d->active_cap < (size_t)d->max_inflight * 2)
        d->active_cap <<= 1;
    d->active = calloc(d->active_cap, sizeof(job_t *));
    d->order_tab = calloc(d->active_cap, sizeof(ochain_t *));
    if (!d->active || !d->order_tab) {
        snprintf(err, errlen, "out of memory");
        return 1;
    }
    weft_info("dispatcher starting owner=%s max_inflight=%lld workers=%s functions_dir=%s",
              d->owner, (long long)d->max_inflight, d->worker_path, d->functions_dir);
    dsp_reload_catalog(d);
    return 0;
}

static void teardown(dsp_t *d)
{
    d->closing = 1;
    for (size_t a = 0; a < d->n_adapters; a++)
        weft_adapter_close(d->adapters[a], 5000);
    while (d->pools) {
        fn_pool_t *p = d->pools;
        d->pools = p->next;
        weft_pool_destroy(p->pool, 2000);
        free(p->name);
        free(p);
    }
    /* Free what is still in flight or parked (waiting retries, ordered
     * events): it was not finished, so its offsets were not stored and it
     * will be redelivered. */
    while (d->all_jobs) {
        job_t *j = d->all_jobs;
        msg_t *m = j->msg;
        dsp_job_free(d, j);
        if (--m->pending == 0)
            dsp_msg_free(d, m, WEFT_FINISH_RELEASE);
    }
    /* Only now: librdkafka waits for every message it handed out. */
    for (size_t a = 0; a < d->n_adapters; a++)
        weft_adapter_destroy(d->adapters[a]);
    d->n_adapters = 0;
    /* Saga events never acknowledged stay unpublished in the outbox. */
    while (d->outboxes) {
        outbox_t *o = d->outboxes;
        d->outboxes = o->next;
        weft_saga_events_free(&o->ev);
        free(o);
    }
    free(d->active);
    for (size_t i = 0; d->order_tab && i < d->active_cap; i++) {
        while (d->order_tab[i]) {
            ochain_t *c = d->order_tab[i];
            d->order_tab[i] = c->next;
            free(c->okey);
            free(c);
        }
    }
    free(d->order_tab);
    dsp_win_free_all(d);
    weft_catalog_unref(d->cat);
    dsp_retention_close(d);
    if (d->pg) {
        if (dsp_hb_in_flight(d)) {
            /* A heartbeat held up by a lock must not hold up the exit. */
            weft_pgconn_cancel(d->pg);
            dsp_hb_collect(d, 1);
        }
        if (d->owner[0] && weft_pgconn_ok(d->pg))
            weft_heartbeat_remove(d->pg, d->owner);
        weft_pgconn_close(d->pg);
    }
    for (int i = 0; i < d->n_lc; i++) {
        weft_pgresult_free(d->lc[i].res);
        weft_pgconn_close(d->lc[i].pg);
    }
    /* The stop is decided: a second SIGTERM now must not turn the exit
     * code into death by a signal when the mask is restored. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    weft_loop_close(&d->loop);
}

/* A stop that no signal asked for is an error: exit 1 and say why, so
 * that a supervisor restarts the dispatcher (exit codes: STYLE.md). The
 * adapters' fatal state is an atomic read, so asking every turn is free. */
static void check_fatal(dsp_t *d)
{
    if (d->exit_code)
        return;
    char why[600];
    for (size_t a = 0; a < d->n_adapters; a++) {
        if (weft_adapter_fatal(d->adapters[a], why, sizeof(why))) {
            weft_error("stopping: fatal %s error: %s; exit code 1", d->adapters[a]->name, why);
            d->exit_code = 1;
            d->stopping = 1;
            return;
        }
    }
    if (d->stopping && !d->stop_signal) {
        weft_error("stopping after a fatal error (see the lines above); exit code 1");
        d->exit_code = 1;
    }
}

int weft_dispatcher_run(weft_config_t *cfg)
{
    dsp_t *d = calloc(1, sizeof(*d));
    if (!d)
        return 1;
    d->cfg = cfg;
    d->pg_io.fd = -1;
    /* The signals are blocked from the start (before librdkafka's and
     * libpq's threads exist) and read through the loop's signalfd, so that
     * a SIGTERM during startup still ends in a clean shutdown. */
    static const int signals[] = {SIGTERM, SIGINT, SIGCHLD};
    char err[1024] = "";
    if (weft_loop_open(&d->loop, signals, 3, err, sizeof(err)) != 0) {
        weft_error("%s", err);
        free(d);
        return 1;
    }
    d->loop.on_signal = dsp_on_signal;
    d->loop.on_child = dsp_on_child;
    d->loop.opaque = d;
    signal(SIGPIPE, SIG_IGN);
    int rc = setup(d, err, sizeof(err));
    if (rc != 0) {
        weft_error("%s", err);
        teardown(d);
        free(d);
        return rc;
    }
    uint64_t stop_deadline = 0;
    for (;;) {
        uint64_t next_due = dsp_run_waits(d);
        /* A batch that could go now: do not sleep. */
        int busy = dsp_ledger_ready(d);
        int timeout = 50;
        uint64_t now = dsp_now_ms();
        if (busy)
            timeout = 0;
        else if (next_due != UINT64_MAX && next_due - now < (uint64_t)timeout)
            timeout = next_due > now ? (int)(next_due - now) : 0;
        weft_loop_run_once(&d->loop, timeout);
        dsp_take_notifies(d);
        if (d->catalog_dirty && dsp_pg_usable(d))
            dsp_reload_catalog(d);
        if (!d->stopping)
            dsp_consume(d);
        check_fatal(d);
        dsp_flush_ledger(d, LS_CLAIM);
        now = dsp_now_ms();
        for (fn_pool_t *p = d->pools; p; p = p->next)
            weft_pool_tick(p->pool, now);
        dsp_flush_ledger(d, LS_RECORD);
        dsp_flush_ledger(d, LS_SAGA);
        for (size_t a = 0; a < d->n_adapters; a++)
            weft_adapter_serve(d->adapters[a]);
        dsp_pools_gc(d);
        dsp_backpressure(d);
        dsp_saga_tick(d);
        dsp_retention_tick(d);
        dsp_heartbeat(d);
        dsp_stats(d, 0);
        if (d->stopping) {
            if (stop_deadline == 0) {
                stop_deadline = dsp_now_ms() + (uint64_t)d->shutdown_ms;
                weft_info("draining in-flight work timeout_ms=%lld", (long long)d->shutdown_ms);
            }
            if (dsp_busy_jobs(d) == 0)
                break;
            if (dsp_now_ms() >= stop_deadline) {
                weft_warn("shutdown timeout with work in flight; it will be redelivered "
                          "busy=%zu",
                          dsp_busy_jobs(d));
                break;
            }
        }
    }
    dsp_stats(d, 1);
    teardown(d);
    int exit_code = d->exit_code;
    free(d);
    weft_info("dispatcher stopped exit_code=%d", exit_code);
    return exit_code;
}
