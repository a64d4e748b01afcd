/* memberships.c -- auth's copy of client memberships (user, client, client role), written
 * only through the bus by tenancy: SetMembership and RemoveMembership. Login, refresh and
 * /me read it. Callers: ctx.role "admin" (a platform admin) or "service" (another service
 * acting on its own authority, such as tenancy; no token ever carries that role, and the
 * NATS permissions keep everyone but the gateway and the services off sp.auth.v1.*, and
 * the gateway has no route to these). Ends with memberships_register(). */
#include <string.h>

#include "auth.h"
#include "spadmin.h"

/* The upsert, with the membership as it was before it (NULLs when there was none). */
static const char *sql_set_membership =
    "WITH u AS (SELECT id FROM auth.users WHERE public_id = $1::uuid AND deleted_at IS NULL),"
    " old AS (SELECT m.client_id::text AS client_id, m.client_role FROM auth.memberships m"
    "         WHERE m.user_id = (SELECT id FROM u)),"
    " up AS (INSERT INTO auth.memberships (user_id, client_id, client_role)"
    "        SELECT id, $2::uuid, $3 FROM u"
    "        ON CONFLICT (user_id) DO UPDATE SET client_id = EXCLUDED.client_id,"
    "           client_role = EXCLUDED.client_role, updated_at = now()"
    "        RETURNING user_id)"
    " SELECT u.id, (SELECT client_id FROM old), (SELECT client_role FROM old)"
    " FROM u, up";

static const char *sql_remove_membership =
    "DELETE FROM auth.memberships m USING auth.users u"
    " WHERE m.user_id = u.id AND u.public_id = $1::uuid AND m.client_id = $2::uuid"
    " RETURNING m.user_id";

/* Only an admin or a service principal; replies 403 forbidden to anyone else. */
static sp_status require_admin_or_service_or_reply(spbus_req *req)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    const char *role = ctx != NULL ? ctx->role : NULL;

    if (role != NULL && (strcmp(role, "admin") == 0 || strcmp(role, "service") == 0)) return SP_OK;
    sp_log_warn(spbus_req_id(req), "membership_forbidden", "role", role != NULL ? role : "");
    spbus_reply_error(req, SP_ERR_FORBIDDEN, "only an admin or a service may change memberships",
                      NULL);
    return SP_ERR_FORBIDDEN;
}

static const char *check_client_role(const char *s)
{
    if (s == NULL) return "required";
    if (strcmp(s, "client_manager") == 0 || strcmp(s, "client_operator") == 0) return NULL;
    return "must be client_manager or client_operator";
}

/* Revokes every session of user 'id' inside the open transaction, commits, then writes
 * them to Redis. Replies on failure. */
static sp_status revoke_commit_redis_or_reply(spbus_req *req, spdb *db, const char *id,
                                              const char *reason, size_t *n)
{
    char **sids = NULL;

    *n = 0;
    sp_status s = auth_revoke_user_sessions_or_reply(req, db, id, NULL, reason, &sids, n);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    if (s == SP_OK) s = auth_revoke_all_in_redis_or_reply(req, db, sids, *n);
    return s;
}

/* The common steps of both changes: the caller is an admin or a service, the fields are
 * good, then the statement runs in a new transaction (left open for the caller) and must
 * touch exactly one row (*res, the caller clears it). Replies 403, 400, 404 'not_found'
 * or the database error. */
static sp_status change_or_reply(spbus_req *req, spdb **db, PGresult **res, spsvc_fields *f,
                                 const char *sql, int nparams, const char *const *params,
                                 const char *not_found)
{
    *db = NULL;
    *res = NULL;
    sp_status s = require_admin_or_service_or_reply(req);
    if (s == SP_OK) s = spsvc_fields_or_reply(req, f);
    if (s == SP_OK) s = spsvc_db_or_reply(db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, *db);
    if (s == SP_OK) {
        s = spdb_query(res, *db, sql, nparams, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "membership");
    }
    if (s == SP_OK && PQntuples(*res) != 1) {
        spbus_reply_error(req, SP_ERR_NOT_FOUND, not_found, NULL);
        s = SP_ERR_NOT_FOUND;
    }
    return s;
}

