/*
 * base64.h - standard base64 (RFC 4648), as the CloudEvents JSON format
 * carries binary attributes and data_base64.
 */
#ifndef WEFT_BASE64_H
#define WEFT_BASE64_H

#include <stddef.h>

#include "buf.h"

/* Appends the standard base64 of [p, p+len) (with padding). 0 or -1. */
int weft_base64_append(weft_buf_t *b, const void *p, size_t len);
/* The standard base64 of [p, p+len) as a new NUL-terminated string. */
char *weft_base64_encode(const void *p, size_t len);
/* Decodes standard or URL-safe base64, padding optional, into a new
 * malloc()ed buffer; NULL when malformed or out of memory. */
unsigned char *weft_base64_decode(const char *s, size_t len, size_t *out_len);

#endif
