/*
 * ce_attr.c - the text form of a CloudEvents attribute value (see
 * ce_attr.h).
 *
 * Runs in the dispatcher (trigger filters, on the loop thread, for every
 * filtered message) and in weft-worker (the exec request, the C ABI's
 * event). Pure: no I/O, no logging. Invariant: one value, one text, in
 * every process; strings are returned without a copy.
 */
#include "ce_attr.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "base64.h"
#include "clock.h"

int weft_ce_attr_text(const weft_ce_value_t *v, const char **text, char **owned)
{
    *text = NULL;
    *owned = NULL;
    if (!v)
        return 0;
    const char *s = NULL;
    switch (v->attr_case) {
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING:
        s = v->ce_string;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI:
        s = v->ce_uri;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_URI_REF:
        s = v->ce_uri_ref;
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BOOLEAN:
        s = v->ce_boolean ? "true" : "false";
        break;
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER: {
        char *p = malloc(16);
        if (!p)
            return -1;
        snprintf(p, 16, "%" PRId32, v->ce_integer);
        *text = *owned = p;
        return 1;
    }
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES: {
        char *p = weft_base64_encode(v->ce_bytes.data, v->ce_bytes.len);
        if (!p)
            return -1;
        *text = *owned = p;
        return 1;
    }
    case IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP: {
        if (!v->ce_timestamp)
            return 0;
        char *p = malloc(WEFT_RFC3339_MAX);
        if (!p)
            return -1;
        if (weft_clock_rfc3339(p, WEFT_RFC3339_MAX, v->ce_timestamp->seconds,
                               v->ce_timestamp->nanos, WEFT_RFC3339_AUTO) < 0) {
            free(p);
            return 0;
        }
        *text = *owned = p;
        return 1;
    }
    default:
        return 0;
    }
    if (!s)
        return 0;
    *text = s;
    return 1;
}
