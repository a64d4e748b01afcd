/* reads.c -- the documents of the public reads (api.md, Public): a lot's status with every
 * active slot, an establishment's counts per lot, built from status.* and kept in Redis as
 * snapshots (bus.md: the projection writes lot snapshots to Redis) for the gateway, which
 * falls back to sp.status.v1.GetLotStatus / GetEstablishmentStatus on a miss. */
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

#include "projection.h"

/* advisory lock classes (two-key form: the kit's outbox lock is in the one-key space) */
#define LOCK_LOT "7001"
#define LOCK_ESTABLISHMENT "7002"

#define US(x) "(extract(epoch FROM " x ") * 1000000)::bigint"
static const char *sql_lock = "SELECT pg_advisory_xact_lock($1::int, hashtext($2::text))";
enum {
    L_CLIENT,
    L_EST,
    L_CODE,
    L_NAME,
    L_SLOT,
    L_TYPE,
    L_STATUS,
    L_VEHICLE,
    L_CHANGED,
    L_UPD,
    L_LIVE
};
static const char *sql_lot =
    "SELECT l.client_id::text, l.establishment_id::text, l.lot_code, l.name, s.slot_code,"
    " s.slot_type, s.status, s.vehicle, " US("s.changed_at") ", " US(
        "s.updated_at") ","
                        " s.active AND NOT s.deleted"
                        " FROM status.lots l LEFT JOIN status.slot_status s ON s.lot_id = l.lot_id"
                        " WHERE l.lot_id = $1::uuid AND NOT l.deleted ORDER BY s.slot_code COLLATE "
                        "\"C\"";
enum { E_LOT, E_CLIENT, E_CODE, E_NAME, E_FREE, E_OCC, E_UNK, E_UPD };
#define LIVE_WITH(st) "count(*) FILTER (WHERE s.active AND NOT s.deleted AND s.status = " st ")"
static const char *sql_establishment =
    "SELECT l.lot_id::text, l.client_id::text, l.lot_code, l.name, " LIVE_WITH("1") ", " LIVE_WITH(
        "2") ", " LIVE_WITH("0") ", " US("max(s.updated_at)") " FROM status.lots l LEFT JOIN "
                                                              "status.slot_status s ON s.lot_id = "
                                                              "l.lot_id"
                                                              " WHERE l.establishment_id = "
                                                              "$1::uuid AND NOT l.deleted"
                                                              " GROUP BY l.lot_id ORDER BY "
                                                              "l.lot_code COLLATE \"C\"";

static char *col(sp_arena *a, PGresult *r, int row, int c)
{
    return PQgetisnull(r, row, c) ? NULL : sp_arena_strdup(a, PQgetvalue(r, row, c));
}

static Sp__Status__V1__Availability *availability(sp_arena *a, int free_n, int occupied,
                                                  int unknown)
{
    Sp__Status__V1__Availability *v = sp_arena_alloc(a, sizeof(*v));
    if (v == NULL) return NULL;
    sp__status__v1__availability__init(v);
    v->has_free = v->has_occupied = v->has_unknown = v->has_total = 1;
    v->free = free_n;
    v->occupied = occupied;
    v->unknown = unknown;
    v->total = free_n + occupied + unknown;
    return v;
}

/* Packs m into key (or deletes key when m is NULL). */
static sp_status put(spredis *r, const char *key, const ProtobufCMessage *m)
{
    redisReply *rep = NULL;
    sp_status s;
    if (m == NULL) {
        s = spredis_cmd(&rep, r, "DEL", key, NULL);
    } else {
        size_t len = protobuf_c_message_get_packed_size(m);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf == NULL) return SP_ERR_INTERNAL;
        protobuf_c_message_pack(m, buf);
        const char *argv[] = {"SET", key, (const char *)buf, "EX", PRJ_SNAPSHOT_TTL_S};
        const size_t lens[] = {3, strlen(key), len, 2, strlen(PRJ_SNAPSHOT_TTL_S)};
        s = spredis_command(&rep, r, 5, argv, lens);
        free(buf);
    }
    if (s == SP_OK && rep != NULL && rep->type == REDIS_REPLY_ERROR) s = SP_ERR_UNAVAILABLE;
    if (rep != NULL) freeReplyObject(rep);
    return s;
}

