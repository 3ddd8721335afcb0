/*
 * buf.h - the one growable byte buffer of weft, for text (JSON, SQL, log
 * lines) and for bytes (frames on a worker channel) alike.
 *
 * Zero-initialise it (weft_buf_t b = {0}); weft_buf_free() returns it to
 * that state. p and data are the same pointer, typed for text and for
 * bytes. After any append the content is followed by a NUL that len does
 * not count; raw writers into [data + len, data + cap) do not keep it.
 */
#ifndef WEFT_BUF_H
#define WEFT_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct weft_buf {
    size_t len, cap; /* first, so that {0} and {{0}} both initialise */
    union {
        char *p;
        uint8_t *data;
    };
} weft_buf_t;

/* Makes room for len more bytes and a NUL after b->len, without changing
 * b->len. 0, or -1 with errno ENOMEM. */
int weft_buf_reserve(weft_buf_t *b, size_t len);
/* Appends len bytes / a NUL-terminated string / printf output. 0 or -1. */
int weft_buf_append(weft_buf_t *b, const void *data, size_t len);
int weft_buf_puts(weft_buf_t *b, const char *s);
int weft_buf_printf(weft_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void weft_buf_consume(weft_buf_t *b, size_t n);
/* Releases the storage of an empty buffer that grew past keep bytes, so
 * one big frame does not pin memory for the life of a worker. */
void weft_buf_trim(weft_buf_t *b, size_t keep);
void weft_buf_free(weft_buf_t *b);

#endif
