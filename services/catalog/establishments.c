/* establishments.c -- a client's sites: CreateEstablishment (by an admin, or tenancy
 * approving a request), ListEstablishments, GetEstablishment, UpdateEstablishment,
 * Activate / DeactivateEstablishment (ACTIVE <-> INACTIVE) and DeleteEstablishment (soft,
 * with its lots and slots). Ends with establishments_register(). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "catalog.h"
#include "spcrypto.h"

#define EST_COLS                                                                                   \
    "e.public_id::text, e.client_id::text, e.name, st.code, e.address, e.city, e.state,"           \
    " e.lat, e.lng, e.status, " CAT_US("e.created_at") ", " CAT_US("e.updated_at") ", e.id"
#define EST_JOIN " LEFT JOIN catalog.store_types st ON st.id = e.store_type"
#define EST_FROM " catalog.establishments e" EST_JOIN
/* after a WITH e AS (INSERT | UPDATE ... RETURNING *): the row as it now is */
#define EST_FROM_CTE " e" EST_JOIN

static const char *sql_by_id =
    "SELECT " EST_COLS " FROM" EST_FROM " WHERE e.public_id = $1::uuid AND e.deleted_at IS NULL";
static const char *sql_by_id_lock =
    "SELECT " EST_COLS " FROM" EST_FROM " WHERE e.public_id = $1::uuid AND e.deleted_at IS NULL"
    " FOR UPDATE OF e";
static const char *sql_by_key = "SELECT " EST_COLS " FROM" EST_FROM " WHERE e.create_key = $1";

static const char *sql_insert =
    "WITH e AS (INSERT INTO catalog.establishments"
    "   (client_id, name, store_type, address, city, state, lat, lng, create_key)"
    " VALUES ($1::uuid, $2, $3::smallint, $4, $5, $6, $7::float8, $8::float8, $9) RETURNING *)"
    " SELECT " EST_COLS " FROM" EST_FROM_CTE;

/* $1 the client asked for (admin), $2 the caller's own (client_admin), $3 city, $4 status,
 * $5/$6 the cursor, $7 page size + 1 */
static const char *sql_list =
    "SELECT " EST_COLS " FROM" EST_FROM " WHERE e.deleted_at IS NULL"
    "   AND ($1::uuid IS NULL OR e.client_id = $1::uuid)"
    "   AND ($2::uuid IS NULL OR e.client_id = $2::uuid)"
    "   AND ($3::text IS NULL OR lower(e.city) = lower($3))"
    "   AND ($4::text IS NULL OR e.status = $4)"
    "   AND ($5::bigint IS NULL OR (e.created_at, e.id) >"
    "        ('epoch'::timestamptz + $5::bigint * interval '1 microsecond', $6::bigint))"
    " ORDER BY e.created_at, e.id LIMIT $7::int";

/* $9: the cleared fields, bits of enum clear_bit */
static const char *sql_update =
    "WITH e AS (UPDATE catalog.establishments e SET name = COALESCE($2, e.name),"
    "   store_type = CASE WHEN $9::int & 1 <> 0 THEN NULL"
    "                     ELSE COALESCE($3::smallint, e.store_type) END,"
    "   address = CASE WHEN $9::int & 2 <> 0 THEN NULL ELSE COALESCE($4, e.address) END,"
    "   city = CASE WHEN $9::int & 4 <> 0 THEN NULL ELSE COALESCE($5, e.city) END,"
    "   state = CASE WHEN $9::int & 8 <> 0 THEN NULL ELSE COALESCE($6, e.state) END,"
    "   lat = CASE WHEN $9::int & 16 <> 0 THEN NULL ELSE COALESCE($7::float8, e.lat) END,"
    "   lng = CASE WHEN $9::int & 32 <> 0 THEN NULL ELSE COALESCE($8::float8, e.lng) END,"
    "   updated_at = now()"
    " WHERE e.id = $1::bigint RETURNING *)"
    " SELECT " EST_COLS " FROM" EST_FROM_CTE;

static const char *sql_set_status =
    "WITH e AS (UPDATE catalog.establishments SET status = $2, updated_at = now()"
    " WHERE id = $1::bigint RETURNING *) SELECT " EST_COLS " FROM" EST_FROM_CTE;

static const char *sql_delete =
    "UPDATE catalog.establishments SET deleted_at = now(), updated_at = now()"
    " WHERE id = $1::bigint";
