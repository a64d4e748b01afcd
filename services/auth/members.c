/* members.c -- the members tenancy creates for a client, in two steps so that its client
 * (or member) and auth's user exist both or neither: CreateMember makes a pending user
 * (it cannot log in) with its membership, ActivateMember lets it log in once tenancy has
 * committed its side, DiscardMember removes it for good when tenancy failed, and a task
 * discards the pending users older than SP_PENDING_MEMBER_TTL_S (a tenancy that died
 * between the steps). SetClientSuspended marks a client's memberships suspended and
 * revokes its members' sessions (login and refresh refuse them, sessions.c). Bus only;
 * callers: ctx.role "admin" or "service", as for memberships.c. Ends with
 * members_register(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "spadmin.h"

#define KEY_MAX 128
#define SWEEP_BATCH 100 /* pending users discarded per transaction (sql_stale_pending) */

/* ---- shared steps ------------------------------------------------------------------------ */

/* Only an admin or a service principal; replies 403 forbidden to anyone else. */
static sp_status require_admin_or_service_or_reply(spbus_req *req)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    const char *role = ctx != NULL ? ctx->role : NULL;

    if (role != NULL && (strcmp(role, "admin") == 0 || strcmp(role, "service") == 0)) return SP_OK;
    sp_log_warn(spbus_req_id(req), "member_forbidden", "role", role != NULL ? role : "");
    spbus_reply_error(req, SP_ERR_FORBIDDEN, "only an admin or a service may manage members", NULL);
    return SP_ERR_FORBIDDEN;
}

/* The idempotency key: 1..KEY_MAX characters of [A-Za-z0-9._-]. */
static const char *check_key(const char *s)
{
    if (s == NULL || s[0] == '\0') return "required";
    size_t n = strnlen(s, KEY_MAX + 1);
    if (n > KEY_MAX) return "at most 128 characters";
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok) return "only letters, digits, '.', '_' and '-'";
    }
    return NULL;
}

static const char *check_client_role(const char *s)
{
    if (s == NULL) return "required";
    if (strcmp(s, "client_manager") == 0 || strcmp(s, "client_operator") == 0) return NULL;
    return "must be client_manager or client_operator";
}

/* Runs 'sql' inside the open transaction into *res; replies the database error. */
static sp_status query_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *sql,
                                int nparams, const char *const *params, const char *what)
{
    sp_status s = spdb_query(res, db, sql, nparams, params);
    return s == SP_OK ? SP_OK : spsvc_db_error_reply(req, s, what);
}

/* Deletes the pending users of the bigint array literal 'ids' ("{1,2}") for good, with
 * their memberships, roles and people, inside the caller's transaction, the users locked
 * by the caller (FOR UPDATE), so that none turns active in between. A user no longer
 * pending is kept with all its rows. Returns the status of the first failed statement. */
static sp_status delete_pending_locked(spdb *db, const char *ids)
{
    static const char *const sqls[] = {
        "DELETE FROM auth.memberships m USING auth.users u"
        " WHERE m.user_id = u.id AND u.id = ANY($1::bigint[]) AND u.pending",
        "DELETE FROM auth.user_roles r USING auth.users u"
        " WHERE r.user_id = u.id AND u.id = ANY($1::bigint[]) AND u.pending",
        /* the person after its user, in a statement of its own: the foreign key is checked
         * at the end of each statement */
        "DELETE FROM auth.users WHERE id = ANY($1::bigint[]) AND pending",
        "DELETE FROM auth.people WHERE id = ANY($1::bigint[])", /* the people of the users */
    };
    static const char *sql_people =
        "SELECT coalesce(array_agg(person_id)::text, '{}') FROM auth.users"
        " WHERE id = ANY($1::bigint[]) AND pending";
    PGresult *res = NULL;
    const size_t nsql = sizeof(sqls) / sizeof(sqls[0]);
    const char *params[] = {ids};

    sp_status s = spdb_query(&res, db, sql_people, 1, params);
    if (s != SP_OK) return s;
    const char *people[] = {PQgetvalue(res, 0, 0)};
    for (size_t i = 0; s == SP_OK && i < nsql; i++)
        s = spdb_exec(db, sqls[i], 1, i + 1 < nsql ? params : people);
    PQclear(res);
    return s;
}

