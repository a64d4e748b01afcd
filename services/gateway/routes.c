/* routes.c -- the gateway's routing table (one line per route), its check at start, the path
 * matcher, and what turns a route's path, query and body into its request message. */
#include <civetweb.h>
#include <stdio.h>
#include <string.h>

#include "gateway.h"
#include "sp/auth/v1/auth.pb-c.h"
#include "sp/catalog/v1/catalog.pb-c.h"
#include "sp/ingest/v1/ingest.pb-c.h"
#include "sp/tenancy/v1/tenancy.pb-c.h"
#include "spcrypto.h"
#include "spjson.h"

#define NAME_MAX_LEN 31 /* a path or query parameter name, as in gw_param.name */

/* One line per route: method, path pattern, request and reply messages, roles allowed
 * (0: public), flags, query parameters, deadline of the bus call (0: SP_BUS_TIMEOUT_MS),
 * success status. The subject comes from the request message (gw_route_subject); a
 * {name} segment matches a UUID and fills the request field whose JSON name is 'name'.
 * gw_routes_check holds every line to the rules of gateway.h at start. Keep in step with
 * the OpenAPI document.
 * Deadlines: register, login and password change hash a password with argon2id (tens of
 * ms alone, seconds when auth is busy hashing for others); they get more than a lookup.
 * Register stays under 4 s, the bound tests/integration/faults.c holds a 503 to. */
