/*
 * config.c - parsing of the key = value configuration and its overrides.
 *
 * Runs in the dispatcher and the CLI before any client library starts.
 * Invariant: a key appears once; a later setting replaces the value but
 * keeps the key's position, so pass-through keys reach librdkafka in a
 * predictable order.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cfg_entry {
    char *key;
    char *value;
} cfg_entry_t;

struct weft_config {
    cfg_entry_t *v;
    size_t n, cap;
};

weft_config_t *weft_config_new(void)
{
    return calloc(1, sizeof(weft_config_t));
}

void weft_config_destroy(weft_config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n; i++) {
        free(cfg->v[i].key);
        free(cfg->v[i].value);
    }
    free(cfg->v);
    free(cfg);
}

int weft_config_set(weft_config_t *cfg, const char *key, const char *value)
{
    for (size_t i = 0; i < cfg->n; i++) {
        if (strcmp(cfg->v[i].key, key) == 0) {
            char *nv = strdup(value);
            if (!nv)
                return -1;
            free(cfg->v[i].value);
            cfg->v[i].value = nv;
            return 0;
        }
    }
    if (cfg->n == cfg->cap) {
        size_t ncap = cfg->cap ? cfg->cap * 2 : 16;
        cfg_entry_t *nv = realloc(cfg->v, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        cfg->v = nv;
        cfg->cap = ncap;
    }
    cfg->v[cfg->n].key = strdup(key);
    cfg->v[cfg->n].value = strdup(value);
    if (!cfg->v[cfg->n].key || !cfg->v[cfg->n].value) {
        free(cfg->v[cfg->n].key);
        free(cfg->v[cfg->n].value);
        return -1;
    }
    cfg->n++;
    return 0;
}

const char *weft_config_get(const weft_config_t *cfg, const char *key, const char *def)
{
    for (size_t i = 0; i < cfg->n; i++)
        if (strcmp(cfg->v[i].key, key) == 0)
            return cfg->v[i].value;
    return def;
}

int weft_config_get_int(const weft_config_t *cfg, const char *key, int64_t def, int64_t min,
                        int64_t max, int64_t *out, char *errstr, size_t errlen)
{
    const char *s = weft_config_get(cfg, key, NULL);
    if (!s) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        snprintf(errstr, errlen, "config key %s: \"%s\" is not an integer", key, s);
        return -1;
    }
    if (v < min || v > max) {
        snprintf(errstr, errlen, "config key %s: %lld is out of range [%lld, %lld]", key, v,
                 (long long)min, (long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int valid_key(const char *k)
{
    if (!*k)
        return 0;
    for (; *k; k++)
        if (!isalnum((unsigned char)*k) && *k != '.' && *k != '_' && *k != '-')
            return 0;
    return 1;
}

int weft_config_parse_line(weft_config_t *cfg, const char *line, char *errstr, size_t errlen)
{
    char buf[4096];
    if (strlen(line) >= sizeof(buf)) {
        snprintf(errstr, errlen, "line too long");
        return -1;
    }
    strcpy(buf, line);
    char *s = trim(buf);
    if (*s == '\0' || *s == '#' || *s == ';')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        snprintf(errstr, errlen, "expected \"key = value\"");
        return -1;
    }
    *eq = '\0';
    char *key = trim(s);
    char *value = trim(eq + 1);
    if (!valid_key(key)) {
        snprintf(errstr, errlen, "invalid key \"%s\"", key);
        return -1;
    }
    /* Optional double quotes keep leading/trailing spaces. */
    size_t vl = strlen(value);
    if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
        value[vl - 1] = '\0';
        value++;
    }
    if (weft_config_set(cfg, key, value) != 0) {
        snprintf(errstr, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int weft_config_load_file(weft_config_t *cfg, const char *path, char *errstr, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errlen, "cannot open config file %s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(errstr, errlen, "%s:%d: line too long", path, lineno);
            fclose(f);
            return -1;
        }
        char err[256];
        if (weft_config_parse_line(cfg, line, err, sizeof(err)) != 0) {
            snprintf(errstr, errlen, "%s:%d: %s", path, lineno, err);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

int weft_config_load_env(weft_config_t *cfg, char *errstr, size_t errlen)
{
    size_t n;
    const weft_config_def_t *defs = weft_config_defs(&n);
    for (size_t i = 0; i < n; i++) {
        const char *v = defs[i].env ? getenv(defs[i].env) : NULL;
        if (v && *v && weft_config_set(cfg, defs[i].key, v) != 0) {
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
    }
    const char *set = getenv("WEFT_SET");
    if (set && *set) {
        char *copy = strdup(set), *save = NULL;
        if (!copy) {
            snprintf(errstr, errlen, "out of memory");
            return -1;
        }
        for (char *tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
            char err[256];
            if (weft_config_parse_line(cfg, tok, err, sizeof(err)) != 0) {
                snprintf(errstr, errlen, "WEFT_SET: %s", err);
                free(copy);
                return -1;
            }
        }
        free(copy);
    }
    return 0;
}

int weft_config_each(const weft_config_t *cfg, const char *prefix, weft_config_each_fn fn,
                     void *opaque)
{
    size_t pl = strlen(prefix);
    int seen = 0;
    for (size_t i = 0; i < cfg->n; i++) {
        if (strncmp(cfg->v[i].key, prefix, pl) == 0) {
            seen++;
            if (fn(cfg->v[i].key, cfg->v[i].value, opaque) != 0)
                break;
        }
    }
    return seen;
}
