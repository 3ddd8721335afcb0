/*
 * hash.c - SHA-256 for checksums and deterministic ids, from OpenSSL's
 * libcrypto (which librdkafka and libpq link already). Not used for
 * secrets.
 *
 * Runs in the dispatcher (result and saga ids, catalog versions) and the
 * CLI (migration checksums), from any thread. Invariant: the EVP_MD is
 * fetched once (pthread_once), so a digest costs a context and no lookup.
 */
#include "hash.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* A digest that cannot be computed must not pass for one: the ids and
 * checksums built from it are stored. Only a failed allocation gets here. */
static void sha256_fatal(const char *what)
{
    fprintf(stderr, "weft: SHA-256: %s failed\n", what);
    abort();
}

void weft_sha256_init(weft_sha256_t *s)
{
    pthread_once(&sha256_once, sha256_fetch);
    s->ctx = EVP_MD_CTX_new();
    if (!sha256_md || !s->ctx || EVP_DigestInit_ex(s->ctx, sha256_md, NULL) != 1)
        sha256_fatal("EVP_DigestInit_ex()");
}

void weft_sha256_update(weft_sha256_t *s, const void *data, size_t len)
{
    if (EVP_DigestUpdate(s->ctx, data, len) != 1)
        sha256_fatal("EVP_DigestUpdate()");
}

void weft_sha256_final(weft_sha256_t *s, uint8_t out[32])
{
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(s->ctx, out, &n) != 1 || n != 32)
        sha256_fatal("EVP_DigestFinal_ex()");
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
}

void weft_sha256_hex(const void *data, size_t len, char out[65])
{
    weft_sha256_t s;
    uint8_t d[32];
    weft_sha256_init(&s);
    weft_sha256_update(&s, data, len);
    weft_sha256_final(&s, d);
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

void weft_uuid_from(char out[37], const char *const *parts, size_t n)
{
    weft_sha256_t s;
    uint8_t d[32];
    weft_sha256_init(&s);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            weft_sha256_update(&s, "\x1f", 1);
        weft_sha256_update(&s, parts[i], strlen(parts[i]));
    }
    weft_sha256_final(&s, d);
    d[6] = (uint8_t)((d[6] & 0x0f) | 0x80); /* version 8: custom, name-based */
    d[8] = (uint8_t)((d[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    /* 8-4-4-4-12 hex digits; by hand, as it runs once per result. */
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *o++ = '-';
        *o++ = hex[d[i] >> 4];
        *o++ = hex[d[i] & 15];
    }
    *o = '\0';
}

int weft_uuid_valid(const char *s)
{
    if (!s || strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!strchr("0123456789abcdefABCDEF", s[i])) {
            return 0;
        }
    }
    return 1;
}
