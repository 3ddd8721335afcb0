/*
 * fixture.c - see fixture.h. Real servers, real processes: nothing here
 * mocks a component the tests are about.
 */
#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Dispatchers started by fx_run_start and not yet stopped: a test that
 * fails between start and stop must not leave one running, so fx_down
 * kills whatever is still here. */
static pid_t running[16];

static void running_set(pid_t old, pid_t pid)
{
    for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
        if (running[i] == old) {
            running[i] = pid;
            return;
        }
    }
}

uint64_t fx_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int fx_log_wait(const fx_t *fx, const char *logname, const char *pattern, int timeout_ms)
{
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "grep -q -- '%s' '%s/%s'", pattern, fx->state_dir, logname);
    uint64_t deadline = fx_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (system(cmd) == 0)
            return 1;
        if (fx_now_ms() >= deadline)
            return 0;
        usleep(50000);
    }
}

static void env_or(char *dst, size_t len, const char *name, const char *def)
{
    const char *v = getenv(name);
    snprintf(dst, len, "%s", v && *v ? v : def);
}

static void read_env_value(const char *file, const char *name, char *out, size_t len)
{
    FILE *f = fopen(file, "r");
    out[0] = '\0';
    if (!f)
        return;
    char line[1024], pfx[128];
    snprintf(pfx, sizeof(pfx), "export %s='", name);
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, pfx, strlen(pfx)) == 0) {
            char *v = line + strlen(pfx);
            char *q = strrchr(v, '\'');
            if (q)
                *q = '\0';
            snprintf(out, len, "%s", v);
        }
    }
    fclose(f);
}

/* The broker kind the tests run on: WEFT_KAFKA (apache, the default, or
 * mock), as ops/stack reads it. */
static int kafka_is_mock(void)
{
    const char *k = getenv("WEFT_KAFKA");
    return k && strcmp(k, "mock") == 0;
}

/* `ops/stack up` (which starts what is not running), then the addresses
 * from stack.env. The mock creates the topics itself (they are its command
 * line); Apache Kafka gets none from ops/stack (a JVM per topic is slow)
 * and the fixture creates them with librdkafka's admin API. */
static int stack_up(fx_t *fx, const char *topics)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "WEFT_STATE_DIR='%s' WEFT_BUILD_DIR='%s/..' WEFT_KAFKA_TOPICS='%s' "
             "WEFT_KAFKA_NODES=%d '%s/ops/stack' up >>'%s/stack.out' 2>&1",
             fx->state_dir, fx->bin_dir, kafka_is_mock() ? topics : "", fx->kafka_nodes,
             fx->src_dir, fx->state_dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "ops/stack up failed, see %s/stack.out\n", fx->state_dir);
        snprintf(cmd, sizeof(cmd), "cat '%s/stack.out' >&2", fx->state_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(could not show it)\n");
        return -1;
    }
    char envf[512], nodes[16];
    snprintf(envf, sizeof(envf), "%s/stack.env", fx->state_dir);
    read_env_value(envf, "WEFT_PG", fx->pg, sizeof(fx->pg));
    read_env_value(envf, "WEFT_KAFKA_BROKERS", fx->brokers, sizeof(fx->brokers));
    read_env_value(envf, "WEFT_NATS_URL", fx->nats, sizeof(fx->nats));
    read_env_value(envf, "WEFT_KAFKA_KIND", fx->kafka_kind, sizeof(fx->kafka_kind));
    read_env_value(envf, "WEFT_KAFKA_NODES", nodes, sizeof(nodes));
    if (!fx->pg[0] || !fx->brokers[0] || !fx->kafka_kind[0]) {
        fprintf(stderr, "stack.env is incomplete in %s\n", fx->state_dir);
        return -1;
    }
    if (atoi(nodes) != fx->kafka_nodes) {
        fprintf(stderr, "stack.env says %s Kafka nodes, the test asked for %d\n", nodes,
                fx->kafka_nodes);
        return -1;
    }
    if (strcmp(fx->kafka_kind, "mock") != 0 && topics && *topics)
        return fx_kafka_create_topics(fx, topics);
    return 0;
}

