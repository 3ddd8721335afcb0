/*
 * config.h - weft's configuration: a `key = value` file, then environment
 * overrides, then command-line `--set key=value`.
 *
 * Keys under `kafka.` are handed to librdkafka (both clients; `kafka.consumer.`
 * and `kafka.producer.` to one only). Every key weft reads, its type,
 * default, range and help is one row of the table in config_table.c:
 * read weft's keys with weft_config_str / weft_config_int, which take the
 * default from there, and never write a default at the call.
 */
#ifndef WEFT_CONFIG_H
#define WEFT_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct weft_config weft_config_t;

weft_config_t *weft_config_new(void);
void weft_config_destroy(weft_config_t *cfg);

/* Reads a config file. Errors name the file and line. */
int weft_config_load_file(weft_config_t *cfg, const char *path, char *errstr, size_t errlen);
/* Parses one "key = value" line (comments and blank lines are accepted and
 * ignored). Returns 0, or -1 with errstr filled. */
int weft_config_parse_line(weft_config_t *cfg, const char *line, char *errstr, size_t errlen);
/* Applies the environment variables of the table (WEFT_PG,
 * WEFT_KAFKA_BROKERS, WEFT_NATS_URL, WEFT_LOG_LEVEL, WEFT_FUNCTIONS_DIR) and
 * the ';'-separated key=value list in WEFT_SET. */
int weft_config_load_env(weft_config_t *cfg, char *errstr, size_t errlen);

int weft_config_set(weft_config_t *cfg, const char *key, const char *value);
/* The value as set, or def: for keys outside the table (kafka.* passed
 * through); weft's own keys are read with weft_config_str/_int. */
const char *weft_config_get(const weft_config_t *cfg, const char *key, const char *def);
/* Integer with bounds; a malformed or out-of-range value is an error. */
int weft_config_get_int(const weft_config_t *cfg, const char *key, int64_t def, int64_t min,
                        int64_t max, int64_t *out, char *errstr, size_t errlen);

/* Iterates keys that start with prefix, in insertion order (later settings
 * of the same key replace earlier ones in place). Returns the number seen. */
typedef int (*weft_config_each_fn)(const char *key, const char *value, void *opaque);
int weft_config_each(const weft_config_t *cfg, const char *prefix, weft_config_each_fn fn,
                     void *opaque);

/* The table (config_table.c). */
typedef enum weft_config_type {
    WEFT_CONFIG_INT,      /* a count */
    WEFT_CONFIG_MS,       /* milliseconds */
    WEFT_CONFIG_BYTES,    /* bytes */
    WEFT_CONFIG_DURATION, /* a number and a unit (ms, s, m, h, d), or 0; read in ms */
    WEFT_CONFIG_STRING,   /* any text */
    WEFT_CONFIG_PATH,     /* a file or directory */
    WEFT_CONFIG_ENUM,     /* one of values (case does not matter) */
    WEFT_CONFIG_PREFIX,   /* keys under key are passed through to a library */
} weft_config_type_t;

typedef struct weft_config_def {
    const char *key; /* the key, or for a prefix row the prefix ("kafka.") */
    weft_config_type_t type;
    const char *def;     /* the default as text; NULL: unset (or worked out at start) */
    const char *def_doc; /* the default in words for the reference, or NULL to show def */
    int64_t min, max;    /* numbers: the range, both ends allowed */
    const char *values;  /* enum: the allowed values, comma-separated */
    const char *env;     /* the environment variable that sets the key, or NULL */
    const char *help;    /* one line, markdown (backticks) */
} weft_config_def_t;

/* dispatcher.ledger_connections at most: the dispatcher sizes its array
 * of ledger connections by it. */
#define WEFT_LEDGER_CONNECTIONS_MAX 4

/* Every row, in the order of the reference. */
const weft_config_def_t *weft_config_defs(size_t *n);
/* The row of a key (not of a prefix), or NULL. */
const weft_config_def_t *weft_config_def_find(const char *key);

/* weft's own keys, with the table's default when unset. Asking for a key
 * that is not in the table is a bug in weft: it aborts. */
const char *weft_config_str(const weft_config_t *cfg, const char *key);
int weft_config_int(const weft_config_t *cfg, const char *key, int64_t *out, char *errstr,
                    size_t errlen);

/* A duration's text ("30d", "12h", "90s", "250ms", "0") in ms. A number
 * without a unit other than 0 is refused. 0, or -1. */
int weft_config_parse_duration(const char *s, int64_t *ms);

/* Every key set is in the table (or under a pass-through prefix) and its
 * value has the row's type and lies in its range. 0, or -1 with errstr
 * naming the key, the value and what is allowed. */
int weft_config_validate(const weft_config_t *cfg, char *errstr, size_t errlen);

/* The table for people (aligned columns) or as the README's markdown
 * reference. A weft.conf example (issue 28) is one more format here. */
typedef enum weft_config_format {
    WEFT_CONFIG_TEXT,
    WEFT_CONFIG_MARKDOWN,
} weft_config_format_t;
void weft_config_print(FILE *f, weft_config_format_t format);

#endif
