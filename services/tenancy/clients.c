/* clients.c -- clients (tenants) of the tenancy service: CreateClient (optionally with its
 * primary client_manager, both or neither), ListClients, GetClient, UpdateClient, and the
 * state machine PENDING -> ACTIVE -> SUSPENDED -> ACTIVE. Ends with clients_register(). */
#include <string.h>

#include "spcrypto.h"
#include "tenancy.h"

/* The namespace of client ids derived from a creation key: a retry of the same creation
 * gets the same id, which auth's pending member already names. */
#define CLIENT_ID_NS "0e7d3c9a-4f21-4b6e-8c5d-2a9f1e3b7c40"

static const char *sql_client_by_id = "SELECT " TEN_CLIENT_COLS " FROM tenancy.clients c"
                                      " WHERE c.public_id = $1::uuid AND c.deleted_at IS NULL";

static const char *sql_client_by_id_lock =
    "SELECT " TEN_CLIENT_COLS " FROM tenancy.clients c"
    " WHERE c.public_id = $1::uuid AND c.deleted_at IS NULL FOR UPDATE";

static const char *sql_client_by_key =
    "SELECT " TEN_CLIENT_COLS " FROM tenancy.clients c WHERE c.create_key = $1";

static const char *sql_insert_client =
    "INSERT INTO tenancy.clients AS c (public_id, name, document, create_key)"
    " VALUES ($1::uuid, $2, $3, $4) RETURNING " TEN_CLIENT_COLS;

static const char *sql_insert_member =
    "INSERT INTO tenancy.client_members (client_id, user_id, name, email, client_role, create_key)"
    " VALUES ($1::bigint, $2::uuid, $3, $4, $5, $6)";

static const char *sql_member_synced =
    "UPDATE tenancy.client_members SET auth_state = 'synced', updated_at = now()"
    " WHERE create_key = $1 AND auth_state = 'activate'";

/* Keyset pages, oldest first; $1 status filter, $2 the only client (a client_admin's),
 * $3/$4 the cursor (created_at us, id), $5 the page size + 1. */
static const char *sql_list_clients =
    "SELECT " TEN_CLIENT_COLS " FROM tenancy.clients c"
    " WHERE c.deleted_at IS NULL AND ($1::text IS NULL OR c.status = $1)"
    "   AND ($2::uuid IS NULL OR c.public_id = $2::uuid)"
    "   AND ($3::bigint IS NULL OR (c.created_at, c.id) >"
    "        ('epoch'::timestamptz + $3::bigint * interval '1 microsecond', $4::bigint))"
    " ORDER BY c.created_at, c.id LIMIT $5::int";

static const char *sql_update_client =
    "UPDATE tenancy.clients c SET name = COALESCE($2, c.name),"
    "   document = CASE WHEN $4::bool THEN NULL ELSE COALESCE($3, c.document) END,"
    "   updated_at = now()"
    " WHERE c.id = $1::bigint RETURNING " TEN_CLIENT_COLS;

/* $3: the status auth will have acknowledged when this change needs no call to auth */
static const char *sql_set_status = "UPDATE tenancy.clients c SET status = $2, updated_at = now(),"
                                    "   auth_status = COALESCE($3, c.auth_status)"
                                    " WHERE c.id = $1::bigint RETURNING " TEN_CLIENT_COLS;

static const char *sql_auth_status =
    "UPDATE tenancy.clients SET auth_status = $2 WHERE public_id = $1::uuid AND status = $2";

/* ---- shared with members.c ------------------------------------------------------------- */

/* Client and ClientReply have the same fields. */
#define FILL_CLIENT(c, res, row)                                                                   \
    do {                                                                                           \
        (c)->id = PQgetvalue(res, row, TEN_C_ID);                                                  \
        (c)->name = PQgetvalue(res, row, TEN_C_NAME);                                              \
        (c)->document =                                                                            \
            PQgetisnull(res, row, TEN_C_DOCUMENT) ? NULL : PQgetvalue(res, row, TEN_C_DOCUMENT);   \
        (c)->status = PQgetvalue(res, row, TEN_C_STATUS);                                          \
        (c)->has_created_at = (c)->has_updated_at = 1;                                             \
        (c)->created_at = spsvc_pg_int64(PQgetvalue(res, row, TEN_C_CREATED));                     \
        (c)->updated_at = spsvc_pg_int64(PQgetvalue(res, row, TEN_C_UPDATED));                     \
    } while (0)

void ten_client_from_row(Sp__Tenancy__V1__Client *c, PGresult *res, int row)
{
    sp__tenancy__v1__client__init(c);
    FILL_CLIENT(c, res, row);
}

sp_status ten_client_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id, bool lock)
{
    return spsvc_row_or_reply(res, req, db, lock ? sql_client_by_id_lock : sql_client_by_id, id,
                              TEN_C_ID, "client");
}

