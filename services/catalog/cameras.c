/* cameras.c -- a client's cameras: CreateCamera (bound to a key of its client, optionally
 * assigned to a lot of its client), ListCameras, GetCamera, UpdateCamera (assign, unassign
 * with "lotId": null, enable / disable, rebind to another key) and DeleteCamera (soft: the
 * code is free again). Assignments are audited. The state is UNASSIGNED without a lot;
 * with one, ONLINE / OFFLINE by when it last reported (an event or a heartbeat, kept by
 * the projection: within its lot's unknownAfterS, 120 s when 0), ASSIGNED while it never
 * did or the projection does not answer. Ends with cameras_register(). */
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "sp/status/v1/status.pb-c.h"
#include "spcrypto.h"

/* When the cameras being answered on this worker last reported (reports_for). */
static __thread const Sp__Status__V1__GetCameraStatusesReply *tl_seen;

#define CAM_CODE_MAX 40

#define CAM_COLS                                                                                   \
    "c.public_id::text, c.camera_code, c.client_id::text, l.public_id::text, k.public_id::text,"   \
    " c.enabled, CASE WHEN c.lot_id IS NULL THEN 'UNASSIGNED' ELSE 'ASSIGNED' END,"                \
    " " CAT_US("c.created_at") ", " CAT_US("c.updated_at") ", c.id"
#define CAM_JOIN                                                                                   \
    " JOIN catalog.api_keys k ON k.id = c.api_key_id LEFT JOIN catalog.lots l ON l.id = c.lot_id"
enum { C_ID, C_CODE, C_CLIENT, C_LOT, C_KEY, C_ENABLED, C_STATE, C_CREATED, C_UPDATED, C_INTERNAL };

static const char *sql_by_id = "SELECT " CAM_COLS " FROM catalog.cameras c" CAM_JOIN
                               " WHERE c.public_id = $1::uuid AND c.deleted_at IS NULL";
static const char *sql_by_id_lock = "SELECT " CAM_COLS " FROM catalog.cameras c" CAM_JOIN
                                    " WHERE c.public_id = $1::uuid AND c.deleted_at IS NULL"
                                    " FOR UPDATE OF c";
static const char *sql_by_key =
    "SELECT " CAM_COLS " FROM catalog.cameras c" CAM_JOIN " WHERE c.create_key = $1";

/* a usable key of client $2, and a live lot of client $2 */
static const char *sql_key_of = "SELECT id::text FROM catalog.api_keys WHERE public_id = $1::uuid"
                                " AND client_id = $2::uuid AND revoked_at IS NULL";
static const char *sql_lot_of = "SELECT id::text FROM catalog.lots WHERE public_id = $1::uuid"
                                " AND client_id = $2::uuid AND deleted_at IS NULL";

static const char *sql_insert =
    "WITH c AS (INSERT INTO catalog.cameras (client_id, camera_code, api_key_id, lot_id,"
    "   create_key) VALUES ($1::uuid, $2, $3::bigint, $4::bigint, $5) RETURNING *)"
    " SELECT " CAM_COLS " FROM c" CAM_JOIN;

static const char *sql_list =
    "SELECT " CAM_COLS " FROM catalog.cameras c" CAM_JOIN " WHERE c.deleted_at IS NULL"
    "   AND ($1::uuid IS NULL OR c.client_id = $1::uuid)"
    "   AND ($2::uuid IS NULL OR c.client_id = $2::uuid)"
    "   AND ($3::uuid IS NULL OR l.public_id = $3::uuid)"
    "   AND ($4::bigint IS NULL OR (c.created_at, c.id) >"
    "        ('epoch'::timestamptz + $4::bigint * interval '1 microsecond', $5::bigint))"
    " ORDER BY c.created_at, c.id LIMIT $6::int";

