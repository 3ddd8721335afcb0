/*
 * json.c - a bounded, allocation-free JSON scanner (RFC 8259) and the
 * string escaping and unescaping weft needs. Used on untrusted bytes in the
 * dispatcher (event envelopes, dead-letter headers), the CLI and the
 * workers (exec replies): one codec, so they cannot disagree about what is
 * valid.
 *
 * Why a scanner and not a JSON library's tree: weft passes JSON values
 * through byte for byte (a structured event's data, a number attribute, an
 * exec reply's data, compacted only), so it needs each value's span in the
 * input, which jansson and json-c do not give; see workers/base/README.md.
 *
 * Invariant: the scanner never reads past the length it was given and
 * never recurses deeper than JSON_MAX_DEPTH, so hostile input costs at most
 * linear time and bounded stack.
 */
#include "json.h"
#include "utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define JSON_MAX_DEPTH 64

typedef struct scan {
    const char *s, *end;
    const char *err;
} scan_t;

static void skip_ws(scan_t *sc)
{
    while (sc->s < sc->end && (*sc->s == ' ' || *sc->s == '\t' || *sc->s == '\n' || *sc->s == '\r'))
        sc->s++;
}

int weft_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int scan_string(scan_t *sc)
{
    if (sc->s >= sc->end || *sc->s != '"') {
        sc->err = "expected string";
        return -1;
    }
    sc->s++;
    while (sc->s < sc->end) {
        unsigned char c = (unsigned char)*sc->s;
        if (c == '"') {
            sc->s++;
            return 0;
        }
        if (c < 0x20) {
            sc->err = "control character in string";
            return -1;
        }
        if (c == '\\') {
            sc->s++;
            if (sc->s >= sc->end)
                break;
            char e = *sc->s;
            if (e == 'u') {
                if (sc->end - sc->s < 5) {
                    sc->err = "truncated \\u escape";
                    return -1;
                }
                for (int i = 1; i <= 4; i++)
                    if (weft_hex_value(sc->s[i]) < 0) {
                        sc->err = "bad \\u escape";
                        return -1;
                    }
                sc->s += 4;
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                sc->err = "bad escape";
                return -1;
            }
        }
        sc->s++;
    }
    sc->err = "unterminated string";
    return -1;
}

static int scan_number(scan_t *sc)
{
    const char *start = sc->s;
    if (sc->s < sc->end && *sc->s == '-')
        sc->s++;
    if (sc->s >= sc->end) {
        sc->err = "bad number";
        return -1;
    }
    if (*sc->s == '0') {
        sc->s++;
    } else if (*sc->s >= '1' && *sc->s <= '9') {
        while (sc->s < sc->end && *sc->s >= '0' && *sc->s <= '9')
            sc->s++;
    } else {
        sc->err = "bad number";
        return -1;
    }
    if (sc->s < sc->end && *sc->s == '.') {
        sc->s++;
        const char *d = sc->s;
        while (sc->s < sc->end && *sc->s >= '0' && *sc->s <= '9')
            sc->s++;
        if (sc->s == d) {
            sc->err = "bad number";
            return -1;
        }
    }
    if (sc->s < sc->end && (*sc->s == 'e' || *sc->s == 'E')) {
        sc->s++;
        if (sc->s < sc->end && (*sc->s == '+' || *sc->s == '-'))
            sc->s++;
        const char *d = sc->s;
        while (sc->s < sc->end && *sc->s >= '0' && *sc->s <= '9')
            sc->s++;
        if (sc->s == d) {
            sc->err = "bad number";
            return -1;
        }
    }
    return sc->s > start ? 0 : -1;
}

static int scan_value(scan_t *sc, int depth, weft_json_val_t *out);

static int scan_literal(scan_t *sc, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(sc->end - sc->s) < n || memcmp(sc->s, lit, n) != 0) {
        sc->err = "unexpected token";
        return -1;
    }
    sc->s += n;
    return 0;
}

