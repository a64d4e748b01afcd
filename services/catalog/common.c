/* common.c -- what the catalog's route files share: the code and polygon checks, lookups
 * by code, the idempotency key of a service's call, the role steps. */
#include <cjson/cJSON.h>
#include <string.h>
#include <strings.h>

#include "catalog.h"
#include "sp/tenancy/v1/tenancy.pb-c.h"

const char *cat_check_code(const char *s, size_t max)
{
    if (s == NULL) return "required";
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return max == CAT_SLOT_CODE_MAX  ? "must be 1..10 characters"
               : max == CAT_LOT_CODE_MAX ? "must be 1..20 characters"
                                         : "too long";
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok) return "may hold only A-Z, a-z, 0-9, _ and -";
    }
    return NULL;
}

const char *cat_check_polygon(const char *json)
{
    if (json == NULL) return NULL;
    cJSON *v = cJSON_Parse(json);
    const char *why = NULL;
    int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
    if (n < 0)
        why = "must be an array of [x,y] points";
    else if (n < CAT_POLYGON_MIN || n > CAT_POLYGON_MAX)
        why = "must have 3..32 points";
    const cJSON *p, *points = why == NULL ? v : NULL;
    cJSON_ArrayForEach(p, points)
    {
        const cJSON *x = cJSON_GetArrayItem(p, 0), *y = cJSON_GetArrayItem(p, 1);
        if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) != 2 || !cJSON_IsNumber(x) ||
            !cJSON_IsNumber(y)) {
            why = "each point must be [x,y]";
            break;
        }
        if (x->valuedouble < 0 || x->valuedouble > 1 || y->valuedouble < 0 || y->valuedouble > 1) {
            why = "points must lie in the frame: 0 <= x,y <= 1";
            break;
        }
    }
    cJSON_Delete(v);
    return why;
}

const char *cat_lookup_id(sp_status *s, spbus_req *req, spdb *db, const char *table,
                          const char *code)
{
    /* the table is never a parameter: one statement per lookup */
    const char *sql = strcmp(table, "store_types") == 0
                          ? "SELECT id::text FROM catalog.store_types WHERE code = $1"
                          : "SELECT id::text FROM catalog.slot_types WHERE code = $1";
    PGresult *res = NULL;
    const char *params[] = {code};
    *s = spdb_query(&res, db, sql, 1, params);
    if (*s != SP_OK) {
        spsvc_db_error_reply(req, *s, table);
        return NULL;
    }
    const char *id =
        PQntuples(res) == 1 ? sp_arena_strdup(spbus_req_arena(req), PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    return id;
}

const char *cat_create_key(const spbus_req *req)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    spsvc_principal p;
    spsvc_principal_of(&p, req);
    if (p.role != SPSVC_ROLE_SERVICE || ctx == NULL) return NULL;
    return spsvc_nonempty(ctx->idempotency_key);
}

sp_status cat_require_admin_or_reply(spbus_req *req)
{
    return spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_SERVICE, NULL);
}

sp_status cat_require_reader_or_reply(spbus_req *req)
{
    return spsvc_require_role_or_reply(
        req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN | SPSVC_ROLE_SERVICE, NULL);
}

sp_status cat_client_exists_or_reply(spbus_req *req, const char *id)
{
    Sp__Tenancy__V1__GetClientRequest in = SP__TENANCY__V1__GET_CLIENT_REQUEST__INIT;
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    in.id = (char *)id;
    sp_status s = spsvc_call(&out, &err, spsvc_bus(spsvc_of(req)), req, "tenancy", "GetClient",
                             &in.base, &sp__tenancy__v1__client_reply__descriptor,
                             CAT_TENANCY_TIMEOUT_MS, spbus_req_arena(req));
    if (s == SP_OK) return SP_OK;
    if (s == SP_ERR_NOT_FOUND) {
        spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "invalid input", "clientId",
                          "no such client", NULL);
        return SP_ERR_VALIDATION_FAILED;
    }
    if (err == NULL) return spsvc_fail(req, SP_ERR_UNAVAILABLE, "tenancy did not answer");
    return spsvc_forward_error_reply(req, s, err);
}

