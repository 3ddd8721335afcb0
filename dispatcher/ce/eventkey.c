/*
 * eventkey.c - the idempotency key of a consumed message (eventkey.h).
 */
#include "eventkey.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmt.h"
#include "json.h"
#include "nats.h"
#include "wire.h"

void weft_plain_coords(const weft_bmsg_t *m, const char *owner, char *id, size_t idlen,
                       char *src, size_t srclen)
{
    char off[24], part[24];
    weft_fmt_i64(off, (long long)m->offset);
    switch (m->broker) {
    case WEFT_BROKER_JETSTREAM: {
        const char *ip[] = {m->stream, "/", off}, *sp[] = {"jetstream://", m->stream};
        weft_fmt_cat(id, idlen, ip, 3);
        weft_fmt_cat(src, srclen, sp, 2);
        break;
    }
    case WEFT_BROKER_NATS: {
        const char *ip[] = {m->topic, "/", owner, "/", off}, *sp[] = {"nats://", m->topic};
        weft_fmt_cat(id, idlen, ip, 5);
        weft_fmt_cat(src, srclen, sp, 2);
        break;
    }
    case WEFT_BROKER_KAFKA:
    default: {
        weft_fmt_i64(part, (long long)m->partition);
        const char *ip[] = {m->topic, "/", part, "/", off}, *sp[] = {"kafka://", m->topic};
        weft_fmt_cat(id, idlen, ip, 5);
        weft_fmt_cat(src, srclen, sp, 2);
        break;
    }
    }
}

char *weft_event_key(const weft_bmsg_t *m, const char *ce_source, const char *ce_id,
                     const char *plain_src, const char *plain_id)
{
    char *k = NULL;
    for (size_t i = 0; i < m->n_hdrs; i++) {
        const weft_header_t *h = &m->hdrs[i];
        if (strcmp(h->name, WEFT_HDR_KEY) != 0 || !h->value || h->len == 0 || h->len > 1024 ||
            memchr(h->value, '\0', h->len))
            continue;
        size_t len = h->len;
        if (m->broker != WEFT_BROKER_KAFKA) {
            k = weft_nats_pct_decode(h->value, h->len, &len);
        } else if ((k = malloc(len + 1)) != NULL) {
            memcpy(k, h->value, len);
            k[len] = '\0';
        }
        if (k && weft_utf8_valid(k, len))
            return k;
        free(k); /* not a usable key: the next rule decides */
        k = NULL;
    }
    if (ce_source && ce_id) {
        const char *p[] = {"ce:", ce_source, "\x1f", ce_id};
        return weft_fmt_join(p, 4);
    }
    if (m->broker == WEFT_BROKER_KAFKA) {
        char part[24], off[24];
        weft_fmt_i64(part, (long long)m->partition);
        weft_fmt_i64(off, (long long)m->offset);
        const char *p[] = {"kafka:", m->topic, "/", part, "/", off};
        return weft_fmt_join(p, 6);
    }
    const char *p[] = {plain_src, "/", plain_id};
    return weft_fmt_join(p, 3);
}

int weft_event_generation(const void *v, size_t len)
{
    const char *s = v;
    long long g = 0;
    if (!v || len == 0 || len > 10)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        g = g * 10 + (s[i] - '0');
    }
    return g <= INT32_MAX ? (int)g : 0;
}
