/*
 * cli_publish.c - `weft publish`: build a valid CloudEvent from flags (or
 * one per line of stdin with --lines), publish it and wait for the
 * broker's acknowledgement.
 *
 * Runs in the CLI process. Kafka binary mode by default (ce_* headers,
 * value = data, exactly what envelope.c decodes); --structured writes an
 * application/cloudevents+json document instead. Every event is validated
 * before anything is sent; with --lines a bad line is reported with its
 * number and the others are still published. The exit code is 0 only when
 * every event was acknowledged.
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nats.h"
#include "kafka.h"

#define ACK_TIMEOUT_MS 10000
#define LINES_ACK_TIMEOUT_MS 30000
#define MAX_EXT 32

void weft_publish_usage(FILE *f)
{
    fprintf(f, "usage: weft publish --to URL --type TYPE [--source S] [--subject S] [--id ID]\n"
               "                    [--key K] [--data STRING | --data @FILE | --data -]\n"
               "                    [--content-type CT] [--structured] [--ext NAME=VALUE ...]\n"
               "       weft publish --to URL --lines [--type T] [--source S] ... < events.jsonl\n"
               "\n"
               "Builds a CloudEvent 1.0, publishes it and waits for the broker's\n"
               "acknowledgement (up to 10 s). id (a random UUID) and time (now) are\n"
               "generated when not given; source defaults to /weft/cli; the content type\n"
               "is guessed from the data when not given (application/json, text/plain or\n"
               "application/octet-stream).\n"
               "\n"
               "  --to URL          kafka://TOPIC, jetstream://SUBJECT (waits for the PubAck;\n"
               "                    the event id is the Nats-Msg-Id) or nats://SUBJECT (core\n"
               "                    NATS: flushed to the server, which acknowledges nothing)\n"
               "  --data V          the data: a string, @FILE for a file's bytes, - for stdin\n"
               "  --key K           the Kafka message key (partitioning, ordered triggers);\n"
               "                    ignored on NATS\n"
               "  --ext NAME=VALUE  an extension attribute (NAME is [a-z0-9]), repeatable\n"
               "  --structured      structured mode (application/cloudevents+json) instead of\n"
               "                    binary mode (ce_* headers, value = data)\n"
               "  --lines           read one JSON document per line from stdin, publish each;\n"
               "                    a bad line is reported with its number, the rest go on,\n"
               "                    and the exit code is 1 if any line was bad\n"
               "\n"
               "A --lines document is a JSON object shaped like a structured CloudEvent:\n"
               "  {\"type\":\"order.created\",\"id\":\"o-1\",\"subject\":\"orders/1\",\n"
               "   \"data\":{\"qty\":2},\"region\":\"eu\",\"partitionkey\":\"customer-7\"}\n"
               "attributes are strings (numbers and booleans are taken as text); \"data\" is\n"
               "any JSON value (a string with a non-JSON datacontenttype is the text\n"
               "itself), or \"data_base64\" for bytes; \"partitionkey\" is also the message\n"
               "key. Flags given with --lines are defaults for every line. Empty lines are\n"
               "skipped.\n"
               "\n"
               "examples:\n"
               "  weft publish --to kafka://orders --type order.created --data '{\"id\":7}'\n"
               "  weft publish --to kafka://orders --type order.created --key customer-7 \\\n"
               "      --subject orders/7 --ext region=eu --data @order.json\n"
               "  weft publish --to kafka://images --type image.uploaded --data - < cat.png\n"
               "  weft publish --to kafka://orders --lines --source /shop < orders.jsonl\n"
               "  weft publish --to jetstream://orders.created --type order.created --data @o.json\n");
}

/* JetStream and core NATS are published by the NATS adapter, which this
 * build does not have yet. */
typedef struct pub_opts {
    weft_cli_url_t url;
    const char *type, *source, *subject, *id, *key, *data, *content_type;
    const char *ext[MAX_EXT];
    int n_ext;
    int structured, lines;
} pub_opts_t;

typedef struct pub_state {
    long delivered, failed;
    char last_err[256];
    int report_lines; /* msg_opaque is a line number */
} pub_state_t;

static void on_delivered(void *opaque, void *msg_opaque, const char *err)
{
    pub_state_t *st = opaque;
    if (!err) {
        st->delivered++;
        return;
    }
    st->failed++;
    snprintf(st->last_err, sizeof(st->last_err), "%s", err);
    if (st->report_lines)
        fprintf(stderr, "weft publish: line %ld: not delivered: %s\n", (long)(intptr_t)msg_opaque,
                err);
}

static void on_noop(void *opaque, const char *topic, int32_t partition)
{
    (void)opaque;
    (void)topic;
    (void)partition;
}

