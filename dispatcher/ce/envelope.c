/*
 * envelope.c - CloudEvents decoding (see envelope.h).
 *
 * Runs on the dispatcher's loop thread, on untrusted bytes. Invariants:
 * never read outside the given buffers; every failure is a status plus a
 * reason for the dead letter, never an abort; a message is either plain
 * (no ce_ headers, not a cloudevents content type) or must carry the
 * required attributes id, source, specversion 1.0 and type.
 */
#include "envelope.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ce_attr.h"
#include "json.h"
#include "nats_headers.h"
#include "wire.h"

typedef Io__Cloudevents__V1__CloudEvent ce_t;
typedef Io__Cloudevents__V1__CloudEvent__AttributesEntry ce_entry_t;
typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue ce_value_t;

struct weft_arena {
    struct weft_arena *next;
    size_t used, cap;
    max_align_t data[];
};

#define ARENA_CHUNK (512 - sizeof(weft_arena_t))

static void *arena_alloc(weft_arena_t **ap, size_t n)
{
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    weft_arena_t *a = *ap;
    if (!a || a->cap - a->used < n) {
        /* 512-byte chunks: the bench's binary events (five ce_ headers)
         * take 384 bytes. A 4 KiB chunk per event had jemalloc fault in
         * fresh pages under load (~7% of the loop thread's samples at
         * 22,000 events/s). */
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        weft_arena_t *na = malloc(sizeof(*na) + cap);
        if (!na)
            return NULL;
        na->next = a;
        na->used = 0;
        na->cap = cap;
        *ap = a = na;
    }
    void *p = (char *)a->data + a->used;
    a->used += n;
    return p;
}

