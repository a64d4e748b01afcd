/* slots.c -- the parking spaces of a lot: CreateSlots (one, or 1..1,000 all or nothing),
 * ListSlots, GetSlot, UpdateSlot, DeleteSlot (soft: the code is free again). The current
 * status of a slot is the projection's (sp.status.v1.GetSlotStatuses, asked for the slots
 * of each answer); until a camera has reported it, a slot is UNKNOWN with no vehicle and
 * no changedAt, and so it is while the projection does not answer (logged). Ends with
 * slots_register(). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "sp/status/v1/status.pb-c.h"
#include "spcrypto.h"

/* The statuses of the slots being answered on this worker (statuses_for), read by
 * from_row. */
static __thread const Sp__Status__V1__GetSlotStatusesReply *tl_statuses;

#define SLOT_COLS                                                                                  \
    "s.public_id::text, l.public_id::text, s.slot_code, t.code, s.polygon::text, s.active,"        \
    " " CAT_US("s.created_at") ", " CAT_US("s.updated_at") ", s.id, l.client_id::text"
#define SLOT_JOIN                                                                                  \
    " JOIN catalog.slot_types t ON t.id = s.slot_type JOIN catalog.lots l ON l.id = s.lot_id"
enum {
    S_ID,
    S_LOT,
    S_CODE,
    S_TYPE,
    S_POLYGON,
    S_ACTIVE,
    S_CREATED,
    S_UPDATED,
    S_INTERNAL,
    S_CLIENT
};

static const char *sql_by_id = "SELECT " SLOT_COLS " FROM catalog.slots s" SLOT_JOIN
                               " WHERE s.public_id = $1::uuid AND s.deleted_at IS NULL";
static const char *sql_by_id_lock = "SELECT " SLOT_COLS " FROM catalog.slots s" SLOT_JOIN
                                    " WHERE s.public_id = $1::uuid AND s.deleted_at IS NULL"
                                    " FOR UPDATE OF s";

/* $1 the lot (internal id), $2 [{"c": code, "t": type id, "p": polygon?}, ...] in order */
static const char *sql_insert =
    "WITH x AS (SELECT e.v, e.n FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS e(v, n)),"
    " s AS (INSERT INTO catalog.slots (lot_id, slot_code, slot_type, polygon)"
    "   SELECT $1::bigint, x.v->>'c', (x.v->>'t')::smallint, x.v->'p' FROM x ORDER BY x.n"
    "   RETURNING *)"
    " SELECT " SLOT_COLS " FROM s" SLOT_JOIN " ORDER BY s.id";

/* the codes of $2 already live in lot $1 */
static const char *sql_taken = "SELECT slot_code FROM catalog.slots WHERE lot_id = $1::bigint"
                               " AND deleted_at IS NULL AND slot_code = ANY($2::text[]) LIMIT 1";

static const char *sql_list = "SELECT " SLOT_COLS " FROM catalog.slots s" SLOT_JOIN
                              " WHERE s.lot_id = $1::bigint AND s.deleted_at IS NULL"
                              "   AND ($2::bigint IS NULL OR (s.created_at, s.id) >"
                              "    ('epoch'::timestamptz + $2::bigint * interval '1 microsecond',"
                              "     $3::bigint))"
                              " ORDER BY s.created_at, s.id LIMIT $4::int";

static const char *sql_update =
    "WITH s AS (UPDATE catalog.slots s SET slot_type = COALESCE($2::smallint, s.slot_type),"
    "   polygon = CASE WHEN $5::bool THEN NULL ELSE COALESCE($3::jsonb, s.polygon) END,"
    "   active = COALESCE($4::bool, s.active), updated_at = now()"
    " WHERE s.id = $1::bigint RETURNING *)"
    " SELECT " SLOT_COLS " FROM s" SLOT_JOIN;

static const char *sql_delete = "UPDATE catalog.slots SET deleted_at = now(), updated_at = now()"
                                " WHERE id = $1::bigint";