/* Applies the flags to ev (as defaults when only_missing). */
static int apply_flags(const pub_opts_t *o, weft_cli_event_t *ev, int only_missing, char *errstr,
                       size_t errlen)
{
    const struct {
        const char *name, *value;
    } flags[] = {{"type", o->type},
                 {"source", o->source ? o->source : "/weft/cli"},
                 {"subject", o->subject},
                 {"id", o->id},
                 {"datacontenttype", o->content_type}};
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (!flags[i].value || (only_missing && weft_cli_event_get(ev, flags[i].name)))
            continue;
        if (weft_cli_event_set(ev, flags[i].name, flags[i].value) != 0)
            goto full;
    }
    for (int i = 0; i < o->n_ext; i++) {
        const char *eq = strchr(o->ext[i], '=');
        char name[80];
        snprintf(name, sizeof(name), "%.*s", (int)(eq - o->ext[i]), o->ext[i]);
        if (only_missing && weft_cli_event_get(ev, name))
            continue;
        if (weft_cli_event_set(ev, name, eq + 1) != 0)
            goto full;
    }
    return 0;
full:
    snprintf(errstr, errlen, "too many attributes (at most %d)", WEFT_CLI_MAX_ATTRS);
    return -1;
}

/* Where events go: a Kafka producer (acknowledged asynchronously, see
 * on_delivered) or a NATS connection (each publish waits for its answer:
 * the PubAck on JetStream, the server's flush on core NATS). */
typedef struct sink {
    weft_broker_t broker;
    weft_kafka_t *k;
    weft_nats_t *nc;
    pub_state_t *st;
    int timeout_ms;
    int duplicate; /* JetStream: the last publish was one the stream had */
} sink_t;

/* Sends one event: queued on Kafka (waits while librdkafka's queue is
 * full), published and answered on NATS. */
static int produce_event(sink_t *sk, const pub_opts_t *o, const weft_cli_event_t *ev,
                         void *opaque, char *errstr, size_t errlen)
{
    /* A line's own partitionkey wins over --key (a default for lines); a
     * single event's --key wins over --ext partitionkey. */
    const char *pk = weft_cli_event_get(ev, "partitionkey");
    const char *key = o->lines ? (pk ? pk : o->key) : (o->key ? o->key : pk);
    weft_header_t hdrs[WEFT_CLI_MAX_ATTRS + 1];
    size_t nh;
    const void *value;
    size_t len;
    char *doc = NULL;
    if (o->structured) {
        doc = weft_cli_event_json(ev, &len);
        if (!doc) {
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
        value = doc;
        hdrs[0] = (weft_header_t){"content-type", "application/cloudevents+json; charset=UTF-8",
                                  strlen("application/cloudevents+json; charset=UTF-8")};
        nh = 1;
    } else {
        nh = weft_cli_event_headers(ev, hdrs);
        value = ev->data;
        len = ev->data_len;
    }
    int rc, retriable;
    if (sk->broker == WEFT_BROKER_KAFKA) {
        for (int tries = 0;; tries++) {
            rc = weft_kafka_produce(sk->k, o->url.name, key, key ? strlen(key) : 0, value, len,
                                    hdrs, nh, opaque, &retriable, errstr, errlen);
            if (rc == 0 || !retriable || tries > 300)
                break;
            weft_kafka_flush(sk->k, 100); /* queue full: let deliveries drain */
        }
    } else {
        /* The event id is the JetStream message id: publishing the same
         * event twice within the stream's duplicate window stores it once. */
        if (sk->broker == WEFT_BROKER_JETSTREAM)
            rc = weft_nats_js_publish(sk->nc, o->url.name, weft_cli_event_get(ev, "id"), hdrs, nh,
                                      value, len, sk->timeout_ms, NULL, &sk->duplicate, errstr,
                                      errlen);
        else
            rc = weft_nats_publish(sk->nc, o->url.name, hdrs, nh, value, len, errstr, errlen);
        if (rc == 0) {
            sk->st->delivered++;
        } else {
            sk->st->failed++;
            snprintf(sk->st->last_err, sizeof(sk->st->last_err), "%s", errstr);
        }
    }
    free(doc);
    return rc;
}

static int check_ext(const char *s, char *errstr, size_t errlen)
{
    const char *eq = strchr(s, '=');
    static const char *const own[] = {"id",   "source",      "type",           "specversion",
                                      "data", "data_base64", "datacontenttype"};
    if (!eq || eq == s || (size_t)(eq - s) > 64 || !weft_ce_attr_name_valid(s, (size_t)(eq - s))) {
        snprintf(errstr, errlen, "--ext \"%s\": expected NAME=VALUE with NAME of [a-z0-9]", s);
        return -1;
    }
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        if (strlen(own[i]) == (size_t)(eq - s) && strncmp(s, own[i], (size_t)(eq - s)) == 0) {
            snprintf(errstr, errlen, "--ext %s: set %s with its own flag", own[i], own[i]);
            return -1;
        }
    }
    return 0;
}

