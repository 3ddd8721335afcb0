/*
 * frame.c - length-prefixed protobuf frames (see frame.h).
 *
 * Linked into the dispatcher (through weft_pool) and into weft-worker.
 * Invariant: a frame never exceeds WEFT_FRAME_MAX, so lengths fit in the
 * 32-bit prefix and size arithmetic below cannot overflow.
 */
#include "frame.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

uint8_t *weft_frame_pack(const ProtobufCMessage *msg, size_t *len)
{
    size_t payload = protobuf_c_message_get_packed_size(msg);
    if (payload > WEFT_FRAME_MAX) {
        errno = EMSGSIZE;
        return NULL;
    }
    uint8_t *buf = malloc(WEFT_FRAME_HEADER + payload);
    if (!buf)
        return NULL;
    buf[0] = (uint8_t)(payload >> 24);
    buf[1] = (uint8_t)(payload >> 16);
    buf[2] = (uint8_t)(payload >> 8);
    buf[3] = (uint8_t)payload;
    protobuf_c_message_pack(msg, buf + WEFT_FRAME_HEADER);
    *len = WEFT_FRAME_HEADER + payload;
    return buf;
}

int weft_frame_peek(const uint8_t *buf, size_t len, size_t max_payload, size_t *payload_len)
{
    if (len < WEFT_FRAME_HEADER)
        return 0;
    size_t n = ((size_t)buf[0] << 24) | ((size_t)buf[1] << 16) | ((size_t)buf[2] << 8) | buf[3];
    if (n > max_payload || n > WEFT_FRAME_MAX)
        return -1;
    *payload_len = n;
    return len - WEFT_FRAME_HEADER >= n ? 1 : 0;
}

/* Reads exactly n bytes; returns n, the short count at EOF, or -1. */
static ssize_t read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* One read of what fd has ready, waiting in poll(POLLIN) when nothing is.
 * Not a blocking read(): a reader blocked on a Unix stream socket sleeps on
 * the socket's one wait queue, and the peer's every read of what this end
 * sent (which frees send space) wakes it for nothing. A worker blocked for
 * its next Invoke was woken by each read the dispatcher made of its
 * Results; poll() wakes only for input (one worker and a reader of 16
 * messages one at a time: 16 wakeups per round blocked in read(), 1 in
 * poll()). */
static ssize_t read_ready(int fd, uint8_t *p, size_t n)
{
    for (;;) {
        ssize_t r = recv(fd, p, n, MSG_DONTWAIT);
        if (r < 0 && errno == ENOTSOCK)
            return read(fd, p, n); /* a pipe: blocking read, no such wakeups */
        if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            return r;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            return -1;
    }
}

int weft_frame_read(int fd, weft_buf_t *b, size_t max_payload)
{
    uint8_t hdr[WEFT_FRAME_HEADER];
    size_t n;

    b->len = 0;
    ssize_t r = read_full(fd, hdr, sizeof(hdr));
    if (r < 0)
        return -1;
    if (r == 0)
        return 0;
    if ((size_t)r < sizeof(hdr) || weft_frame_peek(hdr, sizeof(hdr), max_payload, &n) < 0) {
        errno = EPROTO;
        return -1;
    }
    if (weft_buf_reserve(b, n ? n : 1) < 0)
        return -1;
    r = read_full(fd, b->data, n);
    if (r < 0)
        return -1;
    if ((size_t)r < n) {
        errno = EPROTO;
        return -1;
    }
    b->len = n;
    return 1;
}

int weft_frame_buffered(const weft_buf_t *b, size_t off, size_t max_payload)
{
    size_t n;
    return b->len > off && weft_frame_peek(b->data + off, b->len - off, max_payload, &n) == 1;
}

int weft_frame_next(int fd, weft_buf_t *b, size_t *off, size_t max_payload, size_t *payload_off,
                    size_t *payload_len)
{
    for (;;) {
        size_t n = 0;
        int pk =
            b->len > *off ? weft_frame_peek(b->data + *off, b->len - *off, max_payload, &n) : 0;
        if (pk < 0) {
            errno = EPROTO;
            return -1;
        }
        if (pk == 1) {
            *payload_off = *off + WEFT_FRAME_HEADER;
            *payload_len = n;
            *off += WEFT_FRAME_HEADER + n;
            return 1;
        }
        /* Keep the partial frame only; release a buffer one big frame grew. */
        weft_buf_consume(b, *off);
        *off = 0;
        if (b->len == 0)
            weft_buf_trim(b, 1024 * 1024);
        size_t want = 64 * 1024;
        if (b->len >= WEFT_FRAME_HEADER && WEFT_FRAME_HEADER + n - b->len > want)
            want = WEFT_FRAME_HEADER + n - b->len;
        if (weft_buf_reserve(b, want) < 0)
            return -1;
        ssize_t r = read_ready(fd, b->data + b->len, b->cap - b->len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            if (b->len == 0)
                return 0;
            errno = EPROTO; /* EOF inside a frame */
            return -1;
        }
        b->len += (size_t)r;
    }
}

int weft_frame_write_all(int fd, const uint8_t *buf, size_t len)
{
    int use_send = 1;
    size_t off = 0;
    while (off < len) {
        ssize_t w;
        if (use_send) {
            w = send(fd, buf + off, len - off, MSG_NOSIGNAL);
            if (w < 0 && errno == ENOTSOCK) {
                use_send = 0;
                continue;
            }
        } else {
            w = write(fd, buf + off, len - off);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Small pieces (tags, lengths, short strings) are gathered so a frame costs
 * a few writes, not one per field; large pieces are written from where they
 * are. */
typedef struct fd_sink {
    ProtobufCBuffer base;
    int fd;
    int err;
    size_t used;
    uint8_t buf[8192];
} fd_sink_t;

static void sink_flush(fd_sink_t *s)
{
    if (s->used && !s->err && weft_frame_write_all(s->fd, s->buf, s->used) < 0)
        s->err = errno ? errno : EIO;
    s->used = 0;
}

static void sink_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
    fd_sink_t *s = (fd_sink_t *)b;
    if (s->err)
        return;
    if (len <= sizeof(s->buf) - s->used) {
        memcpy(s->buf + s->used, data, len);
        s->used += len;
        return;
    }
    sink_flush(s);
    if (len <= sizeof(s->buf)) {
        memcpy(s->buf, data, len);
        s->used = len;
    } else if (!s->err && weft_frame_write_all(s->fd, data, len) < 0) {
        s->err = errno ? errno : EIO;
    }
}

int weft_frame_write_msg(int fd, const ProtobufCMessage *msg)
{
    size_t payload = protobuf_c_message_get_packed_size(msg);
    if (payload > WEFT_FRAME_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    fd_sink_t s = {.base = {sink_append}, .fd = fd};
    uint8_t hdr[WEFT_FRAME_HEADER] = {(uint8_t)(payload >> 24), (uint8_t)(payload >> 16),
                                      (uint8_t)(payload >> 8), (uint8_t)payload};
    sink_append(&s.base, sizeof(hdr), hdr);
    protobuf_c_message_pack_to_buffer(msg, &s.base);
    sink_flush(&s);
    if (s.err) {
        errno = s.err;
        return -1;
    }
    return 0;
}