static int scan_container(scan_t *sc, int depth, char close)
{
    sc->s++; /* opening bracket */
    skip_ws(sc);
    if (sc->s < sc->end && *sc->s == close) {
        sc->s++;
        return 0;
    }
    for (;;) {
        skip_ws(sc);
        if (close == '}') {
            if (scan_string(sc) != 0)
                return -1;
            skip_ws(sc);
            if (sc->s >= sc->end || *sc->s != ':') {
                sc->err = "expected ':'";
                return -1;
            }
            sc->s++;
            skip_ws(sc);
        }
        if (scan_value(sc, depth + 1, NULL) != 0)
            return -1;
        skip_ws(sc);
        if (sc->s >= sc->end) {
            sc->err = "unterminated container";
            return -1;
        }
        if (*sc->s == ',') {
            sc->s++;
            continue;
        }
        if (*sc->s == close) {
            sc->s++;
            return 0;
        }
        sc->err = close == '}' ? "expected ',' or '}'" : "expected ',' or ']'";
        return -1;
    }
}

static int scan_value(scan_t *sc, int depth, weft_json_val_t *out)
{
    if (depth > JSON_MAX_DEPTH) {
        sc->err = "nesting too deep";
        return -1;
    }
    skip_ws(sc);
    if (sc->s >= sc->end) {
        sc->err = "unexpected end of input";
        return -1;
    }
    const char *start = sc->s;
    weft_json_type_t t;
    int rc;
    switch (*sc->s) {
    case '"':
        t = WEFT_JSON_STRING;
        rc = scan_string(sc);
        break;
    case '{':
        t = WEFT_JSON_OBJECT;
        rc = scan_container(sc, depth, '}');
        break;
    case '[':
        t = WEFT_JSON_ARRAY;
        rc = scan_container(sc, depth, ']');
        break;
    case 't':
        t = WEFT_JSON_TRUE;
        rc = scan_literal(sc, "true");
        break;
    case 'f':
        t = WEFT_JSON_FALSE;
        rc = scan_literal(sc, "false");
        break;
    case 'n':
        t = WEFT_JSON_NULL;
        rc = scan_literal(sc, "null");
        break;
    default:
        t = WEFT_JSON_NUMBER;
        rc = scan_number(sc);
        break;
    }
    if (rc != 0) {
        if (!sc->err)
            sc->err = "unexpected token";
        return -1;
    }
    if (out) {
        out->type = t;
        out->p = start;
        out->len = (size_t)(sc->s - start);
    }
    return 0;
}

int weft_json_validate(const char *s, size_t len, char *errstr, size_t errlen)
{
    scan_t sc = {s, s + len, NULL};
    if (scan_value(&sc, 0, NULL) != 0) {
        snprintf(errstr, errlen, "invalid JSON at byte %zu: %s", (size_t)(sc.s - s), sc.err);
        return -1;
    }
    skip_ws(&sc);
    if (sc.s != sc.end) {
        snprintf(errstr, errlen, "invalid JSON at byte %zu: trailing data", (size_t)(sc.s - s));
        return -1;
    }
    return 0;
}

int weft_json_valid(const void *s, size_t len)
{
    char err[8];
    return weft_utf8_valid(s, len) && weft_json_validate(s, len, err, sizeof(err)) == 0;
}

int weft_json_content_type(const char *ct)
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

/* Validates s and enters its top-level container (open: '{' or '['). 1
 * when the container is empty, 0 when *sc is at its first element, -1
 * with errstr. */
static int enter_container(scan_t *sc, const char *s, size_t len, char open, const char *what,
                           char *errstr, size_t errlen)
{
    if (weft_json_validate(s, len, errstr, errlen) != 0)
        return -1;
    *sc = (scan_t){s, s + len, NULL};
    skip_ws(sc);
    if (sc->s >= sc->end || *sc->s != open) {
        snprintf(errstr, errlen, "expected a JSON %s", what);
        return -1;
    }
    sc->s++;
    skip_ws(sc);
    return *sc->s == (open == '{' ? '}' : ']');
}

