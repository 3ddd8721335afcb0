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

#include "base64.h"
#include "ce_attr.h"
#include "json.h"
#include "utf8.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- JSON text ----------------------------------------------------------- */

int weft_exec_json_compact(weft_buf_t *b, const uint8_t *p, size_t len)
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
            if (weft_buf_append(b, p + i, j - i) < 0)
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
        if (weft_buf_append(b, p + i, j - i) < 0)
            return -1;
        i = j;
    }
    return 0;
}

int weft_exec_json_string(weft_buf_t *b, const void *str, size_t len)
{
    const uint8_t *s = str;
    if (weft_buf_append(b, "\"", 1) < 0)
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
            n = weft_utf8_seq(s + i, len - i);
            if (!n) {
                e = "\\ufffd";
                n = 1;
            }
        }
        if (e) {
            if (weft_buf_append(b, s + i - run, run) < 0 || weft_buf_puts(b, e) < 0)
                return -1;
            run = 0;
            i += n;
            continue;
        }
        run += n;
        i += n;
    }
    if (weft_buf_append(b, s + len - run, run) < 0)
        return -1;
    return weft_buf_append(b, "\"", 1);
}

/* ---- requests ------------------------------------------------------------- */

typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue attr_value_t;

/* Appends an attribute value in the CloudEvents JSON format: Boolean and
 * Integer as JSON literals, everything else as a JSON string; the text is
 * weft_ce_attr_text's, the one a trigger filter matches (Binary as base64,
 * Timestamp as RFC 3339 with its fraction). No text: "". */
static int put_attr_value(weft_buf_t *b, const attr_value_t *v)
{
    const char *s;
    char *owned;
    int rc = weft_ce_attr_text(v, &s, &owned);
    if (rc < 0)
        return -1;
    if (rc == 0)
        return weft_buf_puts(b, "\"\"");
    if (v->attr_case ==
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN ||
        v->attr_case ==
            IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER)
        rc = weft_buf_puts(b, s);
    else
        rc = weft_exec_json_string(b, s, strlen(s));
    free(owned);
    return rc;
}

static int put_member(weft_buf_t *b, const char *name, const char *val)
{
    if (weft_buf_puts(b, ",") < 0 || weft_exec_json_string(b, name, strlen(name)) < 0 ||
        weft_buf_puts(b, ":") < 0)
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
static int put_data(weft_buf_t *b, const Io__Cloudevents__V1__CloudEvent *ce, const char *ct)
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
    int json_ct = !ct || !*ct || weft_json_content_type(ct);
    if (json_ct && weft_json_valid(p, len)) {
        if (weft_buf_puts(b, ",\"data\":") < 0)
            return -1;
        return weft_exec_json_compact(b, p, len);
    }
    if (text) {
        if (weft_buf_puts(b, ",\"data\":") < 0)
            return -1;
        return weft_exec_json_string(b, p, len);
    }
    char *b64 = weft_base64_encode(p, len);
    if (!b64)
        return -1;
    int rc = weft_buf_puts(b, ",\"data_base64\":\"") < 0 || weft_buf_puts(b, b64) < 0 ||
                     weft_buf_puts(b, "\"") < 0
                 ? -1
                 : 0;
    free(b64);
    return rc;
}

int weft_exec_request(const Weft__V1__Invoke *inv, weft_buf_t *b)
{
    const Io__Cloudevents__V1__CloudEvent *ce = inv->event;
    const char *sv = ce && ce->spec_version && *ce->spec_version ? ce->spec_version : "1.0";
    if (weft_buf_puts(b, "{\"event\":{\"specversion\":") < 0 ||
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
            if (weft_buf_puts(b, ",") < 0 || weft_exec_json_string(b, e->key, strlen(e->key)) < 0 ||
                weft_buf_puts(b, ":") < 0 || put_attr_value(b, e->value) < 0)
                return -1;
        }
        if (put_data(b, ce, ct) < 0)
            return -1;
    }
    if (weft_buf_puts(b, "},\"trigger\":") < 0)
        return -1;
    const char *trig = inv->trigger ? inv->trigger : "";
    if (weft_exec_json_string(b, trig, strlen(trig)) < 0)
        return -1;
    return weft_buf_printf(b, ",\"attempt\":%" PRIu32 ",\"deadline_ms\":%" PRIu32 "}", inv->attempt,
                           inv->deadline_ms);
}

