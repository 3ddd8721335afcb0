/*
 * cli_kafka.h - the Kafka reads of the operator's commands: partitions,
 * watermarks, offsets for times, a consumer group's committed offsets, and
 * a consumer that reads explicit partitions from explicit offsets
 * (assign, never subscribe, never commit). librdkafka types stay inside
 * cli_kafka.c. Producing goes through kafka.h.
 */
#ifndef WEFT_CLI_KAFKA_H
#define WEFT_CLI_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "kafka.h"

typedef struct weft_clik weft_clik_t;

/* A consumer handle from the config (kafka.* and kafka.consumer.* keys)
 * with group.id = group (whose committed offsets it can read) and
 * auto-commit off: it never joins the group and never commits. */
weft_clik_t *weft_clik_new(const weft_config_t *cfg, const char *group, char *errstr,
                           size_t errlen);
void weft_clik_destroy(weft_clik_t *k);

/* The partition ids of topic, sorted (malloc()ed). 0, -1 with errstr (the
 * broker is unreachable within timeout_ms), or -2 (no such topic). */
int weft_clik_partitions(weft_clik_t *k, const char *topic, int timeout_ms, int32_t **parts,
                         size_t *n, char *errstr, size_t errlen);

/* Low and high watermark (the next offset to be written). */
int weft_clik_watermarks(weft_clik_t *k, const char *topic, int32_t partition, int timeout_ms,
                         int64_t *low, int64_t *high, char *errstr, size_t errlen);

/* For each partition, the first offset whose timestamp is >= ms[i],
 * written back to ms[i] (-1: none, the end). Returns 0, -1 with errstr, or
 * -2 when the broker does not support the lookup. */
int weft_clik_offsets_for_times(weft_clik_t *k, const char *topic, const int32_t *parts, size_t n,
                                int64_t *ms, int timeout_ms, char *errstr, size_t errlen);

/* The group's committed offsets (-1 where none). */
int weft_clik_committed(weft_clik_t *k, const char *topic, const int32_t *parts, size_t n,
                        int64_t *out, int timeout_ms, char *errstr, size_t errlen);

/* Reads parts from offsets (replacing any earlier assignment; n 0 stops
 * reading). */
int weft_clik_assign(weft_clik_t *k, const char *topic, const int32_t *parts,
                     const int64_t *offsets, size_t n, char *errstr, size_t errlen);

typedef enum {
    WEFT_CLIK_NONE = 0, /* nothing within the timeout */
    WEFT_CLIK_MSG,      /* *msg filled: free with weft_kafka_msg_free */
    WEFT_CLIK_EOF,      /* reached the partition's end: *eof_partition, *eof_offset */
    WEFT_CLIK_ERROR,    /* errstr filled; the consumer goes on */
} weft_clik_ev_t;

weft_clik_ev_t weft_clik_poll(weft_clik_t *k, int timeout_ms, weft_kmsg_t *msg,
                              int32_t *eof_partition, int64_t *eof_offset, char *errstr,
                              size_t errlen);

#endif
