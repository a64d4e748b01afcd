/* openapi.c -- GET /v1/openapi.json and GET /docs: the document built at start from the
 * route table and docs/openapi-notes.json, and docs/api.html, both files built into the
 * gateway as byte arrays (CMake runs 'xxd -i' on them). */
#include <civetweb.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* Generated from docs/ by the build (build/<dir>/gen/sp_*.c): not NUL-terminated. */
extern unsigned char sp_openapi_notes_json[];
extern unsigned int sp_openapi_notes_json_len;
extern unsigned char sp_api_html[];
extern unsigned int sp_api_html_len;

/* Set once by gw_openapi_init, before the listener starts; read-only afterwards. */
static unsigned char *g_doc;
static unsigned int g_doc_len;

bool gw_openapi_init(bool indented, char *why, size_t whylen)
{
    size_t n = 0;
    const gw_route *routes = gw_routes(&n);
    cJSON *doc = gw_openapi_build(routes, n, (const char *)sp_openapi_notes_json,
                                  sp_openapi_notes_json_len, why, whylen);
    if (doc == NULL) return false;
    char *text = indented ? cJSON_Print(doc) : cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (text == NULL || strlen(text) > UINT_MAX) {
        free(text);
        snprintf(why, whylen, "out of memory");
        return false;
    }
    free(g_doc);
    g_doc = (unsigned char *)text;
    g_doc_len = (unsigned int)strlen(text);
    return true;
}

const char *gw_openapi_text(size_t *len)
{
    *len = g_doc_len;
    return (const char *)g_doc;
}

/* The page runs its own inline script and fetches the document from this origin only. */
#define DOCS_CSP                                                                                   \
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "                  \
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "              \
    "frame-ancestors 'none'"

typedef struct {
    const char *path;
    const char *ctype;
    const char *extra; /* more headers, each ending in \r\n */
    const unsigned char *body;
    const unsigned int *len;
} asset;

static const asset assets[] = {
    {"/v1/openapi.json", "application/json; charset=utf-8", "", NULL, &g_doc_len},
    {"/docs", "text/html; charset=utf-8",
     "Content-Security-Policy: " DOCS_CSP "\r\nReferrer-Policy: no-referrer\r\n", sp_api_html,
     &sp_api_html_len},
};

/* Writes status line, headers and body in one mg_write (pitfalls.md: CivetWeb, Nagle).
 * HEAD gets the headers only. Returns 'status', or 500 when out of memory. */
static int write_all(struct mg_connection *conn, int status, const char *reason, const char *ctype,
                     const char *cache, const char *extra, const char *rid,
                     const unsigned char *body, size_t len, int head)
{
    char hdr[768];
    int n = snprintf(hdr, sizeof(hdr),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-Request-Id: %s\r\nCache-Control: %s\r\nX-Content-Type-Options: nosniff\r\n"
                     "%s\r\n",
                     status, reason, ctype, len, rid, cache, extra);
    if (n < 0 || (size_t)n >= sizeof(hdr)) return 500; /* cannot happen: every part is bounded */
    size_t total = (size_t)n + (head ? 0 : len);
    char *out = malloc(total);
    if (out == NULL) {
        static const char oom[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        mg_write(conn, oom, sizeof(oom) - 1);
        return 500;
    }
    memcpy(out, hdr, (size_t)n);
    if (!head) memcpy(out + n, body, len);
    mg_write(conn, out, total);
    free(out);
    return status;
}

int gw_openapi_serve(struct mg_connection *conn, const char *method, const char *path,
                     const char *rid, const char **route)
{
    const asset *a = NULL;
    for (size_t i = 0; path != NULL && i < sizeof(assets) / sizeof(assets[0]); i++)
        if (strcmp(path, assets[i].path) == 0) a = &assets[i];
    if (a == NULL) return 0;
    *route = a->path;

    int head = strcmp(method, "HEAD") == 0;
    if (!head && strcmp(method, "GET") != 0) {
        /* 'rid' is at most 64 of [A-Za-z0-9._-] (http.c): safe inside a JSON string. */
        char body[256];
        int n = snprintf(body, sizeof(body),
                         "{\"error\":{\"code\":\"%s\",\"message\":\"method not allowed here "
                         "(allowed: GET, HEAD)\",\"requestId\":\"%s\"}}",
                         sp_error_code(SP_ERR_METHOD_NOT_ALLOWED), rid);
        if (n < 0 || (size_t)n >= sizeof(body)) n = 0;
        /* A body sent with it stays unread: do not read the rest as the next request. */
        mg_disable_connection_keep_alive(conn);
        return write_all(conn, sp_error_http_status(SP_ERR_METHOD_NOT_ALLOWED),
                         "Method Not Allowed", "application/json; charset=utf-8", "no-store",
                         "Allow: GET, HEAD\r\nConnection: close\r\n", rid,
                         (const unsigned char *)body, (size_t)n, 0);
    }
    /* Changes only with a new build: a short cache, revalidated by the next deploy. */
    const unsigned char *body = a->body != NULL ? a->body : g_doc; /* NULL: the document */
    return write_all(conn, 200, "OK", a->ctype, "public, max-age=300", a->extra, rid, body, *a->len,
                     head);
}