static void fill_client(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    (void)req;
    ten_client_from_row((Sp__Tenancy__V1__Client *)m, res, row);
}

/* Replies the client of row 0 of 'res'. */
static sp_status reply_client(spbus_req *req, PGresult *res)
{
    Sp__Tenancy__V1__ClientReply c = SP__TENANCY__V1__CLIENT_REPLY__INIT;
    FILL_CLIENT(&c, res, 0);
    return spbus_reply(req, &c.base);
}

static const char *check_status(const char *s)
{
    if (s == NULL) return NULL;
    if (strcmp(s, "PENDING") == 0 || strcmp(s, "ACTIVE") == 0 || strcmp(s, "SUSPENDED") == 0)
        return NULL;
    return "must be PENDING, ACTIVE or SUSPENDED";
}

/* ---- CreateClient -----------------------------------------------------------------------------
 */

/* Replies an error of auth's CreateMember with the fields under "admin." (the body's
 * path), or the error as it came. */
static sp_status forward_admin_error(spbus_req *req, sp_status s, Sp__V1__Error *err)
{
    sp_arena *a = spbus_req_arena(req);
    for (size_t i = 0; err != NULL && i < err->n_fields; i++)
        if (err->fields[i] != NULL && err->fields[i]->path != NULL)
            err->fields[i]->path = sp_arena_printf(a, "admin.%s", err->fields[i]->path);
    return spsvc_forward_error_reply(req, s, err);
}

/* Inserts the client (and its first manager's row) with their audit events, commits.
 * *res: the client row. A creation key taken meanwhile (the same request twice at once)
 * replies nothing and returns SP_ERR_CONFLICT: the caller answers the first one's client. */
static sp_status insert_client_or_reply(PGresult **res, spbus_req *req, spdb *db,
                                        const Sp__Tenancy__V1__CreateClientRequest *in,
                                        const char *client_id, const char *key,
                                        const Sp__Auth__V1__CreateMemberReply *admin)
{
    const char *params[] = {client_id, in->name, in->document, key};
    *res = NULL;
    sp_status s = spsvc_begin_or_reply(req, db);
    if (s != SP_OK) return s;
    s = spdb_query(res, db, sql_insert_client, 4, params);
    if (s == SP_ERR_CONFLICT) {
        spdb_rollback(db);
        return s;
    }
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "insert_client");
    if (admin != NULL) {
        const char *mp[] = {PQgetvalue(*res, 0, TEN_C_INTERNAL),
                            admin->user_id,
                            admin->name,
                            admin->email,
                            "client_manager",
                            key};
        s = spdb_exec(db, sql_insert_member, 6, mp);
        if (s != SP_OK) return spsvc_db_error_reply(req, s, "insert_member");
    }
    s = spsvc_audit_or_reply(req, db, client_id, "client.created", "client", client_id, NULL);
    if (s == SP_OK && admin != NULL)
        s = spsvc_audit_or_reply(req, db, client_id, "member.created", "user", admin->user_id,
                                 "{\"clientRole\":\"client_manager\"}");
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    return s;
}

/* CreateClient: {name, document?, admin?} -> the client, PENDING. With 'admin', its
 * primary client_manager too, in both services or in neither: auth creates the member
 * pending (it cannot log in), tenancy commits the client with it, then auth activates it
 * (the sync task finishes an activation that failed; auth discards a pending member whose
 * client never came). The same caller's retry with the same request id answers the same
 * client. 403 unless admin; 400 naming each bad field (admin's under "admin."); 409 when
 * the admin's email is registered; 503 when auth does not answer (nothing created). */
