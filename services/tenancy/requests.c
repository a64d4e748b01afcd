/* requests.c -- what a client asks the platform to do (domain.md, "Request"):
 * CreateRequest (NEW_ESTABLISHMENT, NEW_LOT, NEW_HARDWARE, the payload checked by catalog
 * now), ListRequests, GetRequest, and the decisions ApproveRequest / RejectRequest, by an
 * admin, once. Approving calls catalog's creation for the request's client with the
 * request's id as idempotency key: the resource is made ACTIVE in the same step and
 * answered in 'result'; a retry after a crash finds the same resource; when catalog
 * refuses (a lotCode taken since), the answer is its error and the request stays OPEN.
 * Ends with requests_register(). */
#include <cjson/cJSON.h>
#include <string.h>

#include "sp/catalog/v1/catalog.pb-c.h"
#include "spcrypto.h"
#include "sppb.h"
#include "tenancy.h"

#define REASON_MAX 500
/* catalog's creation makes up to 1,000 slots and asks tenancy nothing back */
#define CATALOG_TIMEOUT_MS 5000

#define REQ_COLS                                                                                   \
    "r.public_id::text, c.public_id::text, r.type, r.payload::text, r.status,"                     \
    " r.created_by::text, r.decided_by::text,"                                                     \
    " (extract(epoch FROM r.decided_at) * 1000000)::bigint, r.reason, r.result::text,"             \
    " (extract(epoch FROM r.created_at) * 1000000)::bigint,"                                       \
    " (extract(epoch FROM r.updated_at) * 1000000)::bigint, r.id"
#define REQ_FROM " tenancy.requests r JOIN tenancy.clients c ON c.id = r.client_id"
enum {
    R_ID,
    R_CLIENT,
    R_TYPE,
    R_PAYLOAD,
    R_STATUS,
    R_CREATED_BY,
    R_DECIDED_BY,
    R_DECIDED_AT,
    R_REASON,
    R_RESULT,
    R_CREATED,
    R_UPDATED,
    R_INTERNAL
};

static const char *sql_insert =
    "WITH r AS (INSERT INTO tenancy.requests (client_id, type, payload, created_by)"
    " VALUES ($1::bigint, $2, $3::jsonb, $4::uuid) RETURNING *)"
    " SELECT " REQ_COLS " FROM r JOIN tenancy.clients c ON c.id = r.client_id";

static const char *sql_by_id = "SELECT " REQ_COLS " FROM" REQ_FROM " WHERE r.public_id = $1::uuid";
static const char *sql_by_id_lock =
    "SELECT " REQ_COLS " FROM" REQ_FROM " WHERE r.public_id = $1::uuid FOR UPDATE OF r";

/* $1 status, $2 the client asked for (admin), $3 the caller's own, $4/$5 cursor, $6 size */
static const char *sql_list =
    "SELECT " REQ_COLS " FROM" REQ_FROM " WHERE ($1::text IS NULL OR r.status = $1)"
    "   AND ($2::uuid IS NULL OR c.public_id = $2::uuid)"
    "   AND ($3::uuid IS NULL OR c.public_id = $3::uuid)"
    "   AND ($4::bigint IS NULL OR (r.created_at, r.id) >"
    "        ('epoch'::timestamptz + $4::bigint * interval '1 microsecond', $5::bigint))"
    " ORDER BY r.created_at, r.id LIMIT $6::int";

/* $5 the result (NULL when rejected) */
static const char *sql_decide =
    "WITH r AS (UPDATE tenancy.requests SET status = $2, decided_by = $3::uuid,"
    "   decided_at = now(), reason = $4, result = $5::jsonb, updated_at = now()"
    " WHERE id = $1::bigint RETURNING *)"
    " SELECT " REQ_COLS " FROM r JOIN tenancy.clients c ON c.id = r.client_id";

/* What each type asks catalog to do. */
typedef struct {
    const char *type, *method;
    const ProtobufCMessageDescriptor *in, *out;
} req_type;

static const req_type types[] = {
    {"NEW_ESTABLISHMENT", "CreateEstablishment",
     &sp__catalog__v1__create_establishment_request__descriptor,
     &sp__catalog__v1__establishment_reply__descriptor},
    {"NEW_LOT", "CreateLot", &sp__catalog__v1__create_lot_request__descriptor,
     &sp__catalog__v1__lot_reply__descriptor},
    {"NEW_HARDWARE", "CreateCamera", &sp__catalog__v1__create_camera_request__descriptor,
     &sp__catalog__v1__camera_reply__descriptor},
};