/* ---- CreateMember ------------------------------------------------------------------------ */

/* Serialises the creations of one key, so that a retry racing its first try waits for it
 * and then finds its user instead of failing on the email or the key. */
static const char *sql_lock_key = "SELECT pg_advisory_xact_lock(hashtextextended($1, 7251))";

/* The user of a key, whatever its state, with its membership. */
static const char *sql_find_by_key = "SELECT u.public_id::text, p.name, p.email,"
                                     "       (extract(epoch FROM u.created_at) * 1000000)::bigint,"
                                     "       m.client_id::text, u.deleted_at IS NOT NULL"
                                     " FROM auth.users u"
                                     " JOIN auth.people p ON p.id = u.person_id"
                                     " LEFT JOIN auth.memberships m ON m.user_id = u.id"
                                     " WHERE u.create_key = $1";

/* Person, pending user (inactive, no app_user role) and membership in one statement. The
 * email is stored lower-cased, as Register does. */
static const char *sql_create_member =
    "WITH p AS (INSERT INTO auth.people (public_id, name, email)"
    "           VALUES ($1::uuid, $2, lower($3)) RETURNING id, name, email),"
    " u AS (INSERT INTO auth.users (public_id, person_id, password_hash, active, pending,"
    "                               create_key)"
    "       SELECT $4::uuid, p.id, $5, false, true, $6 FROM p"
    "       RETURNING id, public_id, created_at),"
    " m AS (INSERT INTO auth.memberships (user_id, client_id, client_role)"
    "       SELECT u.id, $7::uuid, $8 FROM u)"
    " SELECT u.public_id::text, p.name, p.email,"
    "        (extract(epoch FROM u.created_at) * 1000000)::bigint"
    " FROM p, u";