int fx_up_cluster(fx_t *fx, const char *topics, int kafka_nodes)
{
    memset(fx, 0, sizeof(*fx));
    fx->kafka_nodes = kafka_nodes;
    env_or(fx->bin_dir, sizeof(fx->bin_dir), "WEFT_BIN_DIR", "build/bin");
    env_or(fx->src_dir, sizeof(fx->src_dir), "WEFT_SOURCE_DIR", ".");
    /* ops/test sets WEFT_TEST_STATE_ROOT (<tree>/test-state) so that each
     * tree's stacks live, and are cleaned up, apart from other trees'. */
    const char *root = getenv("WEFT_TEST_STATE_ROOT");
    if (root && *root && strlen(root) < 200) {
        mkdir(root, 0755); /* EEXIST is fine; any other failure shows at mkdtemp */
        snprintf(fx->state_dir, sizeof(fx->state_dir), "%s/weft-test-XXXXXX", root);
    } else
        snprintf(fx->state_dir, sizeof(fx->state_dir), "/tmp/weft-test-XXXXXX");
    if (!mkdtemp(fx->state_dir)) {
        perror("mkdtemp");
        return -1;
    }
    return stack_up(fx, topics);
}

int fx_up(fx_t *fx, const char *topics)
{
    return fx_up_cluster(fx, topics, 1);
}

int fx_up_migrated(fx_t *fx, const char *topics)
{
    if (fx_up(fx, topics) != 0)
        return -1;
    char out[8192];
    const char *args[] = {"migrate", NULL};
    if (fx_weft(fx, out, sizeof(out), args) != 0) {
        fprintf(stderr, "weft migrate failed:\n%s\n", out);
        return -1;
    }
    return 0;
}

void fx_down(fx_t *fx)
{
    for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++) {
        if (running[i] > 0) {
            fprintf(stderr, "fx_down: weft run pid %d was still running, killing it\n",
                    (int)running[i]);
            fx_run_kill9(running[i]);
        }
    }
    if (!fx->state_dir[0])
        return;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "WEFT_STATE_DIR='%s' '%s/ops/stack' down >>'%s/stack.out' 2>&1",
             fx->state_dir, fx->src_dir, fx->state_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "ops/stack down failed, see %s/stack.out\n", fx->state_dir);
    if (!getenv("WEFT_KEEP_STATE")) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->state_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", fx->state_dir);
    }
}

/* Builds the child's environment: ours plus the stack's. */
static char **child_env(const fx_t *fx, const char *set)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 8, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(environ[i], "WEFT_PG=", 8) == 0 ||
            strncmp(environ[i], "WEFT_KAFKA_BROKERS=", 19) == 0 ||
            strncmp(environ[i], "WEFT_NATS_URL=", 14) == 0 ||
            strncmp(environ[i], "WEFT_SET=", 9) == 0)
            continue;
        env[k++] = strdup(environ[i]);
    }
    if (asprintf(&env[k++], "WEFT_PG=%s", fx->pg) < 0 ||
        asprintf(&env[k++], "WEFT_KAFKA_BROKERS=%s", fx->brokers) < 0 ||
        asprintf(&env[k++], "WEFT_NATS_URL=%s", fx->nats) < 0 ||
        asprintf(&env[k++], "WEFT_SET=%s", set ? set : "") < 0)
        abort();
    env[k] = NULL;
    return env;
}

static void env_free(char **env)
{
    for (size_t i = 0; env[i]; i++)
        free(env[i]);
    free(env);
}

/* Starts `weft ARGS...` with stdout and stderr to outfile (truncated or
 * appended) and the stack's environment plus WEFT_SET=set. */
static pid_t spawn_weft(const fx_t *fx, const char *const *args, const char *outfile, int append,
                        const char *set)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/weft", fx->bin_dir);
    const char *argv[32];
    int a = 0;
    argv[a++] = path;
    for (int i = 0; args[i] && a < 31; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, outfile,
                                     O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char **env = child_env(fx, set);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, NULL, (char *const *)argv, env);
    posix_spawn_file_actions_destroy(&fa);
    env_free(env);
    if (rc != 0) {
        fprintf(stderr, "posix_spawn(%s) failed: %s\n", path, strerror(rc));
        return -1;
    }
    return pid;
}

