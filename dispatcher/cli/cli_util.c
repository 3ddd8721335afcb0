/*
 * cli_util.c - what the operator's commands share: broker URLs, offset
 * ranges, times, CloudEvents built from flags or --lines documents, the
 * dispatcher's idempotency-key rule, the progress bar, PostgreSQL
 * connection.
 *
 * Runs in the CLI process. The parsing functions are pure (no I/O, no
 * globals) so tests/test_cli_args.c checks them without servers. Input is
 * the operator's: every error says what was wrong with which argument.
 */
#include "cli.h"
#include "kafka.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "encode.h"
#include "json.h"
#include "pgconn.h"

/* ---- broker URLs ---------------------------------------------------------- */

const char *weft_cli_scheme(weft_broker_t broker)
{
    return broker == WEFT_BROKER_JETSTREAM ? "jetstream"
           : broker == WEFT_BROKER_NATS    ? "nats"
                                           : "kafka";
}

static int topic_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 249)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

/* A NATS subject to publish to: dot-separated non-empty tokens of
 * printable characters, no wildcards. */
static int subject_valid(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 255 || s[0] == '.' || s[n - 1] == '.')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f || c == '*' || c == '>')
            return 0;
        if (c == '.' && s[i + 1] == '.')
            return 0;
    }
    return 1;
}

int weft_cli_parse_url(const char *s, weft_cli_url_t *out, char *errstr, size_t errlen)
{
    static const struct {
        const char *prefix;
        weft_broker_t broker;
    } schemes[] = {{"kafka://", WEFT_BROKER_KAFKA},
                   {"jetstream://", WEFT_BROKER_JETSTREAM},
                   {"nats://", WEFT_BROKER_NATS}};
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t pl = strlen(schemes[i].prefix);
        if (strncmp(s, schemes[i].prefix, pl) != 0)
            continue;
        const char *name = s + pl;
        out->broker = schemes[i].broker;
        if (strlen(name) >= sizeof(out->name)) {
            snprintf(errstr, errlen, "\"%s\": name too long", s);
            return -1;
        }
        if (out->broker == WEFT_BROKER_KAFKA && !topic_valid(name)) {
            snprintf(errstr, errlen,
                     "\"%s\": a Kafka topic is 1 to 249 of [A-Za-z0-9._-] (kafka://TOPIC)", s);
            return -1;
        }
        if (out->broker != WEFT_BROKER_KAFKA && !subject_valid(name)) {
            snprintf(errstr, errlen,
                     "\"%s\": a subject is dot-separated tokens without spaces or wildcards", s);
            return -1;
        }
        snprintf(out->name, sizeof(out->name), "%s", name);
        return 0;
    }
    snprintf(errstr, errlen,
             "\"%s\" is not a broker URL: use kafka://TOPIC, jetstream://SUBJECT or "
             "nats://SUBJECT",
             s);
    return -1;
}

/* ---- offset ranges -------------------------------------------------------- */