sp_status cat_owner_or_reply(const char **client, spbus_req *req, const char *given)
{
    spsvc_principal p;
    *client = NULL;
    sp_status s = spsvc_require_role_or_reply(
        req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN | SPSVC_ROLE_SERVICE, &p);
    if (s != SP_OK) return s;
    if (p.client_id != NULL) { /* a client_admin, or a service acting for one client */
        /* another tenant's client answers as a missing one, before the role's 403 */
        if (given != NULL && strcasecmp(given, p.client_id) != 0)
            return spsvc_fail(req, SP_ERR_NOT_FOUND, "client not found");
        s = spsvc_require_writer_or_reply(req);
        if (s == SP_OK) *client = p.client_id;
        return s;
    }
    const char *why = spsvc_check_uuid(given);
    if (why != NULL) {
        spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "invalid input", "clientId", why, NULL);
        return SP_ERR_VALIDATION_FAILED;
    }
    s = cat_client_exists_or_reply(req, given);
    if (s == SP_OK) *client = given;
    return s;
}

sp_status cat_find_created(spbus_req *req, spdb *db, const char *sql, const char *key,
                           cat_reply_fn reply)
{
    PGresult *res = NULL;
    const char *params[] = {key};
    sp_status s = spdb_query(&res, db, sql, 1, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "by_key");
    s = PQntuples(res) == 1 ? reply(req, res) : SP_ERR_NOT_FOUND;
    PQclear(res);
    return s == SP_ERR_NOT_FOUND ? s : SP_OK;
}

sp_status cat_list_or_reply(const char **scope, spsvc_page *pg, spsvc_fields *f, spbus_req *req,
                            bool has_limit, int32_t limit, const char *cursor,
                            const char *client_id)
{
    spsvc_principal p;
    *scope = NULL;
    spsvc_fields_init(f);
    sp_status s = spsvc_require_role_or_reply(
        req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN | SPSVC_ROLE_SERVICE, &p);
    if (s == SP_OK) s = spsvc_page_or_reply(pg, req, has_limit, limit, cursor);
    if (s != SP_OK) return s;
    *scope = p.client_id;
    if (client_id != NULL) spsvc_fields_add(f, "clientId", spsvc_check_uuid(client_id));
    return SP_OK;
}

void cat_conflict_reply(spbus_req *req, spdb *db, const char *sql, const char *key,
                        cat_reply_fn reply, const char *message, const char *field)
{
    spsvc_rollback(db);
    if (key != NULL && cat_find_created(req, db, sql, key, reply) == SP_OK) return;
    spbus_reply_error(req, SP_ERR_CONFLICT, message, field, "already taken", NULL);
}

ProtobufCMessage *cat_ask_projection(spbus_req *req, const char *method,
                                     const ProtobufCMessageDescriptor *in_desc,
                                     const ProtobufCMessageDescriptor *out_desc, PGresult *res,
                                     int col, int n)
{
    sp_arena *a = spbus_req_arena(req);
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(in_desc, 1);
    if (n <= 0 || f == NULL || f->label != PROTOBUF_C_LABEL_REPEATED ||
        f->type != PROTOBUF_C_TYPE_STRING)
        return NULL;
    ProtobufCMessage *in = sp_arena_alloc(a, in_desc->sizeof_message);
    char **ids = sp_arena_alloc(a, (size_t)n * sizeof(char *));
    if (in == NULL || ids == NULL) return NULL;
    protobuf_c_message_init(in_desc, in);
    for (int i = 0; i < n; i++)
        ids[i] = PQgetvalue(res, i, col);
    *(size_t *)(void *)((char *)in + f->quantifier_offset) = (size_t)n;
    *(char ***)(void *)((char *)in + f->offset) = ids;
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s = spsvc_call(&out, &err, spsvc_bus(spsvc_of(req)), req, "status", method, in,
                             out_desc, CAT_STATUS_CALL_MS, a);
    if (s == SP_OK) return out;
    sp_log_warn(spbus_req_id(req), "projection_unavailable", "method", method, "code",
                sp_error_code(s));
    return NULL;
}