/* Every bad field of a CreateMemberRequest at once; replies 400 validation_failed. */
static sp_status validate_create_or_reply(spbus_req *req,
                                          const Sp__Auth__V1__CreateMemberRequest *in)
{
    spsvc_fields f;

    spsvc_fields_init(&f);
    spsvc_fields_add(&f, "key", check_key(in->key));
    spsvc_fields_add(&f, "name", auth_check_name(in->name));
    spsvc_fields_add(&f, "email", auth_check_email(in->email));
    spsvc_fields_add(&f, "password", auth_check_password(in->password));
    spsvc_fields_add(&f, "clientId", spsvc_check_uuid(in->client_id));
    spsvc_fields_add(&f, "clientRole", check_client_role(in->client_role));
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

/* Replies CreateMemberReply from row 0 of 'res' (public_id, name, email, created_at us). */
static sp_status reply_member(spbus_req *req, const PGresult *res)
{
    Sp__Auth__V1__CreateMemberReply out = SP__AUTH__V1__CREATE_MEMBER_REPLY__INIT;
    out.user_id = PQgetvalue(res, 0, 0);
    out.name = PQgetvalue(res, 0, 1);
    out.email = PQgetvalue(res, 0, 2);
    out.has_created_at = 1;
    out.created_at = spsvc_pg_int64(PQgetvalue(res, 0, 3));
    return spbus_reply(req, &out.base);
}

/* Inside the open transaction, the key locked: the user this key already made, if any.
 * Its membership for the same client: replies it (a retry) and sets *done; for another
 * client, or a user deleted since: replies 409 conflict. */
static sp_status existing_or_reply(spbus_req *req, spdb *db,
                                   const Sp__Auth__V1__CreateMemberRequest *in, bool *done)
{
    PGresult *res = NULL;
    const char *params[] = {in->key};

    *done = false;
    sp_status s = query_or_reply(&res, req, db, sql_find_by_key, 1, params, "find_member");
    if (s != SP_OK || PQntuples(res) == 0) {
        PQclear(res);
        return s;
    }
    bool same = !PQgetisnull(res, 0, 4) && strcmp(PQgetvalue(res, 0, 4), in->client_id) == 0 &&
                strcmp(PQgetvalue(res, 0, 5), "f") == 0;
    if (same) {
        sp_log_info(spbus_req_id(req), "member_create_retried", "userId", PQgetvalue(res, 0, 0));
        s = reply_member(req, res);
        *done = true;
    } else {
        sp_log_info(spbus_req_id(req), "member_key_conflict", "clientId", in->client_id);
        spbus_reply_error(req, SP_ERR_CONFLICT, "key already used for another member", "key",
                          "already used", NULL);
        s = SP_ERR_CONFLICT;
    }
    PQclear(res);
    return s;
}

/* Inside the open transaction: inserts the pending member, audits "member.created",
 * commits and replies. A live email taken replies 409 conflict with fields.email. */
static sp_status insert_member_and_reply(spbus_req *req, spdb *db,
                                         const Sp__Auth__V1__CreateMemberRequest *in,
                                         const char *hash)
{
    char person_id[SPCRYPTO_UUID_LEN], user_id[SPCRYPTO_UUID_LEN];
    PGresult *res = NULL;

    spcrypto_uuid_v4(person_id);
    spcrypto_uuid_v4(user_id);
    const char *params[] = {person_id, in->name, in->email,     user_id,
                            hash,      in->key,  in->client_id, in->client_role};
    sp_status s = spdb_query(&res, db, sql_create_member, 8, params);
    if (s == SP_ERR_CONFLICT) {
        sp_log_info(spbus_req_id(req), "member_email_taken", "clientId", in->client_id);
        spbus_reply_error(req, SP_ERR_CONFLICT, "email already registered", "email",
                          "already registered", NULL);
        return SP_ERR_CONFLICT;
    }
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "create_member");
    if (PQntuples(res) != 1) {
        PQclear(res);
        return spsvc_db_error_reply(req, SP_ERR_INTERNAL, "create_member returned no row");
    }
    /* no audit event here: tenancy records member.created with the acting user once its
     * side is committed (a pending member may still be discarded) */
    s = spsvc_commit_or_reply(req, db);
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "member_created", "userId", PQgetvalue(res, 0, 0),
                    "clientId", in->client_id, "clientRole", in->client_role);
        s = reply_member(req, res);
    }
    PQclear(res);
    return s;
}

/* CreateMember: a pending user (active false: login answers 401 as for a bad password)
 * with its membership of client_id, no app_user role, audited "member.created"; replies
 * {user_id,name,email,created_at}. The same key again for the same client replies the
 * same user (nothing written); for another client 409 conflict (fields.key). 403 unless
 * admin or service; 400 naming every bad field; 409 conflict with fields.email when a
 * live account has the email. */
static sp_status create_member(spbus_req *req)
{
    const Sp__Auth__V1__CreateMemberRequest *in = (const void *)spbus_req_input(req);
    const char *params[] = {in->key};
    char hash[SPCRYPTO_HASH_LEN];
    spdb *db = NULL;
    bool done = false;

    hash[0] = '\0';
    sp_status s = require_admin_or_service_or_reply(req);
    if (s == SP_OK) s = validate_create_or_reply(req, in);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    /* argon2id takes long: never inside the transaction, which holds the key's lock */
    if (s == SP_OK) s = hash_password_or_reply(req, hash, in->password);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        s = spdb_exec(db, sql_lock_key, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "lock_key");
    }
    if (s == SP_OK) s = existing_or_reply(req, db, in, &done);
    if (s == SP_OK && !done) (void)insert_member_and_reply(req, db, in, hash);
    spsvc_rollback(db);
    explicit_bzero(hash, sizeof(hash));
    return SP_OK; /* every step replied, success or not */
}

/* ---- ActivateMember and DiscardMember ----------------------------------------------------- */

/* The user of a key, locked until the transaction ends. */
static const char *sql_lock_by_key =
    "SELECT id, pending FROM auth.users WHERE create_key = $1 FOR UPDATE";

