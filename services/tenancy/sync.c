/* sync.c -- the task that brings auth in line with tenancy, which is the source of truth
 * for clients and members: a member auth still holds pending is activated, a member
 * removed here loses its membership (and sessions) in auth, a client suspended or
 * reactivated here is suspended or reactivated in auth. Handlers do each of these before
 * they reply; this task finishes what a handler could not (auth down, a crash between the
 * commit and the call). Rows younger than TEN_SYNC_AGE_S are left to their handler. */
#include <stdlib.h>
#include <string.h>

#include "tenancy.h"

struct ten_sync {
    ten_svc *t;
    char *db_url;
    spdb *db; /* the task's own connection */
};

static const char *sql_unsynced_members =
    "SELECT m.id, m.create_key, m.auth_state, m.user_id::text, c.public_id::text"
    " FROM tenancy.client_members m JOIN tenancy.clients c ON c.id = m.client_id"
    " WHERE m.auth_state <> 'synced'"
    "   AND m.updated_at < now() - " TEN_SYNC_AGE_SQL " ORDER BY m.id LIMIT 100";

static const char *sql_member_synced =
    "UPDATE tenancy.client_members SET auth_state = 'synced', updated_at = now()"
    " WHERE id = $1::bigint AND auth_state = $2";

/* auth no longer holds the pending member (discarded after SP_PENDING_MEMBER_TTL_S): it
 * never came to be, here either */
static const char *sql_member_gone =
    "UPDATE tenancy.client_members SET removed_at = now(), auth_state = 'synced',"
    "   updated_at = now() WHERE id = $1::bigint AND auth_state = 'activate'";

static const char *sql_unsynced_clients =
    "SELECT public_id::text, status FROM tenancy.clients"
    " WHERE (status = 'SUSPENDED') <> (auth_status = 'SUSPENDED')"
    "   AND updated_at < now() - " TEN_SYNC_AGE_SQL " ORDER BY id LIMIT 100";

static const char *sql_client_synced =
    "UPDATE tenancy.clients SET auth_status = $2 WHERE public_id = $1::uuid AND status = $2";

static void sync_members(struct ten_sync *y, sp_arena *a)
{
    PGresult *res = NULL;
    if (spdb_query(&res, y->db, sql_unsynced_members, 0, NULL) != SP_OK) return;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0), *state = PQgetvalue(res, i, 2);
        sp_status s =
            strcmp(state, "activate") == 0
                ? ten_auth_activate(y->t->bus, NULL, PQgetvalue(res, i, 1), a)
                : ten_auth_remove(y->t->bus, NULL, PQgetvalue(res, i, 3), PQgetvalue(res, i, 4), a);
        if (s == SP_ERR_NOT_FOUND && strcmp(state, "activate") == 0) {
            const char *params[] = {id};
            spdb_exec(y->db, sql_member_gone, 1, params);
            sp_log_warn(NULL, "member_discarded_by_auth", "userId", PQgetvalue(res, i, 3));
            continue;
        }
        if (s != SP_OK) break; /* auth is down: the rest would fail too */
        const char *params[] = {id, state};
        spdb_exec(y->db, sql_member_synced, 2, params);
        sp_log_info(NULL, "member_synced", "userId", PQgetvalue(res, i, 3), "state", state);
    }
    PQclear(res);
}

static void sync_clients(struct ten_sync *y, sp_arena *a)
{
    PGresult *res = NULL;
    if (spdb_query(&res, y->db, sql_unsynced_clients, 0, NULL) != SP_OK) return;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0), *status = PQgetvalue(res, i, 1);
        if (ten_auth_suspend(y->t->bus, NULL, id, strcmp(status, "SUSPENDED") == 0, a) != SP_OK)
            break;
        const char *params[] = {id, status};
        spdb_exec(y->db, sql_client_synced, 2, params);
        sp_log_info(NULL, "client_synced", "clientId", id, "status", status);
    }
    PQclear(res);
}

static void sync_run(void *arg)
{
    struct ten_sync *y = arg;
    if (y->db == NULL && spdb_connect(&y->db, y->db_url) != SP_OK) return;
    sp_arena *a = sp_arena_create(4096);
    if (a == NULL) return;
    sync_clients(y, a);
    sync_members(y, a);
    sp_arena_destroy(a);
}

sp_status ten_sync_start(ten_svc *t, const char *db_url)
{
    struct ten_sync *y = calloc(1, sizeof(*y));
    if (y == NULL) return SP_ERR_INTERNAL;
    t->sync = y;
    y->t = t;
    y->db_url = strdup(db_url);
    if (y->db_url == NULL) return SP_ERR_INTERNAL;
    return spsvc_every(t->kit, NULL, TEN_SYNC_MS, sync_run, y);
}

void ten_sync_free(ten_svc *t)
{
    struct ten_sync *y = t->sync;
    if (y == NULL) return;
    spdb_destroy(y->db);
    free(y->db_url);
    free(y);
    t->sync = NULL;
}
