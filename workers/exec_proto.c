/*
 * exec_proto.c - the exec runtime's JSON payloads (see exec_proto.h).
 *
 * Linked into weft-worker (which builds requests and parses replies) and
 * into the weft CLI (`weft invoke --json` reuses the string escaping and
 * the validator). Single-threaded use, no global state.
 *
 * Invariants: the scanner never reads past the length it is given and never
 * nests deeper than JSON_MAX_DEPTH, so a hostile reply costs linear time and
 * bounded stack; everything a request contains is valid UTF-8 without raw
 * newlines (strings are escaped, embedded JSON data is validated and
 * compacted), so the one-line reading of a request always works.
 */
#include "exec_proto.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define JSON_MAX_DEPTH 128

/* ---- buffers -------------------------------------------------------------- */

int weft_exec_buf_put(weft_frame_buf_t *b, const void *p, size_t len)
{
    if (weft_frame_buf_reserve(b, len + 1) < 0)
        return -1;
    if (len)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0'; /* handy for debugging; not counted */
    return 0;
}

int weft_exec_buf_puts(weft_frame_buf_t *b, const char *s)
{
    return weft_exec_buf_put(b, s, strlen(s));
}

int weft_exec_buf_printf(weft_frame_buf_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1; /* only used for numbers and short names */
    return weft_exec_buf_put(b, tmp, (size_t)n);
}

/* ---- UTF-8 and JSON scanning ---------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_seq(const uint8_t *p, size_t avail)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int weft_exec_utf8_valid(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

typedef struct scan {
    const uint8_t *s, *end;
} scan_t;

static void skip_ws(scan_t *sc)
{
    while (sc->s < sc->end && (*sc->s == ' ' || *sc->s == '\t' || *sc->s == '\n' || *sc->s == '\r'))
        sc->s++;
}

static int is_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int scan_string(scan_t *sc)
{
    if (sc->s >= sc->end || *sc->s != '"')
        return -1;
    sc->s++;
    while (sc->s < sc->end) {
        uint8_t c = *sc->s;
        if (c == '"') {
            sc->s++;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (sc->end - sc->s < 2)
                return -1;
            uint8_t e = sc->s[1];
            if (e == 'u') {
                if (sc->end - sc->s < 6)
                    return -1;
                for (int i = 2; i < 6; i++)
                    if (!is_hex(sc->s[i]))
                        return -1;
                sc->s += 6;
            } else if (e && strchr("\"\\/bfnrt", e)) {
                sc->s += 2;
            } else {
                return -1;
            }
            continue;
        }
        size_t n = utf8_seq(sc->s, (size_t)(sc->end - sc->s));
        if (!n)
            return -1;
        sc->s += n;
    }
    return -1;
}

static int scan_digits(scan_t *sc)
{
    const uint8_t *d = sc->s;
    while (sc->s < sc->end && *sc->s >= '0' && *sc->s <= '9')
        sc->s++;
    return sc->s > d ? 0 : -1;
}

static int scan_number(scan_t *sc)
{
    if (sc->s < sc->end && *sc->s == '-')
        sc->s++;
    if (sc->s >= sc->end)
        return -1;
    if (*sc->s == '0')
        sc->s++;
    else if (scan_digits(sc) < 0)
        return -1;
    if (sc->s < sc->end && *sc->s == '.') {
        sc->s++;
        if (scan_digits(sc) < 0)
            return -1;
    }
    if (sc->s < sc->end && (*sc->s == 'e' || *sc->s == 'E')) {
        sc->s++;
        if (sc->s < sc->end && (*sc->s == '+' || *sc->s == '-'))
            sc->s++;
        if (scan_digits(sc) < 0)
            return -1;
    }
    return 0;
}

static int scan_literal(scan_t *sc, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(sc->end - sc->s) < n || memcmp(sc->s, lit, n) != 0)
        return -1;
    sc->s += n;
    return 0;
}

static int scan_value(scan_t *sc, int depth);

static int scan_container(scan_t *sc, int depth, uint8_t close)
{
    sc->s++;
    skip_ws(sc);
    if (sc->s < sc->end && *sc->s == close) {
        sc->s++;
        return 0;
    }
    for (;;) {
        skip_ws(sc);
        if (close == '}') {
            if (scan_string(sc) < 0)
                return -1;
            skip_ws(sc);
            if (sc->s >= sc->end || *sc->s != ':')
                return -1;
            sc->s++;
        }
        if (scan_value(sc, depth + 1) < 0)
            return -1;
        skip_ws(sc);
        if (sc->s >= sc->end)
            return -1;
        if (*sc->s == ',') {
            sc->s++;
            continue;
        }
        if (*sc->s == close) {
            sc->s++;
            return 0;
        }
        return -1;
    }
}

static int scan_value(scan_t *sc, int depth)
{
    if (depth > JSON_MAX_DEPTH)
        return -1;
    skip_ws(sc);
    if (sc->s >= sc->end)
        return -1;
    switch (*sc->s) {
    case '"':
        return scan_string(sc);
    case '{':
        return scan_container(sc, depth, '}');
    case '[':
        return scan_container(sc, depth, ']');
    case 't':
        return scan_literal(sc, "true");
    case 'f':
        return scan_literal(sc, "false");
    case 'n':
        return scan_literal(sc, "null");
    default:
        return scan_number(sc);
    }
}

int weft_exec_json_valid(const uint8_t *p, size_t len)
{
    scan_t sc = {p, p + len};
    if (scan_value(&sc, 0) < 0)
        return 0;
    skip_ws(&sc);
    return sc.s == sc.end;
}

int weft_exec_json_compact(weft_frame_buf_t *b, const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            i++;
            continue;
        }
        if (c != '"') {
            size_t j = i;
            while (j < len && p[j] != '"' && p[j] != ' ' && p[j] != '\t' && p[j] != '\n' &&
                   p[j] != '\r')
                j++;
            if (weft_exec_buf_put(b, p + i, j - i) < 0)
                return -1;
            i = j;
            continue;
        }
        /* A string (the input is valid): copy through the closing quote. */
        size_t j = i + 1;
        while (j < len && p[j] != '"')
            j += p[j] == '\\' ? 2 : 1;
        if (j < len)
            j++;
        if (weft_exec_buf_put(b, p + i, j - i) < 0)
            return -1;
        i = j;
    }
    return 0;
}

