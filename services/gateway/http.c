/* http.c -- the gateway's request pipeline: request id, route, token, body checks, JSON to
 * protobuf, the bus call and the JSON answer, in the order of api.md "Which error wins". */
#include <civetweb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gateway.h"
#include "spadmin.h"
#include "spcrypto.h"
#include "spjson.h"
#include "sppb.h"

#define MAX_REQUEST_ID 64
#define MAX_USER_AGENT 256
#define MAX_CONTENT_TYPE 256
#define JWT_LEEWAY_S 30

typedef struct {
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    gw_state *g;
    sp_arena *arena;
    char rid[MAX_REQUEST_ID + 1];
    const char *route;  /* the route pattern for logs and metrics, never the raw path */
    const char *method; /* the method for metrics: a known one or "OTHER" */
    char headers[192];  /* extra response headers ("Allow: GET\r\n") */
    bool close;         /* answer with Connection: close (body left unread, or unsafe) */
    bool head;          /* a HEAD: the answer's headers without its body */
    int ncl, nte;       /* Content-Length and Transfer-Encoding headers (frame_ok_or_reply) */
    int status;
    char *body; /* the request body (malloc'd, at most max_body bytes) */
    size_t body_len;
    int retry_after_s; /* the service's Retry-After for a 429/503 error (0: the default) */
} gw_req;

/* ---- small helpers ------------------------------------------------------------------------ */

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return status >= 500 ? "Internal Server Error" : "Error";
    }
}

static const char *metric_method(const char *m)
{
    static const char *known[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(m, known[i]) == 0) return known[i];
    return "OTHER";
}

/* A random UUIDv4 for a request id. A request id needs to be unique, not secret: the bits
 * come from a per-thread xorshift128+ seeded once from the system's generator, instead of
 * RAND_bytes per request (OpenSSL checks for a fork with a getpid system call each time). */
static void new_request_id(char out[SPCRYPTO_UUID_LEN])
{
    static __thread uint64_t s[2];
    while (s[0] == 0 && s[1] == 0) /* once per thread: the state is never all zero after */
        spcrypto_random(s, sizeof(s));
    uint8_t b[16];
    for (size_t half = 0; half < 2; half++) {
        uint64_t x = s[0], y = s[1];
        s[0] = y;
        x ^= x << 23;
        s[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
        uint64_t v = s[1] + y;
        memcpy(b + half * 8, &v, 8);
    }
    b[6] = (uint8_t)((b[6] & 0x0F) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3F) | 0x80); /* RFC 9562 variant */
    static const char hex[] = "0123456789abcdef";
    char *o = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) *o++ = '-';
        *o++ = hex[b[i] >> 4];
        *o++ = hex[b[i] & 0x0F];
    }
    *o = '\0';
}

/* The client's X-Request-Id when it is safe to echo (1..64 of [A-Za-z0-9._-]), else a
 * new UUIDv4. */
static void request_id(gw_req *r)
{
    const char *h = mg_get_header(r->conn, "X-Request-Id");
    if (h != NULL) {
        size_t n = strnlen(h, MAX_REQUEST_ID + 1);
        bool ok = n > 0 && n <= MAX_REQUEST_ID;
        for (size_t i = 0; ok && i < n; i++) {
            char c = h[i];
            ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        }
        if (ok) {
            memcpy(r->rid, h, n);
            r->rid[n] = '\0';
            return;
        }
    }
    new_request_id(r->rid);
}

static void add_header(gw_req *r, const char *name, const char *value)
{
    size_t used = strlen(r->headers);
    snprintf(r->headers + used, sizeof(r->headers) - used, "%s: %s\r\n", name, value);
}

/* Writes the whole response (status line, headers, body) in one mg_write: CivetWeb
 * with tcp_nodelay sends it in one segment. 'body' may be NULL (204, or no body). */