static const gw_route routes[] = {
    {"POST", "/v1/auth/register", &sp__auth__v1__register_request__descriptor,
     &sp__auth__v1__register_reply__descriptor, 0, GW_BODY, NULL, 3000, 201},
    {"POST", "/v1/auth/login", &sp__auth__v1__login_request__descriptor,
     &sp__auth__v1__login_reply__descriptor, 0, GW_BODY, NULL, 5000, 200},
    {"POST", "/v1/auth/refresh", &sp__auth__v1__refresh_request__descriptor,
     &sp__auth__v1__refresh_reply__descriptor, 0, GW_BODY, NULL, 0, 200},
    {"POST", "/v1/auth/logout", &sp__auth__v1__logout_request__descriptor,
     &sp__auth__v1__logout_reply__descriptor, 0, GW_BODY, NULL, 0, 204},
    {"GET", "/v1/me", &sp__auth__v1__get_me_request__descriptor,
     &sp__auth__v1__get_me_reply__descriptor, GW_ROLES_USER, 0, NULL, 0, 200},
    {"PATCH", "/v1/me", &sp__auth__v1__update_me_request__descriptor,
     &sp__auth__v1__get_me_reply__descriptor, GW_ROLES_USER, GW_BODY, NULL, 0, 200},
    {"POST", "/v1/me/password", &sp__auth__v1__change_password_request__descriptor,
     &sp__auth__v1__change_password_reply__descriptor, GW_ROLES_USER, GW_BODY, NULL, 5000, 204},
    {"DELETE", "/v1/me", &sp__auth__v1__delete_me_request__descriptor,
     &sp__auth__v1__delete_me_reply__descriptor, GW_ROLES_USER, 0, NULL, 0, 204},
    /* tenancy: creating a manager or member hashes its password in auth (argon2id);
     * suspending and removing revoke sessions in auth before the reply */
    {"POST", "/v1/clients", &sp__tenancy__v1__create_client_request__descriptor,
     &sp__tenancy__v1__client_reply__descriptor, GW_ROLE_ADMIN, GW_BODY, NULL, 8000, 201},
    {"GET", "/v1/clients", &sp__tenancy__v1__list_clients_request__descriptor,
     &sp__tenancy__v1__list_clients_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_LIST, "limit,cursor,status", 0, 200},
    {"GET", "/v1/clients/{id}", &sp__tenancy__v1__get_client_request__descriptor,
     &sp__tenancy__v1__client_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, 0, NULL, 0,
     200},
    {"PATCH", "/v1/clients/{id}", &sp__tenancy__v1__update_client_request__descriptor,
     &sp__tenancy__v1__client_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_BODY,
     NULL, 0, 200},
    {"POST", "/v1/clients/{id}/approve", &sp__tenancy__v1__approve_client_request__descriptor,
     &sp__tenancy__v1__client_reply__descriptor, GW_ROLE_ADMIN, GW_BODY | GW_BODY_OPTIONAL, NULL, 0,
     200},
    {"POST", "/v1/clients/{id}/suspend", &sp__tenancy__v1__suspend_client_request__descriptor,
     &sp__tenancy__v1__client_reply__descriptor, GW_ROLE_ADMIN, GW_BODY | GW_BODY_OPTIONAL, NULL,
     8000, 200},
    {"POST", "/v1/clients/{id}/reactivate", &sp__tenancy__v1__reactivate_client_request__descriptor,
     &sp__tenancy__v1__client_reply__descriptor, GW_ROLE_ADMIN, GW_BODY | GW_BODY_OPTIONAL, NULL,
     8000, 200},
    {"GET", "/v1/clients/{id}/members", &sp__tenancy__v1__list_members_request__descriptor,
     &sp__tenancy__v1__list_members_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_LIST, "limit,cursor", 0, 200},
    {"POST", "/v1/clients/{id}/members", &sp__tenancy__v1__create_member_request__descriptor,
     &sp__tenancy__v1__member_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_BODY,
     NULL, 8000, 201},
    {"DELETE", "/v1/clients/{id}/members/{userId}",
     &sp__tenancy__v1__delete_member_request__descriptor,
     &sp__tenancy__v1__delete_member_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, 0,
     NULL, 8000, 204},
    /* catalog: the seeded lookups, public */
    {"GET", "/v1/store-types", &sp__catalog__v1__list_store_types_request__descriptor,
     &sp__catalog__v1__list_lookups_reply__descriptor, 0, GW_LIST, "limit,cursor", 0, 200},
    {"GET", "/v1/slot-types", &sp__catalog__v1__list_slot_types_request__descriptor,
     &sp__catalog__v1__list_lookups_reply__descriptor, 0, GW_LIST, "limit,cursor", 0, 200},
    {"GET", "/v1/vehicle-types", &sp__catalog__v1__list_vehicle_types_request__descriptor,
     &sp__catalog__v1__list_lookups_reply__descriptor, 0, GW_LIST, "limit,cursor", 0, 200},
    {"POST", "/v1/establishments", &sp__catalog__v1__create_establishment_request__descriptor,
     &sp__catalog__v1__establishment_reply__descriptor, GW_ROLE_ADMIN, GW_BODY, NULL, 0, 201},
    {"GET", "/v1/establishments", &sp__catalog__v1__list_establishments_request__descriptor,
     &sp__catalog__v1__list_establishments_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_LIST, "limit,cursor,clientId,city,status", 0, 200},
    {"GET", "/v1/establishments/{id}", &sp__catalog__v1__get_establishment_request__descriptor,
     &sp__catalog__v1__establishment_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, 0,
     NULL, 0, 200},
    {"PATCH", "/v1/establishments/{id}", &sp__catalog__v1__update_establishment_request__descriptor,
     &sp__catalog__v1__establishment_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_BODY, NULL, 0, 200},
    {"DELETE", "/v1/establishments/{id}",
     &sp__catalog__v1__delete_establishment_request__descriptor,
     &sp__catalog__v1__delete_establishment_reply__descriptor, GW_ROLE_ADMIN, 0, NULL, 0, 204},
    {"POST", "/v1/establishments/{id}/activate",
     &sp__catalog__v1__activate_establishment_request__descriptor,
     &sp__catalog__v1__establishment_reply__descriptor, GW_ROLE_ADMIN, GW_BODY | GW_BODY_OPTIONAL,
     NULL, 0, 200},
    {"POST", "/v1/establishments/{id}/deactivate",
     &sp__catalog__v1__deactivate_establishment_request__descriptor,
     &sp__catalog__v1__establishment_reply__descriptor, GW_ROLE_ADMIN, GW_BODY | GW_BODY_OPTIONAL,
     NULL, 0, 200},
    {"POST", "/v1/establishments/{id}/lots", &sp__catalog__v1__create_lot_request__descriptor,
     &sp__catalog__v1__lot_reply__descriptor, GW_ROLE_ADMIN, GW_BODY, NULL, 0, 201},
    {"GET", "/v1/establishments/{id}/lots", &sp__catalog__v1__list_lots_request__descriptor,
     &sp__catalog__v1__list_lots_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_LIST,
     "limit,cursor", 0, 200},
    {"GET", "/v1/lots/{id}", &sp__catalog__v1__get_lot_request__descriptor,
     &sp__catalog__v1__lot_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, 0, NULL, 0,
     200},
    {"PATCH", "/v1/lots/{id}", &sp__catalog__v1__update_lot_request__descriptor,
     &sp__catalog__v1__lot_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_BODY, NULL,
     0, 200},
    {"DELETE", "/v1/lots/{id}", &sp__catalog__v1__delete_lot_request__descriptor,
     &sp__catalog__v1__delete_lot_reply__descriptor, GW_ROLE_ADMIN, 0, NULL, 0, 204},
    {"POST", "/v1/lots/{id}/slots", &sp__catalog__v1__create_slots_request__descriptor,
     &sp__catalog__v1__create_slots_reply__descriptor, GW_ROLE_ADMIN, GW_BODY, NULL, 0, 201},
    {"GET", "/v1/lots/{id}/slots", &sp__catalog__v1__list_slots_request__descriptor,
     &sp__catalog__v1__list_slots_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_LIST,
     "limit,cursor", 0, 200},
    {"GET", "/v1/slots/{id}", &sp__catalog__v1__get_slot_request__descriptor,
     &sp__catalog__v1__slot_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, 0, NULL, 0,
     200},
    {"PATCH", "/v1/slots/{id}", &sp__catalog__v1__update_slot_request__descriptor,
     &sp__catalog__v1__slot_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_BODY, NULL,
     0, 200},
    {"DELETE", "/v1/slots/{id}", &sp__catalog__v1__delete_slot_request__descriptor,
     &sp__catalog__v1__delete_slot_reply__descriptor, GW_ROLE_ADMIN, 0, NULL, 0, 204},
    {"POST", "/v1/api-keys", &sp__catalog__v1__create_api_key_request__descriptor,
     &sp__catalog__v1__create_api_key_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_BODY, NULL, 0, 201},
    {"GET", "/v1/api-keys", &sp__catalog__v1__list_api_keys_request__descriptor,
     &sp__catalog__v1__list_api_keys_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_LIST, "limit,cursor,clientId", 0, 200},
    {"POST", "/v1/api-keys/{id}/revoke", &sp__catalog__v1__revoke_api_key_request__descriptor,
     &sp__catalog__v1__revoke_api_key_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_BODY | GW_BODY_OPTIONAL, NULL, 0, 204},
    {"POST", "/v1/cameras", &sp__catalog__v1__create_camera_request__descriptor,
     &sp__catalog__v1__camera_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_BODY,
     NULL, 0, 201},
    {"GET", "/v1/cameras", &sp__catalog__v1__list_cameras_request__descriptor,
     &sp__catalog__v1__list_cameras_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_LIST, "limit,cursor,clientId,lotId", 0, 200},
    {"GET", "/v1/cameras/{id}", &sp__catalog__v1__get_camera_request__descriptor,
     &sp__catalog__v1__camera_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, 0, NULL, 0,
     200},
    {"PATCH", "/v1/cameras/{id}", &sp__catalog__v1__update_camera_request__descriptor,
     &sp__catalog__v1__camera_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_BODY,
     NULL, 0, 200},
    {"DELETE", "/v1/cameras/{id}", &sp__catalog__v1__delete_camera_request__descriptor,
     &sp__catalog__v1__delete_camera_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, 0,
     NULL, 0, 204},
    {"POST", "/v1/requests", &sp__tenancy__v1__create_request_request__descriptor,
     &sp__tenancy__v1__request_reply__descriptor, GW_ROLE_CLIENT_ADMIN, GW_BODY, NULL, 8000, 201},
    {"GET", "/v1/requests", &sp__tenancy__v1__list_requests_request__descriptor,
     &sp__tenancy__v1__list_requests_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN,
     GW_LIST, "limit,cursor,status,clientId", 0, 200},
    {"GET", "/v1/requests/{id}", &sp__tenancy__v1__get_request_request__descriptor,
     &sp__tenancy__v1__request_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, 0, NULL, 0,
     200},
    {"POST", "/v1/requests/{id}/approve", &sp__tenancy__v1__approve_request_request__descriptor,
     &sp__tenancy__v1__request_reply__descriptor, GW_ROLE_ADMIN, GW_BODY | GW_BODY_OPTIONAL, NULL,
     8000, 200},
    {"POST", "/v1/requests/{id}/reject", &sp__tenancy__v1__reject_request_request__descriptor,
     &sp__tenancy__v1__request_reply__descriptor, GW_ROLE_ADMIN, GW_BODY | GW_BODY_OPTIONAL, NULL,
     0, 200},
    {"GET", "/v1/audit", &sp__tenancy__v1__list_audit_request__descriptor,
     &sp__tenancy__v1__list_audit_reply__descriptor, GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN, GW_LIST,
     "clientId,action,from,to,limit,cursor", 0, 200},
    /* ingest: cameras, authenticated by ingest itself (API key or HMAC over the raw body) */
    {"POST", "/v1/events/slot-status", &sp__ingest__v1__slot_events_request__descriptor,
     &sp__ingest__v1__ingest_reply__descriptor, 0, GW_BODY | GW_RAW, NULL, 5000, 202},
    {"POST", "/v1/events/heartbeat", &sp__ingest__v1__heartbeat_request__descriptor,
     &sp__ingest__v1__ingest_reply__descriptor, 0, GW_BODY | GW_RAW, NULL, 5000, 202},
};

