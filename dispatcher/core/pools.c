/*
 * pools.c - one worker pool per function (created, resized and retired
 * as the catalog changes) and the hand-off of a claimed job to its pool
 * and of the pool's outcome to the record stage.
 *
 * Runs on the dispatcher loop thread; the pools posix_spawn() weft-worker
 * (never fork: this process has library threads). Invariant: a job is
 * invoked only after its key was claimed in the ledger.
 */
#include "internal.h"

/* ---- pools ------------------------------------------------------------- */

static void on_invoked(void *opaque, const weft_outcome_t *out, void *ctx);

/* The live pool of a function. By name, not version: a job that started
 * under an older definition retries in the pool that replaced it. */
static fn_pool_t *pool_for(dsp_t *d, const char *function)
{
    for (fn_pool_t *p = d->pools; p; p = p->next)
        if (!p->retired && strcmp(p->name, function) == 0)
            return p;
    return NULL;
}

static int resolve_entry(dsp_t *d, const char *entry, char *out, size_t len)
{
    if (strchr(entry, '/'))
        return snprintf(out, len, "%s", entry) < (int)len ? 0 : -1;
    return snprintf(out, len, "%s/%s", d->functions_dir, entry) < (int)len ? 0 : -1;
}

/* Makes the set of pools match the catalog: new functions and changed
 * versions get a new pool; pools nobody uses any more are retired and
 * destroyed once their in-flight invocations ended. */
void dsp_pools_reconcile(dsp_t *d)
{
    for (fn_pool_t *p = d->pools; p; p = p->next) {
        const weft_function_t *fn = weft_catalog_function(d->cat, p->name);
        if (!p->retired && (!fn || strcmp(fn->version, p->version) != 0)) {
            p->retired = 1;
            weft_info("pool retiring function=%s", p->name);
        }
    }
    for (size_t i = 0; i < d->cat->n_fns; i++) {
        const weft_function_t *fn = &d->cat->fns[i];
        if (pool_for(d, fn->name))
            continue;
        char entry[PATH_MAX];
        if (resolve_entry(d, fn->entry, entry, sizeof(entry)) != 0) {
            weft_error("function entry path too long function=%s", fn->name);
            continue;
        }
        weft_pool_mode_t mode = WEFT_POOL_STATIC;
        if (fn->pool_mode && weft_pool_mode_parse(fn->pool_mode, &mode) != 0) {
            weft_error("unknown pool_mode function=%s pool_mode=%s", fn->name, fn->pool_mode);
            continue;
        }
        weft_pool_config_t pc = {
            .function = fn->name,
            .runtime = fn->runtime,
            .entry = entry,
            .symbol = fn->symbol,
            .mode = mode,
            .size = fn->pool_size,
            .max_concurrency = fn->max_concurrency,
            .min_spare = fn->min_spare,
            .max_spare = fn->max_spare,
            .max_spawn_rate = fn->max_spawn_rate,
            .idle_timeout_ms = (uint32_t)fn->idle_timeout_ms,
            .max_requests = (uint32_t)fn->max_requests,
            /* 0 in the catalog turns the brake off; 0 here means default. */
            .crash_storm_count = fn->crash_storm_count > 0 ? fn->crash_storm_count : -1,
            .crash_storm_window_ms = (uint32_t)fn->crash_storm_window_ms,
            .quarantine_ms = (uint32_t)fn->quarantine_ms,
            .pipeline_depth = fn->pipeline_depth,
            .env = (const char *const *)fn->env,
            .n_env = fn->n_env,
            .run_as_user = fn->run_as_user,
            .run_as_group = fn->run_as_group,
            .timeout_ms = (uint32_t)fn->timeout_ms,
            .memory_mb = (uint32_t)fn->memory_mb,
            .max_result_bytes = (uint32_t)fn->max_result_bytes,
            .worker_path = d->worker_path,
        };
        char err[512];
        weft_pool_t *pool = weft_pool_new(&pc, d->loop.epfd, on_invoked, d, err, sizeof(err));
        if (!pool) {
            weft_error("cannot start pool function=%s: %s", fn->name, err);
            continue;
        }
        fn_pool_t *fp = calloc(1, sizeof(*fp));
        if (!fp || !(fp->name = strdup(fn->name))) {
            free(fp);
            weft_pool_destroy(pool, 1000);
            continue;
        }
        memcpy(fp->version, fn->version, sizeof(fp->version));
        fp->pool = pool;
        fp->next = d->pools;
        d->pools = fp;
        weft_info("pool started function=%s mode=%s workers=%d max_concurrency=%d runtime=%s "
                  "entry=%s",
                  fn->name, weft_pool_mode_name(mode), fn->pool_size,
                  fn->max_concurrency > 0 ? fn->max_concurrency : fn->pool_size, fn->runtime,
                  entry);
    }
}

void dsp_pools_gc(dsp_t *d)
{
    for (fn_pool_t **pp = &d->pools; *pp;) {
        fn_pool_t *p = *pp;
        if (p->retired && weft_pool_inflight(p->pool) == 0) {
            *pp = p->next;
            weft_pool_destroy(p->pool, 2000);
            weft_info("pool stopped function=%s", p->name);
            free(p->name);
            free(p);
            continue;
        }
        pp = &p->next;
    }
}

