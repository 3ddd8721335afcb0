/*
 * ce_attr.h - the one text form of a CloudEvents attribute value.
 *
 * A trigger filter (dispatcher/ce/envelope.c), the exec protocol's request
 * (exec_proto.c) and the C ABI's weft_event_t (worker/worker.c) all show an
 * attribute as text; they take it from here, so a filter and a function
 * always see the same text for the same attribute.
 */
#ifndef WEFT_CE_ATTR_H
#define WEFT_CE_ATTR_H

#include "cloudevents.pb-c.h"

typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue weft_ce_value_t;

/* The text of an attribute value:
 *   String, URI, URI-reference  the string itself;
 *   Boolean                     "true" or "false";
 *   Integer                     decimal ("-5");
 *   Binary                      base64 with padding, as the CloudEvents JSON
 *                               format carries it;
 *   Timestamp                   RFC 3339 in UTC with the fraction received
 *                               kept: no digits, 3, 6 or 9, the fewest that
 *                               lose no nanosecond (protobuf's JSON mapping).
 * Returns 1 with *text set and *owned NULL or the malloc()ed storage behind
 * *text (the caller frees it); 0 when the value has no text (v NULL, no
 * kind set, a timestamp gmtime_r() cannot break down); -1 out of memory. */
int weft_ce_attr_text(const weft_ce_value_t *v, const char **text, char **owned);

#endif