/* Runs build under the document's lock and writes what it built (or deletes the key on
 * SP_ERR_NOT_FOUND) before the lock goes. */
typedef sp_status (*build_fn)(ProtobufCMessage **out, sp_arena *a, spdb *db, const char *id);
static sp_status locked_snapshot(ProtobufCMessage **out, sp_arena *a, spdb *db, spredis *r,
                                 const char *lock_class, const char *prefix, const char *id,
                                 build_fn build)
{
    const char *lp[] = {lock_class, id};
    sp_status s = spdb_begin(db);
    if (s == SP_OK) s = spdb_prepared(NULL, db, "prj_snap_lock", sql_lock, 2, lp, false);
    if (s == SP_OK) s = build(out, a, db, id);
    if ((s == SP_OK || s == SP_ERR_NOT_FOUND) && r != NULL) {
        char *key = sp_arena_printf(a, "%s%s", prefix, id);
        sp_status w = key != NULL ? put(r, key, s == SP_OK ? *out : NULL) : SP_ERR_INTERNAL;
        if (w != SP_OK)
            sp_log_warn(NULL, "snapshot_not_written", "id", id, "code", sp_error_code(w));
    }
    sp_status c = spdb_commit(db); /* a read only transaction: its end frees the lock */
    spdb_rollback(db);
    return s != SP_OK ? s : c;
}

static sp_status build_lot(ProtobufCMessage **out, sp_arena *a, spdb *db, const char *lot_id)
{
    PGresult *res = NULL;
    const char *p[] = {lot_id};
    sp_status s = spdb_prepared(&res, db, "prj_snap_lot", sql_lot, 1, p, true);
    if (s != SP_OK) return s;
    int n = PQntuples(res);
    Sp__Status__V1__LotStatusReply *doc = sp_arena_alloc(a, sizeof(*doc));
    Sp__Status__V1__LotSlotStatus **slots =
        sp_arena_alloc(a, sizeof(Sp__Status__V1__LotSlotStatus *) * (size_t)(n ? n : 1));
    if (n == 0) s = SP_ERR_NOT_FOUND;
    if (s == SP_OK && (doc == NULL || slots == NULL)) s = SP_ERR_INTERNAL;
    int counts[3] = {0, 0, 0};
    if (s == SP_OK) {
        sp__status__v1__lot_status_reply__init(doc);
        doc->lot_id = sp_arena_strdup(a, lot_id);
        doc->client_id = col(a, res, 0, L_CLIENT);
        doc->establishment_id = col(a, res, 0, L_EST);
        doc->lot_code = col(a, res, 0, L_CODE);
        doc->name = col(a, res, 0, L_NAME);
        doc->slots = slots;
    }
    for (int i = 0; s == SP_OK && i < n; i++) {
        if (!PQgetisnull(res, i, L_UPD)) {
            int64_t upd = spsvc_pg_int64(PQgetvalue(res, i, L_UPD));
            if (!doc->has_updated_at || upd > doc->updated_at) doc->updated_at = upd;
            doc->has_updated_at = 1;
        }
        if (PQgetisnull(res, i, L_LIVE) || PQgetvalue(res, i, L_LIVE)[0] != 't') continue;
        Sp__Status__V1__LotSlotStatus *st = sp_arena_alloc(a, sizeof(*st));
        if (st == NULL) {
            s = SP_ERR_INTERNAL;
            break;
        }
        sp__status__v1__lot_slot_status__init(st);
        int status = atoi(PQgetvalue(res, i, L_STATUS));
        counts[status >= 0 && status <= 2 ? status : 0]++;
        st->slot_code = col(a, res, i, L_SLOT);
        st->slot_type = col(a, res, i, L_TYPE);
        st->status = (char *)prj_status_name(status);
        if (status != 0 && !PQgetisnull(res, i, L_VEHICLE))
            st->vehicle = (char *)prj_vehicle_name(atoi(PQgetvalue(res, i, L_VEHICLE)));
        st->has_changed_at = !PQgetisnull(res, i, L_CHANGED);
        if (st->has_changed_at) st->changed_at = spsvc_pg_int64(PQgetvalue(res, i, L_CHANGED));
        slots[doc->n_slots++] = st;
    }
    if (s == SP_OK &&
        (doc->availability = availability(a, counts[1], counts[2], counts[0])) == NULL)
        s = SP_ERR_INTERNAL;
    if (s == SP_OK && (doc->client_id == NULL || doc->lot_id == NULL)) s = SP_ERR_INTERNAL;
    PQclear(res);
    if (s == SP_OK) *out = &doc->base;
    return s;
}

