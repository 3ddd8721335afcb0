/*
 * eventkey.h - the idempotency key of a consumed message. One rule, used
 * by the dispatcher and by `weft replay`, which must derive the very same
 * key for a copy as the dispatcher did for its original.
 */
#ifndef WEFT_EVENTKEY_H
#define WEFT_EVENTKEY_H

#include <stddef.h>

#include "broker.h"

/* The coordinates a plain (not CloudEvents) message is known by, as id and
 * source: Kafka "TOPIC/PARTITION/OFFSET" and "kafka://TOPIC"; JetStream
 * "STREAM/SEQ" and "jetstream://STREAM"; core NATS "SUBJECT/OWNER/N" and
 * "nats://SUBJECT" (no coordinates exist: each delivery is its own event;
 * owner is the dispatcher's). */
void weft_plain_coords(const weft_bmsg_t *m, const char *owner, char *id, size_t idlen,
                       char *src, size_t srclen);

/* The key: the message's weft-key header when present and valid (set by
 * producers that know their key, by re-drives and by replays; percent-
 * encoded on NATS, like ce- values), else "ce:" SOURCE 0x1f ID of a
 * decoded CloudEvent (ce_source and ce_id; NULL for a plain or undecodable
 * message), else its coordinates: "kafka:TOPIC/PARTITION/OFFSET" on Kafka,
 * plain_src "/" plain_id elsewhere. malloc()ed; NULL when out of memory. */
char *weft_event_key(const weft_bmsg_t *m, const char *ce_source, const char *ce_id,
                     const char *plain_src, const char *plain_id);

/* The weft-generation header's value (set by `weft replay --reexecute`
 * and re-drives): decimal 0..INT32_MAX; anything else, or no value, is 0
 * (the live generation), so a bad header can never skip the ledger. The
 * dispatcher and `weft replay` read it with this one rule. */
int weft_event_generation(const void *v, size_t len);

#endif