const gw_route *gw_routes(size_t *n)
{
    *n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

/* ---- names ------------------------------------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

/* A parameter name: a letter, then letters and digits, at most NAME_MAX_LEN ("userId"). */
static bool is_name(const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!letter && (i == 0 || c < '0' || c > '9')) return false;
    }
    return true;
}

const ProtobufCFieldDescriptor *gw_field_by_json(const ProtobufCMessageDescriptor *d,
                                                 const char *name, size_t n)
{
    char camel[128];
    for (unsigned i = 0; i < d->n_fields; i++) {
        sppb_field_json_name(camel, sizeof(camel), &d->fields[i]);
        if (strlen(camel) == n && memcmp(camel, name, n) == 0) return &d->fields[i];
    }
    return NULL;
}

/* Whether name[0..n) is one of the comma-separated names of 'list' (may be NULL). */
static bool declared(const char *list, const char *name, size_t n)
{
    for (const char *p = list; p != NULL && *p != '\0';) {
        size_t k = strcspn(p, ",");
        if (k == n && memcmp(p, name, n) == 0) return true;
        p += k;
        if (*p == ',') p++;
    }
    return false;
}

const ProtobufCFieldDescriptor *gw_cleared_field(const ProtobufCMessageDescriptor *d)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(d, GW_CLEARED_FIELD);
    return f != NULL && f->id == GW_CLEARED_ID && f->label == PROTOBUF_C_LABEL_REPEATED &&
                   f->type == PROTOBUF_C_TYPE_STRING
               ? f
               : NULL;
}

bool gw_route_subject(char *out, size_t outlen, const gw_route *route)
{
    const char *name = route->req_desc->short_name;
    size_t n = strlen(name);
    n = n > 7 ? n - 7 : n; /* strlen("Request") */
    int w = snprintf(out, outlen, "%s.%.*s", route->req_desc->package_name, (int)n, name);
    return w > 0 && (size_t)w < outlen;
}

