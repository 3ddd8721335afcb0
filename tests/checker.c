/*
 * checker.c - see checker.h. Reads only what a user could read: the
 * broker's topics and committed offsets, and the ledger's rows.
 */
#include "checker.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include "nats_headers.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fx_check_publish(fx_producer_t *p, const char *topic, const char *pfx, const char *mode,
                     int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[96], key[32], data[128];
        snprintf(id, sizeof(id), "%s-%d", pfx, i);
        snprintf(key, sizeof(key), "k%d", i % 97);
        snprintf(data, sizeof(data), "{\"fail\":\"%s\",\"n\":%d}", mode, i);
        if (fx_produce(p, topic, key, id, "check.item", data, NULL) != 0)
            return -1;
    }
    return 0;
}

/* Per input: its first result id and first dead-letter id, and whether
 * another id was seen ('\x01' marks an input counted once). */
typedef struct seen {
    const fx_check_spec_t *spec;
    const fx_check_more_t *more;
    fx_check_t *res;
    char **first_id;
    char **dlq_id;
    size_t scanned;
    int good_with_result;
} seen_t;

/* The input number of id "<pfx>-<i>", or -1. */
static int input_no(const seen_t *s, const char *id)
{
    size_t pl = strlen(s->spec->pfx);
    if (!id || strncmp(id, s->spec->pfx, pl) != 0 || id[pl] != '-')
        return -1;
    char *end;
    long i = strtol(id + pl + 1, &end, 10);
    if (*end || end == id + pl + 1 || i < 0 || i >= s->spec->n)
        return -1;
    return (int)i;
}

static int is_poison(const seen_t *s, int i)
{
    return s->more->poison && s->more->poison[i];
}

/* Notes id as input i's id in ids; 1 when it is the first. */
static int note_id(char **ids, int i, const char *id, int *conflicts)
{
    if (!ids[i]) {
        ids[i] = strdup(id);
        return 1;
    }
    if (strcmp(ids[i], id) != 0 && ids[i][0] != '\x01') {
        (*conflicts)++;
        ids[i][0] = '\x01'; /* counted once per input */
    }
    return 0;
}

static int seen_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    seen_t *s = ctx;
    for (; s->scanned < n; s->scanned++) {
        const fx_msg_t *m = &msgs[s->scanned];
        int i = input_no(s, m->input_id);
        if (i < 0) {
            s->res->stray++;
            continue;
        }
        s->res->result_msgs++;
        char want[48];
        snprintf(want, sizeof(want), "\"n\":%d}", i);
        if (!m->value || !strstr(m->value, want))
            s->res->bad_content++;
        if (note_id(s->first_id, i, m->ce_id ? m->ce_id : "", &s->res->conflicts)) {
            s->res->with_result++;
            if (is_poison(s, i))
                s->res->poison_result++;
            else
                s->good_with_result++;
        }
    }
    return s->good_with_result >= s->spec->n - s->res->poison;
}

/* Header name of m as a new string (percent-decoded on NATS), or NULL. */
static char *header(const seen_t *s, const fx_msg_t *m, const char *name)
{
    const char *v = fx_header(m, name);
    if (!v)
        return NULL;
    return s->more->js ? weft_nats_pct_decode(v, strlen(v), NULL) : strdup(v);
}

/* Dead letters keep the input's headers (its id) and add ce_weft*. */
static int dead_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    seen_t *s = ctx;
    const char *dlqid = s->more->js ? "ce-weftdlqid" : "ce_weftdlqid";
    const char *rsn = s->more->js ? "ce-weftreason" : "ce_weftreason";
    const char *err = s->more->js ? "ce-wefterror" : "ce_wefterror";
    for (; s->scanned < n; s->scanned++) {
        const fx_msg_t *m = &msgs[s->scanned];
        int i = input_no(s, m->ce_id);
        if (i < 0) {
            s->res->stray_dead++;
            continue;
        }
        char *r = header(s, m, rsn), *e = header(s, m, err);
        if ((s->more->reason && (!r || strncmp(r, s->more->reason, strlen(s->more->reason)))) ||
            (s->more->error && (!e || !strstr(e, s->more->error)))) {
            fprintf(stderr, "checker: dead letter of %s: reason %s error %s (want %s, %s)\n",
                    m->ce_id, r ? r : "(none)", e ? e : "(none)",
                    s->more->reason ? s->more->reason : "any",
                    s->more->error ? s->more->error : "any");
            s->res->bad_reason++;
        }
        char *id = header(s, m, dlqid);
        int first = note_id(s->dlq_id, i, id ? id : "", &s->res->dead_conflicts);
        free(id);
        free(e);
        if (first) {
            s->res->dead_inputs++;
            if (!is_poison(s, i)) {
                fprintf(stderr, "checker: good input %s dead-lettered: reason %s\n", m->ce_id,
                        r ? r : "(none)");
                s->res->good_dead++;
            }
        }
        free(r);
    }
    return s->res->dead_inputs >= s->res->poison;
}

