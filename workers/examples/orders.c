/*
 * orders.c - the order saga of the README, as one shared object with five
 * entry points (weft.functions.symbol picks one per function):
 *
 *   reserve_stock   step 1      adds "reservation" to the order
 *   charge_payment  step 2      adds "charge"; declines (WEFT_FAIL) when the
 *                               order's "card" is "4000000000000002" or its
 *                               "amount" is over 1000
 *   ship_order      step 3      adds "shipment"
 *   release_stock   undoes 1    gets {"input":..., "output":...} of step 1
 *   refund_payment  undoes 2    likewise for step 2
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

#include "weft_function.h"

WEFT_EXPORT const int weft_abi_version = WEFT_ABI_VERSION;

WEFT_EXPORT int reserve_stock(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int charge_payment(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int ship_order(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int release_stock(const weft_event_t *ev, weft_result_t *res);
WEFT_EXPORT int refund_payment(const weft_event_t *ev, weft_result_t *res);

/* The value of "key" in data (string contents or a bare number), copied to
 * out; 0 when found. Looks at every occurrence of "key": and takes the
 * first, so nested objects are not told apart: fine for flat orders. */
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
        while (j < len && (d[j] == ' ' || d[j] == ':'))
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

static int order_id(const weft_event_t *ev, weft_result_t *res, char *id, size_t len)
{
    if (field(ev, "order", id, len) != 0 || !id[0])
        return weft_result_error(res, WEFT_FAIL, "the order has no \"order\" id");
    return 0;
}

int reserve_stock(const weft_event_t *ev, weft_result_t *res)
{
    char id[64], v[80];
    if (order_id(ev, res, id, sizeof(id)) != 0)
        return WEFT_FAIL;
    snprintf(v, sizeof(v), "r-%s", id);
    return extend(ev, res, "reservation", v);
}

int charge_payment(const weft_event_t *ev, weft_result_t *res)
{
    char id[64], card[64] = "", amount[32] = "0", v[80];
    if (order_id(ev, res, id, sizeof(id)) != 0)
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
    char id[64], v[80];
    if (order_id(ev, res, id, sizeof(id)) != 0)
        return WEFT_FAIL;
    snprintf(v, sizeof(v), "sh-%s", id);
    return extend(ev, res, "shipment", v);
}

/* Compensations get {"saga":..,"instance":..,"step":..,"name":..,
 * "input":{order},"output":{order + the step's member}}. */
static int undo(const weft_event_t *ev, weft_result_t *res, const char *member, const char *what)
{
    char v[80] = "";
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
    return undo(ev, res, "reservation", "released");
}

int refund_payment(const weft_event_t *ev, weft_result_t *res)
{
    return undo(ev, res, "charge", "refunded");
}
