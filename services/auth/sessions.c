/* sessions.c -- sessions of the auth service: Login opens a session and hands out an
 * access token and a refresh token; Refresh rotates the refresh token (an already used one
 * revokes the whole session); Logout revokes the session. Every revocation reaches Redis
 * before the reply. Ends with sessions_register(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "spadmin.h"

#define TOKEN_ID_BYTES 16 /* 22 base64url characters */
#define SECRET_BYTES 32   /* 43 base64url characters */
#define TOKEN_ID_CHARS 22
#define SECRET_CHARS 43

static const char *sql_find_login =
    "SELECT u.id, u.public_id,"
    "       EXISTS (SELECT 1 FROM auth.user_roles ur"
    "               WHERE ur.user_id = u.id AND ur.role_id = " AUTH_ROLE_ADMIN_ID "),"
    "       m.client_id, m.client_role, u.password_hash"
    " FROM auth.people p"
    " JOIN auth.users u ON u.person_id = p.id"
    " LEFT JOIN auth.memberships m ON m.user_id = u.id"
    " WHERE lower(p.email) = lower($1) AND p.deleted_at IS NULL AND u.deleted_at IS NULL"
    "   AND u.active";

/* The session and its first refresh token in one statement, hence one transaction. */
static const char *sql_open_session =
    "WITH s AS (INSERT INTO auth.sessions (public_id, user_id, ip, user_agent)"
    "           VALUES ($1::uuid, $2::bigint, $3, $4) RETURNING id)"
    " INSERT INTO auth.refresh_tokens (token_id, session_id, secret_sha256, expires_at)"
    " SELECT $5, s.id, decode($6, 'hex'), now() + $7::bigint * interval '1 second' FROM s";

/* The user found by login, in the request's arena. */
typedef struct {
    char *id; /* internal bigint, as text */
    char *public_id;
    bool is_admin;
    char *client_id; /* NULL unless a client member */
    char *client_role;
} login_user;

/* Fills 'u' from the first row of 'res', whose columns start with id, public_id, is admin,
 * client_id, client_role (the queries of login and refresh), copying into the arena. */
static void read_login_user(login_user *u, const PGresult *res, sp_arena *a)
{
    u->id = sp_arena_strdup(a, PQgetvalue(res, 0, 0));
    u->public_id = sp_arena_strdup(a, PQgetvalue(res, 0, 1));
    u->is_admin = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    if (!PQgetisnull(res, 0, 3)) {
        u->client_id = sp_arena_strdup(a, PQgetvalue(res, 0, 3));
        u->client_role = sp_arena_strdup(a, PQgetvalue(res, 0, 4));
    }
}

/* Replies internal when read_login_user could not copy the row (the arena ran out). */
static sp_status login_user_copied_or_reply(spbus_req *req, const login_user *u)
{
    if (u->id == NULL || u->public_id == NULL || (u->client_id != NULL && u->client_role == NULL)) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    return SP_OK;
}

/* Presence and upper limits of a LoginRequest; replies 400 validation_failed. */
static sp_status validate_login_or_reply(spbus_req *req, const Sp__Auth__V1__LoginRequest *in)
{
    spsvc_fields f;

    spsvc_fields_init(&f);
    spsvc_fields_add(&f, "email", auth_check_login_email(in->email));
    spsvc_fields_add(&f, "password", auth_check_login_password(in->password));
    return spsvc_fields_or_reply(req, &f);
}

/* Finds the live user of in->email and checks the password. An unknown email is checked
 * against the dummy hash, so both failures cost one argon2id and answer the same 401.
 * Settles the login's rate-limit reservation (the rule is in ratelimit.c): a wrong
 * password or unknown account keeps it, a right password is a success, a database error
 * (no password compared) gives it back. */