static int parse_i64(const char *s, size_t len, int64_t max, int64_t *out)
{
    if (len == 0 || len > 19)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (max - (s[i] - '0')) / 10)
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int weft_cli_parse_offsets(const char *s, weft_cli_offsets_t *out, char *errstr, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!strchr(s, ':')) {
        if (parse_i64(s, strlen(s), INT64_MAX, &out->all_offset) != 0) {
            snprintf(errstr, errlen,
                     "\"%s\" is not an offset: use N (every partition) or P:N[,P:N...]", s);
            return -1;
        }
        out->has_all = 1;
        return 0;
    }
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        int64_t part, off;
        if (!colon || parse_i64(p, (size_t)(colon - p), INT32_MAX, &part) != 0 ||
            parse_i64(colon + 1, len - (size_t)(colon - p) - 1, INT64_MAX, &off) != 0) {
            snprintf(errstr, errlen, "\"%.*s\" in \"%s\" is not PARTITION:OFFSET", (int)len, p, s);
            weft_cli_offsets_free(out);
            return -1;
        }
        for (size_t i = 0; i < out->n; i++) {
            if (out->v[i].partition == (int32_t)part) {
                snprintf(errstr, errlen, "partition %lld is given twice in \"%s\"", (long long)part,
                         s);
                weft_cli_offsets_free(out);
                return -1;
            }
        }
        weft_cli_poff_t *nv = realloc(out->v, (out->n + 1) * sizeof(*nv));
        if (!nv) {
            snprintf(errstr, errlen, "out of memory");
            weft_cli_offsets_free(out);
            return -1;
        }
        out->v = nv;
        out->v[out->n].partition = (int32_t)part;
        out->v[out->n].offset = off;
        out->n++;
        if (!comma)
            break;
        p = comma + 1;
        if (!*p) {
            snprintf(errstr, errlen, "\"%s\" ends with a comma", s);
            weft_cli_offsets_free(out);
            return -1;
        }
    }
    return 0;
}

int64_t weft_cli_offsets_get(const weft_cli_offsets_t *o, int32_t partition, int64_t def)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->v[i].partition == partition)
            return o->v[i].offset;
    return o->has_all ? o->all_offset : def;
}

int weft_cli_offsets_names(const weft_cli_offsets_t *o, int32_t partition)
{
    if (o->has_all)
        return 1;
    for (size_t i = 0; i < o->n; i++)
        if (o->v[i].partition == partition)
            return 1;
    return 0;
}

void weft_cli_offsets_free(weft_cli_offsets_t *o)
{
    free(o->v);
    memset(o, 0, sizeof(*o));
}

/* ---- times ------------------------------------------------------------------ */

int64_t weft_cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int days_in_month(int y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return d[m - 1];
}

/* "YYYY-MM-DD" at s; fills tm. */
static int parse_date(const char *s, struct tm *tm)
{
    int y, mo, d;
    if (strlen(s) < 10 || s[4] != '-' || s[7] != '-' || digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
        digits(s + 8, 2, &d) || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo))
        return -1;
    memset(tm, 0, sizeof(*tm));
    tm->tm_year = y - 1900;
    tm->tm_mon = mo - 1;
    tm->tm_mday = d;
    return 0;
}

/* "HH:MM[:SS[.frac]]" at s (seconds required when need_sec); returns the
 * characters used, or -1. */
static int parse_clock(const char *s, int need_sec, struct tm *tm, int *ms)
{
    int h, mi, sec = 0, used = 5;
    *ms = 0;
    if (strlen(s) < 5 || s[2] != ':' || digits(s, 2, &h) || digits(s + 3, 2, &mi) || h > 23 ||
        mi > 59)
        return -1;
    if (s[5] == ':') {
        if (digits(s + 6, 2, &sec) || sec > 60)
            return -1;
        used = 8;
        if (s[8] == '.') {
            int i = 9, scale = 100;
            if (s[i] < '0' || s[i] > '9')
                return -1;
            for (; s[i] >= '0' && s[i] <= '9'; i++) {
                *ms += (s[i] - '0') * scale;
                scale /= 10;
            }
            used = i;
        }
    } else if (need_sec) {
        return -1;
    }
    tm->tm_hour = h;
    tm->tm_min = mi;
    tm->tm_sec = sec;
    return used;
}

int weft_cli_parse_rfc3339(const char *s, int64_t *out_ms)
{
    struct tm tm;
    int ms;
    if (parse_date(s, &tm) != 0 || (s[10] != 'T' && s[10] != 't'))
        return -1;
    int used = parse_clock(s + 11, 1, &tm, &ms);
    if (used < 0)
        return -1;
    const char *z = s + 11 + used;
    int64_t tz = 0;
    if ((z[0] == 'Z' || z[0] == 'z') && z[1] == '\0') {
        tz = 0;
    } else if ((z[0] == '+' || z[0] == '-') && strlen(z) == 6 && z[3] == ':') {
        int th, tmi;
        if (digits(z + 1, 2, &th) || digits(z + 4, 2, &tmi) || th > 23 || tmi > 59)
            return -1;
        tz = (int64_t)(th * 60 + tmi) * 60 * (z[0] == '+' ? 1 : -1);
    } else {
        return -1;
    }
    time_t t = timegm(&tm);
    *out_ms = ((int64_t)t - tz) * 1000 + ms;
    return 0;
}