static void respond(gw_req *r, int status, const char *ctype, const char *body, size_t len)
{
    char head[512];
    int n;
    r->status = status;
    /* CivetWeb would otherwise keep the connection and read what follows an unread or
     * ambiguous body as the next request. */
    if (r->close) mg_disable_connection_keep_alive(r->conn);
    if (status == 204 || body == NULL)
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nX-Request-Id: %s\r\nCache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n%s%s%s\r\n",
                     status, status_text(status), r->rid, r->headers,
                     r->close ? "Connection: close\r\n" : "",
                     status == 204 ? "" : "Content-Length: 0\r\n");
    else
        n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-Request-Id: %s\r\nCache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n%s%s\r\n",
                     status, status_text(status), ctype, len, r->rid, r->headers,
                     r->close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(head)) n = 0; /* cannot happen: every part is bounded */
    /* a HEAD gets the headers a GET would (its Content-Length too) and no body: a body
     * after them would be read as the start of the next answer */
    size_t blen = (status == 204 || body == NULL || r->head) ? 0 : len;
    char *buf = sp_arena_alloc(r->arena, (size_t)n + blen);
    if (buf == NULL) return;
    memcpy(buf, head, (size_t)n);
    if (blen > 0) memcpy(buf + n, body, blen);
    mg_write(r->conn, buf, (size_t)n + blen);
}

static void respond_json(gw_req *r, int status, cJSON *json)
{
    char *text = json != NULL ? cJSON_PrintUnformatted(json) : NULL;
    if (text == NULL) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        respond(r, 500, "application/json; charset=utf-8", oom, sizeof(oom) - 1);
        return;
    }
    respond(r, status, "application/json; charset=utf-8", text, strlen(text));
    free(text);
}

/* Answers {"error":{code,message,requestId,fields?}} with the status of 's'. 'paths' and
 * 'reasons' hold nfields entries (may be NULL). Returns 's' so a step can end with
 * 'return reply_error(...)'. */
static sp_status reply_error_fields(gw_req *r, sp_status s, const char *message,
                                    const char *const *paths, const char *const *reasons,
                                    size_t nfields)
{
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    if (e != NULL) {
        cJSON_AddStringToObject(e, "code", sp_error_code(s));
        cJSON_AddStringToObject(e, "message", message != NULL ? message : sp_error_code(s));
        cJSON_AddStringToObject(e, "requestId", r->rid);
        if (nfields > 0) {
            cJSON *f = cJSON_AddObjectToObject(e, "fields");
            for (size_t i = 0; f != NULL && i < nfields; i++)
                if (spjson_get(f, paths[i]) == NULL)
                    cJSON_AddStringToObject(f, paths[i], reasons[i]);
        }
    }
    char retry[16];
    snprintf(retry, sizeof(retry), "%d", r->retry_after_s);
    if (s == SP_ERR_UNAVAILABLE) add_header(r, "Retry-After", r->retry_after_s > 0 ? retry : "1");
    if (s == SP_ERR_RATE_LIMITED) add_header(r, "Retry-After", r->retry_after_s > 0 ? retry : "60");
    respond_json(r, sp_error_http_status(s), root);
    cJSON_Delete(root);
    return s;
}

static sp_status reply_error(gw_req *r, sp_status s, const char *message)
{
    return reply_error_fields(r, s, message, NULL, NULL, 0);
}

/* ---- the steps ------------------------------------------------------------------------- */

/* Checks 'Authorization: Bearer <token>'. Replies 401 unauthenticated (no or another
 * scheme), token_expired or invalid_token. */
static sp_status authenticate_or_reply(gw_req *r, spjwt_claims *claims)
{
    const char *h = mg_get_header(r->conn, "Authorization");
    if (h == NULL) return reply_error(r, SP_ERR_UNAUTHENTICATED, "missing Authorization header");
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return reply_error(r, SP_ERR_UNAUTHENTICATED, "Authorization is not 'Bearer <token>'");
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    if (*tok == '\0')
        return reply_error(r, SP_ERR_UNAUTHENTICATED, "Authorization is not 'Bearer <token>'");
    if (strnlen(tok, SPJWT_MAX_TOKEN + 1) > SPJWT_MAX_TOKEN)
        return reply_error(r, SP_ERR_INVALID_TOKEN, "token too long");
    sp_status s = spjwt_verify(claims, &r->g->keys, tok, sp_now_us() / 1000000);
    if (s == SP_OK) return SP_OK;
    if (s == SP_ERR_TOKEN_EXPIRED) return reply_error(r, s, "access token expired");
    return reply_error(r, SP_ERR_INVALID_TOKEN, "invalid access token");
}

