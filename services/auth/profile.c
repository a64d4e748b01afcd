/* profile.c -- the caller's own account: UpdateMe (PATCH /v1/me), ChangePassword (POST
 * /v1/me/password, revokes the other sessions) and DeleteMe (DELETE /v1/me: anonymises
 * the person, revokes every session, audits). Every revocation reaches Redis before the
 * reply. Ends with profile_register(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "spadmin.h"

/* The new name (or the old one when $2 is NULL) and the profile as GetMe shows it, in one
 * statement. */
static const char *sql_update_me =
    "UPDATE auth.people p SET name = COALESCE($2, p.name)"
    " FROM auth.users u LEFT JOIN auth.memberships m ON m.user_id = u.id"
    " WHERE u.person_id = p.id AND u.public_id = $1::uuid"
    "   AND u.deleted_at IS NULL AND p.deleted_at IS NULL AND u.active"
    " RETURNING u.public_id, p.name, p.email,"
    "       (extract(epoch FROM u.created_at) * 1000000)::bigint,"
    "       EXISTS (SELECT 1 FROM auth.user_roles ur"
    "               WHERE ur.user_id = u.id AND ur.role_id = " AUTH_ROLE_ADMIN_ID "),"
    "       m.client_id, m.client_role";

static const char *sql_find_password =
    "SELECT u.id, u.password_hash, p.email"
    " FROM auth.users u JOIN auth.people p ON p.id = u.person_id"
    " WHERE u.public_id = $1::uuid AND u.deleted_at IS NULL AND p.deleted_at IS NULL"
    "   AND u.active";

static const char *sql_set_password =
    "UPDATE auth.users SET password_hash = $2, updated_at = now() WHERE id = $1::bigint";

/* The account soft-deleted and deactivated, the person anonymised (which frees the email:
 * the unique index people_email_live only covers live people); returns the user's internal
 * id and its client, if a member. */
static const char *sql_delete_me =
    "WITH u AS (UPDATE auth.users SET deleted_at = now(), active = false, updated_at = now()"
    "           WHERE public_id = $1::uuid AND deleted_at IS NULL AND active"
    "           RETURNING id, person_id),"
    " p AS (UPDATE auth.people pp SET name = 'Deleted user',"
    "              email = 'deleted+' || pp.public_id::text || '@invalid', deleted_at = now()"
    "       FROM u WHERE pp.id = u.person_id AND pp.deleted_at IS NULL RETURNING pp.id)"
    " SELECT u.id, (SELECT m.client_id::text FROM auth.memberships m WHERE m.user_id = u.id)"
    " FROM u, p";

/* ---- UpdateMe ------------------------------------------------------------------------ */

/* name is optional in a PATCH; when given, the rules of Register. */
static sp_status validate_update_or_reply(spbus_req *req, const Sp__Auth__V1__UpdateMeRequest *in)
{
    spsvc_fields f;

    spsvc_fields_init(&f);
    if (in->name != NULL) spsvc_fields_add(&f, "name", auth_check_name(in->name));
    return spsvc_fields_or_reply(req, &f);
}

/* Updates the name when given and replies the profile (GetMeReply); an account gone since
 * the token was issued replies 401 unauthenticated. */
static sp_status update_and_reply(spbus_req *req, spdb *db, const char *user_id,
                                  const Sp__Auth__V1__UpdateMeRequest *in)
{
    PGresult *res = NULL;
    const char *params[] = {user_id, in->name};

    sp_status s = spdb_query(&res, db, sql_update_me, 2, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "update_me");
    if (in->name != NULL && PQntuples(res) == 1)
        sp_log_info(spbus_req_id(req), "profile_updated", "userId", user_id);
    auth_reply_me(req, user_id, res, PQntuples(res) == 1 ? 0 : -1);
    PQclear(res);
    return SP_OK;
}

/* UpdateMe: {name} -> the profile. 400 validation_failed on a bad name; 401 when the
 * caller is anonymous or its account is gone. */
static sp_status update_me(spbus_req *req)
{
    const Sp__Auth__V1__UpdateMeRequest *in = (const void *)spbus_req_input(req);
    const char *user_id = NULL;
    spdb *db = NULL;

    sp_status s = spsvc_require_user_or_reply(req, &user_id);
    if (s == SP_OK) s = validate_update_or_reply(req, in);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = update_and_reply(req, db, user_id, in);
    (void)s; /* every step replied, success or not */
    return SP_OK;
}

