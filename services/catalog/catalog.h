/* catalog.h -- the catalog service: the seeded lookups, establishments, lots and slots
 * (api.md, "Catalog"); API keys and cameras next. One file per group of routes, each
 * ending with its _register(); what they share is here. Internal to services/catalog/.
 * Prefix: cat_. */
#ifndef SP_CATALOG_H
#define SP_CATALOG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp/catalog/v1/catalog.pb-c.h"
#include "spsvc.h"

/* api.md, "Field limits" (code points for text, characters for codes). */
#define CAT_NAME_MAX 120
#define CAT_ADDRESS_MAX 200
#define CAT_CITY_MAX 80
#define CAT_STATE_MAX 40
#define CAT_LOT_CODE_MAX 20
#define CAT_SLOT_CODE_MAX 10
#define CAT_POLYGON_MIN 3
#define CAT_POLYGON_MAX 32
#define CAT_DEBOUNCE_MAX 60000
#define CAT_UNKNOWN_AFTER_MAX 86400
#define CAT_UNKNOWN_AFTER_DEFAULT_SQL "120" /* api.md's default, also the column's */
#define CAT_SLOTS_MAX 1000                  /* slots in one call */

/* How long a call to tenancy may take (GetClient, to know a client exists). */
#define CAT_TENANCY_TIMEOUT_MS 2000

/* A timestamptz column as microseconds since the epoch. */
#define CAT_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"

/* lookups.c: ListStoreTypes, ListSlotTypes, ListVehicleTypes. establishments.c, lots.c,
 * slots.c: their routes. */
void lookups_register(spsvc *kit);
void establishments_register(spsvc *kit);
void lots_register(spsvc *kit);
void slots_register(spsvc *kit);
void keys_register(spsvc *kit);
void cameras_register(spsvc *kit);
void devices_register(spsvc *kit); /* devices.c: GetDevice, GetLotLayout (services only) */

/* The Redis set of revoked keys' key ids, read by ingest once per batch (bus.md), and the
 * key whose presence says the set is complete (rewritten from PostgreSQL when Redis comes
 * back without it). */
#define CAT_REVOKED_KEYS "sp:api-keys:revoked"
#define CAT_REVOKED_LOADED "sp:api-keys:revoked:loaded"
#define CAT_KEEPER_MS 1000

/* The process's state (spsvc_user). */
typedef struct {
    uint8_t master_key[32]; /* SP_MASTER_KEY: seals the keys' secrets */
    struct cat_keeper *keeper;
} cat_svc;

static inline cat_svc *cat_of(const spbus_req *req)
{
    return spsvc_req_user(req);
}

/* keys.c: the task that keeps CAT_REVOKED_KEYS complete. */
sp_status cat_keeper_start(spsvc *kit, const char *db_url, const char *redis_url);
void cat_keeper_free(void);

/* ---- shared checks -------------------------------------------------------------------- */

/* NULL when s matches ^[A-Za-z0-9_-]{1,max}$, else the reason. */
const char *cat_check_code(const char *s, size_t max);
/* NULL when the JSON text is [[x,y],...] with CAT_POLYGON_MIN..MAX points and
 * 0 <= x,y <= 1; NULL text (absent) is fine. */
const char *cat_check_polygon(const char *json);
/* The id of a lookup's code as SQL text ("3"), in the request's arena; NULL when the code
 * is unknown. 'table' is "store_types" or "slot_types". Replies on a database failure
 * (*s != SP_OK). */
const char *cat_lookup_id(sp_status *s, spbus_req *req, spdb *db, const char *table,
                          const char *code);
/* The idempotency key of this call (a service's, RequestContext.idempotency_key), else
 * NULL: a user's calls never carry one. */
const char *cat_create_key(const spbus_req *req);
/* Whether client 'id' exists in tenancy (any status): 400 {"clientId": "no such client"}
 * when it does not, 503 when tenancy does not answer. */
sp_status cat_client_exists_or_reply(spbus_req *req, const char *id);
/* The client a new key or camera belongs to: for an admin (or a service) 'given', which
 * must name a client (400 {"clientId"} otherwise); for a client_admin its own (404 when
 * 'given' names another, 403 for an operator); for a service acting for one client, that
 * client. *client points into the request. */
