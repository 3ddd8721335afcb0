/*
 * test_match.c - which triggers fire for a message (catalog.c, matching
 * only; no PostgreSQL): broker + topic + optional exact event type,
 * attribute filters, plain messages, the triggers of a topic for messages
 * that cannot be decoded, the distinct subscription topics, linking
 * triggers to functions, and the dead-letter topic default.
 *
 * Catalogs are built by hand with weft_catalog_new / _add_function /
 * _add_trigger / _link, as the loader does from the catalog tables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "match.h"

static void add_fn(weft_catalog_t *cat, const char *name)
{
    weft_function_t fn = {.name = (char *)name, .entry = "fn.so", .timeout_ms = 1000};
    assert_int_equal(weft_catalog_add_function(cat, &fn), 0);
}

static void add_trig(weft_catalog_t *cat, const char *name, weft_broker_t broker, const char *topic,
                     const char *type, const char *fn)
{
    weft_trigger_t t = {
        .name = (char *)name,
        .broker = broker,
        .topic = (char *)topic,
        .event_type = (char *)type,
        .function = (char *)fn,
        .max_attempts = 3,
    };
    assert_int_equal(weft_catalog_add_trigger(cat, &t), 0);
}

static const weft_trigger_t *trig_named(const weft_catalog_t *cat, const char *name)
{
    for (size_t i = 0; i < cat->n_trigs; i++)
        if (strcmp(cat->trigs[i].name, name) == 0)
            return &cat->trigs[i];
    fail_msg("no trigger %s", name);
    return NULL;
}

/* Three Kafka triggers on "orders" (two typed, one untyped), one on
 * "payments", one JetStream trigger on the same "orders" name. */
static int cat_setup(void **state)
{
    weft_catalog_t *cat = weft_catalog_new();
    if (!cat)
        return -1;
    add_fn(cat, "uppercase");
    add_fn(cat, "audit");
    add_trig(cat, "on-created", WEFT_BROKER_KAFKA, "orders", "com.example.order.created",
             "uppercase");
    add_trig(cat, "on-paid", WEFT_BROKER_KAFKA, "orders", "com.example.order.paid", "uppercase");
    add_trig(cat, "audit-all", WEFT_BROKER_KAFKA, "orders", NULL, "audit");
    add_trig(cat, "payments", WEFT_BROKER_KAFKA, "payments", "com.example.payment", "audit");
    add_trig(cat, "js-orders", WEFT_BROKER_JETSTREAM, "orders", NULL, "audit");
    char err[256] = "";
    if (weft_catalog_link(cat, err, sizeof(err)) != 0)
        return -1;
    *state = cat;
    return 0;
}

static int cat_teardown(void **state)
{
    weft_catalog_unref(*state);
    return 0;
}

static int matches(const weft_catalog_t *cat, const char *name, weft_broker_t broker,
                   const char *topic, const char *type)
{
    return weft_trigger_matches(trig_named(cat, name), broker, topic, type, NULL, NULL);
}

static void test_type_filter_is_exact(void **state)
{
    const weft_catalog_t *cat = *state;
    const char *t = "com.example.order.created";
    assert_true(matches(cat, "on-created", WEFT_BROKER_KAFKA, "orders", t));
    assert_false(matches(cat, "on-paid", WEFT_BROKER_KAFKA, "orders", t));
    /* No prefix, suffix or case folding. */
    assert_false(matches(cat, "on-created", WEFT_BROKER_KAFKA, "orders", "com.example.order"));
    assert_false(
        matches(cat, "on-created", WEFT_BROKER_KAFKA, "orders", "com.example.order.created.v2"));
    assert_false(
        matches(cat, "on-created", WEFT_BROKER_KAFKA, "orders", "COM.EXAMPLE.ORDER.CREATED"));
    assert_false(matches(cat, "on-created", WEFT_BROKER_KAFKA, "orders", NULL));
}

static void test_untyped_trigger_matches_any_type(void **state)
{
    const weft_catalog_t *cat = *state;
    assert_true(matches(cat, "audit-all", WEFT_BROKER_KAFKA, "orders", "com.example.order.paid"));
    assert_true(matches(cat, "audit-all", WEFT_BROKER_KAFKA, "orders", "anything"));
    assert_true(matches(cat, "audit-all", WEFT_BROKER_KAFKA, "orders", NULL));
}

