/* config.c -- SP_* settings from the environment, validated against one table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "spcore.h"

struct sp_config {
    size_t n;
    const sp_cfg_item *items;
    char **str;
    long long *num;
};

void sp_config_help(FILE *f, const char *program, const sp_cfg_item *items, size_t n)
{
    fprintf(f, "Usage: %s [--help]\nSettings (environment variables):\n", program);
    for (size_t i = 0; i < n; i++) {
        const sp_cfg_item *it = &items[i];
        fprintf(f, "  %-28s %s\n", it->name, it->help ? it->help : "");
        if (it->kind == SP_CFG_INT)
            fprintf(f, "  %-28s default %s, range %lld..%lld\n", "", it->def ? it->def : "(required)",
                    it->min, it->max);
        else
            fprintf(f, "  %-28s %s%s%s, length %lld..%lld\n", "",
                    it->kind == SP_CFG_SECRET ? "secret, " : "",
                    it->def ? "default \"" : "required", it->def ? it->def : "",
                    it->min, it->max);
    }
}

static sp_status fail(sp_config *c, char *err, size_t errlen, const char *fmt, const char *name,
                      long long a, long long b)
{
    snprintf(err, errlen, fmt, name, a, b);
    sp_config_destroy(c);
    return SP_ERR_VALIDATION_FAILED;
}

sp_status sp_config_load(sp_config **out, const char *program, const sp_cfg_item *items,
                         size_t n, int argc, char **argv, char *err, size_t errlen)
{
    *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            sp_config_help(stdout, program, items, n);
            return SP_OK;
        }
        snprintf(err, errlen, "unknown argument '%s' (settings come from the environment; "
                              "see --help)", argv[i]);
        return SP_ERR_VALIDATION_FAILED;
    }
    sp_config *c = calloc(1, sizeof(*c));
    if (c == NULL) return SP_ERR_INTERNAL;
    c->n = n;
    c->items = items;
    c->str = calloc(n, sizeof(char *));
    c->num = calloc(n, sizeof(long long));
    if (c->str == NULL || c->num == NULL) {
        sp_config_destroy(c);
        return SP_ERR_INTERNAL;
    }
    for (size_t i = 0; i < n; i++) {
        const sp_cfg_item *it = &items[i];
        const char *v = getenv(it->name);
        if (v == NULL) v = it->def;
        if (v == NULL)
            return fail(c, err, errlen, "%s is required%.0lld%.0lld", it->name, 0, 0);
        if (it->kind == SP_CFG_INT) {
            char *end = NULL;
            errno = 0;
            long long x = strtoll(v, &end, 10);
            if (errno != 0 || end == v || *end != '\0')
                return fail(c, err, errlen, "%s is not an integer%.0lld%.0lld", it->name, 0, 0);
            if (x < it->min || x > it->max)
                return fail(c, err, errlen, "%s must be in %lld..%lld", it->name, it->min,
                            it->max);
            c->num[i] = x;
        } else {
            long long len = (long long)strlen(v);
            if (len < it->min || len > it->max)
                return fail(c, err, errlen, "%s must be %lld..%lld characters long", it->name,
                            it->min, it->max);
        }
        c->str[i] = strdup(v);
        if (c->str[i] == NULL) {
            sp_config_destroy(c);
            return SP_ERR_INTERNAL;
        }
    }
    *out = c;
    return SP_OK;
}

void sp_config_destroy(sp_config *c)
{
    if (c == NULL) return;
    if (c->str != NULL)
        for (size_t i = 0; i < c->n; i++) {
            if (c->str[i] != NULL && c->items[i].kind == SP_CFG_SECRET)
                memset(c->str[i], 0, strlen(c->str[i]));
            free(c->str[i]);
        }
    free(c->str);
    free(c->num);
    free(c);
}

static size_t find(const sp_config *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->items[i].name, name) == 0) return i;
    fprintf(stderr, "sp_config: unknown setting %s\n", name);
    abort();
}

long long sp_config_int(const sp_config *c, const char *name)
{
    return c->num[find(c, name)];
}

const char *sp_config_str(const sp_config *c, const char *name)
{
    return c->str[find(c, name)];
}