static void from_row(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    Sp__Catalog__V1__SlotReply *s = (Sp__Catalog__V1__SlotReply *)m;
    (void)req;
    s->id = PQgetvalue(res, row, S_ID);
    s->lot_id = PQgetvalue(res, row, S_LOT);
    s->slot_code = PQgetvalue(res, row, S_CODE);
    s->slot_type = PQgetvalue(res, row, S_TYPE);
    s->polygon_json = PQgetisnull(res, row, S_POLYGON) ? NULL : PQgetvalue(res, row, S_POLYGON);
    s->has_active = 1;
    s->active = strcmp(PQgetvalue(res, row, S_ACTIVE), "t") == 0;
    s->status = "UNKNOWN"; /* never reported, or the projection did not answer */
    for (size_t i = 0; tl_statuses != NULL && i < tl_statuses->n_items; i++) {
        const Sp__Status__V1__SlotStatus *st = tl_statuses->items[i];
        if (st->slot_id == NULL || strcmp(st->slot_id, s->id) != 0) continue;
        if (st->status != NULL) s->status = st->status;
        s->vehicle = st->vehicle;
        s->has_changed_at = st->has_changed_at;
        s->changed_at = st->changed_at;
        break;
    }
    s->has_created_at = s->has_updated_at = 1;
    s->created_at = spsvc_pg_int64(PQgetvalue(res, row, S_CREATED));
    s->updated_at = spsvc_pg_int64(PQgetvalue(res, row, S_UPDATED));
}

/* Asks the projection for the status of the first n rows of 'res' (tl_statuses). */
static void statuses_for(spbus_req *req, PGresult *res, int n)
{
    tl_statuses = (const void *)cat_ask_projection(
        req, "GetSlotStatuses", &sp__status__v1__get_slot_statuses_request__descriptor,
        &sp__status__v1__get_slot_statuses_reply__descriptor, res, S_ID, n);
}

static sp_status reply_row(spbus_req *req, PGresult *res)
{
    statuses_for(req, res, 1);
    Sp__Catalog__V1__SlotReply s = SP__CATALOG__V1__SLOT_REPLY__INIT;
    from_row(&s.base, res, 0, req);
    tl_statuses = NULL;
    return spbus_reply(req, &s.base);
}

/* The rows of 'res' as SlotReply items (NULL after replying 500). */
static Sp__Catalog__V1__SlotReply **items_of(spbus_req *req, PGresult *res, int n)
{
    Sp__Catalog__V1__SlotReply **items = (Sp__Catalog__V1__SlotReply **)spsvc_items_or_reply(
        req, &sp__catalog__v1__slot_reply__descriptor, (size_t)n);
    for (int i = 0; items != NULL && i < n; i++)
        from_row(&items[i]->base, res, i, req);
    return items;
}

static sp_status slot_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id, bool lock)
{
    return spsvc_row_or_reply(res, req, db, lock ? sql_by_id_lock : sql_by_id, id, S_CLIENT,
                              "slot");
}

/* Records 'reason' (when not NULL) at "<prefix>[i].<field>", or "<field>" when prefix is
 * NULL. */
static void add_at(spsvc_fields *f, spbus_req *req, const char *prefix, size_t i, const char *field,
                   const char *reason)
{
    if (reason == NULL) return;
    const char *path = prefix == NULL
                           ? field
                           : sp_arena_printf(spbus_req_arena(req), "%s[%zu].%s", prefix, i, field);
    spsvc_fields_add(f, path != NULL ? path : field, reason);
}

