/* status.c -- sp.status.v1.* (bus.md): the current status of slots and when cameras last
 * reported, for catalog's answers. Services only. Ends with status_register(). */
#include <libpq-fe.h>
#include <stdlib.h>

#include "projection.h"
#include "spcrypto.h"

static const char *sql_statuses =
    "SELECT slot_id::text, status, vehicle, (extract(epoch FROM changed_at) * 1000000)::bigint"
    " FROM status.slot_status WHERE slot_id = ANY($1::uuid[]) AND NOT deleted";

static const char *sql_cameras =
    "SELECT h.camera_id::text, (extract(epoch FROM h.last_seen_at) * 1000000)::bigint,"
    " h.last_seen_at >= now() - COALESCE(NULLIF(l.unknown_after_s, 0), 120) * interval '1 second'"
    " FROM status.camera_heartbeats h LEFT JOIN status.lots l ON l.lot_id = h.lot_id"
    " WHERE h.camera_id = ANY($1::uuid[])";

/* The ids of 'ids' that are UUIDs, as an array literal (NULL on OOM; free 'a'). */
static const char *id_array(prj_arr *a, char **ids, size_t n)
{
    prj_arr_start(a);
    for (size_t i = 0; i < n; i++)
        if (spcrypto_uuid_valid(ids[i])) prj_arr_str(a, ids[i]);
    return prj_arr_end(a);
}

static sp_status get_slot_statuses(spbus_req *req)
{
    const Sp__Status__V1__GetSlotStatusesRequest *in = (const void *)spbus_req_input(req);
    spdb *db = NULL;
    PGresult *res = NULL;
    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_SERVICE, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;
    if (in->n_slot_ids > PRJ_MAX_IDS)
        return spsvc_fail(req, SP_ERR_PAYLOAD_TOO_LARGE, "at most 1,000 slot ids");
    prj_arr ids;
    const char *p[] = {id_array(&ids, in->slot_ids, in->n_slot_ids)};
    s = p[0] != NULL ? spdb_read(&res, db, sql_statuses, 1, p) : SP_ERR_INTERNAL;
    prj_arr_free(&ids);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "get_slot_statuses");
    size_t n = (size_t)PQntuples(res);
    Sp__Status__V1__SlotStatus **items = (Sp__Status__V1__SlotStatus **)spsvc_items_or_reply(
        req, &sp__status__v1__slot_status__descriptor, n);
    if (items != NULL) {
        for (size_t i = 0; i < n; i++) {
            int r = (int)i;
            items[i]->slot_id = PQgetvalue(res, r, 0);
            items[i]->status = (char *)prj_status_name(atoi(PQgetvalue(res, r, 1)));
            if (!PQgetisnull(res, r, 2))
                items[i]->vehicle = (char *)prj_vehicle_name(atoi(PQgetvalue(res, r, 2)));
            items[i]->has_changed_at = !PQgetisnull(res, r, 3);
            items[i]->changed_at = spsvc_pg_int64(PQgetvalue(res, r, 3));
        }
        Sp__Status__V1__GetSlotStatusesReply out = SP__STATUS__V1__GET_SLOT_STATUSES_REPLY__INIT;
        out.n_items = n;
        out.items = items;
        spbus_reply(req, &out.base);
    }
    PQclear(res);
    return SP_OK;
}

static sp_status get_camera_statuses(spbus_req *req)
{
    const Sp__Status__V1__GetCameraStatusesRequest *in = (const void *)spbus_req_input(req);
    spdb *db = NULL;
    PGresult *res = NULL;
    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_SERVICE, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;
    if (in->n_camera_ids > PRJ_MAX_IDS)
        return spsvc_fail(req, SP_ERR_PAYLOAD_TOO_LARGE, "at most 1,000 camera ids");
    prj_arr ids;
    const char *p[] = {id_array(&ids, in->camera_ids, in->n_camera_ids)};
    s = p[0] != NULL ? spdb_read(&res, db, sql_cameras, 1, p) : SP_ERR_INTERNAL;
    prj_arr_free(&ids);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "get_camera_statuses");
    size_t n = (size_t)PQntuples(res);
    Sp__Status__V1__CameraStatus **items = (Sp__Status__V1__CameraStatus **)spsvc_items_or_reply(
        req, &sp__status__v1__camera_status__descriptor, n);
    if (items != NULL) {
        for (size_t i = 0; i < n; i++) {
            int r = (int)i;
            items[i]->camera_id = PQgetvalue(res, r, 0);
            items[i]->has_last_seen_at = items[i]->has_online = 1;
            items[i]->last_seen_at = spsvc_pg_int64(PQgetvalue(res, r, 1));
            items[i]->online = PQgetvalue(res, r, 2)[0] == 't';
        }
        Sp__Status__V1__GetCameraStatusesReply out =
            SP__STATUS__V1__GET_CAMERA_STATUSES_REPLY__INIT;
        out.n_items = n;
        out.items = items;
        spbus_reply(req, &out.base);
    }
    PQclear(res);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"GetCameraStatuses", get_camera_statuses,
     &sp__status__v1__get_camera_statuses_request__descriptor, NULL},
    {"GetSlotStatuses", get_slot_statuses, &sp__status__v1__get_slot_statuses_request__descriptor,
     NULL},
};

void status_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