static const char *sql_delete_lots =
    "UPDATE catalog.lots SET deleted_at = now(), updated_at = now()"
    " WHERE establishment_id = $1::bigint AND deleted_at IS NULL RETURNING public_id::text, id";
static const char *sql_unassign_cameras =
    "UPDATE catalog.cameras SET lot_id = NULL, updated_at = now()"
    " WHERE lot_id IN (SELECT id FROM catalog.lots WHERE establishment_id = $1::bigint)"
    "   AND deleted_at IS NULL RETURNING public_id::text";
static const char *sql_delete_slots =
    "UPDATE catalog.slots SET deleted_at = now(), updated_at = now()"
    " WHERE lot_id IN (SELECT id FROM catalog.lots WHERE establishment_id = $1::bigint)"
    "   AND deleted_at IS NULL";

enum clear_bit {
    CLEAR_STORE_TYPE = 1,
    CLEAR_ADDRESS = 2,
    CLEAR_CITY = 4,
    CLEAR_STATE = 8,
    CLEAR_LAT = 16,
    CLEAR_LNG = 32
};

static const char *col(PGresult *res, int c)
{
    return PQgetisnull(res, 0, c) ? NULL : PQgetvalue(res, 0, c);
}

static void from_row(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    Sp__Catalog__V1__EstablishmentReply *e = (Sp__Catalog__V1__EstablishmentReply *)m;
    (void)req;
    e->id = PQgetvalue(res, row, CAT_E_ID);
    e->client_id = PQgetvalue(res, row, CAT_E_CLIENT);
    e->name = PQgetvalue(res, row, CAT_E_NAME);
    e->store_type =
        PQgetisnull(res, row, CAT_E_STORE_TYPE) ? NULL : PQgetvalue(res, row, CAT_E_STORE_TYPE);
    e->address = PQgetisnull(res, row, CAT_E_ADDRESS) ? NULL : PQgetvalue(res, row, CAT_E_ADDRESS);
    e->city = PQgetisnull(res, row, CAT_E_CITY) ? NULL : PQgetvalue(res, row, CAT_E_CITY);
    e->state = PQgetisnull(res, row, CAT_E_STATE) ? NULL : PQgetvalue(res, row, CAT_E_STATE);
    e->has_lat = !PQgetisnull(res, row, CAT_E_LAT);
    e->lat = e->has_lat ? strtod(PQgetvalue(res, row, CAT_E_LAT), NULL) : 0;
    e->has_lng = !PQgetisnull(res, row, CAT_E_LNG);
    e->lng = e->has_lng ? strtod(PQgetvalue(res, row, CAT_E_LNG), NULL) : 0;
    e->status = PQgetvalue(res, row, CAT_E_STATUS);
    e->has_created_at = e->has_updated_at = 1;
    e->created_at = spsvc_pg_int64(PQgetvalue(res, row, CAT_E_CREATED));
    e->updated_at = spsvc_pg_int64(PQgetvalue(res, row, CAT_E_UPDATED));
}

static sp_status reply_row(spbus_req *req, PGresult *res)
{
    Sp__Catalog__V1__EstablishmentReply e = SP__CATALOG__V1__ESTABLISHMENT_REPLY__INIT;
    from_row(&e.base, res, 0, req);
    return spbus_reply(req, &e.base);
}

sp_status cat_establishment_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id,
                                     bool lock)
{
    return spsvc_row_or_reply(res, req, db, lock ? sql_by_id_lock : sql_by_id, id, CAT_E_CLIENT,
                              "establishment");
}

static const char *check_status(const char *s)
{
    if (s == NULL || strcmp(s, "ACTIVE") == 0 || strcmp(s, "INACTIVE") == 0) return NULL;
    return "must be ACTIVE or INACTIVE";
}

static const char *check_lat(bool has, double v)
{
    return !has || (v >= -90 && v <= 90) ? NULL : "must be -90..90";
}

static const char *check_lng(bool has, double v)
{
    return !has || (v >= -180 && v <= 180) ? NULL : "must be -180..180";
}

/* "%.17g" of v when has, else NULL: a float8 parameter that round-trips. */
static const char *num_param(spbus_req *req, bool has, double v)
{
    return has ? sp_arena_printf(spbus_req_arena(req), "%.17g", v) : NULL;
}