/* $3 the new lot, $5 true: unassign */
static const char *sql_update =
    "WITH c AS (UPDATE catalog.cameras c SET"
    "   lot_id = CASE WHEN $5::bool THEN NULL ELSE COALESCE($3::bigint, c.lot_id) END,"
    "   enabled = COALESCE($2::bool, c.enabled), api_key_id = COALESCE($4::bigint, c.api_key_id),"
    "   updated_at = now()"
    " WHERE c.id = $1::bigint RETURNING *)"
    " SELECT " CAM_COLS " FROM c" CAM_JOIN;

static const char *sql_delete = "UPDATE catalog.cameras SET deleted_at = now(), updated_at = now()"
                                " WHERE id = $1::bigint";

static const char *col(PGresult *res, int c)
{
    return PQgetisnull(res, 0, c) ? NULL : PQgetvalue(res, 0, c);
}

static void from_row(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    Sp__Catalog__V1__CameraReply *c = (Sp__Catalog__V1__CameraReply *)m;
    (void)req;
    c->id = PQgetvalue(res, row, C_ID);
    c->camera_code = PQgetvalue(res, row, C_CODE);
    c->client_id = PQgetvalue(res, row, C_CLIENT);
    c->lot_id = PQgetisnull(res, row, C_LOT) ? NULL : PQgetvalue(res, row, C_LOT);
    c->api_key_id = PQgetvalue(res, row, C_KEY);
    c->has_enabled = 1;
    c->enabled = strcmp(PQgetvalue(res, row, C_ENABLED), "t") == 0;
    c->state = PQgetvalue(res, row, C_STATE);
    for (size_t i = 0; c->lot_id != NULL && tl_seen != NULL && i < tl_seen->n_items; i++) {
        const Sp__Status__V1__CameraStatus *st = tl_seen->items[i];
        if (st->camera_id == NULL || strcmp(st->camera_id, c->id) != 0) continue;
        c->state = st->online ? "ONLINE" : "OFFLINE";
        c->has_last_seen_at = st->has_last_seen_at;
        c->last_seen_at = st->last_seen_at;
        break;
    }
    c->has_created_at = c->has_updated_at = 1;
    c->created_at = spsvc_pg_int64(PQgetvalue(res, row, C_CREATED));
    c->updated_at = spsvc_pg_int64(PQgetvalue(res, row, C_UPDATED));
}

/* Asks the projection when the first n cameras of 'res' last reported (tl_seen). */
static void reports_for(spbus_req *req, PGresult *res, int n)
{
    tl_seen = (const void *)cat_ask_projection(
        req, "GetCameraStatuses", &sp__status__v1__get_camera_statuses_request__descriptor,
        &sp__status__v1__get_camera_statuses_reply__descriptor, res, C_ID, n);
}

static sp_status reply_row(spbus_req *req, PGresult *res)
{
    Sp__Catalog__V1__CameraReply c = SP__CATALOG__V1__CAMERA_REPLY__INIT;
    reports_for(req, res, 1);
    from_row(&c.base, res, 0, req);
    tl_seen = NULL;
    return spbus_reply(req, &c.base);
}

static sp_status camera_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id,
                                 bool lock)
{
    return spsvc_row_or_reply(res, req, db, lock ? sql_by_id_lock : sql_by_id, id, C_CLIENT,
                              "camera");
}

/* The internal id of 'public_id' by 'sql' for client 'client' into *out (NULL: none such,
 * the field is reported in f with 'why'). */
static sp_status resolve(const char **out, spsvc_fields *f, spbus_req *req, spdb *db,
                         const char *sql, const char *public_id, const char *client,
                         const char *field, const char *why)
{
    PGresult *res = NULL;
    *out = NULL;
    if (public_id == NULL || !spcrypto_uuid_valid(public_id)) {
        spsvc_fields_add(f, field, public_id == NULL ? "required" : why);
        return SP_OK;
    }
    const char *params[] = {public_id, client};
    sp_status s = spdb_query(&res, db, sql, 2, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, field);
    if (PQntuples(res) == 1)
        *out = sp_arena_strdup(spbus_req_arena(req), PQgetvalue(res, 0, 0));
    else
        spsvc_fields_add(f, field, why);
    PQclear(res);
    return SP_OK;
}