static int sink_open(sink_t *sk, weft_config_t *cfg, const pub_opts_t *o, pub_state_t *st,
                     int timeout_ms)
{
    memset(sk, 0, sizeof(*sk));
    sk->broker = o->url.broker;
    sk->st = st;
    sk->timeout_ms = timeout_ms;
    char err[512];
    if (sk->broker != WEFT_BROKER_KAFKA) {
        const char *url = weft_config_str(cfg, "nats.url");
        if (!url) {
            fprintf(stderr, "weft publish: nats.url is not set (config file or WEFT_NATS_URL)\n");
            return -2;
        }
        sk->nc = weft_nats_connect(url, timeout_ms, err, sizeof(err));
        if (!sk->nc)
            fprintf(stderr, "weft publish: %s\n", err);
        return sk->nc ? 0 : -1; /* unreachable: a runtime error */
    }
    static weft_kafka_cbs_t cbs;
    cbs = (weft_kafka_cbs_t){on_noop, on_noop, on_delivered, st};
    /* A bounded wait for the acknowledgement unless the operator set one. */
    if (!weft_config_get(cfg, "kafka.producer.message.timeout.ms", NULL) &&
        !weft_config_get(cfg, "kafka.message.timeout.ms", NULL)) {
        char v[16];
        snprintf(v, sizeof(v), "%d", timeout_ms);
        weft_config_set(cfg, "kafka.producer.message.timeout.ms", v);
    }
    sk->k = weft_kafka_producer_new(cfg, &cbs, err, sizeof(err));
    if (!sk->k)
        fprintf(stderr, "weft publish: %s\n", err);
    return sk->k ? 0 : -2; /* librdkafka refused its configuration */
}

/* Kafka: delivery reports. */
static void sink_serve(sink_t *sk)
{
    if (sk->k)
        weft_kafka_serve(sk->k);
}

/* Waits until every event has its answer; non-zero when some did not. */
static int sink_flush(sink_t *sk)
{
    return sk->k ? weft_kafka_flush(sk->k, sk->timeout_ms + 5000) : 0;
}

static void sink_close(sink_t *sk)
{
    if (sk->k)
        weft_kafka_destroy(sk->k, 1000);
    weft_nats_destroy(sk->nc);
}