/* ---- revoked sessions ---------------------------------------------------------------- */

/* A verified token is accepted only once its session is known not to be revoked (api.md:
 * revocation kills access tokens at once), from the copy of Redis's revoked sessions in
 * memory (revoked.c). Replies 401 invalid_token for a revoked session, 503 unavailable
 * (with Retry-After) while that copy is not known to be fresh (Redis or NATS down). */
static sp_status check_session_or_reply(gw_req *r, const spjwt_claims *claims)
{
    if (claims->sid[0] == '\0') return reply_error(r, SP_ERR_INVALID_TOKEN, "invalid access token");
    sp_status s = gw_revoked_check(r->g->revoked, claims->sid);
    if (s == SP_ERR_UNAVAILABLE) {
        sp_log_warn(r->rid, "revocation_check_failed", "code", sp_error_code(s));
        return reply_error(r, SP_ERR_UNAVAILABLE, "session store unavailable");
    }
    if (s != SP_OK) return reply_error(r, SP_ERR_INVALID_TOKEN, "session revoked");
    return SP_OK;
}

/* "application/json", optionally with parameters ("; charset=utf-8"), any letter case. */
static bool is_json_type(const char *ct)
{
    if (ct == NULL || strnlen(ct, MAX_CONTENT_TYPE + 1) > MAX_CONTENT_TYPE) return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == 16 && strncasecmp(ct, "application/json", 16) == 0;
}

/* Reads the body, never more than max_body bytes (a longer body, chunked or not: 413).
 * Replies 400 (a body cut short) or 413; the framing was checked by frame_ok_or_reply. */
static sp_status read_body_or_reply(gw_req *r)
{
    const struct mg_request_info *ri = r->ri;
    int ncl = r->ncl, nte = r->nte; /* at most one of them: frame_ok_or_reply */
    long long max = r->g->max_body;
    if (ncl == 1 && ri->content_length > max) {
        r->close = true; /* the body stays unread */
        char msg[96];
        snprintf(msg, sizeof(msg), "body exceeds SP_HTTP_MAX_BODY (%lld)", max);
        return reply_error(r, SP_ERR_PAYLOAD_TOO_LARGE, msg);
    }
    if (nte == 0 && (ncl == 0 || ri->content_length <= 0)) return SP_OK; /* no body */

    /* CivetWeb does not answer 'Expect: 100-continue' itself: a client would wait (curl:
     * 1 s) before sending the body. The interim answer has to be its own write. */
    const char *expect = mg_get_header(r->conn, "Expect");
    if (expect != NULL && strcasecmp(expect, "100-continue") == 0 &&
        strcmp(ri->http_version, "1.1") == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        mg_write(r->conn, cont, sizeof(cont) - 1);
    }
    size_t cap = nte > 0 ? 16384 : (size_t)ri->content_length;
    r->body = malloc(cap + 1);
    if (r->body == NULL) return reply_error(r, SP_ERR_INTERNAL, "out of memory");
    for (;;) {
        if (r->body_len == cap) {
            if (ncl == 1) break;
            if ((long long)cap > max) break; /* read one byte past the limit: too large */
            size_t ncap = cap * 2 > (size_t)max + 1 ? (size_t)max + 1 : cap * 2;
            char *nb = realloc(r->body, ncap + 1);
            if (nb == NULL) return reply_error(r, SP_ERR_INTERNAL, "out of memory");
            r->body = nb;
            cap = ncap;
        }
        int got = mg_read(r->conn, r->body + r->body_len, cap - r->body_len);
        if (got <= 0) break;
        r->body_len += (size_t)got;
    }
    if ((long long)r->body_len > max) {
        r->close = true;
        char msg[96];
        snprintf(msg, sizeof(msg), "body exceeds SP_HTTP_MAX_BODY (%lld)", max);
        return reply_error(r, SP_ERR_PAYLOAD_TOO_LARGE, msg);
    }
    if (ncl == 1 && (long long)r->body_len != ri->content_length) {
        r->close = true;
        return reply_error(r, SP_ERR_BAD_REQUEST, "body shorter than Content-Length");
    }
    r->body[r->body_len] = '\0';
    return SP_OK;
}