static sp_status build_establishment(ProtobufCMessage **out, sp_arena *a, spdb *db,
                                     const char *est_id)
{
    PGresult *res = NULL;
    const char *p[] = {est_id};
    sp_status s = spdb_prepared(&res, db, "prj_snap_establishment", sql_establishment, 1, p, true);
    if (s != SP_OK) return s;
    int n = PQntuples(res);
    Sp__Status__V1__EstablishmentStatusReply *doc = sp_arena_alloc(a, sizeof(*doc));
    Sp__Status__V1__LotAvailability **lots =
        sp_arena_alloc(a, sizeof(Sp__Status__V1__LotAvailability *) * (size_t)(n ? n : 1));
    if (doc == NULL || lots == NULL) {
        PQclear(res);
        return SP_ERR_INTERNAL;
    }
    sp__status__v1__establishment_status_reply__init(doc);
    doc->establishment_id = sp_arena_strdup(a, est_id);
    doc->lots = lots;
    int sum[3] = {0, 0, 0};
    for (int i = 0; s == SP_OK && i < n; i++) {
        Sp__Status__V1__LotAvailability *l = sp_arena_alloc(a, sizeof(*l));
        int c[3];
        for (int k = 0; k < 3; k++)
            sum[k] += c[k] = atoi(PQgetvalue(res, i, E_FREE + k));
        if (l == NULL || (sp__status__v1__lot_availability__init(l),
                          l->availability = availability(a, c[0], c[1], c[2])) == NULL) {
            s = SP_ERR_INTERNAL;
            break;
        }
        if (doc->client_id == NULL) doc->client_id = col(a, res, i, E_CLIENT);
        l->lot_id = col(a, res, i, E_LOT);
        l->lot_code = col(a, res, i, E_CODE);
        l->name = col(a, res, i, E_NAME);
        l->has_updated_at = !PQgetisnull(res, i, E_UPD);
        if (l->has_updated_at) {
            l->updated_at = spsvc_pg_int64(PQgetvalue(res, i, E_UPD));
            if (!doc->has_updated_at || l->updated_at > doc->updated_at)
                doc->updated_at = l->updated_at;
            doc->has_updated_at = 1;
        }
        lots[doc->n_lots++] = l;
    }
    if (s == SP_OK && (doc->availability = availability(a, sum[0], sum[1], sum[2])) == NULL)
        s = SP_ERR_INTERNAL;
    PQclear(res);
    if (s == SP_OK) *out = &doc->base;
    return s;
}

sp_status prj_lot_snapshot(Sp__Status__V1__LotStatusReply **out, sp_arena *a, spdb *db, spredis *r,
                           const char *lot_id)
{
    return locked_snapshot((ProtobufCMessage **)out, a, db, r, LOCK_LOT, PRJ_LOT_KEY, lot_id,
                           build_lot);
}

sp_status prj_establishment_snapshot(Sp__Status__V1__EstablishmentStatusReply **out, sp_arena *a,
                                     spdb *db, spredis *r, const char *est_id)
{
    return locked_snapshot((ProtobufCMessage **)out, a, db, r, LOCK_ESTABLISHMENT,
                           PRJ_ESTABLISHMENT_KEY, est_id, build_establishment);
}

static int by_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts v and drops its repeats: how many are left. */
static size_t uniq(const char **v, size_t n)
{
    qsort(v, n, sizeof(*v), by_str);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(v[k - 1], v[i]) != 0) v[k++] = v[i];
    return k;
}

