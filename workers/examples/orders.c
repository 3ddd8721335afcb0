/*
 * orders.c - the order saga of the README, as one shared object with five
 * entry points (weft.functions.symbol picks one per function):
 *
 *   reserve_stock   step 1      adds "reservation" to the order; out of
 *                               stock (WEFT_FAIL) when "qty" is over 100
 *   charge_payment  step 2      adds "charge"; declines (WEFT_FAIL) when the
 *                               order's "card" is "4000000000000002" or its
 *                               "amount" is over 1000
 *   ship_order      step 3      adds "shipment"; fails (WEFT_FAIL) when
 *                               "address" is "nowhere"
 *   release_stock   undoes 1    gets {"input":..., "output":...} of step 1
 *   refund_payment  undoes 2    likewise for step 2; the processor rejects
 *                               refunds to card "4000000000000341" (WEFT_RETRY,
 *                               every time: the saga ends 'stuck')
 *
 * Every entry point first sleeps "sleep_ms" milliseconds when the order
 * has that member (only the entry point named by "sleep_in" when that is
 * given too): a slow step, for trying deadlines and crashes.
 *
 * The order is a flat JSON object such as
 *   {"order":"o-1","item":"book","qty":1,"amount":25,"card":"4242424242424242"}
 * Each step answers with the same object plus its own member, so the
 * output of one step is the input of the next. The tiny field reader below
 * is enough for flat objects of strings and numbers: an example, not a
 * JSON library.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weft_function.h"

WEFT_EXPORT const int weft_abi_version = WEFT_ABI_VERSION;

WEFT_EXPORT int reserve_stock(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int charge_payment(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int ship_order(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int release_stock(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int refund_payment(const weft_event_t *ev, weft_result_t *res);

/* The value of "key" in data (string contents or a bare number), copied to
 * out; 0 when found. Takes the first member named key at any depth, so
 * nested objects are not told apart: fine for flat orders and for the
 * compensation input, where the step's output holds the member. */
static int field(const weft_event_t *ev, const char *key, char *out, size_t outlen)
{
    char pat[64];
    int pl = snprintf(pat, sizeof(pat), "\"%s\"", key);
    const char *d = (const char *)ev->data;
    size_t len = ev->data_len;
    for (size_t i = 0; d && i + (size_t)pl < len; i++) {
        if (memcmp(d + i, pat, (size_t)pl) != 0)
            continue;
        size_t j = i + (size_t)pl;
        while (j < len && d[j] == ' ')
            j++;
        if (j >= len || d[j] != ':')
            continue; /* a string value that looks like the key, not the key */
        j++;
        while (j < len && d[j] == ' ')
            j++;
        int quoted = j < len && d[j] == '"';
        if (quoted)
            j++;
        size_t k = 0;
        while (j < len && k + 1 < outlen &&
               (quoted ? d[j] != '"' : (d[j] != ',' && d[j] != '}' && d[j] != ' ')))
            out[k++] = d[j++];
        out[k] = '\0';
        return 0;
    }
    return -1;
}

/* Answers with the event's JSON object plus "member":"value". */
static int extend(const weft_event_t *ev, weft_result_t *res, const char *member,
                  const char *value)
{
    const char *d = (const char *)ev->data;
    size_t len = ev->data_len;
    while (len > 0 && (d[len - 1] == ' ' || d[len - 1] == '\n'))
        len--;
    if (len < 2 || d[0] != '{' || d[len - 1] != '}')
        return weft_result_error(res, WEFT_FAIL, "the order is not a JSON object");
    size_t cap = len + strlen(member) + strlen(value) + 16;
    char *out = malloc(cap);
    if (!out)
        return weft_result_error(res, WEFT_RETRY, "out of memory");
    int empty = len == 2;
    int n = snprintf(out, cap, "%.*s%s\"%s\":\"%s\"}", (int)(len - 1), d, empty ? "" : ",",
                     member, value);
    res->data = out;
    res->data_len = (size_t)n;
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    return WEFT_OK;
}