static void test_other_topic_or_broker_never_matches(void **state)
{
    const weft_catalog_t *cat = *state;
    const char *t = "com.example.order.created";
    assert_false(matches(cat, "on-created", WEFT_BROKER_KAFKA, "payments", t));
    assert_false(matches(cat, "on-created", WEFT_BROKER_KAFKA, "orders.dlq", t));
    assert_false(matches(cat, "on-created", WEFT_BROKER_KAFKA, "order", t));
    assert_false(matches(cat, "on-created", WEFT_BROKER_KAFKA, "Orders", t));
    assert_false(matches(cat, "on-created", WEFT_BROKER_JETSTREAM, "orders", t));
    assert_false(matches(cat, "on-created", WEFT_BROKER_NATS, "orders", t));
    assert_false(matches(cat, "audit-all", WEFT_BROKER_JETSTREAM, "payments", "x"));
    assert_false(matches(cat, "audit-all", WEFT_BROKER_JETSTREAM, "orders", "x"));
    assert_true(matches(cat, "js-orders", WEFT_BROKER_JETSTREAM, "orders", "x"));
    assert_false(matches(cat, "js-orders", WEFT_BROKER_KAFKA, "orders", "x"));
}

/* A plain message (no CloudEvents attributes) has type "": only triggers
 * without a type filter take it. */
static void test_plain_messages_only_match_untyped(void **state)
{
    const weft_catalog_t *cat = *state;
    int n = 0;
    for (size_t i = 0; i < cat->n_trigs; i++) {
        const weft_trigger_t *t = &cat->trigs[i];
        if (weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "", NULL, NULL)) {
            assert_null(t->event_type);
            n++;
        }
    }
    assert_int_equal(n, 1);
    assert_true(matches(cat, "audit-all", WEFT_BROKER_KAFKA, "orders", ""));
    assert_false(matches(cat, "on-created", WEFT_BROKER_KAFKA, "orders", ""));
}

static void test_on_topic_ignores_type(void **state)
{
    const weft_catalog_t *cat = *state;
    const weft_trigger_t *out[8];
    assert_int_equal(weft_catalog_on_topic(cat, WEFT_BROKER_KAFKA, "orders", out, 8), 3);
    assert_string_equal(out[0]->name, "on-created");
    assert_string_equal(out[1]->name, "on-paid");
    assert_string_equal(out[2]->name, "audit-all");
    assert_int_equal(weft_catalog_on_topic(cat, WEFT_BROKER_JETSTREAM, "orders", out, 8), 1);
    assert_string_equal(out[0]->name, "js-orders");
    assert_int_equal(weft_catalog_on_topic(cat, WEFT_BROKER_KAFKA, "payments", out, 8), 1);
    assert_int_equal(weft_catalog_on_topic(cat, WEFT_BROKER_KAFKA, "nothing", out, 8), 0);
    assert_int_equal(weft_catalog_on_topic(cat, WEFT_BROKER_NATS, "orders", out, 8), 0);
    /* Bounded by max. */
    const weft_trigger_t *two[2] = {NULL, NULL};
    assert_int_equal(weft_catalog_on_topic(cat, WEFT_BROKER_KAFKA, "orders", two, 2), 2);
    assert_string_equal(two[0]->name, "on-created");
    assert_string_equal(two[1]->name, "on-paid");
}

static void test_topics_deduplicated(void **state)
{
    const weft_catalog_t *cat = *state;
    const char *out[8];
    assert_int_equal(weft_catalog_topics(cat, WEFT_BROKER_KAFKA, out, 8), 2);
    assert_string_equal(out[0], "orders");
    assert_string_equal(out[1], "payments");
    assert_int_equal(weft_catalog_topics(cat, WEFT_BROKER_JETSTREAM, out, 8), 1);
    assert_string_equal(out[0], "orders");
    assert_int_equal(weft_catalog_topics(cat, WEFT_BROKER_NATS, out, 8), 0);
    /* Bounded by max. */
    const char *one[1] = {NULL};
    assert_int_equal(weft_catalog_topics(cat, WEFT_BROKER_KAFKA, one, 1), 1);
    assert_string_equal(one[0], "orders");
}

static void test_link_resolves_functions(void **state)
{
    const weft_catalog_t *cat = *state;
    const weft_trigger_t *t = trig_named(cat, "on-created");
    assert_non_null(t->fn);
    assert_string_equal(t->fn->name, "uppercase");
    assert_ptr_equal(t->fn, weft_catalog_function(cat, "uppercase"));
    assert_string_equal(trig_named(cat, "payments")->fn->name, "audit");
    assert_null(weft_catalog_function(cat, "nope"));
}

