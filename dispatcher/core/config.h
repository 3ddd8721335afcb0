/*
 * config.h - weft's configuration: a `key = value` file, then environment
 * overrides, then command-line `--set key=value`.
 *
 * Keys under `kafka.` are handed to librdkafka (both clients; `kafka.consumer.`
 * and `kafka.producer.` to one only), keys under `nats.` to nats.c. See the
 * README for every key and its default.
 */
#ifndef WEFT_CONFIG_H
#define WEFT_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct weft_config weft_config_t;

weft_config_t *weft_config_new(void);
void weft_config_destroy(weft_config_t *cfg);

/* Reads a config file. Errors name the file and line. */
int weft_config_load_file(weft_config_t *cfg, const char *path, char *errstr, size_t errlen);
/* Parses one "key = value" line (comments and blank lines are accepted and
 * ignored). Returns 0, or -1 with errstr filled. */
int weft_config_parse_line(weft_config_t *cfg, const char *line, char *errstr, size_t errlen);
/* Applies WEFT_PG, WEFT_KAFKA_BROKERS, WEFT_NATS_URL, WEFT_LOG_LEVEL and the
 * ';'-separated key=value list in WEFT_SET. */
int weft_config_load_env(weft_config_t *cfg, char *errstr, size_t errlen);

int weft_config_set(weft_config_t *cfg, const char *key, const char *value);
const char *weft_config_get(const weft_config_t *cfg, const char *key, const char *def);
/* Integer with bounds; a malformed or out-of-range value is an error. */
int weft_config_get_int(const weft_config_t *cfg, const char *key, int64_t def, int64_t min,
                        int64_t max, int64_t *out, char *errstr, size_t errlen);

/* Iterates keys that start with prefix, in insertion order (later settings
 * of the same key replace earlier ones in place). Returns the number seen. */
typedef int (*weft_config_each_fn)(const char *key, const char *value, void *opaque);
int weft_config_each(const weft_config_t *cfg, const char *prefix, weft_config_each_fn fn,
                     void *opaque);

#endif
