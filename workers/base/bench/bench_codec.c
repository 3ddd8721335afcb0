/*
 * bench_codec.c - weft-bench-codec: the structured-mode and exec-protocol
 * codec paths, the current code against a baseline commit's, in one run.
 *
 *   weft-bench-codec [--rounds R] [--iterations N]
 *
 * The baseline's json.c, frame.c, exec_proto.c and hash.c are built into
 * this program under old_ names (baseline_names.h, CMakeLists.txt), so both
 * versions run on the same machine, interleaved: each round times N
 * operations of every case with the baseline and then the current code
 * (the order alternates between rounds), and the figure printed is the
 * median over the rounds, in ns per operation.
 *
 * Before timing, every case checks that both versions produce the same
 * bytes (the wire must not change); a difference is printed and the exit
 * status is 1. If jansson is installed, the cost of parsing the same
 * structured event into its tree and printing the data back is shown
 * beside (a tree cannot replace the scanner: see workers/base/README.md).
 *
 * A program that prints figures, not a test: not run by ctest.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base64.h"
#include "buf.h"
#include "clock.h"
#include "envelope.h"
#include "exec_proto.h"
#include "hash.h"
#include "json.h"

#ifdef WEFT_BENCH_JANSSON
#include <jansson.h>
#endif

/* The baseline's buffer, as its frame.h declared it. */
typedef struct old_frame_buf {
    uint8_t *data;
    size_t len, cap;
} old_frame_buf_t;

int old_weft_exec_request(const Weft__V1__Invoke *inv, old_frame_buf_t *out);
int old_weft_exec_reply_parse(const uint8_t *p, size_t len, weft_result_t *res, char *errstr,
                              size_t errlen);
void old_weft_frame_buf_free(old_frame_buf_t *b);
int old_weft_json_object_each(const char *s, size_t len, weft_json_member_fn fn, void *opaque,
                              char *errstr, size_t errlen);
char *old_weft_json_unescape(const weft_json_val_t *val, size_t *out_len);
unsigned char *old_weft_base64_decode(const char *s, size_t len, size_t *out_len);
char *old_weft_base64_encode(const void *p, size_t len);
void old_weft_uuid_from(char out[37], const char *const *parts, size_t n);

/* ---- the inputs ---------------------------------------------------------- */

/* A structured CloudEvent as producers send it: the required attributes,
 * a few optional ones and extensions, JSON data. */
static const char ce_json[] =
    "{\"specversion\":\"1.0\",\"id\":\"7f1c2a90-3b1e-4c55-9a7e-1d2f3c4b5a69\","
    "\"source\":\"/shop/orders\",\"type\":\"com.example.order.created\","
    "\"subject\":\"order-4711\",\"time\":\"2026-12-07T21:12:14.123456Z\","
    "\"datacontenttype\":\"application/json\",\"tenant\":\"acme\",\"priority\":3,"
    "\"traceparent\":\"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\","
    "\"data\":{\"order\":4711,\"customer\":{\"name\":\"Ada Lovelace\",\"email\":"
    "\"ada@example.com\"},\"lines\":[{\"sku\":\"B-100\",\"qty\":2,\"price\":19.99},"
    "{\"sku\":\"C-7\",\"qty\":1,\"price\":5.5}],\"note\":\"deliver \\u00e0 la porte\"}}";

/* The same event with binary data (data_base64, 512 bytes). */
static char ce_json_b64[2048];

/* An exec reply with JSON data, and one with data_base64. */
static const char reply_json[] =
    "{\"disposition\":\"ok\",\"datacontenttype\":\"application/json\",\"data\":"
    "{\"order\":4711, \"status\": \"accepted\", \"lines\": [1, 2, 3]}}";
static char reply_b64[2048];

static uint8_t blob[512];
static Io__Cloudevents__V1__CloudEvent ce = IO__CLOUDEVENTS__V1__CLOUD_EVENT__INIT;
static Io__Cloudevents__V1__CloudEvent ce_bin = IO__CLOUDEVENTS__V1__CLOUD_EVENT__INIT;
static Weft__V1__Invoke inv = WEFT__V1__INVOKE__INIT;
static Weft__V1__Invoke inv_bin = WEFT__V1__INVOKE__INIT;