/* Counts like seen_pred / dead_pred but never stops the reading. */
static int never(const fx_msg_t *msgs, size_t n, void *ctx)
{
    seen_pred(msgs, n, ctx);
    return 0;
}

static int never_dead(const fx_msg_t *msgs, size_t n, void *ctx)
{
    dead_pred(msgs, n, ctx);
    return 0;
}

/* A topic read from its start on either broker. */
typedef struct reader {
    fx_consumer_t *kc;
    fx_nsub_t *ns;
    fx_msg_t *msgs;
    size_t n, cap;
} reader_t;

static int reader_open(reader_t *r, const fx_t *fx, const fx_check_more_t *more, const char *topic)
{
    memset(r, 0, sizeof(*r));
    if (more->js)
        r->ns = fx_nsub_new(fx, topic, 1);
    else
        r->kc = fx_consumer_new(fx, topic);
    return r->ns || r->kc ? 0 : -1;
}

static void reader_read(reader_t *r, fx_pred_fn pred, void *ctx, int timeout_ms)
{
    if (r->ns)
        fx_nsub_until(r->ns, &r->msgs, &r->n, &r->cap, pred, ctx, timeout_ms);
    else
        fx_consume_until(r->kc, &r->msgs, &r->n, &r->cap, pred, ctx, timeout_ms);
}

static void reader_close(reader_t *r)
{
    fx_msgs_free(r->msgs, r->n);
    fx_consumer_destroy(r->kc);
    fx_nsub_destroy(r->ns);
}

/* Sum over the topic's partitions of the high watermark (all messages,
 * since test topics are new), or -1. */
static long topic_messages(rd_kafka_t *rk, const char *topic)
{
    const rd_kafka_metadata_t *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt)
        return -1;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
    rd_kafka_topic_destroy(rkt);
    if (err || md->topic_cnt != 1 || md->topics[0].err) {
        if (!err)
            rd_kafka_metadata_destroy(md);
        return -1;
    }
    long total = 0;
    for (int p = 0; p < md->topics[0].partition_cnt; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, md->topics[0].partitions[p].id, &lo, &hi,
                                             10000)) {
            total = -1;
            break;
        }
        total += hi - lo;
    }
    rd_kafka_metadata_destroy(md);
    return total;
}

static rd_kafka_t *client(const fx_t *fx, const char *group)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", fx->brokers, err, sizeof(err));
    if (group)
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk)
        fprintf(stderr, "checker: rd_kafka_new: %s\n", err);
    return rk;
}

long fx_group_lag(const fx_t *fx, const char *group, const char *topic)
{
    fx_kafka_offsets_t o;
    return fx_kafka_group_offsets(fx, group, topic, &o) == 0 ? (long)o.lag : -1;
}

int fx_partition_leader(const fx_t *fx, const char *topic, int partition)
{
    rd_kafka_t *rk = client(fx, NULL);
    if (!rk)
        return -1;
    int leader = -1;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt && rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0 && md->topic_cnt == 1) {
        for (int p = 0; p < md->topics[0].partition_cnt; p++)
            if (md->topics[0].partitions[p].id == partition)
                leader = md->topics[0].partitions[p].leader;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return leader;
}

