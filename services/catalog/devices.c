/* devices.c -- GetDevice and GetLotLayout: what ingest and the projection keep copies of
 * (bus.md), for services only. Ends with devices_register(). */
#include <libpq-fe.h>
#include <string.h>

#include "catalog.h"
#include "sp/catalog/v1/catalog.pb-c.h"
#include "spcrypto.h"

#define SQL_KEY                                                                                    \
    "SELECT public_id::text, key_id, client_id::text, encode(secret_sha256, 'hex'),"               \
    " encode(secret_sealed, 'hex'), revoked_at IS NOT NULL"                                        \
    " FROM catalog.api_keys WHERE key_id = $1"
#define SQL_CAMERA                                                                                 \
    "SELECT c.public_id::text, c.camera_code, c.client_id::text, c.enabled, l.public_id::text,"    \
    " k.key_id FROM catalog.cameras c JOIN catalog.api_keys k ON k.id = c.api_key_id"              \
    " LEFT JOIN catalog.lots l ON l.id = c.lot_id AND l.deleted_at IS NULL"                        \
    " WHERE c.client_id = $1::uuid AND c.camera_code = $2 AND c.deleted_at IS NULL"
#define SQL_LOT                                                                                    \
    "SELECT l.id, l.public_id::text, l.client_id::text, e.public_id::text, l.debounce_ms,"         \
    " l.unknown_after_s, l.lot_code, l.name FROM catalog.lots l"                                   \
    " JOIN catalog.establishments e ON e.id = l.establishment_id"                                  \
    " WHERE l.public_id = $1::uuid AND l.deleted_at IS NULL"
#define SQL_LAYOUT                                                                                 \
    "SELECT s.public_id::text, s.slot_code, t.code, s.active FROM catalog.slots s"                 \
    " JOIN catalog.slot_types t ON t.id = s.slot_type"                                             \
    " WHERE s.lot_id = $1::bigint AND s.deleted_at IS NULL ORDER BY s.slot_code"

/* A hex column into bytes in the request's arena. */
static ProtobufCBinaryData unhex(spbus_req *req, const char *hex)
{
    ProtobufCBinaryData b = {0, NULL};
    size_t n = strlen(hex) / 2;
    uint8_t *out = sp_arena_alloc(spbus_req_arena(req), n ? n : 1);
    if (out != NULL && spcrypto_hex_decode(out, n, hex, n * 2) == (long)n) {
        b.data = out;
        b.len = n;
    }
    return b;
}

static sp_status get_device(spbus_req *req)
{
    const Sp__Catalog__V1__GetDeviceRequest *in = (const void *)spbus_req_input(req);
    sp_arena *a = spbus_req_arena(req);
    spdb *db = NULL;
    PGresult *kres = NULL, *cres = NULL;
    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_SERVICE, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;
    if (in->key_id == NULL) return spsvc_fail(req, SP_ERR_VALIDATION_FAILED, "keyId required");

    Sp__Catalog__V1__DeviceReply out = SP__CATALOG__V1__DEVICE_REPLY__INIT;
    Sp__Catalog__V1__DeviceKey *k = sp_arena_alloc(a, sizeof(*k));
    Sp__Catalog__V1__DeviceCamera *c = sp_arena_alloc(a, sizeof(*c));
    if (k == NULL || c == NULL) return SP_ERR_INTERNAL;
    const char *kp[] = {in->key_id};
    s = spdb_read(&kres, db, SQL_KEY, 1, kp);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "get_device_key");
    if (PQntuples(kres) == 1) {
        sp__catalog__v1__device_key__init(k);
        k->id = PQgetvalue(kres, 0, 0);
        k->key_id = PQgetvalue(kres, 0, 1);
        k->client_id = PQgetvalue(kres, 0, 2);
        k->has_secret_sha256 = k->has_secret_sealed = k->has_revoked = 1;
        k->secret_sha256 = unhex(req, PQgetvalue(kres, 0, 3));
        k->secret_sealed = unhex(req, PQgetvalue(kres, 0, 4));
        k->revoked = PQgetvalue(kres, 0, 5)[0] == 't';
        out.key = k;
        if (in->camera_code != NULL) {
            const char *cp[] = {k->client_id, in->camera_code};
            s = spdb_read(&cres, db, SQL_CAMERA, 2, cp);
            if (s != SP_OK) {
                PQclear(kres);
                return spsvc_db_error_reply(req, s, "get_device_camera");
            }
            if (PQntuples(cres) == 1) {
                sp__catalog__v1__device_camera__init(c);
                c->id = PQgetvalue(cres, 0, 0);
                c->camera_code = PQgetvalue(cres, 0, 1);
                c->client_id = PQgetvalue(cres, 0, 2);
                c->has_enabled = 1;
                c->enabled = PQgetvalue(cres, 0, 3)[0] == 't';
                c->lot_id = PQgetisnull(cres, 0, 4) ? NULL : PQgetvalue(cres, 0, 4);
                c->key_id = PQgetvalue(cres, 0, 5);
                out.camera = c;
            }
        }
    }
    spbus_reply(req, &out.base);
    PQclear(kres);
    PQclear(cres);
    return SP_OK;
}