static void test_link_unknown_function_fails(void **state)
{
    (void)state;
    weft_catalog_t *cat = weft_catalog_new();
    assert_non_null(cat);
    add_fn(cat, "uppercase");
    add_trig(cat, "good", WEFT_BROKER_KAFKA, "t", NULL, "uppercase");
    add_trig(cat, "broken", WEFT_BROKER_KAFKA, "t", NULL, "missing_fn");
    char err[256] = "";
    assert_int_equal(weft_catalog_link(cat, err, sizeof(err)), -1);
    assert_string_equal(err, "trigger broken names unknown function missing_fn");
    weft_catalog_unref(cat);
}

static void test_dead_letter_topic_default(void **state)
{
    (void)state;
    weft_catalog_t *cat = weft_catalog_new();
    assert_non_null(cat);
    add_fn(cat, "f");
    add_trig(cat, "dflt", WEFT_BROKER_KAFKA, "orders.v1", NULL, "f");
    weft_trigger_t t = {.name = "explicit",
                        .topic = "orders.v1",
                        .function = "f",
                        .dead_letter_topic = "graveyard"};
    assert_int_equal(weft_catalog_add_trigger(cat, &t), 0);
    assert_string_equal(trig_named(cat, "dflt")->dead_letter_topic, "orders.v1.dlq");
    assert_string_equal(trig_named(cat, "explicit")->dead_letter_topic, "graveyard");
    weft_catalog_unref(cat);
}

/* The catalog keeps its own copies: the caller's strings may go away (the
 * loader passes PGresult memory). */
static void test_add_copies_strings(void **state)
{
    (void)state;
    weft_catalog_t *cat = weft_catalog_new();
    assert_non_null(cat);
    char name[16] = "fn1", entry[16] = "lib.so", tname[16] = "t1", topic[16] = "orders",
         type[16] = "x.y";
    weft_function_t fn = {.name = name, .entry = entry};
    assert_int_equal(weft_catalog_add_function(cat, &fn), 0);
    weft_trigger_t t = {.name = tname, .topic = topic, .event_type = type, .function = name};
    assert_int_equal(weft_catalog_add_trigger(cat, &t), 0);
    memset(name, 'Z', sizeof(name) - 1);
    memset(entry, 'Z', sizeof(entry) - 1);
    memset(tname, 'Z', sizeof(tname) - 1);
    memset(topic, 'Z', sizeof(topic) - 1);
    memset(type, 'Z', sizeof(type) - 1);
    char err[256];
    assert_int_equal(weft_catalog_link(cat, err, sizeof(err)), 0);
    assert_string_equal(cat->trigs[0].name, "t1");
    assert_true(
        weft_trigger_matches(&cat->trigs[0], WEFT_BROKER_KAFKA, "orders", "x.y", NULL, NULL));
    assert_string_equal(cat->trigs[0].fn->entry, "lib.so");
    /* Defaults for a function's runtime and symbol. */
    assert_string_equal(cat->fns[0].runtime, "shared_object");
    assert_string_equal(cat->fns[0].symbol, "weft_handle");
    weft_catalog_unref(cat);
}

/* The reference count keeps a catalog alive for in-flight work. */
static void test_refcount(void **state)
{
    (void)state;
    weft_catalog_t *cat = weft_catalog_new();
    assert_non_null(cat);
    assert_int_equal(cat->refs, 1);
    add_fn(cat, "f");
    weft_catalog_ref(cat);
    assert_int_equal(cat->refs, 2);
    weft_catalog_unref(cat);
    assert_int_equal(cat->refs, 1);
    assert_string_equal(cat->fns[0].name, "f"); /* still alive (ASan checks) */
    weft_catalog_unref(cat);
    weft_catalog_unref(NULL);
}

/* Attributes of the event under test, for filters. */
typedef struct attrs {
    const char *kv[8][2];
} attrs_t;

static const char *attr_of(void *ev, const char *name)
{
    attrs_t *a = ev;
    for (int i = 0; i < 8 && a->kv[i][0]; i++)
        if (strcmp(a->kv[i][0], name) == 0)
            return a->kv[i][1];
    return NULL;
}