static int publish_one(weft_config_t *cfg, const pub_opts_t *o)
{
    weft_cli_event_t ev;
    memset(&ev, 0, sizeof(ev));
    char err[512];
    int rc = 1;
    if (apply_flags(o, &ev, 0, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft publish: %s\n", err);
        goto out;
    }
    if (o->data) {
        uint8_t *buf = NULL;
        size_t len = 0;
        if (o->data[0] == '@' || strcmp(o->data, "-") == 0) {
            if (weft_cli_read_file(o->data[0] == '@' ? o->data + 1 : "-", &buf, &len, err,
                                   sizeof(err)) != 0) {
                fprintf(stderr, "weft publish: --data: %s\n", err);
                rc = 2;
                goto out;
            }
        }
        int set = buf ? weft_cli_event_set_data(&ev, buf, len)
                      : weft_cli_event_set_data(&ev, o->data, strlen(o->data));
        free(buf);
        if (set != 0) {
            fprintf(stderr, "weft publish: out of memory\n");
            goto out;
        }
    }
    if (weft_cli_event_finish(&ev, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft publish: %s\n", err);
        rc = 2;
        goto out;
    }
    pub_state_t st = {0};
    sink_t sk;
    int opened = sink_open(&sk, cfg, o, &st, ACK_TIMEOUT_MS);
    if (opened != 0) {
        rc = opened == -2 ? 2 : 1;
        goto out;
    }
    const char *scheme = weft_cli_scheme(o->url.broker);
    if (produce_event(&sk, o, &ev, NULL, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft publish: %s://%s: %s\n", scheme, o->url.name, err);
    } else if (sink_flush(&sk) != 0 || st.delivered != 1) {
        fprintf(stderr, "weft publish: %s://%s: the broker did not acknowledge the event: %s\n",
                scheme, o->url.name,
                st.failed ? st.last_err : "no answer in time (is the broker reachable?)");
    } else {
        printf("published %s to %s://%s%s\n", weft_cli_event_get(&ev, "id"), scheme, o->url.name,
               sk.duplicate ? " (a duplicate: the stream already had this id)" : "");
        rc = 0;
    }
    sink_close(&sk);
out:
    weft_cli_event_free(&ev);
    return rc;
}

static int publish_lines(weft_config_t *cfg, const pub_opts_t *o)
{
    pub_state_t st = {0};
    st.report_lines = 1;
    sink_t sk;
    int opened = sink_open(&sk, cfg, o, &st, LINES_ACK_TIMEOUT_MS);
    if (opened != 0)
        return opened == -2 ? 2 : 1;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0, queued = 0, bad = 0;
    weft_cli_progress_t prog;
    weft_cli_progress_start(&prog, 0, "events");
    char err[512];
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        size_t i = 0;
        while (i < (size_t)n && (line[i] == ' ' || line[i] == '\t'))
            i++;
        if (i == (size_t)n)
            continue;
        weft_cli_event_t ev;
        memset(&ev, 0, sizeof(ev));
        if (weft_cli_event_from_json(line, (size_t)n, &ev, err, sizeof(err)) != 0 ||
            apply_flags(o, &ev, 1, err, sizeof(err)) != 0 ||
            weft_cli_event_finish(&ev, err, sizeof(err)) != 0) {
            if (prog.enabled)
                fprintf(stderr, "\r\033[K");
            fprintf(stderr, "weft publish: line %ld: %s\n", lineno, err);
            bad++;
        } else if (produce_event(&sk, o, &ev, (void *)(intptr_t)lineno, err, sizeof(err)) != 0) {
            fprintf(stderr, "weft publish: line %ld: %s\n", lineno, err);
            bad++;
        } else {
            queued++;
        }
        weft_cli_event_free(&ev);
        sink_serve(&sk);
        weft_cli_progress_update(&prog, st.delivered);
    }
    free(line);
    int left = sink_flush(&sk);
    weft_cli_progress_update(&prog, st.delivered);
    weft_cli_progress_end(&prog);
    printf("published %ld event%s to %s://%s", st.delivered, st.delivered == 1 ? "" : "s",
           weft_cli_scheme(o->url.broker), o->url.name);
    if (bad || st.failed || left)
        printf(" (%ld bad line%s, %ld not acknowledged)", bad, bad == 1 ? "" : "s",
               st.failed + left);
    printf("\n");
    if (left)
        fprintf(stderr,
                "weft publish: %d event%s not acknowledged in time (is the broker "
                "reachable?)\n",
                left, left == 1 ? "" : "s");
    sink_close(&sk);
    return bad || st.failed || left ? 1 : 0;
}

int weft_publish_main(weft_config_t *cfg, int argc, char **argv)
{
    pub_opts_t o;
    memset(&o, 0, sizeof(o));
    const char *to = NULL;
    static const struct option opts[] = {{"to", required_argument, NULL, 'o'},
                                         {"type", required_argument, NULL, 't'},
                                         {"source", required_argument, NULL, 's'},
                                         {"subject", required_argument, NULL, 'S'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"key", required_argument, NULL, 'k'},
                                         {"data", required_argument, NULL, 'd'},
                                         {"content-type", required_argument, NULL, 'c'},
                                         {"structured", no_argument, NULL, 'j'},
                                         {"ext", required_argument, NULL, 'e'},
                                         {"lines", no_argument, NULL, 'l'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    char err[512];
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "o:t:s:S:i:k:d:c:je:lh", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            to = optarg;
            break;
        case 't':
            o.type = optarg;
            break;
        case 's':
            o.source = optarg;
            break;
        case 'S':
            o.subject = optarg;
            break;
        case 'i':
            o.id = optarg;
            break;
        case 'k':
            o.key = optarg;
            break;
        case 'd':
            o.data = optarg;
            break;
        case 'c':
            o.content_type = optarg;
            break;
        case 'j':
            o.structured = 1;
            break;
        case 'e':
            if (check_ext(optarg, err, sizeof(err)) != 0) {
                fprintf(stderr, "weft publish: %s\n", err);
                return 2;
            }
            if (o.n_ext == MAX_EXT) {
                fprintf(stderr, "weft publish: at most %d --ext\n", MAX_EXT);
                return 2;
            }
            o.ext[o.n_ext++] = optarg;
            break;
        case 'l':
            o.lines = 1;
            break;
        case 'h':
            weft_publish_usage(stdout);
            return 0;
        default:
            weft_publish_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weft publish: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!to) {
        fprintf(stderr, "weft publish: say where: --to kafka://TOPIC\n");
        return 2;
    }
    if (weft_cli_parse_url(to, &o.url, err, sizeof(err)) != 0) {
        fprintf(stderr, "weft publish: --to %s\n", err);
        return 2;
    }
    if (o.lines && o.data) {
        fprintf(stderr, "weft publish: --lines reads events from stdin; --data does not apply\n");
        return 2;
    }
    if (o.lines && o.id) {
        fprintf(stderr, "weft publish: --id with --lines would give every event the same id\n");
        return 2;
    }
    if (!o.lines && !o.type) {
        fprintf(stderr, "weft publish: --type is required (the CloudEvents type)\n");
        return 2;
    }
    return o.lines ? publish_lines(cfg, &o) : publish_one(cfg, &o);
}