int weft_cli_parse_time(const char *s, int64_t now_ms, int64_t *out_ms, char *errstr, size_t errlen)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '@') {
        if (parse_i64(s + 1, n - 1, INT64_MAX, out_ms) == 0)
            return 0;
    } else if (n >= 2 && s[0] >= '0' && s[0] <= '9' && strchr("smhd", s[n - 1]) &&
               !strchr(s, '-')) {
        int64_t v;
        static const int64_t unit_ms[] = {1000, 60000, 3600000, 86400000};
        int64_t unit = unit_ms[strchr("smhd", s[n - 1]) - "smhd"];
        if (parse_i64(s, n - 1, INT64_MAX / unit, &v) == 0 && v * unit <= now_ms) {
            *out_ms = now_ms - v * unit;
            return 0;
        }
    } else if (weft_cli_parse_rfc3339(s, out_ms) == 0) {
        return 0;
    } else {
        struct tm tm;
        int ms = 0;
        if (parse_date(s, &tm) == 0) {
            if (n == 10) {
                *out_ms = (int64_t)timegm(&tm) * 1000;
                return 0;
            }
            if (s[10] == ' ' || s[10] == 'T') {
                int used = parse_clock(s + 11, 0, &tm, &ms);
                if (used > 0 && s[11 + used] == '\0') {
                    *out_ms = (int64_t)timegm(&tm) * 1000 + ms;
                    return 0;
                }
            }
        }
    }
    snprintf(errstr, errlen,
             "\"%s\" is not a time: use RFC 3339 (2024-05-01T10:00:00Z), \"2024-05-01 10:00\" "
             "(UTC), @EPOCH_MS or a duration ago (30s, 15m, 2h, 7d)",
             s);
    return -1;
}

void weft_cli_format_time(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char b[24];
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", b, (int)(ms % 1000));
}

/* ---- CloudEvents ------------------------------------------------------------- */

int weft_cli_event_set(weft_cli_event_t *ev, const char *name, const char *value)
{
    char *v = strdup(value);
    if (!v)
        return -1;
    for (size_t i = 0; i < ev->n_attrs; i++) {
        if (strcmp(ev->attrs[i].name, name) == 0) {
            free(ev->attrs[i].value);
            ev->attrs[i].value = v;
            return 0;
        }
    }
    char *k = ev->n_attrs < WEFT_CLI_MAX_ATTRS ? strdup(name) : NULL;
    if (!k) {
        free(v);
        return -1;
    }
    ev->attrs[ev->n_attrs].name = k;
    ev->attrs[ev->n_attrs].value = v;
    ev->n_attrs++;
    return 0;
}

const char *weft_cli_event_get(const weft_cli_event_t *ev, const char *name)
{
    for (size_t i = 0; i < ev->n_attrs; i++)
        if (strcmp(ev->attrs[i].name, name) == 0)
            return ev->attrs[i].value;
    return NULL;
}

int weft_cli_event_set_data(weft_cli_event_t *ev, const void *p, size_t len)
{
    uint8_t *d = malloc(len ? len : 1);
    if (!d)
        return -1;
    if (len)
        memcpy(d, p, len);
    free(ev->data);
    ev->data = d;
    ev->data_len = len;
    ev->has_data = 1;
    return 0;
}

