/* users.c -- the accounts of the auth service: Register (self sign-up of app users) and
 * GetMe (the caller's profile). Ends with users_register(), its routes. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "spadmin.h"

/* Person, user and its app_user role in one statement, hence one transaction. The email is
 * stored lower-cased (by PostgreSQL's lower(), the same function as the unique index
 * people_email_live), so that what login and /me show is what the index compares. */
static const char *sql_register =
    "WITH p AS (INSERT INTO auth.people (public_id, name, email)"
    "           VALUES ($1::uuid, $2, lower($3)) RETURNING id, name, email),"
    " u AS (INSERT INTO auth.users (public_id, person_id, password_hash)"
    "       SELECT $4::uuid, p.id, $5 FROM p RETURNING id, public_id, created_at),"
    " r AS (INSERT INTO auth.user_roles (user_id, role_id)"
    "       SELECT u.id, " AUTH_ROLE_APP_USER_ID " FROM u)"
    " SELECT u.public_id, p.name, p.email,"
    "        (extract(epoch FROM u.created_at) * 1000000)::bigint"
    " FROM p, u";

/* Shaped for the generic plan PostgreSQL caches for a prepared statement, which cannot
 * see how many ids come: one index probe per id and table (unnest, then joins on keys).
 * "public_id = ANY($1)" with EXISTS for the role was planned as hash joins over
 * sequential scans of people and user_roles: 1.1 ms instead of 0.1 ms with 2,000 users
 * (EXPLAIN ANALYZE, plan_cache_mode = force_generic_plan), growing with every user. */
static const char *sql_get_me =
    "SELECT u.public_id, p.name, p.email,"
    "       (extract(epoch FROM u.created_at) * 1000000)::bigint,"
    "       ur.user_id IS NOT NULL,"
    "       m.client_id, m.client_role"
    " FROM unnest($1::uuid[]) AS k(public_id)"
    " JOIN auth.users u ON u.public_id = k.public_id"
    " JOIN auth.people p ON p.id = u.person_id"
    " LEFT JOIN auth.user_roles ur ON ur.user_id = u.id AND ur.role_id = " AUTH_ROLE_ADMIN_ID
    " LEFT JOIN auth.memberships m ON m.user_id = u.id"
    " WHERE u.deleted_at IS NULL AND p.deleted_at IS NULL AND u.active";

/* Every bad field of a RegisterRequest at once; replies 400 validation_failed. */
static sp_status validate_register_or_reply(spbus_req *req, const Sp__Auth__V1__RegisterRequest *in)
{
    spsvc_fields f;

    spsvc_fields_init(&f);
    spsvc_fields_add(&f, "name", auth_check_name(in->name));
    spsvc_fields_add(&f, "email", auth_check_email(in->email));
    spsvc_fields_add(&f, "password", auth_check_password(in->password));
    return spsvc_fields_or_reply(req, &f);
}

/* argon2id of the password into 'hash' (SPCRYPTO_HASH_LEN); replies internal on failure. */
static sp_status hash_password_or_reply(spbus_req *req, char *hash, const char *password)
{
    sp_status s = spcrypto_password_hash(hash, SPCRYPTO_HASH_LEN, password, strlen(password));

    if (s != SP_OK) {
        sp_log_error(spbus_req_id(req), "password_hash_failed", "code", sp_error_code(s));
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
    }
    return s;
}

/* Inserts the account and replies RegisterReply; a live email taken (compared lower-cased)
 * replies 409 conflict with fields.email. */
static sp_status insert_user_and_reply(spbus_req *req, spdb *db,
                                       const Sp__Auth__V1__RegisterRequest *in, const char *hash)
{
    char person_id[SPCRYPTO_UUID_LEN], user_id[SPCRYPTO_UUID_LEN];
    PGresult *res = NULL;

    spcrypto_uuid_v4(person_id);
    spcrypto_uuid_v4(user_id);
    const char *params[] = {person_id, in->name, in->email, user_id, hash};
    sp_status s = spdb_query(&res, db, sql_register, 5, params);
    if (s == SP_ERR_CONFLICT) {
        sp_log_info(spbus_req_id(req), "register_email_taken");
        spbus_reply_error(req, SP_ERR_CONFLICT, "email already registered", "email",
                          "already registered", NULL);
        return SP_ERR_CONFLICT;
    }
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "register");
    if (PQntuples(res) != 1) {
        PQclear(res);
        return spsvc_db_error_reply(req, SP_ERR_INTERNAL, "register returned no row");
    }

    Sp__Auth__V1__RegisterReply out = SP__AUTH__V1__REGISTER_REPLY__INIT;
    out.id = PQgetvalue(res, 0, 0);
    out.name = PQgetvalue(res, 0, 1);
    out.email = PQgetvalue(res, 0, 2);
    out.role = "app_user";
    out.has_created_at = 1;
    out.created_at = spsvc_pg_int64(PQgetvalue(res, 0, 3));
    sp_log_info(spbus_req_id(req), "user_registered", "userId", out.id);
    spadmin_counter_add("sp_auth_registrations_total", NULL, 1);
    s = spbus_reply(req, &out.base);
    PQclear(res);
    return s;
}

