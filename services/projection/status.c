/* status.c -- sp.status.v1.* (bus.md): the current status of slots and when cameras last
 * reported, for catalog's answers (services only); the status of a lot and of an
 * establishment (public data: the gateway's cache misses, reads.c); a slot's history and
 * a lot's occupancy series (admins, and a client_admin for its own client). Ends with
 * status_register(). */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projection.h"
#include "sp/catalog/v1/catalog.pb-c.h"
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

/* ---- lot and establishment status: public data, for the gateway's cache misses ---------- */

static sp_status lot_state_or_reply(spbus_req *req, prj_lot_state st, const char *what)
{
    if (st == PRJ_LOT_GONE) return spsvc_fail(req, SP_ERR_NOT_FOUND, what);
    if (st == PRJ_LOT_UNAVAILABLE)
        return spsvc_fail(req, SP_ERR_UNAVAILABLE, "catalog did not answer, retry");
    return SP_OK;
}

static sp_status get_lot_status(spbus_req *req)
{
    const Sp__Status__V1__GetLotStatusRequest *in = (const void *)spbus_req_input(req);
    prj_svc *p = spsvc_req_user(req);
    spdb *db = NULL;
    if (spsvc_db_or_reply(&db, req) != SP_OK) return SP_OK;
    sp_status s =
        lot_state_or_reply(req, prj_lot_ensure(p, db, in->lot_id, false), "lot not found");
    if (s != SP_OK) return SP_OK;
    Sp__Status__V1__LotStatusReply *doc = NULL;
    s = prj_lot_snapshot(&doc, spbus_req_arena(req), db, spsvc_redis(req), in->lot_id);
    if (s == SP_ERR_NOT_FOUND) return spsvc_fail(req, s, "lot not found");
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "get_lot_status");
    spbus_reply(req, &doc->base);
    return SP_OK;
}

static sp_status get_establishment_status(spbus_req *req)
{
    const Sp__Status__V1__GetEstablishmentStatusRequest *in = (const void *)spbus_req_input(req);
    prj_svc *p = spsvc_req_user(req);
    spdb *db = NULL;
    if (spsvc_db_or_reply(&db, req) != SP_OK) return SP_OK;
    sp_status s = lot_state_or_reply(req, prj_establishment_ensure(p, db, in->establishment_id),
                                     "establishment not found");
    if (s != SP_OK) return SP_OK;
    Sp__Status__V1__EstablishmentStatusReply *doc = NULL;
    s = prj_establishment_snapshot(&doc, spbus_req_arena(req), db, spsvc_redis(req),
                                   in->establishment_id);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "get_establishment_status");
    spbus_reply(req, &doc->base);
    return SP_OK;
}

/* ---- history and occupancy: a client's own data ----------------------------------------- */

#define READERS (SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN | SPSVC_ROLE_SERVICE)
#define TS(x) "timestamptz 'epoch' + " x " * interval '1 microsecond'"
#define US(x) "(extract(epoch FROM " x ") * 1000000)::bigint"

static const char *sql_slot_client =
    "SELECT l.client_id::text FROM status.slot_status s JOIN status.lots l ON l.lot_id = s.lot_id"
    " WHERE s.slot_id = $1::uuid AND NOT s.deleted AND NOT l.deleted";
static const char *sql_lot_client =
    "SELECT client_id::text FROM status.lots WHERE lot_id = $1::uuid AND NOT deleted";

/* The client of the live slot or lot 'id' (sql: one of the two above) in the caller's
 * scope, or a reply: 404 for an id the projection does not hold or another tenant's. */
static sp_status scoped_or_reply(spbus_req *req, spdb *db, const char *sql, const char *id,
                                 const char *what)
{
    PGresult *res = NULL;
    const char *p[] = {id};
    sp_status s = spdb_read(&res, db, sql, 1, p);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, what);
    s = PQntuples(res) == 1 ? spsvc_scope_or_reply(req, PQgetvalue(res, 0, 0), what)
                            : spsvc_fail(req, SP_ERR_NOT_FOUND, what);
    PQclear(res);
    return s;
}

/* The live slot 'slot_id' in the caller's scope (scoped_or_reply), its lot loaded first
 * when the projection holds no row of it (catalog tells which lot it is in). */