/* CreateEstablishment: {clientId, name, storeType?, address?, city?, state?, lat?, lng?}
 * -> the establishment, ACTIVE. Admins (and tenancy approving a request, with its id as
 * idempotency key: the same key answers the first establishment). 400 naming each bad
 * field (clientId of no client among them), 409 when the name is taken in that client. */
static sp_status create_establishment(spbus_req *req)
{
    const Sp__Catalog__V1__CreateEstablishmentRequest *in = (const void *)spbus_req_input(req);
    const char *key = cat_create_key(req), *store_type = NULL;
    PGresult *res = NULL;
    spdb *db = NULL;
    spsvc_fields f;

    sp_status s = cat_require_admin_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK && key != NULL) {
        s = cat_find_created(req, db, sql_by_key, key, reply_row);
        if (s != SP_ERR_NOT_FOUND) return SP_OK;
        s = SP_OK;
    }
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "clientId", spsvc_check_uuid(in->client_id));
        spsvc_fields_add(&f, "name", spsvc_check_text(in->name, CAT_NAME_MAX));
        spsvc_fields_add(&f, "address", spsvc_check_opt_text(in->address, CAT_ADDRESS_MAX));
        spsvc_fields_add(&f, "city", spsvc_check_opt_text(in->city, CAT_CITY_MAX));
        spsvc_fields_add(&f, "state", spsvc_check_opt_text(in->state, CAT_STATE_MAX));
        spsvc_fields_add(&f, "lat", check_lat(in->has_lat, in->lat));
        spsvc_fields_add(&f, "lng", check_lng(in->has_lng, in->lng));
        if (in->store_type != NULL) {
            store_type = cat_lookup_id(&s, req, db, "store_types", in->store_type);
            if (s != SP_OK) return SP_OK;
            spsvc_fields_add(&f, "storeType", store_type == NULL ? "unknown store type" : NULL);
        }
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) {
        /* tenancy acting for a client (a request) vouches for it; the body must name it */
        spsvc_principal p;
        spsvc_principal_of(&p, req);
        if (p.client_id == NULL)
            s = cat_client_exists_or_reply(req, in->client_id);
        else if (strcasecmp(p.client_id, in->client_id) != 0)
            s = spsvc_fail(req, SP_ERR_NOT_FOUND, "client not found");
    }
    if (s == SP_OK && spsvc_validate_only(req)) {
        Sp__Catalog__V1__EstablishmentReply none = SP__CATALOG__V1__ESTABLISHMENT_REPLY__INIT;
        return spbus_reply(req, &none.base);
    }
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        const char *params[] = {in->client_id,
                                in->name,
                                store_type,
                                in->address,
                                in->city,
                                in->state,
                                num_param(req, in->has_lat, in->lat),
                                num_param(req, in->has_lng, in->lng),
                                key};
        s = spdb_query(&res, db, sql_insert, 9, params);
        if (s == SP_ERR_CONFLICT) {
            cat_conflict_reply(req, db, sql_by_key, key, reply_row,
                               "an establishment of this client has this name", "name");
            return SP_OK;
        }
        if (s != SP_OK) spsvc_db_error_reply(req, s, "insert_establishment");
    }
    const char *id = s == SP_OK ? PQgetvalue(res, 0, CAT_E_ID) : NULL;
    if (s == SP_OK)
        s = spsvc_audit_or_reply(req, db, in->client_id, "establishment.created", "establishment",
                                 id, NULL);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, in->client_id, "establishment", id, "created", NULL);
        sp_log_info(spbus_req_id(req), "establishment_created", "establishmentId", id);
        reply_row(req, res);
    }
    PQclear(res);
    return SP_OK;
}

/* ListEstablishments: an admin's of every client (?clientId=), a client_admin's of its own
 * client only; ?city= (any letter case) and ?status=. */
