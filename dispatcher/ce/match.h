/*
 * match.h - trigger matching: attribute filters and whether a trigger
 * fires for an event (see match.c). The trigger itself is the catalog's
 * (catalog.h).
 */
#ifndef WEFT_MATCH_H
#define WEFT_MATCH_H

#include "broker.h"

typedef struct weft_trigger weft_trigger_t;

typedef enum { WEFT_FILTER_EXACT = 0, WEFT_FILTER_PREFIX, WEFT_FILTER_SUFFIX } weft_filter_op_t;

typedef struct weft_filter {
    char *attribute; /* "type", "subject", "source", "id" or an extension */
    weft_filter_op_t op;
    char *value;
} weft_filter_t;

/* Looks up a CloudEvents attribute of the event being matched; NULL when
 * absent. */
typedef const char *(*weft_attr_fn)(void *ev, const char *name);

/* Parses "exact" / "prefix" / "suffix". */
int weft_filter_op_parse(const char *s, weft_filter_op_t *op);

/* 1 when trig fires for an event on topic: its event_type (type "" for
 * plain messages) and every filter hold. attr looks up other attributes
 * (may be NULL when the trigger has no filters). */
int weft_trigger_matches(const weft_trigger_t *trig, weft_broker_t broker, const char *topic,
                         const char *type, weft_attr_fn attr, void *ev);

#endif
