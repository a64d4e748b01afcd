/* sessions.c -- sessions of the auth service: Login opens a session and hands out an
 * access token and a refresh token (later: Refresh, Logout). Ends with sessions_register(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "spadmin.h"

#define TOKEN_ID_BYTES 16 /* 22 base64url characters */
#define SECRET_BYTES 32   /* 43 base64url characters */

static const char *sql_find_login =
    "SELECT u.id, u.public_id, u.password_hash,"
    "       EXISTS (SELECT 1 FROM auth.user_roles ur"
    "               WHERE ur.user_id = u.id AND ur.role_id = " AUTH_ROLE_ADMIN_ID "),"
    "       m.client_id, m.client_role"
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

/* Presence and upper limits of a LoginRequest; replies 400 validation_failed. */
static sp_status validate_login_or_reply(spbus_req *req, const Sp__Auth__V1__LoginRequest *in)
{
    auth_fields f;

    auth_fields_init(&f);
    auth_fields_add(&f, "email", auth_check_login_email(in->email));
    auth_fields_add(&f, "password", auth_check_login_password(in->password));
    return auth_fields_or_reply(req, &f);
}

/* Finds the live user of in->email and checks the password. An unknown email is checked
 * against the dummy hash, so both failures cost one argon2id and answer the same 401. */
static sp_status check_credentials_or_reply(spbus_req *req, spdb *db,
                                            const Sp__Auth__V1__LoginRequest *in, login_user *u)
{
    auth_svc *svc = spbus_req_user(req);
    sp_arena *a = spbus_req_arena(req);
    PGresult *res = NULL;
    const char *params[] = {in->email};

    memset(u, 0, sizeof(*u));
    sp_status s = spdb_query(&res, db, sql_find_login, 1, params);
    if (s != SP_OK) return auth_db_error_reply(req, s, "find_login");

    bool found = PQntuples(res) == 1;
    const char *hash = found ? PQgetvalue(res, 0, 2) : svc->dummy_hash;
    bool ok = spcrypto_password_verify(hash, in->password, strlen(in->password)) && found;
    if (ok) {
        u->id = sp_arena_strdup(a, PQgetvalue(res, 0, 0));
        u->public_id = sp_arena_strdup(a, PQgetvalue(res, 0, 1));
        u->is_admin = strcmp(PQgetvalue(res, 0, 3), "t") == 0;
        if (!PQgetisnull(res, 0, 4)) {
            u->client_id = sp_arena_strdup(a, PQgetvalue(res, 0, 4));
            u->client_role = sp_arena_strdup(a, PQgetvalue(res, 0, 5));
        }
    }
    PQclear(res);
    if (!ok) {
        sp_log_info(spbus_req_id(req), "login_failed", "known", found ? "true" : "false");
        spadmin_counter_add("sp_auth_logins_total", "result=\"failure\"", 1);
        spbus_reply_error(req, SP_ERR_UNAUTHENTICATED, "invalid email or password", NULL);
        return SP_ERR_UNAUTHENTICATED;
    }
    if (u->id == NULL || u->public_id == NULL || (u->client_id != NULL && u->client_role == NULL)) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    return SP_OK;
}

/* Stores a new session for 'u' with its first refresh token; writes the session id (the
 * token's sid) and the refresh token "<tokenId>.<secret>" (only SHA-256 of the secret's
 * 32 bytes is stored). Replies unavailable/internal on a database failure. */
static sp_status open_session_or_reply(spbus_req *req, spdb *db, const login_user *u,
                                       char sid[SPCRYPTO_UUID_LEN], char **refresh)
{
    auth_svc *svc = spbus_req_user(req);
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    uint8_t token_id_raw[TOKEN_ID_BYTES], secret[SECRET_BYTES], digest[32];
    char token_id[32], secret_b64[48], digest_hex[65], ttl[24];

    *refresh = NULL;
    spcrypto_uuid_v4(sid);
    spcrypto_random(token_id_raw, sizeof(token_id_raw));
    spcrypto_random(secret, sizeof(secret));
    spcrypto_b64url_encode(token_id, token_id_raw, sizeof(token_id_raw));
    spcrypto_b64url_encode(secret_b64, secret, sizeof(secret));
    spcrypto_sha256(digest, secret, sizeof(secret));
    spcrypto_hex(digest_hex, digest, sizeof(digest));
    snprintf(ttl, sizeof(ttl), "%lld", (long long)svc->refresh_ttl_s);
    explicit_bzero(secret, sizeof(secret));

    const char *ip = ctx != NULL && ctx->ip != NULL && ctx->ip[0] != '\0' ? ctx->ip : NULL;
    const char *ua = ctx != NULL && ctx->user_agent != NULL && ctx->user_agent[0] != '\0'
                         ? ctx->user_agent
                         : NULL;
    const char *params[] = {sid, u->id, ip, ua, token_id, digest_hex, ttl};
    sp_status s = spdb_exec(db, sql_open_session, 7, params);
    if (s != SP_OK) {
        explicit_bzero(secret_b64, sizeof(secret_b64));
        return auth_db_error_reply(req, s, "open_session");
    }
    *refresh = sp_arena_printf(spbus_req_arena(req), "%s.%s", token_id, secret_b64);
    explicit_bzero(secret_b64, sizeof(secret_b64));
    if (*refresh == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    return SP_OK;
}

/* Signs the access token of session 'sid' and replies LoginReply. */
static sp_status sign_and_reply(spbus_req *req, const login_user *u, const char *sid,
                                const char *refresh)
{
    auth_svc *svc = spbus_req_user(req);
    spjwt_claims c;
    char jti[SPCRYPTO_UUID_LEN];
    char *access = NULL;

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

    sp_status s = spjwt_sign(&access, &svc->jwt, &c);
    if (s != SP_OK) {
        sp_log_error(spbus_req_id(req), "jwt_sign_failed", "code", sp_error_code(s));
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return s;
    }
    Sp__Auth__V1__LoginReply out = SP__AUTH__V1__LOGIN_REPLY__INIT;
    out.access_token = access;
    out.refresh_token = (char *)refresh;
    out.token_type = "Bearer";
    out.has_expires_in = 1;
    out.expires_in = svc->access_ttl_s;
    sp_log_info(spbus_req_id(req), "login", "userId", u->public_id, "sid", sid, "role", role);
    spadmin_counter_add("sp_auth_logins_total", "result=\"success\"", 1);
    s = spbus_reply(req, &out.base);
    free(access);
    return s;
}

/* Login: email and password -> a new session. 400 validation_failed on missing or
 * oversize fields; 401 unauthenticated "invalid email or password", the same answer for an
 * unknown email and a wrong password. */
static sp_status login(spbus_req *req)
{
    const Sp__Auth__V1__LoginRequest *in = (const void *)spbus_req_input(req);
    char sid[SPCRYPTO_UUID_LEN];
    char *refresh = NULL;
    login_user u;
    spdb *db = NULL;

    sp_status s = validate_login_or_reply(req, in);
    if (s == SP_OK) s = auth_db_or_reply(&db, req);
    if (s == SP_OK) s = check_credentials_or_reply(req, db, in, &u);
    if (s == SP_OK) s = open_session_or_reply(req, db, &u, sid, &refresh);
    if (s == SP_OK) s = sign_and_reply(req, &u, sid, refresh);
    if (refresh != NULL) explicit_bzero(refresh, strlen(refresh));
    (void)s; /* every step replied, success or not */
    return SP_OK;
}

void sessions_register(auth_svc *svc)
{
    auth_route_add(svc, "Login", login, &sp__auth__v1__login_request__descriptor);
}
