/*
 * hygiene.c - example function that reports what a function can reach:
 * a JSON object with its pid, real/effective uid and gid, supplementary
 * groups, open fds (from /proc/self/fd, without the fd used to list them),
 * the environment, PR_GET_NO_NEW_PRIVS, the RLIMIT_CORE soft limit and
 * whether the process is dumpable.
 *
 *   {"pid":12,"uid":0,"euid":0,"gid":0,"egid":0,"groups":[0],
 *    "fds":[0,1,2,3],"env":{"LANG":"C.UTF-8","PATH":"/usr/bin:/bin"},
 *    "no_new_privs":1,"core_limit":0,"dumpable":1}
 *
 * Loaded by weft-worker (shared_object runtime); see weft_function.h.
 * tests/test_pool.c uses it to check the worker's hygiene.
 */
#include <dirent.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "weft_function.h"

WEFT_EXPORT const int weft_abi_version = WEFT_ABI_VERSION;

extern char **environ;

typedef struct out {
    char *p;
    size_t len, cap;
    int failed;
} out_t;

static void put(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(out_t *o, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(o->p ? o->p + o->len : NULL, o->p ? o->cap - o->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if (o->p && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t cap = (o->cap ? o->cap * 2 : 1024) + (size_t)n + 1;
        char *q = realloc(o->p, cap);
        if (!q) {
            o->failed = 1;
            return;
        }
        o->p = q;
        o->cap = cap;
    }
}

/* Environment strings as JSON: escape what JSON requires. */
static void put_json_str(out_t *o, const char *s, size_t n)
{
    put(o, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            put(o, "\\%c", c);
        else if (c < 0x20)
            put(o, "\\u%04x", c);
        else
            put(o, "%c", c);
    }
    put(o, "\"");
}

int weft_handle(const weft_event_t *ev, weft_result_t *res)
{
    (void)ev;
    out_t o = {0};
    put(&o, "{\"pid\":%ld,\"uid\":%ld,\"euid\":%ld,\"gid\":%ld,\"egid\":%ld,\"groups\":[",
        (long)getpid(), (long)getuid(), (long)geteuid(), (long)getgid(), (long)getegid());
    gid_t groups[64];
    int ng = getgroups(64, groups);
    for (int i = 0; i < ng; i++)
        put(&o, "%s%ld", i ? "," : "", (long)groups[i]);
    put(&o, "],\"fds\":[");
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int self = dirfd(d), n = 0;
        struct dirent *de;
        /* Small fds first: /proc lists them in order already. */
        while ((de = readdir(d)) != NULL) {
            if (de->d_name[0] == '.')
                continue;
            int fd = atoi(de->d_name);
            if (fd == self)
                continue;
            put(&o, "%s%d", n++ ? "," : "", fd);
        }
        closedir(d);
    }
    put(&o, "],\"env\":{");
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq)
            continue;
        if (e != environ)
            put(&o, ",");
        put_json_str(&o, *e, (size_t)(eq - *e));
        put(&o, ":");
        put_json_str(&o, eq + 1, strlen(eq + 1));
    }
    struct rlimit rl = {0, 0};
    getrlimit(RLIMIT_CORE, &rl);
    put(&o, "},\"no_new_privs\":%d,\"core_limit\":%lld,\"dumpable\":%d}",
        prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), (long long)rl.rlim_cur,
        prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    if (o.failed) {
        free(o.p);
        return weft_result_error(res, WEFT_RETRY, "out of memory");
    }
    res->data = o.p;
    res->data_len = o.len;
    snprintf(res->content_type, sizeof(res->content_type), "application/json");
    return WEFT_OK;
}