static void test_filters(void **state)
{
    (void)state;
    weft_catalog_t *cat = weft_catalog_new();
    assert_non_null(cat);
    add_fn(cat, "f");
    add_trig(cat, "eu", WEFT_BROKER_KAFKA, "orders", NULL, "f");
    assert_int_equal(weft_catalog_add_filter(cat, "eu", "subject", WEFT_FILTER_PREFIX, "eu/"), 0);
    assert_int_equal(weft_catalog_add_filter(cat, "eu", "source", WEFT_FILTER_SUFFIX, "/checkout"),
                     0);
    assert_int_equal(weft_catalog_add_filter(cat, "eu", "tenant", WEFT_FILTER_EXACT, "acme"), 0);
    assert_true(
        weft_catalog_add_filter(cat, "no-such-trigger", "subject", WEFT_FILTER_EXACT, "x") != 0);
    char err[256];
    assert_int_equal(weft_catalog_link(cat, err, sizeof(err)), 0);
    const weft_trigger_t *t = trig_named(cat, "eu");

    attrs_t ok = {{{"subject", "eu/de/42"}, {"source", "shop/checkout"}, {"tenant", "acme"}}};
    assert_true(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "any", attr_of, &ok));
    /* Every filter must hold (AND). */
    attrs_t bad_prefix = {
        {{"subject", "us/eu/42"}, {"source", "shop/checkout"}, {"tenant", "acme"}}};
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "any", attr_of, &bad_prefix));
    attrs_t bad_suffix = {{{"subject", "eu/1"}, {"source", "shop/checkout/x"}, {"tenant", "acme"}}};
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "any", attr_of, &bad_suffix));
    attrs_t bad_exact = {{{"subject", "eu/1"}, {"source", "/checkout"}, {"tenant", "acme2"}}};
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "any", attr_of, &bad_exact));
    /* An absent attribute never satisfies a filter. */
    attrs_t missing = {{{"subject", "eu/1"}, {"source", "/checkout"}}};
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "any", attr_of, &missing));
    /* A value shorter than the prefix or suffix. */
    attrs_t shorter = {{{"subject", "eu"}, {"source", "/checkout"}, {"tenant", "acme"}}};
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "any", attr_of, &shorter));
    /* Without an attribute lookup, filters cannot hold. */
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "any", NULL, NULL));
    /* Filters never widen topic matching. */
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "other", "any", attr_of, &ok));
    weft_catalog_unref(cat);
}

static void test_filter_on_type(void **state)
{
    (void)state;
    weft_catalog_t *cat = weft_catalog_new();
    assert_non_null(cat);
    add_fn(cat, "f");
    add_trig(cat, "orders-any", WEFT_BROKER_KAFKA, "orders", NULL, "f");
    assert_int_equal(
        weft_catalog_add_filter(cat, "orders-any", "type", WEFT_FILTER_PREFIX, "com.example."), 0);
    const weft_trigger_t *t = trig_named(cat, "orders-any");
    /* "type" is the event's type, no lookup needed. */
    assert_true(
        weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "com.example.order", NULL, NULL));
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "org.other", NULL, NULL));
    /* A plain message has type "". */
    assert_false(weft_trigger_matches(t, WEFT_BROKER_KAFKA, "orders", "", NULL, NULL));

    weft_filter_op_t op = WEFT_FILTER_SUFFIX;
    assert_int_equal(weft_filter_op_parse("exact", &op), 0);
    assert_int_equal(op, WEFT_FILTER_EXACT);
    assert_int_equal(weft_filter_op_parse("prefix", &op), 0);
    assert_int_equal(op, WEFT_FILTER_PREFIX);
    assert_int_equal(weft_filter_op_parse("suffix", &op), 0);
    assert_int_equal(op, WEFT_FILTER_SUFFIX);
    assert_int_equal(weft_filter_op_parse("regex", &op), -1);
    assert_int_equal(weft_filter_op_parse("", &op), -1);
    weft_catalog_unref(cat);
}

#define CAT_TEST(f) cmocka_unit_test_setup_teardown(f, cat_setup, cat_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        CAT_TEST(test_type_filter_is_exact),
        CAT_TEST(test_untyped_trigger_matches_any_type),
        CAT_TEST(test_other_topic_or_broker_never_matches),
        CAT_TEST(test_plain_messages_only_match_untyped),
        CAT_TEST(test_on_topic_ignores_type),
        CAT_TEST(test_topics_deduplicated),
        CAT_TEST(test_link_resolves_functions),
        cmocka_unit_test(test_link_unknown_function_fails),
        cmocka_unit_test(test_dead_letter_topic_default),
        cmocka_unit_test(test_add_copies_strings),
        cmocka_unit_test(test_refcount),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_filter_on_type),
    };
    return cmocka_run_group_tests_name("match", tests, NULL, NULL);
}
