/* spredis.c -- Redis over hiredis with timeouts and reconnect. */
#include "spredis.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RECONNECT_INTERVAL_US 200000
#define MAX_CMD_ARGS 64

struct spredis {
    char host[256];
    int port;
    char user[128];
    char password[256];
    int db;
    struct timeval timeout;
    redisContext *ctx; /* NULL when dead */
    int64_t last_attempt_us;
    unsigned generation;
};

/* redis://[[user]:password@]host[:port][/db] */
static sp_status parse_url(spredis *r, const char *url)
{
    static const char scheme[] = "redis://";
    if (!url || strncmp(url, scheme, sizeof scheme - 1) != 0) return SP_ERR_VALIDATION_FAILED;
    const char *p = url + sizeof scheme - 1;
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon) return SP_ERR_VALIDATION_FAILED;
        size_t ulen = (size_t)(colon - p), plen = (size_t)(at - colon - 1);
        if (ulen >= sizeof r->user || plen >= sizeof r->password) return SP_ERR_VALIDATION_FAILED;
        memcpy(r->user, p, ulen);
        r->user[ulen] = '\0';
        memcpy(r->password, colon + 1, plen);
        r->password[plen] = '\0';
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0 || hlen >= sizeof r->host) return SP_ERR_VALIDATION_FAILED;
    memcpy(r->host, p, hlen);
    r->host[hlen] = '\0';
    p += hlen;
    r->port = 6379;
    if (*p == ':') {
        char *end;
        errno = 0;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || errno || port < 1 || port > 65535) return SP_ERR_VALIDATION_FAILED;
        r->port = (int)port;
        p = end;
    }
    r->db = 0;
    if (*p == '/' && p[1]) {
        char *end;
        errno = 0;
        long db = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end || errno || db < 0 || db > INT_MAX)
            return SP_ERR_VALIDATION_FAILED;
        r->db = (int)db;
        p = end;
    } else if (*p == '/') {
        p++;
    }
    return *p ? SP_ERR_VALIDATION_FAILED : SP_OK;
}

static void drop(spredis *r)
{
    if (r->ctx) redisFree(r->ctx);
    r->ctx = NULL;
}

/* Sends one setup command (AUTH, SELECT); false when it did not answer OK. */
static bool setup_cmd(spredis *r, int argc, const char **argv)
{
    redisReply *rep = redisCommandArgv(r->ctx, argc, argv, NULL);
    bool ok = rep && rep->type == REDIS_REPLY_STATUS;
    if (!ok)
        sp_log_warn(NULL, "redis_setup_failed", "command", argv[0], "error",
                    rep && rep->type == REDIS_REPLY_ERROR ? rep->str : r->ctx->errstr);
    if (rep) freeReplyObject(rep);
    return ok;
}

/* A new context: connect, timeouts, AUTH, SELECT. Rate-limited by the caller. */
static bool connect_now(spredis *r)
{
    char port[16];
    drop(r);
    r->last_attempt_us = sp_monotonic_us();
    snprintf(port, sizeof port, "%d", r->port);
    r->ctx = redisConnectWithTimeout(r->host, r->port, r->timeout);
    if (!r->ctx || r->ctx->err) {
        sp_log_warn(NULL, "redis_connect_failed", "host", r->host, "port", port, "error",
                    r->ctx ? r->ctx->errstr : "out of memory");
        drop(r);
        return false;
    }
    if (redisSetTimeout(r->ctx, r->timeout) != REDIS_OK) {
        drop(r);
        return false;
    }
    if (r->password[0]) {
        const char *auth_user[] = {"AUTH", r->user, r->password};
        const char *auth[] = {"AUTH", r->password};
        bool ok = r->user[0] ? setup_cmd(r, 3, auth_user) : setup_cmd(r, 2, auth);
        if (!ok) {
            drop(r);
            return false;
        }
    }
    if (r->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->db);
        const char *sel[] = {"SELECT", db};
        if (!setup_cmd(r, 2, sel)) {
            drop(r);
            return false;
        }
    }
    r->generation++;
    sp_log_info(NULL, "redis_connected", "host", r->host, "port", port);
    return true;
}

