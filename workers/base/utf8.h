/*
 * utf8.h - UTF-8 validation and repair (RFC 3629).
 */
#ifndef WEFT_UTF8_H
#define WEFT_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid
 * (overlong forms, surrogates and code points past U+10FFFF included). */
size_t weft_utf8_seq(const unsigned char *p, size_t avail);
/* 1 when [p, p+len) is all valid UTF-8. */
int weft_utf8_valid(const void *p, size_t len);
/* Replaces, in place, every byte that does not start a valid UTF-8
 * sequence of the NUL-terminated s with '?'. Returns s (NULL for NULL). */
char *weft_utf8_sanitize(char *s);

#endif
