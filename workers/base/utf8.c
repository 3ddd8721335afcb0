/*
 * utf8.c - UTF-8 validation (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF) and repair of text about to be logged or shown.
 *
 * Linked into every weft process through weft_base. Invariant: nothing
 * reads past the length it is given.
 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

size_t weft_utf8_seq(const unsigned char *p, size_t avail)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int weft_utf8_valid(const void *p, size_t len)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < len;) {
        /* ASCII, the common case, eight bytes at a time. */
        if (len - i >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) {
                i += 8;
                continue;
            }
        }
        size_t n = weft_utf8_seq(s + i, len - i);
        if (!n)
            return 0;
        i += n;
    }
    return 1;
}

char *weft_utf8_sanitize(char *s)
{
    if (!s)
        return NULL;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        size_t n = weft_utf8_seq((const unsigned char *)s + i, len - i);
        if (!n) {
            s[i++] = '?';
            continue;
        }
        i += n;
    }
    return s;
}