static const char *sql_activate =
    "UPDATE auth.users SET active = true, pending = false, updated_at = now()"
    " WHERE id = $1::bigint AND pending";

/* In a new transaction (left open): the user of 'key' locked; *found false when there is
 * none, else *id (in the arena) and *pending. Replies 403, 400 or the database error. */
static sp_status lock_member_or_reply(spbus_req *req, spdb **db, const char *key, bool *found,
                                      char **id, bool *pending)
{
    PGresult *res = NULL;
    const char *params[] = {key};
    spsvc_fields f;

    *db = NULL;
    *found = *pending = false;
    *id = NULL;
    spsvc_fields_init(&f);
    spsvc_fields_add(&f, "key", check_key(key));
    sp_status s = require_admin_or_service_or_reply(req);
    if (s == SP_OK) s = spsvc_fields_or_reply(req, &f);
    if (s == SP_OK) s = spsvc_db_or_reply(db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, *db);
    if (s == SP_OK) s = query_or_reply(&res, req, *db, sql_lock_by_key, 1, params, "lock_member");
    if (s == SP_OK && PQntuples(res) == 1) {
        *found = true;
        *pending = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
        *id = sp_arena_strdup(spbus_req_arena(req), PQgetvalue(res, 0, 0));
        if (*id == NULL) {
            spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
            s = SP_ERR_INTERNAL;
        }
    }
    PQclear(res);
    return s;
}

/* ActivateMember: the pending user of 'key' becomes active (it can log in); replies {}.
 * Already active: {} again. 404 not_found for a key auth does not know (never created, or
 * discarded); 403 unless admin or service; 400 on a bad key. */
