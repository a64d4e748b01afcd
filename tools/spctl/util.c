/* util.c -- helpers shared by the spctl subcommands: errors, option parsing, files. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spctl.h"
#include "spdb.h"

sp_status spctl_fail(sp_status status, const char *fmt, ...)
{
    va_list ap;

    fputs("spctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return status;
}

static const spctl_opt *find_opt(const spctl_opt *opts, size_t nopts, const char *arg,
                                 size_t namelen)
{
    for (size_t i = 0; i < nopts; i++) {
        if (strlen(opts[i].name) == namelen && strncmp(opts[i].name, arg, namelen) == 0)
            return &opts[i];
    }
    return NULL;
}

sp_status spctl_parse(int argc, char **argv, const spctl_opt *opts, size_t nopts, const char **pos,
                      size_t npos, size_t *npos_out, bool *help)
{
    size_t np = 0;
    bool only_pos = false;

    *help = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];

        if (only_pos || a[0] != '-' || a[1] == '\0') {
            if (np >= npos)
                return spctl_fail(SP_ERR_VALIDATION_FAILED, "%s: unexpected argument '%s'", argv[0],
                                  a);
            pos[np++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            *help = true;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t namelen = eq ? (size_t)(eq - a) : strlen(a);
        const spctl_opt *o = find_opt(opts, nopts, a, namelen);

        if (!o)
            return spctl_fail(SP_ERR_VALIDATION_FAILED, "%s: unknown option '%.*s' (see --help)",
                              argv[0], (int)namelen, a);
        if (!o->has_value) {
            if (eq)
                return spctl_fail(SP_ERR_VALIDATION_FAILED, "%s: option %s takes no value", argv[0],
                                  o->name);
            *o->flag = true;
            continue;
        }
        if (eq) {
            *o->value = eq + 1;
        } else if (i + 1 < argc) {
            *o->value = argv[++i];
        } else {
            return spctl_fail(SP_ERR_VALIDATION_FAILED, "%s: option %s needs a value", argv[0],
                              o->name);
        }
    }
    if (npos_out) *npos_out = np;
    return SP_OK;
}

const char *spctl_env(const char *name)
{
    const char *v = getenv(name);

    return (v && *v) ? v : NULL;
}

sp_status spctl_read_file(char **out, size_t *len, const char *path)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;

    *out = NULL;
    if (len) *len = 0;
    f = fopen(path, "rb");
    if (!f) return spctl_fail(SP_ERR_NOT_FOUND, "cannot open %s: %s", path, strerror(errno));
    for (;;) {
        if (n + 4096 + 1 > cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, ncap);

            if (!nb) {
                free(buf);
                fclose(f);
                return spctl_fail(SP_ERR_INTERNAL, "out of memory reading %s", path);
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);

        n += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        fclose(f);
        return spctl_fail(SP_ERR_INTERNAL, "cannot read %s", path);
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return SP_OK;
}

sp_status spctl_write_atomic(const char *out, unsigned mode,
                             sp_status (*write)(FILE *f, const void *ud), const void *ud)
{
    size_t tlen = strlen(out) + 16;
    char *tmp = malloc(tlen);

    if (!tmp) return spctl_fail(SP_ERR_INTERNAL, "out of memory");
    snprintf(tmp, tlen, "%s.tmp", out);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    sp_status s;

    if (!f) {
        s = spctl_fail(SP_ERR_INTERNAL, "cannot create %s: %s", tmp, strerror(errno));
        if (fd >= 0) close(fd);
        free(tmp);
        return s;
    }
    fchmod(fd, (mode_t)mode); /* whatever the umask */
    s = write(f, ud);
    if (fflush(f) != 0 || fsync(fd) != 0) {
        if (s == SP_OK)
            s = spctl_fail(SP_ERR_INTERNAL, "cannot write %s: %s", tmp, strerror(errno));
    }
    fclose(f);
    if (s == SP_OK && rename(tmp, out) != 0)
        s = spctl_fail(SP_ERR_INTERNAL, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    if (s != SP_OK) unlink(tmp);
    free(tmp);
    return s;
}

size_t spctl_utf8_len(const char *s)
{
    size_t n = 0;

    for (; *s; s++) {
        if (((unsigned char)*s & 0xC0) != 0x80) n++;
    }
    return n;
}

sp_status spctl_db_connect(spdb **out, const char *url, const char *cmd)
{
    /* an operator's job: a migration may run long, and a second migrator waits for the
     * first one's advisory lock (no statement or lock timeout; idle ones still end) */
    const spdb_opts opts = {.statement_timeout_ms = SPDB_TIMEOUT_NONE,
                            .lock_timeout_ms = SPDB_TIMEOUT_NONE,
                            .idle_in_tx_timeout_ms = 0};
    sp_status s = spdb_connect_opts(out, url, &opts);

    if (s == SP_OK) return SP_OK;
    /* spdb keeps the reason to itself: ask libpq once more, for the operator */
    const char *const keys[] = {"dbname", "connect_timeout", NULL};
    const char *const vals[] = {url, "5", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    char reason[256];
    const char *msg = PQerrorMessage(c);
    size_t i = 0;

    for (; msg && msg[i] && msg[i] != '\n' && i + 1 < sizeof reason; i++)
        reason[i] = msg[i];
    reason[i] = '\0';
    PQfinish(c);
    return spctl_fail(s, "%s: cannot connect to SP_DATABASE_URL: %s", cmd,
                      reason[0] ? reason : sp_error_code(s));
}
