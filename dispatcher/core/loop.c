/*
 * loop.c - `weft run`: setup (configuration, connections, adapters,
 * pools, catalog), the epoll loop, and the ordered shutdown.
 *
 * Runs in the `weft run` process on its one loop thread. Invariant: this
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
    if (weft_config_int(d->cfg, "dispatcher.stats_interval_ms", &v, err, errlen))
        return 2;
    d->stats_ms = v;
    if (weft_config_int(d->cfg, "dispatcher.ledger_connections", &v, err, errlen))
        return 2;
    d->n_lc = 2 * (int)v + 1;
    for (int i = 0; i < d->n_lc; i++) {
        d->lc[i].d = d;
        d->lc[i].stage = i < (int)v ? LS_CLAIM : i < 2 * (int)v ? LS_RECORD : LS_SAGA;
        d->lc[i].io.fd = -1;
        d->lc[i].io.handle = lc_on_io;
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
    d->pg = PQconnectdb(conninfo);
    if (PQstatus(d->pg) != CONNECTION_OK) {
        snprintf(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(d->pg));
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

    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < d->n_lc; i++) {
        lconn_t *lc = &d->lc[i];
        char why[512];
        if (STAGE[lc->stage].ledger && lc_connect_now(d, lc, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "cannot connect to PostgreSQL for the ledger: %s", why);
            return 1;
        }
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    d->sig_io.fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    d->sig_io.handle = on_signal;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &d->sig_io};
    epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->sig_io.fd, &ev);

    d->pg_io.fd = PQsocket(d->pg);
    d->pg_io.handle = on_pg;
    io_watch(d, &d->pg_io, &d->pg_events, EPOLLIN);

    /* Kafka when kafka.bootstrap.servers is set, NATS (JetStream and
     * core) when nats.url is; at least one of them. */
    weft_adapter_cbs_t cbs = {on_delivered, d};
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
        d->bk_io[a].handle = on_broker;
        ev.data.ptr = &d->bk_io[a];
        epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->bk_io[a].fd, &ev);
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
    reload_catalog(d);
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
        job_free(d, j);
        if (--m->pending == 0)
            msg_free(d, m, WEFT_FINISH_RELEASE);
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
    weft_catalog_unref(d->cat);
    if (d->pg) {
        if (hb_in_flight(d)) {
            /* A heartbeat held up by a lock must not hold up the exit. */
            PGcancel *c = PQgetCancel(d->pg);
            char e[256];
            if (c) {
                PQcancel(c, e, sizeof(e));
                PQfreeCancel(c);
            }
            hb_collect(d, 1);
        }
        if (d->owner[0] && PQstatus(d->pg) == CONNECTION_OK) {
            PQclear(PQexec(d->pg, "SET lock_timeout = 2000"));
            const char *params[1] = {d->owner};
            PQclear(PQexecParams(d->pg, "DELETE FROM weft.dispatchers WHERE owner = $1", 1, NULL,
                                 params, NULL, NULL, 0));
        }
        PQfinish(d->pg);
    }
    for (int i = 0; i < d->n_lc; i++) {
        if (d->lc[i].res)
            PQclear(d->lc[i].res);
        if (d->lc[i].pg)
            PQfinish(d->lc[i].pg);
    }
    if (d->sig_io.fd > 0)
        close(d->sig_io.fd);
    if (d->epfd > 0)
        close(d->epfd);
}

int weft_dispatcher_run(weft_config_t *cfg)
{
    dsp_t *d = calloc(1, sizeof(*d));
    if (!d)
        return 1;
    d->cfg = cfg;
    d->pg_io.fd = -1;
    /* Blocked from the start (and read through a signalfd later) so that a
     * SIGTERM during startup still ends in a clean shutdown. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    char err[1024] = "";
    int rc = setup(d, err, sizeof(err));
    if (rc != 0) {
        weft_error("%s", err);
        teardown(d);
        free(d);
        return rc;
    }
    uint64_t stop_deadline = 0;
    int exit_code = 0;
    for (;;) {
        uint64_t next_due = run_waits(d);
        /* A batch that could go now: do not sleep. */
        int busy = ledger_ready(d);
        int timeout = 50;
        uint64_t now = now_ms();
        if (busy)
            timeout = 0;
        else if (next_due != UINT64_MAX && next_due - now < (uint64_t)timeout)
            timeout = next_due > now ? (int)(next_due - now) : 0;
        struct epoll_event evs[64];
        int n = epoll_wait(d->epfd, evs, 64, timeout);
        for (int i = 0; i < n; i++) {
            weft_io_t *io = evs[i].data.ptr;
            io->handle(io, evs[i].events);
        }
        take_notifies(d);
        if (d->catalog_dirty && pg_usable(d))
            reload_catalog(d);
        if (!d->stopping)
            consume(d);
        flush_ledger(d, LS_CLAIM);
        now = now_ms();
        for (fn_pool_t *p = d->pools; p; p = p->next)
            weft_pool_tick(p->pool, now);
        flush_ledger(d, LS_RECORD);
        flush_ledger(d, LS_SAGA);
        for (size_t a = 0; a < d->n_adapters; a++)
            weft_adapter_serve(d->adapters[a]);
        pools_gc(d);
        backpressure(d);
        saga_tick(d);
        heartbeat(d);
        stats(d, 0);
        if (d->stopping) {
            if (stop_deadline == 0) {
                stop_deadline = now_ms() + (uint64_t)d->shutdown_ms;
                weft_info("draining in-flight work timeout_ms=%lld", (long long)d->shutdown_ms);
            }
            if (busy_jobs(d) == 0)
                break;
            if (now_ms() >= stop_deadline) {
                weft_warn("shutdown timeout with work in flight; it will be redelivered "
                          "busy=%zu",
                          busy_jobs(d));
                break;
            }
        }
    }
    stats(d, 1);
    teardown(d);
    free(d);
    weft_info("dispatcher stopped");
    return exit_code;
}