static sp_status list_establishments(spbus_req *req)
{
    const Sp__Catalog__V1__ListEstablishmentsRequest *in = (const void *)spbus_req_input(req);
    const char *scope = NULL;
    spsvc_fields f;
    spsvc_page pg;
    PGresult *res = NULL;
    spdb *db = NULL;

    sp_status s = cat_list_or_reply(&scope, &pg, &f, req, in->has_limit, in->limit, in->cursor,
                                    in->client_id);
    if (s == SP_OK) {
        spsvc_fields_add(&f, "status", check_status(in->status));
        if (in->city != NULL)
            spsvc_fields_add(&f, "city", spsvc_check_text(in->city, CAT_CITY_MAX));
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;

    const char *params[] = {in->client_id,         scope,   in->city,  in->status,
                            spsvc_page_after(&pg), pg.id_s, pg.fetch_s};
    s = spdb_query(&res, db, sql_list, 7, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "list_establishments");

    spsvc_reply_page(req, &pg, res, CAT_E_CREATED, CAT_E_INTERNAL,
                     &sp__catalog__v1__list_establishments_reply__descriptor, from_row);
    PQclear(res);
    return SP_OK;
}

static sp_status get_establishment(spbus_req *req)
{
    const Sp__Catalog__V1__GetEstablishmentRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = cat_establishment_or_reply(&res, req, db, in->id, false);
    if (s == SP_OK) reply_row(req, res);
    PQclear(res);
    return SP_OK;
}

/* The bit of a field a PATCH may clear; 0 for one it may not. */
static unsigned clear_bit_of(const char *name)
{
    static const struct {
        const char *name;
        unsigned bit;
    } bits[] = {{"storeType", CLEAR_STORE_TYPE}, {"address", CLEAR_ADDRESS}, {"city", CLEAR_CITY},
                {"state", CLEAR_STATE},          {"lat", CLEAR_LAT},         {"lng", CLEAR_LNG}};
    for (size_t i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        if (strcmp(name, bits[i].name) == 0) return bits[i].bit;
    return 0;
}

/* UpdateEstablishment: {name, storeType, address, city, state, lat, lng} of an admin or the
 * client's manager; every field but name may be cleared (null). */
static sp_status update_establishment(spbus_req *req)
{
    const Sp__Catalog__V1__UpdateEstablishmentRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL, *up = NULL;
    const char *store_type = NULL;
    spdb *db = NULL;
    unsigned cleared = 0;
    spsvc_fields f;

    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = cat_establishment_or_reply(&res, req, db, in->id, true);
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        spsvc_fields_init(&f);
        if (in->name != NULL)
            spsvc_fields_add(&f, "name", spsvc_check_text(in->name, CAT_NAME_MAX));
        spsvc_fields_add(&f, "address", spsvc_check_opt_text(in->address, CAT_ADDRESS_MAX));
        spsvc_fields_add(&f, "city", spsvc_check_opt_text(in->city, CAT_CITY_MAX));
        spsvc_fields_add(&f, "state", spsvc_check_opt_text(in->state, CAT_STATE_MAX));
        spsvc_fields_add(&f, "lat", check_lat(in->has_lat, in->lat));
        spsvc_fields_add(&f, "lng", check_lng(in->has_lng, in->lng));
        for (size_t i = 0; i < in->n_cleared; i++) {
            unsigned bit = clear_bit_of(in->cleared[i]);
            spsvc_fields_add(&f, in->cleared[i], bit == 0 ? "must not be null" : NULL);
            cleared |= bit;
        }
        if (in->store_type != NULL) {
            store_type = cat_lookup_id(&s, req, db, "store_types", in->store_type);
            if (s != SP_OK) return SP_OK;
            spsvc_fields_add(&f, "storeType", store_type == NULL ? "unknown store type" : NULL);
        }
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) {
        char bits[16];
        snprintf(bits, sizeof(bits), "%u", cleared);
        const char *params[] = {col(res, CAT_E_INTERNAL),
                                in->name,
                                store_type,
                                in->address,
                                in->city,
                                in->state,
                                num_param(req, in->has_lat, in->lat),
                                num_param(req, in->has_lng, in->lng),
                                bits};
        s = spdb_query(&up, db, sql_update, 9, params);
        if (s == SP_ERR_CONFLICT)
            spbus_reply_error(req, SP_ERR_CONFLICT, "an establishment of this client has this name",
                              "name", "already taken", NULL);
        else if (s != SP_OK)
            spsvc_db_error_reply(req, s, "update_establishment");
    }
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, col(up, CAT_E_CLIENT), "establishment", col(up, CAT_E_ID), "updated",
                      NULL);
        reply_row(req, up);
    }
    PQclear(res);
    PQclear(up);
    return SP_OK;
}

