/* lots.c -- the parking areas of an establishment: CreateLot (optionally with its slots,
 * all or nothing), ListLots, GetLot, UpdateLot, DeleteLot (soft, with its slots). Ends with
 * lots_register(). */
#include <stdio.h>
#include <string.h>

#include "catalog.h"
#include "spcrypto.h"

#define LOT_COLS                                                                                   \
    "l.public_id::text, e.public_id::text, l.client_id::text, l.lot_code, l.name,"                 \
    " l.debounce_ms, l.unknown_after_s,"                                                           \
    " (SELECT count(*) FROM catalog.slots s WHERE s.lot_id = l.id AND s.deleted_at IS NULL)::int," \
    " " CAT_US("l.created_at") ", " CAT_US("l.updated_at") ", l.id"
#define LOT_FROM " catalog.lots l JOIN catalog.establishments e ON e.id = l.establishment_id"

static const char *sql_by_id =
    "SELECT " LOT_COLS " FROM" LOT_FROM " WHERE l.public_id = $1::uuid AND l.deleted_at IS NULL";
static const char *sql_by_id_lock =
    "SELECT " LOT_COLS " FROM" LOT_FROM " WHERE l.public_id = $1::uuid AND l.deleted_at IS NULL"
    " FOR UPDATE OF l";
static const char *sql_by_key = "SELECT " LOT_COLS " FROM" LOT_FROM " WHERE l.create_key = $1";
static const char *sql_by_internal = "SELECT " LOT_COLS " FROM" LOT_FROM " WHERE l.id = $1::bigint";

static const char *sql_insert =
    "INSERT INTO catalog.lots (establishment_id, client_id, lot_code, name, debounce_ms,"
    "   unknown_after_s, create_key)"
    " VALUES ($1::bigint, $2::uuid, $3, $4, COALESCE($5::int, 0),"
    "   COALESCE($6::int, " CAT_UNKNOWN_AFTER_DEFAULT_SQL "), $7) RETURNING id::text";

/* $1 the establishment (internal id), $2/$3 the cursor, $4 page size + 1 */
static const char *sql_list =
    "SELECT " LOT_COLS " FROM" LOT_FROM " WHERE l.establishment_id = $1::bigint"
    "   AND l.deleted_at IS NULL"
    "   AND ($2::bigint IS NULL OR (l.created_at, l.id) >"
    "        ('epoch'::timestamptz + $2::bigint * interval '1 microsecond', $3::bigint))"
    " ORDER BY l.created_at, l.id LIMIT $4::int";

/* $5: name cleared */
static const char *sql_update =
    "UPDATE catalog.lots l SET name = CASE WHEN $5::bool THEN NULL ELSE COALESCE($2, l.name) END,"
    "   debounce_ms = COALESCE($3::int, l.debounce_ms),"
    "   unknown_after_s = COALESCE($4::int, l.unknown_after_s), updated_at = now()"
    " WHERE l.id = $1::bigint";

static const char *sql_delete =
    "UPDATE catalog.lots SET deleted_at = now(), updated_at = now() WHERE id = $1::bigint";
static const char *sql_unassign_cameras =
    "UPDATE catalog.cameras SET lot_id = NULL, updated_at = now()"
    " WHERE lot_id = $1::bigint AND deleted_at IS NULL RETURNING public_id::text";
static const char *sql_delete_slots =
    "UPDATE catalog.slots SET deleted_at = now(), updated_at = now()"
    " WHERE lot_id = $1::bigint AND deleted_at IS NULL";

static void from_row(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    Sp__Catalog__V1__LotReply *l = (Sp__Catalog__V1__LotReply *)m;
    (void)req;
    l->id = PQgetvalue(res, row, CAT_L_ID);
    l->establishment_id = PQgetvalue(res, row, CAT_L_ESTABLISHMENT);
    l->client_id = PQgetvalue(res, row, CAT_L_CLIENT);
    l->lot_code = PQgetvalue(res, row, CAT_L_CODE);
    l->name = PQgetisnull(res, row, CAT_L_NAME) ? NULL : PQgetvalue(res, row, CAT_L_NAME);
    l->has_debounce_ms = l->has_unknown_after_s = l->has_slot_count = 1;
    l->debounce_ms = (int32_t)spsvc_pg_int64(PQgetvalue(res, row, CAT_L_DEBOUNCE));
    l->unknown_after_s = (int32_t)spsvc_pg_int64(PQgetvalue(res, row, CAT_L_UNKNOWN_AFTER));
    l->slot_count = (int32_t)spsvc_pg_int64(PQgetvalue(res, row, CAT_L_SLOT_COUNT));
    l->has_created_at = l->has_updated_at = 1;
    l->created_at = spsvc_pg_int64(PQgetvalue(res, row, CAT_L_CREATED));
    l->updated_at = spsvc_pg_int64(PQgetvalue(res, row, CAT_L_UPDATED));
}

static sp_status reply_row(spbus_req *req, PGresult *res)
{
    Sp__Catalog__V1__LotReply l = SP__CATALOG__V1__LOT_REPLY__INIT;
    from_row(&l.base, res, 0, req);
    return spbus_reply(req, &l.base);
}