int fx_weft(const fx_t *fx, char *out, size_t outlen, const char *const *args)
{
    char outfile[300];
    snprintf(outfile, sizeof(outfile), "%s/weft-cmd.out", fx->state_dir);
    pid_t pid = spawn_weft(fx, args, outfile, 0, NULL);
    if (pid < 0)
        return -1;
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (out && outlen) {
        FILE *f = fopen(outfile, "r");
        size_t n = f ? fread(out, 1, outlen - 1, f) : 0;
        out[n] = '\0';
        if (f)
            fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

pid_t fx_run_start(const fx_t *fx, const char *logname, const char *set)
{
    char logfile[400];
    snprintf(logfile, sizeof(logfile), "%s/%s", fx->state_dir, logname);
    const char *args[] = {"run", NULL};
    pid_t pid = spawn_weft(fx, args, logfile, 1, set);
    if (pid > 0)
        running_set(0, pid);
    return pid;
}

int fx_run_stop(pid_t pid, int timeout_ms)
{
    running_set(pid, 0);
    kill(pid, SIGTERM);
    uint64_t deadline = fx_now_ms() + (uint64_t)timeout_ms;
    int st;
    for (;;) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        if (fx_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        usleep(20000);
    }
}

void fx_run_kill9(pid_t pid)
{
    running_set(pid, 0);
    int st;
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

char *fx_sql(const fx_t *fx, const char *sql)
{
    PGconn *pg = PQconnectdb(fx->pg);
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "fx_sql: %s", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    PGresult *r = PQexec(pg, sql);
    char *out = NULL;
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK)
        out = strdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    else if (st == PGRES_COMMAND_OK)
        out = strdup("");
    else
        fprintf(stderr, "fx_sql: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(pg);
    return out;
}

long fx_sql_long(const fx_t *fx, const char *sql)
{
    char *v = fx_sql(fx, sql);
    long n = v ? atol(v) : -1;
    free(v);
    return n;
}

struct fx_producer {
    rd_kafka_t *rk;
    int failed;
};

static void fx_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    fx_producer_t *p = opaque;
    if (m->err) {
        fprintf(stderr, "fixture produce failed: %s\n", rd_kafka_err2str(m->err));
        p->failed++;
    }
}

fx_producer_t *fx_producer_new(const fx_t *fx)
{
    fx_producer_t *p = calloc(1, sizeof(*p));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256];
    rd_kafka_conf_set(conf, "bootstrap.servers", fx->brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err));
    rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof(err));
    rd_kafka_conf_set_dr_msg_cb(conf, fx_dr);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!p->rk) {
        fprintf(stderr, "fx_producer_new: %s\n", err);
        free(p);
        return NULL;
    }
    return p;
}

int fx_produce(fx_producer_t *p, const char *topic, const char *key, const char *id,
               const char *type, const char *data, const char *const *extra_hdrs)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    if (id) {
        rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
        rd_kafka_header_add(h, "ce_id", -1, id, -1);
        rd_kafka_header_add(h, "ce_source", -1, "/weft/tests", -1);
        rd_kafka_header_add(h, "ce_type", -1, type, -1);
        rd_kafka_header_add(h, "content-type", -1, "application/json", -1);
    }
    for (int i = 0; extra_hdrs && extra_hdrs[i]; i++) {
        const char *eq = strchr(extra_hdrs[i], '=');
        if (!eq)
            continue;
        rd_kafka_header_add(h, extra_hdrs[i], eq - extra_hdrs[i], eq + 1, -1);
    }
    rd_kafka_resp_err_t err;
    for (;;) {
        err = rd_kafka_producev(
            p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
            RD_KAFKA_V_VALUE((void *)data, data ? strlen(data) : 0),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(p->rk, 10);
    }
    if (err) {
        rd_kafka_headers_destroy(h);
        fprintf(stderr, "fx_produce: %s\n", rd_kafka_err2str(err));
        return -1;
    }
    rd_kafka_poll(p->rk, 0);
    return 0;
}

int fx_produce_raw_header(fx_producer_t *p, const char *topic, const char *id, const char *hname,
                          const void *hvalue, size_t hlen, const char *data)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    if (id) {
        rd_kafka_header_add(h, "ce_specversion", -1, "1.0", -1);
        rd_kafka_header_add(h, "ce_id", -1, id, -1);
        rd_kafka_header_add(h, "ce_source", -1, "/weft/tests", -1);
        rd_kafka_header_add(h, "ce_type", -1, "t", -1);
    }
    rd_kafka_header_add(h, hname, -1, hvalue, (ssize_t)hlen);
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE((void *)data, strlen(data)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(h);
        fprintf(stderr, "fx_produce_raw_header: %s\n", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

int fx_producer_flush(fx_producer_t *p)
{
    rd_kafka_flush(p->rk, 30000);
    return rd_kafka_outq_len(p->rk) == 0 && p->failed == 0 ? 0 : -1;
}

void fx_producer_destroy(fx_producer_t *p)
{
    if (!p)
        return;
    rd_kafka_flush(p->rk, 10000);
    rd_kafka_destroy(p->rk);
    free(p);
}

struct fx_consumer {
    rd_kafka_t *rk;
};

fx_consumer_t *fx_consumer_new(const fx_t *fx, const char *topic)
{
    static int seq;
    fx_consumer_t *c = calloc(1, sizeof(*c));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[256], group[64];
    snprintf(group, sizeof(group), "fx-%d-%d", (int)getpid(), seq++);
    rd_kafka_conf_set(conf, "bootstrap.servers", fx->brokers, err, sizeof(err));
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof(err));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!c->rk) {
        fprintf(stderr, "fx_consumer_new: %s\n", err);
        free(c);
        return NULL;
    }
    rd_kafka_poll_set_consumer(c->rk);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    return c;
}