static const req_type *type_of(const char *type)
{
    for (size_t i = 0; type != NULL && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i].type, type) == 0) return &types[i];
    return NULL;
}

static const char *col(PGresult *res, int c)
{
    return PQgetisnull(res, 0, c) ? NULL : PQgetvalue(res, 0, c);
}

static void from_row(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    Sp__Tenancy__V1__RequestReply *r = (Sp__Tenancy__V1__RequestReply *)m;
    (void)req;
#define COL(c) (PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c))
    r->id = COL(R_ID);
    r->client_id = COL(R_CLIENT);
    r->type = COL(R_TYPE);
    r->payload_json = COL(R_PAYLOAD);
    r->status = COL(R_STATUS);
    r->created_by = COL(R_CREATED_BY);
    r->decided_by = COL(R_DECIDED_BY);
    r->has_decided_at = !PQgetisnull(res, row, R_DECIDED_AT);
    r->decided_at = spsvc_pg_int64(COL(R_DECIDED_AT));
    r->reason = COL(R_REASON);
    r->result_json = COL(R_RESULT);
    r->has_created_at = r->has_updated_at = 1;
    r->created_at = spsvc_pg_int64(COL(R_CREATED));
    r->updated_at = spsvc_pg_int64(COL(R_UPDATED));
#undef COL
}

static sp_status reply_row(spbus_req *req, PGresult *res)
{
    Sp__Tenancy__V1__RequestReply r = SP__TENANCY__V1__REQUEST_REPLY__INIT;
    from_row(&r.base, res, 0, req);
    return spbus_reply(req, &r.base);
}

/* ---- the payload as a catalog call ------------------------------------------------------ */

/* The catalog request of 'payload' (JSON text) for client 'client' (public id): the
 * client is the request's (a payload naming one is refused), NEW_LOT's establishmentId is
 * the path's id of CreateLot. 400 naming "payload.<field>" for what sppb refuses. */
static sp_status message_or_reply(ProtobufCMessage **out, spbus_req *req, const req_type *t,
                                  const char *payload, const char *client)
{
    sppb_errors errs;
    spsvc_fields f;
    spsvc_fields_init(&f);
    *out = NULL;
    cJSON *json = cJSON_Parse(payload);
    if (!cJSON_IsObject(json)) {
        cJSON_Delete(json);
        spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "invalid input", "payload",
                          "must be an object", NULL);
        return SP_ERR_VALIDATION_FAILED;
    }
    bool lot = t->in == &sp__catalog__v1__create_lot_request__descriptor;
    if (cJSON_HasObjectItem(json, "clientId") || cJSON_HasObjectItem(json, "id"))
        spsvc_fields_add(&f, cJSON_HasObjectItem(json, "id") ? "payload.id" : "payload.clientId",
                         "unknown field");
    if (lot) {
        cJSON *e = cJSON_DetachItemFromObjectCaseSensitive(json, "establishmentId");
        if (e == NULL) spsvc_fields_add(&f, "payload.establishmentId", "required");
        if (e != NULL) cJSON_AddItemToObject(json, "id", e);
    } else {
        cJSON_AddStringToObject(json, "clientId", client);
    }
    sp_status s = f.n > 0
                      ? SP_ERR_VALIDATION_FAILED
                      : sppb_from_json(out, t->in, json, SPPB_NO_NULL, spbus_req_arena(req), &errs);
    cJSON_Delete(json);
    if (s == SP_ERR_INTERNAL) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    sp_arena *a = spbus_req_arena(req);
    for (size_t i = 0; s != SP_OK && f.n == 0 && i < errs.n; i++) {
        const char *p = strcmp(errs.e[i].path, "id") == 0 ? "establishmentId" : errs.e[i].path;
        spsvc_fields_add(&f, sp_arena_printf(a, "payload.%s", p),
                         sp_arena_strdup(a, errs.e[i].reason));
    }
    if (s != SP_OK) return spsvc_fields_or_reply(req, &f);
    return SP_OK;
}

/* Replies catalog's refusal of a payload: its fields under "payload.", a lot's missing
 * establishment as a bad payload.establishmentId (the request's client sees no other). */
static sp_status forward_catalog_error(spbus_req *req, sp_status s, Sp__V1__Error *err,
                                       const req_type *t)
{
    sp_arena *a = spbus_req_arena(req);
    if (err == NULL) return spsvc_fail(req, SP_ERR_UNAVAILABLE, "catalog did not answer");
    if (s == SP_ERR_NOT_FOUND && t->in == &sp__catalog__v1__create_lot_request__descriptor) {
        spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "invalid input", "payload.establishmentId",
                          "no such establishment", NULL);
        return SP_ERR_VALIDATION_FAILED;
    }
    for (size_t i = 0; i < err->n_fields; i++)
        if (err->fields[i] != NULL && err->fields[i]->path != NULL)
            err->fields[i]->path = sp_arena_printf(a, "payload.%s", err->fields[i]->path);
    return spsvc_forward_error_reply(req, s, err);
}