static sp_status check_credentials_or_reply(spbus_req *req, spdb *db,
                                            const Sp__Auth__V1__LoginRequest *in, login_user *u,
                                            const auth_rl *rl)
{
    auth_svc *svc = auth_of(req);
    sp_arena *a = spbus_req_arena(req);
    PGresult *res = NULL;
    const char *params[] = {in->email};

    memset(u, 0, sizeof(*u));
    sp_status s = spdb_query(&res, db, sql_find_login, 1, params);
    if (s != SP_OK) {
        auth_ratelimit_release(req, rl);
        return spsvc_db_error_reply(req, s, "find_login");
    }

    bool found = PQntuples(res) == 1;
    const char *hash = found ? PQgetvalue(res, 0, 5) : svc->dummy_hash;
    bool ok = spcrypto_password_verify(hash, in->password, strlen(in->password)) && found;
    if (ok) {
        auth_ratelimit_success(req, rl); /* before the answer: the next try sees it */
        read_login_user(u, res, a);
    }
    PQclear(res);
    if (!ok) {
        sp_log_info(spbus_req_id(req), "login_failed", "known", found ? "true" : "false");
        spadmin_counter_add("sp_auth_logins_total", "result=\"failure\"", 1);
        /* the reservation is the failure: counted before the password was checked */
        spbus_reply_error(req, SP_ERR_UNAUTHENTICATED, "invalid email or password", NULL);
        return SP_ERR_UNAUTHENTICATED;
    }
    return login_user_copied_or_reply(req, u);
}

/* A new refresh token: "<tokenId>.<secret>" with SHA-256 of the secret's 32 bytes in hex
 * (all that is stored) and the lifetime as text. Wipe 'secret_b64' after use. */
typedef struct {
    char token_id[32], secret_b64[48], digest_hex[65], ttl[24];
} new_refresh;

static void new_refresh_token(new_refresh *t, int64_t ttl_s)
{
    uint8_t token_id_raw[TOKEN_ID_BYTES], secret[SECRET_BYTES], digest[32];

    spcrypto_random(token_id_raw, sizeof(token_id_raw));
    spcrypto_random(secret, sizeof(secret));
    spcrypto_b64url_encode(t->token_id, token_id_raw, sizeof(token_id_raw));
    spcrypto_b64url_encode(t->secret_b64, secret, sizeof(secret));
    spcrypto_sha256(digest, secret, sizeof(secret));
    spcrypto_hex(t->digest_hex, digest, sizeof(digest));
    snprintf(t->ttl, sizeof(t->ttl), "%lld", (long long)ttl_s);
    explicit_bzero(secret, sizeof(secret));
}

/* The membership of a user, held FOR SHARE until the session insert commits: a
 * suspension (members.c) updates these rows first, so either this login sees suspended,
 * or the suspension waits for it and then revokes the session it made. */
static const char *sql_lock_membership =
    "SELECT client_id::text, client_role, suspended FROM auth.memberships"
    " WHERE user_id = $1::bigint FOR SHARE";

/* Inside the login's transaction: locks u's membership and takes the token's claims from
 * it (it may have changed since the password check); a suspended one replies 403
 * client_suspended, unless u is a platform admin (whose token never carries the client). */
static sp_status lock_membership_or_reply(spbus_req *req, spdb *db, login_user *u)
{
    sp_arena *a = spbus_req_arena(req);
    PGresult *res = NULL;
    const char *params[] = {u->id};

    sp_status s = spdb_query(&res, db, sql_lock_membership, 1, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "lock_membership");
    bool member = PQntuples(res) == 1;
    bool suspended = member && strcmp(PQgetvalue(res, 0, 2), "t") == 0;
    u->client_id = member ? sp_arena_strdup(a, PQgetvalue(res, 0, 0)) : NULL;
    u->client_role = member ? sp_arena_strdup(a, PQgetvalue(res, 0, 1)) : NULL;
    PQclear(res);
    if (member && (u->client_id == NULL || u->client_role == NULL)) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    if (suspended && !u->is_admin) {
        sp_log_info(spbus_req_id(req), "login_client_suspended", "userId", u->public_id, "clientId",
                    u->client_id);
        spadmin_counter_add("sp_auth_logins_total", "result=\"client_suspended\"", 1);
        spbus_reply_error(req, SP_ERR_CLIENT_SUSPENDED, "client suspended", NULL);
        return SP_ERR_CLIENT_SUSPENDED;
    }
    return SP_OK;
}

/* Stores a new session for 'u' with its first refresh token, in one transaction with the
 * read of its membership (lock_membership_or_reply: 403 client_suspended); writes the
 * session id (the token's sid) and the refresh token "<tokenId>.<secret>" (only SHA-256 of
 * the secret's 32 bytes is stored). Replies unavailable/internal on a database failure;
 * the caller rolls back what is left open. */
