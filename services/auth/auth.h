/* auth.h -- what the files of the auth service share: its state, the route table that
 * users.c and sessions.c fill, the per-worker database, field errors and input checks.
 * Internal to services/auth/. Prefix: auth_. */
#ifndef AUTH_H
#define AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp/auth/v1/auth.pb-c.h"
#include "spbus.h"
#include "spcore.h"
#include "spcrypto.h"
#include "spdb.h"
#include "spjwt.h"
#include "spredis.h"

#define AUTH_MAX_ROUTES 16
#define AUTH_MAX_FIELDS 8

/* api.md, "Auth and profile": limits in Unicode code points. */
#define AUTH_NAME_MAX 120
#define AUTH_EMAIL_MAX 254
#define AUTH_PASSWORD_MIN 8
#define AUTH_PASSWORD_MAX 128

#define AUTH_ROLE_ADMIN_ID "1"
#define AUTH_ROLE_APP_USER_ID "3"

typedef struct {
    int workers;
    spdb **db; /* one per bus worker, connected on first use, by that worker */
    const char *db_url;
    /* one per bus worker, created on first use by that worker; redis_gen[w] is the
     * spredis_generation whose connection already holds every recent revocation */
    spredis **redis;
    unsigned *redis_gen;
    const char *redis_url;
    spjwt_keys jwt;
    int64_t access_ttl_s;
    int64_t refresh_ttl_s;
    /* verified for an unknown email so that login takes the same time either way */
    char dummy_hash[SPCRYPTO_HASH_LEN];
    spbus_route routes[AUTH_MAX_ROUTES];
    size_t nroutes;
} auth_svc;

/* Appends one route to svc->routes (aborts past AUTH_MAX_ROUTES: a programming error). */
void auth_route_add(auth_svc *svc, const char *method, spbus_handler fn,
                    const ProtobufCMessageDescriptor *in_desc);
/* users.c: Register, GetMe. sessions.c: Login, Refresh, Logout. */
void users_register(auth_svc *svc);
void sessions_register(auth_svc *svc);

/* The connection of the worker running 'req', connected on first use (spdb resets it by
 * itself after a server restart). Replies unavailable when PostgreSQL cannot be reached. */
sp_status auth_db_or_reply(spdb **out, spbus_req *req);
/* Replies the error of a failed query (conflict, unavailable, internal) and logs it. */
sp_status auth_db_error_reply(spbus_req *req, sp_status s, const char *what);

/* Redis timeout of the auth service (connect and command), ms. */
#define AUTH_REDIS_TIMEOUT_MS 500
/* How long a revocation waits for Redis to come back (spredis reconnects at most once per
 * 200 ms), and the step of that wait. */
#define AUTH_REDIS_PATIENCE_MS 300
#define AUTH_REDIS_RETRY_MS 50

/* Makes sure the Redis connection of the worker running 'req' holds every revocation of
 * the last SP_ACCESS_TTL_S seconds: when the worker's spredis has made a new connection
 * since the last rewrite (spredis_generation changed: first use, or Redis restarted and
 * lost its data), SETs sp:revoked:sid:<sid> for each session revoked within that window,
 * read from PostgreSQL. Called before every use of Redis. When Redis does not answer,
 * retries for up to 'patience_ms' (0: login and refresh, which only call it best effort).
 * Replies nothing; returns SP_ERR_UNAVAILABLE when Redis (or SP_ERR_* of the query when
 * PostgreSQL) fails. */
sp_status auth_redis_sync(spbus_req *req, spdb *db, int patience_ms);
/* Writes the revocation of session 'sid' (its public id) to Redis: SET
 * sp:revoked:sid:<sid> 1 EX <SP_ACCESS_TTL_S>, after auth_redis_sync. Replies 503
 * unavailable when Redis cannot be reached (the caller has already revoked the session in
 * PostgreSQL: a later reconnect rewrites it). */
sp_status auth_revoke_in_redis_or_reply(spbus_req *req, spdb *db, const char *sid);

/* Field errors of one request, all reported at once. Strings must outlive the reply. */
typedef struct {
    Sp__V1__FieldError items[AUTH_MAX_FIELDS];
    Sp__V1__FieldError *ptrs[AUTH_MAX_FIELDS];
    size_t n;
} auth_fields;

void auth_fields_init(auth_fields *f);
/* Records 'reason' for 'path' when reason is not NULL. */
void auth_fields_add(auth_fields *f, const char *path, const char *reason);
/* SP_OK when no field is bad; else replies 400 validation_failed naming each one. */
sp_status auth_fields_or_reply(spbus_req *req, const auth_fields *f);

/* Each check returns NULL when the value is fine, else the reason to report. */
const char *auth_check_name(const char *s);
const char *auth_check_email(const char *s);
const char *auth_check_password(const char *s);
/* Login only checks presence and the upper limits (any stored password must still work). */
const char *auth_check_login_email(const char *s);
const char *auth_check_login_password(const char *s);

/* Code points of a UTF-8 string; -1 when it is not valid UTF-8. */
long auth_utf8_len(const char *s);

/* The token's role: admin if the user has the admin role, else client_admin when a member
 * of a client, else app_user. */
const char *auth_role_of(bool is_admin, bool is_member);

/* A bigint column (microseconds and the like) as int64. */
int64_t auth_pg_int64(const char *v);

#endif