#define KEY_WHY "no usable API key of this client"
#define LOT_WHY "no such lot of this client"

/* CreateCamera: {cameraCode, apiKeyId, lotId?, clientId?}; the key and the lot must be
 * the camera's client's (400 otherwise: another client's look like missing ones). 409 on a
 * cameraCode taken in the client. */
static sp_status create_camera(spbus_req *req)
{
    const Sp__Catalog__V1__CreateCameraRequest *in = (const void *)spbus_req_input(req);
    const char *client = NULL, *key_row = NULL, *lot_row = NULL, *key = cat_create_key(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    spsvc_fields f;

    sp_status s = cat_owner_or_reply(&client, req, in->client_id);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK && key != NULL) {
        s = cat_find_created(req, db, sql_by_key, key, reply_row);
        if (s != SP_ERR_NOT_FOUND) return SP_OK;
        s = SP_OK;
    }
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "cameraCode", cat_check_code(in->camera_code, CAM_CODE_MAX));
        s = resolve(&key_row, &f, req, db, sql_key_of, in->api_key_id, client, "apiKeyId", KEY_WHY);
        if (s == SP_OK && in->lot_id != NULL)
            s = resolve(&lot_row, &f, req, db, sql_lot_of, in->lot_id, client, "lotId", LOT_WHY);
        if (s == SP_OK) s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK && spsvc_validate_only(req)) {
        Sp__Catalog__V1__CameraReply none = SP__CATALOG__V1__CAMERA_REPLY__INIT;
        return spbus_reply(req, &none.base);
    }
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        const char *params[] = {client, in->camera_code, key_row, lot_row, key};
        s = spdb_query(&res, db, sql_insert, 5, params);
        if (s == SP_ERR_CONFLICT) {
            cat_conflict_reply(req, db, sql_by_key, key, reply_row,
                               "a camera of this client has this cameraCode", "cameraCode");
            return SP_OK;
        }
        if (s != SP_OK) spsvc_db_error_reply(req, s, "insert_camera");
    }
    if (s == SP_OK && lot_row != NULL)
        s = spsvc_audit_or_reply(
            req, db, client, "camera.assigned", "camera", col(res, C_ID),
            sp_arena_printf(spbus_req_arena(req), "{\"lotId\":\"%s\"}", col(res, C_LOT)));
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, client, "camera", col(res, C_ID), "created", col(res, C_LOT));
        sp_log_info(spbus_req_id(req), "camera_created", "cameraId", col(res, C_ID));
        reply_row(req, res);
    }
    PQclear(res);
    return SP_OK;
}