static sp_status open_session_or_reply(spbus_req *req, spdb *db, login_user *u,
                                       char sid[SPCRYPTO_UUID_LEN], char **refresh)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    new_refresh t;

    *refresh = NULL;
    spcrypto_uuid_v4(sid);
    new_refresh_token(&t, auth_of(req)->refresh_ttl_s);

    const char *ip = ctx != NULL && ctx->ip != NULL && ctx->ip[0] != '\0' ? ctx->ip : NULL;
    const char *ua = ctx != NULL && ctx->user_agent != NULL && ctx->user_agent[0] != '\0'
                         ? ctx->user_agent
                         : NULL;
    const char *params[] = {sid, u->id, ip, ua, t.token_id, t.digest_hex, t.ttl};
    sp_status s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = lock_membership_or_reply(req, db, u);
    if (s == SP_OK) {
        s = spdb_exec(db, sql_open_session, 7, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "open_session");
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    if (s != SP_OK) {
        explicit_bzero(t.secret_b64, sizeof(t.secret_b64));
        return s;
    }
    *refresh = sp_arena_printf(spbus_req_arena(req), "%s.%s", t.token_id, t.secret_b64);
    explicit_bzero(t.secret_b64, sizeof(t.secret_b64));
    if (*refresh == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    return SP_OK;
}

/* Signs an access token of session 'sid' for 'u' (fresh jti, role and membership as
 * given); *access is malloc'd, the caller frees. Replies internal on failure. */
static sp_status sign_access_or_reply(spbus_req *req, const login_user *u, const char *sid,
                                      char **access)
{
    auth_svc *svc = auth_of(req);
    spjwt_claims c;
    char jti[SPCRYPTO_UUID_LEN];

    *access = NULL;
    memset(&c, 0, sizeof(c));
    spcrypto_uuid_v4(jti);
    const char *role = auth_role_of(u->is_admin, u->client_id != NULL);
    snprintf(c.sub, sizeof(c.sub), "%s", u->public_id);
    snprintf(c.role, sizeof(c.role), "%s", role);
    if (strcmp(role, "client_admin") == 0) {
        snprintf(c.client_id, sizeof(c.client_id), "%s", u->client_id);
        snprintf(c.client_role, sizeof(c.client_role), "%s", u->client_role);
    }
    snprintf(c.jti, sizeof(c.jti), "%s", jti);
    snprintf(c.sid, sizeof(c.sid), "%s", sid);
    c.iat = sp_now_us() / 1000000;
    c.exp = c.iat + svc->access_ttl_s;

    sp_status s = spjwt_sign(access, &svc->jwt, &c);
    if (s != SP_OK) {
        sp_log_error(spbus_req_id(req), "jwt_sign_failed", "code", sp_error_code(s));
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return s;
    }
    return SP_OK;
}

/* LoginReply and RefreshReply have the same fields. */
#define FILL_TOKEN_PAIR(out, access, refresh, ttl)                                                 \
    do {                                                                                           \
        (out).access_token = (access);                                                             \
        (out).refresh_token = (char *)(refresh);                                                   \
        (out).token_type = "Bearer";                                                               \
        (out).has_expires_in = 1;                                                                  \
        (out).expires_in = (ttl);                                                                  \
    } while (0)

/* Signs the access token of session 'sid' (fresh jti) and replies the pair: a LoginReply,
 * or a RefreshReply when 'refreshed'. */
static sp_status reply_token_pair(spbus_req *req, const login_user *u, const char *sid,
                                  const char *refresh, bool refreshed)
{
    int64_t ttl = auth_of(req)->access_ttl_s;
    char *access = NULL;

    sp_status s = sign_access_or_reply(req, u, sid, &access);
    if (s != SP_OK) return s;
    if (refreshed) {
        Sp__Auth__V1__RefreshReply out = SP__AUTH__V1__REFRESH_REPLY__INIT;
        FILL_TOKEN_PAIR(out, access, refresh, ttl);
        sp_log_info(spbus_req_id(req), "refreshed", "userId", u->public_id, "sid", sid);
        s = spbus_reply(req, &out.base);
    } else {
        Sp__Auth__V1__LoginReply out = SP__AUTH__V1__LOGIN_REPLY__INIT;
        FILL_TOKEN_PAIR(out, access, refresh, ttl);
        sp_log_info(spbus_req_id(req), "login", "userId", u->public_id, "sid", sid, "role",
                    auth_role_of(u->is_admin, u->client_id != NULL));
        spadmin_counter_add("sp_auth_logins_total", "result=\"success\"", 1);
        s = spbus_reply(req, &out.base);
    }
    free(access);
    return s;
}

/* Login: email and password -> a new session. 400 validation_failed on missing or
 * oversize fields; 401 unauthenticated "invalid email or password", the same answer for an
 * unknown email and a wrong password (a pending member, not yet activated, is such an
 * unknown account); 403 client_suspended for a member of a suspended client, only once
 * the password was verified (it tells a guesser nothing; for the rate limits it is a
 * success: the password was right); 429 rate_limited past the failure limits, 503 while
 * their store (Redis) is down (ratelimit.c). */
static sp_status login(spbus_req *req)
{
    const Sp__Auth__V1__LoginRequest *in = (const void *)spbus_req_input(req);
    char sid[SPCRYPTO_UUID_LEN];
    char *refresh = NULL;
    login_user u;
    auth_rl rl;
    spdb *db = NULL;

    sp_status s = validate_login_or_reply(req, in);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) (void)auth_redis_sync(req, db, 0); /* best effort: rewrites after a restart */
    if (s == SP_OK) s = auth_ratelimit_reserve_or_reply(req, db, in->email, &rl, AUTH_RL_LOGIN);
    if (s == SP_OK) s = check_credentials_or_reply(req, db, in, &u, &rl);
    if (s == SP_OK) s = open_session_or_reply(req, db, &u, sid, &refresh);
    if (s == SP_OK) s = reply_token_pair(req, &u, sid, refresh, false);
    if (db != NULL && spdb_in_tx(db)) spdb_rollback(db);
    if (refresh != NULL) explicit_bzero(refresh, strlen(refresh));
    (void)s; /* every step replied, success or not */
    return SP_OK;
}

