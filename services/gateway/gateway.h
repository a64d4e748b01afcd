/* gateway.h -- the gateway's internal parts: the route table, the request pipeline and
 * the process state they share. Prefix: gw_. */
#ifndef GATEWAY_H
#define GATEWAY_H

#include <protobuf-c/protobuf-c.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "spbus.h"
#include "spcore.h"
#include "spjwt.h"
#include "sppb.h"
#include "spredis.h"

struct mg_connection;

/* ---- routes (routes.c) ------------------------------------------------------------------- */

/* Who may call a route: the token's role, as bits. 0 = public (no token looked at). */
enum {
    GW_ROLE_ADMIN = 1u << 0,
    GW_ROLE_CLIENT_ADMIN = 1u << 1,
    GW_ROLE_APP_USER = 1u << 2,
    GW_ROLES_USER = GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN | GW_ROLE_APP_USER, /* any user */
};

enum {
    GW_BODY = 1u << 0,          /* a JSON object body is expected (a body is refused otherwise) */
    GW_LIST = 1u << 1,          /* a list (GET): see "Lists" below */
    GW_BODY_OPTIONAL = 1u << 2, /* with GW_BODY: no body is {} (state actions: /approve) */
    /* with GW_BODY, on a public route: the body goes to the service as it came (a raw bus
     * route, spbus_request_raw), with the GW_RAW_HEADERS it carries and its Content-Type,
     * for the service to authenticate and decode itself (cameras: the HMAC covers the
     * bytes). Only the size limit (413) is the gateway's. req_desc describes the body for
     * the OpenAPI document. */
    GW_RAW = 1u << 3,
};
/* The request headers a GW_RAW route passes on (api.md, Ingest), each at most
 * GW_RAW_HEADER_MAX bytes (a longer one is not passed). */
#define GW_RAW_HEADERS "Content-Type", "X-API-Key", "X-Key-Id", "X-Timestamp", "X-Signature"
#define GW_RAW_HEADER_MAX 256

/* Lists (api.md "Lists"). A route flagged GW_LIST is a GET whose query declares "limit"
 * and "cursor", whose request message has 'optional int32|uint32 limit' and 'optional
 * string cursor', and whose reply message is
 *     message List<X>Reply { repeated <X> items = 1; optional string next_cursor = 2; }
 * so that the answer is {"items":[...],"nextCursor":"..."|null} (nextCursor always there:
 * sppb writes an unset optional as null). The gateway checks the generic rules: 'limit'
 * 1..500, 50 when absent (the service always gets one); 'cursor' 1..GW_MAX_CURSOR
 * characters of unpadded base64url. What a cursor holds is the service's: it encodes it
 * (the services' cursor helper), decodes it and answers 400 validation_failed with
 * fields.cursor for one it cannot read. Order and page size are the service's too.
 *
 * Clearing (api.md "PATCH"): a request message with a field 'repeated string cleared =
 * 15' gets, instead of a refusal, the JSON names of the top-level optional fields the body
 * gave as null ({"lotId":null} -> cleared = ["lotId"]); null for any other field stays
 * 400, and the body cannot name "cleared" itself. Without that field, null is refused. */
#define GW_LIST_DEFAULT_LIMIT 50
#define GW_LIST_MAX_LIMIT 500
#define GW_MAX_CURSOR 512
#define GW_CLEARED_FIELD "cleared"
#define GW_CLEARED_ID 15
#define GW_MAX_DEADLINE_MS 60000

/* One line per route. The bus subject is derived from the request message: package
 * "sp.auth.v1" + message "LoginRequest" -> "sp.auth.v1.Login" (gw_route_subject). */
typedef struct {
    const char *method;                           /* "POST" */
    const char *pattern;                          /* "/v1/clients/{id}/members/{userId}" */
    const ProtobufCMessageDescriptor *req_desc;   /* the <Method>Request */
    const ProtobufCMessageDescriptor *reply_desc; /* a *Reply of the same package */
    unsigned roles;                               /* GW_ROLE_* allowed; 0: public */
    unsigned flags;                               /* GW_BODY [| GW_BODY_OPTIONAL] | GW_LIST */
    const char *query;                            /* the query parameters: "limit,cursor,status" */
    int deadline_ms;                              /* of the bus call; 0: SP_BUS_TIMEOUT_MS */
    int status;                                   /* success status: 200, 201, 202 or 204 */
} gw_route;

/* The whole table (static storage), for the router and for tests. */
const gw_route *gw_routes(size_t *n);