/* SELECT <what> FROM weft.<table> WHERE trigger = '<trigger>' [AND <and>] */
static long sql_long(const fx_t *fx, const char *what, const char *table, const char *trigger,
                     const char *and)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT %s FROM weft.%s WHERE trigger = '%s'%s%s", what, table,
             trigger, and? " AND " : "", and? and : "");
    return fx_sql_long(fx, sql);
}

/* The trigger's consumer: what it has not acknowledged or not received
 * yet (JetStream), or -1. */
static long js_lag(const fx_t *fx, const fx_check_more_t *more)
{
    fx_js_cstate_t st;
    if (fx_js_consumer_state(fx, more->stream, more->durable, &st) != 0)
        return -1;
    return st.pending + st.ack_pending;
}

int fx_check_run(const fx_t *fx, const fx_check_spec_t *spec, fx_check_t *res)
{
    static const fx_check_more_t none;
    return fx_check_run_mixed(fx, spec, &none, res);
}

int fx_check_run_mixed(const fx_t *fx, const fx_check_spec_t *spec, const fx_check_more_t *more,
                       fx_check_t *res)
{
    memset(res, 0, sizeof(*res));
    res->inputs = spec->n;
    res->first_missing = -1;
    for (int i = 0; more->poison && i < spec->n; i++)
        res->poison += more->poison[i] != 0;
    seen_t s = {spec,
                more,
                res,
                calloc((size_t)spec->n, sizeof(char *)),
                calloc((size_t)spec->n, sizeof(char *)),
                0,
                0};
    reader_t out, dlq;
    int ok = s.first_id && s.dlq_id && reader_open(&out, fx, more, spec->out_topic) == 0;
    ok = ok && reader_open(&dlq, fx, more, spec->dlq_topic) == 0;
    if (!ok) {
        free(s.first_id);
        free(s.dlq_id);
        return -1;
    }
    reader_read(&out, seen_pred, &s, spec->timeout_ms);
    /* Copies that come late count too: read on for the settle time. */
    reader_read(&out, never, &s, spec->settle_ms);
    /* Every dead letter is read: on Kafka until the count the watermarks
     * give (a good input's dead letter is counted, not missed because
     * the reader joined its group late), then for the settle time. */
    s.scanned = 0;
    long dlq_on_topic = -1;
    if (!more->js) {
        rd_kafka_t *rk = client(fx, NULL);
        dlq_on_topic = rk ? topic_messages(rk, spec->dlq_topic) : -1;
        if (rk)
            rd_kafka_destroy(rk);
    }
    reader_read(&dlq, dead_pred, &s, res->poison ? spec->timeout_ms : 0);
    uint64_t until = fx_now_ms() + (uint64_t)spec->timeout_ms;
    while ((long)dlq.n < dlq_on_topic && fx_now_ms() < until)
        reader_read(&dlq, never_dead, &s, 100);
    /* The results' settle time has passed already: a shorter one here. */
    reader_read(&dlq, never_dead, &s, spec->settle_ms / 2);
    for (int i = 0; i < spec->n; i++) {
        if (!s.first_id[i] && !is_poison(&s, i) && res->first_missing < 0)
            res->first_missing = i;
        res->both += s.first_id[i] && s.dlq_id[i];
        res->no_outcome += !s.first_id[i] && !s.dlq_id[i];
        free(s.first_id[i]);
        free(s.dlq_id[i]);
    }
    free(s.first_id);
    free(s.dlq_id);
    long out_read = (long)out.n, dlq_read = (long)dlq.n;
    res->dead_read = dlq_read;
    reader_close(&out);
    reader_close(&dlq);

    long on_topic = 0;
    if (more->js) {
        res->dead_letters = dlq_read;
    } else {
        rd_kafka_t *rk = client(fx, NULL);
        if (!rk)
            return -1;
        /* Everything on the result topic was read: the watermarks agree. */
        on_topic = topic_messages(rk, spec->out_topic);
        if (on_topic != out_read)
            fprintf(stderr, "checker: %ld messages on %s, %ld read\n", on_topic, spec->out_topic,
                    out_read);
        res->dead_letters = topic_messages(rk, spec->dlq_topic);
        rd_kafka_destroy(rk);
        if (res->dead_letters != dlq_read)
            fprintf(stderr, "checker: %ld messages on %s, %ld read\n", res->dead_letters,
                    spec->dlq_topic, dlq_read);
    }

    res->dead_rows = sql_long(fx, "count(*)", "dead_letters", spec->trigger, NULL);
    res->ledger_rows = sql_long(fx, "count(*)", "ledger", spec->trigger, NULL);
    res->not_completed = sql_long(fx, "count(*)", "ledger", spec->trigger, "status <> 'completed'");
    res->completed = sql_long(fx, "count(*)", "ledger", spec->trigger, "status = 'completed'");
    res->dead_status = sql_long(fx, "count(*)", "ledger", spec->trigger, "status = 'dead'");
    res->max_attempts = sql_long(fx, "coalesce(max(attempts), 0)", "ledger", spec->trigger, NULL);

    /* Lag drains: the dispatchers commit what they finished, within the
     * timeout. */
    uint64_t deadline = fx_now_ms() + (uint64_t)spec->timeout_ms;
    for (;;) {
        res->lag = more->js ? js_lag(fx, more) : fx_group_lag(fx, spec->group, spec->in_topic);
        if (res->lag == 0 || fx_now_ms() >= deadline)
            break;
        usleep(250000);
    }
    return on_topic < 0 || res->dead_letters < 0 || res->lag < 0 ? -1 : 0;
}