/* Queues the job's outcome for recording. A retryable failure of the last
 * allowed attempt is recorded as dead here, whatever produced it. */
void dsp_job_record(dsp_t *d, job_t *j)
{
    if (j->rec == WEFT_REC_RETRY &&
        weft_job_after_attempt(j->rec, j->attempts, j->trig->max_attempts) == WEFT_REC_DEAD) {
        char e[1400];
        snprintf(e, sizeof(e), "%s (after %d attempts)", j->error ? j->error : "", j->attempts);
        j->rec = WEFT_REC_DEAD;
        dsp_set_str(&j->error, e);
        dsp_set_str(&j->reason, "max_attempts");
    }
    dsp_job_enter(j, J_RECORD);
    dsp_jq_push(&d->record_q, j);
}

void dsp_job_fail_now(dsp_t *d, job_t *j, const char *reason, const char *error)
{
    j->rec = WEFT_REC_DEAD;
    dsp_set_str(&j->reason, reason);
    dsp_set_str(&j->error, error);
    dsp_job_record(d, j);
}

/* This is where an attempt begins: the record of its outcome adds it to
 * the ledger's count (j->ran), not the claim, so keys claimed but never
 * handed to a worker cost nothing when the dispatcher dies. */
void dsp_job_invoke(dsp_t *d, job_t *j)
{
    fn_pool_t *fp = pool_for(d, j->trig->function);
    char err[512];
    j->ran = 1;
    j->attempts++;
    if (!fp) {
        snprintf(err, sizeof(err), "no worker pool for function %s", j->trig->fn->name);
    } else if (weft_pool_submit(fp->pool, j->msg->env.ce, j->trig->name, (uint32_t)j->attempts, j,
                                err, sizeof(err)) == 0) {
        dsp_job_enter(j, J_RUNNING);
        return;
    }
    /* Treated like a crashed attempt: retried, then dead-lettered. */
    dsp_win_release(d, j);
    j->rec = WEFT_REC_RETRY;
    dsp_set_str(&j->reason, "pool_unavailable");
    dsp_set_str(&j->error, err);
    dsp_job_record(d, j);
}

static void on_invoked(void *opaque, const weft_outcome_t *out, void *ctx)
{
    dsp_t *d = ctx;
    job_t *j = opaque;
    char err[1200];
    dsp_stage_done(d, j, T_RUN, dsp_now_us());
    dsp_win_release(d, j);
    switch (out->kind) {
    case WEFT_OUTCOME_OK:
        j->rec = WEFT_REC_COMPLETED;
        free(j->result);
        j->result = malloc(out->len ? out->len : 1);
        if (!j->result) {
            j->rec = WEFT_REC_RETRY;
            dsp_set_str(&j->reason, "memory");
            dsp_set_str(&j->error, "out of memory copying the result");
            break;
        }
        memcpy(j->result, out->data, out->len);
        j->result_len = out->len;
        dsp_job_count_result(d, j);
        dsp_set_str(&j->result_type, out->content_type);
        /* NATS headers cannot carry CR, LF or NUL: refused here, before
         * the outcome is recorded, so the event gets a dead letter. */
        if (j->trig->result_topic && j->trig->result_broker != WEFT_BROKER_KAFKA &&
            out->content_type &&
            !weft_nats_header_value_valid(out->content_type, strlen(out->content_type))) {
            j->rec = WEFT_REC_DEAD;
            dsp_set_str(&j->reason, "invalid_header");
            dsp_set_str(&j->error, "the result's content type holds CR, LF or NUL, which NATS "
                                   "headers cannot carry");
        } else if (!dsp_emit_result_fits(d, j, err, sizeof(err))) {
            /* The broker would refuse it: the function's failure, retried
             * and then dead-lettered like any other, before a ledger row
             * says completed. */
            j->rec = WEFT_REC_RETRY;
            dsp_set_str(&j->reason, "result_too_large");
            dsp_set_str(&j->error, err);
            free(j->result);
            j->result = NULL;
            j->result_len = 0;
        }
        break;
    case WEFT_OUTCOME_DROP:
        j->rec = WEFT_REC_DROPPED;
        break;
    case WEFT_OUTCOME_FAIL:
        j->rec = WEFT_REC_DEAD;
        dsp_set_str(&j->reason, *out->reason ? out->reason : "non_retryable");
        dsp_set_str(&j->error, out->error);
        break;
    case WEFT_OUTCOME_RETRY:
    case WEFT_OUTCOME_CRASH:
    default:
        j->rec = WEFT_REC_RETRY;
        if (out->kind == WEFT_OUTCOME_CRASH && strcmp(out->reason, "quarantined") == 0) {
            /* The pool answered for a quarantine: the function did not
             * run, so this is no attempt (it waits out the quarantine). */
            j->ran = 0;
            j->attempts--;
        }
        if (out->kind == WEFT_OUTCOME_CRASH) {
            snprintf(err, sizeof(err), "%s%s%s", out->reason, *out->error ? ": " : "", out->error);
            dsp_set_str(&j->reason, out->reason);
            dsp_set_str(&j->error, err);
        } else {
            dsp_set_str(&j->reason, "function_error");
            dsp_set_str(&j->error, *out->error ? out->error : "function asked for a retry");
        }
        j->retry_after_ms = (int)out->retry_after_ms;
        break;
    }
    dsp_job_record(d, j);
}