/* Checks a table at start (main refuses to start on failure): method and flags, a well
 * formed pattern and no duplicate method+pattern, known role bits, a request message named
 * *Request and a *Reply of the same package, each path and query parameter naming a field
 * of the request message by its JSON name (path: a string), the list and clearing shapes
 * above. SP_ERR_VALIDATION_FAILED with the first problem, naming the route, in 'why'. */
sp_status gw_routes_check(const gw_route *routes, size_t n, char *why, size_t whylen);

/* The bus subject of 'route' into out ("sp.auth.v1.Login"); false when it does not fit. */
bool gw_route_subject(char *out, size_t outlen, const gw_route *route);

/* The field of 'd' whose JSON name (sppb_camel of its name) is name[0..n), or NULL: how
 * path and query parameters and body keys find their fields. */
const ProtobufCFieldDescriptor *gw_field_by_json(const ProtobufCMessageDescriptor *d,
                                                 const char *name, size_t n);

/* The 'repeated string cleared = 15' field of a PATCH message, or NULL. */
const ProtobufCFieldDescriptor *gw_cleared_field(const ProtobufCMessageDescriptor *d);

/* The route's GW_ROLE_* bit of a token's role ("admin"); 0 for any other role. */
unsigned gw_role_bit(const char *role);

#define GW_MAX_PARAMS 4
#define GW_MAX_SEGMENTS 16
#define GW_MAX_PATH 1024
#define GW_MAX_QUERY_PARAMS 16
#define GW_MAX_QUERY 4096

typedef struct {
    char name[32];  /* the name inside the braces, the JSON name of its field: "userId" */
    char value[40]; /* a canonical UUID */
} gw_param;

typedef enum {
    GW_MATCH_OK,        /* *route and params set */
    GW_MATCH_NOT_FOUND, /* no route has this path (or a path id is not a UUID) */
    GW_MATCH_METHOD,    /* the path is routed for other methods only: 'allow' lists them */
} gw_match;

/* Finds the route of 'method' 'path' in routes[0..n). params holds GW_MAX_PARAMS entries. */
gw_match gw_route_match(const gw_route **route, gw_param *params, size_t *nparams,
                        const gw_route *routes, size_t n, const char *method, const char *path,
                        char *allow, size_t allowlen);

/* Builds a message of route->req_desc from the query string 'qs' (after the '?'; NULL or
 * "" for none), in 'arena': each parameter percent-decoded (mg_url_decode, '+' is a space)
 * into the field of that JSON name, converted as sppb does for queries, then the list rules
 * (GW_LIST). SP_ERR_VALIDATION_FAILED with errs naming each bad parameter: one not declared
 * by the route, one given twice, a value that is not valid UTF-8 or holds a NUL, or that
 * its field refuses; SP_ERR_INTERNAL on OOM. */
sp_status gw_query_decode(ProtobufCMessage **out, const gw_route *route, const char *qs,
                          sp_arena *arena, sppb_errors *errs);

/* Puts each path parameter into the request field whose JSON name it is. */
void gw_set_params(ProtobufCMessage *in, const gw_param *params, size_t n, sp_arena *arena);

/* Decodes a JSON body into a message of route->req_desc (sppb, strict): null for a field is
 * refused, except for the clearable fields of a message with 'cleared' (above), which are
 * removed from 'json' (the caller still frees it) and named in 'cleared'. 'json' NULL: no
 * body, an empty message with GW_BODY_OPTIONAL, else refused ("a JSON object body is
 * required", path ""). SP_ERR_VALIDATION_FAILED with errs, SP_ERR_INTERNAL on OOM. */
sp_status gw_body_decode(ProtobufCMessage **out, const gw_route *route, cJSON *json,
                         sp_arena *arena, sppb_errors *errs);

/* ---- the client ip (clientip.c) -------------------------------------------------------- */

/* SP_TRUSTED_PROXIES: the networks whose X-Forwarded-For is believed. */
typedef struct gw_proxies gw_proxies;

/* Parses a comma-separated list of IPv4 or IPv6 addresses and CIDRs ("10.0.0.1, 10.1.0.0/16,
 * fd00::/8"; empty: none; IPv4 networks also match IPv4-mapped IPv6 peers).
 * SP_ERR_VALIDATION_FAILED with 'why' on a bad item. */
sp_status gw_proxies_parse(gw_proxies **out, const char *list, char *why, size_t whylen);
void gw_proxies_destroy(gw_proxies *p);
/* The client ip into out: 'peer' unless it is a trusted proxy with an X-Forwarded-For
 * ('xff', the header's values joined by commas, or NULL); then the right-most entry that is
 * not a trusted proxy (the left-most when all are), in canonical form. An entry that is
 * not an IP address makes the whole header ignored (the peer). */
