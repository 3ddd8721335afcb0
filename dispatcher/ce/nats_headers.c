/*
 * nats_headers.c - the CloudEvents binding to NATS headers: attributes go
 * as "ce-<name>" headers with percent-encoded values (see nats_headers.h).
 *
 * Pure functions, used by the dispatcher (decoding consumed messages in
 * envelope.c, encoding produced ones through nats.c) and by the CLI.
 * Invariant: nothing with CR, LF or NUL in a header name or value leaves
 * weft_nats_header_encode; CloudEvents attribute values are
 * percent-encoded, so they never need to be refused.
 */
#include "nats_headers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "json.h"
#include "wire.h"

static int pct_keep(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e && c != '"' && c != '%';
}

char *weft_nats_pct_encode(const void *value, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = value;
    char *out = malloc(len * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (pct_keep(p[i])) {
            *o++ = (char)p[i];
        } else {
            *o++ = '%';
            *o++ = hex[p[i] >> 4];
            *o++ = hex[p[i] & 15];
        }
    }
    *o = '\0';
    return out;
}

char *weft_nats_pct_decode(const char *value, size_t len, size_t *out_len)
{
    char *out = malloc(len + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (value[i] != '%') {
            if (value[i] == '\0')
                goto bad;
            *o++ = value[i];
            continue;
        }
        int hi = i + 1 < len ? weft_hex_value(value[i + 1]) : -1;
        int lo = i + 2 < len ? weft_hex_value(value[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
            goto bad;
        *o++ = (char)(hi << 4 | lo);
        i += 2;
    }
    *o = '\0';
    if (out_len)
        *out_len = (size_t)(o - out);
    return out;
bad:
    free(out);
    return NULL;
}

int weft_nats_header_name_valid(const char *name)
{
    size_t n = 0;
    for (; name[n]; n++) {
        unsigned char c = (unsigned char)name[n];
        if (c < 0x21 || c > 0x7e || c == ':')
            return 0;
    }
    return n > 0 && n <= 255;
}

int weft_nats_header_value_valid(const void *value, size_t len)
{
    const char *p = value;
    for (size_t i = 0; i < len; i++)
        if (p[i] == '\r' || p[i] == '\n' || p[i] == '\0')
            return 0;
    return 1;
}

int weft_nats_header_encode(const char *name, const void *value, size_t len, char **name_out,
                            char **value_out, char *errstr, size_t errlen)
{
    *name_out = *value_out = NULL;
    if (!value)
        len = 0;
    /* "ce_x" is weft's (and Kafka's) name of an attribute: its value is the
     * attribute itself and gets encoded. "ce-x" is already NATS's wire
     * form (a header of a message that came from NATS, kept in its dead
     * letter): copied like any other header, never encoded twice. */
    if (strncasecmp(name, WEFT_CE_KAFKA_PREFIX, WEFT_CE_PREFIX_LEN) == 0 &&
        name[WEFT_CE_PREFIX_LEN]) {
        const char *attr = name + WEFT_CE_PREFIX_LEN;
        if (!weft_ce_attr_name_valid(attr, strlen(attr))) {
            snprintf(errstr, errlen, "invalid CloudEvents attribute name in header \"%.100s\"",
                     name);
            return -1;
        }
        if (asprintf(name_out, WEFT_CE_NATS_PREFIX "%s", attr) < 0) {
            *name_out = NULL;
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
        *value_out = weft_nats_pct_encode(value ? value : "", len);
    } else {
        if (!weft_nats_header_name_valid(name)) {
            snprintf(errstr, errlen, "header name \"%.100s\" cannot be sent to NATS", name);
            return -1;
        }
        if (!weft_nats_header_value_valid(value, len)) {
            snprintf(errstr, errlen, "header %.100s holds CR, LF or NUL", name);
            return -1;
        }
        *name_out =
            strdup(strcasecmp(name, WEFT_CE_CONTENT_TYPE) == 0 ? WEFT_CE_NATS_CONTENT_TYPE : name);
        *value_out = malloc(len + 1);
        if (*value_out) {
            memcpy(*value_out, value ? value : "", len);
            (*value_out)[len] = '\0';
        }
    }
    if (!*name_out || !*value_out) {
        free(*name_out);
        free(*value_out);
        *name_out = *value_out = NULL;
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    return 0;
}
