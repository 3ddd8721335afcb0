/*
 * uppercase.c - example function: returns the event's JSON data with every
 * string value uppercased (ASCII letters only; object keys, escape sequences
 * such as \n or \u00e9, numbers and literals are left as they are).
 *
 * Loaded by weft-worker (shared_object runtime); see weft_function.h.
 *
 * The data is checked by a small scanner, not a full parser: structure must
 * be balanced and well formed (objects of "key": value pairs, arrays,
 * strings, numbers, true/false/null), strings terminated, escapes valid, no
 * trailing bytes. It never reads outside [data, data + data_len): the data
 * is not NUL-terminated. Depth is bounded so hostile input cannot exhaust
 * anything.
 */
#include <stdlib.h>
#include <string.h>

#include "weft_function.h"

#define MAX_DEPTH 1024

WEFT_EXPORT const int weft_abi_version = WEFT_ABI_VERSION;

static int is_ws(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_hex(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

/* p[*i] is the opening quote. Uppercases the string's plain characters in
 * out (a copy of p) when upper is set. 0, or -1 when malformed. */
static int scan_string(const uint8_t *p, size_t len, size_t *i, uint8_t *out, int upper)
{
    size_t j = *i + 1;
    while (j < len) {
        uint8_t c = p[j];
        if (c == '"') {
            *i = j + 1;
            return 0;
        }
        if (c == '\\') {
            if (j + 1 >= len)
                return -1;
            uint8_t e = p[j + 1];
            if (e == 'u') {
                if (len - j < 6)
                    return -1;
                for (size_t k = 2; k < 6; k++)
                    if (!is_hex(p[j + k]))
                        return -1;
                j += 6;
            } else if (strchr("\"\\/bfnrt", e) && e != '\0') {
                j += 2;
            } else {
                return -1;
            }
            continue;
        }
        if (c < 0x20)
            return -1;
        if (upper && c >= 'a' && c <= 'z')
            out[j] = (uint8_t)(c - 'a' + 'A');
        j++;
    }
    return -1;
}

static int scan_digits(const uint8_t *p, size_t len, size_t *i)
{
    size_t start = *i;
    while (*i < len && is_digit(p[*i]))
        (*i)++;
    return *i > start ? 0 : -1;
}

static int scan_number(const uint8_t *p, size_t len, size_t *i)
{
    if (p[*i] == '-')
        (*i)++;
    if (scan_digits(p, len, i) < 0)
        return -1;
    if (*i < len && p[*i] == '.') {
        (*i)++;
        if (scan_digits(p, len, i) < 0)
            return -1;
    }
    if (*i < len && (p[*i] == 'e' || p[*i] == 'E')) {
        (*i)++;
        if (*i < len && (p[*i] == '+' || p[*i] == '-'))
            (*i)++;
        if (scan_digits(p, len, i) < 0)
            return -1;
    }
    return 0;
}

static int scan_literal(const uint8_t *p, size_t len, size_t *i)
{
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(lits[k]);
        if (len - *i >= n && memcmp(p + *i, lits[k], n) == 0) {
            *i += n;
            return 0;
        }
    }
    return -1;
}

enum {
    EXPECT_VALUE,
    EXPECT_VALUE_OR_CLOSE, /* just after '[' */
    EXPECT_KEY,
    EXPECT_KEY_OR_CLOSE, /* just after '{' */
    EXPECT_COLON,
    EXPECT_COMMA_OR_CLOSE,
    EXPECT_END,
};

/* Validates p and writes the transformed copy into out (len bytes). */
static int uppercase_json(const uint8_t *p, size_t len, uint8_t *out)
{
    char stack[MAX_DEPTH];
    size_t depth = 0, i = 0;
    int state = EXPECT_VALUE;

    memcpy(out, p, len);
    for (;;) {
        while (i < len && is_ws(p[i]))
            i++;
        if (i == len)
            break;
        uint8_t c = p[i];
        switch (state) {
        case EXPECT_VALUE_OR_CLOSE:
            if (c == ']') {
                depth--;
                i++;
                state = depth ? EXPECT_COMMA_OR_CLOSE : EXPECT_END;
                break;
            }
            /* fall through */
        case EXPECT_VALUE:
            if (c == '{' || c == '[') {
                if (depth == MAX_DEPTH)
                    return -1;
                stack[depth++] = (char)c;
                i++;
                state = c == '{' ? EXPECT_KEY_OR_CLOSE : EXPECT_VALUE_OR_CLOSE;
                break;
            }
            if (c == '"') {
                if (scan_string(p, len, &i, out, 1) < 0)
                    return -1;
            } else if (c == '-' || is_digit(c)) {
                if (scan_number(p, len, &i) < 0)
                    return -1;
            } else if (scan_literal(p, len, &i) < 0) {
                return -1;
            }
            state = depth ? EXPECT_COMMA_OR_CLOSE : EXPECT_END;
            break;
        case EXPECT_KEY_OR_CLOSE:
            if (c == '}') {
                depth--;
                i++;
                state = depth ? EXPECT_COMMA_OR_CLOSE : EXPECT_END;
                break;
            }
            /* fall through */
        case EXPECT_KEY:
            if (c != '"' || scan_string(p, len, &i, out, 0) < 0)
                return -1;
            state = EXPECT_COLON;
            break;
        case EXPECT_COLON:
            if (c != ':')
                return -1;
            i++;
            state = EXPECT_VALUE;
            break;
        case EXPECT_COMMA_OR_CLOSE: {
            char top = stack[depth - 1];
            if (c == ',') {
                i++;
                state = top == '{' ? EXPECT_KEY : EXPECT_VALUE;
            } else if ((c == '}' && top == '{') || (c == ']' && top == '[')) {
                depth--;
                i++;
                state = depth ? EXPECT_COMMA_OR_CLOSE : EXPECT_END;
            } else {
                return -1;
            }
            break;
        }
        default: /* EXPECT_END: bytes after the top-level value */
            return -1;
        }
    }
    return state == EXPECT_END ? 0 : -1;
}

int weft_handle(const weft_event_t *ev, weft_result_t *res)
{
    if (ev->data_len == 0)
        return weft_result_error(res, WEFT_FAIL, "data is empty");
    uint8_t *out = malloc(ev->data_len);
    if (!out)
        return weft_result_error(res, WEFT_RETRY, "out of memory");
    if (uppercase_json(ev->data, ev->data_len, out) < 0) {
        free(out);
        return weft_result_error(res, WEFT_FAIL, "data is not JSON");
    }
    res->data = out;
    res->data_len = ev->data_len;
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    return WEFT_OK;
}