sp_status cat_check_slots(spsvc_fields *f, const char ***type_ids, spbus_req *req, spdb *db,
                          Sp__Catalog__V1__NewSlot *const *slots, size_t n, const char *prefix)
{
    PGresult *types = NULL;
    *type_ids = NULL;
    if (n == 0) return SP_OK;
    const char **ids = sp_arena_alloc(spbus_req_arena(req), n * sizeof(*ids));
    if (ids == NULL) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    sp_status s = spdb_query(&types, db, "SELECT code, id::text FROM catalog.slot_types", 0, NULL);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "slot_types");
    for (size_t i = 0; i < n; i++) {
        const Sp__Catalog__V1__NewSlot *sl = slots[i];
        ids[i] = NULL;
        for (int r = 0; sl->slot_type != NULL && r < PQntuples(types); r++)
            if (strcmp(PQgetvalue(types, r, 0), sl->slot_type) == 0)
                ids[i] = sp_arena_strdup(spbus_req_arena(req), PQgetvalue(types, r, 1));
        add_at(f, req, prefix, i, "slotCode", cat_check_code(sl->slot_code, CAT_SLOT_CODE_MAX));
        add_at(f, req, prefix, i, "slotType",
               sl->slot_type == NULL ? "required"
               : ids[i] == NULL      ? "unknown slot type"
                                     : NULL);
        add_at(f, req, prefix, i, "polygon", cat_check_polygon(sl->polygon_json));
    }
    PQclear(types);
    *type_ids = ids;
    return SP_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 409 naming a code given twice in 'slots' (SP_OK when none is). */
static sp_status unique_in_body_or_reply(spbus_req *req, Sp__Catalog__V1__NewSlot *const *slots,
                                         size_t n)
{
    const char **codes = sp_arena_alloc(spbus_req_arena(req), (n + 1) * sizeof(*codes));
    if (codes == NULL) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    for (size_t i = 0; i < n; i++)
        codes[i] = slots[i]->slot_code;
    qsort(codes, n, sizeof(*codes), cmp_str);
    for (size_t i = 1; i < n; i++)
        if (strcmp(codes[i - 1], codes[i]) == 0) {
            const char *msg = sp_arena_printf(spbus_req_arena(req),
                                              "slotCode %s appears twice in the body", codes[i]);
            return spsvc_fail(req, SP_ERR_CONFLICT, msg != NULL ? msg : "a slotCode repeats");
        }
    return SP_OK;
}

sp_status cat_insert_slots_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *lot,
                                    Sp__Catalog__V1__NewSlot *const *slots,
                                    const char *const *type_ids, size_t n)
{
    *res = NULL;
    if (n == 0 || type_ids == NULL) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    sp_status s = unique_in_body_or_reply(req, slots, n);
    if (s != SP_OK) return s;
    /* the codes taken in the lot, named in the answer (the unique index decides races) */
    cJSON *arr = cJSON_CreateArray(), *codes = cJSON_CreateArray();
    for (size_t i = 0; arr != NULL && codes != NULL && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(arr, o);
        cJSON_AddStringToObject(o, "c", slots[i]->slot_code);
        cJSON_AddNumberToObject(o, "t", type_ids[i] != NULL ? strtod(type_ids[i], NULL) : 0);
        if (slots[i]->polygon_json != NULL)
            cJSON_AddItemToObject(o, "p", cJSON_Parse(slots[i]->polygon_json));
        cJSON_AddItemToArray(codes, cJSON_CreateString(slots[i]->slot_code));
    }
    char *json = arr != NULL ? cJSON_PrintUnformatted(arr) : NULL;
    /* a text[] literal: the codes hold only [A-Za-z0-9_-], checked before */
    char *list = codes != NULL ? cJSON_PrintUnformatted(codes) : NULL;
    cJSON_Delete(arr);
    cJSON_Delete(codes);
    if (json == NULL || list == NULL) {
        cJSON_free(json);
        cJSON_free(list);
        return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    }
    list[0] = '{';
    list[strlen(list) - 1] = '}';
    PGresult *taken = NULL;
    const char *tp[] = {lot, list};
    s = spdb_query(&taken, db, sql_taken, 2, tp);
    if (s != SP_OK) {
        spsvc_db_error_reply(req, s, "slots_taken");
    } else if (PQntuples(taken) > 0) {
        const char *msg = sp_arena_printf(spbus_req_arena(req), "slotCode %s is taken in this lot",
                                          PQgetvalue(taken, 0, 0));
        s = spsvc_fail(req, SP_ERR_CONFLICT, msg != NULL ? msg : "a slotCode is taken");
    }
    PQclear(taken);
    if (s == SP_OK) {
        const char *params[] = {lot, json};
        s = spdb_query(res, db, sql_insert, 2, params);
        if (s == SP_ERR_CONFLICT)
            spsvc_fail(req, SP_ERR_CONFLICT, "a slotCode is taken in this lot");
        else if (s != SP_OK)
            spsvc_db_error_reply(req, s, "insert_slots");
    }
    cJSON_free(json);
    cJSON_free(list);
    return s;
}