void prj_snapshots(prj_svc *p, spdb *db, spredis *r, const char *const *lot_ids, size_t n)
{
    if (n == 0) return;
    const char **lots = malloc(n * sizeof(*lots)), **ests = malloc(n * sizeof(*ests));
    sp_arena *a = sp_arena_create(16384);
    if (lots == NULL || ests == NULL || a == NULL) goto out;
    memcpy(lots, lot_ids, n * sizeof(*lots));
    size_t nl = uniq(lots, n), ne = 0;
    for (size_t i = 0; i < nl; i++) {
        Sp__Status__V1__LotStatusReply *doc = NULL;
        sp_status s = prj_lot_snapshot(&doc, a, db, r, lots[i]);
        if (s == SP_OK)
            ests[ne++] = doc->establishment_id;
        else if (s != SP_ERR_NOT_FOUND)
            sp_log_warn(NULL, "lot_snapshot_failed", "lotId", lots[i], "code", sp_error_code(s));
    }
    ne = uniq(ests, ne);
    for (size_t i = 0; i < ne; i++) {
        Sp__Status__V1__EstablishmentStatusReply *doc = NULL;
        prj_lot_state st = prj_establishment_ensure(p, db, ests[i]);
        sp_status s = st == PRJ_LOT_UNAVAILABLE ? SP_ERR_UNAVAILABLE
                      : st == PRJ_LOT_GONE
                          ? put(r, sp_arena_printf(a, PRJ_ESTABLISHMENT_KEY "%s", ests[i]), NULL)
                          : prj_establishment_snapshot(&doc, a, db, r, ests[i]);
        if (s != SP_OK)
            sp_log_warn(NULL, "establishment_snapshot_failed", "establishmentId", ests[i], "code",
                        sp_error_code(s));
    }
out:
    sp_arena_destroy(a);
    free(lots);
    free(ests);
}

/* ---- the snapshot writer: a task of its own, every PRJ_SNAPSHOT_MS, so that neither the
 * consumer nor the timers wait for Redis, and a lot that many batches changed is written
 * once per round (under load, writing after every batch cost PostgreSQL more than the
 * batches themselves) ---------------------------------------------------------------------- */

void prj_snapshot_later(prj_svc *p, const char *const *lot_ids, size_t n)
{
    if (n == 0) return;
    pthread_mutex_lock(&p->dirty_mu);
    if (p->ndirty + n > p->capdirty) {
        size_t cap = (p->ndirty + n) * 2;
        char **d = realloc(p->dirty, cap * sizeof(*d));
        if (d != NULL) {
            p->dirty = d;
            p->capdirty = cap;
        }
    }
    for (size_t i = 0; i < n && p->ndirty < p->capdirty; i++) {
        char *id = strdup(lot_ids[i]);
        if (id != NULL) p->dirty[p->ndirty++] = id;
    }
    pthread_mutex_unlock(&p->dirty_mu);
}

static void free_ids(char **ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

static void snapshot_tick(void *user)
{
    prj_svc *p = user;
    pthread_mutex_lock(&p->dirty_mu);
    char **ids = p->dirty;
    size_t n = p->ndirty;
    p->dirty = NULL;
    p->ndirty = p->capdirty = 0;
    pthread_mutex_unlock(&p->dirty_mu);
    if (n == 0) return;
    if (p->snap_db == NULL && spdb_connect(&p->snap_db, p->db_url) != SP_OK) {
        prj_snapshot_later(p, (const char *const *)ids, n); /* the next tick tries again */
        free_ids(ids, n);
        return;
    }
    prj_snapshots(p, p->snap_db, p->snap_redis, (const char *const *)ids, n);
    free_ids(ids, n);
}

sp_status prj_snapshots_start(prj_svc *p)
{
    pthread_mutex_init(&p->dirty_mu, NULL);
    sp_status s = spredis_create(&p->snap_redis,
                                 sp_config_str(spsvc_config(p->kit), "SP_REDIS_URL"), PRJ_REDIS_MS);
    if (s == SP_OK) s = spsvc_every(p->kit, &p->snap_task, PRJ_SNAPSHOT_MS, snapshot_tick, p);
    return s;
}

void prj_snapshots_stop(prj_svc *p)
{
    /* the kit stops the task before stop() runs */
    free_ids(p->dirty, p->ndirty);
    p->dirty = NULL;
    p->ndirty = p->capdirty = 0;
    spdb_destroy(p->snap_db);
    p->snap_db = NULL;
    spredis_destroy(p->snap_redis);
    p->snap_redis = NULL;
    pthread_mutex_destroy(&p->dirty_mu);
}