/* ---- Refresh and Logout ------------------------------------------------------------ */

/* The refresh token and its session, locked (FOR UPDATE) until the transaction ends. */
static const char *sql_find_refresh_locked =
    "SELECT rt.id, encode(rt.secret_sha256, 'hex'), rt.used_at IS NOT NULL,"
    "       rt.expires_at <= now(), s.id, s.public_id::text, s.revoked_at IS NOT NULL,"
    "       s.user_id"
    " FROM auth.refresh_tokens rt"
    " JOIN auth.sessions s ON s.id = rt.session_id"
    " WHERE rt.token_id = $1"
    " FOR UPDATE OF rt, s";

/* The live user of a session, with what the access token says of it today. */
static const char *sql_find_user_by_id =
    "SELECT u.id, u.public_id,"
    "       EXISTS (SELECT 1 FROM auth.user_roles ur"
    "               WHERE ur.user_id = u.id AND ur.role_id = " AUTH_ROLE_ADMIN_ID "),"
    "       m.client_id, m.client_role"
    " FROM auth.users u"
    " JOIN auth.people p ON p.id = u.person_id"
    " LEFT JOIN auth.memberships m ON m.user_id = u.id"
    " WHERE u.id = $1::bigint AND p.deleted_at IS NULL AND u.deleted_at IS NULL AND u.active";

/* The user is a member of a suspended client (and no platform admin). */
static const char *sql_suspended =
    "SELECT EXISTS (SELECT 1 FROM auth.memberships m"
    "               WHERE m.user_id = $1::bigint AND m.suspended"
    "                 AND NOT EXISTS (SELECT 1 FROM auth.user_roles ur"
    "                                 WHERE ur.user_id = m.user_id"
    "                                   AND ur.role_id = " AUTH_ROLE_ADMIN_ID "))";

static const char *sql_revoke_session =
    "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $2"
    " WHERE id = $1::bigint AND revoked_at IS NULL";

/* Marks the presented token used, adds its successor and touches the session. */
static const char *sql_rotate =
    "WITH used AS (UPDATE auth.refresh_tokens SET used_at = now() WHERE id = $1::bigint),"
    " touched AS (UPDATE auth.sessions SET last_used_at = now() WHERE id = $2::bigint)"
    " INSERT INTO auth.refresh_tokens (token_id, session_id, secret_sha256, expires_at)"
    " VALUES ($3, $2::bigint, decode($4, 'hex'), now() + $5::bigint * interval '1 second')";

/* A refresh token taken apart: the id as given, SHA-256 of the decoded secret in hex. */
typedef struct {
    char token_id[TOKEN_ID_CHARS + 1];
    char digest_hex[65];
} parsed_refresh;