/* Counts, for fx_check_frontier, the inputs below the frontier that have
 * an outcome; true once all have. */
typedef struct frontier {
    const seen_t *s;
    long frontier;
    char *done;
    long have;
    size_t scanned;
    int dead;
} frontier_t;

static int frontier_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    frontier_t *f = ctx;
    for (; f->scanned < n; f->scanned++) {
        const fx_msg_t *m = &msgs[f->scanned];
        int i = input_no(f->s, f->dead ? m->ce_id : m->input_id);
        if (i >= 0 && i < f->frontier && !f->done[i]) {
            f->done[i] = 1;
            f->have++;
        }
    }
    return f->have >= f->frontier;
}

long fx_check_frontier(const fx_t *fx, const fx_check_spec_t *spec, const fx_check_more_t *more,
                       long *frontier)
{
    *frontier = -1;
    if (more->js) {
        fx_js_cstate_t st;
        if (fx_js_consumer_state(fx, more->stream, more->durable, &st) != 0)
            return -1;
        *frontier = st.ack_floor; /* stream sequence i + 1 is input i */
    } else {
        fx_kafka_offsets_t o;
        if (fx_kafka_group_offsets(fx, spec->group, spec->in_topic, &o) != 0 || o.partitions != 1)
            return -1;
        *frontier = o.committed[0] < 0 ? 0 : o.committed[0]; /* offset i is input i */
    }
    if (*frontier > spec->n)
        return -1;
    fx_check_t dummy;
    seen_t s = {spec, more, &dummy, NULL, NULL, 0, 0};
    frontier_t f = {&s, *frontier, calloc((size_t)spec->n + 1, 1), 0, 0, 0};
    reader_t out, dlq;
    if (!f.done || reader_open(&out, fx, more, spec->out_topic) != 0) {
        free(f.done);
        return -1;
    }
    if (reader_open(&dlq, fx, more, spec->dlq_topic) != 0) {
        reader_close(&out);
        free(f.done);
        return -1;
    }
    /* Nothing runs now: what was acknowledged is on the broker already.
     * The reading stops once every input below the mark is found, so
     * the generous bounds cost only a run that breaks the promise. */
    reader_read(&out, frontier_pred, &f, 30000);
    f.scanned = 0;
    f.dead = 1;
    reader_read(&dlq, frontier_pred, &f, 15000);
    for (long i = 0; i < *frontier; i++)
        if (!f.done[i]) {
            fprintf(stderr, "checker: input %s-%ld is below the mark (%ld) without an outcome\n",
                    spec->pfx, i, *frontier);
            break;
        }
    reader_close(&out);
    reader_close(&dlq);
    free(f.done);
    return *frontier - f.have;
}

