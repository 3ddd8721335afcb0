/*
 * buf.c - the growable byte buffer (see buf.h).
 *
 * Linked into every weft process through weft_base. Invariant: after
 * weft_buf_reserve(b, n) succeeds, b->cap >= b->len + n + 1, so an append
 * can always write its terminating NUL.
 */
#include "buf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int weft_buf_reserve(weft_buf_t *b, size_t len)
{
    if (b->len + len + 1 <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < b->len + len + 1)
        ncap *= 2;
    char *np = realloc(b->p, ncap);
    if (!np) {
        errno = ENOMEM;
        return -1;
    }
    b->p = np;
    b->cap = ncap;
    return 0;
}

int weft_buf_append(weft_buf_t *b, const void *data, size_t len)
{
    if (weft_buf_reserve(b, len) != 0)
        return -1;
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

int weft_buf_puts(weft_buf_t *b, const char *s)
{
    return weft_buf_append(b, s, strlen(s));
}

int weft_buf_printf(weft_buf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(tmp))
        return weft_buf_append(b, tmp, (size_t)n);
    if (weft_buf_reserve(b, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void weft_buf_consume(weft_buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

void weft_buf_trim(weft_buf_t *b, size_t keep)
{
    if (b->len == 0 && b->cap > keep)
        weft_buf_free(b);
}

void weft_buf_free(weft_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