/* Answers 400 validation_failed with one field per entry of errs ('fallback' for an entry
 * without a path). */
static sp_status reply_errors(gw_req *r, const char *message, const sppb_errors *errs,
                              const char *fallback)
{
    const char *paths[SPPB_MAX_ERRORS], *reasons[SPPB_MAX_ERRORS];
    size_t n = errs->n < SPPB_MAX_ERRORS ? errs->n : SPPB_MAX_ERRORS;
    for (size_t i = 0; i < n; i++) {
        paths[i] = errs->e[i].path[0] ? errs->e[i].path : fallback;
        reasons[i] = errs->e[i].reason;
    }
    return reply_error_fields(r, SP_ERR_VALIDATION_FAILED, message, paths, reasons, n);
}

/* Builds the route's request message from the query string and the body. Replies 413,
 * 415, 400 bad_request (a body where none is expected), validation_failed (a query
 * parameter: undeclared, repeated or bad; a body field), malformed_json. */
static sp_status decode_input_or_reply(gw_req *r, const gw_route *route, ProtobufCMessage **in)
{
    *in = NULL;
    sp_status s = read_body_or_reply(r);
    if (s != SP_OK) return s;
    bool has_body = r->body_len > 0;
    if (has_body && !is_json_type(mg_get_header(r->conn, "Content-Type")))
        return reply_error(r, SP_ERR_UNSUPPORTED_MEDIA_TYPE, "the body must be application/json");
    if (!(route->flags & GW_BODY) && has_body)
        return reply_error(r, SP_ERR_BAD_REQUEST, "this route takes no body");

    sppb_errors errs;
    memset(&errs, 0, sizeof(errs));
    ProtobufCMessage *q = NULL;
    s = gw_query_decode(&q, route, r->ri->query_string, r->arena, &errs);
    if (s == SP_ERR_VALIDATION_FAILED)
        return reply_errors(r, "invalid query parameters", &errs, "query");
    if (s != SP_OK) return reply_error(r, SP_ERR_INTERNAL, "out of memory");
    if (!(route->flags & GW_BODY)) { /* the query is the whole input */
        *in = q;
        return SP_OK;
    }
    if (!has_body) { /* refused unless the body is optional (GW_BODY_OPTIONAL) */
        s = gw_body_decode(in, route, NULL, r->arena, &errs);
        if (s == SP_OK) return SP_OK;
        if (s != SP_ERR_VALIDATION_FAILED) return reply_error(r, SP_ERR_INTERNAL, "out of memory");
        return reply_error(r, SP_ERR_VALIDATION_FAILED, "a JSON object body is required");
    }

    char why[160] = "";
    cJSON *json = NULL;
    s = spjson_parse(&json, r->body, r->body_len, SPJSON_DEFAULT_DEPTH, why, sizeof(why));
    if (s != SP_OK) return reply_error(r, SP_ERR_MALFORMED_JSON, why[0] ? why : "malformed JSON");
    /* null is refused rather than read as absent, but for the fields a PATCH may clear
     * (gateway.h, "Clearing") */
    s = gw_body_decode(in, route, json, r->arena, &errs);
    cJSON_Delete(json);
    if (s == SP_OK && *in != NULL) return SP_OK;
    *in = NULL;
    if (s != SP_ERR_VALIDATION_FAILED) return reply_error(r, SP_ERR_INTERNAL, "out of memory");
    return reply_errors(r, "invalid request body", &errs, "body");
}

/* Replies 403 forbidden when the token's role is not among the route's. */
static sp_status check_role_or_reply(gw_req *r, const gw_route *route, const spjwt_claims *claims)
{
    if (gw_role_bit(claims->role) & route->roles) return SP_OK;
    return reply_error(r, SP_ERR_FORBIDDEN, "this role may not use this route");
}

static char *dup_or_null(sp_arena *a, const char *s)
{
    return s != NULL && s[0] != '\0' ? sp_arena_strdup(a, s) : NULL;
}

/* The client ip (clientip.c): X-Forwarded-For, every such header joined in order, counts
 * only from SP_TRUSTED_PROXIES. In the arena; NULL when unknown. */