static void maybe_sleep(const weft_event_t *ev, const char *entry)
{
    char ms[32], in[64];
    if (field(ev, "sleep_ms", ms, sizeof(ms)) != 0)
        return;
    if (field(ev, "sleep_in", in, sizeof(in)) == 0 && strcmp(in, entry) != 0)
        return;
    long v = atol(ms);
    struct timespec ts = {v / 1000, (v % 1000) * 1000000L};
    while (v > 0 && nanosleep(&ts, &ts) != 0)
        ;
}

static int order_id(const weft_event_t *ev, weft_result_t *res, char *id, size_t len,
                    const char *entry)
{
    maybe_sleep(ev, entry);
    if (field(ev, "order", id, len) != 0 || !id[0])
        return weft_result_error(res, WEFT_FAIL, "the order has no \"order\" id");
    return 0;
}

int reserve_stock(const weft_event_t *ev, weft_result_t *res)
{
    char id[64], qty[32] = "1", v[80];
    if (order_id(ev, res, id, sizeof(id), "reserve_stock") != 0)
        return WEFT_FAIL;
    field(ev, "qty", qty, sizeof(qty));
    if (atol(qty) > 100)
        return weft_result_error(res, WEFT_FAIL, "out of stock: %s wanted", qty);
    snprintf(v, sizeof(v), "r-%s", id);
    return extend(ev, res, "reservation", v);
}

int charge_payment(const weft_event_t *ev, weft_result_t *res)
{
    char id[64], card[64] = "", amount[32] = "0", v[80];
    if (order_id(ev, res, id, sizeof(id), "charge_payment") != 0)
        return WEFT_FAIL;
    field(ev, "card", card, sizeof(card));
    field(ev, "amount", amount, sizeof(amount));
    if (strcmp(card, "4000000000000002") == 0)
        return weft_result_error(res, WEFT_FAIL, "payment declined: card %s", card);
    if (atof(amount) > 1000)
        return weft_result_error(res, WEFT_FAIL, "payment declined: amount %s over 1000",
                                 amount);
    snprintf(v, sizeof(v), "ch-%s", id);
    return extend(ev, res, "charge", v);
}

int ship_order(const weft_event_t *ev, weft_result_t *res)
{
    char id[64], address[64] = "", v[80];
    if (order_id(ev, res, id, sizeof(id), "ship_order") != 0)
        return WEFT_FAIL;
    field(ev, "address", address, sizeof(address));
    if (strcmp(address, "nowhere") == 0)
        return weft_result_error(res, WEFT_FAIL, "cannot ship to %s", address);
    snprintf(v, sizeof(v), "sh-%s", id);
    return extend(ev, res, "shipment", v);
}

/* Compensations get {"saga":..,"instance":..,"step":..,"name":..,
 * "input":{order},"output":{order + the step's member}}. */
static int undo(const weft_event_t *ev, weft_result_t *res, const char *member, const char *what,
                const char *entry)
{
    char v[80] = "";
    maybe_sleep(ev, entry);
    if (field(ev, member, v, sizeof(v)) != 0 || !v[0])
        return weft_result_error(res, WEFT_FAIL, "nothing to %s: no \"%s\" in the output",
                                 what, member);
    char *out = malloc(128);
    if (!out)
        return weft_result_error(res, WEFT_RETRY, "out of memory");
    res->data_len = (size_t)snprintf(out, 128, "{\"%s\":\"%s\"}", what, v);
    res->data = out;
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    return WEFT_OK;
}

int release_stock(const weft_event_t *ev, weft_result_t *res)
{
    return undo(ev, res, "reservation", "released", "release_stock");
}

int refund_payment(const weft_event_t *ev, weft_result_t *res)
{
    char card[64] = "";
    field(ev, "card", card, sizeof(card));
    if (strcmp(card, "4000000000000341") == 0)
        return weft_result_error(res, WEFT_RETRY, "refund rejected for card %s", card);
    return undo(ev, res, "charge", "refunded", "refund_payment");
}