/* Calls catalog's creation of 't' for 'client': validate_only checks it, else it is made
 * with the request's id as idempotency key. *out: catalog's answer. */
static sp_status call_catalog(ProtobufCMessage **out, Sp__V1__Error **err, spbus_req *req,
                              const req_type *t, const ProtobufCMessage *in, const char *client,
                              const char *key)
{
    const spsvc_call_opts o = {.timeout_ms = CATALOG_TIMEOUT_MS,
                               .client_id = client,
                               .idempotency_key = key,
                               .validate_only = key == NULL};
    return spsvc_call_for(out, err, ten_of(req)->bus, req, "catalog", t->method, in, t->out, &o,
                          spbus_req_arena(req));
}

/* ---- routes ------------------------------------------------------------------------------- */

/* CreateRequest: {type, payload} by a client_admin of either role for its own client ->
 * 201, OPEN. The payload is checked by catalog now (400 naming payload.<field>). */
static sp_status create_request(spbus_req *req)
{
    const Sp__Tenancy__V1__CreateRequestRequest *in = (const void *)spbus_req_input(req);
    const req_type *t = type_of(in->type);
    ProtobufCMessage *msg = NULL, *out = NULL;
    Sp__V1__Error *err = NULL;
    PGresult *client = NULL, *res = NULL;
    spsvc_principal p;
    spdb *db = NULL;

    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_CLIENT_ADMIN, &p);
    if (s == SP_OK) {
        spsvc_fields f;
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "type",
                         in->type == NULL ? "required"
                         : t == NULL      ? "must be NEW_ESTABLISHMENT, NEW_LOT or NEW_HARDWARE"
                                          : NULL);
        spsvc_fields_add(&f, "payload", in->payload_json == NULL ? "required" : NULL);
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = ten_client_or_reply(&client, req, db, p.client_id, false);
    if (s == SP_OK) s = message_or_reply(&msg, req, t, in->payload_json, p.client_id);
    if (s == SP_OK) {
        s = call_catalog(&out, &err, req, t, msg, p.client_id, NULL);
        if (s != SP_OK) forward_catalog_error(req, s, err, t);
    }
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        const char *params[] = {col(client, TEN_C_INTERNAL), in->type, in->payload_json, p.user_id};
        s = spdb_query(&res, db, sql_insert, 4, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "insert_request");
    }
    if (s == SP_OK)
        s = spsvc_audit_or_reply(
            req, db, p.client_id, "request.created", "request", col(res, R_ID),
            sp_arena_printf(spbus_req_arena(req), "{\"type\":\"%s\"}", t->type));
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "request_created", "requestId", col(res, R_ID), "type",
                    t->type);
        reply_row(req, res);
    }
    PQclear(client);
    PQclear(res);
    return SP_OK;
}

static const char *check_status(const char *s)
{
    if (s == NULL || strcmp(s, "OPEN") == 0 || strcmp(s, "APPROVED") == 0 ||
        strcmp(s, "REJECTED") == 0)
        return NULL;
    return "must be OPEN, APPROVED or REJECTED";
}

/* ListRequests: an admin's of every client (?status=, ?clientId=), a client_admin's of its
 * own client. Oldest first. */
static sp_status list_requests(spbus_req *req)
{
    const Sp__Tenancy__V1__ListRequestsRequest *in = (const void *)spbus_req_input(req);
    spsvc_principal p;
    spsvc_page pg;
    PGresult *res = NULL;
    spdb *db = NULL;

    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN, &p);
    if (s == SP_OK) s = spsvc_page_or_reply(&pg, req, in->has_limit, in->limit, in->cursor);
    if (s == SP_OK) {
        spsvc_fields f;
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "status", check_status(in->status));
        if (in->client_id != NULL)
            spsvc_fields_add(&f, "clientId", spsvc_check_uuid(in->client_id));
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;
    const char *params[] = {in->status,
                            in->client_id,
                            p.role == SPSVC_ROLE_CLIENT_ADMIN ? p.client_id : NULL,
                            spsvc_page_after(&pg),
                            pg.id_s,
                            pg.fetch_s};
    s = spdb_query(&res, db, sql_list, 6, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "list_requests");
    spsvc_reply_page(req, &pg, res, R_CREATED, R_INTERNAL,
                     &sp__tenancy__v1__list_requests_reply__descriptor, from_row);
    PQclear(res);
    return SP_OK;
}