/* Creates the client. The process's signal handling is the program's (spredis.h: SIGPIPE). */
sp_status spredis_create(spredis **out, const char *url, int timeout_ms)
{
    *out = NULL;
    if (timeout_ms <= 0) return SP_ERR_VALIDATION_FAILED;
    spredis *r = calloc(1, sizeof *r);
    if (!r) return SP_ERR_INTERNAL;
    sp_status s = parse_url(r, url);
    if (s != SP_OK) {
        free(r);
        return s;
    }
    r->timeout.tv_sec = timeout_ms / 1000;
    r->timeout.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;

    connect_now(r); /* a server that is down now is retried by the commands */
    *out = r;
    return SP_OK;
}

void spredis_destroy(spredis *r)
{
    if (!r) return;
    drop(r);
    free(r);
}

/* Whether the server closed an idle connection (it restarted, or timed the client out):
 * Redis sends nothing unasked on a command connection, so a socket readable before we
 * send is EOF or an error. One poll() without waiting. */
static bool closed_by_server(spredis *r)
{
    struct pollfd p = {.fd = r->ctx->fd, .events = POLLIN};
    int n;
    do
        n = poll(&p, 1, 0);
    while (n < 0 && errno == EINTR);
    return n > 0;
}

static bool ensure_connected(spredis *r)
{
    if (r->ctx) {
        if (!closed_by_server(r)) return true;
        /* found before sending: connect again at once (the last attempt succeeded), so the
         * first command after a restart of Redis does not fail */
        sp_log_info(NULL, "redis_connection_closed", "host", r->host);
        return connect_now(r);
    }
    if (sp_monotonic_us() - r->last_attempt_us < RECONNECT_INTERVAL_US) return false;
    return connect_now(r);
}

sp_status spredis_command(redisReply **out, spredis *r, int argc, const char **argv,
                          const size_t *argvlen)
{
    if (out) *out = NULL;
    if (argc <= 0 || !argv) return SP_ERR_VALIDATION_FAILED;
    if (!ensure_connected(r)) return SP_ERR_UNAVAILABLE;
    redisReply *rep = redisCommandArgv(r->ctx, argc, argv, argvlen);
    if (!rep) {
        /* I/O error, EOF or timeout: this context is dead for good */
        sp_log_warn(NULL, "redis_command_failed", "error", r->ctx->errstr);
        drop(r);
        return SP_ERR_UNAVAILABLE;
    }
    if (out)
        *out = rep;
    else
        freeReplyObject(rep);
    return SP_OK;
}

sp_status spredis_cmd(redisReply **out, spredis *r, const char *arg0, ...)
{
    const char *argv[MAX_CMD_ARGS];
    int argc = 0;
    va_list ap;
    if (out) *out = NULL;
    va_start(ap, arg0);
    for (const char *a = arg0; a; a = va_arg(ap, const char *)) {
        if (argc == MAX_CMD_ARGS) {
            va_end(ap);
            return SP_ERR_VALIDATION_FAILED;
        }
        argv[argc++] = a;
    }
    va_end(ap);
    return spredis_command(out, r, argc, argv, NULL);
}

bool spredis_ping(spredis *r)
{
    redisReply *rep = NULL;
    bool ok = spredis_cmd(&rep, r, "PING", NULL) == SP_OK && rep->type == REDIS_REPLY_STATUS &&
              strcmp(rep->str, "PONG") == 0;
    if (rep) freeReplyObject(rep);
    return ok;
}

bool spredis_exists(spredis *r, const char *key)
{
    redisReply *rep = NULL;
    bool yes = spredis_cmd(&rep, r, "EXISTS", key, NULL) == SP_OK && rep != NULL &&
               rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
    if (rep) freeReplyObject(rep);
    return yes;
}

unsigned spredis_generation(const spredis *r)
{
    return r->generation;
}