unsigned gw_role_bit(const char *role)
{
    if (role == NULL) return 0;
    if (strcmp(role, "admin") == 0) return GW_ROLE_ADMIN;
    if (strcmp(role, "client_admin") == 0) return GW_ROLE_CLIENT_ADMIN;
    if (strcmp(role, "app_user") == 0) return GW_ROLE_APP_USER;
    return 0;
}

/* ---- the check at start ---------------------------------------------------------------- */

/* Each check_* returns false with the reason in 'why' (the caller names the route). */

static bool check_pattern(const gw_route *r, char *why, size_t len)
{
    const char *p = r->pattern;
    if (p == NULL || p[0] != '/') {
        snprintf(why, len, "the pattern does not start with '/'");
        return false;
    }
    if (strlen(p) > GW_MAX_PATH) {
        snprintf(why, len, "the pattern is longer than GW_MAX_PATH (%d)", GW_MAX_PATH);
        return false;
    }
    const char *names[GW_MAX_PARAMS];
    size_t nlens[GW_MAX_PARAMS], np = 0, segs = 0;
    while (*p == '/') {
        p++;
        size_t n = strcspn(p, "/");
        if (n == 0) {
            snprintf(why, len, "the pattern has an empty segment (or ends with '/')");
            return false;
        }
        if (++segs > GW_MAX_SEGMENTS) {
            snprintf(why, len, "the pattern has more than GW_MAX_SEGMENTS (%d) segments",
                     GW_MAX_SEGMENTS);
            return false;
        }
        if (p[0] == '{') {
            if (n < 3 || p[n - 1] != '}' || !is_name(p + 1, n - 2)) {
                snprintf(why, len,
                         "segment '%.*s' is not {name} (a letter, then letters and digits)", (int)n,
                         p);
                return false;
            }
            if (np == GW_MAX_PARAMS) {
                snprintf(why, len, "more than GW_MAX_PARAMS (%d) path parameters", GW_MAX_PARAMS);
                return false;
            }
            for (size_t i = 0; i < np; i++)
                if (nlens[i] == n - 2 && memcmp(names[i], p + 1, n - 2) == 0) {
                    snprintf(why, len, "path parameter '%.*s' appears twice", (int)(n - 2), p + 1);
                    return false;
                }
            const ProtobufCFieldDescriptor *f = gw_field_by_json(r->req_desc, p + 1, n - 2);
            if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING ||
                f->label == PROTOBUF_C_LABEL_REPEATED) {
                snprintf(why, len,
                         "path parameter '%.*s' has no string field of that JSON name in %s",
                         (int)(n - 2), p + 1, r->req_desc->name);
                return false;
            }
            names[np] = p + 1;
            nlens[np++] = n - 2;
        } else {
            for (size_t i = 0; i < n; i++) {
                char c = p[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.')) {
                    snprintf(why, len,
                             "segment '%.*s' holds '%c' (literal segments: [A-Za-z0-9._-])", (int)n,
                             p, c);
                    return false;
                }
            }
        }
        p += n;
    }
    if (*p != '\0') { /* cannot happen: every segment ends at a '/' or the end */
        snprintf(why, len, "the pattern is not well formed");
        return false;
    }
    return true;
}

/* Whether name[0..n) is a {parameter} of the route's pattern. */
static bool is_path_param(const gw_route *r, const char *name, size_t n)
{
    for (const char *p = strchr(r->pattern, '{'); p != NULL; p = strchr(p + 1, '{')) {
        size_t k = strcspn(p + 1, "}");
        if (k == n && memcmp(p + 1, name, n) == 0) return true;
    }
    return false;
}

static bool check_query(const gw_route *r, char *why, size_t len)
{
    if (r->query == NULL) return true;
    if (r->flags & GW_BODY) {
        snprintf(why, len, "query parameters on a route with a body (GW_BODY)");
        return false;
    }
    size_t count = 0;
    for (const char *p = r->query;;) {
        size_t n = strcspn(p, ",");
        if (!is_name(p, n)) {
            snprintf(why, len, "query list \"%s\": '%.*s' is not a name", r->query, (int)n, p);
            return false;
        }
        if (++count > GW_MAX_QUERY_PARAMS) {
            snprintf(why, len, "more than GW_MAX_QUERY_PARAMS (%d) query parameters",
                     GW_MAX_QUERY_PARAMS);
            return false;
        }
        if (declared(p + n + (p[n] == ',' ? 1 : 0), p, n)) {
            snprintf(why, len, "query parameter '%.*s' is declared twice", (int)n, p);
            return false;
        }
        if (is_path_param(r, p, n)) {
            snprintf(why, len, "'%.*s' is both a path and a query parameter", (int)n, p);
            return false;
        }
        const ProtobufCFieldDescriptor *f = gw_field_by_json(r->req_desc, p, n);
        if (f == NULL || f->label == PROTOBUF_C_LABEL_REPEATED ||
            f->type == PROTOBUF_C_TYPE_MESSAGE) {
            snprintf(why, len, "query parameter '%.*s' has no scalar field of that JSON name in %s",
                     (int)n, p, r->req_desc->name);
            return false;
        }
        p += n;
        if (*p == '\0') break;
        p++;
    }
    return true;
}

