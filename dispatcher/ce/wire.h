/*
 * wire.h - every name weft writes on, or reads from, a broker message
 * outside the CloudEvents attributes a producer sends: the binary-mode
 * prefixes, weft's own extension attributes (ce_weft*), and weft's own
 * headers (weft-*). Tests keep their literals: they check the wire.
 *
 * Attribute names are given without a prefix ("weftreason"); their Kafka
 * header is WEFT_CE_KAFKA_PREFIX + name ("ce_weftreason"), their NATS
 * header WEFT_CE_NATS_PREFIX + name (nats_headers.c maps one to the other).
 */
#ifndef WEFT_WIRE_H
#define WEFT_WIRE_H

#include <stddef.h>

/* 1 when name is a valid CloudEvents attribute name ([a-z0-9]{1,}): the
 * rule both bindings (Kafka ce_*, NATS ce-*) and structured mode share. */
static inline int weft_ce_attr_name_valid(const char *name, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')))
            return 0;
    return 1;
}

/* CloudEvents binary mode: the prefix of an attribute's header, its
 * length, and the header that carries datacontenttype. */
#define WEFT_CE_KAFKA_PREFIX "ce_"
#define WEFT_CE_NATS_PREFIX "ce-"
#define WEFT_CE_PREFIX_LEN 3
#define WEFT_CE_CONTENT_TYPE "content-type"
#define WEFT_CE_NATS_CONTENT_TYPE "Content-Type"

/* weft's own extension attributes start with this; on Kafka their headers
 * start with WEFT_CE_KAFKA_OWN, on NATS with WEFT_CE_NATS_OWN. */
#define WEFT_CE_OWN_PREFIX "weft"
#define WEFT_CE_KAFKA_OWN WEFT_CE_KAFKA_PREFIX WEFT_CE_OWN_PREFIX
#define WEFT_CE_NATS_OWN WEFT_CE_NATS_PREFIX WEFT_CE_OWN_PREFIX
#define WEFT_CE_OWN_LEN 7

/* On a result event. */
#define WEFT_CE_INPUTID "weftinputid"
#define WEFT_CE_TRIGGER "wefttrigger"
/* On a dead letter. */
#define WEFT_CE_REASON "weftreason"
#define WEFT_CE_ERROR "wefterror"
#define WEFT_CE_ATTEMPTS "weftattempts"
#define WEFT_CE_SRCTOPIC "weftsrctopic"
#define WEFT_CE_SRCBROKER "weftsrcbroker"
#define WEFT_CE_SRCPARTITION "weftsrcpartition"
#define WEFT_CE_SRCOFFSET "weftsrcoffset"
#define WEFT_CE_FIRSTFAILURE "weftfirstfailure"
#define WEFT_CE_LASTFAILURE "weftlastfailure"
#define WEFT_CE_DLQID "weftdlqid"
/* A dead letter too large for its topic: the original body's size; the
 * body sent is cut short (or empty), and the whole of it is in the
 * weft.dead_letters row that WEFT_CE_DLQID names. */
#define WEFT_CE_TRUNCATED "weftdlqtruncated"
/* On a saga event (and read back from a step event). */
#define WEFT_CE_SAGA "weftsaga"
#define WEFT_CE_INSTANCE "weftinstance"
#define WEFT_CE_STEP "weftstep"
#define WEFT_CE_PHASE "weftphase"

/* weft's own headers (not CloudEvents attributes) on an event published
 * again: its idempotency key, the replay or re-drive that sent it and the
 * trigger it is for, and the replay generation. All start with
 * WEFT_HDR_PREFIX. */
#define WEFT_HDR_PREFIX "weft-"
#define WEFT_HDR_PREFIX_LEN 5
#define WEFT_HDR_KEY "weft-key"
#define WEFT_HDR_GENERATION "weft-generation"
#define WEFT_HDR_REPLAY_TRIGGER "weft-replay-trigger"
#define WEFT_HDR_REPLAY_ID "weft-replay-id"
#define WEFT_HDR_REDRIVE_TRIGGER "weft-redrive-trigger"
#define WEFT_HDR_REDRIVE_ID "weft-redrive-id"
/* Added by the NATS adapter: the names of headers it could not carry. */
#define WEFT_HDR_DROPPED "weft-dropped-headers"

/* JetStream message ids (Nats-Msg-Id) weft gives what it publishes again:
 * prefix + the dead letter's id, the re-drive's id, or replay id-offset. */
#define WEFT_MSGID_DLQ "weft-dlq-"
#define WEFT_MSGID_REDRIVE "weft-redrive-"
#define WEFT_MSGID_REPLAY "weft-replay-"

#endif
