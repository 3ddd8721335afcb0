/*
 * weft_io.h - the one event-loop contract shared by the dispatcher and the
 * pool supervisor: an epoll registration points at a weft_io_t, whose
 * handler is called with the ready events. Embed weft_io_t as the first
 * member of the owning struct.
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <stdint.h>

typedef struct weft_io {
    void (*handle)(struct weft_io *io, uint32_t events);
    int fd;
} weft_io_t;

#endif