static bool check_list(const gw_route *r, char *why, size_t len)
{
    if (!(r->flags & GW_LIST)) return true;
    if (strcmp(r->method, "GET") != 0) {
        snprintf(why, len, "a list (GW_LIST) is a GET");
        return false;
    }
    if (!declared(r->query, "limit", 5) || !declared(r->query, "cursor", 6)) {
        snprintf(why, len, "a list (GW_LIST) declares the query parameters limit and cursor");
        return false;
    }
    const ProtobufCFieldDescriptor *lim = gw_field_by_json(r->req_desc, "limit", 5);
    const ProtobufCFieldDescriptor *cur = gw_field_by_json(r->req_desc, "cursor", 6);
    if (lim == NULL || lim->label != PROTOBUF_C_LABEL_OPTIONAL ||
        (lim->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) ||
        (lim->type != PROTOBUF_C_TYPE_INT32 && lim->type != PROTOBUF_C_TYPE_UINT32) ||
        cur == NULL || cur->type != PROTOBUF_C_TYPE_STRING) {
        snprintf(why, len, "a list's %s has 'optional int32 limit' and 'optional string cursor'",
                 r->req_desc->name);
        return false;
    }
    const ProtobufCFieldDescriptor *items =
        protobuf_c_message_descriptor_get_field(r->reply_desc, 1);
    const ProtobufCFieldDescriptor *next =
        protobuf_c_message_descriptor_get_field(r->reply_desc, 2);
    if (items == NULL || strcmp(items->name, "items") != 0 ||
        items->label != PROTOBUF_C_LABEL_REPEATED || next == NULL ||
        strcmp(next->name, "next_cursor") != 0 || next->label != PROTOBUF_C_LABEL_OPTIONAL ||
        (next->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) || next->type != PROTOBUF_C_TYPE_STRING) {
        snprintf(why, len,
                 "a list's %s has 'repeated <X> items = 1; optional string next_cursor = 2;'",
                 r->reply_desc->name);
        return false;
    }
    return true;
}

static bool check_messages(const gw_route *r, char *why, size_t len)
{
    const ProtobufCMessageDescriptor *in = r->req_desc, *out = r->reply_desc;
    if (in == NULL || out == NULL) {
        snprintf(why, len, "no request or reply message");
        return false;
    }
    if (!ends_with(in->short_name, "Request") || in->package_name == NULL ||
        in->package_name[0] == '\0') {
        snprintf(why, len, "request message %s is not a <Method>Request of a package", in->name);
        return false;
    }
    if (!ends_with(out->short_name, "Reply") || out->package_name == NULL ||
        strcmp(out->package_name, in->package_name) != 0) {
        snprintf(why, len, "reply message %s is not a *Reply of %s", out->name, in->package_name);
        return false;
    }
    char subject[256];
    if (!gw_route_subject(subject, sizeof(subject), r)) {
        snprintf(why, len, "the subject of %s is too long", in->name);
        return false;
    }
    const ProtobufCFieldDescriptor *cl =
        protobuf_c_message_descriptor_get_field_by_name(in, GW_CLEARED_FIELD);
    if (cl != NULL && gw_cleared_field(in) == NULL) {
        snprintf(why, len, "%s's field 'cleared' is not 'repeated string cleared = %d'", in->name,
                 GW_CLEARED_ID);
        return false;
    }
    if (cl != NULL && !(r->flags & GW_BODY)) {
        snprintf(why, len, "%s has 'cleared' but the route takes no body (GW_BODY)", in->name);
        return false;
    }
    return true;
}

static bool check_route(const gw_route *r, char *why, size_t len)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    bool known = false;
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        known = known || strcmp(r->method, methods[i]) == 0;
    if (!known) {
        snprintf(why, len, "method is not one of GET, POST, PUT, PATCH, DELETE");
        return false;
    }
    if (r->roles & ~(unsigned)GW_ROLES_USER) {
        snprintf(why, len, "unknown role bits 0x%x", r->roles & ~(unsigned)GW_ROLES_USER);
        return false;
    }
    unsigned flags = GW_BODY | GW_LIST | GW_BODY_OPTIONAL | GW_RAW;
    if (r->flags & ~flags) {
        snprintf(why, len, "unknown flag bits 0x%x", r->flags & ~flags);
        return false;
    }
    if ((r->flags & GW_BODY_OPTIONAL) && !(r->flags & GW_BODY)) {
        snprintf(why, len, "GW_BODY_OPTIONAL without GW_BODY");
        return false;
    }
    if ((r->flags & GW_RAW) && (!(r->flags & GW_BODY) || r->roles != 0 || r->query != NULL ||
                                (r->flags & (GW_LIST | GW_BODY_OPTIONAL)))) {
        snprintf(why, len, "GW_RAW is a public route with a body (GW_BODY) and nothing else");
        return false;
    }
    if ((r->flags & GW_BODY) &&
        (strcmp(r->method, "GET") == 0 || strcmp(r->method, "DELETE") == 0)) {
        snprintf(why, len, "a %s takes no body (GW_BODY)", r->method);
        return false;
    }
    if (r->status != 200 && r->status != 201 && r->status != 202 && r->status != 204) {
        snprintf(why, len, "success status %d is not 200, 201, 202 or 204", r->status);
        return false;
    }
    if (r->deadline_ms < 0 || r->deadline_ms > GW_MAX_DEADLINE_MS) {
        snprintf(why, len, "deadline %d ms is not 0..%d", r->deadline_ms, GW_MAX_DEADLINE_MS);
        return false;
    }
    return check_messages(r, why, len) && check_pattern(r, why, len) && check_query(r, why, len) &&
           check_list(r, why, len);
}