static sp_status create_client(spbus_req *req)
{
    const Sp__Tenancy__V1__CreateClientRequest *in = (const void *)spbus_req_input(req);
    Sp__Auth__V1__CreateMemberReply *admin = NULL;
    Sp__V1__Error *err = NULL;
    char client_id[SPCRYPTO_UUID_LEN];
    PGresult *res = NULL;
    spdb *db = NULL;
    spsvc_fields f;

    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_SERVICE, NULL);
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "name", spsvc_check_text(in->name, TEN_NAME_MAX));
        spsvc_fields_add(&f, "document", spsvc_check_opt_text(in->document, TEN_DOCUMENT_MAX));
        if (in->admin != NULL) {
            spsvc_fields_add(&f, "admin.name", spsvc_check_text(in->admin->name, TEN_NAME_MAX));
            spsvc_fields_add(&f, "admin.email", in->admin->email == NULL ? "required" : NULL);
            spsvc_fields_add(&f, "admin.password", in->admin->password == NULL ? "required" : NULL);
        }
        s = spsvc_fields_or_reply(req, &f);
    }
    char *key = s == SP_OK ? ten_create_key(req, "client") : NULL;
    if (s == SP_OK && key == NULL) s = spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) {
        /* a retry of a creation that went through: its client */
        const char *params[] = {key};
        s = spdb_query(&res, db, sql_client_by_key, 1, params);
        if (s != SP_OK) return spsvc_db_error_reply(req, s, "client_by_key");
        if (PQntuples(res) == 1) {
            reply_client(req, res);
            PQclear(res);
            return SP_OK;
        }
        PQclear(res);
        res = NULL;
    }
    if (s == SP_OK && key != NULL) s = spcrypto_uuid_v5(client_id, CLIENT_ID_NS, key, strlen(key));
    if (s == SP_OK && in->admin != NULL) {
        s = ten_auth_create_member(&admin, &err, req, key, in->admin->name, in->admin->email,
                                   in->admin->password, client_id, "client_manager");
        if (s != SP_OK) return forward_admin_error(req, s, err);
    }
    if (s == SP_OK) {
        s = insert_client_or_reply(&res, req, db, in, client_id, key, admin);
        spsvc_rollback(db);
        if (s == SP_ERR_CONFLICT) { /* the same creation, committed meanwhile */
            const char *params[] = {key};
            s = spdb_query(&res, db, sql_client_by_key, 1, params);
            if (s != SP_OK || PQntuples(res) != 1) {
                PQclear(res);
                return spsvc_db_error_reply(req, s == SP_OK ? SP_ERR_INTERNAL : s, "client_by_key");
            }
        } else if (s != SP_OK && admin != NULL) {
            /* nothing committed here: the pending member must not stay (best effort; auth
             * also discards pending members that were never activated) */
            ten_auth_discard(ten_of(req)->bus, req, key, spbus_req_arena(req));
        }
    }
    if (s == SP_OK && admin != NULL &&
        ten_auth_activate(ten_of(req)->bus, req, key, spbus_req_arena(req)) == SP_OK) {
        const char *params[] = {key};
        spdb_exec(db, sql_member_synced, 1, params); /* else the sync task does it */
    }
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "client_created", "clientId", PQgetvalue(res, 0, TEN_C_ID));
        reply_client(req, res);
    }
    PQclear(res);
    return SP_OK; /* every step replied, success or not */
}

/* ---- reads -------------------------------------------------------------------------------------
 */

/* ListClients: an admin sees every client (?status=), a client_admin only its own. */
static sp_status list_clients(spbus_req *req)
{
    const Sp__Tenancy__V1__ListClientsRequest *in = (const void *)spbus_req_input(req);
    spsvc_principal p;
    spsvc_page pg;
    PGresult *res = NULL;
    spdb *db = NULL;

    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN, &p);
    if (s == SP_OK) s = spsvc_page_or_reply(&pg, req, in->has_limit, in->limit, in->cursor);
    if (s == SP_OK) {
        spsvc_fields f;
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "status", check_status(in->status));
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;

    const char *params[] = {in->status, p.role == SPSVC_ROLE_CLIENT_ADMIN ? p.client_id : NULL,
                            spsvc_page_after(&pg), pg.id_s, pg.fetch_s};
    s = spdb_query(&res, db, sql_list_clients, 5, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "list_clients");

    spsvc_reply_page(req, &pg, res, TEN_C_CREATED, TEN_C_INTERNAL,
                     &sp__tenancy__v1__list_clients_reply__descriptor, fill_client);
    PQclear(res);
    return SP_OK;
}

/* GetClient: an admin's any client, a client_admin's own; 404 otherwise. Services too
 * (catalog: does the client of a new establishment exist). */
static sp_status get_client(spbus_req *req)
{
    const Sp__Tenancy__V1__GetClientRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;

    sp_status s = spsvc_require_role_or_reply(
        req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN | SPSVC_ROLE_SERVICE, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = ten_client_or_reply(&res, req, db, in->id, false);
    if (s == SP_OK) reply_client(req, res);
    PQclear(res);
    return SP_OK;
}

/* ---- writes ------------------------------------------------------------------------------------
 */

/* UpdateClient: {name, document} of an admin or the client's manager; document may be
 * cleared (null). 404 outside the caller's tenant, 403 for an operator, 400 on a bad
 * field. */
static sp_status update_client(spbus_req *req)
{
    const Sp__Tenancy__V1__UpdateClientRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL, *up = NULL;
    spdb *db = NULL;
    bool clear_doc = false;
    spsvc_fields f;

    sp_status s =
        spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = ten_client_or_reply(&res, req, db, in->id, true);
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        if (in->name != NULL)
            spsvc_fields_add(&f, "name", spsvc_check_text(in->name, TEN_NAME_MAX));
        spsvc_fields_add(&f, "document", spsvc_check_opt_text(in->document, TEN_DOCUMENT_MAX));
        for (size_t i = 0; i < in->n_cleared; i++) {
            if (strcmp(in->cleared[i], "document") == 0)
                clear_doc = true;
            else
                spsvc_fields_add(&f, in->cleared[i], "must not be null");
        }
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(res, 0, TEN_C_INTERNAL), in->name, in->document,
                                clear_doc ? "true" : "false"};
        s = spdb_query(&up, db, sql_update_client, 4, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "update_client");
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, in->id, "client", in->id, "updated", NULL);
        reply_client(req, up);
    }
    PQclear(res);
    PQclear(up);
    return SP_OK;
}