static char *hdr_str(rd_kafka_headers_t *h, const char *name)
{
    const void *v;
    size_t sz;
    if (!h || rd_kafka_header_get_last(h, name, &v, &sz) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    char *s = malloc(sz + 1);
    memcpy(s, v, sz);
    s[sz] = '\0';
    return s;
}

size_t fx_consume_until(fx_consumer_t *c, fx_msg_t **msgs, size_t *n, size_t *cap, fx_pred_fn pred,
                        void *ctx, int timeout_ms)
{
    uint64_t deadline = fx_now_ms() + (uint64_t)timeout_ms;
    while (!pred(*msgs, *n, ctx) && fx_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);
        if (!m)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 1024;
            *msgs = realloc(*msgs, *cap * sizeof(fx_msg_t));
        }
        fx_msg_t *fm = &(*msgs)[(*n)++];
        memset(fm, 0, sizeof(*fm));
        rd_kafka_headers_t *h = NULL;
        rd_kafka_message_headers(m, &h);
        fm->ce_id = hdr_str(h, "ce_id");
        fm->input_id = hdr_str(h, "ce_weftinputid");
        size_t hl = 0, hcap = 256;
        fm->headers = calloc(1, hcap);
        for (size_t i = 0; h && i < rd_kafka_header_cnt(h); i++) {
            const char *name;
            const void *v;
            size_t sz;
            if (rd_kafka_header_get_all(h, i, &name, &v, &sz))
                break;
            size_t need = hl + strlen(name) + sz + 3;
            if (need > hcap) {
                while (need > hcap)
                    hcap *= 2;
                fm->headers = realloc(fm->headers, hcap);
            }
            hl += (size_t)sprintf(fm->headers + hl, "%s=", name);
            memcpy(fm->headers + hl, v ? v : "", v ? sz : 0);
            hl += v ? sz : 0;
            fm->headers[hl++] = '\n';
            fm->headers[hl] = '\0';
        }
        fm->value = malloc(m->len + 1);
        memcpy(fm->value, m->payload ? m->payload : "", m->len);
        fm->value[m->len] = '\0';
        fm->value_len = m->len;
        rd_kafka_message_destroy(m);
    }
    return *n;
}

const char *fx_header(const fx_msg_t *m, const char *name)
{
    static char buf[4096];
    size_t nl = strlen(name);
    for (const char *p = m->headers; p && *p;) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            break;
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = (size_t)(eol - p - (ptrdiff_t)nl - 1);
            if (vl >= sizeof(buf))
                vl = sizeof(buf) - 1;
            memcpy(buf, p + nl + 1, vl);
            buf[vl] = '\0';
            return buf;
        }
        p = eol + 1;
    }
    return NULL;
}

void fx_consumer_destroy(fx_consumer_t *c)
{
    if (!c)
        return;
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
    free(c);
}

void fx_msgs_free(fx_msg_t *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(msgs[i].ce_id);
        free(msgs[i].input_id);
        free(msgs[i].headers);
        free(msgs[i].value);
    }
    free(msgs);
}

/* ---- NATS and JetStream ------------------------------------------------- */

#include <nats/nats.h>

#include "nats.h"

static natsConnection *fx_nats_connect(const fx_t *fx)
{
    natsConnection *nc = NULL;
    natsOptions *o = NULL;
    natsOptions_Create(&o);
    natsOptions_SetURL(o, fx->nats);
    natsOptions_SetMaxReconnect(o, -1);
    natsOptions_SetReconnectWait(o, 200);
    natsStatus s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fprintf(stderr, "fixture: cannot connect to %s: %s\n", fx->nats, natsStatus_GetText(s));
        return NULL;
    }
    return nc;
}