/* Whether two patterns match the same paths: equal segments, any {x} equal to any {y}. */
static bool same_shape(const char *a, const char *b)
{
    while (*a == '/' && *b == '/') {
        a++;
        b++;
        size_t na = strcspn(a, "/"), nb = strcspn(b, "/");
        bool pa = na > 0 && a[0] == '{', pb = nb > 0 && b[0] == '{';
        if (pa != pb || (!pa && (na != nb || memcmp(a, b, na) != 0))) return false;
        a += na;
        b += nb;
    }
    return *a == '\0' && *b == '\0';
}

sp_status gw_routes_check(const gw_route *table, size_t n, char *why, size_t whylen)
{
    char reason[384];
    for (size_t i = 0; i < n; i++) {
        const gw_route *r = &table[i];
        const char *m = r->method != NULL ? r->method : "(null)";
        const char *p = r->pattern != NULL ? r->pattern : "(null)";
        reason[0] = '\0';
        bool ok = r->method != NULL && r->pattern != NULL;
        if (!ok) snprintf(reason, sizeof(reason), "no method or pattern");
        ok = ok && check_route(r, reason, sizeof(reason));
        for (size_t j = 0; ok && j < i; j++)
            if (strcmp(table[j].method, m) == 0 && same_shape(table[j].pattern, p)) {
                snprintf(reason, sizeof(reason), "same method and pattern as route %zu (%s)", j,
                         table[j].pattern);
                ok = false;
            }
        if (!ok) {
            snprintf(why, whylen, "route %zu, %s %s: %s", i, m, p, reason);
            return SP_ERR_VALIDATION_FAILED;
        }
    }
    return SP_OK;
}

/* ---- the path matcher -------------------------------------------------------------------- */

/* Compares one pattern with a path, segment by segment. Returns 1 on a match (params
 * filled), 0 otherwise, including a {param} segment whose value is not a UUID. */
static int match_path(const char *pattern, const char *path, gw_param *params, size_t *np)
{
    size_t n = 0;
    const char *p = pattern, *s = path;

    while (*p != '\0' && *s != '\0') {
        if (*p != '/' || *s != '/') return 0;
        p++;
        s++;
        size_t plen = strcspn(p, "/"), slen = strcspn(s, "/");
        if (plen > 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (n == GW_MAX_PARAMS || slen != SPCRYPTO_UUID_LEN - 1) return 0;
            char v[SPCRYPTO_UUID_LEN];
            memcpy(v, s, slen);
            v[slen] = '\0';
            if (!spcrypto_uuid_valid(v)) return 0;
            size_t nlen =
                plen - 2 < sizeof(params[n].name) - 1 ? plen - 2 : sizeof(params[n].name) - 1;
            memcpy(params[n].name, p + 1, nlen);
            params[n].name[nlen] = '\0';
            memcpy(params[n].value, v, slen + 1);
            n++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return 0;
        }
        p += plen;
        s += slen;
    }
    if (*p != '\0' || *s != '\0') return 0;
    *np = n;
    return 1;
}

/* The path is checked for shape first (length, segments) so that the matcher stays
 * bounded whatever a client sends. */
gw_match gw_route_match(const gw_route **route, gw_param *params, size_t *nparams,
                        const gw_route *table, size_t ntable, const char *method, const char *path,
                        char *allow, size_t allowlen)
{
    *route = NULL;
    *nparams = 0;
    if (allowlen > 0) allow[0] = '\0';
    if (path == NULL || path[0] != '/' || strlen(path) > GW_MAX_PATH) return GW_MATCH_NOT_FOUND;
    size_t segs = 0;
    for (const char *c = path; *c != '\0'; c++)
        if (*c == '/' && ++segs > GW_MAX_SEGMENTS) return GW_MATCH_NOT_FOUND;

    bool path_known = false;
    size_t used = 0;
    for (size_t i = 0; i < ntable; i++) {
        gw_param tmp[GW_MAX_PARAMS];
        size_t nt = 0;
        if (!match_path(table[i].pattern, path, tmp, &nt)) continue;
        if (strcmp(table[i].method, method) == 0) {
            *route = &table[i];
            memcpy(params, tmp, nt * sizeof(tmp[0]));
            *nparams = nt;
            return GW_MATCH_OK;
        }
        path_known = true;
        if (allowlen > 0 && strstr(allow, table[i].method) == NULL) {
            int w =
                snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "", table[i].method);
            if (w > 0 && (size_t)w < allowlen - used) used += (size_t)w;
        }
    }
    return path_known ? GW_MATCH_METHOD : GW_MATCH_NOT_FOUND;
}

/* ---- path, query and body into the request message ----------------------------------------- */

static void add_error(sppb_errors *errs, const char *path, const char *reason)
{
    if (errs->n >= SPPB_MAX_ERRORS) return;
    snprintf(errs->e[errs->n].path, sizeof(errs->e[0].path), "%s", path);
    snprintf(errs->e[errs->n].reason, sizeof(errs->e[0].reason), "%s", reason);
    errs->n++;
}

