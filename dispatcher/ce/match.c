/*
 * match.c - whether a trigger fires for an event: its broker and topic,
 * its event type, and its attribute filters (exact, prefix, suffix).
 *
 * Pure functions over a trigger of the catalog and the event's attributes,
 * called on the dispatcher's loop thread for every consumed message and by
 * the CLI (replay, triggers). Invariant: an absent attribute never
 * satisfies a filter; "type" is the event's type ("" for a plain message).
 */
#include "match.h"

#include <string.h>

static int filter_holds(const weft_filter_t *f, const char *v)
{
    if (!v)
        return 0;
    size_t vl = strlen(v), fl = strlen(f->value);
    switch (f->op) {
    case WEFT_FILTER_PREFIX:
        return vl >= fl && memcmp(v, f->value, fl) == 0;
    case WEFT_FILTER_SUFFIX:
        return vl >= fl && memcmp(v + vl - fl, f->value, fl) == 0;
    case WEFT_FILTER_EXACT:
    default:
        return strcmp(v, f->value) == 0;
    }
}

int weft_trigger_matches(const weft_trigger_t *trig, weft_broker_t broker, const char *topic,
                         const char *type, weft_attr_fn attr, void *ev)
{
    if (trig->broker != broker || strcmp(trig->topic, topic) != 0)
        return 0;
    if (trig->event_type && strcmp(trig->event_type, type ? type : "") != 0)
        return 0;
    for (size_t i = 0; i < trig->n_filters; i++) {
        const weft_filter_t *f = &trig->filters[i];
        const char *v = strcmp(f->attribute, "type") == 0 ? (type ? type : "")
                        : attr                            ? attr(ev, f->attribute)
                                                          : NULL;
        if (!filter_holds(f, v))
            return 0;
    }
    return 1;
}