static char *client_ip(gw_req *r)
{
    char *xff = NULL, ip[64];
    for (int i = 0; i < r->ri->num_headers; i++) {
        if (strcasecmp(r->ri->http_headers[i].name, "X-Forwarded-For") != 0) continue;
        const char *v = r->ri->http_headers[i].value != NULL ? r->ri->http_headers[i].value : "";
        xff =
            xff == NULL ? sp_arena_strdup(r->arena, v) : sp_arena_printf(r->arena, "%s,%s", xff, v);
        if (xff == NULL) return NULL;
    }
    gw_client_ip(ip, sizeof(ip), r->g->proxies, r->ri->remote_addr, xff);
    return dup_or_null(r->arena, ip);
}

/* The GW_RAW_HEADERS the request carries, as name, value pairs ending with NULL. */
#define GW_MAX_RAW_HEADERS 8 /* GW_RAW_HEADERS and Sp-Via */
static void raw_headers(gw_req *r, const char **out)
{
    static const char *const names[] = {GW_RAW_HEADERS};
    size_t k = 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && i < GW_MAX_RAW_HEADERS; i++) {
        const char *v = mg_get_header(r->conn, names[i]);
        if (v == NULL || strnlen(v, GW_RAW_HEADER_MAX + 1) > GW_RAW_HEADER_MAX) continue;
        out[k++] = names[i];
        out[k++] = v;
    }
    out[k++] = "Sp-Via"; /* the service then holds the body to HTTP's rules (415) */
    out[k++] = "http";
    out[k] = NULL;
}

/* Sends the request on the route's subject within the route's deadline and answers the
 * reply: the result with the route's success status, an error reply with its status, 503
 * (with Retry-After) when nobody answered in time. */
static void call_and_reply(gw_req *r, const gw_route *route, const ProtobufCMessage *in,
                           const spjwt_claims *claims)
{
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.request_id = r->rid;
    ctx.ip = client_ip(r);
    const char *ua = mg_get_header(r->conn, "User-Agent");
    if (ua != NULL) ctx.user_agent = sp_arena_strndup(r->arena, ua, strnlen(ua, MAX_USER_AGENT));
    if (claims != NULL) {
        ctx.user_id = dup_or_null(r->arena, claims->sub);
        ctx.role = dup_or_null(r->arena, claims->role);
        ctx.client_id = dup_or_null(r->arena, claims->client_id);
        ctx.client_role = dup_or_null(r->arena, claims->client_role);
        ctx.session_id = dup_or_null(r->arena, claims->sid);
    }

    char subject[128];
    if (!gw_route_subject(subject, sizeof(subject), route)) { /* gw_routes_check: cannot */
        reply_error(r, SP_ERR_INTERNAL, "internal error");
        return;
    }
    int timeout_ms = route->deadline_ms > 0 ? route->deadline_ms : r->g->bus_timeout_ms;
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    int64_t t0 = sp_monotonic_us();
    sp_status s;
    if (route->flags & GW_RAW) {
        const char *headers[2 * GW_MAX_RAW_HEADERS + 1];
        raw_headers(r, headers);
        s = spbus_request_raw(&out, &err, r->g->bus, subject, &ctx, headers, r->body, r->body_len,
                              route->reply_desc, timeout_ms, r->arena);
    } else {
        s = spbus_request(&out, &err, r->g->bus, subject, &ctx, in, route->reply_desc, timeout_ms,
                          r->arena);
    }
    char labels[160];
    snprintf(labels, sizeof(labels), "subject=\"%s\"", subject);
    spadmin_observe("sp_bus_request_duration_seconds", labels,
                    (double)(sp_monotonic_us() - t0) / 1e6);

    if (s == SP_OK && out != NULL) {
        if (route->status == 204) {
            respond(r, 204, NULL, NULL, 0);
            return;
        }
        cJSON *json = sppb_to_json(out);
        respond_json(r, route->status, json);
        cJSON_Delete(json);
        return;
    }
    if (err != NULL) {
        if (s == SP_OK) s = SP_ERR_INTERNAL;
        if (err->has_retry_after_s && err->retry_after_s > 0) r->retry_after_s = err->retry_after_s;
        const char *paths[SPPB_MAX_ERRORS], *reasons[SPPB_MAX_ERRORS];
        size_t n = 0;
        for (size_t i = 0; i < err->n_fields && n < SPPB_MAX_ERRORS; i++) {
            if (err->fields[i] == NULL || err->fields[i]->path == NULL) continue;
            paths[n] = err->fields[i]->path;
            reasons[n] = err->fields[i]->reason != NULL ? err->fields[i]->reason : "invalid";
            n++;
        }
        reply_error_fields(r, s, err->message, paths, reasons, n);
        return;
    }
    if (s == SP_ERR_UNAVAILABLE) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%s did not answer within %s (%d ms)", subject,
                 route->deadline_ms > 0 ? "the route's deadline" : "SP_BUS_TIMEOUT_MS", timeout_ms);
        reply_error(r, s, msg);
        return;
    }
    sp_log_error(r->rid, "bus_request_failed", "subject", subject, "status", sp_error_code(s));
    reply_error(r, SP_ERR_INTERNAL, "internal error");
}