static sp_status slot_scoped_or_reply(spbus_req *req, prj_svc *p, spdb *db, const char *slot_id)
{
    PGresult *res = NULL;
    const char *sp[] = {slot_id};
    sp_status s = spdb_read(&res, db, sql_slot_client, 1, sp);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "slot_lookup");
    if (PQntuples(res) == 1) {
        s = spsvc_scope_or_reply(req, PQgetvalue(res, 0, 0), "slot not found");
        PQclear(res);
        return s;
    }
    PQclear(res);
    Sp__Catalog__V1__GetSlotRequest in = SP__CATALOG__V1__GET_SLOT_REQUEST__INIT;
    in.id = (char *)slot_id;
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    s = spsvc_call(&out, &err, spsvc_bus(p->kit), NULL, "catalog", "GetSlot", &in.base,
                   &sp__catalog__v1__slot_reply__descriptor, PRJ_CALL_MS, spbus_req_arena(req));
    if (s == SP_ERR_NOT_FOUND) return spsvc_fail(req, s, "slot not found");
    if (s != SP_OK) return lot_state_or_reply(req, PRJ_LOT_UNAVAILABLE, NULL);
    const Sp__Catalog__V1__SlotReply *slot = (const void *)out;
    s = lot_state_or_reply(req, prj_lot_ensure(p, db, slot->lot_id, true), "slot not found");
    if (s != SP_OK) return s;
    return scoped_or_reply(req, db, sql_slot_client, slot_id, "slot not found");
}

static const char *sql_history =
    "SELECT h.status, h.previous, h.vehicle, h.confidence, " US("h.occurred_at") ", " US(
        "h.recorded_at") ", h.event_id::text, h.camera_id::text, h.id"
                         " FROM status.slot_status_history h WHERE h.slot_id = $1::uuid"
                         " AND ($2::bigint IS NULL OR h.occurred_at >= " TS(
                             "$2") ")"
                                   " AND ($3::bigint IS NULL OR h.occurred_at < " TS(
                                       "$3") ")"
                                             " AND ($4::bigint IS NULL OR (h.occurred_at, h.id) < "
                                             "(" TS("$4") ", $5::bigint))"
                                                          " ORDER BY h.occurred_at DESC, h.id DESC "
                                                          "LIMIT $6::int";
enum { H_STATUS, H_PREV, H_VEHICLE, H_CONF, H_OCC, H_REC, H_EVENT, H_CAMERA, H_ID };

static void history_item(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    (void)req;
    Sp__Status__V1__SlotHistoryItem *it = (Sp__Status__V1__SlotHistoryItem *)m;
    int status = atoi(PQgetvalue(res, row, H_STATUS));
    it->status = (char *)prj_status_name(status);
    it->previous_status = (char *)prj_status_name(atoi(PQgetvalue(res, row, H_PREV)));
    if (status != 0 && !PQgetisnull(res, row, H_VEHICLE))
        it->vehicle = (char *)prj_vehicle_name(atoi(PQgetvalue(res, row, H_VEHICLE)));
    it->has_confidence = !PQgetisnull(res, row, H_CONF);
    if (it->has_confidence) it->confidence = strtod(PQgetvalue(res, row, H_CONF), NULL);
    it->has_occurred_at = it->has_recorded_at = 1;
    it->occurred_at = spsvc_pg_int64(PQgetvalue(res, row, H_OCC));
    it->recorded_at = spsvc_pg_int64(PQgetvalue(res, row, H_REC));
    it->event_id = PQgetvalue(res, row, H_EVENT);
    if (!PQgetisnull(res, row, H_CAMERA)) it->camera_id = PQgetvalue(res, row, H_CAMERA);
}

