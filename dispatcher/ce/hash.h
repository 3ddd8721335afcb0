/*
 * hash.h - SHA-256, used for migration checksums and for the deterministic
 * ids of emitted events (a result's id is derived from trigger + key, so a
 * re-emitted result carries the same id).
 */
#ifndef WEFT_HASH_H
#define WEFT_HASH_H

#include <stddef.h>
#include <stdint.h>

/* An incremental SHA-256 (libcrypto's EVP): init, update any number of
 * times, final, which releases what init took. */
typedef struct weft_sha256 {
    struct evp_md_ctx_st *ctx;
} weft_sha256_t;

void weft_sha256_init(weft_sha256_t *s);
void weft_sha256_update(weft_sha256_t *s, const void *data, size_t len);
void weft_sha256_final(weft_sha256_t *s, uint8_t out[32]);
/* Lowercase hex of the SHA-256 of data: out must hold 65 bytes. */
void weft_sha256_hex(const void *data, size_t len, char out[65]);
/* A name-based UUID (RFC 4122 layout, version 8 "custom" bits) from the
 * SHA-256 of the given parts joined by 0x1f: out must hold 37 bytes. */
void weft_uuid_from(char out[37], const char *const *parts, size_t n);
/* 1 when s is a UUID in its 36-character text form (any version). */
int weft_uuid_valid(const char *s);

/* FNV-1a of the NUL-terminated s, continuing from h (start from
 * WEFT_FNV1A_INIT): for the dispatcher's in-memory tables, never for ids
 * or anything stored. */
#define WEFT_FNV1A_INIT 1469598103934665603ull
static inline uint64_t weft_fnv1a_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

#endif
