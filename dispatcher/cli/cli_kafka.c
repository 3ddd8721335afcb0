/*
 * cli_kafka.c - librdkafka for the operator's commands (see cli_kafka.h).
 *
 * Runs in the CLI process. Invariant: this handle never commits and never
 * subscribes, so the dispatcher's consumer group (whose group.id it may
 * carry to read committed offsets) is never joined and its offsets never
 * move: enable.auto.commit=false, and assign() instead of subscribe().
 */
#include "cli_kafka.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct weft_clik {
    rd_kafka_t *rk;
};

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    /* The commands report what failed themselves; librdkafka's view is
     * for log.level=debug. */
    weft_debug("kafka %s: %s", fac, buf);
}

weft_clik_t *weft_clik_new(const weft_config_t *cfg, const char *group, char *errstr, size_t errlen)
{
    if (!weft_config_str(cfg, "kafka.bootstrap.servers")) {
        snprintf(errstr, errlen,
                 "kafka.bootstrap.servers is not set (config file or WEFT_KAFKA_BROKERS)");
        return NULL;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int failed = weft_kafka_conf_apply(conf, cfg, "consumer.", errstr, errlen) != 0;
    char err[512];
    if (failed ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
        if (!failed)
            snprintf(errstr, errlen, "kafka config: %s", err);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    weft_clik_t *k = calloc(1, sizeof(*k));
    if (!k) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!k->rk) {
        rd_kafka_conf_destroy(conf);
        free(k);
        snprintf(errstr, errlen, "creating kafka consumer: %s", err);
        return NULL;
    }
    rd_kafka_poll_set_consumer(k->rk);
    return k;
}

void weft_clik_destroy(weft_clik_t *k)
{
    if (!k)
        return;
    rd_kafka_assign(k->rk, NULL);
    rd_kafka_consumer_close(k->rk);
    rd_kafka_destroy(k->rk);
    free(k);
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

int weft_clik_partitions(weft_clik_t *k, const char *topic, int timeout_ms, int32_t **parts,
                         size_t *n, char *errstr, size_t errlen)
{
    *parts = NULL;
    *n = 0;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->rk, topic, NULL);
    if (!rkt) {
        snprintf(errstr, errlen, "rd_kafka_topic_new(%s) failed", topic);
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(k->rk, 0, rkt, &md, timeout_ms);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        snprintf(errstr, errlen, "cannot read the metadata of topic %s within %d s: %s", topic,
                 timeout_ms / 1000, rd_kafka_err2str(err));
        return -1;
    }
    int rc = 0;
    if (md->topic_cnt != 1 || md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        md->topics[0].partition_cnt == 0) {
        snprintf(errstr, errlen, "topic %s does not exist", topic);
        rc = -2;
    } else if (md->topics[0].err) {
        snprintf(errstr, errlen, "topic %s: %s", topic, rd_kafka_err2str(md->topics[0].err));
        rc = -1;
    } else {
        *parts = malloc((size_t)md->topics[0].partition_cnt * sizeof(int32_t));
        if (!*parts) {
            snprintf(errstr, errlen, "out of memory");
            rc = -1;
        } else {
            for (int i = 0; i < md->topics[0].partition_cnt; i++)
                (*parts)[i] = md->topics[0].partitions[i].id;
            *n = (size_t)md->topics[0].partition_cnt;
            qsort(*parts, *n, sizeof(int32_t), cmp_i32);
        }
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

int weft_clik_watermarks(weft_clik_t *k, const char *topic, int32_t partition, int timeout_ms,
                         int64_t *low, int64_t *high, char *errstr, size_t errlen)
{
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(k->rk, topic, partition, low, high, timeout_ms);
    if (err) {
        snprintf(errstr, errlen, "cannot read the offsets of %s/%d: %s", topic, (int)partition,
                 rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

int weft_clik_offsets_for_times(weft_clik_t *k, const char *topic, const int32_t *parts, size_t n,
                                int64_t *ms, int timeout_ms, char *errstr, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, parts[i])->offset = ms[i];
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(k->rk, l, timeout_ms);
    int rc = 0;
    for (int i = 0; !err && i < l->cnt; i++)
        if (l->elems[i].err)
            err = l->elems[i].err;
    if (err == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE ||
        err == RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION ||
        err == RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT) {
        snprintf(errstr, errlen,
                 "the broker does not support looking up offsets by time (Kafka 0.10.1 and "
                 "message format v1 or later do): %s",
                 rd_kafka_err2str(err));
        rc = -2;
    } else if (err) {
        snprintf(errstr, errlen, "looking up offsets by time in %s failed: %s", topic,
                 rd_kafka_err2str(err));
        rc = -1;
    } else {
        for (size_t i = 0; i < n; i++)
            ms[i] = l->elems[i].offset < 0 ? -1 : l->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

int weft_clik_committed(weft_clik_t *k, const char *topic, const int32_t *parts, size_t n,
                        int64_t *out, int timeout_ms, char *errstr, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
    for (size_t i = 0; i < n; i++)
        rd_kafka_topic_partition_list_add(l, topic, parts[i]);
    rd_kafka_resp_err_t err = rd_kafka_committed(k->rk, l, timeout_ms);
    if (err) {
        snprintf(errstr, errlen, "cannot read the committed offsets of %s: %s", topic,
                 rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(l);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = l->elems[i].err || l->elems[i].offset < 0 ? -1 : l->elems[i].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return 0;
}

int weft_clik_assign(weft_clik_t *k, const char *topic, const int32_t *parts,
                     const int64_t *offsets, size_t n, char *errstr, size_t errlen)
{
    rd_kafka_resp_err_t err;
    if (n == 0) {
        err = rd_kafka_assign(k->rk, NULL);
    } else {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
        for (size_t i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, topic, parts[i])->offset = offsets[i];
        err = rd_kafka_assign(k->rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (err) {
        snprintf(errstr, errlen, "rd_kafka_assign() failed: %s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

weft_clik_ev_t weft_clik_poll(weft_clik_t *k, int timeout_ms, weft_kmsg_t *km,
                              int32_t *eof_partition, int64_t *eof_offset, char *errstr,
                              size_t errlen)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(k->rk, timeout_ms);
    if (!m)
        return WEFT_CLIK_NONE;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        *eof_partition = m->partition;
        *eof_offset = m->offset;
        rd_kafka_message_destroy(m);
        return WEFT_CLIK_EOF;
    }
    if (m->err) {
        snprintf(errstr, errlen, "%s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        return WEFT_CLIK_ERROR;
    }
    weft_kafka_msg_fill(km, m);
    return WEFT_CLIK_MSG;
}