int fx_js_stream(const fx_t *fx, const char *stream, const char *subjects)
{
    natsConnection *nc = fx_nats_connect(fx);
    if (!nc)
        return -1;
    jsCtx *js = NULL;
    natsConnection_JetStream(&js, nc, NULL);
    char buf[1024], *subj[32], *save = NULL;
    int n = 0;
    snprintf(buf, sizeof(buf), "%s", subjects);
    for (char *t = strtok_r(buf, " ", &save); t && n < 32; t = strtok_r(NULL, " ", &save))
        subj[n++] = t;
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream;
    sc.Subjects = (const char **)subj;
    sc.SubjectsLen = n;
    sc.Storage = js_FileStorage;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, js, &sc, NULL, &jerr);
    if (s != NATS_OK)
        fprintf(stderr, "fixture: js_AddStream(%s): %s (%d)\n", stream, natsStatus_GetText(s),
                (int)jerr);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return s == NATS_OK ? 0 : -1;
}

struct fx_nats {
    natsConnection *nc;
    jsCtx *js;
};

fx_nats_t *fx_nats_new(const fx_t *fx)
{
    fx_nats_t *n = calloc(1, sizeof(*n));
    n->nc = fx_nats_connect(fx);
    if (!n->nc) {
        free(n);
        return NULL;
    }
    natsConnection_JetStream(&n->js, n->nc, NULL);
    return n;
}

void fx_nats_destroy(fx_nats_t *n)
{
    if (!n)
        return;
    jsCtx_Destroy(n->js);
    natsConnection_FlushTimeout(n->nc, 5000);
    natsConnection_Destroy(n->nc);
    free(n);
}

static int fx_nats_send(fx_nats_t *n, int js, natsMsg *msg)
{
    natsStatus s;
    if (js) {
        /* Retried while the server restarts: the test publishes through
         * the outage on purpose. */
        for (int attempt = 0; attempt < 100; attempt++) {
            jsPubAck *pa = NULL;
            jsPubOptions po;
            jsPubOptions_Init(&po);
            po.MaxWait = 5000;
            s = js_PublishMsg(&pa, n->js, msg, &po, NULL);
            jsPubAck_Destroy(pa);
            if (s == NATS_OK)
                break;
            usleep(200000);
        }
    } else {
        s = natsConnection_PublishMsg(n->nc, msg);
        if (s == NATS_OK)
            s = natsConnection_FlushTimeout(n->nc, 5000);
    }
    natsMsg_Destroy(msg);
    if (s != NATS_OK)
        fprintf(stderr, "fixture: nats publish failed: %s\n", natsStatus_GetText(s));
    return s == NATS_OK ? 0 : -1;
}

int fx_nats_publish(fx_nats_t *n, int js, const char *subject, const char *id, const char *type,
                    const char *data, const char *const *extra_hdrs)
{
    natsMsg *msg = NULL;
    natsMsg_Create(&msg, subject, NULL, data, data ? (int)strlen(data) : 0);
    if (id) {
        char *pid = weft_nats_pct_encode(id, strlen(id));
        char *ptype = weft_nats_pct_encode(type, strlen(type));
        natsMsgHeader_Set(msg, "ce-specversion", "1.0");
        natsMsgHeader_Set(msg, "ce-id", pid);
        natsMsgHeader_Set(msg, "ce-source", "/weft/tests");
        natsMsgHeader_Set(msg, "ce-type", ptype);
        natsMsgHeader_Set(msg, "Content-Type", "application/json");
        free(pid);
        free(ptype);
    }
    for (int i = 0; extra_hdrs && extra_hdrs[i]; i++) {
        const char *eq = strchr(extra_hdrs[i], '=');
        if (!eq)
            continue;
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)(eq - extra_hdrs[i]), extra_hdrs[i]);
        natsMsgHeader_Set(msg, name, eq + 1);
    }
    return fx_nats_send(n, js, msg);
}

int fx_nats_publish_structured(fx_nats_t *n, int js, const char *subject, const char *json)
{
    natsMsg *msg = NULL;
    natsMsg_Create(&msg, subject, NULL, json, (int)strlen(json));
    natsMsgHeader_Set(msg, "Content-Type", "application/cloudevents+json");
    return fx_nats_send(n, js, msg);
}

struct fx_nsub {
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
};