/* ACTIVE <-> INACTIVE by an admin, audited; 409 from the other state. */
static sp_status change_status(spbus_req *req, const char *id, const char *from, const char *to,
                               const char *action)
{
    PGresult *res = NULL, *up = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_admin_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = cat_establishment_or_reply(&res, req, db, id, true);
    if (s == SP_OK && strcmp(col(res, CAT_E_STATUS), from) != 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "establishment is %s, not %s", col(res, CAT_E_STATUS), from);
        s = spsvc_fail(req, SP_ERR_CONFLICT, msg);
    }
    if (s == SP_OK) {
        const char *params[] = {col(res, CAT_E_INTERNAL), to};
        s = spdb_query(&up, db, sql_set_status, 2, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "set_status");
    }
    if (s == SP_OK)
        s = spsvc_audit_or_reply(req, db, col(res, CAT_E_CLIENT), action, "establishment",
                                 col(res, CAT_E_ID), NULL);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, col(up, CAT_E_CLIENT), "establishment", col(up, CAT_E_ID), "status",
                      NULL);
        sp_log_info(spbus_req_id(req), "establishment_status", "establishmentId", col(up, CAT_E_ID),
                    "status", to);
        reply_row(req, up);
    }
    PQclear(res);
    PQclear(up);
    return SP_OK;
}

static sp_status activate_establishment(spbus_req *req)
{
    const Sp__Catalog__V1__ActivateEstablishmentRequest *in = (const void *)spbus_req_input(req);
    return change_status(req, in->id, "INACTIVE", "ACTIVE", "establishment.activated");
}

static sp_status deactivate_establishment(spbus_req *req)
{
    const Sp__Catalog__V1__DeactivateEstablishmentRequest *in = (const void *)spbus_req_input(req);
    return change_status(req, in->id, "ACTIVE", "INACTIVE", "establishment.deactivated");
}

/* DeleteEstablishment: soft, with its lots and their slots (names and codes free again);
 * the lots' change messages let the projection drop their status. Admins only. */
static sp_status delete_establishment(spbus_req *req)
{
    const Sp__Catalog__V1__DeleteEstablishmentRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL, *lots = NULL, *cams = NULL;
    spdb *db = NULL;
    sp_status s = cat_require_admin_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = cat_establishment_or_reply(&res, req, db, in->id, true);
    const char *params[] = {res != NULL ? col(res, CAT_E_INTERNAL) : NULL};
    if (s == SP_OK) {
        s = spdb_query(&cams, db, sql_unassign_cameras, 1, params);
        if (s == SP_OK) s = spdb_exec(db, sql_delete_slots, 1, params);
        if (s == SP_OK) s = spdb_query(&lots, db, sql_delete_lots, 1, params);
        if (s == SP_OK) s = spdb_exec(db, sql_delete, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "delete_establishment");
    }
    if (s == SP_OK)
        s = spsvc_audit_or_reply(req, db, col(res, CAT_E_CLIENT), "establishment.deleted",
                                 "establishment", col(res, CAT_E_ID), NULL);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        const char *client = col(res, CAT_E_CLIENT), *id = col(res, CAT_E_ID);
        for (int i = 0; i < PQntuples(cams); i++)
            spsvc_changed(req, client, "camera", PQgetvalue(cams, i, 0), "unassigned", NULL);
        for (int i = 0; i < PQntuples(lots); i++)
            spsvc_changed(req, client, "lot", PQgetvalue(lots, i, 0), "deleted", id);
        spsvc_changed(req, client, "establishment", id, "deleted", NULL);
        sp_log_info(spbus_req_id(req), "establishment_deleted", "establishmentId", id);
        Sp__Catalog__V1__DeleteEstablishmentReply out =
            SP__CATALOG__V1__DELETE_ESTABLISHMENT_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    PQclear(res);
    PQclear(lots);
    PQclear(cams);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"CreateEstablishment", create_establishment,
     &sp__catalog__v1__create_establishment_request__descriptor, NULL},
    {"ListEstablishments", list_establishments,
     &sp__catalog__v1__list_establishments_request__descriptor, NULL},
    {"GetEstablishment", get_establishment, &sp__catalog__v1__get_establishment_request__descriptor,
     NULL},
    {"UpdateEstablishment", update_establishment,
     &sp__catalog__v1__update_establishment_request__descriptor, NULL},
    {"ActivateEstablishment", activate_establishment,
     &sp__catalog__v1__activate_establishment_request__descriptor, NULL},
    {"DeactivateEstablishment", deactivate_establishment,
     &sp__catalog__v1__deactivate_establishment_request__descriptor, NULL},
    {"DeleteEstablishment", delete_establishment,
     &sp__catalog__v1__delete_establishment_request__descriptor, NULL},
};

void establishments_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