/* ---- replies -------------------------------------------------------------- */

typedef weft_json_val_t span_t;

static int span_string(span_t v, char *out, size_t cap, const char *name, char *errstr,
                       size_t errlen)
{
    if (!v.p)
        return 0;
    if (v.type != WEFT_JSON_STRING) {
        snprintf(errstr, errlen, "reply member %s is not a string", name);
        return -1;
    }
    size_t n;
    char *s = weft_json_unescape(&v, &n);
    if (!s) {
        snprintf(errstr, errlen, "reply member %s is not a valid string", name);
        return -1;
    }
    snprintf(out, cap, "%s", s);
    free(s);
    return 0;
}

/* The members of a reply weft knows; others are ignored (forward
 * compatibility). */
typedef struct reply_members {
    span_t disp, ct, data, b64, error, retry;
    char err[96];
} reply_members_t;

static int reply_member(const char *key, const weft_json_val_t *val, void *opaque)
{
    reply_members_t *rm = opaque;
    struct {
        const char *name;
        span_t *dst;
    } known[] = {{"disposition", &rm->disp}, {"datacontenttype", &rm->ct},
                 {"data", &rm->data},        {"data_base64", &rm->b64},
                 {"error", &rm->error},      {"retry_after_ms", &rm->retry}};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strcmp(key, known[i].name) != 0)
            continue;
        if (known[i].dst->p) {
            snprintf(rm->err, sizeof(rm->err), "reply member %s appears twice", key);
            return 1;
        }
        *known[i].dst = *val;
    }
    return 0;
}

int weft_exec_reply_parse(const uint8_t *p, size_t len, weft_result_t *res, char *errstr,
                          size_t errlen)
{
    reply_members_t rm;
    memset(&rm, 0, sizeof(rm));
    char jerr[128];
    if (!weft_json_valid(p, len)) {
        snprintf(errstr, errlen, "reply is not valid JSON");
        return -1;
    }
    int rc = weft_json_object_each((const char *)p, len, reply_member, &rm, jerr, sizeof(jerr));
    if (rc < 0) {
        snprintf(errstr, errlen, "reply is not a JSON object");
        return -1;
    }
    if (rc > 0) {
        snprintf(errstr, errlen, "%s", rm.err);
        return -1;
    }
    span_t disp = rm.disp, ct = rm.ct, data = rm.data, b64 = rm.b64, error = rm.error,
           retry = rm.retry;

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
        uint8_t *bytes = weft_base64_decode(b64.p + 1, b64.len - 2, &n);
        if (!bytes) {
            snprintf(errstr, errlen, "reply member data_base64 is not valid base64");
            return -1;
        }
        res->data = bytes;
        res->data_len = n;
        if (!ct.p)
            snprintf(res->content_type, sizeof(res->content_type), "application/octet-stream");
    } else if (data.p) {
        int as_text = data.p[0] == '"' && ct.p && !weft_json_content_type(res->content_type);
        if (as_text) {
            size_t n;
            char *s = weft_json_unescape_bytes(&data, &n);
            if (!s) {
                snprintf(errstr, errlen, "reply member data is not a valid string");
                return -1;
            }
            res->data = s;
            res->data_len = n;
        } else {
            weft_buf_t out = {0};
            if (weft_exec_json_compact(&out, (const uint8_t *)data.p, data.len) < 0) {
                weft_buf_free(&out);
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
