/* members.c -- the members of a client: ListMembers, CreateMember (a manager or an
 * operator, in auth and here or in neither) and DeleteMember (the user's sessions revoked
 * at once; never the last manager). Ends with members_register(). */
#include <string.h>

#include "tenancy.h"

#define MEMBER_COLS                                                                                \
    "m.user_id::text, m.name, m.email, m.client_role,"                                             \
    " (extract(epoch FROM m.created_at) * 1000000)::bigint, m.id, m.auth_state"
enum { M_USER, M_NAME, M_EMAIL, M_ROLE, M_CREATED, M_ID, M_AUTH_STATE };

static const char *sql_list_members =
    "SELECT " MEMBER_COLS " FROM tenancy.client_members m"
    " WHERE m.client_id = $1::bigint AND m.removed_at IS NULL"
    "   AND ($2::bigint IS NULL OR (m.created_at, m.id) >"
    "        ('epoch'::timestamptz + $2::bigint * interval '1 microsecond', $3::bigint))"
    " ORDER BY m.created_at, m.id LIMIT $4::int";

static const char *sql_member_by_key =
    "SELECT " MEMBER_COLS " FROM tenancy.client_members m WHERE m.create_key = $1";

static const char *sql_insert_member =
    "INSERT INTO tenancy.client_members AS m"
    "   (client_id, user_id, name, email, client_role, create_key)"
    " VALUES ($1::bigint, $2::uuid, $3, $4, $5, $6) RETURNING " MEMBER_COLS;

static const char *sql_member_synced =
    "UPDATE tenancy.client_members SET auth_state = 'synced', updated_at = now()"
    " WHERE id = $1::bigint AND auth_state = $2";

/* The live member, or one removed here whose removal auth has not acknowledged yet. */
static const char *sql_member_of_client =
    "SELECT " MEMBER_COLS ", m.removed_at IS NOT NULL FROM tenancy.client_members m"
    " WHERE m.client_id = $1::bigint AND m.user_id = $2::uuid"
    "   AND (m.removed_at IS NULL OR m.auth_state = 'remove')"
    " ORDER BY m.removed_at IS NULL DESC LIMIT 1";

static const char *sql_count_managers =
    "SELECT count(*) FROM tenancy.client_members"
    " WHERE client_id = $1::bigint AND removed_at IS NULL AND client_role = 'client_manager'";

static const char *sql_remove_member =
    "UPDATE tenancy.client_members SET removed_at = now(), auth_state = 'remove',"
    "   updated_at = now() WHERE id = $1::bigint";

/* Member and MemberReply have the same fields. */
#define FILL_MEMBER(m, res, row)                                                                   \
    do {                                                                                           \
        (m)->user_id = PQgetvalue(res, row, M_USER);                                               \
        (m)->name = PQgetvalue(res, row, M_NAME);                                                  \
        (m)->email = PQgetvalue(res, row, M_EMAIL);                                                \
        (m)->client_role = PQgetvalue(res, row, M_ROLE);                                           \
        (m)->has_created_at = 1;                                                                   \
        (m)->created_at = spsvc_pg_int64(PQgetvalue(res, row, M_CREATED));                         \
    } while (0)

static void member_from_row(Sp__Tenancy__V1__Member *m, PGresult *res, int row)
{
    sp__tenancy__v1__member__init(m);
    FILL_MEMBER(m, res, row);
}

/* Replies the member of row 0. */
static sp_status reply_member(spbus_req *req, PGresult *res)
{
    Sp__Tenancy__V1__MemberReply m = SP__TENANCY__V1__MEMBER_REPLY__INIT;
    FILL_MEMBER(&m, res, 0);
    return spbus_reply(req, &m.base);
}

static const char *check_client_role(const char *s)
{
    if (s == NULL) return "required";
    if (strcmp(s, "client_manager") == 0 || strcmp(s, "client_operator") == 0) return NULL;
    return "must be client_manager or client_operator";
}

