/*
 * base64.c - standard base64 (RFC 4648 section 4) for CloudEvents binary
 * attributes and data_base64; decoding also takes the URL-safe alphabet
 * and missing padding, as producers send both.
 *
 * Linked into every weft process through weft_base. Invariant: decoding
 * never reads past the length it is given and refuses any byte outside
 * the two alphabets.
 */
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int weft_base64_append(weft_buf_t *b, const void *data, size_t len)
{
    const uint8_t *p = data;
    char q[4];
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        q[0] = b64_chars[v >> 18];
        q[1] = b64_chars[(v >> 12) & 63];
        q[2] = i + 1 < len ? b64_chars[(v >> 6) & 63] : '=';
        q[3] = i + 2 < len ? b64_chars[v & 63] : '=';
        if (weft_buf_append(b, q, 4) != 0)
            return -1;
    }
    return len == 0 ? weft_buf_append(b, "", 0) : 0;
}

char *weft_base64_encode(const void *p, size_t len)
{
    weft_buf_t b = {0};
    if (weft_base64_append(&b, p, len) != 0) {
        weft_buf_free(&b);
        return NULL;
    }
    return b.p;
}

static int b64_value(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

unsigned char *weft_base64_decode(const char *s, size_t len, size_t *out_len)
{
    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 3);
    if (!out)
        return NULL;
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    *out_len = o;
    return out;
}