static sp_status get_slot_history(spbus_req *req)
{
    const Sp__Status__V1__GetSlotHistoryRequest *in = (const void *)spbus_req_input(req);
    prj_svc *p = spsvc_req_user(req);
    spdb *db = NULL;
    spsvc_page pg;
    PGresult *res = NULL;
    sp_status s = spsvc_require_role_or_reply(req, READERS, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK && !spcrypto_uuid_valid(in->slot_id))
        s = spsvc_fail(req, SP_ERR_NOT_FOUND, "slot not found");
    if (s == SP_OK) s = slot_scoped_or_reply(req, p, db, in->slot_id);
    if (s == SP_OK) s = spsvc_page_or_reply(&pg, req, in->has_limit, in->limit, in->cursor);
    if (s == SP_OK && in->has_from && in->has_to && in->from >= in->to) {
        spsvc_fields f;
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "from", "must be before to");
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s != SP_OK) return SP_OK;
    char from[24], to[24];
    snprintf(from, sizeof(from), "%lld", (long long)in->from);
    snprintf(to, sizeof(to), "%lld", (long long)in->to);
    const char *params[] = {in->slot_id,
                            in->has_from ? from : NULL,
                            in->has_to ? to : NULL,
                            spsvc_page_after(&pg),
                            pg.id_s,
                            pg.fetch_s};
    s = spdb_read(&res, db, sql_history, 6, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "get_slot_history");
    spsvc_reply_page(req, &pg, res, H_OCC, H_ID,
                     &sp__status__v1__list_slot_history_reply__descriptor, history_item);
    PQclear(res);
    return SP_OK;
}

/* The occupancy series: each active slot's status over time from its history (the
 * status before the first bucket from its last change before it, UNKNOWN when it has
 * none), cut into buckets; the share of occupied slot-time per bucket and the slots in
 * each status at the bucket's end. */
static const char *sql_occupancy =
    "WITH lim AS (SELECT date_bin($4::bigint * interval '1 second', " TS(
        "$2::bigint") ","
                      "   timestamptz 'epoch') AS f, LEAST(" TS(
                          "$3::bigint") ", now()) AS t),"
                                        " b AS (SELECT g AS t0, LEAST(g + $4::bigint * interval '1 "
                                        "second', lim.t) AS t1 FROM lim,"
                                        "   generate_series(lim.f, lim.t - interval '1 "
                                        "microsecond', $4::bigint * interval '1 second') g),"
                                        " s AS (SELECT slot_id FROM status.slot_status WHERE "
                                        "lot_id = $1::uuid AND active"
                                        "   AND NOT deleted),"
                                        " seg AS (SELECT s.slot_id, lim.f AS at, 0 AS k, 0::bigint "
                                        "AS q, 0::bigint AS id,"
                                        "   COALESCE((SELECT h.status FROM "
                                        "status.slot_status_history h WHERE h.slot_id = s.slot_id"
                                        "     AND h.occurred_at < lim.f ORDER BY h.occurred_at "
                                        "DESC, h.sequence DESC, h.id DESC"
                                        "     LIMIT 1), 0) AS st FROM s, lim"
                                        "   UNION ALL SELECT h.slot_id, h.occurred_at, 1, "
                                        "h.sequence, h.id, h.status"
                                        "   FROM status.slot_status_history h JOIN s ON s.slot_id "
                                        "= h.slot_id, lim"
                                        "   WHERE h.lot_id = $1::uuid AND h.occurred_at >= lim.f "
                                        "AND h.occurred_at < lim.t),"
                                        " iv AS (SELECT st, at AS a, COALESCE(lead(at) OVER "
                                        "(PARTITION BY slot_id"
                                        "   ORDER BY at, k, q, id), (SELECT t FROM lim)) AS z FROM "
                                        "seg)"
                                        " SELECT " US(
                                            "b.t0") ","
                                                    " COALESCE(sum(extract(epoch FROM LEAST(iv.z, "
                                                    "b.t1) - GREATEST(iv.a, b.t0)))"
                                                    "   FILTER (WHERE iv.st = 2), 0)"
                                                    "   / NULLIF(extract(epoch FROM b.t1 - b.t0) * "
                                                    "(SELECT count(*) FROM s), 0),"
                                                    " count(*) FILTER (WHERE iv.st = 2 AND iv.a < "
                                                    "b.t1 AND iv.z >= b.t1),"
                                                    " count(*) FILTER (WHERE iv.st = 1 AND iv.a < "
                                                    "b.t1 AND iv.z >= b.t1),"
                                                    " count(*) FILTER (WHERE iv.st = 0 AND iv.a < "
                                                    "b.t1 AND iv.z >= b.t1)"
                                                    " FROM b LEFT JOIN iv ON iv.a < b.t1 AND iv.z "
                                                    "> b.t0"
                                                    " GROUP BY b.t0, b.t1 ORDER BY b.t0";

#define DAY_US INT64_C(86400000000)
#define OCCUPANCY_MAX_POINTS 2000