static sp_status activate_member(spbus_req *req)
{
    const Sp__Auth__V1__ActivateMemberRequest *in = (const void *)spbus_req_input(req);
    spdb *db = NULL;
    char *id = NULL;
    bool found = false, pending = false;

    sp_status s = lock_member_or_reply(req, &db, in->key, &found, &id, &pending);
    if (s == SP_OK && !found) {
        sp_log_info(spbus_req_id(req), "member_activate_unknown");
        spbus_reply_error(req, SP_ERR_NOT_FOUND, "member not found", NULL);
        s = SP_ERR_NOT_FOUND;
    }
    if (s == SP_OK && pending) {
        const char *params[] = {id};
        s = spdb_exec(db, sql_activate, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "activate_member");
        if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
        if (s == SP_OK) sp_log_info(spbus_req_id(req), "member_activated", "id", id);
    }
    spsvc_rollback(db);
    if (s == SP_OK) {
        Sp__Auth__V1__ActivateMemberReply out = SP__AUTH__V1__ACTIVATE_MEMBER_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    return SP_OK; /* every step replied, success or not */
}

/* DiscardMember: the pending user of 'key' is deleted for good, with its membership and
 * person (it never existed for anyone: its email is free again); replies {}. Unknown or
 * already discarded: {} again. An activated user is never discarded: 409 conflict. 403
 * unless admin or service; 400 on a bad key. */
static sp_status discard_member(spbus_req *req)
{
    const Sp__Auth__V1__DiscardMemberRequest *in = (const void *)spbus_req_input(req);
    spdb *db = NULL;
    char *id = NULL;
    bool found = false, pending = false;

    sp_status s = lock_member_or_reply(req, &db, in->key, &found, &id, &pending);
    if (s == SP_OK && found && !pending) {
        sp_log_info(spbus_req_id(req), "member_discard_active", "id", id);
        spbus_reply_error(req, SP_ERR_CONFLICT, "member already activated", NULL);
        s = SP_ERR_CONFLICT;
    }
    if (s == SP_OK && found) {
        char ids[32];
        snprintf(ids, sizeof(ids), "{%s}", id);
        s = delete_pending_locked(db, ids);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "discard_member");
        if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
        if (s == SP_OK) sp_log_info(spbus_req_id(req), "member_discarded", "id", id);
    }
    spsvc_rollback(db);
    if (s == SP_OK) {
        Sp__Auth__V1__DiscardMemberReply out = SP__AUTH__V1__DISCARD_MEMBER_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    return SP_OK; /* every step replied, success or not */
}

/* ---- the pending cleaner --------------------------------------------------------------- */

/* Up to SWEEP_BATCH pending users older than $1 seconds, locked; those being activated or
 * discarded right now are skipped (the next run sees what is left of them). */
static const char *sql_stale_pending =
    "SELECT coalesce(array_agg(id)::text, '{}'), count(*) FROM ("
    "  SELECT id FROM auth.users"
    "  WHERE pending AND created_at < now() - $1::bigint * interval '1 second'"
    "  ORDER BY created_at LIMIT 100 FOR UPDATE SKIP LOCKED) v"; /* SWEEP_BATCH */

struct sweeper {
    char *db_url;
    int64_t ttl_s;
    spdb *db; /* the cleaner's own connection, made on first use */
};

static struct sweeper g_sweeper;

/* One run: discards stale pending users, a batch per transaction, until none is left. */
static void sweep(void *arg)
{
    struct sweeper *w = arg;
    char ttl[24];
    const char *params[] = {ttl};

    if (w->db == NULL && spdb_connect(&w->db, w->db_url) != SP_OK) return;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)w->ttl_s);
    for (;;) {
        PGresult *res = NULL;
        sp_status s = spdb_begin(w->db);
        if (s == SP_OK) s = spdb_query(&res, w->db, sql_stale_pending, 1, params);
        long n = s == SP_OK ? strtol(PQgetvalue(res, 0, 1), NULL, 10) : 0;
        if (s == SP_OK && n > 0) s = delete_pending_locked(w->db, PQgetvalue(res, 0, 0));
        if (s == SP_OK) s = spdb_commit(w->db);
        PQclear(res);
        spdb_rollback(w->db);
        if (s != SP_OK) {
            sp_log_warn(NULL, "pending_sweep_failed", "code", sp_error_code(s));
            return;
        }
        if (n == 0) return;
        char count[24];
        snprintf(count, sizeof(count), "%ld", n);
        sp_log_info(NULL, "pending_members_discarded", "count", count);
        spadmin_counter_add("sp_auth_pending_members_discarded_total", NULL, (double)n);
        if (n < SWEEP_BATCH) return;
    }
}

/* ---- SetClientSuspended ------------------------------------------------------------------ */

/* Every membership of the client, locked: a login holding one FOR SHARE (sessions.c) has
 * inserted its session before this returns, so the revocation below sees it. */
static const char *sql_set_suspended =
    "UPDATE auth.memberships SET suspended = $2::boolean, updated_at = now()"
    " WHERE client_id = $1::uuid";

/* A separate statement on purpose: its snapshot is taken after the update above waited for
 * the logins in flight. Platform admins keep their sessions: their tokens never carry the
 * client (the same rule as login's). */
static const char *sql_revoke_client_sessions =
    "UPDATE auth.sessions s SET revoked_at = now(), revoked_reason = 'client_suspended'"
    " FROM auth.memberships m"
    " WHERE m.client_id = $1::uuid AND s.user_id = m.user_id AND s.revoked_at IS NULL"
    "   AND NOT EXISTS (SELECT 1 FROM auth.user_roles ur"
    "                   WHERE ur.user_id = m.user_id AND ur.role_id = " AUTH_ROLE_ADMIN_ID ")"
    " RETURNING s.public_id::text";

/* Inside the open transaction: the revocation of the client's sessions; *sids in the
 * arena. Replies on failure. */
