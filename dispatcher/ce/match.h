/*
 * match.h - whether a trigger of the catalog fires for an event (see
 * match.c). The trigger and its filters are the catalog's (catalog.h):
 * matching depends on the catalog, never the other way round.
 */
#ifndef WEFT_MATCH_H
#define WEFT_MATCH_H

#include "broker.h"
#include "catalog.h"

/* Looks up a CloudEvents attribute of the event being matched; NULL when
 * absent. */
typedef const char *(*weft_attr_fn)(void *ev, const char *name);

/* 1 when trig fires for an event on topic: its event_type (type "" for
 * plain messages) and every filter hold. attr looks up other attributes
 * (may be NULL when the trigger has no filters). */
int weft_trigger_matches(const weft_trigger_t *trig, weft_broker_t broker, const char *topic,
                         const char *type, weft_attr_fn attr, void *ev);

#endif