/* CreateSlots: one slot {slotCode, slotType, polygon?} or {"slots": [...]} (1..1,000) in
 * lot {id}, all or nothing. Admins only. */
static sp_status create_slots(spbus_req *req)
{
    const Sp__Catalog__V1__CreateSlotsRequest *in = (const void *)spbus_req_input(req);
    PGresult *lot = NULL, *res = NULL;
    const char **types = NULL;
    spdb *db = NULL;
    spsvc_fields f;
    bool one = in->n_slots == 0;
    Sp__Catalog__V1__NewSlot single = SP__CATALOG__V1__NEW_SLOT__INIT;
    Sp__Catalog__V1__NewSlot *only[] = {&single};
    single.slot_code = in->slot_code;
    single.slot_type = in->slot_type;
    single.polygon_json = in->polygon_json;
    Sp__Catalog__V1__NewSlot *const *slots = one ? only : in->slots;
    size_t n = one ? 1 : in->n_slots;

    sp_status s = cat_require_admin_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = cat_lot_or_reply(&lot, req, db, in->id, true);
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        if (!one && (in->slot_code != NULL || in->slot_type != NULL || in->polygon_json != NULL))
            spsvc_fields_add(&f, "slots", "give one slot or 'slots', not both");
        else if (n > CAT_SLOTS_MAX)
            spsvc_fields_add(&f, "slots", "at most 1000 slots");
        else
            s = cat_check_slots(&f, &types, req, db, slots, n, one ? NULL : "slots");
        if (s == SP_OK) s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK)
        s = cat_insert_slots_or_reply(&res, req, db, PQgetvalue(lot, 0, CAT_L_INTERNAL), slots,
                                      types, n);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        const char *client = PQgetvalue(lot, 0, CAT_L_CLIENT),
                   *lot_id = PQgetvalue(lot, 0, CAT_L_ID);
        spsvc_changed(req, client, "lot", lot_id, "slots", PQgetvalue(lot, 0, CAT_L_ESTABLISHMENT));
        sp_log_info(spbus_req_id(req), "slots_created", "lotId", lot_id, "count",
                    sp_arena_printf(spbus_req_arena(req), "%zu", n));
        Sp__Catalog__V1__CreateSlotsReply out = SP__CATALOG__V1__CREATE_SLOTS_REPLY__INIT;
        Sp__Catalog__V1__SlotReply one_slot = SP__CATALOG__V1__SLOT_REPLY__INIT;
        Sp__Catalog__V1__SlotItems batch = SP__CATALOG__V1__SLOT_ITEMS__INIT;
        if (one) {
            from_row(&one_slot.base, res, 0, req);
            out.result_case = SP__CATALOG__V1__CREATE_SLOTS_REPLY__RESULT_SLOT_INLINE;
            out.slot_inline = &one_slot;
        } else {
            batch.items = items_of(req, res, PQntuples(res));
            batch.n_items = (size_t)PQntuples(res);
            out.result_case = SP__CATALOG__V1__CREATE_SLOTS_REPLY__RESULT_ITEMS_INLINE;
            out.items_inline = &batch;
        }
        if (one || batch.items != NULL) spbus_reply(req, &out.base);
    }
    PQclear(lot);
    PQclear(res);
    return SP_OK;
}

