/* lots.c -- the projection's own copy of each lot's slots (bus.md): a row per slot in
 * status.slot_status, so that a slot never reported is UNKNOWN and a deactivated or
 * deleted one leaves the counts. Loaded from catalog (GetLotLayout) when an event of the
 * lot comes and the copy is older than PRJ_LOT_TTL_US or was dropped by a change message
 * of the lot or one of its slots. */
#include <stdlib.h>
#include <string.h>

#include "projection.h"
#include "sp/catalog/v1/catalog.pb-c.h"
#include "sp/v1/changed.pb-c.h"
#include "spcrypto.h"

typedef struct {
    int64_t loaded_us;
    bool gone;
} lot_entry;

static const char *sql_lot =
    "INSERT INTO status.lots (lot_id, client_id, establishment_id, debounce_ms, unknown_after_s,"
    " lot_code, name, deleted, loaded_at)"
    " VALUES ($1::uuid, $2::uuid, $3::uuid, $4::int, $5::int, $6, $7, false, now())"
    " ON CONFLICT (lot_id) DO UPDATE SET client_id = EXCLUDED.client_id,"
    " establishment_id = EXCLUDED.establishment_id, debounce_ms = EXCLUDED.debounce_ms,"
    " unknown_after_s = EXCLUDED.unknown_after_s, lot_code = EXCLUDED.lot_code,"
    " name = EXCLUDED.name, deleted = false, loaded_at = now()";
/* in slot id order, the order every writer of slot_status takes its rows in */
static const char *sql_slots =
    "INSERT INTO status.slot_status (slot_id, lot_id, slot_code, slot_type, active)"
    " SELECT t.id, $1::uuid, t.code, t.type, t.active"
    " FROM unnest($2::uuid[], $3::text[], $4::text[], $5::bool[]) AS t(id, code, type, active)"
    " ORDER BY t.id"
    " ON CONFLICT (slot_id) DO UPDATE SET slot_code = EXCLUDED.slot_code,"
    " slot_type = EXCLUDED.slot_type, active = EXCLUDED.active, deleted = false, updated_at = now()"
    " WHERE (slot_status.slot_code, slot_status.slot_type, slot_status.active, slot_status.deleted)"
    "   IS DISTINCT FROM (EXCLUDED.slot_code, EXCLUDED.slot_type, EXCLUDED.active, false)";
static const char *sql_gone_slots =
    "UPDATE status.slot_status SET deleted = true, updated_at = now()"
    " WHERE lot_id = $1::uuid AND NOT deleted AND NOT (slot_id = ANY($2::uuid[]))";
static const char *sql_gone_lot = "UPDATE status.lots SET deleted = true WHERE lot_id = $1::uuid";
/* every row of the lot's slots, in slot id order, before any is written: the consumer takes
 * the rows of a batch in that order too, so a reload never waits for a batch that waits
 * for it (the upsert and the update after it would each go in their own order) */
static const char *sql_lock_slots =
    "SELECT 1 FROM status.slot_status WHERE lot_id = $1::uuid ORDER BY slot_id FOR UPDATE";

static int by_id(const void *a, const void *b)
{
    const Sp__Catalog__V1__LayoutSlot *x = *(Sp__Catalog__V1__LayoutSlot *const *)a;
    const Sp__Catalog__V1__LayoutSlot *y = *(Sp__Catalog__V1__LayoutSlot *const *)b;
    return strcmp(x->id != NULL ? x->id : "", y->id != NULL ? y->id : "");
}

static void remember(prj_svc *p, sp_map *m, const char *id, bool gone)
{
    lot_entry *e = malloc(sizeof(*e));
    if (e == NULL) return;
    e->loaded_us = sp_monotonic_us();
    e->gone = gone;
    pthread_mutex_lock(&p->lots_mu);
    sp_map_put(m, id, e);
    pthread_mutex_unlock(&p->lots_mu);
}

/* Whether entry 'id' of m is fresh (*gone: it was gone then). */
static bool fresh_entry(prj_svc *p, sp_map *m, const char *id, bool force, bool *gone)
{
    pthread_mutex_lock(&p->lots_mu);
    lot_entry *e = sp_map_get(m, id);
    bool fresh = !force && e != NULL && sp_monotonic_us() - e->loaded_us < PRJ_LOT_TTL_US;
    *gone = e != NULL && e->gone;
    pthread_mutex_unlock(&p->lots_mu);
    return fresh;
}

