/*
 * nats_msg.h - a nats.c message from weft's headers, for nats.c (the CLI
 * client) and broker_nats_publish.c (the dispatcher's adapter) only: the
 * one place headers are mapped to NATS (weft_nats_header_encode) on the
 * way out.
 */
#ifndef WEFT_NATS_MSG_H
#define WEFT_NATS_MSG_H

#include <nats/nats.h>
#include <stddef.h>

#include "envelope.h"

/* Builds *out with the headers mapped by weft_nats_header_encode. A header
 * that cannot be sent fails the whole message, unless drop_bad (a dead
 * letter): then it is left out and named in weft-dropped-headers. 0, or -1
 * with errstr. */
int weft_nats_msg_build(natsMsg **out, const char *subject, const weft_header_t *hdrs,
                        size_t n_hdrs, const void *data, size_t len, int drop_bad, char *errstr,
                        size_t errlen);

#endif