/* A state change: 'from' -> 'to' by an admin, audited as 'action'. Suspending and
 * reactivating also go to auth before the reply (SetClientSuspended: the members'
 * sessions revoked at once on every gateway, their logins refused); when auth does not
 * answer the change stands, the sync task keeps trying, and the reply is 503 so that the
 * caller retries: a retry of a change made but not yet acknowledged by auth calls auth
 * again instead of answering 409. 409 conflict from any other state. */
static sp_status change_status(spbus_req *req, const char *id, const char *from, const char *to,
                               const char *action, bool tell_auth)
{
    PGresult *res = NULL, *up = NULL;
    spdb *db = NULL;
    bool retry = false;

    /* a service: spctl create-client --approve */
    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_SERVICE, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = ten_client_or_reply(&res, req, db, id, true);
    if (s == SP_OK) {
        const char *cur = PQgetvalue(res, 0, TEN_C_STATUS);
        retry = tell_auth && strcmp(cur, to) == 0 &&
                strcmp(PQgetvalue(res, 0, TEN_C_AUTH_STATUS), to) != 0;
        if (!retry && strcmp(cur, from) != 0) {
            char msg[96];
            snprintf(msg, sizeof(msg), "client is %s, not %s", cur, from);
            s = spsvc_fail(req, SP_ERR_CONFLICT, msg);
        }
    }
    if (s == SP_OK && !retry) {
        const char *params[] = {PQgetvalue(res, 0, TEN_C_INTERNAL), to, tell_auth ? NULL : to};
        s = spdb_query(&up, db, sql_set_status, 3, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "set_status");
        if (s == SP_OK) s = spsvc_audit_or_reply(req, db, id, action, "client", id, NULL);
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK && tell_auth) {
        s = ten_auth_suspend(ten_of(req)->bus, req, id, strcmp(to, "SUSPENDED") == 0,
                             spbus_req_arena(req));
        if (s == SP_OK) {
            const char *params[] = {id, to};
            spdb_exec(db, sql_auth_status, 2, params); /* else the sync task does it */
        } else {
            spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE,
                                    "the change is made but auth did not acknowledge it: retry", 1);
        }
    }
    if (s == SP_OK) {
        spsvc_changed(req, id, "client", id, "status", NULL);
        sp_log_info(spbus_req_id(req), "client_status", "clientId", id, "status", to);
        reply_client(req, up != NULL ? up : res);
    }
    PQclear(res);
    PQclear(up);
    return SP_OK;
}

static sp_status approve_client(spbus_req *req)
{
    const Sp__Tenancy__V1__ApproveClientRequest *in = (const void *)spbus_req_input(req);
    return change_status(req, in->id, "PENDING", "ACTIVE", "client.approved", false);
}

static sp_status suspend_client(spbus_req *req)
{
    const Sp__Tenancy__V1__SuspendClientRequest *in = (const void *)spbus_req_input(req);
    return change_status(req, in->id, "ACTIVE", "SUSPENDED", "client.suspended", true);
}

static sp_status reactivate_client(spbus_req *req)
{
    const Sp__Tenancy__V1__ReactivateClientRequest *in = (const void *)spbus_req_input(req);
    return change_status(req, in->id, "SUSPENDED", "ACTIVE", "client.reactivated", true);
}

static const spbus_route routes[] = {
    {"CreateClient", create_client, &sp__tenancy__v1__create_client_request__descriptor, NULL},
    {"ListClients", list_clients, &sp__tenancy__v1__list_clients_request__descriptor, NULL},
    {"GetClient", get_client, &sp__tenancy__v1__get_client_request__descriptor, NULL},
    {"UpdateClient", update_client, &sp__tenancy__v1__update_client_request__descriptor, NULL},
    {"ApproveClient", approve_client, &sp__tenancy__v1__approve_client_request__descriptor, NULL},
    {"SuspendClient", suspend_client, &sp__tenancy__v1__suspend_client_request__descriptor, NULL},
    {"ReactivateClient", reactivate_client, &sp__tenancy__v1__reactivate_client_request__descriptor,
     NULL},
};

void clients_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
