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
#include "spredis.h"

struct mg_connection;

/* ---- routes (routes.c) ------------------------------------------------------------------- */

enum {
    GW_AUTH = 1u << 0, /* a valid access token is required (401 otherwise) */
    GW_BODY = 1u << 1, /* a JSON object body is expected (a body is refused otherwise) */
};

typedef struct {
    const char *method;                          /* "POST" */
    const char *pattern;                         /* "/v1/clients/{id}" */
    const char *subject;                         /* "sp.tenancy.v1.GetClient" */
    const ProtobufCMessageDescriptor *req_desc;  /* the <Method>Request */
    const ProtobufCMessageDescriptor *reply_desc; /* the <Method>Reply */
    unsigned flags;                              /* GW_AUTH | GW_BODY */
    int status;                                  /* success status: 200, 201 or 204 */
} gw_route;

/* The whole table (static storage), for the router and for tests. */
const gw_route *gw_routes(size_t *n);

#define GW_MAX_PARAMS 4
#define GW_MAX_SEGMENTS 16
#define GW_MAX_PATH 1024

typedef struct {
    char name[32];  /* the field name inside the braces: "id" */
    char value[40]; /* a canonical UUID */
} gw_param;

typedef enum {
    GW_MATCH_OK,        /* *route and params set */
    GW_MATCH_NOT_FOUND, /* no route has this path (or a path id is not a UUID) */
    GW_MATCH_METHOD,    /* the path is routed for other methods only: 'allow' lists them */
} gw_match;

/* Finds the route of 'method' 'path'. params holds GW_MAX_PARAMS entries. */
gw_match gw_route_match(const gw_route **route, gw_param *params, size_t *nparams,
                        const char *method, const char *path, char *allow, size_t allowlen);

/* ---- the client ip (clientip.c) -------------------------------------------------------- */

/* SP_TRUSTED_PROXIES: the networks whose X-Forwarded-For is believed. */
typedef struct gw_proxies gw_proxies;

/* Parses a comma-separated list of IPv4 or IPv6 addresses and CIDRs ("10.0.0.1, 10.1.0.0/16,
 * fd00::/8"; empty: none; IPv4 networks also match IPv4-mapped IPv6 peers). SP_ERR_VALIDATION_FAILED with 'why' on a bad item. */
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
    spredis *redis;           /* readiness only; guarded by redis_mu */
    pthread_mutex_t redis_mu;
    gw_revoked *revoked;      /* the revoked sessions (revoked.c) */
    spjwt_keys keys;
    long long max_body;       /* SP_HTTP_MAX_BODY */
    int bus_timeout_ms;       /* SP_BUS_TIMEOUT_MS */
    gw_proxies *proxies;      /* SP_TRUSTED_PROXIES */
} gw_state;

/* CivetWeb begin_request callback: answers every request; returns the HTTP status. */
int gw_http_handle(struct mg_connection *conn);
/* spadmin_ready_fn: NATS connected and Redis answering; 'user' is the gw_state. */
bool gw_ready(void *user, char *why, size_t whylen);
/* SIGTERM: from now on new requests answer 503 (Connection: close) and /readyz 503; waits
 * up to timeout_ms for the requests being served to finish. Call before mg_stop, which
 * drops whatever a handler writes once it has begun. False when some were still running. */
bool gw_http_quiesce(int timeout_ms);

/* ---- the API document and its page (openapi.c) ------------------------------------------ */

/* Answers GET/HEAD /v1/openapi.json and /docs from the copies built in (405 for another
 * method) in one mg_write with X-Request-Id 'rid' (already checked safe). Returns the status
 * written and sets *route to the path, or 0 when 'path' is neither (nothing written). */
int gw_openapi_serve(struct mg_connection *conn, const char *method, const char *path,
                     const char *rid, const char **route);

#endif