static void serve(gw_req *r)
{
    const gw_route *route = NULL;
    gw_param params[GW_MAX_PARAMS];
    size_t np = 0;
    char allow[64];
    int st = gw_openapi_serve(r->conn, r->ri->request_method, r->ri->local_uri, r->rid, &r->route);
    if (st != 0) {
        r->status = st;
        return;
    }
    size_t nroutes = 0;
    const gw_route *table = gw_routes(&nroutes);
    gw_match m = gw_route_match(&route, params, &np, table, nroutes, r->ri->request_method,
                                r->ri->local_uri, allow, sizeof(allow));
    if (m == GW_MATCH_NOT_FOUND) {
        reply_error(r, SP_ERR_NOT_FOUND, "no such resource");
        return;
    }
    if (m == GW_MATCH_METHOD) {
        add_header(r, "Allow", allow);
        char msg[128];
        snprintf(msg, sizeof(msg), "method not allowed here (allowed: %s)", allow);
        reply_error(r, SP_ERR_METHOD_NOT_ALLOWED, msg);
        return;
    }
    r->route = route->pattern;

    spjwt_claims claims;
    memset(&claims, 0, sizeof(claims));
    /* api.md "Which error wins": 401, then 403, then the body and the query */
    if (route->roles != 0 && (authenticate_or_reply(r, &claims) != SP_OK ||
                              check_session_or_reply(r, &claims) != SP_OK ||
                              check_role_or_reply(r, route, &claims) != SP_OK))
        return;

    ProtobufCMessage *in = NULL;
    if (route->flags & GW_RAW) { /* the service decodes the body itself */
        if (read_body_or_reply(r) != SP_OK) return;
        call_and_reply(r, route, NULL, NULL);
        return;
    }
    if (decode_input_or_reply(r, route, &in) != SP_OK) return;
    gw_set_params(in, params, np, r->arena);
    call_and_reply(r, route, in, route->roles != 0 ? &claims : NULL);
}

/* A Content-Length as RFC 9110 has it: 1..18 digits and nothing else (no sign, space,
 * "0x" or trailing text, which CivetWeb's strtoll would take, leaving the rest of the
 * body to be read as the next request). */
static bool content_length_ok(const char *v)
{
    size_t n = strlen(v);
    return n > 0 && n <= 18 && strspn(v, "0123456789") == n;
}

/* What every request must be before anything reads it, /healthz and /metrics included;
 * each failure closes the connection, since what follows cannot be framed safely:
 * - at most 63 headers (CivetWeb keeps the first 64 and drops the rest silently, an
 *   Authorization or a Content-Length among them): 431;
 * - exactly one Host in HTTP/1.1, at most one in HTTP/1.0 (RFC 9112 3.2): 400;
 * - at most one Content-Length, strictly digits; at most one Transfer-Encoding, which must
 *   be "chunked"; never both (the request-smuggling primitives): 400.
 * A NUL in the target ("/metrics%00.css") cannot be seen here: CivetWeb hands over the
 * target decoded, cut at the NUL (docs/decisions.md: the edge in front refuses it). */