/* ListMembers: the live members of a client the caller may see, oldest first. */
static sp_status list_members(spbus_req *req)
{
    const Sp__Tenancy__V1__ListMembersRequest *in = (const void *)spbus_req_input(req);
    PGresult *client = NULL, *res = NULL;
    spsvc_page pg;
    spdb *db = NULL;

    sp_status s =
        spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = ten_client_or_reply(&client, req, db, in->id, false);
    if (s == SP_OK) s = spsvc_page_or_reply(&pg, req, in->has_limit, in->limit, in->cursor);
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(client, 0, TEN_C_INTERNAL), spsvc_page_after(&pg),
                                pg.id_s, pg.fetch_s};
        s = spdb_query(&res, db, sql_list_members, 4, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "list_members");
    }
    if (s == SP_OK) {
        Sp__Tenancy__V1__ListMembersReply out = SP__TENANCY__V1__LIST_MEMBERS_REPLY__INIT;
        int n = spsvc_page_rows(&out.next_cursor, req, &pg, res, M_CREATED, M_ID);
        sp_arena *a = spbus_req_arena(req);
        Sp__Tenancy__V1__Member *items =
            sp_arena_alloc(a, sizeof(*items) * (size_t)(n > 0 ? n : 1));
        Sp__Tenancy__V1__Member **ptrs =
            sp_arena_alloc(a, sizeof(Sp__Tenancy__V1__Member *) * (size_t)(n > 0 ? n : 1));
        if (items == NULL || ptrs == NULL) {
            spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
        } else {
            for (int i = 0; i < n; i++) {
                member_from_row(&items[i], res, i);
                ptrs[i] = &items[i];
            }
            out.n_items = (size_t)n;
            out.items = ptrs;
            spbus_reply(req, &out.base);
        }
    }
    PQclear(client);
    PQclear(res);
    return SP_OK;
}

/* Inserts the member auth made, audited, and commits; *res is its row. */
static sp_status insert_member_or_reply(PGresult **res, spbus_req *req, spdb *db, PGresult *client,
                                        const char *key, const Sp__Auth__V1__CreateMemberReply *u,
                                        const char *client_role)
{
    const char *client_id = PQgetvalue(client, 0, TEN_C_ID);
    const char *params[] = {
        PQgetvalue(client, 0, TEN_C_INTERNAL), u->user_id, u->name, u->email, client_role, key};
    char details[64];
    snprintf(details, sizeof(details), "{\"clientRole\":\"%s\"}", client_role);
    sp_status s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        s = spdb_query(res, db, sql_insert_member, 6, params);
        if (s == SP_ERR_CONFLICT) {
            spdb_rollback(db);
            return s; /* the same creation at once: the caller answers the first */
        }
        if (s != SP_OK) spsvc_db_error_reply(req, s, "insert_member");
    }
    if (s == SP_OK)
        s = spsvc_audit_or_reply(req, db, client_id, "member.created", "user", u->user_id, details);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    return s;
}

/* CreateMember: {name, email, password, clientRole} -> the member. An admin for any
 * client, a manager for its own (managers create managers or operators); 404 outside the
 * caller's tenant, 403 for an operator, 400 naming each bad field, 409 on a registered
 * email or a suspended client. Both or neither, as CreateClient (clients.c). */
static sp_status create_member(spbus_req *req)
{
    const Sp__Tenancy__V1__CreateMemberRequest *in = (const void *)spbus_req_input(req);
    Sp__Auth__V1__CreateMemberReply *u = NULL;
    Sp__V1__Error *err = NULL;
    PGresult *client = NULL, *res = NULL;
    spdb *db = NULL;
    char *key = NULL;
    spsvc_fields f;

    sp_status s =
        spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = ten_client_or_reply(&client, req, db, in->id, false);
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "name", spsvc_check_text(in->name, TEN_NAME_MAX));
        spsvc_fields_add(&f, "email", in->email == NULL ? "required" : NULL);
        spsvc_fields_add(&f, "password", in->password == NULL ? "required" : NULL);
        spsvc_fields_add(&f, "clientRole", check_client_role(in->client_role));
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK && strcmp(PQgetvalue(client, 0, TEN_C_STATUS), "SUSPENDED") == 0)
        s = spsvc_fail(req, SP_ERR_CONFLICT, "client is SUSPENDED");
    if (s == SP_OK) {
        key = ten_create_key(req, sp_arena_printf(spbus_req_arena(req), "member|%s", in->id));
        if (key == NULL) s = spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    }
    if (s == SP_OK) { /* a retry of a creation that went through: its member */
        const char *params[] = {key};
        s = spdb_query(&res, db, sql_member_by_key, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "member_by_key");
        if (s == SP_OK && PQntuples(res) == 1) {
            reply_member(req, res);
            s = SP_ERR_CONFLICT; /* answered */
        }
        PQclear(res);
        res = NULL;
    }
    if (s == SP_OK) {
        s = ten_auth_create_member(&u, &err, req, key, in->name, in->email, in->password, in->id,
                                   in->client_role);
        if (s != SP_OK) spsvc_forward_error_reply(req, s, err);
    }
    if (s == SP_OK) {
        s = insert_member_or_reply(&res, req, db, client, key, u, in->client_role);
        if (s == SP_ERR_CONFLICT) {
            const char *params[] = {key};
            s = spdb_query(&res, db, sql_member_by_key, 1, params);
            if (s == SP_OK && PQntuples(res) != 1) s = SP_ERR_INTERNAL;
            if (s != SP_OK) spsvc_db_error_reply(req, s, "member_by_key");
        } else if (s != SP_OK) {
            ten_auth_discard(ten_of(req)->bus, req, key, spbus_req_arena(req));
        }
    }
    if (s == SP_OK && strcmp(PQgetvalue(res, 0, M_AUTH_STATE), "activate") == 0 &&
        ten_auth_activate(ten_of(req)->bus, req, key, spbus_req_arena(req)) == SP_OK) {
        const char *params[] = {PQgetvalue(res, 0, M_ID), "activate"};
        spdb_exec(db, sql_member_synced, 2, params); /* else the sync task does it */
    }
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "member_created", "clientId", in->id, "userId", u->user_id);
        reply_member(req, res);
    }
    PQclear(client);
    PQclear(res);
    return SP_OK;
}