void fx_check_print(const char *title, const fx_check_t *r)
{
    fprintf(stderr,
            "%s: inputs=%d with_result=%d conflicts=%d result_msgs=%ld stray=%ld "
            "bad_content=%d dead_letters=%ld dead_rows=%ld ledger_rows=%ld not_completed=%ld "
            "max_attempts=%ld lag=%ld first_missing=%d\n"
            "  poison=%d dead_inputs=%d dead_conflicts=%d both=%d good_dead=%d poison_result=%d "
            "bad_reason=%d no_outcome=%d stray_dead=%ld completed=%ld dead_status=%ld\n",
            title, r->inputs, r->with_result, r->conflicts, r->result_msgs, r->stray,
            r->bad_content, r->dead_letters, r->dead_rows, r->ledger_rows, r->not_completed,
            r->max_attempts, r->lag, r->first_missing, r->poison, r->dead_inputs, r->dead_conflicts,
            r->both, r->good_dead, r->poison_result, r->bad_reason, r->no_outcome, r->stray_dead,
            r->completed, r->dead_status);
}

int fx_check_setup(fx_t *fx, const char *topics, int kafka_nodes, const char *migrations)
{
    if (fx_up_cluster(fx, topics, kafka_nodes) != 0)
        return -1;
    char out[4096], dir[700];
    snprintf(dir, sizeof(dir), "%s/tests/migrations/%s", fx->src_dir, migrations);
    const char *args[] = {"migrate", "--dir", dir, NULL};
    int rc = fx_weft(fx, out, sizeof(out), args);
    if (rc != 0) {
        fprintf(stderr, "weft migrate failed (%d): %s\n", rc, out);
        return -1;
    }
    return 0;
}

void fx_check_need_apache(const fx_t *fx)
{
    if (strcmp(fx->kafka_kind, "apache") != 0) {
        print_message("skipped: needs Apache Kafka (WEFT_KAFKA=%s)\n", fx->kafka_kind);
        skip();
    }
}

void fx_check_publish_all(fx_producer_t *p, const char *topic, const char *pfx, const char *mode,
                          int from, int to)
{
    assert_int_equal(fx_check_publish(p, topic, pfx, mode, from, to), 0);
    assert_int_equal(fx_producer_flush(p), 0);
}

int fx_check_teardown(void **state)
{
    (void)state;
    fx_run_kill_all();
    return 0;
}

void fx_check_assert(const fx_check_t *r, int n, long max_attempts)
{
    assert_int_equal(r->with_result, n);
    assert_int_equal(r->first_missing, -1);
    assert_int_equal(r->conflicts, 0);
    assert_int_equal(r->stray, 0);
    assert_int_equal(r->bad_content, 0);
    assert_int_equal(r->dead_letters, 0);
    assert_int_equal(r->dead_rows, 0);
    assert_int_equal(r->ledger_rows, n);
    assert_int_equal(r->not_completed, 0);
    assert_true(r->max_attempts >= 1 && r->max_attempts <= max_attempts);
    assert_int_equal(r->lag, 0);
}

void fx_check_assert_mixed(const fx_check_t *r, long max_attempts)
{
    int good = r->inputs - r->poison;
    /* One terminal outcome per input, and the right one. */
    assert_int_equal(r->no_outcome, 0);
    assert_int_equal(r->both, 0);
    assert_int_equal(r->with_result, good);
    assert_int_equal(r->first_missing, -1);
    assert_int_equal(r->poison_result, 0);
    assert_int_equal(r->dead_inputs, r->poison);
    assert_int_equal(r->good_dead, 0);
    /* At most one distinct id per input, and nothing that is not ours. */
    assert_int_equal(r->conflicts, 0);
    assert_int_equal(r->dead_conflicts, 0);
    assert_int_equal(r->stray, 0);
    assert_int_equal(r->stray_dead, 0);
    assert_int_equal(r->bad_content, 0);
    assert_int_equal(r->bad_reason, 0);
    /* The ledger agrees: every row terminal, dead rows for the poison. */
    assert_int_equal(r->ledger_rows, r->inputs);
    assert_int_equal(r->completed, good);
    assert_int_equal(r->dead_status, r->poison);
    assert_int_equal(r->dead_rows, r->poison);
    assert_int_equal(r->dead_read, r->dead_letters);
    assert_true(r->max_attempts >= 1 && r->max_attempts <= max_attempts);
    assert_int_equal(r->lag, 0);
}