static sp_status frame_ok_or_reply(gw_req *r)
{
    const struct mg_request_info *ri = r->ri;
    if (ri->num_headers >= MG_MAX_HEADERS) {
        r->close = true;
        return reply_error(r, SP_ERR_HEADERS_TOO_LARGE, "more than 63 request headers");
    }
    int nhost = 0;
    const char *cl = NULL, *te = NULL;
    for (int i = 0; i < ri->num_headers; i++) {
        const char *name = ri->http_headers[i].name;
        if (strcasecmp(name, "Host") == 0) nhost++;
        if (strcasecmp(name, "Content-Length") == 0) {
            r->ncl++;
            cl = ri->http_headers[i].value;
        }
        if (strcasecmp(name, "Transfer-Encoding") == 0) {
            r->nte++;
            te = ri->http_headers[i].value;
        }
    }
    const char *why = NULL;
    if (nhost > 1 || (nhost == 0 && strcmp(ri->http_version, "1.1") == 0))
        why = "HTTP/1.1 needs exactly one Host header";
    else if (r->ncl > 0 && r->nte > 0)
        why = "both Transfer-Encoding and Content-Length are present";
    else if (r->ncl > 1 || r->nte > 1)
        why = "repeated Content-Length or Transfer-Encoding";
    else if (cl != NULL && !content_length_ok(cl))
        why = "Content-Length must be a decimal number of digits only";
    else if (te != NULL && strcasecmp(te, "chunked") != 0)
        why = "Transfer-Encoding other than chunked";
    if (why == NULL) return SP_OK;
    r->close = true;
    return reply_error(r, SP_ERR_BAD_REQUEST, why);
}

static bool is_ops_path(const char *p)
{
    return p != NULL &&
           (strcmp(p, "/healthz") == 0 || strcmp(p, "/readyz") == 0 || strcmp(p, "/metrics") == 0);
}

/* The end of every answered request: its count and duration in /metrics, its log line
 * ('detail', when not NULL, says why CivetWeb refused it), and its memory. Returns the
 * status it was answered with. */
static int finish(gw_req *r, int64_t t0, const char *detail)
{
    double secs = (double)(sp_monotonic_us() - t0) / 1e6;
    char labels[256], status[8], us[24];
    snprintf(status, sizeof(status), "%d", r->status);
    snprintf(us, sizeof(us), "%lld", (long long)(sp_monotonic_us() - t0));
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\",status=\"%d\"", r->route,
             r->method, r->status);
    spadmin_counter_add("sp_http_requests_total", labels, 1);
    snprintf(labels, sizeof(labels), "route=\"%s\",method=\"%s\"", r->route, r->method);
    spadmin_observe("sp_http_request_duration_seconds", labels, secs);
    if (detail == NULL)
        sp_log_info(r->rid, "request", "method", r->method, "route", r->route, "status", status,
                    "durationUs", us);
    else
        sp_log_info(r->rid, "request", "method", r->method, "route", r->route, "status", status,
                    "durationUs", us, "detail", detail);
    free(r->body);
    sp_arena_destroy(r->arena);
    return r->status;
}

/* CivetWeb's own refusals (a header over SP_HTTP_MAX_HEADER, a malformed header line, a
 * bad version, a negative Content-Length, ...), which would be text/plain without a
 * request id: the contract's JSON error instead, always closing the connection (CivetWeb
 * could not frame the request). 413 and 431 keep their status; any other 4xx or 505 is
 * 400 bad_request (the contract has no 411 or 505), a 5xx 500 internal. */
int gw_http_error(struct mg_connection *conn, int status, const char *errmsg)
{
    int64_t t0 = sp_monotonic_us();
    gw_req r;
    memset(&r, 0, sizeof(r));
    r.conn = conn;
    r.ri = mg_get_request_info(conn);
    r.route = "unmatched";
    bool has_method = r.ri != NULL && r.ri->request_method != NULL;
    r.method = has_method ? metric_method(r.ri->request_method) : "OTHER";
    r.close = true;
    r.head = has_method && strcmp(r.ri->request_method, "HEAD") == 0;
    new_request_id(r.rid);
    r.arena = sp_arena_create(1024);
    if (r.arena == NULL) return 1; /* CivetWeb's own answer, then */
    sp_status s = status == 413                    ? SP_ERR_PAYLOAD_TOO_LARGE
                  : status == 431                  ? SP_ERR_HEADERS_TOO_LARGE
                  : status >= 500 && status != 505 ? SP_ERR_INTERNAL
                                                   : SP_ERR_BAD_REQUEST;
    char msg[160];
    snprintf(msg, sizeof(msg), "%s", errmsg != NULL && errmsg[0] != '\0' ? errmsg : "bad request");
    msg[strcspn(msg, "\r\n")] = '\0';
    reply_error(&r, s, msg);
    finish(&r, t0, msg);
    return 0;
}