/* DeleteMember: the user leaves the client; its sessions are revoked at once (auth's
 * RemoveMembership, before the reply). An admin, or the client's manager; 404 outside the
 * caller's tenant or for a user who is not a member, 403 for an operator, 409 for the last
 * manager. When auth does not answer the removal stands here, the sync task keeps trying,
 * and the reply is 503: a retry calls auth again and answers 204. */
static sp_status delete_member(spbus_req *req)
{
    const Sp__Tenancy__V1__DeleteMemberRequest *in = (const void *)spbus_req_input(req);
    PGresult *client = NULL, *m = NULL, *count = NULL;
    spdb *db = NULL;

    sp_status s =
        spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    /* the client's row lock orders the member changes of one client */
    if (s == SP_OK) s = ten_client_or_reply(&client, req, db, in->id, true);
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(client, 0, TEN_C_INTERNAL), in->user_id};
        s = spdb_query(&m, db, sql_member_of_client, 2, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "member");
        if (s == SP_OK && PQntuples(m) != 1)
            s = spsvc_fail(req, SP_ERR_NOT_FOUND, "member not found");
    }
    bool removed_before = s == SP_OK && strcmp(PQgetvalue(m, 0, 7), "t") == 0;
    if (s == SP_OK && !removed_before && strcmp(PQgetvalue(m, 0, M_ROLE), "client_manager") == 0) {
        const char *params[] = {PQgetvalue(client, 0, TEN_C_INTERNAL)};
        s = spdb_query(&count, db, sql_count_managers, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "count_managers");
        if (s == SP_OK && spsvc_pg_int64(PQgetvalue(count, 0, 0)) <= 1)
            s = spsvc_fail(req, SP_ERR_CONFLICT, "cannot remove the client's last manager");
    }
    if (s == SP_OK && !removed_before) {
        const char *params[] = {PQgetvalue(m, 0, M_ID)};
        s = spdb_exec(db, sql_remove_member, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "remove_member");
        if (s == SP_OK)
            s = spsvc_audit_or_reply(req, db, in->id, "member.removed", "user", in->user_id, NULL);
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        s = ten_auth_remove(ten_of(req)->bus, req, in->user_id, in->id, spbus_req_arena(req));
        if (s == SP_OK) {
            const char *params[] = {PQgetvalue(m, 0, M_ID), "remove"};
            spdb_exec(db, sql_member_synced, 2, params); /* else the sync task does it */
            sp_log_info(spbus_req_id(req), "member_removed", "clientId", in->id, "userId",
                        in->user_id);
            Sp__Tenancy__V1__DeleteMemberReply out = SP__TENANCY__V1__DELETE_MEMBER_REPLY__INIT;
            spbus_reply(req, &out.base);
        } else {
            spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE,
                                    "the member is removed but auth did not acknowledge it: retry",
                                    1);
        }
    }
    PQclear(client);
    PQclear(m);
    PQclear(count);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"ListMembers", list_members, &sp__tenancy__v1__list_members_request__descriptor, NULL},
    {"CreateMember", create_member, &sp__tenancy__v1__create_member_request__descriptor, NULL},
    {"DeleteMember", delete_member, &sp__tenancy__v1__delete_member_request__descriptor, NULL},
};

void members_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