/* ---- ChangePassword ------------------------------------------------------------------- */

static sp_status validate_change_or_reply(spbus_req *req,
                                          const Sp__Auth__V1__ChangePasswordRequest *in)
{
    spsvc_fields f;

    spsvc_fields_init(&f);
    /* any stored password must still be accepted as the current one: login's limits */
    spsvc_fields_add(&f, "currentPassword", auth_check_login_password(in->current_password));
    spsvc_fields_add(&f, "newPassword", auth_check_password(in->new_password));
    return spsvc_fields_or_reply(req, &f);
}

/* Finds the live account of 'user_id' (internal id into *id, in the arena) and checks
 * 'current' against its hash, within login's failure limits of that account's email and
 * the caller's ip (ratelimit.c): 429 while one is at its limit, without checking; a wrong
 * password is a failure and replies 400 validation_failed with fields.currentPassword; a
 * right one clears the account's count. An account gone replies 401. */
static sp_status check_current_or_reply(spbus_req *req, spdb *db, const char *user_id,
                                        const char *current, char **id)
{
    PGresult *res = NULL;
    const char *params[] = {user_id};
    auth_rl rl;

    *id = NULL;
    sp_status s = spdb_query(&res, db, sql_find_password, 1, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "find_password");
    if (PQntuples(res) != 1) {
        PQclear(res);
        spbus_reply_error(req, SP_ERR_UNAUTHENTICATED, "account not found", NULL);
        return SP_ERR_UNAUTHENTICATED;
    }
    s = auth_ratelimit_reserve_or_reply(req, db, PQgetvalue(res, 0, 2), &rl,
                                        AUTH_RL_PASSWORD_CHANGE);
    if (s != SP_OK) {
        PQclear(res);
        return s;
    }
    bool ok = spcrypto_password_verify(PQgetvalue(res, 0, 1), current, strlen(current));
    *id = sp_arena_strdup(spbus_req_arena(req), PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!ok) { /* the reservation is the failure */
        sp_log_info(spbus_req_id(req), "password_change_refused", "userId", user_id);
        spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "invalid input", "currentPassword",
                          "incorrect", NULL);
        return SP_ERR_VALIDATION_FAILED;
    }
    auth_ratelimit_success(req, &rl);
    if (*id == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    return SP_OK;
}

/* Stores the new hash and revokes every other session in one transaction; then Redis. */
static sp_status store_and_revoke_or_reply(spbus_req *req, spdb *db, const char *id,
                                           const char *hash, char ***sids, size_t *n)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    const char *params[] = {id, hash};

    *sids = NULL;
    *n = 0;
    sp_status s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        s = spdb_exec(db, sql_set_password, 2, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "set_password");
    }
    if (s == SP_OK)
        s = auth_revoke_user_sessions_or_reply(req, db, id, ctx->session_id, "password_changed",
                                               sids, n);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    if (spdb_in_tx(db)) spdb_rollback(db);
    return s;
}

/* ChangePassword: {currentPassword,newPassword} -> 204. 400 validation_failed on a bad
 * newPassword or a wrong currentPassword (fields.currentPassword); 401 when anonymous or
 * the account is gone; 503 when Redis is down (the change and the revocations are stored
 * in PostgreSQL either way; a reconnect rewrites them to Redis). */