/* Reads the lot of internal id 'id' (in the caller's transaction) and replies it. */
static sp_status reply_by_internal(PGresult **res, spbus_req *req, spdb *db, const char *id)
{
    const char *params[] = {id};
    sp_status s = spdb_query(res, db, sql_by_internal, 1, params);
    if (s == SP_OK && PQntuples(*res) != 1) s = SP_ERR_INTERNAL;
    return s == SP_OK ? SP_OK : spsvc_db_error_reply(req, s, "lot_by_id");
}

sp_status cat_lot_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id, bool lock)
{
    return spsvc_row_or_reply(res, req, db, lock ? sql_by_id_lock : sql_by_id, id, CAT_L_CLIENT,
                              "lot");
}

static const char *check_range(bool has, int32_t v, int32_t max)
{
    if (!has || (v >= 0 && v <= max)) return NULL;
    return max == CAT_DEBOUNCE_MAX ? "must be 0..60000" : "must be 0..86400";
}

static const char *int_param(spbus_req *req, bool has, int32_t v)
{
    return has ? sp_arena_printf(spbus_req_arena(req), "%d", (int)v) : NULL;
}

/* CreateLot: {lotCode, name?, debounceMs?, unknownAfterS?, slots?} in establishment {id}
 * -> the lot with its slotCount. Admins (and tenancy approving a request, idempotent by
 * its key). 409 when the lotCode is taken in the client or a slotCode repeats; nothing is
 * created then. */
static sp_status create_lot(spbus_req *req)
{
    const Sp__Catalog__V1__CreateLotRequest *in = (const void *)spbus_req_input(req);
    const char *key = cat_create_key(req), **types = NULL;
    PGresult *est = NULL, *ins = NULL, *slots = NULL, *res = NULL;
    spdb *db = NULL;
    spsvc_fields f;

    sp_status s = cat_require_admin_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK && key != NULL) {
        s = cat_find_created(req, db, sql_by_key, key, reply_row);
        if (s != SP_ERR_NOT_FOUND) return SP_OK;
        s = SP_OK;
    }
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = cat_establishment_or_reply(&est, req, db, in->id, true);
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "lotCode", cat_check_code(in->lot_code, CAT_LOT_CODE_MAX));
        spsvc_fields_add(&f, "name", spsvc_check_opt_text(in->name, CAT_NAME_MAX));
        spsvc_fields_add(&f, "debounceMs",
                         check_range(in->has_debounce_ms, in->debounce_ms, CAT_DEBOUNCE_MAX));
        spsvc_fields_add(
            &f, "unknownAfterS",
            check_range(in->has_unknown_after_s, in->unknown_after_s, CAT_UNKNOWN_AFTER_MAX));
        if (in->n_slots > CAT_SLOTS_MAX) spsvc_fields_add(&f, "slots", "at most 1000 slots");
        if (in->n_slots <= CAT_SLOTS_MAX)
            s = cat_check_slots(&f, &types, req, db, in->slots, in->n_slots, "slots");
        if (s == SP_OK) s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK && spsvc_validate_only(req)) {
        spsvc_rollback(db);
        PQclear(est);
        Sp__Catalog__V1__LotReply none = SP__CATALOG__V1__LOT_REPLY__INIT;
        return spbus_reply(req, &none.base);
    }
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(est, 0, CAT_E_INTERNAL),
                                PQgetvalue(est, 0, CAT_E_CLIENT),
                                in->lot_code,
                                in->name,
                                int_param(req, in->has_debounce_ms, in->debounce_ms),
                                int_param(req, in->has_unknown_after_s, in->unknown_after_s),
                                key};
        s = spdb_query(&ins, db, sql_insert, 7, params);
        if (s == SP_ERR_CONFLICT) {
            PQclear(est);
            cat_conflict_reply(req, db, sql_by_key, key, reply_row,
                               "a lot of this client has this lotCode", "lotCode");
            return SP_OK;
        }
        if (s != SP_OK) spsvc_db_error_reply(req, s, "insert_lot");
    }
    if (s == SP_OK && in->n_slots > 0)
        s = cat_insert_slots_or_reply(&slots, req, db, PQgetvalue(ins, 0, 0), in->slots, types,
                                      in->n_slots);
    if (s == SP_OK) s = reply_by_internal(&res, req, db, PQgetvalue(ins, 0, 0));
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, PQgetvalue(res, 0, CAT_L_CLIENT), "lot", PQgetvalue(res, 0, CAT_L_ID),
                      "created", PQgetvalue(res, 0, CAT_L_ESTABLISHMENT));
        sp_log_info(spbus_req_id(req), "lot_created", "lotId", PQgetvalue(res, 0, CAT_L_ID));
        reply_row(req, res);
    }
    PQclear(est);
    PQclear(ins);
    PQclear(slots);
    PQclear(res);
    return SP_OK;
}

