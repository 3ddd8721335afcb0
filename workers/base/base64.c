/*
 * base64.c - standard base64 (RFC 4648 section 4) for CloudEvents binary
 * attributes and data_base64, with OpenSSL's libcrypto doing the coding
 * (EVP_EncodeBlock, EVP_DecodeBlock). Decoding also takes the URL-safe
 * alphabet and missing padding, as producers send both: this file maps
 * those to the standard form first.
 *
 * Linked into every weft process through weft_base. Invariants: decoding
 * never reads past the length it is given and refuses any byte outside
 * the two alphabets (whitespace included, which EVP_DecodeBlock would
 * skip); '=' is accepted only at the end.
 */
#include "base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* EVP_*Block take an int length: larger inputs go in pieces of a multiple
 * of 3 (encode) or 4 (decode) bytes. */
#define B64_CHUNK ((size_t)3 << 28)

int weft_base64_append(weft_buf_t *b, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t out = (len + 2) / 3 * 4;
    if (weft_buf_reserve(b, out) != 0)
        return -1;
    for (size_t i = 0; i < len; i += B64_CHUNK) {
        size_t n = len - i < B64_CHUNK ? len - i : B64_CHUNK;
        int w = EVP_EncodeBlock((unsigned char *)b->p + b->len, p + i, (int)n);
        b->len += (size_t)w;
    }
    b->p[b->len] = '\0';
    return 0;
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

/* The standard-alphabet form of each byte, 0 for bytes in neither
 * alphabet. */
static const char b64_std[256] = {
    ['A'] = 'A', ['B'] = 'B', ['C'] = 'C', ['D'] = 'D', ['E'] = 'E', ['F'] = 'F', ['G'] = 'G',
    ['H'] = 'H', ['I'] = 'I', ['J'] = 'J', ['K'] = 'K', ['L'] = 'L', ['M'] = 'M', ['N'] = 'N',
    ['O'] = 'O', ['P'] = 'P', ['Q'] = 'Q', ['R'] = 'R', ['S'] = 'S', ['T'] = 'T', ['U'] = 'U',
    ['V'] = 'V', ['W'] = 'W', ['X'] = 'X', ['Y'] = 'Y', ['Z'] = 'Z', ['a'] = 'a', ['b'] = 'b',
    ['c'] = 'c', ['d'] = 'd', ['e'] = 'e', ['f'] = 'f', ['g'] = 'g', ['h'] = 'h', ['i'] = 'i',
    ['j'] = 'j', ['k'] = 'k', ['l'] = 'l', ['m'] = 'm', ['n'] = 'n', ['o'] = 'o', ['p'] = 'p',
    ['q'] = 'q', ['r'] = 'r', ['s'] = 's', ['t'] = 't', ['u'] = 'u', ['v'] = 'v', ['w'] = 'w',
    ['x'] = 'x', ['y'] = 'y', ['z'] = 'z', ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3',
    ['4'] = '4', ['5'] = '5', ['6'] = '6', ['7'] = '7', ['8'] = '8', ['9'] = '9', ['+'] = '+',
    ['/'] = '/', ['-'] = '+', ['_'] = '/'};

unsigned char *weft_base64_decode(const char *s, size_t len, size_t *out_len)
{
    size_t given = len;
    while (len && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return NULL;
    size_t padded = (len + 3) / 4 * 4, pad = padded - len;
    unsigned char *out = malloc(padded / 4 * 3 + 3);
    char *std = NULL;
    if (!out)
        return NULL;
    /* Standard alphabet with exactly the padding it needs (what producers
     * mostly send) is decoded where it lies; anything else is mapped to
     * that form in a copy first. */
    const char *in = s;
    int copy = given != padded;
    for (size_t i = 0; i < len; i++) {
        char c = b64_std[(unsigned char)s[i]];
        if (!c)
            goto bad;
        copy |= c != s[i];
    }
    if (copy) {
        if (!(std = malloc(padded + 1)))
            goto bad;
        for (size_t i = 0; i < len; i++)
            std[i] = b64_std[(unsigned char)s[i]];
        memset(std + len, '=', pad);
        in = std;
    }
    size_t o = 0;
    for (size_t i = 0; i < padded; i += B64_CHUNK / 3 * 4) {
        size_t n = padded - i < B64_CHUNK / 3 * 4 ? padded - i : B64_CHUNK / 3 * 4;
        int w = EVP_DecodeBlock(out + o, (const unsigned char *)in + i, (int)n);
        if (w < 0)
            goto bad;
        o += (size_t)w;
    }
    /* EVP_DecodeBlock counts the bytes the padding stands for. */
    *out_len = o - pad;
    free(std);
    return out;
bad:
    free(std);
    free(out);
    return NULL;
}