/* Register: a new app_user account. 400 validation_failed naming every bad field; 409
 * conflict when the email (lower-cased) belongs to a live account. */
static sp_status register_user(spbus_req *req)
{
    const Sp__Auth__V1__RegisterRequest *in = (const void *)spbus_req_input(req);
    char hash[SPCRYPTO_HASH_LEN];
    spdb *db = NULL;

    sp_status s = validate_register_or_reply(req, in);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = hash_password_or_reply(req, hash, in->password);
    if (s == SP_OK) s = insert_user_and_reply(req, db, in, hash);
    explicit_bzero(hash, sizeof(hash));
    (void)s; /* every step replied, success or not */
    return SP_OK;
}

/* GetMe is the hot path of every token check behind /v1/me. The requests queued together
 * are answered by one query (= ANY of their user ids; measured: one PostgreSQL round trip
 * per request was half the CPU of the whole path, bench/results), through a statement
 * spdb prepares once per server session on each worker's connection, so PostgreSQL parses
 * and plans its join once. A read: spdb may re-run it after a lost connection. */
static sp_status query_get_me(PGresult **out, spdb *db, const char *ids)
{
    const char *params[] = {ids};
    return spdb_prepared(out, db, "auth_get_me", sql_get_me, 1, params, true);
}

void auth_reply_me(spbus_req *req, const char *user_id, PGresult *res, int row)
{
    if (row < 0) {
        sp_log_info(spbus_req_id(req), "me_user_gone", "userId", user_id);
        spbus_reply_error(req, SP_ERR_UNAUTHENTICATED, "account not found", NULL);
        return;
    }
    bool is_admin = strcmp(PQgetvalue(res, row, 4), "t") == 0;
    bool is_member = !PQgetisnull(res, row, 5);
    const char *role = auth_role_of(is_admin, is_member);
    Sp__Auth__V1__GetMeReply out = SP__AUTH__V1__GET_ME_REPLY__INIT;
    out.id = PQgetvalue(res, row, 0);
    out.name = PQgetvalue(res, row, 1);
    out.email = PQgetvalue(res, row, 2);
    out.has_created_at = 1;
    out.created_at = spsvc_pg_int64(PQgetvalue(res, row, 3));
    out.role = (char *)role;
    /* the tenant only for a client_admin: an admin is never scoped to one client */
    if (strcmp(role, "client_admin") == 0) {
        out.client_id = PQgetvalue(res, row, 5);
        out.client_role = PQgetvalue(res, row, 6);
    }
    spbus_reply(req, &out.base);
}

/* GetMe, for the requests queued together: the callers' profiles; 401 for an anonymous
 * caller or an account gone. */
static void get_me_batch(spbus_req **reqs, size_t n)
{
    spbus_req *live[SPBUS_MAX_BATCH];
    const char *ids[SPBUS_MAX_BATCH];
    char list[SPBUS_MAX_BATCH * (SPCRYPTO_UUID_LEN + 1) + 2];
    size_t nl = 0, used = 0;

    list[used++] = '{';
    for (size_t i = 0; i < n && i < SPBUS_MAX_BATCH; i++) {
        if (spsvc_require_user_or_reply(reqs[i], &ids[nl]) != SP_OK) continue;
        if (nl > 0) list[used++] = ',';
        size_t len = strlen(ids[nl]); /* a valid uuid: SPCRYPTO_UUID_LEN - 1 characters */
        memcpy(list + used, ids[nl], len);
        used += len;
        live[nl++] = reqs[i];
    }
    list[used++] = '}';
    list[used] = '\0';
    if (nl == 0) return;

    spdb *db = NULL;
    PGresult *res = NULL;
    sp_status s = spsvc_db_or_reply(&db, live[0]); /* replied to live[0] on failure */
    if (s == SP_OK) {
        s = query_get_me(&res, db, list);
        if (s != SP_OK) spsvc_db_error_reply(live[0], s, "get_me");
    }
    if (s != SP_OK) {
        for (size_t i = 1; i < nl; i++)
            spbus_reply_error(live[i], s == SP_ERR_UNAVAILABLE ? s : SP_ERR_INTERNAL,
                              s == SP_ERR_UNAVAILABLE ? "database unavailable" : "internal error",
                              NULL);
        return;
    }
    int rows = PQntuples(res);
    for (size_t i = 0; i < nl; i++) {
        int row = -1;
        for (int r = 0; r < rows && row < 0; r++)
            if (strcasecmp(PQgetvalue(res, r, 0), ids[i]) == 0) row = r;
        auth_reply_me(live[i], ids[i], res, row);
    }
    PQclear(res);
}

static const spbus_route routes[] = {
    {"Register", register_user, &sp__auth__v1__register_request__descriptor, NULL},
    {"GetMe", NULL, &sp__auth__v1__get_me_request__descriptor, get_me_batch},
};

void users_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
