/* principal.c -- the caller of a request and the role and tenant-scope checks. */
#include <stdio.h>
#include <string.h>

#include "spcrypto.h"
#include "spsvc_internal.h"

static unsigned role_of(const char *role)
{
    if (role == NULL) return 0;
    if (strcmp(role, "admin") == 0) return SPSVC_ROLE_ADMIN;
    if (strcmp(role, "client_admin") == 0) return SPSVC_ROLE_CLIENT_ADMIN;
    if (strcmp(role, "app_user") == 0) return SPSVC_ROLE_APP_USER;
    if (strcmp(role, "service") == 0) return SPSVC_ROLE_SERVICE;
    return 0;
}

void spsvc_principal_of(spsvc_principal *p, const spbus_req *req)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);

    memset(p, 0, sizeof(*p));
    if (ctx == NULL) return;
    p->role = role_of(ctx->role);
    bool user = ctx->user_id != NULL && spcrypto_uuid_valid(ctx->user_id);
    /* a user role without a valid user is nobody (services need no user) */
    if (p->role != SPSVC_ROLE_SERVICE && !user) p->role = 0;
    p->user_id = user ? ctx->user_id : NULL;
    if (p->role == SPSVC_ROLE_SERVICE && ctx->client_id != NULL) {
        if (!spcrypto_uuid_valid(ctx->client_id)) {
            p->role = 0; /* a tenant that is no id: refuse everything */
            return;
        }
        p->client_id = ctx->client_id;
    }
    if (p->role == SPSVC_ROLE_CLIENT_ADMIN) {
        if (ctx->client_id == NULL || !spcrypto_uuid_valid(ctx->client_id)) {
            p->role = 0; /* a client_admin without a tenant: refuse everything */
            return;
        }
        p->client_id = ctx->client_id;
        p->manager = ctx->client_role != NULL && strcmp(ctx->client_role, "client_manager") == 0;
    }
}

sp_status spsvc_require_user_or_reply(spbus_req *req, const char **user_id)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);

    *user_id = NULL;
    if (ctx == NULL || ctx->user_id == NULL || !spcrypto_uuid_valid(ctx->user_id)) {
        spbus_reply_error(req, SP_ERR_UNAUTHENTICATED, "authentication required", NULL);
        return SP_ERR_UNAUTHENTICATED;
    }
    *user_id = ctx->user_id;
    return SP_OK;
}

sp_status spsvc_require_role_or_reply(spbus_req *req, unsigned roles, spsvc_principal *out)
{
    spsvc_principal p;

    spsvc_principal_of(&p, req);
    if (out != NULL) *out = p;
    if (p.role == 0) {
        spbus_reply_error(req, SP_ERR_UNAUTHENTICATED, "authentication required", NULL);
        return SP_ERR_UNAUTHENTICATED;
    }
    if ((p.role & roles) == 0) {
        spbus_reply_error(req, SP_ERR_FORBIDDEN, "this role may not do this", NULL);
        return SP_ERR_FORBIDDEN;
    }
    return SP_OK;
}

sp_status spsvc_scope_or_reply(spbus_req *req, const char *client_id, const char *what)
{
    spsvc_principal p;

    spsvc_principal_of(&p, req);
    if (p.role == SPSVC_ROLE_ADMIN || (p.role == SPSVC_ROLE_SERVICE && p.client_id == NULL))
        return SP_OK;
    if ((p.role == SPSVC_ROLE_CLIENT_ADMIN || p.role == SPSVC_ROLE_SERVICE) && client_id != NULL &&
        strcmp(p.client_id, client_id) == 0)
        return SP_OK;
    char msg[96];
    snprintf(msg, sizeof(msg), "%s not found", what);
    spbus_reply_error(req, SP_ERR_NOT_FOUND, msg, NULL);
    return SP_ERR_NOT_FOUND;
}

sp_status spsvc_require_writer_or_reply(spbus_req *req)
{
    spsvc_principal p;

    spsvc_principal_of(&p, req);
    if (p.role == SPSVC_ROLE_ADMIN || p.role == SPSVC_ROLE_SERVICE ||
        (p.role == SPSVC_ROLE_CLIENT_ADMIN && p.manager))
        return SP_OK;
    spbus_reply_error(req, SP_ERR_FORBIDDEN, "only the client's managers may change this", NULL);
    return SP_ERR_FORBIDDEN;
}

sp_status spsvc_row_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *sql,
                             const char *id, int client_col, const char *what)
{
    char msg[96];
    *res = NULL;
    snprintf(msg, sizeof(msg), "%s not found", what);
    if (id == NULL || !spcrypto_uuid_valid(id)) return spsvc_fail(req, SP_ERR_NOT_FOUND, msg);
    const char *params[] = {id};
    sp_status s = spdb_query(res, db, sql, 1, params);
    if (s != SP_OK) {
        *res = NULL;
        return spsvc_db_error_reply(req, s, what);
    }
    /* another tenant's row answers exactly like a missing one */
    s = PQntuples(*res) == 1 && !PQgetisnull(*res, 0, client_col)
            ? spsvc_scope_or_reply(req, PQgetvalue(*res, 0, client_col), what)
            : spsvc_fail(req, SP_ERR_NOT_FOUND, msg);
    if (s != SP_OK) {
        PQclear(*res);
        *res = NULL;
    }
    return s;
}