void gw_set_params(ProtobufCMessage *in, const gw_param *params, size_t n, sp_arena *arena)
{
    if (in == NULL) return;
    for (size_t i = 0; i < n; i++) {
        /* gw_routes_check made sure of a string field for each {name} */
        const ProtobufCFieldDescriptor *f =
            gw_field_by_json(in->descriptor, params[i].name, strlen(params[i].name));
        if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING || f->label == PROTOBUF_C_LABEL_REPEATED)
            continue;
        *(char **)((char *)in + f->offset) = sp_arena_strdup(arena, params[i].value);
    }
}

/* Unpadded base64url, 1..GW_MAX_CURSOR characters (a trailing '=' or two tolerated). */
static bool cursor_ok(const char *c)
{
    size_t n = strlen(c), k = strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789-_");
    size_t pad = strspn(c + k, "=");
    return n > 0 && n <= GW_MAX_CURSOR && k > 0 && k + pad == n && pad <= 2;
}

/* limit 1..GW_LIST_MAX_LIMIT, GW_LIST_DEFAULT_LIMIT when absent; a well-formed cursor. */
static void list_rules(ProtobufCMessage *m, sppb_errors *errs)
{
    const ProtobufCFieldDescriptor *lim = gw_field_by_json(m->descriptor, "limit", 5);
    const ProtobufCFieldDescriptor *cur = gw_field_by_json(m->descriptor, "cursor", 6);
    if (lim != NULL) {
        protobuf_c_boolean *has = (protobuf_c_boolean *)((char *)m + lim->quantifier_offset);
        void *v = (char *)m + lim->offset;
        long long x = lim->type == PROTOBUF_C_TYPE_UINT32 ? (long long)*(uint32_t *)v
                                                          : (long long)*(int32_t *)v;
        if (!*has) {
            *has = 1;
            if (lim->type == PROTOBUF_C_TYPE_UINT32)
                *(uint32_t *)v = GW_LIST_DEFAULT_LIMIT;
            else
                *(int32_t *)v = GW_LIST_DEFAULT_LIMIT;
        } else if (x < 1 || x > GW_LIST_MAX_LIMIT) {
            char why[64];
            snprintf(why, sizeof(why), "must be 1..%d", GW_LIST_MAX_LIMIT);
            add_error(errs, "limit", why);
        }
    }
    if (cur != NULL) {
        const char *c = *(char **)((char *)m + cur->offset);
        if (c != NULL && !cursor_ok(c)) {
            char why[96];
            snprintf(why, sizeof(why), "must be 1..%d characters of base64url", GW_MAX_CURSOR);
            add_error(errs, "cursor", why);
        }
    }
}

/* A query parameter's name as it may appear in 'fields': 1..31 of [A-Za-z0-9_-], or else
 * "query" (the client's bytes are never echoed unchecked). */
static const char *safe_name(const char *key)
{
    size_t n = strlen(key);
    bool ok = n > 0 && n <= NAME_MAX_LEN &&
              strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
    return ok ? key : "query";
}

/* Splits the query into a JSON object of decoded strings in *obj, naming each bad
 * parameter in errs. */
static void query_object(cJSON *obj, const gw_route *route, const char *qs, sp_arena *arena,
                         sppb_errors *errs)
{
    size_t qlen = strlen(qs), count = 0;
    if (qlen > GW_MAX_QUERY) {
        char why[64];
        snprintf(why, sizeof(why), "longer than GW_MAX_QUERY (%d)", GW_MAX_QUERY);
        add_error(errs, "query", why);
        return;
    }
    for (const char *p = qs; *p != '\0';) {
        size_t n = strcspn(p, "&");
        const char *seg = p;
        p += n;
        if (*p == '&') p++;
        if (n == 0) continue;
        if (++count > GW_MAX_QUERY_PARAMS) {
            char why[64];
            snprintf(why, sizeof(why), "more than GW_MAX_QUERY_PARAMS (%d) parameters",
                     GW_MAX_QUERY_PARAMS);
            add_error(errs, "query", why);
            return;
        }
        const char *eq = memchr(seg, '=', n);
        size_t klen = eq != NULL ? (size_t)(eq - seg) : n;
        const char *raw = eq != NULL ? eq + 1 : seg + n;
        size_t vlen = n - klen - (eq != NULL ? 1 : 0);
        char key[NAME_MAX_LEN + 2];
        int kl = mg_url_decode(seg, (int)klen, key, (int)sizeof(key), 1);
        if (kl < 0 || (size_t)kl != strlen(key)) { /* too long for a name, or a NUL in it */
            add_error(errs, "query", "unknown parameter");
            continue;
        }
        if (!is_name(key, (size_t)kl) || !declared(route->query, key, (size_t)kl)) {
            add_error(errs, safe_name(key), "unknown parameter");
            continue;
        }
        if (cJSON_GetObjectItemCaseSensitive(obj, key) != NULL) {
            add_error(errs, key, "repeated parameter");
            continue;
        }
        char *val = sp_arena_alloc(arena, vlen + 1);
        if (val == NULL) {
            add_error(errs, key, "out of memory");
            return;
        }
        int vl = mg_url_decode(raw, (int)vlen, val, (int)vlen + 1, 1);
        if (vl < 0 || memchr(val, '\0', (size_t)vl) != NULL) {
            add_error(errs, key, "must not contain NUL");
            continue;
        }
        if (!spjson_utf8_valid(val, (size_t)vl)) {
            add_error(errs, key, "must be valid UTF-8");
            continue;
        }
        if (cJSON_AddStringToObject(obj, key, val) == NULL) add_error(errs, key, "out of memory");
    }
}