/* ListSlots: the live slots of lot {id}, in creation order. */
static sp_status list_slots(spbus_req *req)
{
    const Sp__Catalog__V1__ListSlotsRequest *in = (const void *)spbus_req_input(req);
    spsvc_page pg;
    PGresult *lot = NULL, *res = NULL;
    spdb *db = NULL;

    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = cat_lot_or_reply(&lot, req, db, in->id, false);
    if (s == SP_OK) s = spsvc_page_or_reply(&pg, req, in->has_limit, in->limit, in->cursor);
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(lot, 0, CAT_L_INTERNAL), spsvc_page_after(&pg), pg.id_s,
                                pg.fetch_s};
        s = spdb_query(&res, db, sql_list, 4, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "list_slots");
    }
    if (s == SP_OK) {
        int rows = PQntuples(res);
        statuses_for(req, res, rows < pg.limit ? rows : pg.limit);
        spsvc_reply_page(req, &pg, res, S_CREATED, S_INTERNAL,
                         &sp__catalog__v1__list_slots_reply__descriptor, from_row);
        tl_statuses = NULL;
    }
    PQclear(lot);
    PQclear(res);
    return SP_OK;
}

static sp_status get_slot(spbus_req *req)
{
    const Sp__Catalog__V1__GetSlotRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = slot_or_reply(&res, req, db, in->id, false);
    if (s == SP_OK) reply_row(req, res);
    PQclear(res);
    return SP_OK;
}

/* UpdateSlot: {slotType, polygon, active} of an admin or the client's manager; polygon may
 * be cleared. */
static sp_status update_slot(spbus_req *req)
{
    const Sp__Catalog__V1__UpdateSlotRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL, *up = NULL;
    const char *type = NULL;
    spdb *db = NULL;
    bool clear_polygon = false;
    spsvc_fields f;

    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = slot_or_reply(&res, req, db, in->id, true);
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "polygon", cat_check_polygon(in->polygon_json));
        for (size_t i = 0; i < in->n_cleared; i++) {
            bool polygon = strcmp(in->cleared[i], "polygon") == 0;
            clear_polygon = clear_polygon || polygon;
            spsvc_fields_add(&f, in->cleared[i], polygon ? NULL : "must not be null");
        }
        if (in->slot_type != NULL) {
            type = cat_lookup_id(&s, req, db, "slot_types", in->slot_type);
            if (s != SP_OK) return SP_OK;
            spsvc_fields_add(&f, "slotType", type == NULL ? "unknown slot type" : NULL);
        }
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(res, 0, S_INTERNAL), type, in->polygon_json,
                                in->has_active ? (in->active ? "true" : "false") : NULL,
                                clear_polygon ? "true" : "false"};
        s = spdb_query(&up, db, sql_update, 5, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "update_slot");
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, PQgetvalue(up, 0, S_CLIENT), "slot", PQgetvalue(up, 0, S_ID), "updated",
                      PQgetvalue(up, 0, S_LOT));
        reply_row(req, up);
    }
    PQclear(res);
    PQclear(up);
    return SP_OK;
}

/* DeleteSlot: soft; its code is free again. Admins only. */
static sp_status delete_slot(spbus_req *req)
{
    const Sp__Catalog__V1__DeleteSlotRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_admin_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = slot_or_reply(&res, req, db, in->id, true);
    if (s == SP_OK) {
        const char *params[] = {PQgetvalue(res, 0, S_INTERNAL)};
        s = spdb_exec(db, sql_delete, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "delete_slot");
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, PQgetvalue(res, 0, S_CLIENT), "slot", PQgetvalue(res, 0, S_ID),
                      "deleted", PQgetvalue(res, 0, S_LOT));
        Sp__Catalog__V1__DeleteSlotReply out = SP__CATALOG__V1__DELETE_SLOT_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    PQclear(res);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"CreateSlots", create_slots, &sp__catalog__v1__create_slots_request__descriptor, NULL},
    {"ListSlots", list_slots, &sp__catalog__v1__list_slots_request__descriptor, NULL},
    {"GetSlot", get_slot, &sp__catalog__v1__get_slot_request__descriptor, NULL},
    {"UpdateSlot", update_slot, &sp__catalog__v1__update_slot_request__descriptor, NULL},
    {"DeleteSlot", delete_slot, &sp__catalog__v1__delete_slot_request__descriptor, NULL},
};

void slots_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