/* Writes the layout into status.lots and status.slot_status, in one transaction. */
static sp_status store(spdb *db, const Sp__Catalog__V1__LotLayoutReply *l)
{
    char dms[16], uas[16];
    snprintf(dms, sizeof(dms), "%d", l->debounce_ms);
    snprintf(uas, sizeof(uas), "%d", l->unknown_after_s);
    qsort(l->slots, l->n_slots, sizeof(Sp__Catalog__V1__LayoutSlot *), by_id);
    prj_arr ids, codes, types, act;
    prj_arr_start(&ids);
    prj_arr_start(&codes);
    prj_arr_start(&types);
    prj_arr_start(&act);
    for (size_t i = 0; i < l->n_slots; i++) {
        prj_arr_str(&ids, l->slots[i]->id);
        prj_arr_str(&codes, l->slots[i]->slot_code);
        prj_arr_str(&types, l->slots[i]->slot_type);
        prj_arr_bool(&act, l->slots[i]->active);
    }
    const char *a1 = prj_arr_end(&ids), *a2 = prj_arr_end(&codes), *a3 = prj_arr_end(&types),
               *a4 = prj_arr_end(&act);
    sp_status s = a1 && a2 && a3 && a4 ? spdb_begin(db) : SP_ERR_INTERNAL;
    const char *lp[] = {l->id,  l->client_id, l->establishment_id,
                        dms,    uas,          l->lot_code != NULL ? l->lot_code : "",
                        l->name};
    if (s == SP_OK) s = spdb_exec(db, sql_lot, 7, lp);
    if (s == SP_OK) s = spdb_exec(db, sql_lock_slots, 1, lp);
    const char *sp[] = {l->id, a1, a2, a3, a4};
    if (s == SP_OK) s = spdb_exec(db, sql_slots, 5, sp);
    const char *gp[] = {l->id, a1};
    if (s == SP_OK) s = spdb_exec(db, sql_gone_slots, 2, gp);
    if (s == SP_OK) s = spdb_commit(db);
    spdb_rollback(db);
    prj_arr_free(&ids);
    prj_arr_free(&codes);
    prj_arr_free(&types);
    prj_arr_free(&act);
    return s;
}

prj_lot_state prj_lot_ensure(prj_svc *p, spdb *db, const char *lot_id, bool force)
{
    bool gone = false;
    if (!spcrypto_uuid_valid(lot_id)) return PRJ_LOT_GONE;
    if (fresh_entry(p, p->lots, lot_id, force, &gone)) return gone ? PRJ_LOT_GONE : PRJ_LOT_OK;

    sp_arena *a = sp_arena_create(4096);
    if (a == NULL) return PRJ_LOT_UNAVAILABLE;
    Sp__Catalog__V1__GetLotLayoutRequest in = SP__CATALOG__V1__GET_LOT_LAYOUT_REQUEST__INIT;
    in.lot_id = (char *)lot_id;
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s =
        spsvc_call(&out, &err, spsvc_bus(p->kit), NULL, "catalog", "GetLotLayout", &in.base,
                   &sp__catalog__v1__lot_layout_reply__descriptor, PRJ_CALL_MS, a);
    prj_lot_state st = PRJ_LOT_UNAVAILABLE;
    if (s == SP_ERR_NOT_FOUND) {
        const char *gp[] = {lot_id, "{}"};
        if (spdb_begin(db) == SP_OK && spdb_exec(db, sql_gone_lot, 1, gp) == SP_OK &&
            spdb_exec(db, sql_lock_slots, 1, gp) == SP_OK &&
            spdb_exec(db, sql_gone_slots, 2, gp) == SP_OK && spdb_commit(db) == SP_OK) {
            remember(p, p->lots, lot_id, true);
            st = PRJ_LOT_GONE;
        }
        spdb_rollback(db);
    } else if (s == SP_OK) {
        s = store(db, (const void *)out);
        if (s == SP_OK) {
            remember(p, p->lots, lot_id, false);
            st = PRJ_LOT_OK;
        } else {
            sp_log_warn(NULL, "lot_store_failed", "lotId", lot_id, "code", sp_error_code(s));
        }
    } else {
        sp_log_warn(NULL, "lot_layout_unavailable", "lotId", lot_id, "code", sp_error_code(s));
    }
    sp_arena_destroy(a);
    return st;
}

/* the lots of an establishment the projection holds that catalog no longer lists */
static const char *sql_est_stray =
    "SELECT lot_id::text FROM status.lots WHERE establishment_id = $1::uuid AND NOT deleted"
    " AND NOT (lot_id = ANY($2::uuid[]))";