sp_status gw_query_decode(ProtobufCMessage **out, const gw_route *route, const char *qs,
                          sp_arena *arena, sppb_errors *errs)
{
    *out = NULL;
    errs->n = 0;
    if (qs == NULL || qs[strspn(qs, "&")] == '\0') { /* no parameter: the common case */
        ProtobufCMessage *m = sp_arena_alloc(arena, route->req_desc->sizeof_message);
        if (m == NULL) return SP_ERR_INTERNAL;
        protobuf_c_message_init(route->req_desc, m);
        *out = m;
    } else {
        cJSON *obj = cJSON_CreateObject();
        if (obj == NULL) return SP_ERR_INTERNAL;
        query_object(obj, route, qs, arena, errs);
        if (errs->n > 0) {
            cJSON_Delete(obj);
            return SP_ERR_VALIDATION_FAILED;
        }
        sp_status s =
            sppb_from_json(out, route->req_desc, obj, SPPB_FROM_QUERY | SPPB_NO_NULL, arena, errs);
        cJSON_Delete(obj);
        if (s != SP_OK) return s;
    }
    if (route->flags & GW_LIST) list_rules(*out, errs);
    if (errs->n > 0) {
        *out = NULL;
        return SP_ERR_VALIDATION_FAILED;
    }
    return SP_OK;
}

/* A field that null may clear: optional, outside a oneof, not 'cleared' itself. */
static bool clearable(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           strcmp(f->name, GW_CLEARED_FIELD) != 0;
}

sp_status gw_body_decode(ProtobufCMessage **out, const gw_route *route, cJSON *json,
                         sp_arena *arena, sppb_errors *errs)
{
    *out = NULL;
    errs->n = 0;
    const ProtobufCMessageDescriptor *d = route->req_desc;
    if (json == NULL) {
        if (!(route->flags & GW_BODY_OPTIONAL)) {
            add_error(errs, "", "a JSON object body is required");
            return SP_ERR_VALIDATION_FAILED;
        }
        ProtobufCMessage *m = sp_arena_alloc(arena, d->sizeof_message);
        if (m == NULL) return SP_ERR_INTERNAL;
        protobuf_c_message_init(d, m);
        *out = m;
        return SP_OK;
    }
    const ProtobufCFieldDescriptor *cl = gw_cleared_field(d);
    sppb_errors own;
    own.n = 0;
    /* the fields of path parameters come from the path only: a body naming one ({"id":
     * ...} on /v1/clients/{id}) is refused as any field the contract does not list */
    for (cJSON *v = cJSON_IsObject(json) ? json->child : NULL, *next = NULL; v != NULL; v = next) {
        next = v->next;
        if (v->string != NULL && is_path_param(route, v->string, strlen(v->string))) {
            add_error(&own, v->string, "unknown field");
            cJSON_Delete(cJSON_DetachItemViaPointer(json, v));
        }
    }
    char **names = NULL;
    size_t nc = 0;
    if (cl != NULL && cJSON_IsObject(json)) {
        names = sp_arena_alloc(arena, (d->n_fields + 1) * sizeof(char *));
        if (names == NULL) return SP_ERR_INTERNAL;
        for (cJSON *v = json->child, *next = NULL; v != NULL; v = next) {
            next = v->next;
            const char *key = v->string != NULL ? v->string : "";
            if (strcmp(key, GW_CLEARED_FIELD) == 0) { /* never set by a client */
                add_error(&own, GW_CLEARED_FIELD, "unknown field");
                cJSON_Delete(cJSON_DetachItemViaPointer(json, v));
                continue;
            }
            if (!cJSON_IsNull(v)) continue;
            const ProtobufCFieldDescriptor *f = gw_field_by_json(d, key, strlen(key));
            if (f == NULL || !clearable(f)) continue; /* sppb refuses it */
            bool dup = false;
            for (size_t i = 0; i < nc; i++)
                dup = dup || strcmp(names[i], key) == 0;
            if (!dup && nc < d->n_fields) {
                names[nc] = sp_arena_strdup(arena, key);
                if (names[nc++] == NULL) return SP_ERR_INTERNAL;
            }
            cJSON_Delete(cJSON_DetachItemViaPointer(json, v));
        }
    }
    sp_status s = sppb_from_json(out, d, json, SPPB_STRICT | SPPB_NO_NULL, arena, errs);
    for (size_t i = 0; i < own.n; i++)
        add_error(errs, own.e[i].path, own.e[i].reason);
    if (s == SP_OK && own.n > 0) s = SP_ERR_VALIDATION_FAILED;
    if (s != SP_OK) {
        *out = NULL;
        return s;
    }
    if (cl != NULL && nc > 0) {
        *(size_t *)((char *)*out + cl->quantifier_offset) = nc;
        *(char ***)((char *)*out + cl->offset) = names;
    }
    return SP_OK;
}