/* SetMembership: makes user_id a member of client_id with client_role (replacing any
 * membership it had) and replies {}. A membership that changed (another client or role)
 * also revokes the user's sessions, so that no token keeps the old claims. 403 unless
 * admin or service; 400 on a bad field; 404 when the user does not exist (or is deleted);
 * 503 when Redis is down during a revocation. */
static sp_status set_membership(spbus_req *req)
{
    const Sp__Auth__V1__SetMembershipRequest *in = (const void *)spbus_req_input(req);
    const char *params[] = {in->user_id, in->client_id, in->client_role};
    PGresult *res = NULL;
    spdb *db = NULL;
    spsvc_fields f;
    size_t n = 0;

    spsvc_fields_init(&f);
    spsvc_fields_add(&f, "userId", spsvc_check_uuid(in->user_id));
    spsvc_fields_add(&f, "clientId", spsvc_check_uuid(in->client_id));
    spsvc_fields_add(&f, "clientRole", check_client_role(in->client_role));
    sp_status s =
        change_or_reply(req, &db, &res, &f, sql_set_membership, 3, params, "user not found");
    if (s == SP_OK) {
        bool changed =
            !PQgetisnull(res, 0, 1) && (strcmp(PQgetvalue(res, 0, 1), in->client_id) != 0 ||
                                        strcmp(PQgetvalue(res, 0, 2), in->client_role) != 0);
        if (changed)
            s = revoke_commit_redis_or_reply(req, db, PQgetvalue(res, 0, 0), "membership_changed",
                                             &n);
        else
            s = spsvc_commit_or_reply(req, db);
    }
    PQclear(res);
    spsvc_rollback(db);
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "membership_set", "userId", in->user_id, "clientId",
                    in->client_id, "clientRole", in->client_role);
        Sp__Auth__V1__SetMembershipReply out = SP__AUTH__V1__SET_MEMBERSHIP_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    return SP_OK; /* every step replied, success or not */
}

/* RemoveMembership: ends the membership of user_id in client_id and revokes the user's
 * sessions (PostgreSQL, then Redis, before the reply); replies {}. 403 unless admin or
 * service; 400 on a bad field; 404 when there is no such membership; 503 when Redis is
 * down (the removal stands; a reconnect rewrites the revocations). */
static sp_status remove_membership(spbus_req *req)
{
    const Sp__Auth__V1__RemoveMembershipRequest *in = (const void *)spbus_req_input(req);
    const char *params[] = {in->user_id, in->client_id};
    PGresult *res = NULL;
    spdb *db = NULL;
    spsvc_fields f;
    size_t n = 0;

    spsvc_fields_init(&f);
    spsvc_fields_add(&f, "userId", spsvc_check_uuid(in->user_id));
    spsvc_fields_add(&f, "clientId", spsvc_check_uuid(in->client_id));
    sp_status s = change_or_reply(req, &db, &res, &f, sql_remove_membership, 2, params,
                                  "membership not found");
    if (s == SP_OK)
        s = revoke_commit_redis_or_reply(req, db, PQgetvalue(res, 0, 0), "membership_removed", &n);
    PQclear(res);
    spsvc_rollback(db);
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "membership_removed", "userId", in->user_id, "clientId",
                    in->client_id);
        spadmin_counter_add("sp_auth_sessions_revoked_total", "reason=\"membership_removed\"",
                            (double)n);
        Sp__Auth__V1__RemoveMembershipReply out = SP__AUTH__V1__REMOVE_MEMBERSHIP_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    return SP_OK; /* every step replied, success or not */
}

static const spbus_route routes[] = {
    {"SetMembership", set_membership, &sp__auth__v1__set_membership_request__descriptor, NULL},
    {"RemoveMembership", remove_membership, &sp__auth__v1__remove_membership_request__descriptor,
     NULL},
};

void memberships_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
