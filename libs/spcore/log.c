/* log.c -- JSON-lines logging: {"time","level","service","requestId","msg", fields...}.
 * One write(2) per line, so lines of threads never interleave (a line is at most 4 KiB:
 * atomic on a pipe, and on a file opened O_APPEND) and no lock is taken: the stream's lock
 * made the gateway's threads queue behind each other's write (bench/results). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "spcore.h"

static char g_service[64] = "sp";
static sp_log_level g_min = SP_LOG_INFO;
static FILE *g_stream;

static const char *level_name[] = {"debug", "info", "warn", "error"};

void sp_log_init(const char *service, sp_log_level min_level)
{
    snprintf(g_service, sizeof(g_service), "%s", service);
    g_min = min_level;
    const char *lv = getenv("SP_LOG_LEVEL");
    if (lv != NULL)
        for (int i = 0; i < 4; i++)
            if (strcasecmp(lv, level_name[i]) == 0) g_min = (sp_log_level)i;
}

void sp_log_set_stream(FILE *f)
{
    g_stream = f;
}

bool sp_log_key_is_secret(const char *key)
{
    static const char *words[] = {"password", "secret",  "token",  "authorization",
                                  "apikey",   "api_key", "cookie", "signature"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strcasestr(key, words[i]) != NULL) return true;
    return false;
}

/* Appends s as a JSON string (quotes included), escaping what JSON requires. */
static void put_str(char **p, char *end, const char *s)
{
    char *o = *p;
    if (o < end) *o++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0' && o + 7 < end; c++) {
        if (*c == '"' || *c == '\\') {
            *o++ = '\\';
            *o++ = (char)*c;
        } else if (*c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (*c < 0x20) {
            o += snprintf(o, (size_t)(end - o), "\\u%04x", *c);
        } else {
            *o++ = (char)*c;
        }
    }
    if (o < end) *o++ = '"';
    *p = o;
}

size_t sp_url_redact(char *out, size_t n, const char *in)
{
    size_t o = 0;
    for (const char *c = in; *c != '\0';) {
        const char *sep = strstr(c, "://");
        if (sep == NULL)
            sep = c + strlen(c);
        else
            sep += 3;
        /* up to the authority: copied as it is */
        for (; c < sep; c++)
            if (o + 1 < n) out[o++] = *c;
        if (*c == '\0') break;
        /* the authority ends at the path, query, fragment or the next URL of a list */
        size_t alen = strcspn(c, "/?#,");
        const char *at = memrchr(c, '@', alen);
        if (at != NULL) {
            for (const char *r = "[redacted]"; *r != '\0'; r++)
                if (o + 1 < n) out[o++] = *r;
            c = at; /* the '@' and the host follow */
        }
    }
    if (n > 0) out[o] = '\0';
    return o;
}

static void put_raw(char **p, char *end, const char *s)
{
    size_t n = strlen(s);
    if ((size_t)(end - *p) < n) n = (size_t)(end - *p);
    memcpy(*p, s, n);
    *p += n;
}

void sp_logv(sp_log_level lvl, const char *request_id, const char *msg, va_list ap)
{
    if (lvl < g_min) return;
    char line[4096];
    char *p = line, *end = line + sizeof(line) - 2;
    char ts[40];
    sp_time_format(ts, sizeof(ts), sp_now_us());
    put_raw(&p, end, "{\"time\":");
    put_str(&p, end, ts);
    put_raw(&p, end, ",\"level\":");
    put_str(&p, end, level_name[lvl]);
    put_raw(&p, end, ",\"service\":");
    put_str(&p, end, g_service);
    if (request_id != NULL && request_id[0] != '\0') {
        put_raw(&p, end, ",\"requestId\":");
        put_str(&p, end, request_id);
    }
    put_raw(&p, end, ",\"msg\":");
    put_str(&p, end, msg ? msg : "");
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (k == NULL) break;
        const char *v = va_arg(ap, const char *);
        put_raw(&p, end, ",");
        put_str(&p, end, k);
        put_raw(&p, end, ":");
        if (sp_log_key_is_secret(k)) {
            put_str(&p, end, "[redacted]");
        } else if (v != NULL && strstr(v, "://") != NULL) {
            char clean[1024]; /* a URL's user and password never show */
            sp_url_redact(clean, sizeof(clean), v);
            put_str(&p, end, clean);
        } else {
            put_str(&p, end, v ? v : "");
        }
    }
    put_raw(&p, end, "}");
    *p++ = '\n';
    FILE *f = g_stream ? g_stream : stderr;
    int fd = fileno(f);
    if (fd < 0) { /* a stream without a file (open_memstream): through stdio */
        fwrite(line, 1, (size_t)(p - line), f);
        fflush(f);
        return;
    }
    for (const char *w = line; w < p;) {
        ssize_t n = write(fd, w, (size_t)(p - w));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break; /* nowhere to log to: nothing else to do */
        w += n;
    }
}

void sp_log(sp_log_level lvl, const char *request_id, const char *msg, ...)
{
    va_list ap;
    va_start(ap, msg);
    sp_logv(lvl, request_id, msg, ap);
    va_end(ap);
}
