/* secrets.c -- "spctl gen-secrets FILE": creates FILE (0600) with the generated secrets
 * of a stack, or adds to an existing FILE only the keys it lacks. Values are lower-case
 * hex, safe unquoted in a shell `source` and in the nats-server config. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spcrypto.h"
#include "spctl.h"

typedef struct {
    const char *key;
    size_t bytes; /* random bytes; the value is twice as many hex characters */
} secret_def;

static const secret_def secrets[] = {
    {"SP_JWT_SECRET", 32},
    {"SP_MASTER_KEY", 32},
    {"SP_NATS_GATEWAY_PASSWORD", 16},
    {"SP_NATS_AUTH_PASSWORD", 16},
    {"SP_NATS_TENANCY_PASSWORD", 16},
    {"SP_NATS_CATALOG_PASSWORD", 16},
    {"SP_NATS_INGEST_PASSWORD", 16},
    {"SP_NATS_PROJECTION_PASSWORD", 16},
    {"SP_NATS_SPCTL_PASSWORD", 16},
    /* PostgreSQL: the cluster's superuser (spctl migrate, create-admin) and each service's
     * own role, the owner of its schema only (spctl migrate creates it) */
    {"SP_PG_PASSWORD", 16},
    {"SP_PG_AUTH_PASSWORD", 16},
    {"SP_PG_TENANCY_PASSWORD", 16},
    {"SP_PG_CATALOG_PASSWORD", 16},
    {"SP_PG_INGEST_PASSWORD", 16},
    {"SP_PG_PROJECTION_PASSWORD", 16},
    {"SP_REDIS_PASSWORD", 16},
};

static void help(void)
{
    fputs("usage: spctl gen-secrets FILE\n\n"
          "Creates FILE (mode 0600) with KEY=VALUE lines of random hex secrets, or adds to an\n"
          "existing FILE the keys it lacks, keeping every value already there:\n",
          stdout);
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
        printf("  %s (%zu random bytes)\n", secrets[i].key, secrets[i].bytes);
    fputs("Secrets are never printed.\n", stdout);
}

/* true when 'text' has a line "KEY=..." (optionally "export KEY=..."). */
static bool has_key(const char *text, const char *key)
{
    size_t klen = strlen(key);

    for (const char *line = text; line && *line;) {
        const char *p = line;

        while (*p == ' ' || *p == '\t')
            p++;
        if (strncmp(p, "export ", 7) == 0) p += 7;
        if (strncmp(p, key, klen) == 0 && p[klen] == '=') return true;
        line = strchr(line, '\n');
        if (line) line++;
    }
    return false;
}

static sp_status write_all(int fd, const char *buf, size_t len, const char *path)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);

        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return spctl_fail(SP_ERR_INTERNAL, "cannot write %s: %s", path, strerror(errno));
        buf += w;
        len -= (size_t)w;
    }
    return SP_OK;
}

sp_status spctl_gen_secrets(int argc, char **argv)
{
    const char *pos[1] = {NULL};
    size_t npos = 0;
    bool want_help = false;
    char *old = NULL;
    size_t oldlen = 0;
    int fd = -1;
    sp_status s = spctl_parse(argc, argv, NULL, 0, pos, 1, &npos, &want_help);

    if (s != SP_OK) return s;
    if (want_help) {
        help();
        return SP_OK;
    }
    if (npos != 1)
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "gen-secrets: FILE is required (see --help)");
    const char *path = pos[0];

    /* O_NOFOLLOW: never write secrets through a planted symlink */
    fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) return spctl_fail(SP_ERR_INTERNAL, "cannot open %s: %s", path, strerror(errno));
    if (fchmod(fd, 0600) != 0) {
        s = spctl_fail(SP_ERR_INTERNAL, "cannot chmod %s: %s", path, strerror(errno));
        goto out;
    }
    s = spctl_read_file(&old, &oldlen, path);
    if (s != SP_OK) goto out;

    size_t added = 0;

    if (oldlen > 0 && old[oldlen - 1] != '\n') {
        s = write_all(fd, "\n", 1, path);
        if (s != SP_OK) goto out;
    }
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        uint8_t raw[64];
        char line[256];

        if (has_key(old, secrets[i].key)) continue;
        spcrypto_random(raw, secrets[i].bytes);
        /* keys are short constants and values at most 128 hex characters: fits in line */
        size_t n = (size_t)snprintf(line, sizeof line, "%s=", secrets[i].key);

        spcrypto_hex(line + n, raw, secrets[i].bytes);
        n += 2 * secrets[i].bytes;
        line[n++] = '\n';
        s = write_all(fd, line, n, path);
        explicit_bzero(raw, sizeof raw);
        explicit_bzero(line, sizeof line);
        if (s != SP_OK) goto out;
        added++;
    }
    if (fsync(fd) != 0) {
        s = spctl_fail(SP_ERR_INTERNAL, "cannot sync %s: %s", path, strerror(errno));
        goto out;
    }
    if (added > 0) printf("secrets: %zu key(s) added to %s\n", added, path);
out:
    if (old) {
        explicit_bzero(old, oldlen);
        free(old);
    }
    if (fd >= 0) close(fd);
    return s;
}
