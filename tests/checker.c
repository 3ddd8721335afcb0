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

/* Per input: its first result id, and whether another id was seen. */
typedef struct seen {
    const fx_check_spec_t *spec;
    fx_check_t *res;
    char **first_id;
    size_t scanned;
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
        const char *id = m->ce_id ? m->ce_id : "";
        if (!s->first_id[i]) {
            s->first_id[i] = strdup(id);
            s->res->with_result++;
        } else if (strcmp(s->first_id[i], id) != 0 && s->first_id[i][0] != '\x01') {
            s->res->conflicts++;
            s->first_id[i][0] = '\x01'; /* counted once per input */
        }
    }
    return s->res->with_result >= s->spec->n;
}

/* Counts like seen_pred but never stops the reading. */
static int never(const fx_msg_t *msgs, size_t n, void *ctx)
{
    seen_pred(msgs, n, ctx);
    return 0;
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

int fx_check_run(const fx_t *fx, const fx_check_spec_t *spec, fx_check_t *res)
{
    memset(res, 0, sizeof(*res));
    res->inputs = spec->n;
    res->first_missing = -1;
    seen_t s = {spec, res, calloc((size_t)spec->n, sizeof(char *)), 0};
    fx_consumer_t *c = fx_consumer_new(fx, spec->out_topic);
    if (!c || !s.first_id) {
        free(s.first_id);
        fx_consumer_destroy(c);
        return -1;
    }
    fx_msg_t *msgs = NULL;
    size_t n = 0, cap = 0;
    fx_consume_until(c, &msgs, &n, &cap, seen_pred, &s, spec->timeout_ms);
    /* Copies that come late count too: read on for the settle time. */
    fx_consume_until(c, &msgs, &n, &cap, never, &s, spec->settle_ms);
    for (int i = 0; i < spec->n; i++) {
        if (!s.first_id[i] && res->first_missing < 0)
            res->first_missing = i;
        free(s.first_id[i]);
    }
    free(s.first_id);
    fx_msgs_free(msgs, n);
    fx_consumer_destroy(c);

    rd_kafka_t *rk = client(fx, NULL);
    if (!rk)
        return -1;
    /* Everything on the result topic was read: the watermarks agree. */
    long on_topic = topic_messages(rk, spec->out_topic);
    if (on_topic != res->result_msgs + res->stray)
        fprintf(stderr, "checker: %ld messages on %s, %ld read\n", on_topic, spec->out_topic,
                res->result_msgs + res->stray);
    res->dead_letters = topic_messages(rk, spec->dlq_topic);
    rd_kafka_destroy(rk);

    res->dead_rows = sql_long(fx, "count(*)", "dead_letters", spec->trigger, NULL);
    res->ledger_rows = sql_long(fx, "count(*)", "ledger", spec->trigger, NULL);
    res->not_completed = sql_long(fx, "count(*)", "ledger", spec->trigger, "status <> 'completed'");
    res->max_attempts = sql_long(fx, "coalesce(max(attempts), 0)", "ledger", spec->trigger, NULL);

    /* Lag drains: the dispatchers commit what they finished, within the
     * timeout. */
    uint64_t deadline = fx_now_ms() + (uint64_t)spec->timeout_ms;
    for (;;) {
        res->lag = fx_group_lag(fx, spec->group, spec->in_topic);
        if (res->lag == 0 || fx_now_ms() >= deadline)
            break;
        usleep(250000);
    }
    return on_topic < 0 || res->dead_letters < 0 || res->lag < 0 ? -1 : 0;
}

void fx_check_print(const char *title, const fx_check_t *r)
{
    fprintf(stderr,
            "%s: inputs=%d with_result=%d conflicts=%d result_msgs=%ld stray=%ld "
            "bad_content=%d dead_letters=%ld dead_rows=%ld ledger_rows=%ld not_completed=%ld "
            "max_attempts=%ld lag=%ld first_missing=%d\n",
            title, r->inputs, r->with_result, r->conflicts, r->result_msgs, r->stray,
            r->bad_content, r->dead_letters, r->dead_rows, r->ledger_rows, r->not_completed,
            r->max_attempts, r->lag, r->first_missing);
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