static char *arena_strndup(weft_arena_t **ap, const void *s, size_t n)
{
    char *p = arena_alloc(ap, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Adds or replaces a string attribute in env->own. */
static int own_set_attr(weft_envelope_t *env, const char *name, const char *value)
{
    ce_t *ce = &env->own;
    for (size_t i = 0; i < ce->n_attributes; i++) {
        if (strcmp(ce->attributes[i]->key, name) == 0) {
            ce->attributes[i]->value->ce_string = (char *)value;
            return 0;
        }
    }
    if (ce->n_attributes == env->attrs_cap) {
        size_t ncap = env->attrs_cap ? env->attrs_cap * 2 : 8;
        ce_entry_t **nv = arena_alloc(&env->arena, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        if (ce->n_attributes)
            memcpy(nv, ce->attributes, ce->n_attributes * sizeof(*nv));
        ce->attributes = nv;
        env->attrs_cap = ncap;
    }
    ce_entry_t *e = arena_alloc(&env->arena, sizeof(*e));
    ce_value_t *v = arena_alloc(&env->arena, sizeof(*v));
    char *k = arena_strndup(&env->arena, name, strlen(name));
    if (!e || !v || !k)
        return -1;
    io__cloudevents__v1__cloud_event__attributes_entry__init(e);
    io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(v);
    v->attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    v->ce_string = (char *)value;
    e->key = k;
    e->value = v;
    ce->attributes[ce->n_attributes++] = e;
    return 0;
}

/* Sets one context attribute by name on env->own: required ones to their
 * fields, everything else into the attributes map. */
static int own_set(weft_envelope_t *env, const char *name, const char *value)
{
    if (strcmp(name, "id") == 0)
        env->own.id = (char *)value;
    else if (strcmp(name, "source") == 0)
        env->own.source = (char *)value;
    else if (strcmp(name, "specversion") == 0)
        env->own.spec_version = (char *)value;
    else if (strcmp(name, "type") == 0)
        env->own.type = (char *)value;
    else
        return own_set_attr(env, name, value);
    return 0;
}

static int header_is(const weft_header_t *h, const char *name)
{
    return strcasecmp(h->name, name) == 0;
}

static const weft_header_t *find_header(const weft_header_t *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (header_is(&h[i], name))
            return &h[i];
    return NULL;
}

static int check_required(weft_envelope_t *env, char *errstr, size_t errlen)
{
    ce_t *ce = env->ce;
    if (!ce->spec_version || strcmp(ce->spec_version, "1.0") != 0) {
        snprintf(errstr, errlen, "specversion must be \"1.0\", got \"%s\"",
                 ce->spec_version ? ce->spec_version : "");
        return -1;
    }
    if (!ce->id || !*ce->id) {
        snprintf(errstr, errlen, "required attribute id is missing");
        return -1;
    }
    if (!ce->source || !*ce->source) {
        snprintf(errstr, errlen, "required attribute source is missing");
        return -1;
    }
    if (!ce->type || !*ce->type) {
        snprintf(errstr, errlen, "required attribute type is missing");
        return -1;
    }
    /* Attribute values are Unicode strings; they become idempotency keys
     * and database text. */
    const char *req[4] = {ce->id, ce->source, ce->spec_version, ce->type};
    static const char *const req_names[4] = {"id", "source", "specversion", "type"};
    for (int i = 0; i < 4; i++) {
        if (!weft_utf8_valid(req[i], strlen(req[i]))) {
            snprintf(errstr, errlen, "attribute %s is not valid UTF-8", req_names[i]);
            return -1;
        }
    }
    for (size_t i = 0; i < ce->n_attributes; i++) {
        const char *v = weft_envelope_attr(env, ce->attributes[i]->key);
        if (v && !weft_utf8_valid(v, strlen(v))) {
            snprintf(errstr, errlen, "attribute %s is not valid UTF-8", ce->attributes[i]->key);
            return -1;
        }
    }
    return 0;
}

static int has_nul(const void *p, size_t n)
{
    return memchr(p, '\0', n) != NULL;
}

static weft_env_status_t decode_binary(weft_envelope_t *env, weft_binding_t binding,
                                       const weft_header_t *hdrs, size_t n_hdrs, const void *value,
                                       size_t len, char *errstr, size_t errlen)
{
    env->mode = WEFT_ENV_BINARY;
    const char *prefix = binding == WEFT_BINDING_NATS ? WEFT_CE_NATS_PREFIX : WEFT_CE_KAFKA_PREFIX;
    for (size_t i = 0; i < n_hdrs; i++) {
        const weft_header_t *h = &hdrs[i];
        const char *attr = NULL;
        if (strncasecmp(h->name, prefix, WEFT_CE_PREFIX_LEN) == 0)
            attr = h->name + WEFT_CE_PREFIX_LEN;
        else if (header_is(h, WEFT_CE_CONTENT_TYPE))
            attr = "datacontenttype";
        else
            continue;
        if (!weft_ce_attr_name_valid(attr, strlen(attr))) {
            snprintf(errstr, errlen, "invalid attribute name in header \"%s\"", h->name);
            return WEFT_ENV_MALFORMED;
        }
        if (!h->value || has_nul(h->value, h->len)) {
            snprintf(errstr, errlen, "header \"%s\" has no value or holds a NUL byte", h->name);
            return WEFT_ENV_MALFORMED;
        }
        char *v;
        /* ce- values are percent-encoded on NATS; Content-Type is not. */
        if (binding == WEFT_BINDING_NATS && !header_is(h, WEFT_CE_CONTENT_TYPE)) {
            size_t dl;
            char *dec = weft_nats_pct_decode(h->value, h->len, &dl);
            if (!dec) {
                snprintf(errstr, errlen, "header \"%s\" is not validly percent-encoded", h->name);
                return WEFT_ENV_MALFORMED;
            }
            v = arena_strndup(&env->arena, dec, dl);
            free(dec);
        } else {
            v = arena_strndup(&env->arena, h->value, h->len);
        }
        if (!v || own_set(env, attr, v) != 0) {
            snprintf(errstr, errlen, "out of memory");
            return WEFT_ENV_MALFORMED;
        }
    }
    env->own.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    env->own.binary_data.data = (uint8_t *)value;
    env->own.binary_data.len = len;
    return check_required(env, errstr, errlen) == 0 ? WEFT_ENV_OK : WEFT_ENV_MALFORMED;
}

typedef struct json_ctx {
    weft_envelope_t *env;
    weft_json_val_t data;
    int has_data, has_data_b64;
    weft_json_val_t data_b64;
    char err[256];
} json_ctx_t;

static int json_member(const char *key, const weft_json_val_t *val, void *opaque)
{
    json_ctx_t *jc = opaque;
    weft_envelope_t *env = jc->env;
    if (strcmp(key, "data") == 0) {
        jc->data = *val;
        jc->has_data = 1;
        return 0;
    }
    if (strcmp(key, "data_base64") == 0) {
        jc->data_b64 = *val;
        jc->has_data_b64 = 1;
        return 0;
    }
    if (!weft_ce_attr_name_valid(key, strlen(key))) {
        snprintf(jc->err, sizeof(jc->err), "invalid attribute name \"%s\"", key);
        return 1;
    }
    char *v;
    switch (val->type) {
    case WEFT_JSON_STRING: {
        size_t n;
        char *tmp = weft_json_unescape(val, &n);
        if (!tmp) {
            snprintf(jc->err, sizeof(jc->err), "attribute \"%s\" is not a valid string", key);
            return 1;
        }
        v = arena_strndup(&env->arena, tmp, n);
        free(tmp);
        break;
    }
    case WEFT_JSON_NUMBER:
    case WEFT_JSON_TRUE:
    case WEFT_JSON_FALSE:
        v = arena_strndup(&env->arena, val->p, val->len);
        break;
    case WEFT_JSON_NULL:
        return 0; /* an absent attribute */
    default:
        snprintf(jc->err, sizeof(jc->err), "attribute \"%s\" must be a string, number or boolean",
                 key);
        return 1;
    }
    if (!v || own_set(env, key, v) != 0) {
        snprintf(jc->err, sizeof(jc->err), "out of memory");
        return 1;
    }
    return 0;
}

static weft_env_status_t decode_json(weft_envelope_t *env, const void *value, size_t len,
                                     char *errstr, size_t errlen)
{
    env->mode = WEFT_ENV_JSON;
    json_ctx_t jc;
    memset(&jc, 0, sizeof(jc));
    jc.env = env;
    char err[256];
    int rc = weft_json_object_each(value, len, json_member, &jc, err, sizeof(err));
    if (rc < 0) {
        snprintf(errstr, errlen, "structured event: %s", err);
        return WEFT_ENV_MALFORMED;
    }
    if (rc > 0) {
        snprintf(errstr, errlen, "structured event: %s", jc.err);
        return WEFT_ENV_MALFORMED;
    }
    if (jc.has_data && jc.has_data_b64) {
        snprintf(errstr, errlen, "structured event has both data and data_base64");
        return WEFT_ENV_MALFORMED;
    }
    if (check_required(env, errstr, errlen) != 0)
        return WEFT_ENV_MALFORMED;
    const char *ct = weft_envelope_attr(env, "datacontenttype");
    if (jc.has_data_b64) {
        if (jc.data_b64.type != WEFT_JSON_STRING) {
            snprintf(errstr, errlen, "data_base64 must be a string");
            return WEFT_ENV_MALFORMED;
        }
        size_t n = 0, tl;
        char *text = weft_json_unescape(&jc.data_b64, &tl);
        uint8_t *raw = text ? weft_base64_decode(text, tl, &n) : NULL;
        uint8_t *d = raw ? arena_alloc(&env->arena, n ? n : 1) : NULL;
        if (d)
            memcpy(d, raw, n);
        free(text);
        free(raw);
        if (!d) {
            snprintf(errstr, errlen, "data_base64 is not valid base64");
            return WEFT_ENV_MALFORMED;
        }
        env->own.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
        env->own.binary_data.data = d;
        env->own.binary_data.len = n;
    } else if (jc.has_data) {
        const void *d = jc.data.p;
        size_t n = jc.data.len;
        char *tmp = NULL;
        /* A string with a non-JSON content type carries the text itself. */
        if (jc.data.type == WEFT_JSON_STRING && ct && *ct && !weft_json_content_type(ct)) {
            tmp = weft_json_unescape(&jc.data, &n);
            if (!tmp) {
                snprintf(errstr, errlen, "data is not a valid JSON string");
                return WEFT_ENV_MALFORMED;
            }
            d = tmp;
        }
        uint8_t *copy = (uint8_t *)arena_strndup(&env->arena, d, n);
        free(tmp);
        if (!copy) {
            snprintf(errstr, errlen, "out of memory");
            return WEFT_ENV_MALFORMED;
        }
        env->own.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
        env->own.binary_data.data = copy;
        env->own.binary_data.len = n;
        if (!ct && own_set(env, "datacontenttype", "application/json") != 0) {
            snprintf(errstr, errlen, "out of memory");
            return WEFT_ENV_MALFORMED;
        }
    }
    return WEFT_ENV_OK;
}

static weft_env_status_t decode_protobuf(weft_envelope_t *env, const void *value, size_t len,
                                         char *errstr, size_t errlen)
{
    env->mode = WEFT_ENV_PROTOBUF;
    env->unpacked = io__cloudevents__v1__cloud_event__unpack(NULL, len, value);
    if (!env->unpacked) {
        snprintf(errstr, errlen, "structured event is not a valid io.cloudevents.v1.CloudEvent");
        return WEFT_ENV_MALFORMED;
    }
    env->ce = env->unpacked;
    for (size_t i = 0; i < env->ce->n_attributes; i++) {
        const char *k = env->ce->attributes[i]->key;
        if (!k || !weft_ce_attr_name_valid(k, strlen(k)) || !env->ce->attributes[i]->value) {
            snprintf(errstr, errlen, "invalid attribute in structured event");
            return WEFT_ENV_MALFORMED;
        }
    }
    return check_required(env, errstr, errlen) == 0 ? WEFT_ENV_OK : WEFT_ENV_MALFORMED;
}

weft_env_status_t weft_envelope_decode(weft_envelope_t *env, const weft_header_t *hdrs,
                                       size_t n_hdrs, const void *value, size_t len,
                                       const char *plain_id, const char *plain_source, char *errstr,
                                       size_t errlen)
{
    return weft_envelope_decode_binding(env, WEFT_BINDING_KAFKA, hdrs, n_hdrs, value, len, plain_id,
                                        plain_source, errstr, errlen);
}

weft_env_status_t weft_envelope_decode_binding(weft_envelope_t *env, weft_binding_t binding,
                                               const weft_header_t *hdrs, size_t n_hdrs,
                                               const void *value, size_t len, const char *plain_id,
                                               const char *plain_source, char *errstr,
                                               size_t errlen)
{
    memset(env, 0, sizeof(*env));
    io__cloudevents__v1__cloud_event__init(&env->own);
    env->ce = &env->own;
    if (!value)
        len = 0;

    const weft_header_t *ct = find_header(hdrs, n_hdrs, WEFT_CE_CONTENT_TYPE);
    char ctbuf[128] = "";
    if (ct && ct->value) {
        size_t n = ct->len < sizeof(ctbuf) - 1 ? ct->len : sizeof(ctbuf) - 1;
        memcpy(ctbuf, ct->value, n);
        ctbuf[n] = '\0';
    }
    if (strncasecmp(ctbuf, "application/cloudevents-batch", 29) == 0) {
        snprintf(errstr, errlen, "batched CloudEvents (%s) are not supported", ctbuf);
        return WEFT_ENV_UNSUPPORTED;
    }
    if (strncasecmp(ctbuf, "application/cloudevents+json", 28) == 0)
        return decode_json(env, value, len, errstr, errlen);
    if (strncasecmp(ctbuf, "application/cloudevents+protobuf", 32) == 0)
        return decode_protobuf(env, value, len, errstr, errlen);
    if (strncasecmp(ctbuf, "application/cloudevents", 23) == 0) {
        snprintf(errstr, errlen, "unsupported CloudEvents format %s", ctbuf);
        return WEFT_ENV_UNSUPPORTED;
    }
    const char *prefix = binding == WEFT_BINDING_NATS ? WEFT_CE_NATS_PREFIX : WEFT_CE_KAFKA_PREFIX;
    for (size_t i = 0; i < n_hdrs; i++)
        if (strncasecmp(hdrs[i].name, prefix, WEFT_CE_PREFIX_LEN) == 0)
            return decode_binary(env, binding, hdrs, n_hdrs, value, len, errstr, errlen);

    /* Plain message: identity is its broker coordinates. */
    env->mode = WEFT_ENV_PLAIN;
    env->own.id = arena_strndup(&env->arena, plain_id, strlen(plain_id));
    env->own.source = arena_strndup(&env->arena, plain_source, strlen(plain_source));
    env->own.spec_version = "1.0";
    env->own.type = "";
    if (!env->own.id || !env->own.source) {
        snprintf(errstr, errlen, "out of memory");
        return WEFT_ENV_MALFORMED;
    }
    if (*ctbuf) {
        char *v = arena_strndup(&env->arena, ctbuf, strlen(ctbuf));
        if (!v || own_set_attr(env, "datacontenttype", v) != 0) {
            snprintf(errstr, errlen, "out of memory");
            return WEFT_ENV_MALFORMED;
        }
    }
    env->own.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    env->own.binary_data.data = (uint8_t *)value;
    env->own.binary_data.len = len;
    return WEFT_ENV_OK;
}

const char *weft_envelope_attr(weft_envelope_t *env, const char *name)
{
    ce_t *ce = env->ce;
    if (strcmp(name, "id") == 0)
        return ce->id;
    if (strcmp(name, "source") == 0)
        return ce->source;
    if (strcmp(name, "specversion") == 0)
        return ce->spec_version;
    if (strcmp(name, "type") == 0)
        return ce->type;
    for (size_t i = 0; i < ce->n_attributes; i++) {
        if (strcmp(ce->attributes[i]->key, name) != 0)
            continue;
        /* The text weft_ce_attr_text gives the exec protocol and the C ABI
         * too; formatted values are kept in the arena. */
        const char *text;
        char *owned;
        if (weft_ce_attr_text(ce->attributes[i]->value, &text, &owned) <= 0)
            return NULL;
        if (!owned)
            return text;
        char *kept = arena_strndup(&env->arena, owned, strlen(owned));
        free(owned);
        return kept;
    }
    return NULL;
}

const uint8_t *weft_envelope_data(const weft_envelope_t *env, size_t *len)
{
    const ce_t *ce = env->ce;
    if (ce->data_case == IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA) {
        *len = ce->binary_data.len;
        return ce->binary_data.data;
    }
    if (ce->data_case == IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_TEXT_DATA && ce->text_data) {
        *len = strlen(ce->text_data);
        return (const uint8_t *)ce->text_data;
    }
    *len = 0;
    return NULL;
}

void weft_envelope_free(weft_envelope_t *env)
{
    if (!env)
        return;
    if (env->unpacked)
        io__cloudevents__v1__cloud_event__free_unpacked(env->unpacked, NULL);
    weft_arena_t *a = env->arena;
    while (a) {
        weft_arena_t *next = a->next;
        free(a);
        a = next;
    }
    memset(env, 0, sizeof(*env));
}
