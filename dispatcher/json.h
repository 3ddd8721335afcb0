/*
 * json.h - the small amount of JSON weft needs: validate a document, walk
 * the members of a top-level object, unescape strings, and write escaped
 * strings. Input is never trusted: every function is bounded by the length
 * it is given and by a nesting limit.
 */
#ifndef WEFT_JSON_H
#define WEFT_JSON_H

#include <stddef.h>

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
 * whitespace allowed). Returns 0 or -1 with errstr filled. */
int weft_json_validate(const char *s, size_t len, char *errstr, size_t errlen);

/* Calls fn for each member of the top-level object in s. key is the
 * unescaped member name (NUL-terminated, temporary). Returns 0, -1 on a
 * syntax error (errstr filled), or fn's non-zero return value. */
typedef int (*weft_json_member_fn)(const char *key, const weft_json_val_t *val, void *opaque);
int weft_json_object_each(const char *s, size_t len, weft_json_member_fn fn, void *opaque,
                          char *errstr, size_t errlen);

/* Unescapes a string value (val->p including quotes) into a new
 * NUL-terminated malloc()ed buffer; *out_len excludes the NUL. Returns NULL
 * on a bad escape or if the string holds a NUL. */
char *weft_json_unescape(const weft_json_val_t *val, size_t *out_len);

/* Appends s as a quoted, escaped JSON string to buf (growing it). Returns 0
 * or -1 when out of memory. */
typedef struct weft_buf {
    char *p;
    size_t len, cap;
} weft_buf_t;
int weft_buf_append(weft_buf_t *b, const void *data, size_t len);
int weft_buf_printf(weft_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int weft_json_append_string(weft_buf_t *b, const char *s, size_t len);
void weft_buf_free(weft_buf_t *b);

#endif
