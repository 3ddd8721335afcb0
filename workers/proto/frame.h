/*
 * frame.h - length-prefixed protobuf frames on a worker channel.
 *
 * A frame is a 4-byte big-endian payload length followed by the payload (a
 * packed weft.v1.Invoke or weft.v1.Result). Used by both ends of the channel:
 * the pool (dispatcher process, non-blocking socket, partial reads and writes
 * buffered) and weft-worker (blocking fd 3, one frame at a time).
 *
 * Nothing here logs or exits; callers decide what a bad frame means.
 */
#ifndef WEFT_FRAME_H
#define WEFT_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "buf.h"

#define WEFT_FRAME_HEADER 4
/* Hard ceiling for any frame, whatever the configured limits: the length
 * prefix is 32 bits and nothing weft sends comes near 1 GiB. */
#define WEFT_FRAME_MAX ((size_t)1 << 30)

/* Packs msg behind a length prefix into a new malloc()ed buffer; *len gets
 * the whole frame size. NULL when out of memory or larger than
 * WEFT_FRAME_MAX. The caller frees the buffer. */
uint8_t *weft_frame_pack(const ProtobufCMessage *msg, size_t *len);

/* Looks at the start of buf: returns 1 when a whole frame is there (its
 * payload length in *payload_len), 0 when more bytes are needed, -1 when the
 * announced payload exceeds max_payload (the stream cannot be resynchronised
 * after that). */
int weft_frame_peek(const uint8_t *buf, size_t len, size_t max_payload, size_t *payload_len);

/* Blocking read of exactly one frame from fd into b (b is reset first; the
 * payload is b->data[0 .. b->len)). Returns 1 on a frame, 0 on EOF before
 * any byte, -1 with errno set otherwise: EPROTO for EOF inside a frame or a
 * payload over max_payload, ENOMEM, or the read() error. */
int weft_frame_read(int fd, weft_buf_t *b, size_t max_payload);

/* Buffered blocking reader: the next frame from fd, reading only when b
 * holds no whole frame after *off, and then as much as the fd has ready
 * (up to 64 KiB, or the rest of a larger frame) in one read, so frames
 * sent back to back cost one read for all of them. With nothing ready on
 * a socket it waits in poll(POLLIN), which input alone wakes. On 1 the payload is
 * b->data[*payload_off .. *payload_off + *payload_len), valid until the next
 * call; *off has moved past it. 0 on EOF at a frame boundary, -1 with
 * errno set as for weft_frame_read(). Start with a zeroed b and *off 0. */
int weft_frame_next(int fd, weft_buf_t *b, size_t *off, size_t max_payload, size_t *payload_off,
                    size_t *payload_len);

/* 1 when b holds a whole frame after off (weft_frame_next will not read),
 * 0 otherwise. */
int weft_frame_buffered(const weft_buf_t *b, size_t off, size_t max_payload);

/* Blocking write of all len bytes (send() with MSG_NOSIGNAL when fd is a
 * socket, so a closed peer is EPIPE, not a signal). 0, or -1 with errno. */
int weft_frame_write_all(int fd, const uint8_t *buf, size_t len);

/* Blocking write of msg as one frame, packed straight to fd: large bytes
 * fields go out from the message's own memory instead of being copied into
 * a frame buffer first (a worker's result is not held twice). 0, or -1 with
 * errno set (EMSGSIZE when over WEFT_FRAME_MAX). */
int weft_frame_write_msg(int fd, const ProtobufCMessage *msg);

/* Transitional names of the buffer (buf.h) for workers/invoke.c, which
 * another change moves to the CLI: remove once it says weft_buf_*. */
typedef weft_buf_t weft_frame_buf_t;
#define weft_frame_buf_reserve weft_buf_reserve
#define weft_frame_buf_free weft_buf_free

#endif