int weft_exec_json_string(weft_frame_buf_t *b, const void *str, size_t len)
{
    const uint8_t *s = str;
    if (weft_exec_buf_put(b, "\"", 1) < 0)
        return -1;
    size_t run = 0, i = 0;
    while (i < len) {
        uint8_t c = s[i];
        char esc[8];
        const char *e = NULL;
        size_t n = 1;
        if (c == '"')
            e = "\\\"";
        else if (c == '\\')
            e = "\\\\";
        else if (c == '\n')
            e = "\\n";
        else if (c == '\r')
            e = "\\r";
        else if (c == '\t')
            e = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            e = esc;
        } else if (c >= 0x80) {
            n = utf8_seq(s + i, len - i);
            if (!n) {
                e = "\\ufffd";
                n = 1;
            }
        }
        if (e) {
            if (weft_exec_buf_put(b, s + i - run, run) < 0 || weft_exec_buf_puts(b, e) < 0)
                return -1;
            run = 0;
            i += n;
            continue;
        }
        run += n;
        i += n;
    }
    if (weft_exec_buf_put(b, s + len - run, run) < 0)
        return -1;
    return weft_exec_buf_put(b, "\"", 1);
}

int weft_exec_json_content_type(const char *ct)
{
    if (!ct)
        return 0;
    while (*ct == ' ')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n && ct[n - 1] == ' ')
        n--;
    if ((n == 16 && strncasecmp(ct, "application/json", 16) == 0) ||
        (n == 9 && strncasecmp(ct, "text/json", 9) == 0))
        return 1;
    return n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0 && memchr(ct, '/', n) != NULL;
}

/* ---- base64 and time ------------------------------------------------------ */

