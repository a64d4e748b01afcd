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

    Sp__Catalog__V1__ListLookupsReply out = SP__CATALOG__V1__LIST_LOOKUPS_REPLY__INIT;
    int n = spsvc_page_rows(&out.next_cursor, req, &pg, res, L_AT, L_ID);
    Sp__Catalog__V1__Lookup **items = (Sp__Catalog__V1__Lookup **)spsvc_items_or_reply(
        req, &sp__catalog__v1__lookup__descriptor, (size_t)n);
    for (int i = 0; items != NULL && i < n; i++) {
        items[i]->code = PQgetvalue(res, i, L_CODE);
        items[i]->name = PQgetvalue(res, i, L_NAME);
    }
    if (items == NULL) {
        PQclear(res);
        return SP_OK;
    }
    out.n_items = (size_t)n;
    out.items = items;
    spbus_reply(req, &out.base);
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
