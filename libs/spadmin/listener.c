/* listener.c -- the admin HTTP listener: /healthz, /readyz, /metrics over CivetWeb. */
#include <civetweb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spadmin.h"

struct spadmin {
    struct mg_context *ctx;
    spadmin_ready_fn ready;
    void *user;
};

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;

static void init_library(void)
{
    mg_init_library(0);
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/* Writes the whole response in one mg_write: a response split in two waits for the peer's
 * delayed ACK (pitfalls.md). HEAD gets the headers only. */
static void respond(struct mg_connection *conn, int status, const char *type, const char *body,
                    const char *extra_headers)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    bool head = ri != NULL && ri->request_method != NULL && strcmp(ri->request_method, "HEAD") == 0;
    size_t blen = strlen(body);
    char hdr[512];
    int hlen =
        snprintf(hdr, sizeof(hdr),
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: %s\r\n"
                 "Content-Length: %zu\r\n"
                 "Cache-Control: no-store\r\n"
                 "X-Content-Type-Options: nosniff\r\n"
                 "%s"
                 "\r\n",
                 status, reason_phrase(status), type, blen, extra_headers ? extra_headers : "");
    if (hlen < 0 || (size_t)hlen >= sizeof(hdr)) return;
    size_t total = (size_t)hlen + (head ? 0 : blen);
    char *out = malloc(total);
    if (out == NULL) return;
    /* bytes to send, not a string: no terminating NUL */
    memcpy(out, hdr, (size_t)hlen);
    if (!head) memcpy(out + hlen, body, blen); // NOLINT(bugprone-not-null-terminated-result)
    mg_write(conn, out, total);
    free(out);
}

/* Appends s to out as the inside of a JSON string. */
static void json_escape(char *out, size_t cap, const char *s)
{
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c != '\0' && o + 7 < cap; c++) {
        if (*c == '"' || *c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)*c;
        } else if (*c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *c);
        } else {
            out[o++] = (char)*c;
        }
    }
    out[o] = '\0';
}

static int answer_readyz(struct mg_connection *conn, spadmin_ready_fn ready, void *user,
                         const char *extra)
{
    char why[256] = "";
    if (ready == NULL || ready(user, why, sizeof(why))) {
        respond(conn, 200, "application/json", "{\"status\":\"ready\"}", extra);
        return 200;
    }
    why[sizeof(why) - 1] = '\0';
    char esc[sizeof(why) * 6 + 1];
    json_escape(esc, sizeof(esc), why[0] != '\0' ? why : "not ready");
    char body[sizeof(esc) + 64];
    snprintf(body, sizeof(body), "{\"status\":\"not ready\",\"reason\":\"%s\"}", esc);
    respond(conn, 503, "application/json", body, extra);
    return 503;
}

/* The status code it answered, or 0 when 'path' is not one of the three. 'extra' holds
 * headers added to every answer ("Name: value\r\n" lines) or NULL. */
static int answer(struct mg_connection *conn, const char *path, spadmin_ready_fn ready, void *user,
                  const char *extra)
{
    bool health = strcmp(path, "/healthz") == 0, readyz = strcmp(path, "/readyz") == 0,
         metrics = strcmp(path, "/metrics") == 0;
    if (!health && !readyz && !metrics) return 0;
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *m = ri != NULL && ri->request_method != NULL ? ri->request_method : "";
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
        char allow[256];
        snprintf(allow, sizeof(allow), "Allow: GET, HEAD\r\n%s", extra ? extra : "");
        respond(conn, 405, "application/json",
                "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"GET only\"}}", allow);
        return 405;
    }
    if (health) {
        respond(conn, 200, "application/json", "{\"status\":\"ok\"}", extra);
        return 200;
    }
    if (readyz) return answer_readyz(conn, ready, user, extra);
    char *text = spadmin_metrics_render();
    if (text == NULL) {
        respond(conn, 500, "text/plain; charset=utf-8", "out of memory\n", extra);
        return 500;
    }
    respond(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, extra);
    free(text);
    return 200;
}

int spadmin_handle(void *conn, const char *path, spadmin_ready_fn ready, void *user,
                   const char *extra_headers)
{
    if (conn == NULL || path == NULL) return 0;
    return answer(conn, path, ready, user, extra_headers) != 0;
}

/* Every request of the admin port comes here; nothing else ever serves it (no
 * document_root). The return value is the status CivetWeb logs. */
static int begin_request(struct mg_connection *conn)
{
    spadmin *a = mg_get_user_data(mg_get_context(conn));
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *path = ri != NULL && ri->local_uri != NULL ? ri->local_uri : "";
    int status = answer(conn, path, a->ready, a->user, NULL);
    if (status != 0) return status;
    respond(conn, 404, "application/json",
            "{\"error\":{\"code\":\"not_found\",\"message\":\"no such path\"}}", NULL);
    return 404;
}

/* CivetWeb prints its errors to stderr by itself; route them to our log instead. */
static int log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    sp_log_warn(NULL, "admin_http_error", "error", message);
    return 1;
}

sp_status spadmin_start(spadmin **out, const char *addr, spadmin_ready_fn ready, void *user)
{
    if (out == NULL) return SP_ERR_INTERNAL;
    *out = NULL;
    const char *colon = addr != NULL ? strrchr(addr, ':') : NULL;
    if (colon == NULL || colon == addr || colon[1] == '\0' || strchr(addr, '[') != NULL ||
        strchr(addr, ',') != NULL || strlen(addr) > 64)
        return SP_ERR_VALIDATION_FAILED;
    for (const char *p = colon + 1; *p != '\0'; p++)
        if (*p < '0' || *p > '9') return SP_ERR_VALIDATION_FAILED;

    pthread_once(&g_init_once, init_library);
    spadmin *a = calloc(1, sizeof(*a));
    if (a == NULL) return SP_ERR_INTERNAL;
    a->ready = ready;
    a->user = user;

    /* CORS: CivetWeb answers with '*' by default; the admin port answers none. */
    const char *options[] = {"listening_ports",
                             addr,
                             "num_threads",
                             "4",
                             "enable_keep_alive",
                             "yes",
                             "tcp_nodelay",
                             "1",
                             "request_timeout_ms",
                             "10000",
                             "access_control_allow_origin",
                             "",
                             "access_control_allow_methods",
                             "",
                             "access_control_allow_headers",
                             "",
                             NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.begin_request = begin_request;
    cb.log_message = log_message;
    struct mg_init_data init = {.callbacks = &cb, .user_data = a, .configuration_options = options};
    char text[256] = "";
    unsigned code = 0;
    struct mg_error_data err = {.code = &code, .text = text, .text_buffer_size = sizeof(text)};
    a->ctx = mg_start2(&init, &err);
    if (a->ctx == NULL) {
        sp_log_error(NULL, "admin_listen_failed", "addr", addr, "error", text);
        free(a);
        return SP_ERR_UNAVAILABLE;
    }
    sp_log_info(NULL, "admin_listening", "addr", addr);
    *out = a;
    return SP_OK;
}

void spadmin_stop(spadmin *a)
{
    if (a == NULL) return;
    mg_stop(a->ctx);
    free(a);
}