typedef Io__Cloudevents__V1__CloudEvent__CloudEventAttributeValue attr_value_t;
typedef Io__Cloudevents__V1__CloudEvent__AttributesEntry attr_entry_t;
static attr_value_t av[5];
static attr_entry_t ae[5];
static attr_entry_t *aep[5];
static Google__Protobuf__Timestamp ts = GOOGLE__PROTOBUF__TIMESTAMP__INIT;

static void inputs(void)
{
    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 131 + 7);
    char *b64 = weft_base64_encode(blob, sizeof(blob));
    snprintf(ce_json_b64, sizeof(ce_json_b64),
             "{\"specversion\":\"1.0\",\"id\":\"42\",\"source\":\"/s\",\"type\":\"t\","
             "\"datacontenttype\":\"application/octet-stream\",\"data_base64\":\"%s\"}",
             b64);
    snprintf(reply_b64, sizeof(reply_b64),
             "{\"disposition\":\"ok\",\"datacontenttype\":\"application/octet-stream\","
             "\"data_base64\":\"%s\"}",
             b64);
    free(b64);

    static const char *names[5] = {"subject", "datacontenttype", "time", "priority", "sig"};
    for (int i = 0; i < 5; i++) {
        io__cloudevents__v1__cloud_event__cloud_event_attribute_value__init(&av[i]);
        io__cloudevents__v1__cloud_event__attributes_entry__init(&ae[i]);
        ae[i].key = (char *)names[i];
        ae[i].value = &av[i];
        aep[i] = &ae[i];
    }
    av[0].attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    av[0].ce_string = "order-4711";
    av[1].attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_STRING;
    av[1].ce_string = "application/json";
    ts.seconds = 1796677934;
    ts.nanos = 123456000;
    av[2].attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_TIMESTAMP;
    av[2].ce_timestamp = &ts;
    av[3].attr_case =
        IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_INTEGER;
    av[3].ce_integer = 3;
    av[4].attr_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__CLOUD_EVENT_ATTRIBUTE_VALUE__ATTR_CE_BYTES;
    av[4].ce_bytes.data = blob;
    av[4].ce_bytes.len = 32;

    ce.id = "7f1c2a90-3b1e-4c55-9a7e-1d2f3c4b5a69";
    ce.source = "/shop/orders";
    ce.spec_version = "1.0";
    ce.type = "com.example.order.created";
    ce.n_attributes = 5;
    ce.attributes = aep;
    static const char data[] = "{\"order\": 4711, \"customer\": {\"name\": \"Ada Lovelace\"}, "
                               "\"lines\": [{\"sku\": \"B-100\", \"qty\": 2}]}";
    ce.data_case = IO__CLOUDEVENTS__V1__CLOUD_EVENT__DATA_BINARY_DATA;
    ce.binary_data.data = (uint8_t *)data;
    ce.binary_data.len = sizeof(data) - 1;
    inv.event = &ce;
    inv.trigger = "orders";
    inv.attempt = 1;
    inv.deadline_ms = 30000;

    ce_bin = ce;
    ce_bin.n_attributes = 1; /* no content type: bytes go as data_base64 */
    ce_bin.binary_data.data = blob;
    ce_bin.binary_data.len = sizeof(blob);
    inv_bin = inv;
    inv_bin.event = &ce_bin;
}

/* ---- the cases ------------------------------------------------------------ */

typedef struct member_ctx {
    int old;
    weft_json_val_t data, data_b64;
    size_t bytes; /* what was decoded, so nothing is optimised away */
} member_ctx_t;

/* What the dispatcher's structured-mode decode does per member
 * (dispatcher/envelope.c, json_member): unescape string attributes, keep
 * numbers as text, remember data. */
static int member(const char *key, const weft_json_val_t *val, void *opaque)
{
    member_ctx_t *mc = opaque;
    if (strcmp(key, "data") == 0) {
        mc->data = *val;
        return 0;
    }
    if (strcmp(key, "data_base64") == 0) {
        mc->data_b64 = *val;
        return 0;
    }
    if (val->type == WEFT_JSON_STRING) {
        size_t n = 0;
        char *s = mc->old ? old_weft_json_unescape(val, &n) : weft_json_unescape(val, &n);
        if (!s)
            return 1;
        mc->bytes += n;
        free(s);
    } else {
        mc->bytes += val->len;
    }
    return 0;
}