fx_nsub_t *fx_nsub_new(const fx_t *fx, const char *subject, int js)
{
    fx_nsub_t *c = calloc(1, sizeof(*c));
    c->nc = fx_nats_connect(fx);
    if (!c->nc) {
        free(c);
        return NULL;
    }
    natsStatus s;
    if (js) {
        natsConnection_JetStream(&c->js, c->nc, NULL);
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Config.DeliverPolicy = js_DeliverAll;
        so.Config.AckPolicy = js_AckNone;
        s = js_SubscribeSync(&c->sub, c->js, subject, NULL, &so, NULL);
    } else {
        s = natsConnection_SubscribeSync(&c->sub, c->nc, subject);
        if (s == NATS_OK)
            s = natsConnection_FlushTimeout(c->nc, 5000);
    }
    if (s != NATS_OK) {
        fprintf(stderr, "fixture: subscribing to %s: %s (%s)\n", subject, natsStatus_GetText(s),
                nats_GetLastError(NULL));
        jsCtx_Destroy(c->js);
        natsConnection_Destroy(c->nc);
        free(c);
        return NULL;
    }
    return c;
}

static char *fx_hdr_decoded(natsMsg *m, const char *name)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, name, &v) != NATS_OK || !v)
        return NULL;
    return weft_nats_pct_decode(v, strlen(v), NULL);
}

size_t fx_nsub_until(fx_nsub_t *c, fx_msg_t **msgs, size_t *n, size_t *cap, fx_pred_fn pred,
                     void *ctx, int timeout_ms)
{
    uint64_t deadline = fx_now_ms() + (uint64_t)timeout_ms;
    while (!pred(*msgs, *n, ctx) && fx_now_ms() < deadline) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, c->sub, 100) != NATS_OK || !m)
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 1024;
            *msgs = realloc(*msgs, *cap * sizeof(fx_msg_t));
        }
        fx_msg_t *fm = &(*msgs)[(*n)++];
        memset(fm, 0, sizeof(*fm));
        fm->ce_id = fx_hdr_decoded(m, "ce-id");
        fm->input_id = fx_hdr_decoded(m, "ce-weftinputid");
        const char **keys = NULL;
        int nk = 0;
        size_t hl = 0, hcap = 256;
        fm->headers = calloc(1, hcap);
        if (natsMsgHeader_Keys(m, &keys, &nk) == NATS_OK) {
            for (int i = 0; i < nk; i++) {
                const char *v = NULL;
                natsMsgHeader_Get(m, keys[i], &v);
                size_t need = hl + strlen(keys[i]) + (v ? strlen(v) : 0) + 3;
                while (need > hcap) {
                    hcap *= 2;
                    fm->headers = realloc(fm->headers, hcap);
                }
                hl += (size_t)sprintf(fm->headers + hl, "%s=%s\n", keys[i], v ? v : "");
            }
            free((void *)keys);
        }
        int len = natsMsg_GetDataLength(m);
        fm->value = malloc((size_t)len + 1);
        memcpy(fm->value, natsMsg_GetData(m) ? natsMsg_GetData(m) : "", (size_t)len);
        fm->value[len] = '\0';
        fm->value_len = (size_t)len;
        natsMsg_Destroy(m);
    }
    return *n;
}

void fx_nsub_destroy(fx_nsub_t *c)
{
    if (!c)
        return;
    natsSubscription_Unsubscribe(c->sub);
    natsSubscription_Destroy(c->sub);
    jsCtx_Destroy(c->js);
    natsConnection_Destroy(c->nc);
    free(c);
}

int fx_js_consumer_state(const fx_t *fx, const char *stream, const char *durable,
                         fx_js_cstate_t *st)
{
    st->ack_pending = st->pending = st->redelivered = -1;
    natsConnection *nc = fx_nats_connect(fx);
    if (!nc)
        return -1;
    jsCtx *js = NULL;
    natsConnection_JetStream(&js, nc, NULL);
    jsConsumerInfo *ci = NULL;
    natsStatus s = js_GetConsumerInfo(&ci, js, stream, durable, NULL, NULL);
    if (s == NATS_OK) {
        st->ack_pending = (long)ci->NumAckPending;
        st->pending = (long)ci->NumPending;
        st->redelivered = (long)ci->NumRedelivered;
    }
    jsConsumerInfo_Destroy(ci);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return s == NATS_OK ? 0 : -1;
}

static int fx_stack_cmd(const fx_t *fx, const char *cmd_name)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "WEFT_STATE_DIR='%s' '%s/ops/stack' %s >>'%s/stack.out' 2>&1",
             fx->state_dir, fx->src_dir, cmd_name, fx->state_dir);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "ops/stack %s failed, see %s/stack.out\n", cmd_name, fx->state_dir);
    return rc == 0 ? 0 : -1;
}

int fx_nats_down(const fx_t *fx)
{
    return fx_stack_cmd(fx, "nats-down");
}