static const char b64tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *weft_exec_base64(const uint8_t *p, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    char *o = out;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = b64tbl[v >> 18];
        *o++ = b64tbl[(v >> 12) & 63];
        *o++ = b64tbl[(v >> 6) & 63];
        *o++ = b64tbl[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < len ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = b64tbl[v >> 18];
        *o++ = b64tbl[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64tbl[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

static int b64val(uint8_t c)
{
    const char *q = c ? strchr(b64tbl, c) : NULL;
    return q ? (int)(q - b64tbl) : -1;
}

/* Decodes standard base64, padding optional. NULL when malformed. */
static uint8_t *base64_decode(const uint8_t *s, size_t len, size_t *out_len)
{
    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return NULL;
    uint8_t *out = malloc(len / 4 * 3 + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    *out_len = o;
    return out;
}

char *weft_exec_rfc3339(int64_t seconds, int32_t nanos)
{
    char *out = malloc(48);
    if (!out)
        return NULL;
    struct tm tm;
    time_t secs = (time_t)seconds;
    if (!gmtime_r(&secs, &tm)) {
        out[0] = '\0';
        return out;
    }
    int n = snprintf(out, 48, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (nanos > 0 && nanos < 1000000000) {
        if (nanos % 1000000 == 0)
            n += snprintf(out + n, 48 - (size_t)n, ".%03d", (int)(nanos / 1000000));
        else if (nanos % 1000 == 0)
            n += snprintf(out + n, 48 - (size_t)n, ".%06d", (int)(nanos / 1000));
        else
            n += snprintf(out + n, 48 - (size_t)n, ".%09d", (int)nanos);
    }
    snprintf(out + n, 48 - (size_t)n, "Z");
    return out;
}

/* ---- requests ------------------------------------------------------------- */

typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue attr_value_t;

/* Appends an attribute value in the CloudEvents JSON format: Boolean and
 * Integer as JSON literals, Binary as base64, Timestamp as RFC 3339, the
 * rest as strings. */
static int put_attr_value(weft_frame_buf_t *b, const attr_value_t *v)
{
    if (!v)
        return weft_exec_buf_puts(b, "\"\"");
    const char *s = NULL;
    char *tmp = NULL;
    switch (v->attr_case) {
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN:
        return weft_exec_buf_puts(b, v->ce_boolean ? "true" : "false");
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER:
        return weft_exec_buf_printf(b, "%" PRId32, v->ce_integer);
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING:
        s = v->ce_string;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI:
        s = v->ce_uri;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF:
        s = v->ce_uri_ref;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES:
        s = tmp = weft_exec_base64(v->ce_bytes.data, v->ce_bytes.len);
        if (!tmp)
            return -1;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP:
        if (v->ce_timestamp) {
            s = tmp = weft_exec_rfc3339(v->ce_timestamp->seconds, v->ce_timestamp->nanos);
            if (!tmp)
                return -1;
        }
        break;
    default:
        break;
    }
    if (!s)
        s = "";
    int rc = weft_exec_json_string(b, s, strlen(s));
    free(tmp);
    return rc;
}

static int put_member(weft_frame_buf_t *b, const char *name, const char *val)
{
    if (weft_exec_buf_puts(b, ",") < 0 || weft_exec_json_string(b, name, strlen(name)) < 0 ||
        weft_exec_buf_puts(b, ":") < 0)
        return -1;
    return weft_exec_json_string(b, val ? val : "", val ? strlen(val) : 0);
}

static int reserved_name(const char *k)
{
    static const char *const names[] = {"specversion", "id",          "source", "type",
                                        "data",        "data_base64", "event"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(k, names[i]) == 0)
            return 1;
    return 0;
}

static const char *attr_plain(const attr_value_t *v)
{
    if (!v)
        return NULL;
    switch (v->attr_case) {
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING:
        return v->ce_string;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI:
        return v->ce_uri;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF:
        return v->ce_uri_ref;
    default:
        return NULL;
    }
}

/* The data member. JSON data (declared JSON, or no content type at all)
 * that really is JSON is embedded as is, compacted; text that is not JSON
 * becomes a string; every other byte sequence is base64 in data_base64, as
 * the CloudEvents JSON format prescribes. */
static int put_data(weft_frame_buf_t *b, const Io__Cloudevents__V1__CloudEvent *ce, const char *ct)
{
    const uint8_t *p = NULL;
    size_t len = 0;
    int text = 0;
    switch (ce->data_case) {
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA:
        p = ce->binary_data.data;
        len = ce->binary_data.len;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA:
        p = (const uint8_t *)(ce->text_data ? ce->text_data : "");
        len = strlen((const char *)p);
        text = 1;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_PROTO_DATA:
        if (ce->proto_data) {
            p = ce->proto_data->value.data;
            len = ce->proto_data->value.len;
        }
        break;
    default:
        break;
    }
    if (!p || len == 0)
        return 0;
    int json_ct = !ct || !*ct || weft_exec_json_content_type(ct);
    if (json_ct && weft_exec_json_valid(p, len)) {
        if (weft_exec_buf_puts(b, ",\"data\":") < 0)
            return -1;
        return weft_exec_json_compact(b, p, len);
    }
    if (text) {
        if (weft_exec_buf_puts(b, ",\"data\":") < 0)
            return -1;
        return weft_exec_json_string(b, p, len);
    }
    char *b64 = weft_exec_base64(p, len);
    if (!b64)
        return -1;
    int rc = weft_exec_buf_puts(b, ",\"data_base64\":\"") < 0 || weft_exec_buf_puts(b, b64) < 0 ||
                     weft_exec_buf_puts(b, "\"") < 0
                 ? -1
                 : 0;
    free(b64);
    return rc;
}

int weft_exec_request(const Weft__V1__Invoke *inv, weft_frame_buf_t *b)
{
    const Io__Cloudevents__V1__CloudEvent *ce = inv->event;
    const char *sv = ce && ce->spec_version && *ce->spec_version ? ce->spec_version : "1.0";
    if (weft_exec_buf_puts(b, "{\"event\":{\"specversion\":") < 0 ||
        weft_exec_json_string(b, sv, strlen(sv)) < 0)
        return -1;
    const char *ct = NULL;
    if (ce) {
        if (put_member(b, "id", ce->id) < 0 || put_member(b, "source", ce->source) < 0 ||
            put_member(b, "type", ce->type) < 0)
            return -1;
        for (size_t i = 0; i < ce->n_attributes; i++) {
            const Io__Cloudevents__V1__CloudEvent__AttributesEntry *e = ce->attributes[i];
            if (!e || !e->key || !*e->key || reserved_name(e->key))
                continue;
            if (strcmp(e->key, "datacontenttype") == 0)
                ct = attr_plain(e->value);
            if (weft_exec_buf_puts(b, ",") < 0 ||
                weft_exec_json_string(b, e->key, strlen(e->key)) < 0 ||
                weft_exec_buf_puts(b, ":") < 0 || put_attr_value(b, e->value) < 0)
                return -1;
        }
        if (put_data(b, ce, ct) < 0)
            return -1;
    }
    if (weft_exec_buf_puts(b, "},\"trigger\":") < 0)
        return -1;
    const char *trig = inv->trigger ? inv->trigger : "";
    if (weft_exec_json_string(b, trig, strlen(trig)) < 0)
        return -1;
    return weft_exec_buf_printf(b, ",\"attempt\":%" PRIu32 ",\"deadline_ms\":%" PRIu32 "}",
                                inv->attempt, inv->deadline_ms);
}

/* ---- replies -------------------------------------------------------------- */

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return c - 'A' + 10;
}

static uint32_t hex4(const uint8_t *p)
{
    return (uint32_t)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
}

/* Decodes a scanned (valid) JSON string [p, p+len) including its quotes.
 * malloc()ed and NUL-terminated; NULL on a lone surrogate or ENOMEM. */
static char *unescape(const uint8_t *p, size_t len, size_t *out_len)
{
    const uint8_t *s = p + 1, *end = p + len - 1;
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    while (s < end) {
        if (*s != '\\') {
            *o++ = (char)*s++;
            continue;
        }
        uint8_t e = s[1];
        s += 2;
        switch (e) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            uint32_t cp = hex4(s);
            s += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || !is_hex(s[2]) || !is_hex(s[3]) ||
                    !is_hex(s[4]) || !is_hex(s[5])) {
                    free(out);
                    return NULL;
                }
                uint32_t lo = hex4(s + 2);
                if (lo < 0xdc00 || lo > 0xdfff) {
                    free(out);
                    return NULL;
                }
                s += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                free(out);
                return NULL;
            }
            if (cp < 0x80) {
                *o++ = (char)cp;
            } else if (cp < 0x800) {
                *o++ = (char)(0xc0 | (cp >> 6));
                *o++ = (char)(0x80 | (cp & 0x3f));
            } else if (cp < 0x10000) {
                *o++ = (char)(0xe0 | (cp >> 12));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char)(0x80 | (cp & 0x3f));
            } else {
                *o++ = (char)(0xf0 | (cp >> 18));
                *o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
                *o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
                *o++ = (char)(0x80 | (cp & 0x3f));
            }
            break;
        }
        default: /* " \ / */
            *o++ = (char)e;
            break;
        }
    }
    *o = '\0';
    *out_len = (size_t)(o - out);
    return out;
}