static sp_status revoke_client_sessions_or_reply(spbus_req *req, spdb *db, const char *client_id,
                                                 char ***sids, size_t *n)
{
    sp_arena *a = spbus_req_arena(req);
    PGresult *res = NULL;
    const char *params[] = {client_id};

    *sids = NULL;
    *n = 0;
    sp_status s = query_or_reply(&res, req, db, sql_revoke_client_sessions, 1, params,
                                 "revoke_client_sessions");
    if (s != SP_OK) return s;
    int rows = PQntuples(res);
    char **list = sp_arena_alloc(a, sizeof(char *) * (size_t)(rows > 0 ? rows : 1));
    for (int i = 0; list != NULL && i < rows; i++) {
        list[i] = sp_arena_strdup(a, PQgetvalue(res, i, 0));
        if (list[i] == NULL) list = NULL;
    }
    PQclear(res);
    if (list == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    *sids = list;
    *n = (size_t)rows;
    return SP_OK;
}

/* SetClientSuspended: marks every membership of client_id suspended (or not); suspending
 * also revokes every live session of its members (PostgreSQL, commit, then Redis and every
 * gateway) and replies how many. Idempotent; a client without members answers 0. 403
 * unless admin or service; 400 on a bad client_id or an absent 'suspended'; 503 when
 * Redis is down (the suspension stands; a retry or a reconnect rewrites the revocations). */
static sp_status set_client_suspended(spbus_req *req)
{
    const Sp__Auth__V1__SetClientSuspendedRequest *in = (const void *)spbus_req_input(req);
    const char *suspended = in->has_suspended && in->suspended ? "true" : "false";
    const char *params[] = {in->client_id, suspended};
    char **sids = NULL;
    size_t n = 0;
    spdb *db = NULL;
    spsvc_fields f;

    spsvc_fields_init(&f);
    spsvc_fields_add(&f, "clientId", spsvc_check_uuid(in->client_id));
    spsvc_fields_add(&f, "suspended", in->has_suspended ? NULL : "required");
    sp_status s = require_admin_or_service_or_reply(req);
    if (s == SP_OK) s = spsvc_fields_or_reply(req, &f);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        s = spdb_exec(db, sql_set_suspended, 2, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "set_suspended");
    }
    if (s == SP_OK && in->suspended)
        s = revoke_client_sessions_or_reply(req, db, in->client_id, &sids, &n);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) s = auth_revoke_all_in_redis_or_reply(req, db, sids, n);
    if (s == SP_OK) {
        char count[24];
        snprintf(count, sizeof(count), "%zu", n);
        sp_log_info(spbus_req_id(req), "client_suspended_set", "clientId", in->client_id,
                    "suspended", suspended, "revoked", count);
        spadmin_counter_add("sp_auth_sessions_revoked_total", "reason=\"client_suspended\"",
                            (double)n);
        Sp__Auth__V1__SetClientSuspendedReply out = SP__AUTH__V1__SET_CLIENT_SUSPENDED_REPLY__INIT;
        out.has_sessions_revoked = 1;
        out.sessions_revoked = (int32_t)n;
        spbus_reply(req, &out.base);
    }
    return SP_OK; /* every step replied, success or not */
}

static const spbus_route routes[] = {
    {"CreateMember", create_member, &sp__auth__v1__create_member_request__descriptor, NULL},
    {"ActivateMember", activate_member, &sp__auth__v1__activate_member_request__descriptor, NULL},
    {"DiscardMember", discard_member, &sp__auth__v1__discard_member_request__descriptor, NULL},
    {"SetClientSuspended", set_client_suspended,
     &sp__auth__v1__set_client_suspended_request__descriptor, NULL},
};

sp_status members_register(spsvc *kit, int64_t pending_ttl_s, int sweep_s)
{
    struct sweeper *w = &g_sweeper;
    const sp_config *cfg = spsvc_config(kit);

    SPSVC_ROUTES(kit, routes);
    w->db_url = strdup(sp_config_str(cfg, "SP_DATABASE_URL"));
    w->ttl_s = pending_ttl_s;
    if (w->db_url == NULL) return SP_ERR_INTERNAL;
    return spsvc_every(kit, NULL, sweep_s * 1000, sweep, w);
}

void members_free(void)
{
    struct sweeper *w = &g_sweeper;
    spdb_destroy(w->db);
    free(w->db_url);
    memset(w, 0, sizeof(*w));
}