int fx_nats_up(const fx_t *fx)
{
    return fx_stack_cmd(fx, "nats-up");
}

int fx_pg_down(const fx_t *fx)
{
    return fx_stack_cmd(fx, "pg-down");
}

int fx_pg_up(const fx_t *fx)
{
    return fx_stack_cmd(fx, "pg-up");
}

int fx_kafka_fresh(fx_t *fx, const char *topics)
{
    if (fx_stack_cmd(fx, "kafka-down") != 0)
        return -1;
    fx->brokers[0] = '\0';
    return stack_up(fx, topics);
}

static int fx_node_cmd(const fx_t *fx, const char *verb, int node)
{
    char c[64];
    snprintf(c, sizeof(c), "kafka-node-%s %d", verb, node);
    return fx_stack_cmd(fx, c);
}

int fx_kafka_node_stop(const fx_t *fx, int node)
{
    return fx_node_cmd(fx, "stop", node);
}

int fx_kafka_node_kill(const fx_t *fx, int node)
{
    return fx_node_cmd(fx, "kill", node);
}

int fx_kafka_node_start(const fx_t *fx, int node)
{
    return fx_node_cmd(fx, "start", node);
}

/* ---- Kafka administration (librdkafka) ----------------------------------- */

static rd_kafka_t *fx_admin_client(const fx_t *fx, rd_kafka_type_t type, const char *group)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", fx->brokers, err, sizeof(err));
    if (group)
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof(err));
    if (!rk)
        fprintf(stderr, "fixture: rd_kafka_new: %s\n", err);
    return rk;
}

/* Partitions of topic with a leader, as the cluster's metadata says: -1
 * when the topic is unknown, else how many of its partitions have one
 * (*total: how many it has). */
static int fx_partitions_led(rd_kafka_t *rk, const char *topic, int *total)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
    rd_kafka_topic_destroy(rkt);
    int led = -1;
    *total = 0;
    if (!err && md->topic_cnt == 1 && !md->topics[0].err) {
        led = 0;
        *total = md->topics[0].partition_cnt;
        for (int i = 0; i < md->topics[0].partition_cnt; i++)
            if (md->topics[0].partitions[i].leader >= 0 && !md->topics[0].partitions[i].err)
                led++;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    return led;
}