static sp_status list_cameras(spbus_req *req)
{
    const Sp__Catalog__V1__ListCamerasRequest *in = (const void *)spbus_req_input(req);
    const char *scope = NULL;
    spsvc_fields f;
    spsvc_page pg;
    PGresult *res = NULL;
    spdb *db = NULL;

    sp_status s = cat_list_or_reply(&scope, &pg, &f, req, in->has_limit, in->limit, in->cursor,
                                    in->client_id);
    if (s == SP_OK) {
        if (in->lot_id != NULL) spsvc_fields_add(&f, "lotId", spsvc_check_uuid(in->lot_id));
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;
    const char *params[] = {in->client_id,         scope,   in->lot_id,
                            spsvc_page_after(&pg), pg.id_s, pg.fetch_s};
    s = spdb_query(&res, db, sql_list, 6, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "list_cameras");
    int rows = PQntuples(res);
    reports_for(req, res, rows < pg.limit ? rows : pg.limit);
    spsvc_reply_page(req, &pg, res, C_CREATED, C_INTERNAL,
                     &sp__catalog__v1__list_cameras_reply__descriptor, from_row);
    tl_seen = NULL;
    PQclear(res);
    return SP_OK;
}

static sp_status get_camera(spbus_req *req)
{
    const Sp__Catalog__V1__GetCameraRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = camera_or_reply(&res, req, db, in->id, false);
    if (s == SP_OK) reply_row(req, res);
    PQclear(res);
    return SP_OK;
}

/* UpdateCamera: {lotId, enabled, apiKeyId} of an admin or the client's manager; lotId null
 * unassigns. A change of lot is audited (camera.assigned / camera.unassigned). */
static sp_status update_camera(spbus_req *req)
{
    const Sp__Catalog__V1__UpdateCameraRequest *in = (const void *)spbus_req_input(req);
    const char *key_row = NULL, *lot_row = NULL;
    PGresult *res = NULL, *up = NULL;
    spdb *db = NULL;
    bool unassign = false;
    spsvc_fields f;

    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = camera_or_reply(&res, req, db, in->id, true);
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        const char *client = col(res, C_CLIENT);
        spsvc_fields_init(&f);
        for (size_t i = 0; i < in->n_cleared; i++) {
            bool lot = strcmp(in->cleared[i], "lotId") == 0;
            unassign = unassign || lot;
            spsvc_fields_add(&f, in->cleared[i], lot ? NULL : "must not be null");
        }
        if (in->api_key_id != NULL)
            s = resolve(&key_row, &f, req, db, sql_key_of, in->api_key_id, client, "apiKeyId",
                        KEY_WHY);
        if (s == SP_OK && in->lot_id != NULL)
            s = resolve(&lot_row, &f, req, db, sql_lot_of, in->lot_id, client, "lotId", LOT_WHY);
        if (s == SP_OK) s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) {
        const char *params[] = {col(res, C_INTERNAL),
                                in->has_enabled ? (in->enabled ? "t" : "f") : NULL, lot_row,
                                key_row, unassign ? "true" : "false"};
        s = spdb_query(&up, db, sql_update, 5, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "update_camera");
    }
    const char *was = res != NULL ? col(res, C_LOT) : NULL,
               *now = up != NULL ? col(up, C_LOT) : NULL;
    bool moved = s == SP_OK && !(was == NULL ? now == NULL : now != NULL && strcmp(was, now) == 0);
    if (moved)
        s = spsvc_audit_or_reply(
            req, db, col(res, C_CLIENT), now != NULL ? "camera.assigned" : "camera.unassigned",
            "camera", col(res, C_ID),
            now != NULL ? sp_arena_printf(spbus_req_arena(req), "{\"lotId\":\"%s\"}", now) : NULL);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, col(up, C_CLIENT), "camera", col(up, C_ID), "updated", now);
        reply_row(req, up);
    }
    PQclear(res);
    PQclear(up);
    return SP_OK;
}

/* DeleteCamera: an admin, or the client's manager; soft, the code is free again. */
static sp_status delete_camera(spbus_req *req)
{
    const Sp__Catalog__V1__DeleteCameraRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = camera_or_reply(&res, req, db, in->id, true);
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        const char *params[] = {col(res, C_INTERNAL)};
        s = spdb_exec(db, sql_delete, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "delete_camera");
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, col(res, C_CLIENT), "camera", col(res, C_ID), "deleted",
                      col(res, C_LOT));
        Sp__Catalog__V1__DeleteCameraReply out = SP__CATALOG__V1__DELETE_CAMERA_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    PQclear(res);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"CreateCamera", create_camera, &sp__catalog__v1__create_camera_request__descriptor, NULL},
    {"ListCameras", list_cameras, &sp__catalog__v1__list_cameras_request__descriptor, NULL},
    {"GetCamera", get_camera, &sp__catalog__v1__get_camera_request__descriptor, NULL},
    {"UpdateCamera", update_camera, &sp__catalog__v1__update_camera_request__descriptor, NULL},
    {"DeleteCamera", delete_camera, &sp__catalog__v1__delete_camera_request__descriptor, NULL},
};

void cameras_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