int weft_json_object_each(const char *s, size_t len, weft_json_member_fn fn, void *opaque,
                          char *errstr, size_t errlen)
{
    scan_t sc;
    int e = enter_container(&sc, s, len, '{', "object", errstr, errlen);
    if (e != 0)
        return e < 0 ? -1 : 0;
    for (;;) {
        skip_ws(&sc);
        weft_json_val_t k;
        k.type = WEFT_JSON_STRING;
        k.p = sc.s;
        scan_string(&sc);
        k.len = (size_t)(sc.s - k.p);
        skip_ws(&sc);
        sc.s++; /* ':' (validated above) */
        weft_json_val_t v;
        scan_value(&sc, 1, &v);
        size_t kl;
        char *key = weft_json_unescape(&k, &kl);
        if (!key) {
            snprintf(errstr, errlen, "invalid member name");
            return -1;
        }
        int rc = fn(key, &v, opaque);
        free(key);
        if (rc != 0)
            return rc;
        skip_ws(&sc);
        if (*sc.s == ',') {
            sc.s++;
            continue;
        }
        return 0; /* '}' */
    }
}

int weft_json_array_each(const char *s, size_t len, weft_json_element_fn fn, void *opaque,
                         char *errstr, size_t errlen)
{
    scan_t sc;
    int e = enter_container(&sc, s, len, '[', "array", errstr, errlen);
    if (e != 0)
        return e < 0 ? -1 : 0;
    for (;;) {
        weft_json_val_t v;
        scan_value(&sc, 1, &v); /* validated above */
        int rc = fn(&v, opaque);
        if (rc != 0)
            return rc;
        skip_ws(&sc);
        if (*sc.s != ',')
            return 0; /* ']' */
        sc.s++;
    }
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

static int read_hex4(const char *p, const char *end, uint32_t *out)
{
    if (end - p < 4)
        return -1;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = weft_hex_value(p[i]);
        if (h < 0)
            return -1;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return 0;
}

static char *unescape(const weft_json_val_t *val, size_t *out_len, int allow_nul)
{
    if (val->type != WEFT_JSON_STRING || val->len < 2)
        return NULL;
    const char *p = val->p + 1, *end = val->p + val->len - 1;
    char *out = malloc(val->len + 1), *o = out;
    if (!out)
        return NULL;
    while (p < end) {
        if (*p != '\\') {
            if (*p == '\0' && !allow_nul)
                goto bad;
            *o++ = *p++;
            continue;
        }
        p++;
        if (p >= end)
            goto bad;
        char e = *p++;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            *o++ = e;
            break;
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
            uint32_t cp;
            if (read_hex4(p, end, &cp) != 0)
                goto bad;
            p += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || read_hex4(p + 2, end, &lo) != 0 ||
                    lo < 0xdc00 || lo > 0xdfff)
                    goto bad;
                p += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                goto bad;
            }
            if (cp == 0 && !allow_nul)
                goto bad;
            o += put_utf8(o, cp);
            break;
        }
        default:
            goto bad;
        }
    }
    *o = '\0';
    if (out_len)
        *out_len = (size_t)(o - out);
    return out;
bad:
    free(out);
    return NULL;
}

char *weft_json_unescape(const weft_json_val_t *val, size_t *out_len)
{
    return unescape(val, out_len, 0);
}

char *weft_json_unescape_bytes(const weft_json_val_t *val, size_t *out_len)
{
    return unescape(val, out_len, 1);
}

int weft_json_append_string(weft_buf_t *b, const char *s, size_t len)
{
    if (weft_buf_append(b, "\"", 1) != 0)
        return -1;
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20) {
            snprintf(u, sizeof(u), "\\u%04x", c);
            esc = u;
        }
        if (esc) {
            if (weft_buf_append(b, s + i - run, run) != 0 ||
                weft_buf_append(b, esc, strlen(esc)) != 0)
                return -1;
            run = 0;
        } else {
            run++;
        }
    }
    if (weft_buf_append(b, s + len - run, run) != 0)
        return -1;
    return weft_buf_append(b, "\"", 1);
}