int fx_kafka_create_topics(const fx_t *fx, const char *topics)
{
    if (strcmp(fx->kafka_kind, "mock") == 0) {
        fprintf(stderr, "fx_kafka_create_topics: the mock takes its topics at start\n");
        return -1;
    }
    rd_kafka_t *rk = fx_admin_client(fx, RD_KAFKA_PRODUCER, NULL);
    if (!rk)
        return -1;
    int rf = fx->kafka_nodes < 3 ? fx->kafka_nodes : 3;
    char buf[2048], *save = NULL, errstr[256];
    snprintf(buf, sizeof(buf), "%s", topics);
    rd_kafka_NewTopic_t *nt[64];
    const char *names[64];
    int n = 0;
    for (char *t = strtok_r(buf, " ", &save); t && n < 64; t = strtok_r(NULL, " ", &save)) {
        char *colon = strchr(t, ':');
        int parts = colon ? atoi(colon + 1) : 1;
        if (colon)
            *colon = '\0';
        names[n] = t;
        nt[n] = rd_kafka_NewTopic_new(t, parts, rf, errstr, sizeof(errstr));
        if (!nt[n]) {
            fprintf(stderr, "fx_kafka_create_topics: %s: %s\n", t, errstr);
            rd_kafka_NewTopic_destroy_array(nt, (size_t)n);
            rd_kafka_destroy(rk);
            return -1;
        }
        n++;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, 30000, errstr, sizeof(errstr));
    rd_kafka_AdminOptions_set_request_timeout(opt, 30000, errstr, sizeof(errstr));
    rd_kafka_CreateTopics(rk, nt, (size_t)n, opt, q);
    int rc = -1;
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
    if (!res) {
        fprintf(stderr, "fx_kafka_create_topics: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "no answer within 60 s");
    } else if (rd_kafka_event_error(ev)) {
        fprintf(stderr, "fx_kafka_create_topics: %s\n", rd_kafka_event_error_string(ev));
    } else {
        size_t cnt;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
        rc = 0;
        for (size_t i = 0; i < cnt; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                fprintf(stderr, "fx_kafka_create_topics: %s: %s\n",
                        rd_kafka_topic_result_name(tr[i]),
                        rd_kafka_topic_result_error_string(tr[i]));
                rc = -1;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    /* Created means the controller has it; clients need every partition
     * with a leader in the metadata of the brokers they ask. */
    uint64_t deadline = fx_now_ms() + 30000;
    for (int i = 0; rc == 0 && i < n;) {
        int total, led = fx_partitions_led(rk, names[i], &total);
        if (led > 0 && led == total) {
            i++;
            continue;
        }
        if (fx_now_ms() >= deadline) {
            fprintf(stderr, "fx_kafka_create_topics: %s has no leader for every partition\n",
                    names[i]);
            rc = -1;
        }
        usleep(50000);
    }
    rd_kafka_NewTopic_destroy_array(nt, (size_t)n);
    rd_kafka_destroy(rk);
    return rc;
}

int fx_kafka_group_offsets(const fx_t *fx, const char *group, const char *topic,
                           fx_kafka_offsets_t *out)
{
    memset(out, 0, sizeof(*out));
    rd_kafka_t *rk = fx_admin_client(fx, RD_KAFKA_CONSUMER, group);
    if (!rk)
        return -1;
    int total, rc = -1;
    if (fx_partitions_led(rk, topic, &total) < 0 || total <= 0 || total > FX_MAX_PARTITIONS) {
        fprintf(stderr, "fx_kafka_group_offsets: no metadata for %s\n", topic);
        rd_kafka_destroy(rk);
        return -1;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(total);
    for (int p = 0; p < total; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, 10000);
    if (err) {
        fprintf(stderr, "fx_kafka_group_offsets: committed(%s): %s\n", group,
                rd_kafka_err2str(err));
        goto out;
    }
    out->partitions = total;
    for (int i = 0; i < l->cnt; i++) {
        int p = l->elems[i].partition;
        int64_t lo, hi;
        err = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        if (err) {
            fprintf(stderr, "fx_kafka_group_offsets: watermarks of %s[%d]: %s\n", topic, p,
                    rd_kafka_err2str(err));
            goto out;
        }
        out->low[p] = lo;
        out->high[p] = hi;
        /* No commit yet (RD_KAFKA_OFFSET_INVALID): nothing consumed. */
        out->committed[p] = l->elems[i].offset >= 0 ? l->elems[i].offset : -1;
        int64_t from = out->committed[p] >= 0 ? out->committed[p] : lo;
        out->lag += hi - from;
    }
    rc = 0;
out:
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return rc;
}

/* ---- results of numbered inputs ------------------------------------------ */

void fx_seen_init(fx_seen_t *s, const char *pfx, int count, int check_msg_id)
{
    memset(s, 0, sizeof(*s));
    s->pfx = pfx;
    s->count = count;
    s->check_msg_id = check_msg_id;
    s->result_id = calloc((size_t)count, sizeof(char *));
}

void fx_seen_free(fx_seen_t *s)
{
    for (int i = 0; i < s->count; i++)
        free(s->result_id[i]);
    free(s->result_id);
}

int fx_seen_pred(const fx_msg_t *msgs, size_t n, void *ctx)
{
    fx_seen_t *s = ctx;
    size_t pl = strlen(s->pfx);
    for (; s->scanned < n; s->scanned++) {
        const fx_msg_t *m = &msgs[s->scanned];
        if (!m->input_id || strncmp(m->input_id, s->pfx, pl) != 0 || m->input_id[pl] != '-')
            continue;
        int idx = atoi(m->input_id + pl + 1);
        if (idx < 0 || idx >= s->count)
            continue;
        char want[128];
        snprintf(want, sizeof(want), "{\"name\":\"USER %d\",\"n\":%d}", idx, idx);
        if (strcmp(m->value, want) != 0) {
            fprintf(stderr, "bad result for %s: %s (want %s)\n", m->input_id, m->value, want);
            s->bad_content++;
        }
        if (!m->ce_id) {
            s->conflicts++;
            continue;
        }
        if (s->check_msg_id) {
            /* JetStream deduplicates on it: it must be the event id. */
            const char *mid = fx_header(m, "Nats-Msg-Id");
            if (!mid || strcmp(mid, m->ce_id) != 0)
                s->bad_msg_id++;
        }
        if (!s->result_id[idx]) {
            s->result_id[idx] = strdup(m->ce_id);
            s->distinct++;
        } else if (strcmp(s->result_id[idx], m->ce_id) != 0) {
            fprintf(stderr, "input %s has two result ids: %s and %s\n", m->input_id,
                    s->result_id[idx], m->ce_id);
            s->conflicts++;
        }
    }
    return s->distinct >= s->count;
}