static sp_status get_occupancy(spbus_req *req)
{
    const Sp__Status__V1__GetOccupancyRequest *in = (const void *)spbus_req_input(req);
    prj_svc *p = spsvc_req_user(req);
    spdb *db = NULL;
    PGresult *res = NULL;
    sp_status s = spsvc_require_role_or_reply(req, READERS, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK)
        s = lot_state_or_reply(req, prj_lot_ensure(p, db, in->lot_id, false), "lot not found");
    if (s == SP_OK) s = scoped_or_reply(req, db, sql_lot_client, in->lot_id, "lot not found");
    if (s != SP_OK) return SP_OK;
    const char *bucket = in->bucket != NULL && in->bucket[0] != '\0' ? in->bucket : "1h";
    int64_t bucket_s = strcmp(bucket, "5m") == 0   ? 300
                       : strcmp(bucket, "1h") == 0 ? 3600
                       : strcmp(bucket, "1d") == 0 ? 86400
                                                   : 0;
    int64_t to = in->has_to ? in->to : sp_now_us();
    int64_t from = in->has_from ? in->from : to - DAY_US;
    spsvc_fields f;
    spsvc_fields_init(&f);
    if (bucket_s == 0) spsvc_fields_add(&f, "bucket", "one of 5m, 1h, 1d");
    if (from >= to) spsvc_fields_add(&f, "from", "must be before to");
    if (bucket_s > 0 && from < to && (to - from) / (bucket_s * 1000000) >= OCCUPANCY_MAX_POINTS)
        spsvc_fields_add(&f, "to", "at most 2000 buckets: a larger bucket or a shorter span");
    if (spsvc_fields_or_reply(req, &f) != SP_OK) return SP_OK;
    char fs[24], ts[24], bs[24];
    snprintf(fs, sizeof(fs), "%lld", (long long)from);
    snprintf(ts, sizeof(ts), "%lld", (long long)to);
    snprintf(bs, sizeof(bs), "%lld", (long long)bucket_s);
    const char *params[] = {in->lot_id, fs, ts, bs};
    s = spdb_read(&res, db, sql_occupancy, 4, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "get_occupancy");
    size_t n = (size_t)PQntuples(res);
    Sp__Status__V1__OccupancyPoint **pts = (Sp__Status__V1__OccupancyPoint **)spsvc_items_or_reply(
        req, &sp__status__v1__occupancy_point__descriptor, n);
    if (pts != NULL) {
        for (size_t i = 0; i < n; i++) {
            int r = (int)i;
            pts[i]->has_at = pts[i]->has_occupancy = pts[i]->has_occupied = 1;
            pts[i]->has_free = pts[i]->has_unknown = 1;
            pts[i]->at = spsvc_pg_int64(PQgetvalue(res, r, 0));
            pts[i]->occupancy = PQgetisnull(res, r, 1) ? 0 : strtod(PQgetvalue(res, r, 1), NULL);
            pts[i]->occupied = atoi(PQgetvalue(res, r, 2));
            pts[i]->free = atoi(PQgetvalue(res, r, 3));
            pts[i]->unknown = atoi(PQgetvalue(res, r, 4));
        }
        Sp__Status__V1__OccupancyReply out = SP__STATUS__V1__OCCUPANCY_REPLY__INIT;
        out.lot_id = in->lot_id;
        out.bucket = (char *)bucket;
        out.n_points = n;
        out.points = pts;
        spbus_reply(req, &out.base);
    }
    PQclear(res);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"GetCameraStatuses", get_camera_statuses,
     &sp__status__v1__get_camera_statuses_request__descriptor, NULL},
    {"GetEstablishmentStatus", get_establishment_status,
     &sp__status__v1__get_establishment_status_request__descriptor, NULL},
    {"GetLotStatus", get_lot_status, &sp__status__v1__get_lot_status_request__descriptor, NULL},
    {"GetOccupancy", get_occupancy, &sp__status__v1__get_occupancy_request__descriptor, NULL},
    {"GetSlotHistory", get_slot_history, &sp__status__v1__get_slot_history_request__descriptor,
     NULL},
    {"GetSlotStatuses", get_slot_statuses, &sp__status__v1__get_slot_statuses_request__descriptor,
     NULL},
};

void status_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