/* The structured-mode decode path at the codec level: members, then the
 * data (copied as raw JSON, or base64-decoded). Returns the data length
 * and its bytes in *out (malloc()ed). */
static size_t structured(int old, const char *json, size_t len, uint8_t **out)
{
    member_ctx_t mc = {.old = old};
    char err[128];
    int rc = old ? old_weft_json_object_each(json, len, member, &mc, err, sizeof(err))
                 : weft_json_object_each(json, len, member, &mc, err, sizeof(err));
    *out = NULL;
    if (rc != 0)
        return 0;
    size_t n = 0;
    if (mc.data_b64.p) {
        size_t tl;
        char *text =
            old ? old_weft_json_unescape(&mc.data_b64, &tl) : weft_json_unescape(&mc.data_b64, &tl);
        *out = old ? old_weft_base64_decode(text, tl, &n) : weft_base64_decode(text, tl, &n);
        free(text);
    } else if (mc.data.p) {
        *out = malloc(mc.data.len);
        memcpy(*out, mc.data.p, mc.data.len);
        n = mc.data.len;
    }
    return n;
}

static size_t request(int old, const Weft__V1__Invoke *in, char **out)
{
    if (old) {
        old_frame_buf_t b = {0};
        old_weft_exec_request(in, &b);
        *out = (char *)b.data;
        return b.len;
    }
    weft_buf_t b = {0};
    weft_exec_request(in, &b);
    *out = b.p;
    return b.len;
}

static size_t reply(int old, const char *json, uint8_t **out)
{
    weft_result_t res;
    memset(&res, 0, sizeof(res));
    char err[256];
    int rc =
        old ? old_weft_exec_reply_parse((const uint8_t *)json, strlen(json), &res, err, sizeof(err))
            : weft_exec_reply_parse((const uint8_t *)json, strlen(json), &res, err, sizeof(err));
    *out = rc < 0 ? NULL : (uint8_t *)res.data;
    return rc < 0 ? 0 : res.data_len;
}

static size_t result_id(int old, char **out)
{
    static const char *const parts[] = {"orders", "7f1c2a90-3b1e-4c55-9a7e-1d2f3c4b5a69",
                                        "/shop/orders"};
    *out = malloc(37);
    if (old)
        old_weft_uuid_from(*out, parts, 3);
    else
        weft_uuid_from(*out, parts, 3);
    return 36;
}

typedef enum {
    C_STRUCTURED,
    C_STRUCTURED_B64,
    C_REQUEST,
    C_REQUEST_B64,
    C_REPLY,
    C_REPLY_B64,
    C_RESULT_ID,
    C_N
} case_t;

static const char *const case_names[C_N] = {
    "structured CE decode, JSON data      ", "structured CE decode, data_base64 512B",
    "exec request encode, JSON data       ", "exec request encode, data_base64 512B",
    "exec reply parse, JSON data          ", "exec reply parse, data_base64 512B   ",
    "result id (SHA-256 name-based UUID)  "};

/* One operation of case c; the output (malloc()ed) for the byte check. */
static size_t run(case_t c, int old, void **out)
{
    switch (c) {
    case C_STRUCTURED:
        return structured(old, ce_json, sizeof(ce_json) - 1, (uint8_t **)out);
    case C_STRUCTURED_B64:
        return structured(old, ce_json_b64, strlen(ce_json_b64), (uint8_t **)out);
    case C_REQUEST:
        return request(old, &inv, (char **)out);
    case C_REQUEST_B64:
        return request(old, &inv_bin, (char **)out);
    case C_REPLY:
        return reply(old, reply_json, (uint8_t **)out);
    case C_REPLY_B64:
        return reply(old, reply_b64, (uint8_t **)out);
    case C_RESULT_ID:
        return result_id(old, (char **)out);
    default:
        return 0;
    }
}