prj_lot_state prj_establishment_ensure(prj_svc *p, spdb *db, const char *est_id)
{
    bool gone = false;
    if (!spcrypto_uuid_valid(est_id)) return PRJ_LOT_GONE;
    if (fresh_entry(p, p->ests, est_id, false, &gone)) return gone ? PRJ_LOT_GONE : PRJ_LOT_OK;
    sp_arena *a = sp_arena_create(8192);
    if (a == NULL) return PRJ_LOT_UNAVAILABLE;
    prj_arr ids;
    prj_arr_start(&ids);
    prj_lot_state st = PRJ_LOT_OK;
    char *cursor = NULL;
    for (int page = 0; st == PRJ_LOT_OK && page < PRJ_EST_PAGES; page++) {
        Sp__Catalog__V1__ListLotsRequest in = SP__CATALOG__V1__LIST_LOTS_REQUEST__INIT;
        in.id = (char *)est_id;
        in.has_limit = 1;
        in.limit = 500;
        in.cursor = cursor;
        ProtobufCMessage *out = NULL;
        Sp__V1__Error *err = NULL;
        sp_status s =
            spsvc_call(&out, &err, spsvc_bus(p->kit), NULL, "catalog", "ListLots", &in.base,
                       &sp__catalog__v1__list_lots_reply__descriptor, PRJ_CALL_MS, a);
        if (s == SP_ERR_NOT_FOUND) {
            st = PRJ_LOT_GONE;
            break;
        }
        if (s != SP_OK) {
            sp_log_warn(NULL, "establishment_lots_unavailable", "establishmentId", est_id, "code",
                        sp_error_code(s));
            st = PRJ_LOT_UNAVAILABLE;
            break;
        }
        const Sp__Catalog__V1__ListLotsReply *l = (const void *)out;
        for (size_t i = 0; st == PRJ_LOT_OK && i < l->n_items; i++) {
            prj_arr_str(&ids, l->items[i]->id);
            if (prj_lot_ensure(p, db, l->items[i]->id, false) == PRJ_LOT_UNAVAILABLE)
                st = PRJ_LOT_UNAVAILABLE;
        }
        if (l->next_cursor == NULL || l->next_cursor[0] == '\0') break;
        cursor = l->next_cursor;
    }
    const char *listed = prj_arr_end(&ids);
    PGresult *res = NULL;
    const char *sp[] = {est_id, st == PRJ_LOT_GONE ? "{}" : listed};
    if (st != PRJ_LOT_UNAVAILABLE &&
        (sp[1] == NULL || spdb_read(&res, db, sql_est_stray, 2, sp) != SP_OK))
        st = PRJ_LOT_UNAVAILABLE;
    for (int i = 0; st != PRJ_LOT_UNAVAILABLE && i < PQntuples(res); i++)
        if (prj_lot_ensure(p, db, PQgetvalue(res, i, 0), true) == PRJ_LOT_UNAVAILABLE)
            st = PRJ_LOT_UNAVAILABLE;
    PQclear(res);
    if (st != PRJ_LOT_UNAVAILABLE) remember(p, p->ests, est_id, st == PRJ_LOT_GONE);
    prj_arr_free(&ids);
    sp_arena_destroy(a);
    return st;
}

/* A change of a lot or of one of its slots: the copy is loaded again with the next event. */
static void on_changed(void *user, const char *subject, const void *data, size_t len)
{
    prj_svc *p = user;
    (void)subject;
    Sp__V1__Changed *c = sp__v1__changed__unpack(NULL, len, data);
    if (c == NULL) return;
    const char *lot = NULL;
    if (c->kind != NULL && strcmp(c->kind, "lot") == 0) lot = c->id;
    if (c->kind != NULL && strcmp(c->kind, "slot") == 0) lot = c->parent_id;
    const char *est = NULL; /* the lots of an establishment are listed again */
    if (c->kind != NULL && strcmp(c->kind, "lot") == 0) est = c->parent_id;
    if (c->kind != NULL && strcmp(c->kind, "establishment") == 0) est = c->id;
    pthread_mutex_lock(&p->lots_mu);
    if (lot != NULL) sp_map_del(p->lots, lot);
    if (est != NULL) sp_map_del(p->ests, est);
    pthread_mutex_unlock(&p->lots_mu);
    sp__v1__changed__free_unpacked(c, NULL);
}

sp_status prj_lots_start(prj_svc *p)
{
    pthread_mutex_init(&p->lots_mu, NULL);
    p->lots = sp_map_create(free);
    p->ests = sp_map_create(free);
    if (p->lots == NULL || p->ests == NULL) return SP_ERR_INTERNAL;
    return spbus_subscribe(spsvc_bus(p->kit), "sp.catalog.changed.>", on_changed, p);
}

void prj_lots_free(prj_svc *p)
{
    sp_map_destroy(p->lots);
    sp_map_destroy(p->ests);
    p->lots = p->ests = NULL;
    pthread_mutex_destroy(&p->lots_mu);
}