/* Reads request 'id' for the caller: 404 when it does not exist or is another tenant's. */
static sp_status request_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id,
                                  bool lock)
{
    return spsvc_row_or_reply(res, req, db, lock ? sql_by_id_lock : sql_by_id, id, R_CLIENT,
                              "request");
}

static sp_status get_request(spbus_req *req)
{
    const Sp__Tenancy__V1__GetRequestRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    sp_status s =
        spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN, NULL);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = request_or_reply(&res, req, db, in->id, false);
    if (s == SP_OK) reply_row(req, res);
    PQclear(res);
    return SP_OK;
}

/* A decision by an admin on an OPEN request (409 otherwise). Approving makes the resource
 * through catalog first: its refusal is the answer and the request stays OPEN. */
static sp_status decide(spbus_req *req, const char *id, const char *reason, bool approve)
{
    PGresult *res = NULL, *up = NULL;
    ProtobufCMessage *msg = NULL, *made = NULL;
    Sp__V1__Error *err = NULL;
    char *result = NULL;
    spsvc_principal p;
    spdb *db = NULL;

    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN, &p);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = request_or_reply(&res, req, db, id, true);
    if (s == SP_OK && strcmp(col(res, R_STATUS), "OPEN") != 0) {
        char msg409[96];
        snprintf(msg409, sizeof(msg409), "request is %s, not OPEN", col(res, R_STATUS));
        s = spsvc_fail(req, SP_ERR_CONFLICT, msg409);
    }
    if (s == SP_OK) {
        spsvc_fields f;
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "reason", spsvc_check_opt_text(reason, REASON_MAX));
        s = spsvc_fields_or_reply(req, &f);
    }
    const req_type *t = s == SP_OK ? type_of(col(res, R_TYPE)) : NULL;
    if (s == SP_OK && t == NULL) s = spsvc_fail(req, SP_ERR_INTERNAL, "unknown request type");
    if (s == SP_OK && approve) {
        s = message_or_reply(&msg, req, t, col(res, R_PAYLOAD), col(res, R_CLIENT));
        if (s == SP_OK) {
            s = call_catalog(&made, &err, req, t, msg, col(res, R_CLIENT), col(res, R_ID));
            if (s != SP_OK) forward_catalog_error(req, s, err, t);
        }
        if (s == SP_OK) {
            cJSON *j = sppb_to_json(made);
            char *text = j != NULL ? cJSON_PrintUnformatted(j) : NULL;
            result = text != NULL ? sp_arena_strdup(spbus_req_arena(req), text) : NULL;
            cJSON_free(text);
            cJSON_Delete(j);
            if (result == NULL) s = spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
        }
    }
    if (s == SP_OK) {
        const char *params[] = {col(res, R_INTERNAL), approve ? "APPROVED" : "REJECTED", p.user_id,
                                reason, result};
        s = spdb_query(&up, db, sql_decide, 5, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "decide_request");
    }
    if (s == SP_OK)
        s = spsvc_audit_or_reply(
            req, db, col(res, R_CLIENT), approve ? "request.approved" : "request.rejected",
            "request", col(res, R_ID),
            sp_arena_printf(spbus_req_arena(req), "{\"type\":\"%s\"}", t->type));
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        sp_log_info(spbus_req_id(req), "request_decided", "requestId", col(res, R_ID), "status",
                    approve ? "APPROVED" : "REJECTED");
        reply_row(req, up);
    }
    PQclear(res);
    PQclear(up);
    return SP_OK;
}

static sp_status approve_request(spbus_req *req)
{
    const Sp__Tenancy__V1__ApproveRequestRequest *in = (const void *)spbus_req_input(req);
    return decide(req, in->id, in->reason, true);
}

static sp_status reject_request(spbus_req *req)
{
    const Sp__Tenancy__V1__RejectRequestRequest *in = (const void *)spbus_req_input(req);
    return decide(req, in->id, in->reason, false);
}

static const spbus_route routes[] = {
    {"CreateRequest", create_request, &sp__tenancy__v1__create_request_request__descriptor, NULL},
    {"ListRequests", list_requests, &sp__tenancy__v1__list_requests_request__descriptor, NULL},
    {"GetRequest", get_request, &sp__tenancy__v1__get_request_request__descriptor, NULL},
    {"ApproveRequest", approve_request, &sp__tenancy__v1__approve_request_request__descriptor,
     NULL},
    {"RejectRequest", reject_request, &sp__tenancy__v1__reject_request_request__descriptor, NULL},
};

void requests_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
