/*
 * encode.c - CloudEvents binary-mode headers and weft's re-publish headers
 * (see encode.h).
 *
 * Runs on the dispatcher's loop thread (result events, dead letters, saga
 * events) and in the CLI (publish, replay, dlq redrive). Invariants: no
 * allocation on the dispatcher's paths (names go to the caller's storage);
 * the header names come from wire.h only.
 */
#include "encode.h"

#include <stdlib.h>
#include <string.h>

#include "nats_headers.h"
#include "wire.h"

size_t weft_ce_binary_headers(const weft_ce_pair_t *attrs, size_t n_attrs, weft_header_t *hdrs,
                              size_t *n, size_t cap, weft_ce_hname_t *names)
{
    size_t added = 0;
    for (size_t i = 0; i < n_attrs && *n < cap; i++) {
        const char *v = attrs[i].value;
        if (!v)
            continue;
        const char *name;
        if (strcmp(attrs[i].attr, "datacontenttype") == 0) {
            name = WEFT_CE_CONTENT_TYPE;
        } else {
            size_t al = strlen(attrs[i].attr);
            if (al > WEFT_CE_ATTR_NAME_MAX)
                continue;
            memcpy(names[i], WEFT_CE_KAFKA_PREFIX, WEFT_CE_PREFIX_LEN);
            memcpy(names[i] + WEFT_CE_PREFIX_LEN, attrs[i].attr, al + 1);
            name = names[i];
        }
        hdrs[(*n)++] = (weft_header_t){name, v, strlen(v)};
        added++;
    }
    return added;
}

int weft_ce_republish_headers(weft_republish_t kind, weft_binding_t binding, const char *key,
                              const char *id, const char *trigger, const char *gen,
                              weft_header_t *hdrs, size_t *n, char **owned)
{
    *owned = NULL;
    if (binding == WEFT_BINDING_NATS) {
        *owned = weft_nats_pct_encode(key, strlen(key));
        if (!*owned)
            return -1;
        key = *owned;
    }
    hdrs[(*n)++] = (weft_header_t){WEFT_HDR_KEY, key, strlen(key)};
    if (kind == WEFT_REPUBLISH_REPLAY) {
        if (trigger)
            hdrs[(*n)++] = (weft_header_t){WEFT_HDR_REPLAY_TRIGGER, trigger, strlen(trigger)};
        hdrs[(*n)++] = (weft_header_t){WEFT_HDR_REPLAY_ID, id, strlen(id)};
    } else {
        hdrs[(*n)++] = (weft_header_t){WEFT_HDR_REDRIVE_ID, id, strlen(id)};
        if (trigger)
            hdrs[(*n)++] = (weft_header_t){WEFT_HDR_REDRIVE_TRIGGER, trigger, strlen(trigger)};
    }
    if (gen && strcmp(gen, "0") != 0)
        hdrs[(*n)++] = (weft_header_t){WEFT_HDR_GENERATION, gen, strlen(gen)};
    return 0;
}