typedef struct span {
    const uint8_t *p;
    size_t len;
} span_t;

static int span_string(span_t v, char *out, size_t cap, const char *name, char *errstr,
                       size_t errlen)
{
    if (!v.p)
        return 0;
    if (v.p[0] != '"') {
        snprintf(errstr, errlen, "reply member %s is not a string", name);
        return -1;
    }
    size_t n;
    char *s = unescape(v.p, v.len, &n);
    if (!s) {
        snprintf(errstr, errlen, "reply member %s is not a valid string", name);
        return -1;
    }
    snprintf(out, cap, "%s", s);
    free(s);
    return 0;
}

int weft_exec_reply_parse(const uint8_t *p, size_t len, weft_result_t *res, char *errstr,
                          size_t errlen)
{
    if (!weft_exec_json_valid(p, len)) {
        snprintf(errstr, errlen, "reply is not valid JSON");
        return -1;
    }
    scan_t sc = {p, p + len};
    skip_ws(&sc);
    if (*sc.s != '{') {
        snprintf(errstr, errlen, "reply is not a JSON object");
        return -1;
    }
    sc.s++;
    span_t disp = {0}, ct = {0}, data = {0}, b64 = {0}, error = {0}, retry = {0};
    skip_ws(&sc);
    if (*sc.s != '}') {
        for (;;) {
            skip_ws(&sc);
            const uint8_t *k = sc.s;
            scan_string(&sc);
            size_t klen = (size_t)(sc.s - k) - 2;
            skip_ws(&sc);
            sc.s++; /* ':' (validated) */
            skip_ws(&sc);
            span_t v = {sc.s, 0};
            scan_value(&sc, 1);
            v.len = (size_t)(sc.s - v.p);
            /* Member names weft knows have no escapes; others are ignored
             * (forward compatibility), so a raw comparison is enough. */
            struct {
                const char *name;
                span_t *dst;
            } known[] = {{"disposition", &disp}, {"datacontenttype", &ct},
                         {"data", &data},        {"data_base64", &b64},
                         {"error", &error},      {"retry_after_ms", &retry}};
            for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
                if (strlen(known[i].name) == klen && memcmp(k + 1, known[i].name, klen) == 0) {
                    if (known[i].dst->p) {
                        snprintf(errstr, errlen, "reply member %s appears twice", known[i].name);
                        return -1;
                    }
                    *known[i].dst = v;
                }
            }
            skip_ws(&sc);
            if (*sc.s == ',') {
                sc.s++;
                continue;
            }
            break;
        }
    }

    char d[16] = "ok";
    if (span_string(disp, d, sizeof(d), "disposition", errstr, errlen) < 0 ||
        span_string(ct, res->content_type, sizeof(res->content_type), "datacontenttype", errstr,
                    errlen) < 0 ||
        span_string(error, res->error, sizeof(res->error), "error", errstr, errlen) < 0)
        return -1;
    int disposition;
    if (strcmp(d, "ok") == 0)
        disposition = WEFT_OK;
    else if (strcmp(d, "retry") == 0)
        disposition = WEFT_RETRY;
    else if (strcmp(d, "fail") == 0)
        disposition = WEFT_FAIL;
    else if (strcmp(d, "drop") == 0)
        disposition = WEFT_DROP;
    else {
        snprintf(errstr, errlen, "unknown disposition \"%.20s\" (ok, retry, fail, drop)", d);
        return -1;
    }
    if (retry.p) {
        uint64_t v = 0;
        for (size_t i = 0; i < retry.len; i++) {
            if (retry.p[i] < '0' || retry.p[i] > '9' || v > UINT32_MAX) {
                snprintf(errstr, errlen, "reply member retry_after_ms is not a number of ms");
                return -1;
            }
            v = v * 10 + (uint64_t)(retry.p[i] - '0');
        }
        if (v > UINT32_MAX) {
            snprintf(errstr, errlen, "reply member retry_after_ms is out of range");
            return -1;
        }
        res->retry_after_ms = (uint32_t)v;
    }
    if (data.p && data.len == 4 && memcmp(data.p, "null", 4) == 0)
        data.p = NULL; /* "data": null is no data */
    if (data.p && b64.p) {
        snprintf(errstr, errlen, "reply has both data and data_base64");
        return -1;
    }
    if (b64.p) {
        if (b64.p[0] != '"') {
            snprintf(errstr, errlen, "reply member data_base64 is not a string");
            return -1;
        }
        size_t n;
        uint8_t *bytes = base64_decode(b64.p + 1, b64.len - 2, &n);
        if (!bytes) {
            snprintf(errstr, errlen, "reply member data_base64 is not valid base64");
            return -1;
        }
        res->data = bytes;
        res->data_len = n;
        if (!ct.p)
            snprintf(res->content_type, sizeof(res->content_type), "application/octet-stream");
    } else if (data.p) {
        int as_text = data.p[0] == '"' && ct.p && !weft_exec_json_content_type(res->content_type);
        if (as_text) {
            size_t n;
            char *s = unescape(data.p, data.len, &n);
            if (!s) {
                snprintf(errstr, errlen, "reply member data is not a valid string");
                return -1;
            }
            res->data = s;
            res->data_len = n;
        } else {
            weft_frame_buf_t out = {0};
            if (weft_exec_json_compact(&out, data.p, data.len) < 0) {
                weft_frame_buf_free(&out);
                snprintf(errstr, errlen, "out of memory");
                return -1;
            }
            res->data = out.data;
            res->data_len = out.len;
            if (!ct.p)
                snprintf(res->content_type, sizeof(res->content_type), "application/json");
        }
    }
    return disposition;
}
