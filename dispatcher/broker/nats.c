/*
 * nats.c - the synchronous NATS client for CLI commands, and the
 * nats.c message built from weft's headers (nats_msg.h) for the CLI and
 * the dispatcher's adapter; the header codec itself is ce/nats_headers.c.
 *
 * Runs in CLI processes (publish) and, for the message builder, on the
 * dispatcher's loop thread. The NATS client library starts its own threads when
 * connected, so a process that holds a weft_nats_t starts children only
 * with posix_spawn (DESIGN.md, fork safety), as workers/pool/pool_process.c does.
 *
 * Invariant: nothing with CR, LF or NUL in a header name or value is
 * handed to nats.c; CloudEvents attribute values are percent-encoded, so
 * they never need to be refused.
 */
#include "log.h"
#include "nats.h"
#include "nats_msg.h"
#include "wire.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct weft_nats {
    natsConnection *nc;
    jsCtx *js;
};

/* ---- the synchronous client ------------------------------------------- */

int weft_nats_msg_build(natsMsg **out, const char *subject, const weft_header_t *hdrs,
                        size_t n_hdrs, const void *data, size_t len, int drop_bad, char *errstr,
                        size_t errlen)
{
    natsMsg *msg = NULL;
    natsStatus s = natsMsg_Create(&msg, subject, NULL, data, (int)len);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "natsMsg_Create() failed subject=%s: %s", subject,
                 natsStatus_GetText(s));
        return -1;
    }
    char dropped[512] = "";
    for (size_t i = 0; i < n_hdrs; i++) {
        char *name, *value, err[256];
        if (weft_nats_header_encode(hdrs[i].name, hdrs[i].value, hdrs[i].len, &name, &value, err,
                                    sizeof(err)) != 0) {
            if (!drop_bad) {
                snprintf(errstr, errlen, "%s", err);
                natsMsg_Destroy(msg);
                return -1;
            }
            char *enc = weft_nats_pct_encode(hdrs[i].name, strlen(hdrs[i].name));
            size_t dl = strlen(dropped);
            snprintf(dropped + dl, sizeof(dropped) - dl, "%s%s", dl ? "," : "", enc ? enc : "?");
            free(enc);
            continue;
        }
        s = natsMsgHeader_Add(msg, name, value);
        free(name);
        free(value);
        if (s != NATS_OK) {
            snprintf(errstr, errlen, "natsMsgHeader_Add() failed: %s", natsStatus_GetText(s));
            natsMsg_Destroy(msg);
            return -1;
        }
    }
    if (dropped[0])
        natsMsgHeader_Add(msg, WEFT_HDR_DROPPED, dropped);
    *out = msg;
    return 0;
}

static void lib_open_once(void)
{
    /* A spin count of 0: a contended lock sleeps at once. */
    natsStatus s = nats_Open(0);
    if (s != NATS_OK)
        weft_warn("nats: cannot initialise the library: %s", natsStatus_GetText(s));
}

void weft_nats_lib_open(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, lib_open_once);
}

weft_nats_t *weft_nats_connect(const char *url, int timeout_ms, char *errstr, size_t errlen)
{
    weft_nats_lib_open();
    weft_nats_t *n = calloc(1, sizeof(*n));
    natsOptions *o = NULL;
    if (!n) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, timeout_ms > 0 ? timeout_ms : 5000);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "weft");
    if (s == NATS_OK)
        s = natsConnection_Connect(&n->nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "cannot connect to NATS at %s: %s", url, natsStatus_GetText(s));
        free(n);
        return NULL;
    }
    return n;
}

