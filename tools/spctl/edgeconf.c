/* edgeconf.c -- "spctl edge-config TEMPLATE OUT": renders the nginx config of the public
 * listener (deploy/nginx/edge.conf.template) for a stack. ${SP_NAME} is replaced by the
 * environment variable's value, ${SP_NAME:-default} by the default when it is unset or
 * empty; any other '$' is nginx's and stays. A value that could end a directive or open a
 * block (';', braces, quotes, '$', a backslash, blanks, control characters) is refused, so
 * the environment can only fill in values, never add configuration. Creates SP_EDGE_DIR
 * (0700) when that variable is set. Comment lines are copied as they are. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "spctl.h"

#define MAX_NAME 64

static void help(void)
{
    fputs("usage: spctl edge-config TEMPLATE OUT\n\n"
          "Renders the nginx config of the public listener: ${SP_NAME} and\n"
          "${SP_NAME:-default} in TEMPLATE are replaced from the environment, the result is\n"
          "written to OUT (0644). Creates the directory SP_EDGE_DIR when it is set.\n",
          stdout);
}

/* A value we paste into a directive: printable ASCII without nginx's syntax characters. */
static bool pasteable(const char *v)
{
    if (*v == '\0') return false;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p <= ' ' || *p >= 0x7f || strchr(";{}\"'$\\#", *p) != NULL) return false;
    return true;
}

/* Line number of 'at' in 'text', for the errors. */
static int line_of(const char *text, const char *at)
{
    int line = 1;
    for (const char *p = text; p < at; p++) line += *p == '\n';
    return line;
}

typedef struct {
    const char *text;
    const char *path;
} template;

/* One line of the template, its placeholders filled in; comment lines stay as they are. */
static sp_status render_line(FILE *f, const template *t, const char *p, const char *eol)
{
    const char *first = p + strspn(p, " \t");
    if (*first == '#') {
        fwrite(p, 1, (size_t)(eol - p), f);
        return SP_OK;
    }
    for (;;) {
        const char *d = strstr(p, "${SP_");
        if (d == NULL || d >= eol) {
            fwrite(p, 1, (size_t)(eol - p), f);
            return SP_OK;
        }
        fwrite(p, 1, (size_t)(d - p), f);
        const char *name = d + 2;
        size_t n = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        const char *after = name + n;
        const char *def = NULL;
        size_t deflen = 0;
        if (strncmp(after, ":-", 2) == 0) {
            def = after + 2;
            deflen = strcspn(def, "}\n");
            after = def + deflen;
        }
        if (*after != '}' || n >= MAX_NAME)
            return spctl_fail(SP_ERR_VALIDATION_FAILED, "edge-config: %s:%d: unterminated ${...}",
                              t->path, line_of(t->text, d));
        char var[MAX_NAME];
        memcpy(var, name, n);
        var[n] = '\0';
        const char *v = spctl_env(var);
        if (v == NULL && def == NULL)
            return spctl_fail(SP_ERR_VALIDATION_FAILED, "edge-config: %s:%d: %s is not set",
                              t->path, line_of(t->text, d), var);
        if (v != NULL && !pasteable(v))
            return spctl_fail(SP_ERR_VALIDATION_FAILED,
                              "edge-config: %s must be printable ASCII without blanks, quotes or "
                              "any of ;{}$\\#",
                              var);
        if (v != NULL)
            fputs(v, f);
        else
            fwrite(def, 1, deflen, f);
        p = after + 1;
    }
}

static sp_status render(FILE *f, const void *ud)
{
    const template *t = ud;
    for (const char *p = t->text; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        eol = eol != NULL ? eol + 1 : p + strlen(p);
        sp_status s = render_line(f, t, p, eol);
        if (s != SP_OK) return s;
        p = eol;
    }
    return SP_OK;
}

/* mkdir -p of 'dir', the last component 0700. */
static sp_status make_dir(const char *dir)
{
    char path[1024];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path))
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "edge-config: SP_EDGE_DIR is too long");
    for (char *s = path + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return spctl_fail(SP_ERR_INTERNAL, "edge-config: cannot create %s: %s", path,
                              strerror(errno));
        *s = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return spctl_fail(SP_ERR_INTERNAL, "edge-config: cannot create %s: %s", path,
                          strerror(errno));
    return SP_OK;
}

sp_status spctl_edge_config(int argc, char **argv)
{
    bool want_help = false;
    const char *pos[2];
    size_t npos = 0;
    sp_status s = spctl_parse(argc, argv, NULL, 0, pos, 2, &npos, &want_help);

    if (s != SP_OK) return s;
    if (want_help) {
        help();
        return SP_OK;
    }
    if (npos != 2)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "edge-config: TEMPLATE and OUT are required (see --help)");
    template t = {NULL, pos[0]};
    size_t len = 0;
    char *text = NULL;
    s = spctl_read_file(&text, &len, pos[0]);
    if (s != SP_OK) return s;
    t.text = text;
    const char *dir = spctl_env("SP_EDGE_DIR");
    if (dir != NULL && pasteable(dir)) s = make_dir(dir);
    if (s == SP_OK) s = spctl_write_atomic(pos[1], 0644, render, &t);
    free(text);
    return s;
}