/* Shutdown (gw_http_quiesce): requests being served, and whether new ones are refused. */
static atomic_int g_inflight;
static atomic_bool g_stopping;

bool gw_http_quiesce(int timeout_ms)
{
    atomic_store(&g_stopping, true);
    for (int waited = 0; atomic_load(&g_inflight) > 0; waited += 10) {
        if (waited >= timeout_ms) return false;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

int gw_http_handle(struct mg_connection *conn)
{
    gw_req r;
    memset(&r, 0, sizeof(r));
    r.conn = conn;
    r.ri = mg_get_request_info(conn);
    r.g = mg_get_user_data(mg_get_context(conn));
    r.route = "unmatched";
    r.method = metric_method(r.ri->request_method);

    r.head = strcmp(r.ri->request_method, "HEAD") == 0;
    int64_t t0 = sp_monotonic_us();

    request_id(&r);
    r.arena = sp_arena_create(8192);
    if (r.arena == NULL) {
        static const char oom[] = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        mg_write(conn, oom, sizeof(oom) - 1);
        return 500;
    }
    if (frame_ok_or_reply(&r) == SP_OK) {
        if (is_ops_path(r.ri->local_uri) && strcmp(r.ri->request_method, "GET") == 0) {
            char rid[MAX_REQUEST_ID + 32];
            snprintf(rid, sizeof(rid), "X-Request-Id: %s\r\n", r.rid);
            if (spadmin_handle(conn, r.ri->local_uri, gw_ready, r.g, rid)) {
                sp_arena_destroy(r.arena);
                return 200; /* probes and scrapes: not counted, not logged */
            }
        }
        /* in flight before the stop flag is read: gw_http_quiesce waits for exactly these */
        atomic_fetch_add(&g_inflight, 1);
        if (atomic_load(&g_stopping)) {
            r.close = true;
            reply_error(&r, SP_ERR_UNAVAILABLE, "shutting down");
        } else {
            serve(&r);
        }
        atomic_fetch_sub(&g_inflight, 1);
    }

    return finish(&r, t0, NULL);
}

/* Connections a CivetWeb worker holds, from the moment one takes it (before its first
 * request is read) until it is closed: once it equals SP_HTTP_THREADS, a new connection
 * waits in CivetWeb's queue, whatever the held ones are doing (slow headers, an idle
 * keep-alive, an unread answer). */
static atomic_int g_conns_held;

int gw_conn_init(const struct mg_connection *conn, void **conn_data)
{
    (void)conn;
    (void)conn_data; /* no per-connection data: it stays NULL */
    atomic_fetch_add(&g_conns_held, 1);
    return 0;
}

void gw_conn_close(const struct mg_connection *conn)
{
    (void)conn;
    atomic_fetch_sub(&g_conns_held, 1);
}

bool gw_ready(void *user, char *why, size_t whylen)
{
    gw_state *g = user;
    if (atomic_load(&g_stopping)) {
        snprintf(why, whylen, "shutting down");
        return false;
    }
    int held = atomic_load(&g_conns_held);
    if (g->http_threads > 0 && held >= g->http_threads) {
        snprintf(why, whylen, "public listener saturated: %d of %d workers hold a connection", held,
                 g->http_threads);
        return false;
    }
    bool nats = spbus_connected(g->bus);
    pthread_mutex_lock(&g->redis_mu);
    bool redis = spredis_ping(g->redis);
    pthread_mutex_unlock(&g->redis_mu);
    if (nats && redis) return true;
    snprintf(why, whylen, "%s%s%s", nats ? "" : "nats down", !nats && !redis ? ", " : "",
             redis ? "" : "redis down");
    return false;
}
