/*
 * cli.h - the operator's commands `weft publish`, `weft replay`,
 * `weft triggers` and `weft status`, and the pure parsing they share
 * (broker URLs, offset ranges, times, CloudEvents given on the command line
 * or as --lines documents). The parsing is unit-tested without servers.
 */
#ifndef WEFT_CLI_H
#define WEFT_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "catalog.h"
#include "config.h"
#include "envelope.h"
#include "match.h"
#include "pg.h"

/* argv[0] is the command name. Each returns the exit code: 0 ok, 1 runtime
 * error, 2 usage or configuration error (130 for an interrupted replay). */
int weft_publish_main(weft_config_t *cfg, int argc, char **argv);
int weft_replay_main(weft_config_t *cfg, int argc, char **argv);
int weft_triggers_main(const weft_config_t *cfg, int argc, char **argv);
int weft_status_main(const weft_config_t *cfg, int argc, char **argv);
/* `weft ledger prune` (cli_ledger.c). */
int weft_ledger_main(const weft_config_t *cfg, int argc, char **argv);

/* Help texts (stdout for --help, stderr for a usage error). */
void weft_publish_usage(FILE *f);
void weft_replay_usage(FILE *f);
void weft_triggers_usage(FILE *f);
void weft_status_usage(FILE *f);
void weft_ledger_usage(FILE *f);

/* ---- broker URLs ---------------------------------------------------------- */

/* kafka://TOPIC, jetstream://SUBJECT, nats://SUBJECT. */
typedef struct weft_cli_url {
    weft_broker_t broker;
    char name[256];
} weft_cli_url_t;

int weft_cli_parse_url(const char *s, weft_cli_url_t *out, char *errstr, size_t errlen);
const char *weft_cli_scheme(weft_broker_t broker);

/* ---- offset ranges -------------------------------------------------------- */

/* "N" (every partition) or "P:N[,P:N...]" (the partitions named). */
typedef struct weft_cli_poff {
    int32_t partition;
    int64_t offset;
} weft_cli_poff_t;

typedef struct weft_cli_offsets {
    int has_all; /* "N" was given: all_offset applies to every partition */
    int64_t all_offset;
    weft_cli_poff_t *v;
    size_t n;
} weft_cli_offsets_t;

int weft_cli_parse_offsets(const char *s, weft_cli_offsets_t *out, char *errstr, size_t errlen);
/* The offset given for partition, or def when none was. */
int64_t weft_cli_offsets_get(const weft_cli_offsets_t *o, int32_t partition, int64_t def);
/* 1 when the offsets name partition (or every partition). */
int weft_cli_offsets_names(const weft_cli_offsets_t *o, int32_t partition);
void weft_cli_offsets_free(weft_cli_offsets_t *o);

/* ---- times ------------------------------------------------------------------ */

/* RFC 3339 ("2024-05-01T10:00:00Z", "...T10:00:00.250+02:00"), a date and
 * time in UTC ("2024-05-01 10:00[:00]", "2024-05-01"), milliseconds since
 * the epoch ("@1714557600000"), or a duration ago ("30s", "15m", "2h",
 * "7d"). Returns 0 with *out_ms, or -1 with errstr. */
int weft_cli_parse_time(const char *s, int64_t now_ms, int64_t *out_ms, char *errstr,
                        size_t errlen);
/* Strict RFC 3339 (the CloudEvents time attribute). */
int weft_cli_parse_rfc3339(const char *s, int64_t *out_ms);
/* RFC 3339 in UTC with milliseconds: out holds 32 bytes. */
void weft_cli_format_time(int64_t ms, char out[32]);
int64_t weft_cli_now_ms(void);

/* ---- CloudEvents to publish ------------------------------------------------- */

#define WEFT_CLI_MAX_ATTRS 64

typedef struct weft_cli_attr {
    char *name;
    char *value;
} weft_cli_attr_t;

/* Context attributes (id, source, type, specversion, time, subject,
 * datacontenttype, dataschema and extensions) as strings, and data. */
typedef struct weft_cli_event {
    weft_cli_attr_t attrs[WEFT_CLI_MAX_ATTRS];
    size_t n_attrs;
    uint8_t *data;
    size_t data_len;
    int has_data;
} weft_cli_event_t;

/* Sets (replaces) an attribute; copies both strings. 0 or -1 (full). */
int weft_cli_event_set(weft_cli_event_t *ev, const char *name, const char *value);
const char *weft_cli_event_get(const weft_cli_event_t *ev, const char *name);
/* Sets data (copied). */
int weft_cli_event_set_data(weft_cli_event_t *ev, const void *p, size_t len);
void weft_cli_event_free(weft_cli_event_t *ev);

/* Parses one --lines document: a JSON object shaped like a structured
 * CloudEvent. Members: the attributes (strings; numbers and booleans are
 * taken as their text; null is absent), "data" (any JSON value: a string
 * with a non-JSON datacontenttype is the text itself, anything else is the
 * JSON text, with datacontenttype defaulting to application/json), or
 * "data_base64". "specversion", when present, must be "1.0". */
int weft_cli_event_from_json(const char *s, size_t len, weft_cli_event_t *ev, char *errstr,
                             size_t errlen);

/* Fills what the publisher supplies (specversion 1.0, a random UUID id, the
 * current time, a datacontenttype guessed from the data when absent) and
 * validates: id, source and type present, names [a-z0-9]{1,64}, values
 * UTF-8 without NUL, time RFC 3339. 0 or -1 with errstr. */
int weft_cli_event_finish(weft_cli_event_t *ev, char *errstr, size_t errlen);

/* Kafka binary mode: ce_<attr> headers (datacontenttype as content-type),
 * value = data. hdrs must hold WEFT_CLI_MAX_ATTRS entries; the values point
 * into ev, the names into a per-thread table reused by the next call (a
 * produce copies both). Returns the count. */
size_t weft_cli_event_headers(const weft_cli_event_t *ev, weft_header_t *hdrs);
/* Structured mode: the application/cloudevents+json document, NUL-terminated
 * in a new malloc()ed buffer (NULL when out of memory). */
char *weft_cli_event_json(const weft_cli_event_t *ev, size_t *len);

/* A random (version 4) UUID: out holds 37 bytes. */
void weft_cli_uuid4(char out[37]);

/* ---- shared by the commands -------------------------------------------------- */

/* Kafka's consumer group of the dispatcher: kafka.consumer.group.id, then
 * kafka.group.id, then "weft" (as kafka.c configures it). */
const char *weft_cli_group_id(const weft_config_t *cfg);

/* Progress on stderr when it is a terminal: a bar when total > 0, with the
 * rate and the time left; otherwise a count and the rate. */
typedef struct weft_cli_progress {
    int enabled;
    int64_t total;
    int64_t done;
    int64_t started_ms;
    int64_t last_draw_ms;
    const char *what;
} weft_cli_progress_t;

void weft_cli_progress_start(weft_cli_progress_t *p, int64_t total, const char *what);
void weft_cli_progress_update(weft_cli_progress_t *p, int64_t done);
void weft_cli_progress_end(weft_cli_progress_t *p);

/* Reads a whole file ("-" for stdin) into a new buffer. */
int weft_cli_read_file(const char *path, uint8_t **out, size_t *len, char *errstr, size_t errlen);

/* Connects to PostgreSQL (pg.conninfo) or prints why not, prefixed with
 * cmd. Returns the connection (close it with weft_pgconn_close) or NULL. */
weft_pg_conn_t *weft_cli_pg_connect(const weft_config_t *cfg, const char *cmd);

#endif
