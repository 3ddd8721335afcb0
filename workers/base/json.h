/*
 * json.h - the small amount of JSON weft needs, shared by the dispatcher
 * and the workers: validate a document (UTF-8 included), walk the members
 * of a top-level object, unescape strings, write escaped strings. Input is
 * never trusted: every function is bounded by the length it is given and
 * by a nesting limit.
 */
#ifndef WEFT_JSON_H
#define WEFT_JSON_H

#include <stddef.h>

#include "buf.h"
/* Transitional: files that include json.h for the buffer, UTF-8 or base64
 * helpers still find them here; new code includes buf.h, utf8.h and
 * base64.h itself. */
#include "base64.h"
#include "utf8.h"

typedef enum {
    WEFT_JSON_STRING,
    WEFT_JSON_NUMBER,
    WEFT_JSON_OBJECT,
    WEFT_JSON_ARRAY,
    WEFT_JSON_TRUE,
    WEFT_JSON_FALSE,
    WEFT_JSON_NULL,
} weft_json_type_t;

/* The raw text of a value: for strings, including the quotes. */
typedef struct weft_json_val {
    weft_json_type_t type;
    const char *p;
    size_t len;
} weft_json_val_t;

/* Validates that [s, s+len) is exactly one JSON value (surrounding
 * whitespace allowed). Bytes inside strings are not checked for UTF-8.
 * Returns 0 or -1 with errstr filled. */
int weft_json_validate(const char *s, size_t len, char *errstr, size_t errlen);
/* 1 when [s, s+len) is one JSON value in valid UTF-8 (RFC 8259 text). */
int weft_json_valid(const void *s, size_t len);

/* 1 for JSON media types: application/json, text/json, anything +json
 * (parameters such as charset ignored). */
int weft_json_content_type(const char *ct);

/* The value of one hex digit (either case), or -1. */
int weft_hex_value(char c);
/* Calls fn for each member of the top-level object in s. key is the
 * unescaped member name (NUL-terminated, temporary). Returns 0, -1 on a
 * syntax error (errstr filled), or fn's non-zero return value. */
typedef int (*weft_json_member_fn)(const char *key, const weft_json_val_t *val, void *opaque);
int weft_json_object_each(const char *s, size_t len, weft_json_member_fn fn, void *opaque,
                          char *errstr, size_t errlen);

/* Calls fn for each element of the top-level array in s. Returns 0, -1 on
 * a syntax error (errstr filled), or fn's non-zero return value. */
typedef int (*weft_json_element_fn)(const weft_json_val_t *val, void *opaque);
int weft_json_array_each(const char *s, size_t len, weft_json_element_fn fn, void *opaque,
                         char *errstr, size_t errlen);

/* Unescapes a string value (val->p including quotes) into a new
 * NUL-terminated malloc()ed buffer; *out_len excludes the NUL. Returns NULL
 * on a bad escape or if the string holds a NUL. */
char *weft_json_unescape(const weft_json_val_t *val, size_t *out_len);
/* The same for data: \u0000 is allowed (out_len counts every byte). */
char *weft_json_unescape_bytes(const weft_json_val_t *val, size_t *out_len);

/* Appends s as a quoted, escaped JSON string to b (growing it). Returns 0
 * or -1 when out of memory. */
int weft_json_append_string(weft_buf_t *b, const char *s, size_t len);

#endif