/* The row of sql_find_refresh_locked, in the request's arena. */
typedef struct {
    char *id; /* refresh_tokens.id */
    bool used, expired;
    char *session_id; /* sessions.id */
    char *sid;        /* sessions.public_id: the tokens' sid */
    bool revoked;
    char *user_id; /* users.id */
} refresh_row;

static bool b64url_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* true when 's' (len characters of base64url) decodes to exactly 'nbytes' bytes and is
 * their canonical encoding (no stray low bits in the last character). */
static bool b64url_exact(const char *s, size_t len, uint8_t *out, size_t nbytes)
{
    char again[64];

    for (size_t i = 0; i < len; i++)
        if (!b64url_char(s[i])) return false;
    if (spcrypto_b64url_decode(out, nbytes, s, len) != (long)nbytes) return false;
    return spcrypto_b64url_encode(again, out, nbytes) == len && memcmp(again, s, len) == 0;
}

/* Parses "<tokenId>.<secret>" strictly: 22 base64url characters (16 bytes), a dot, 43
 * (32 bytes). Replies 400 validation_failed when absent, 401 invalid_token when malformed. */
static sp_status parse_refresh_or_reply(spbus_req *req, const char *tok, parsed_refresh *p)
{
    uint8_t id[TOKEN_ID_BYTES], secret[SECRET_BYTES], digest[32];
    spsvc_fields f;

    memset(p, 0, sizeof(*p));
    if (tok == NULL) {
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "refreshToken", "required");
        return spsvc_fields_or_reply(req, &f);
    }
    bool ok =
        strnlen(tok, TOKEN_ID_CHARS + 1 + SECRET_CHARS + 1) == TOKEN_ID_CHARS + 1 + SECRET_CHARS &&
        tok[TOKEN_ID_CHARS] == '.' && b64url_exact(tok, TOKEN_ID_CHARS, id, sizeof(id)) &&
        b64url_exact(tok + TOKEN_ID_CHARS + 1, SECRET_CHARS, secret, sizeof(secret));
    if (ok) {
        memcpy(p->token_id, tok, TOKEN_ID_CHARS);
        spcrypto_sha256(digest, secret, sizeof(secret));
        spcrypto_hex(p->digest_hex, digest, sizeof(digest));
    }
    explicit_bzero(secret, sizeof(secret));
    if (!ok) {
        sp_log_info(spbus_req_id(req), "refresh_token_malformed");
        spbus_reply_error(req, SP_ERR_INVALID_TOKEN, "invalid refresh token", NULL);
        return SP_ERR_INVALID_TOKEN;
    }
    return SP_OK;
}

/* Inside the transaction: finds the token by its id, locks it and its session, and
 * compares SHA-256 of the secret in constant time. An unknown id or another secret
 * replies 401 invalid_token (the same answer). */
