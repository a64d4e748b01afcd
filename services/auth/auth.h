/* auth.h -- what the files of the auth service share: its state (on the service kit,
 * libs/spsvc), the revocations in Redis, the login rate limits and the input checks.
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
#include "spsvc.h"

/* api.md, "Auth and profile": limits in Unicode code points. */
#define AUTH_NAME_MAX 120
#define AUTH_EMAIL_MAX 254
#define AUTH_PASSWORD_MIN 8
#define AUTH_PASSWORD_MAX 128

#define AUTH_ROLE_ADMIN_ID "1"
#define AUTH_ROLE_APP_USER_ID "3"

/* The service's own state (the kit holds the connections and routes). */
typedef struct {
    spsvc *kit;
    spbus *bus; /* for sp.auth.changed.sessions */
    /* per bus worker: the spredis_generation whose connection already holds every recent
     * revocation */
    unsigned *redis_gen;
    spjwt_keys jwt;
    int64_t access_ttl_s;
    int64_t refresh_ttl_s;
    /* login rate limits (ratelimit.c): SP_LOGIN_FAILS_PER_ACCOUNT per
     * SP_LOGIN_ACCOUNT_WINDOW_S, SP_LOGIN_FAILS_PER_IP per SP_LOGIN_IP_WINDOW_S */
    int rl_fails_per_account, rl_account_window_s;
    int rl_fails_per_ip, rl_ip_window_s;
    /* verified for an unknown email so that login takes the same time either way */
    char dummy_hash[SPCRYPTO_HASH_LEN];
} auth_svc;

/* The auth state of the service serving 'req'. */
static inline auth_svc *auth_of(const spbus_req *req)
{
    return spsvc_req_user(req);
}

/* Where auth announces each revoked session to every gateway (SessionsRevoked). */
#define AUTH_SESSIONS_REVOKED_SUBJECT "sp.auth.changed.sessions"

/* users.c: Register, GetMe. sessions.c: Login, Refresh, Logout. */
void users_register(spsvc *kit);
void sessions_register(spsvc *kit);
/* profile.c: UpdateMe, ChangePassword, DeleteMe. memberships.c: SetMembership,
 * RemoveMembership. */
void profile_register(spsvc *kit);
void memberships_register(spsvc *kit);
/* members.c: CreateMember, ActivateMember, DiscardMember, SetClientSuspended, and the task
 * that discards the pending members older than 'pending_ttl_s', run every 'sweep_s'. */
sp_status members_register(spsvc *kit, int64_t pending_ttl_s, int sweep_s);
/* After the kit stopped its tasks: frees the cleaner's connection. */
void members_free(void);

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
/* The key whose presence tells the gateway that Redis holds every recent revocation. An
 * empty Redis (restarted without its data) lacks it, and the gateway then refuses tokens
 * (503) until auth has rewritten them. */
#define AUTH_REVOCATIONS_LOADED_KEY "sp:revocations:loaded"
/* SETs sp:revoked:sid:<sid> for every session revoked within 'access_ttl_s' seconds (read
 * from PostgreSQL, each with what is left of that lifetime), then the loaded key. */
sp_status auth_revocations_rewrite(spredis *r, spdb *db, int64_t access_ttl_s, const char *rid);

/* revocations.c: a task that checks every AUTH_KEEPER_MS that Redis has the loaded key
 * and rewrites the revocations when it has not, so that a Redis restarted without its data
 * is refilled at once, not at the next revoking call. */
#define AUTH_KEEPER_MS 500
/* Runs the keeper as a task of the kit (once at once, before serving). */
sp_status auth_keeper_start(spsvc *kit, const char *db_url, const char *redis_url,
                            int64_t access_ttl_s);
/* After the kit stopped its tasks: frees the keeper's connections. */
void auth_keeper_free(void);
/* Writes the revocation of session 'sid' (its public id) to Redis: SET
 * sp:revoked:sid:<sid> 1 EX <SP_ACCESS_TTL_S>, after auth_redis_sync. Replies 503
 * unavailable when Redis cannot be reached (the caller has already revoked the session in
 * PostgreSQL: a later reconnect rewrites it). */
sp_status auth_revoke_in_redis_or_reply(spbus_req *req, spdb *db, const char *sid);

/* ratelimit.c: the counters of one login, set by auth_ratelimit_reserve_or_reply. */
typedef struct {
    char acct_key[96]; /* sp:login:fail:acct:<SHA-256 hex of lower(email)> */
    char ip_key[96];   /* sp:login:fail:ip:<client ip> */
    char acct_window[16], ip_window[16];
    bool reserved; /* a failure is counted in advance on both counters: the keys are set */
} auth_rl;

/* Before the password is checked: refuses the login while the account's or the client
 * ip's failure counter is at its limit, replying 429 rate_limited with retry_after_s (the
 * seconds left of that counter's window); otherwise counts one failure in advance on both
 * counters, in the same atomic step (a wrong password then has nothing more to do).
 * Replies 503 unavailable when Redis cannot answer (never unlimited), or the database
 * error when lower(email) cannot be computed. */
typedef enum { AUTH_RL_LOGIN, AUTH_RL_PASSWORD_CHANGE } auth_rl_use; /* the 429's words */
sp_status auth_ratelimit_reserve_or_reply(spbus_req *req, spdb *db, const char *email, auth_rl *rl,
                                          auth_rl_use use);
/* The password was right: deletes the account's counter and gives the ip's reservation
 * back, in one atomic step (best effort, logged; replies nothing). */
void auth_ratelimit_success(spbus_req *req, const auth_rl *rl);
/* No verdict on the password (e.g. the database failed before it was compared): gives
 * both reservations back (best effort, logged; replies nothing). */
void auth_ratelimit_release(spbus_req *req, const auth_rl *rl);

/* Inside the caller's transaction: marks every live session of user 'user_id' (internal
 * id) revoked for 'reason', except session 'keep_sid' (its public id; NULL: none).
 * *sids = their public ids (in the request's arena), *n their count. Replies on a
 * database failure. */
sp_status auth_revoke_user_sessions_or_reply(spbus_req *req, spdb *db, const char *user_id,
                                             const char *keep_sid, const char *reason, char ***sids,
                                             size_t *n);
/* After the commit: auth_revoke_in_redis_or_reply for each of 'sids', stopping at the first
 * failure (which replied 503). */
sp_status auth_revoke_all_in_redis_or_reply(spbus_req *req, spdb *db, char *const *sids, size_t n);

/* Each check returns NULL when the value is fine, else the reason to report. */
const char *auth_check_name(const char *s);
const char *auth_check_email(const char *s);
const char *auth_check_password(const char *s);
/* Login only checks presence and the upper limits (any stored password must still work). */
const char *auth_check_login_email(const char *s);
const char *auth_check_login_password(const char *s);

/* users.c: replies GetMeReply from row 'row' of 'res' (columns: id, name, email,
 * created_at us, is_admin, client_id, client_role), or 401 unauthenticated when row < 0
 * (the account is missing or deleted: the token outlived it). */
void auth_reply_me(spbus_req *req, const char *user_id, PGresult *res, int row);

/* The token's role: admin if the user has the admin role, else client_admin when a member
 * of a client, else app_user. */
const char *auth_role_of(bool is_admin, bool is_member);

#endif