void weft_cli_event_free(weft_cli_event_t *ev)
{
    for (size_t i = 0; i < ev->n_attrs; i++) {
        free(ev->attrs[i].name);
        free(ev->attrs[i].value);
    }
    free(ev->data);
    memset(ev, 0, sizeof(*ev));
}

typedef struct doc_ctx {
    weft_cli_event_t *ev;
    weft_json_val_t data, data_b64;
    int has_data, has_b64;
    char err[256];
} doc_ctx_t;

static int doc_member(const char *key, const weft_json_val_t *val, void *opaque)
{
    doc_ctx_t *dc = opaque;
    if (strcmp(key, "data") == 0) {
        dc->data = *val;
        dc->has_data = 1;
        return 0;
    }
    if (strcmp(key, "data_base64") == 0) {
        dc->data_b64 = *val;
        dc->has_b64 = 1;
        return 0;
    }
    if (!weft_ce_attr_name_valid(key, strlen(key)) || strlen(key) > 64) {
        snprintf(dc->err, sizeof(dc->err),
                 "\"%s\" is not a CloudEvents attribute name ([a-z0-9], at most 64)", key);
        return 1;
    }
    char *v = NULL;
    switch (val->type) {
    case WEFT_JSON_STRING:
        v = weft_json_unescape(val, NULL);
        if (!v) {
            snprintf(dc->err, sizeof(dc->err), "attribute \"%s\" is not a valid string", key);
            return 1;
        }
        break;
    case WEFT_JSON_NUMBER:
    case WEFT_JSON_TRUE:
    case WEFT_JSON_FALSE:
        v = strndup(val->p, val->len);
        break;
    case WEFT_JSON_NULL:
        return 0;
    default:
        snprintf(dc->err, sizeof(dc->err), "attribute \"%s\" must be a string, number or boolean",
                 key);
        return 1;
    }
    int rc = v ? weft_cli_event_set(dc->ev, key, v) : -1;
    free(v);
    if (rc != 0) {
        snprintf(dc->err, sizeof(dc->err), "too many attributes (at most %d)", WEFT_CLI_MAX_ATTRS);
        return 1;
    }
    return 0;
}