sp_status cat_owner_or_reply(const char **client, spbus_req *req, const char *given);
/* Replies the resource of row 0 of 'res'. */
typedef sp_status (*cat_reply_fn)(spbus_req *req, PGresult *res);
/* A creation whose idempotency key was used before: replies what it made (the row of
 * 'sql', $1 the key) and returns SP_OK; SP_ERR_NOT_FOUND when the key is new (nothing
 * replied). */
sp_status cat_find_created(spbus_req *req, spdb *db, const char *sql, const char *key,
                           cat_reply_fn reply);
/* The start of a list of clients' rows: the caller a reader (403 / 401), the page checked,
 * f initialised with the ?clientId= filter checked (a UUID when given): the caller adds its
 * own filters' checks, then spsvc_fields_or_reply. *scope: the only client a client_admin
 * or a service acting for one sees, else NULL. Replies what fails. */
sp_status cat_list_or_reply(const char **scope, spsvc_page *pg, spsvc_fields *f, spbus_req *req,
                            bool has_limit, int32_t limit, const char *cursor,
                            const char *client_id);
/* After an INSERT answered SP_ERR_CONFLICT (the transaction is rolled back here): the
 * same creation committed meanwhile (its idempotency key 'key', found by 'sql') answers
 * what it made; otherwise 409 conflict 'message' naming 'field' "already taken". */
void cat_conflict_reply(spbus_req *req, spdb *db, const char *sql, const char *key,
                        cat_reply_fn reply, const char *message, const char *field);
/* What the projection knows of the first n rows of 'res' (their public ids in column
 * 'col'): sp.status.v1.<method>, whose request's field 1 is 'repeated string' ids. NULL
 * when it does not answer within CAT_STATUS_CALL_MS (logged): the caller answers without. */
#define CAT_STATUS_CALL_MS 1000
ProtobufCMessage *cat_ask_projection(spbus_req *req, const char *method,
                                     const ProtobufCMessageDescriptor *in_desc,
                                     const ProtobufCMessageDescriptor *out_desc, PGresult *res,
                                     int col, int n);
/* The caller must be a platform admin or a service (admin-only routes). */
sp_status cat_require_admin_or_reply(spbus_req *req);
/* The caller must be a user of the platform or a client, or a service (reads). */
sp_status cat_require_reader_or_reply(spbus_req *req);

/* ---- establishments (establishments.c) ------------------------------------------------- */

enum {
    CAT_E_ID,
    CAT_E_CLIENT,
    CAT_E_NAME,
    CAT_E_STORE_TYPE,
    CAT_E_ADDRESS,
    CAT_E_CITY,
    CAT_E_STATE,
    CAT_E_LAT,
    CAT_E_LNG,
    CAT_E_STATUS,
    CAT_E_CREATED,
    CAT_E_UPDATED,
    CAT_E_INTERNAL
};
/* Reads live establishment 'id' (public) for the caller: 404 when it does not exist, is
 * deleted or is another tenant's. FOR UPDATE when 'lock'. The caller clears *res. */
sp_status cat_establishment_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id,
                                     bool lock);

/* ---- lots (lots.c) ---------------------------------------------------------------------- */

enum {
    CAT_L_ID,
    CAT_L_ESTABLISHMENT,
    CAT_L_CLIENT,
    CAT_L_CODE,
    CAT_L_NAME,
    CAT_L_DEBOUNCE,
    CAT_L_UNKNOWN_AFTER,
    CAT_L_SLOT_COUNT,
    CAT_L_CREATED,
    CAT_L_UPDATED,
    CAT_L_INTERNAL
};
/* Reads live lot 'id' for the caller, like cat_establishment_or_reply. */
sp_status cat_lot_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id, bool lock);

/* ---- slots (slots.c) -------------------------------------------------------------------- */

/* Checks the slots to create (each of its fields under "<prefix>[i]." or, for one slot,
 * at the top when prefix is NULL) into 'f'; their type ids into type_ids (n of them, in
 * the request's arena). Replies on a database failure. */
sp_status cat_check_slots(spsvc_fields *f, const char ***type_ids, spbus_req *req, spdb *db,
                          Sp__Catalog__V1__NewSlot *const *slots, size_t n, const char *prefix);
/* Inside the caller's transaction: inserts the checked slots into lot 'lot' (internal id),
 * all or none: 409 conflict when a code repeats in 'slots' or is taken in the lot. *res
 * holds the slots made, in order. */
sp_status cat_insert_slots_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *lot,
                                    Sp__Catalog__V1__NewSlot *const *slots,
                                    const char *const *type_ids, size_t n);

#endif