static sp_status get_lot_layout(spbus_req *req)
{
    const Sp__Catalog__V1__GetLotLayoutRequest *in = (const void *)spbus_req_input(req);
    spdb *db = NULL;
    PGresult *lres = NULL, *sres = NULL;
    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_SERVICE, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;
    if (spsvc_check_uuid(in->lot_id) != NULL)
        return spsvc_fail(req, SP_ERR_NOT_FOUND, "lot not found");
    const char *lp[] = {in->lot_id};
    s = spdb_read(&lres, db, SQL_LOT, 1, lp);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "get_lot_layout");
    if (PQntuples(lres) != 1) {
        PQclear(lres);
        return spsvc_fail(req, SP_ERR_NOT_FOUND, "lot not found");
    }
    const char *sp[] = {PQgetvalue(lres, 0, 0)};
    s = spdb_read(&sres, db, SQL_LAYOUT, 1, sp);
    if (s != SP_OK) {
        PQclear(lres);
        return spsvc_db_error_reply(req, s, "get_lot_layout_slots");
    }
    Sp__Catalog__V1__LotLayoutReply out = SP__CATALOG__V1__LOT_LAYOUT_REPLY__INIT;
    out.id = PQgetvalue(lres, 0, 1);
    out.client_id = PQgetvalue(lres, 0, 2);
    out.establishment_id = PQgetvalue(lres, 0, 3);
    out.has_debounce_ms = out.has_unknown_after_s = 1;
    out.debounce_ms = (int32_t)spsvc_pg_int64(PQgetvalue(lres, 0, 4));
    out.unknown_after_s = (int32_t)spsvc_pg_int64(PQgetvalue(lres, 0, 5));
    out.lot_code = PQgetvalue(lres, 0, 6);
    out.name = PQgetisnull(lres, 0, 7) ? NULL : PQgetvalue(lres, 0, 7);
    size_t n = (size_t)PQntuples(sres);
    Sp__Catalog__V1__LayoutSlot **items = (Sp__Catalog__V1__LayoutSlot **)spsvc_items_or_reply(
        req, &sp__catalog__v1__layout_slot__descriptor, n);
    if (items != NULL) {
        for (size_t i = 0; i < n; i++) {
            items[i]->id = PQgetvalue(sres, (int)i, 0);
            items[i]->slot_code = PQgetvalue(sres, (int)i, 1);
            items[i]->slot_type = PQgetvalue(sres, (int)i, 2);
            items[i]->has_active = 1;
            items[i]->active = PQgetvalue(sres, (int)i, 3)[0] == 't';
        }
        out.n_slots = n;
        out.slots = items;
        spbus_reply(req, &out.base);
    }
    PQclear(lres);
    PQclear(sres);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"GetDevice", get_device, &sp__catalog__v1__get_device_request__descriptor, NULL},
    {"GetLotLayout", get_lot_layout, &sp__catalog__v1__get_lot_layout_request__descriptor, NULL},
};

void devices_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