static double time_batch(case_t c, int old, int n)
{
    uint64_t t0 = weft_clock_mono_us();
    for (int i = 0; i < n; i++) {
        void *out = NULL;
        run(c, old, &out);
        free(out);
    }
    return (double)(weft_clock_mono_us() - t0) * 1000.0 / n;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Random strings over the base64 alphabets, '=', and a few bytes outside
 * them, of every length up to 64: both decoders must agree on every one
 * (refusal included), and both encoders on random bytes. */
static int base64_agree(int n)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                                   "+/-_==== \n.";
    unsigned seed = 12345;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char s[64];
        size_t len = (size_t)(rand_r(&seed) % 64);
        for (size_t k = 0; k < len; k++)
            s[k] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
        if (rand_r(&seed) % 2) /* mostly valid: the standard alphabet only */
            for (size_t k = 0; k < len; k++)
                if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                            s[k]))
                    s[k] = 'Q';
        size_t na = 0, nb = 0;
        unsigned char *a = old_weft_base64_decode(s, len, &na);
        unsigned char *b = weft_base64_decode(s, len, &nb);
        if (!a != !b || (a && (na != nb || memcmp(a, b, na) != 0))) {
            printf("DIFFERENT base64 decode of \"%.*s\"\n", (int)len, s);
            bad = 1;
        }
        free(a);
        free(b);
        char *ea = old_weft_base64_encode(s, len), *eb = weft_base64_encode(s, len);
        if (strcmp(ea, eb) != 0) {
            printf("DIFFERENT base64 encode of %zu bytes\n", len);
            bad = 1;
        }
        free(ea);
        free(eb);
    }
    return bad;
}

/* ---- trees, for comparison ------------------------------------------------ */

static double time_tree(int n)
{
    uint64_t t0 = weft_clock_mono_us();
    for (int i = 0; i < n; i++) {
#ifdef WEFT_BENCH_JANSSON
        {
            json_error_t e;
            json_t *root = json_loadb(ce_json, sizeof(ce_json) - 1, 0, &e);
            char *d = json_dumps(json_object_get(root, "data"), JSON_COMPACT);
            free(d);
            json_decref(root);
        }
#endif
    }
    return (double)(weft_clock_mono_us() - t0) * 1000.0 / n;
}

int main(int argc, char **argv)
{
    int rounds = 15, iters = 20000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--rounds") == 0 && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (strcmp(argv[i], "--iterations") == 0 && i + 1 < argc)
            iters = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: weft-bench-codec [--rounds R] [--iterations N]\n");
            return 2;
        }
    }
    if (rounds < 1 || iters < 1) {
        fprintf(stderr, "weft-bench-codec: --rounds and --iterations must be positive\n");
        return 2;
    }
    inputs();

    int bad = 0;
    for (int c = 0; c < C_N; c++) {
        void *a = NULL, *b = NULL;
        size_t na = run((case_t)c, 1, &a), nb = run((case_t)c, 0, &b);
        if (na != nb || !a || !b || memcmp(a, b, na) != 0) {
            printf("DIFFERENT OUTPUT: %s (baseline %zu bytes, current %zu bytes)\n", case_names[c],
                   na, nb);
            bad = 1;
        }
        free(a);
        free(b);
    }

    bad |= base64_agree(200000);

    double *t = calloc((size_t)rounds * C_N * 2, sizeof(double));
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < C_N; c++)
            for (int k = 0; k < 2; k++) {
                int old = (r + k) % 2; /* alternate which goes first */
                t[((size_t)c * 2 + (size_t)old) * (size_t)rounds + (size_t)r] =
                    time_batch((case_t)c, old, iters);
            }
    printf("weft-bench-codec: %d rounds of %d operations, median ns/op\n", rounds, iters);
    printf("  %-38s %10s %10s %8s\n", "case", "baseline", "current", "change");
    for (int c = 0; c < C_N; c++) {
        double *o = t + ((size_t)c * 2 + 1) * (size_t)rounds;
        double *nw = t + ((size_t)c * 2) * (size_t)rounds;
        qsort(o, (size_t)rounds, sizeof(double), cmp_double);
        qsort(nw, (size_t)rounds, sizeof(double), cmp_double);
        double mo = o[rounds / 2], mn = nw[rounds / 2];
        printf("  %s %10.1f %10.1f %+7.1f%%\n", case_names[c], mo, mn, (mn - mo) / mo * 100.0);
    }
    free(t);
#ifdef WEFT_BENCH_JANSSON
    printf("  parse the structured CE into a tree and print its data back:\n");
#endif
#ifdef WEFT_BENCH_JANSSON
    printf("    jansson %s                         %10.1f ns/op\n", JANSSON_VERSION,
           time_tree(iters));
#endif
    return bad;
}