int weft_nats_publish(weft_nats_t *nc, const char *subject, const weft_header_t *hdrs,
                      size_t n_hdrs, const void *data, size_t len, char *errstr, size_t errlen)
{
    natsMsg *msg;
    if (weft_nats_msg_build(&msg, subject, hdrs, n_hdrs, data, len, 0, errstr, errlen) != 0)
        return -1;
    natsStatus s = natsConnection_PublishMsg(nc->nc, msg);
    natsMsg_Destroy(msg);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(nc->nc, 5000);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "publishing to %s failed: %s", subject, natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

int weft_nats_js_publish(weft_nats_t *nc, const char *subject, const char *msg_id,
                         const weft_header_t *hdrs, size_t n_hdrs, const void *data, size_t len,
                         int timeout_ms, uint64_t *seq, int *duplicate, char *errstr, size_t errlen)
{
    if (!nc->js) {
        natsStatus s = natsConnection_JetStream(&nc->js, nc->nc, NULL);
        if (s != NATS_OK) {
            snprintf(errstr, errlen, "natsConnection_JetStream() failed: %s",
                     natsStatus_GetText(s));
            return -1;
        }
    }
    natsMsg *msg;
    if (weft_nats_msg_build(&msg, subject, hdrs, n_hdrs, data, len, 0, errstr, errlen) != 0)
        return -1;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = msg_id;
    po.MaxWait = timeout_ms > 0 ? timeout_ms : 5000;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PublishMsg(&pa, nc->js, msg, &po, &jerr);
    natsMsg_Destroy(msg);
    if (s != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        snprintf(errstr, errlen, "publishing to JetStream subject %s failed: %s%s%s%s", subject,
                 natsStatus_GetText(s), last && *last ? " (" : "", last ? last : "",
                 last && *last ? ")" : "");
        if (s == NATS_NO_RESPONDERS)
            snprintf(errstr, errlen, "no JetStream stream captures subject %s", subject);
        return -1;
    }
    if (seq)
        *seq = pa->Sequence;
    if (duplicate)
        *duplicate = pa->Duplicate;
    jsPubAck_Destroy(pa);
    return 0;
}

void weft_nats_destroy(weft_nats_t *nc)
{
    if (!nc)
        return;
    jsCtx_Destroy(nc->js);
    if (nc->nc) {
        natsConnection_FlushTimeout(nc->nc, 2000);
        natsConnection_Destroy(nc->nc);
    }
    free(nc);
}

/* ---- reading a stream range, consumer state (weft replay, weft status) -- */

/* The JetStream context, made on first use. */
static int ensure_js(weft_nats_t *nc, char *errstr, size_t errlen)
{
    if (nc->js)
        return 0;
    natsStatus s = natsConnection_JetStream(&nc->js, nc->nc, NULL);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "JetStream: %s", natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

struct weft_nats_reader {
    natsSubscription *sub;
    natsMsg *cur;
    weft_header_t *hdrs;
    size_t n_hdrs;
    const char **keys;
    char stream[256];
};

static void reader_release(weft_nats_reader_t *r)
{
    if (r->cur)
        natsMsg_Destroy(r->cur);
    r->cur = NULL;
    free(r->hdrs);
    r->hdrs = NULL;
    r->n_hdrs = 0;
    free((void *)r->keys);
    r->keys = NULL;
}

weft_nats_reader_t *weft_nats_reader_new(weft_nats_t *nc, const char *stream, const char *subject,
                                         uint64_t start_seq, int64_t start_time_ms,
                                         uint64_t *pending, char *errstr, size_t errlen)
{
    weft_nats_reader_t *r = calloc(1, sizeof(*r));
    if (!r) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    snprintf(r->stream, sizeof(r->stream), "%s", stream);
    if (ensure_js(nc, errstr, errlen) != 0) {
        free(r);
        return NULL;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Ordered = true; /* acknowledges nothing, leaves no durable state */
    if (start_time_ms > 0) {
        so.Config.DeliverPolicy = js_DeliverByStartTime;
        so.Config.OptStartTime = start_time_ms * 1000000;
    } else {
        so.Config.DeliverPolicy = js_DeliverByStartSequence;
        so.Config.OptStartSeq = start_seq > 0 ? start_seq : 1;
    }
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&r->sub, nc->js, subject, NULL, &so, &jerr);
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "reading %s from stream %s: %s (%d)", subject, stream,
                 nats_GetLastError(NULL), (int)jerr);
        free(r);
        return NULL;
    }
    if (pending) {
        jsConsumerInfo *ci = NULL;
        *pending = 0;
        /* Counted from the start: the consumer may have pushed some into
         * this subscription already, and NumPending leaves those out. */
        if (natsSubscription_GetConsumerInfo(&ci, r->sub, NULL, &jerr) == NATS_OK && ci)
            *pending = ci->NumPending + ci->Delivered.Consumer;
        jsConsumerInfo_Destroy(ci);
    }
    return r;
}