void gw_client_ip(char *out, size_t outlen, const gw_proxies *p, const char *peer, const char *xff);

/* ---- revoked sessions (revoked.c) ---------------------------------------------------- */

/* Where auth announces revoked sessions (sp.auth.v1.SessionsRevoked). */
#define GW_SESSIONS_REVOKED_SUBJECT "sp.auth.changed.sessions"

/* The revoked sessions, a copy of Redis in memory kept fresh by a keeper thread. */
typedef struct gw_revoked gw_revoked;

/* Hooks into 'bus' (revoking replies, auth's announcements), connects to Redis, starts the
 * keeper. *out is set even on failure: free it with gw_revoked_free after the bus. Tokens
 * are refused (SP_ERR_UNAVAILABLE) until the first load from Redis. 'ttl_s': how long an
 * entry is kept after it was last seen (the access token lifetime). */
sp_status gw_revoked_start(gw_revoked **out, spbus *bus, const char *redis_url, int64_t ttl_s);
/* SP_OK: not revoked; SP_ERR_INVALID_TOKEN: revoked (or not a session id);
 * SP_ERR_UNAVAILABLE: the copy is not known to be fresh (Redis or NATS down). */
sp_status gw_revoked_check(gw_revoked *rv, const char *sid);
void gw_revoked_stop(gw_revoked *rv); /* the keeper thread, before the bus goes */
void gw_revoked_free(gw_revoked *rv); /* after the bus */

/* ---- process state and the pipeline (http.c) ------------------------------------------- */

typedef struct {
    spbus *bus;
    spredis *redis; /* readiness only; guarded by redis_mu */
    pthread_mutex_t redis_mu;
    gw_revoked *revoked; /* the revoked sessions (revoked.c) */
    spjwt_keys keys;
    long long max_body;  /* SP_HTTP_MAX_BODY */
    int http_threads;    /* SP_HTTP_THREADS: CivetWeb's workers, one per held connection */
    int bus_timeout_ms;  /* SP_BUS_TIMEOUT_MS */
    gw_proxies *proxies; /* SP_TRUSTED_PROXIES */
} gw_state;

/* CivetWeb begin_request callback: answers every request; returns the HTTP status. */
int gw_http_handle(struct mg_connection *conn);
/* CivetWeb's http_error callback: its own refusals in the contract's JSON shape. */
int gw_http_error(struct mg_connection *conn, int status, const char *errmsg);
/* CivetWeb's init_connection and connection_close callbacks: count the connections a
 * worker holds (a slow or idle one as well as one being served). */
int gw_conn_init(const struct mg_connection *conn, void **conn_data);
void gw_conn_close(const struct mg_connection *conn);
/* spadmin_ready_fn: NATS connected, Redis answering, and a worker free to take a new
 * connection (not every one held by a connection); 'user' is the gw_state. */
bool gw_ready(void *user, char *why, size_t whylen);
/* SIGTERM: from now on new requests answer 503 (Connection: close) and /readyz 503; waits
 * up to timeout_ms for the requests being served to finish. Call before mg_stop, which
 * drops whatever a handler writes once it has begun. False when some were still running. */
bool gw_http_quiesce(int timeout_ms);

/* ---- the API document and its page (openapi.c, openapi_gen.c) ---------------------------- */

/* The OpenAPI document of 'routes' (their descriptors, through sppb's schema functions)
 * and of the notes (docs/openapi-notes.json: the frame, prose, examples; described in
 * openapi_gen.c). NULL with 'why' when the notes do not fit the table: an operation or a
 * message field they describe that does not exist, a route they do not describe. */
cJSON *gw_openapi_build(const gw_route *routes, size_t n, const char *notes, size_t notes_len,
                        char *why, size_t whylen);

/* Builds the gateway's document from its table and the notes built in, once, before
 * gw_openapi_serve: compact for serving, 'indented' for `gateway --openapi`; false with
 * 'why' (the gateway refuses to start). */
bool gw_openapi_init(bool indented, char *why, size_t whylen);

/* The document gw_openapi_init built. */
const char *gw_openapi_text(size_t *len);

/* Answers GET/HEAD /v1/openapi.json (the document built at start) and /docs (the page
 * built in) (405 for another method) in one mg_write with X-Request-Id 'rid' (already
 * checked safe). Returns the status written and sets *route to the path, or 0 when 'path'
 * is neither (nothing written). */
int gw_openapi_serve(struct mg_connection *conn, const char *method, const char *path,
                     const char *rid, const char **route);

#endif