int weft_cli_event_from_json(const char *s, size_t len, weft_cli_event_t *ev, char *errstr,
                             size_t errlen)
{
    doc_ctx_t dc;
    memset(&dc, 0, sizeof(dc));
    dc.ev = ev;
    char err[256];
    size_t i = 0;
    while (i < len && (s[i] == ' ' || s[i] == '\t'))
        i++;
    if (i == len || s[i] != '{') {
        snprintf(errstr, errlen, "not a JSON object");
        return -1;
    }
    if (weft_json_validate(s, len, err, sizeof(err)) != 0) {
        snprintf(errstr, errlen, "invalid JSON: %s", err);
        return -1;
    }
    int rc = weft_json_object_each(s, len, doc_member, &dc, err, sizeof(err));
    if (rc < 0) {
        snprintf(errstr, errlen, "invalid JSON: %s", err);
        return -1;
    }
    if (rc > 0) {
        snprintf(errstr, errlen, "%s", dc.err);
        return -1;
    }
    if (dc.has_data && dc.has_b64) {
        snprintf(errstr, errlen, "give data or data_base64, not both");
        return -1;
    }
    const char *sv = weft_cli_event_get(ev, "specversion");
    if (sv && strcmp(sv, "1.0") != 0) {
        snprintf(errstr, errlen, "specversion must be \"1.0\", got \"%s\"", sv);
        return -1;
    }
    const char *ct = weft_cli_event_get(ev, "datacontenttype");
    if (dc.has_b64) {
        if (dc.data_b64.type != WEFT_JSON_STRING) {
            snprintf(errstr, errlen, "data_base64 must be a string");
            return -1;
        }
        size_t tl, n;
        char *text = weft_json_unescape(&dc.data_b64, &tl);
        uint8_t *raw = text ? weft_base64_decode(text, tl, &n) : NULL;
        free(text);
        if (!raw) {
            snprintf(errstr, errlen, "data_base64 is not valid base64");
            return -1;
        }
        rc = weft_cli_event_set_data(ev, raw, n);
        free(raw);
    } else if (dc.has_data && dc.data.type == WEFT_JSON_NULL) {
        rc = 0;
    } else if (dc.has_data) {
        /* As envelope.c decodes a structured event: a string with a
         * non-JSON content type carries the text itself. */
        if (dc.data.type == WEFT_JSON_STRING && ct && *ct && !weft_json_content_type(ct)) {
            size_t n;
            char *text = weft_json_unescape_bytes(&dc.data, &n);
            if (!text) {
                snprintf(errstr, errlen, "data is not a valid JSON string");
                return -1;
            }
            rc = weft_cli_event_set_data(ev, text, n);
            free(text);
        } else {
            rc = weft_cli_event_set_data(ev, dc.data.p, dc.data.len);
            if (rc == 0 && !ct)
                rc = weft_cli_event_set(ev, "datacontenttype", "application/json");
        }
    }
    if (rc != 0) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void weft_cli_uuid4(char out[37])
{
    uint8_t d[16];
    size_t got = 0;
    while (got < sizeof(d)) {
        ssize_t n = getrandom(d + got, sizeof(d) - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* No entropy source: time and pid still make a unique id. */
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            uint64_t x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
            for (size_t i = got; i < sizeof(d); i++) {
                x = x * 6364136223846793005ull + (uint64_t)getpid();
                d[i] = (uint8_t)(x >> 56);
            }
            break;
        }
        got += (size_t)n;
    }
    d[6] = (uint8_t)((d[6] & 0x0f) | 0x40);
    d[8] = (uint8_t)((d[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", d[0],
             d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13],
             d[14], d[15]);
}

int weft_cli_event_finish(weft_cli_event_t *ev, char *errstr, size_t errlen)
{
    if (!weft_cli_event_get(ev, "specversion") && weft_cli_event_set(ev, "specversion", "1.0"))
        goto oom;
    if (!weft_cli_event_get(ev, "id")) {
        char id[37];
        weft_cli_uuid4(id);
        if (weft_cli_event_set(ev, "id", id))
            goto oom;
    }
    if (!weft_cli_event_get(ev, "time")) {
        char t[32];
        weft_cli_format_time(weft_cli_now_ms(), t);
        if (weft_cli_event_set(ev, "time", t))
            goto oom;
    }
    if (ev->has_data && !weft_cli_event_get(ev, "datacontenttype")) {
        const char *ct =
            weft_json_valid(ev->data, ev->data_len) ? "application/json"
            : weft_utf8_valid(ev->data, ev->data_len) && !memchr(ev->data, 0, ev->data_len)
                ? "text/plain; charset=utf-8"
                : "application/octet-stream";
        if (weft_cli_event_set(ev, "datacontenttype", ct))
            goto oom;
    }
    static const char *const required[] = {"id", "source", "type"};
    for (size_t i = 0; i < 3; i++) {
        const char *v = weft_cli_event_get(ev, required[i]);
        if (!v || !*v) {
            snprintf(errstr, errlen, "the CloudEvent has no %s%s", required[i],
                     i == 2   ? " (--type)"
                     : i == 1 ? " (--source)"
                              : "");
            return -1;
        }
    }
    if (strcmp(weft_cli_event_get(ev, "specversion"), "1.0") != 0) {
        snprintf(errstr, errlen, "specversion must be \"1.0\"");
        return -1;
    }
    for (size_t i = 0; i < ev->n_attrs; i++) {
        const char *k = ev->attrs[i].name, *v = ev->attrs[i].value;
        if (!weft_ce_attr_name_valid(k, strlen(k)) || strlen(k) > 64) {
            snprintf(errstr, errlen, "\"%s\" is not a CloudEvents attribute name ([a-z0-9])", k);
            return -1;
        }
        if (!weft_utf8_valid(v, strlen(v))) {
            snprintf(errstr, errlen, "attribute %s is not valid UTF-8", k);
            return -1;
        }
        if (strlen(v) > 4096) {
            snprintf(errstr, errlen, "attribute %s is longer than 4096 bytes", k);
            return -1;
        }
    }
    int64_t ms;
    if (weft_cli_parse_rfc3339(weft_cli_event_get(ev, "time"), &ms) != 0) {
        snprintf(errstr, errlen, "time \"%s\" is not RFC 3339 (2024-05-01T10:00:00Z)",
                 weft_cli_event_get(ev, "time"));
        return -1;
    }
    return 0;
oom:
    snprintf(errstr, errlen, "out of memory");
    return -1;
}

size_t weft_cli_event_headers(const weft_cli_event_t *ev, weft_header_t *hdrs)
{
    /* The header names live in this table: hdrs is valid until the next
     * call, long enough for a produce, which copies. */
    static __thread weft_ce_hname_t names[WEFT_CLI_MAX_ATTRS];
    weft_ce_pair_t pairs[WEFT_CLI_MAX_ATTRS];
    size_t np = 0, n = 0;
    static const char *const order[] = {"specversion", "id", "source", "type"};
    /* Required attributes first, as producers conventionally write them. */
    for (size_t o = 0; o < 4; o++)
        for (size_t i = 0; i < ev->n_attrs; i++)
            if (strcmp(ev->attrs[i].name, order[o]) == 0)
                pairs[np++] = (weft_ce_pair_t){ev->attrs[i].name, ev->attrs[i].value};
    for (size_t i = 0; i < ev->n_attrs; i++) {
        int req = 0;
        for (size_t o = 0; o < 4; o++)
            req |= strcmp(ev->attrs[i].name, order[o]) == 0;
        if (!req)
            pairs[np++] = (weft_ce_pair_t){ev->attrs[i].name, ev->attrs[i].value};
    }
    weft_ce_binary_headers(pairs, np, hdrs, &n, WEFT_CLI_MAX_ATTRS, names);
    return n;
}

char *weft_cli_event_json(const weft_cli_event_t *ev, size_t *len)
{
    weft_buf_t b = {0};
    int bad = weft_buf_append(&b, "{", 1);
    for (size_t i = 0; i < ev->n_attrs; i++) {
        bad |= weft_buf_append(&b, i ? "," : "", i ? 1 : 0);
        bad |= weft_json_append_string(&b, ev->attrs[i].name, strlen(ev->attrs[i].name));
        bad |= weft_buf_append(&b, ":", 1);
        bad |= weft_json_append_string(&b, ev->attrs[i].value, strlen(ev->attrs[i].value));
    }
    if (ev->has_data) {
        const char *ct = weft_cli_event_get(ev, "datacontenttype");
        if (ct && weft_json_content_type(ct) && weft_json_valid(ev->data, ev->data_len)) {
            bad |= weft_buf_append(&b, ",\"data\":", 8);
            bad |= weft_buf_append(&b, ev->data, ev->data_len);
        } else if (ct && !weft_json_content_type(ct) && weft_utf8_valid(ev->data, ev->data_len) &&
                   !memchr(ev->data, 0, ev->data_len)) {
            bad |= weft_buf_append(&b, ",\"data\":", 8);
            bad |= weft_json_append_string(&b, (const char *)ev->data, ev->data_len);
        } else {
            bad |= weft_buf_append(&b, ",\"data_base64\":\"", 16);
            bad |= weft_base64_append(&b, ev->data, ev->data_len);
            bad |= weft_buf_append(&b, "\"", 1);
        }
    }
    bad |= weft_buf_append(&b, "}", 2); /* with the NUL */
    if (bad) {
        weft_buf_free(&b);
        return NULL;
    }
    *len = b.len - 1;
    return b.p;
}

/* ---- shared by the commands -------------------------------------------------- */

const char *weft_cli_group_id(const weft_config_t *cfg)
{
    const char *g = weft_config_get(cfg, "kafka.consumer.group.id", NULL);
    return g ? g : weft_config_str(cfg, "kafka.group.id");
}

static void progress_draw(weft_cli_progress_t *p, int final)
{
    int64_t now = weft_cli_now_ms();
    if (!final && now - p->last_draw_ms < 200)
        return;
    p->last_draw_ms = now;
    double secs = (double)(now - p->started_ms) / 1000.0;
    double rate = secs > 0.05 ? (double)p->done / secs : 0.0;
    char line[160];
    if (p->total > 0) {
        int width = 30;
        int64_t done = p->done > p->total ? p->total : p->done;
        int fill = (int)(done * width / p->total);
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = '\0';
        char eta[32] = "--";
        if (rate > 0) {
            int64_t left = (int64_t)((double)(p->total - done) / rate + 0.999);
            snprintf(eta, sizeof(eta), "%lldm%02llds", (long long)(left / 60),
                     (long long)(left % 60));
        }
        snprintf(line, sizeof(line), "[%s] %3d%% %lld/%lld %s  %.0f/s  ETA %s", bar,
                 (int)(done * 100 / p->total), (long long)done, (long long)p->total, p->what, rate,
                 eta);
    } else {
        snprintf(line, sizeof(line), "%lld %s  %.0f/s", (long long)p->done, p->what, rate);
    }
    fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    fflush(stderr);
}

void weft_cli_progress_start(weft_cli_progress_t *p, int64_t total, const char *what)
{
    memset(p, 0, sizeof(*p));
    p->enabled = isatty(STDERR_FILENO);
    p->total = total;
    p->what = what;
    p->started_ms = weft_cli_now_ms();
}

void weft_cli_progress_update(weft_cli_progress_t *p, int64_t done)
{
    p->done = done;
    if (p->enabled)
        progress_draw(p, 0);
}

void weft_cli_progress_end(weft_cli_progress_t *p)
{
    if (p->enabled)
        progress_draw(p, 1);
    p->enabled = 0;
}

int weft_cli_read_file(const char *path, uint8_t **out, size_t *len, char *errstr, size_t errlen)
{
    int fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(errstr, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    weft_buf_t b = {0};
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(errstr, errlen, "cannot read %s: %s", path, strerror(errno));
            weft_buf_free(&b);
            if (fd != STDIN_FILENO)
                close(fd);
            return -1;
        }
        if (n == 0)
            break;
        if (weft_buf_append(&b, chunk, (size_t)n) != 0) {
            snprintf(errstr, errlen, "out of memory reading %s", path);
            weft_buf_free(&b);
            if (fd != STDIN_FILENO)
                close(fd);
            return -1;
        }
    }
    if (fd != STDIN_FILENO)
        close(fd);
    *out = b.p ? (uint8_t *)b.p : calloc(1, 1);
    *len = b.len;
    return *out ? 0 : -1;
}

weft_pg_conn_t *weft_cli_pg_connect(const weft_config_t *cfg, const char *cmd)
{
    const char *conninfo = weft_config_str(cfg, "pg.conninfo");
    if (!conninfo) {
        fprintf(stderr, "%s: pg.conninfo is not set (config file or WEFT_PG)\n", cmd);
        return NULL;
    }
    /* A bounded wait for an unreachable server, unless the conninfo says. */
    char *ci = NULL;
    if (!strstr(conninfo, "connect_timeout") && !strstr(conninfo, "://") &&
        asprintf(&ci, "%s connect_timeout=10", conninfo) < 0)
        ci = NULL;
    char err[1024];
    weft_pg_conn_t *pg = weft_pgconn_connect(ci ? ci : conninfo, err, sizeof(err));
    free(ci);
    if (!pg)
        fprintf(stderr, "%s: cannot connect to PostgreSQL: %s", cmd, err);
    return pg;
}
