/*
 * eventkey.c - the idempotency key of a consumed message (eventkey.h).
 */
#include "eventkey.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "nats.h"

void weft_plain_coords(const weft_bmsg_t *m, const char *owner, char *id, size_t idlen,
                       char *src, size_t srclen)
{
    switch (m->broker) {
    case WEFT_BROKER_JETSTREAM:
        snprintf(id, idlen, "%s/%lld", m->stream ? m->stream : "", (long long)m->offset);
        snprintf(src, srclen, "jetstream://%s", m->stream ? m->stream : "");
        break;
    case WEFT_BROKER_NATS:
        snprintf(id, idlen, "%s/%s/%lld", m->topic, owner ? owner : "", (long long)m->offset);
        snprintf(src, srclen, "nats://%s", m->topic);
        break;
    case WEFT_BROKER_KAFKA:
    default:
        snprintf(id, idlen, "%s/%d/%lld", m->topic, (int)m->partition, (long long)m->offset);
        snprintf(src, srclen, "kafka://%s", m->topic);
        break;
    }
}

char *weft_event_key(const weft_bmsg_t *m, const char *ce_source, const char *ce_id,
                     const char *plain_src, const char *plain_id)
{
    char *k = NULL;
    for (size_t i = 0; i < m->n_hdrs; i++) {
        const weft_header_t *h = &m->hdrs[i];
        if (strcmp(h->name, "weft-key") != 0 || !h->value || h->len == 0 || h->len > 1024 ||
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
    int rc;
    if (ce_source && ce_id)
        rc = asprintf(&k, "ce:%s\x1f%s", ce_source, ce_id);
    else if (m->broker == WEFT_BROKER_KAFKA)
        rc = asprintf(&k, "kafka:%s/%d/%lld", m->topic, (int)m->partition, (long long)m->offset);
    else
        rc = asprintf(&k, "%s/%s", plain_src, plain_id);
    return rc < 0 ? NULL : k;
}