/* ListLots: the lots of establishment {id}, for an admin or its client. */
static sp_status list_lots(spbus_req *req)
{
    const Sp__Catalog__V1__ListLotsRequest *in = (const void *)spbus_req_input(req);
    spsvc_page pg;
    PGresult *est = NULL, *res = NULL;
    spdb *db = NULL;

    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = cat_establishment_or_reply(&est, req, db, in->id, false);
    if (s == SP_OK) s = spsvc_page_or_reply(&pg, req, in->has_limit, in->limit, in->cursor);
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(est, 0, CAT_E_INTERNAL), spsvc_page_after(&pg), pg.id_s,
                                pg.fetch_s};
        s = spdb_query(&res, db, sql_list, 4, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "list_lots");
    }
    if (s == SP_OK) {
        spsvc_reply_page(req, &pg, res, CAT_L_CREATED, CAT_L_INTERNAL,
                         &sp__catalog__v1__list_lots_reply__descriptor, from_row);
    }
    PQclear(est);
    PQclear(res);
    return SP_OK;
}

static sp_status get_lot(spbus_req *req)
{
    const Sp__Catalog__V1__GetLotRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = cat_lot_or_reply(&res, req, db, in->id, false);
    if (s == SP_OK) reply_row(req, res);
    PQclear(res);
    return SP_OK;
}

/* UpdateLot: {name, debounceMs, unknownAfterS} of an admin or the client's manager; name
 * may be cleared. */
static sp_status update_lot(spbus_req *req)
{
    const Sp__Catalog__V1__UpdateLotRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL, *up = NULL;
    spdb *db = NULL;
    bool clear_name = false;
    spsvc_fields f;

    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = cat_lot_or_reply(&res, req, db, in->id, true);
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "name", spsvc_check_opt_text(in->name, CAT_NAME_MAX));
        spsvc_fields_add(&f, "debounceMs",
                         check_range(in->has_debounce_ms, in->debounce_ms, CAT_DEBOUNCE_MAX));
        spsvc_fields_add(
            &f, "unknownAfterS",
            check_range(in->has_unknown_after_s, in->unknown_after_s, CAT_UNKNOWN_AFTER_MAX));
        for (size_t i = 0; i < in->n_cleared; i++) {
            bool name = strcmp(in->cleared[i], "name") == 0;
            clear_name = clear_name || name;
            spsvc_fields_add(&f, in->cleared[i], name ? NULL : "must not be null");
        }
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(res, 0, CAT_L_INTERNAL), in->name,
                                int_param(req, in->has_debounce_ms, in->debounce_ms),
                                int_param(req, in->has_unknown_after_s, in->unknown_after_s),
                                clear_name ? "true" : "false"};
        s = spdb_exec(db, sql_update, 5, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "update_lot");
    }
    if (s == SP_OK) s = reply_by_internal(&up, req, db, PQgetvalue(res, 0, CAT_L_INTERNAL));
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, PQgetvalue(up, 0, CAT_L_CLIENT), "lot", PQgetvalue(up, 0, CAT_L_ID),
                      "updated", PQgetvalue(up, 0, CAT_L_ESTABLISHMENT));
        reply_row(req, up);
    }
    PQclear(res);
    PQclear(up);
    return SP_OK;
}

/* DeleteLot: soft, with its slots (codes free again). Admins only. */
static sp_status delete_lot(spbus_req *req)
{
    const Sp__Catalog__V1__DeleteLotRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL, *cams = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_admin_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = cat_lot_or_reply(&res, req, db, in->id, true);
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(res, 0, CAT_L_INTERNAL)};
        s = spdb_query(&cams, db, sql_unassign_cameras, 1, params);
        if (s == SP_OK) s = spdb_exec(db, sql_delete_slots, 1, params);
        if (s == SP_OK) s = spdb_exec(db, sql_delete, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "delete_lot");
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        for (int i = 0; i < PQntuples(cams); i++)
            spsvc_changed(req, PQgetvalue(res, 0, CAT_L_CLIENT), "camera", PQgetvalue(cams, i, 0),
                          "unassigned", NULL);
        spsvc_changed(req, PQgetvalue(res, 0, CAT_L_CLIENT), "lot", PQgetvalue(res, 0, CAT_L_ID),
                      "deleted", PQgetvalue(res, 0, CAT_L_ESTABLISHMENT));
        sp_log_info(spbus_req_id(req), "lot_deleted", "lotId", PQgetvalue(res, 0, CAT_L_ID));
        Sp__Catalog__V1__DeleteLotReply out = SP__CATALOG__V1__DELETE_LOT_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    PQclear(res);
    PQclear(cams);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"CreateLot", create_lot, &sp__catalog__v1__create_lot_request__descriptor, NULL},
    {"ListLots", list_lots, &sp__catalog__v1__list_lots_request__descriptor, NULL},
    {"GetLot", get_lot, &sp__catalog__v1__get_lot_request__descriptor, NULL},
    {"UpdateLot", update_lot, &sp__catalog__v1__update_lot_request__descriptor, NULL},
    {"DeleteLot", delete_lot, &sp__catalog__v1__delete_lot_request__descriptor, NULL},
};

void lots_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