static sp_status find_refresh_locked_or_reply(spbus_req *req, spdb *db, const parsed_refresh *p,
                                              refresh_row *row)
{
    sp_arena *a = spbus_req_arena(req);
    PGresult *res = NULL;
    const char *params[] = {p->token_id};

    memset(row, 0, sizeof(*row));
    sp_status s = spdb_query(&res, db, sql_find_refresh_locked, 1, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "find_refresh");
    bool ok = PQntuples(res) == 1 && strlen(PQgetvalue(res, 0, 1)) == 64 &&
              spcrypto_ct_equal(PQgetvalue(res, 0, 1), p->digest_hex, 64);
    if (ok) {
        row->id = sp_arena_strdup(a, PQgetvalue(res, 0, 0));
        row->used = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
        row->expired = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
        row->session_id = sp_arena_strdup(a, PQgetvalue(res, 0, 4));
        row->sid = sp_arena_strdup(a, PQgetvalue(res, 0, 5));
        row->revoked = strcmp(PQgetvalue(res, 0, 6), "t") == 0;
        row->user_id = sp_arena_strdup(a, PQgetvalue(res, 0, 7));
    }
    PQclear(res);
    if (!ok) {
        sp_log_info(spbus_req_id(req), "refresh_token_unknown");
        spbus_reply_error(req, SP_ERR_INVALID_TOKEN, "invalid refresh token", NULL);
        return SP_ERR_INVALID_TOKEN;
    }
    if (row->id == NULL || row->session_id == NULL || row->sid == NULL || row->user_id == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    return SP_OK;
}

/* Inside the transaction, the token verified: replies 403 client_suspended when its user
 * is a member of a suspended client. Asked before the token's state, so that a member
 * whose session the suspension revoked learns why. No FOR SHARE here: refresh makes no
 * session, and the suspension's revocation of this one waits for its lock (FOR UPDATE
 * above), so a refresh racing a suspension hands out tokens of a session revoked right
 * after; locking the membership after the session would deadlock with the suspension,
 * which locks them the other way round. */
static sp_status not_suspended_or_reply(spbus_req *req, spdb *db, const refresh_row *row)
{
    PGresult *res = NULL;
    const char *params[] = {row->user_id};

    sp_status s = spdb_query(&res, db, sql_suspended, 1, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "find_suspended");
    bool suspended = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (suspended) {
        sp_log_info(spbus_req_id(req), "refresh_client_suspended", "sid", row->sid);
        spbus_reply_error(req, SP_ERR_CLIENT_SUSPENDED, "client suspended", NULL);
        return SP_ERR_CLIENT_SUSPENDED;
    }
    return SP_OK;
}

/* Revokes the session of 'row' for 'reason' and commits. Replies on a database failure. */
static sp_status revoke_and_commit_or_reply(spbus_req *req, spdb *db, const refresh_row *row,
                                            const char *reason)
{
    const char *params[] = {row->session_id, reason};
    sp_status s = spdb_exec(db, sql_revoke_session, 2, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "revoke_session");
    s = spsvc_commit_or_reply(req, db);
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "session_revoked", "sid", row->sid, "reason", reason);
        spadmin_counter_add("sp_auth_sessions_revoked_total",
                            reason[0] == 'l' ? "reason=\"logout\"" : "reason=\"refresh_reused\"",
                            1);
    }
    return s;
}

/* A refresh token presented a second time: someone else may hold it. Revokes the whole
 * session (PostgreSQL, then Redis) and replies 401 refresh_reused (503 when Redis is
 * down; the session stays revoked in PostgreSQL either way). */
static sp_status revoke_reused_and_reply(spbus_req *req, spdb *db, const refresh_row *row)
{
    sp_log_warn(spbus_req_id(req), "refresh_reused", "sid", row->sid);
    sp_status s = revoke_and_commit_or_reply(req, db, row, "refresh_reused");
    if (s == SP_OK) s = auth_revoke_in_redis_or_reply(req, db, row->sid);
    if (s == SP_OK)
        spbus_reply_error(req, SP_ERR_REFRESH_REUSED,
                          "refresh token already used: the session is revoked", NULL);
    return s;
}

/* The live user of the session with its current role and membership; a user gone since
 * replies 401 invalid_token. */
static sp_status find_user_or_reply(spbus_req *req, spdb *db, const char *user_id, login_user *u)
{
    sp_arena *a = spbus_req_arena(req);
    PGresult *res = NULL;
    const char *params[] = {user_id};

    memset(u, 0, sizeof(*u));
    sp_status s = spdb_query(&res, db, sql_find_user_by_id, 1, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "find_user");
    bool found = PQntuples(res) == 1;
    if (found) read_login_user(u, res, a);
    PQclear(res);
    if (!found) {
        sp_log_info(spbus_req_id(req), "refresh_user_gone");
        spbus_reply_error(req, SP_ERR_INVALID_TOKEN, "invalid refresh token", NULL);
        return SP_ERR_INVALID_TOKEN;
    }
    return login_user_copied_or_reply(req, u);
}

/* Marks the token of 'row' used, stores its successor and commits; *refresh is the new
 * "<tokenId>.<secret>" in the arena. Replies on a database failure. */
static sp_status rotate_and_commit_or_reply(spbus_req *req, spdb *db, const refresh_row *row,
                                            char **refresh)
{
    new_refresh t;

    *refresh = NULL;
    new_refresh_token(&t, auth_of(req)->refresh_ttl_s);
    const char *params[] = {row->id, row->session_id, t.token_id, t.digest_hex, t.ttl};
    sp_status s = spdb_exec(db, sql_rotate, 5, params);
    if (s == SP_OK)
        s = spsvc_commit_or_reply(req, db);
    else
        spsvc_db_error_reply(req, s, "rotate");
    if (s == SP_OK) {
        *refresh = sp_arena_printf(spbus_req_arena(req), "%s.%s", t.token_id, t.secret_b64);
        if (*refresh == NULL) {
            spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
            s = SP_ERR_INTERNAL;
        }
    }
    explicit_bzero(t.secret_b64, sizeof(t.secret_b64));
    return s;
}