static sp_status change_password(spbus_req *req)
{
    const Sp__Auth__V1__ChangePasswordRequest *in = (const void *)spbus_req_input(req);
    const char *user_id = NULL;
    char hash[SPCRYPTO_HASH_LEN];
    char *id = NULL;
    char **sids = NULL;
    size_t n = 0;
    spdb *db = NULL;

    memset(hash, 0, sizeof(hash));
    sp_status s = spsvc_require_user_or_reply(req, &user_id);
    if (s == SP_OK) s = validate_change_or_reply(req, in);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = check_current_or_reply(req, db, user_id, in->current_password, &id);
    if (s == SP_OK) {
        s = spcrypto_password_hash(hash, sizeof(hash), in->new_password, strlen(in->new_password));
        if (s != SP_OK) {
            sp_log_error(spbus_req_id(req), "password_hash_failed", "code", sp_error_code(s));
            spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        }
    }
    if (s == SP_OK) s = store_and_revoke_or_reply(req, db, id, hash, &sids, &n);
    if (s == SP_OK) s = auth_revoke_all_in_redis_or_reply(req, db, sids, n);
    if (s == SP_OK) {
        char count[16];
        snprintf(count, sizeof(count), "%zu", n);
        sp_log_info(spbus_req_id(req), "password_changed", "userId", user_id, "revoked", count);
        spadmin_counter_add("sp_auth_sessions_revoked_total", "reason=\"password_changed\"",
                            (double)n);
        Sp__Auth__V1__ChangePasswordReply out = SP__AUTH__V1__CHANGE_PASSWORD_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    explicit_bzero(hash, sizeof(hash));
    return SP_OK; /* every step replied, success or not */
}

/* ---- DeleteMe ------------------------------------------------------------------------- */

/* In one transaction: anonymises the person, deletes the user, revokes every session and
 * queues the audit event "user.deleted". *sids: the sessions to write to Redis. */
static sp_status delete_and_revoke_or_reply(spbus_req *req, spdb *db, const char *user_id,
                                            char ***sids, size_t *n)
{
    PGresult *res = NULL;
    const char *params[] = {user_id};
    char *id = NULL, *client_id = NULL;

    *sids = NULL;
    *n = 0;
    sp_status s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        s = spdb_query(&res, db, sql_delete_me, 1, params);
        if (s != SP_OK) {
            spsvc_db_error_reply(req, s, "delete_me");
        } else if (PQntuples(res) != 1) {
            sp_log_info(spbus_req_id(req), "me_user_gone", "userId", user_id);
            spbus_reply_error(req, SP_ERR_UNAUTHENTICATED, "account not found", NULL);
            s = SP_ERR_UNAUTHENTICATED;
        } else {
            id = sp_arena_strdup(spbus_req_arena(req), PQgetvalue(res, 0, 0));
            if (!PQgetisnull(res, 0, 1))
                client_id = sp_arena_strdup(spbus_req_arena(req), PQgetvalue(res, 0, 1));
            if (id == NULL) {
                spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
                s = SP_ERR_INTERNAL;
            }
        }
        PQclear(res);
    }
    if (s == SP_OK)
        s = auth_revoke_user_sessions_or_reply(req, db, id, NULL, "account_deleted", sids, n);
    if (s == SP_OK)
        s = spsvc_audit_or_reply(req, db, client_id, "user.deleted", "user", user_id, NULL);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    if (spdb_in_tx(db)) spdb_rollback(db);
    return s;
}

/* DeleteMe: -> 204; the account is anonymised (name "Deleted user", email
 * "deleted+<person id>@invalid", so the old email is free again), deactivated, every
 * session revoked and the deletion audited. 401 when anonymous or already gone; 503 when
 * Redis is down (the deletion stands in PostgreSQL; a reconnect rewrites the revocations). */
static sp_status delete_me(spbus_req *req)
{
    const char *user_id = NULL;
    char **sids = NULL;
    size_t n = 0;
    spdb *db = NULL;

    sp_status s = spsvc_require_user_or_reply(req, &user_id);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = delete_and_revoke_or_reply(req, db, user_id, &sids, &n);
    if (s == SP_OK) s = auth_revoke_all_in_redis_or_reply(req, db, sids, n);
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "account_deleted", "userId", user_id);
        spadmin_counter_add("sp_auth_sessions_revoked_total", "reason=\"account_deleted\"",
                            (double)n);
        Sp__Auth__V1__DeleteMeReply out = SP__AUTH__V1__DELETE_ME_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    return SP_OK; /* every step replied, success or not */
}

static const spbus_route routes[] = {
    {"UpdateMe", update_me, &sp__auth__v1__update_me_request__descriptor, NULL},
    {"ChangePassword", change_password, &sp__auth__v1__change_password_request__descriptor, NULL},
    {"DeleteMe", delete_me, &sp__auth__v1__delete_me_request__descriptor, NULL},
};

void profile_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