int weft_nats_reader_next(weft_nats_reader_t *r, int timeout_ms, weft_bmsg_t *out,
                          uint64_t *pending, char *errstr, size_t errlen)
{
    reader_release(r);
    natsStatus s = natsSubscription_NextMsg(&r->cur, r->sub, timeout_ms);
    if (s == NATS_TIMEOUT)
        return 0;
    if (s != NATS_OK) {
        snprintf(errstr, errlen, "%s", nats_GetLastError(NULL));
        return -1;
    }
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, r->cur) != NATS_OK) {
        snprintf(errstr, errlen, "a message without JetStream metadata");
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->broker = WEFT_BROKER_JETSTREAM;
    out->topic = natsMsg_GetSubject(r->cur);
    out->partition = -1;
    out->offset = (int64_t)meta->Sequence.Stream;
    out->timestamp_ms = meta->Timestamp / 1000000;
    out->value = natsMsg_GetData(r->cur);
    out->value_len = (size_t)natsMsg_GetDataLength(r->cur);
    out->stream = r->stream;
    if (pending)
        *pending = meta->NumPending;
    jsMsgMetaData_Destroy(meta);
    int nk = 0;
    if (natsMsgHeader_Keys(r->cur, &r->keys, &nk) == NATS_OK && nk > 0) {
        r->hdrs = calloc((size_t)nk, sizeof(*r->hdrs));
        if (!r->hdrs) {
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
        for (int i = 0; i < nk; i++) {
            const char *v = NULL;
            if (natsMsgHeader_Get(r->cur, r->keys[i], &v) == NATS_OK && v)
                r->hdrs[r->n_hdrs++] = (weft_header_t){r->keys[i], v, strlen(v)};
        }
    }
    out->hdrs = r->hdrs;
    out->n_hdrs = r->n_hdrs;
    return 1;
}

void weft_nats_reader_destroy(weft_nats_reader_t *r)
{
    if (!r)
        return;
    reader_release(r);
    if (r->sub) {
        natsSubscription_Unsubscribe(r->sub);
        natsSubscription_Destroy(r->sub);
    }
    free(r);
}

/* The first message stored in [seq, hi): 1 with its sequence and time
 * (UTC ns), 0 when every sequence there is deleted, -1 on error. */
static int stored_at_or_after(weft_nats_t *nc, const char *stream, uint64_t seq, uint64_t hi,
                              uint64_t *found, int64_t *t_ns, char *errstr, size_t errlen)
{
    for (uint64_t q = seq; q < hi; q++) {
        natsMsg *m = NULL;
        jsErrCode jerr = 0;
        natsStatus st = js_GetMsg(&m, nc->js, stream, q, NULL, &jerr);
        if (st == NATS_OK && m) {
            *found = q;
            *t_ns = natsMsg_GetTime(m);
            natsMsg_Destroy(m);
            return 1;
        }
        if (st == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
            continue; /* deleted */
        snprintf(errstr, errlen, "reading message %llu of stream %s: %s (%d)",
                 (unsigned long long)q, stream, nats_GetLastError(NULL), (int)jerr);
        return -1;
    }
    return 0;
}

/* The stream's first and last sequences. 0 or -1 with errstr. */
static int stream_bounds(weft_nats_t *nc, const char *stream, uint64_t *first, uint64_t *last,
                         char *errstr, size_t errlen)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (ensure_js(nc, errstr, errlen) != 0)
        return -1;
    if (js_GetStreamInfo(&si, nc->js, stream, NULL, &jerr) != NATS_OK || !si) {
        snprintf(errstr, errlen, "stream %s: %s (%d)", stream, nats_GetLastError(NULL),
                 (int)jerr);
        return -1;
    }
    *first = si->State.FirstSeq;
    *last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    return 0;
}

int weft_nats_stream_seq_for_time(weft_nats_t *nc, const char *stream, int64_t time_ms,
                                  uint64_t *seq, char *errstr, size_t errlen)
{
    uint64_t lo = 0, last = 0;
    if (stream_bounds(nc, stream, &lo, &last, errstr, errlen) != 0)
        return -1;
    uint64_t hi = last + 1;
    if (lo == 0)
        lo = 1;
    int64_t want = time_ms * 1000000;
    uint64_t best = hi; /* none stored at or after the time */
    /* Invariant: the answer is best or lies in [lo, hi). */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2, f = 0;
        int64_t t = 0;
        int r = stored_at_or_after(nc, stream, mid, hi, &f, &t, errstr, errlen);
        if (r < 0)
            return -1;
        if (r == 0 || t >= want) {
            if (r == 1)
                best = f;
            hi = mid; /* [mid, f) holds nothing stored */
        } else {
            lo = f + 1;
        }
    }
    *seq = best;
    return 0;
}

int weft_nats_stream_last_seq(weft_nats_t *nc, const char *stream, uint64_t *last, char *errstr,
                              size_t errlen)
{
    uint64_t first = 0;
    return stream_bounds(nc, stream, &first, last, errstr, errlen);
}

int weft_nats_consumer_lag(weft_nats_t *nc, const char *stream, const char *durable,
                           uint64_t *pending, int64_t *ack_pending, char *errstr, size_t errlen)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    if (ensure_js(nc, errstr, errlen) != 0)
        return -1;
    if (js_GetConsumerInfo(&ci, nc->js, stream, durable, NULL, &jerr) != NATS_OK || !ci) {
        snprintf(errstr, errlen, "consumer %s on stream %s: %s (%d)", durable, stream,
                 nats_GetLastError(NULL), (int)jerr);
        return -1;
    }
    *pending = ci->NumPending;
    *ack_pending = ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    return 0;
}

int weft_nats_connected(weft_nats_t *nc)
{
    return nc && natsConnection_Status(nc->nc) == NATS_CONN_STATUS_CONNECTED;
}