/* Refresh: a refresh token -> a new pair for the same session. 400 validation_failed when
 * absent; 401 invalid_token when malformed, unknown, expired, or its session is revoked;
 * 401 refresh_reused (and the session revoked) when already used; 403 client_suspended
 * for a member of a suspended client (whatever the token's state); 503 when PostgreSQL is
 * down, or Redis while a reuse is being revoked. */
static sp_status refresh(spbus_req *req)
{
    const Sp__Auth__V1__RefreshRequest *in = (const void *)spbus_req_input(req);
    parsed_refresh p;
    refresh_row row;
    login_user u;
    char *next = NULL;
    spdb *db = NULL;

    sp_status s = parse_refresh_or_reply(req, in->refresh_token, &p);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) (void)auth_redis_sync(req, db, 0); /* best effort: rewrites after a restart */
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = find_refresh_locked_or_reply(req, db, &p, &row);
    if (s == SP_OK) s = not_suspended_or_reply(req, db, &row);
    if (s == SP_OK && (row.revoked || row.expired)) {
        sp_log_info(spbus_req_id(req), "refresh_token_dead", "sid", row.sid, "why",
                    row.revoked ? "revoked" : "expired");
        spbus_reply_error(req, SP_ERR_INVALID_TOKEN, "invalid refresh token", NULL);
        s = SP_ERR_INVALID_TOKEN;
    }
    if (s == SP_OK && row.used) {
        (void)revoke_reused_and_reply(req, db, &row);
        s = SP_ERR_REFRESH_REUSED;
    }
    if (s == SP_OK) s = find_user_or_reply(req, db, row.user_id, &u);
    if (s == SP_OK) s = rotate_and_commit_or_reply(req, db, &row, &next);
    if (s == SP_OK) (void)reply_token_pair(req, &u, row.sid, next, true);
    if (db != NULL && spdb_in_tx(db)) spdb_rollback(db);
    if (next != NULL) explicit_bzero(next, strlen(next));
    explicit_bzero(&p, sizeof(p));
    return SP_OK; /* every step replied, success or not */
}

/* Logout: revokes the session of a refresh token. Any token of the session is accepted,
 * used ones too (the client may hold an older one after a lost refresh reply), and a
 * session already revoked answers success again after rewriting its revocation to Redis
 * (so that a logout answered 503 while Redis was down can simply be retried). 400 when
 * absent; 401 invalid_token when malformed, unknown or expired; 503 when PostgreSQL or
 * Redis is down (the session is revoked in PostgreSQL either way). */
static sp_status logout(spbus_req *req)
{
    const Sp__Auth__V1__LogoutRequest *in = (const void *)spbus_req_input(req);
    parsed_refresh p;
    refresh_row row;
    spdb *db = NULL;

    sp_status s = parse_refresh_or_reply(req, in->refresh_token, &p);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = find_refresh_locked_or_reply(req, db, &p, &row);
    if (s == SP_OK && row.expired && !row.revoked) {
        sp_log_info(spbus_req_id(req), "refresh_token_dead", "sid", row.sid, "why", "expired");
        spbus_reply_error(req, SP_ERR_INVALID_TOKEN, "invalid refresh token", NULL);
        s = SP_ERR_INVALID_TOKEN;
    }
    if (s == SP_OK && !row.revoked) s = revoke_and_commit_or_reply(req, db, &row, "logout");
    if (s == SP_OK && spdb_in_tx(db)) spdb_rollback(db); /* already revoked: nothing written */
    if (s == SP_OK) s = auth_revoke_in_redis_or_reply(req, db, row.sid);
    if (s == SP_OK) {
        Sp__Auth__V1__LogoutReply out = SP__AUTH__V1__LOGOUT_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    if (db != NULL && spdb_in_tx(db)) spdb_rollback(db);
    explicit_bzero(&p, sizeof(p));
    return SP_OK; /* every step replied, success or not */
}

static const spbus_route routes[] = {
    {"Login", login, &sp__auth__v1__login_request__descriptor, NULL},
    {"Refresh", refresh, &sp__auth__v1__refresh_request__descriptor, NULL},
    {"Logout", logout, &sp__auth__v1__logout_request__descriptor, NULL},
};

void sessions_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
