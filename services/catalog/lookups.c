/* lookups.c -- ListStoreTypes, ListSlotTypes, ListVehicleTypes: the seeded lookups of
 * domain.md, public, in the order of the seed, paged like every list. Ends with
 * lookups_register(). */
#include <libpq-fe.h>

#include "catalog.h"
#include "sp/catalog/v1/catalog.pb-c.h"

/* One query per table: the table's name is not a parameter. $1 NULL: from the start. */
#define SQL_LOOKUP(table)                                                                          \
    "SELECT 0, id, code, name FROM catalog." table                                                 \
    " WHERE ($1::bigint IS NULL OR id > $2::bigint)"                                               \
    " ORDER BY id LIMIT $3::int"

enum { L_AT, L_ID, L_CODE, L_NAME };

static void fill(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    Sp__Catalog__V1__Lookup *l = (Sp__Catalog__V1__Lookup *)m;
    (void)req;
    l->code = PQgetvalue(res, row, L_CODE);
    l->name = PQgetvalue(res, row, L_NAME);
}

static sp_status list_lookups(spbus_req *req, const char *sql, const char *what, bool has_limit,
                              int32_t limit, const char *cursor)
{
    spsvc_page pg;
    spdb *db = NULL;
    PGresult *res = NULL;
    sp_status s = spsvc_page_or_reply(&pg, req, has_limit, limit, cursor);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;
    const char *params[] = {spsvc_page_after(&pg), pg.id_s, pg.fetch_s};
    s = spdb_query(&res, db, sql, 3, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, what);

    spsvc_reply_page(req, &pg, res, L_AT, L_ID, &sp__catalog__v1__list_lookups_reply__descriptor,
                     fill);
    PQclear(res);
    return SP_OK;
}

static sp_status list_store_types(spbus_req *req)
{
    const Sp__Catalog__V1__ListStoreTypesRequest *in = (const void *)spbus_req_input(req);
    return list_lookups(req, SQL_LOOKUP("store_types"), "list_store_types", in->has_limit,
                        in->limit, in->cursor);
}

static sp_status list_slot_types(spbus_req *req)
{
    const Sp__Catalog__V1__ListSlotTypesRequest *in = (const void *)spbus_req_input(req);
    return list_lookups(req, SQL_LOOKUP("slot_types"), "list_slot_types", in->has_limit, in->limit,
                        in->cursor);
}

static sp_status list_vehicle_types(spbus_req *req)
{
    const Sp__Catalog__V1__ListVehicleTypesRequest *in = (const void *)spbus_req_input(req);
    return list_lookups(req, SQL_LOOKUP("vehicle_types"), "list_vehicle_types", in->has_limit,
                        in->limit, in->cursor);
}

static const spbus_route routes[] = {
    {"ListStoreTypes", list_store_types, &sp__catalog__v1__list_store_types_request__descriptor,
     NULL},
    {"ListSlotTypes", list_slot_types, &sp__catalog__v1__list_slot_types_request__descriptor, NULL},
    {"ListVehicleTypes", list_vehicle_types,
     &sp__catalog__v1__list_vehicle_types_request__descriptor, NULL},
};

void lookups_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
