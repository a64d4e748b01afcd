/* gateway_routes.c -- the gateway's route table as data, through its functions (routes.c is
 * compiled in): the check at start refuses bad tables with a reason, subjects come from the
 * request messages, path and query parameters land in the fields of their JSON names, the
 * list rules, the list answer's shape, and PATCH's null that clears. Routes that do not
 * exist yet are built here from tests/proto/gwtest.proto, never added to the real table. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "gwtest.pb-c.h"
#include "sp/auth/v1/auth.pb-c.h"
#include "sppb.h"

#define LIST_REQ &sp__gwtest__v1__list_widgets_request__descriptor
#define LIST_REPLY &sp__gwtest__v1__list_widgets_reply__descriptor
#define UPD_REQ &sp__gwtest__v1__update_widget_request__descriptor
#define UPD_REPLY &sp__gwtest__v1__update_widget_reply__descriptor

static const unsigned STAFF = GW_ROLE_ADMIN | GW_ROLE_CLIENT_ADMIN;

/* Routes as the ones to come would be declared. */
static const gw_route list_route = {"GET",
                                    "/v1/widgets",
                                    LIST_REQ,
                                    LIST_REPLY,
                                    STAFF,
                                    GW_LIST,
                                    "limit,cursor,status,active,lat,clientId",
                                    0,
                                    200};
static const gw_route members_route = {
    "GET", "/v1/widgets/{id}/members", LIST_REQ, LIST_REPLY, STAFF, GW_LIST, "limit,cursor", 0,
    200};
static const gw_route member_route = {
    "DELETE", "/v1/widgets/{id}/members/{userId}", LIST_REQ, UPD_REPLY, STAFF, 0, NULL, 0, 204};
static const gw_route patch_route = {
    "PATCH", "/v1/widgets/{id}", UPD_REQ, UPD_REPLY, STAFF, GW_BODY, NULL, 0, 200};
static const gw_route approve_route = {"POST",
                                       "/v1/widgets/{id}/approve",
                                       UPD_REQ,
                                       UPD_REPLY,
                                       GW_ROLE_ADMIN,
                                       GW_BODY | GW_BODY_OPTIONAL,
                                       NULL,
                                       0,
                                       200};

static sp_arena *arena;

static void setup(void)
{
    arena = sp_arena_create(4096);
    ck_assert_ptr_nonnull(arena);
}

static void teardown(void)
{
    sp_arena_destroy(arena);
}

/* ---- the check at start ------------------------------------------------------------------ */

START_TEST(real_table_passes_the_check)
{
    size_t n = 0;
    const gw_route *t = gw_routes(&n);
    char why[512] = "";
    ck_assert_msg(gw_routes_check(t, n, why, sizeof(why)) == SP_OK, "%s", why);
    const gw_route good[] = {list_route, members_route, member_route, patch_route, approve_route};
    ck_assert_msg(gw_routes_check(good, 5, why, sizeof(why)) == SP_OK, "%s", why);
}
END_TEST

START_TEST(real_routes_keep_their_roles_and_deadlines)
{
    size_t n = 0;
    const gw_route *t = gw_routes(&n);
    size_t nauth = 0;
    for (size_t i = 0; i < n; i++) {
        bool public = strncmp(t[i].pattern, "/v1/auth/", 9) == 0;
        if (!public && strncmp(t[i].pattern, "/v1/me", 6) != 0) continue; /* auth's routes */
        nauth++;
        ck_assert_uint_eq(t[i].roles, public ? 0u : (unsigned)GW_ROLES_USER);
        bool hashes = strcmp(t[i].pattern, "/v1/auth/login") == 0 ||
                      strcmp(t[i].pattern, "/v1/auth/register") == 0 ||
                      strcmp(t[i].pattern, "/v1/me/password") == 0;
        /* argon2id does not share SP_BUS_TIMEOUT_MS's default 2 s with a lookup */
        if (hashes)
            ck_assert_int_gt(t[i].deadline_ms, 2000);
        else
            ck_assert_int_eq(t[i].deadline_ms, 0);
    }
    ck_assert_uint_eq(nauth, 8);
}
END_TEST

START_TEST(subject_comes_from_the_request_message)
{
    static const struct {
        const char *pattern, *method, *subject;
    } want[] = {
        {"/v1/auth/register", "POST", "sp.auth.v1.Register"},
        {"/v1/auth/login", "POST", "sp.auth.v1.Login"},
        {"/v1/auth/refresh", "POST", "sp.auth.v1.Refresh"},
        {"/v1/auth/logout", "POST", "sp.auth.v1.Logout"},
        {"/v1/me", "GET", "sp.auth.v1.GetMe"},
        {"/v1/me", "PATCH", "sp.auth.v1.UpdateMe"},
        {"/v1/me/password", "POST", "sp.auth.v1.ChangePassword"},
        {"/v1/me", "DELETE", "sp.auth.v1.DeleteMe"},
    };
    size_t n = 0;
    const gw_route *t = gw_routes(&n);
    for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
        bool found = false;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(t[i].pattern, want[w].pattern) != 0 ||
                strcmp(t[i].method, want[w].method) != 0)
                continue;
            char s[128];
            ck_assert(gw_route_subject(s, sizeof(s), &t[i]));
            ck_assert_str_eq(s, want[w].subject);
            found = true;
        }
        ck_assert_msg(found, "%s %s", want[w].method, want[w].pattern);
    }
    char s[128], tiny[8];
    ck_assert(gw_route_subject(s, sizeof(s), &list_route));
    ck_assert_str_eq(s, "sp.gwtest.v1.ListWidgets");
    ck_assert(!gw_route_subject(tiny, sizeof(tiny), &list_route));
}
END_TEST

typedef struct {
    gw_route r;
    const char *reason; /* a part of the refusal's 'why' */
} bad_case;

#define R(m, p, in, out, roles, flags, q, dl, st)                                                  \
    {                                                                                              \
        m, p, in, out, roles, flags, q, dl, st                                                     \
    }
static const bad_case bad[] = {
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, 1u << 5, 0, NULL, 0, 200),
     "unknown role bits 0x20"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF | 8u, 0, NULL, 0, 200),
     "unknown role bits 0x8"},
    {R("GET", "/v1/widgets/{widgetId}", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200),
     "path parameter 'widgetId' has no string field"},
    {R("GET", "/v1/widgets/{user_id}", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200),
     "is not {name}"},
    {R("GET", "/v1/widgets/{limit}", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200),
     "path parameter 'limit' has no string field"},
    {R("GET", "/v1/widgets/{tags}", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200),
     "path parameter 'tags' has no string field"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, "status,bogus", 0, 200),
     "query parameter 'bogus' has no scalar field"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, "user_id", 0, 200),
     "'user_id' is not a name"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, "tags", 0, 200),
     "query parameter 'tags' has no scalar field"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, "nested", 0, 200),
     "query parameter 'nested' has no scalar field"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, "status,,limit", 0, 200),
     "is not a name"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, "", 0, 200), "is not a name"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, "status,limit,status", 0, 200),
     "query parameter 'status' is declared twice"},
    {R("GET", "/v1/widgets/{id}", LIST_REQ, LIST_REPLY, STAFF, 0, "id", 0, 200),
     "'id' is both a path and a query parameter"},
    {R("GET", "/v1/widgets", &sp__gwtest__v1__widgets__descriptor, LIST_REPLY, STAFF, 0, NULL, 0,
       200),
     "request message sp.gwtest.v1.Widgets is not a <Method>Request"},
    {R("GET", "/v1/widgets", LIST_REQ, &sp__auth__v1__get_me_reply__descriptor, STAFF, 0, NULL, 0,
       200),
     "is not a *Reply of sp.gwtest.v1"},
    {R("GET", "/v1/widgets", LIST_REQ, &sp__gwtest__v1__widget__descriptor, STAFF, 0, NULL, 0, 200),
     "is not a *Reply of sp.gwtest.v1"},
    {R("GET", "/v1/widgets", NULL, LIST_REPLY, STAFF, 0, NULL, 0, 200),
     "no request or reply message"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, GW_BODY, NULL, 0, 200),
     "a GET takes no body"},
    {R("DELETE", "/v1/widgets/{id}", UPD_REQ, UPD_REPLY, STAFF, GW_BODY, NULL, 0, 204),
     "a DELETE takes no body"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 1u << 7, NULL, 0, 200),
     "unknown flag bits 0x80"},
    {R("POST", "/v1/widgets/{id}/approve", UPD_REQ, UPD_REPLY, STAFF, GW_BODY_OPTIONAL, NULL, 0,
       200),
     "GW_BODY_OPTIONAL without GW_BODY"},
    {R("POST", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, GW_BODY, "status", 0, 201),
     "query parameters on a route with a body"},
    {R("FETCH", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200),
     "method is not one of"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 299), "success status 299"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, -1, 200), "deadline -1 ms"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 60001, 200),
     "deadline 60001 ms"},
    {R("GET", "v1/widgets", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200),
     "does not start with '/'"},
    {R("GET", "/v1//widgets", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200), "empty segment"},
    {R("GET", "/v1/widgets/", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200), "empty segment"},
    {R("GET", "/v1/widgets/{id", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200), "is not {name}"},
    {R("GET", "/v1/widgets/{}", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200), "is not {name}"},
    {R("GET", "/v1/wid gets", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200), "holds ' '"},
    {R("GET", "/v1/wid}gets", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200), "holds '}'"},
    {R("GET", "/v1/widgets?x=1", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200), "holds '?'"},
    {R("GET", "/v1/widgets/{id}/x/{id}", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0, 200),
     "path parameter 'id' appears twice"},
    {R("GET", "/v1/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q", LIST_REQ, LIST_REPLY, STAFF, 0, NULL, 0,
       200),
     "more than GW_MAX_SEGMENTS"},
    {R("GET", "/v1/widgets", LIST_REQ, &sp__gwtest__v1__bad_list_reply__descriptor, STAFF, GW_LIST,
       "limit,cursor", 0, 200),
     "optional string next_cursor = 2;"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, GW_LIST, "limit,status", 0, 200),
     "declares the query parameters limit and cursor"},
    {R("GET", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, GW_LIST, NULL, 0, 200),
     "declares the query parameters limit and cursor"},
    {R("POST", "/v1/widgets", LIST_REQ, LIST_REPLY, STAFF, GW_LIST, "limit,cursor", 0, 200),
     "a list (GW_LIST) is a GET"},
    {R("PATCH", "/v1/widgets", &sp__gwtest__v1__bad_cleared_request__descriptor, UPD_REPLY, STAFF,
       GW_BODY, NULL, 0, 200),
     "is not 'repeated string cleared = 15'"},
    {R("DELETE", "/v1/widgets/{id}", UPD_REQ, UPD_REPLY, STAFF, 0, NULL, 0, 204),
     "has 'cleared' but the route takes no body"},
};

START_TEST(bad_route_is_refused_with_a_reason)
{
    const bad_case *c = &bad[_i];
    const gw_route t[] = {list_route, c->r};
    char why[512] = "";
    sp_status s = gw_routes_check(t, 2, why, sizeof(why));
    ck_assert_msg(s == SP_ERR_VALIDATION_FAILED, "case %d (%s %s) accepted", _i, c->r.method,
                  c->r.pattern);
    ck_assert_msg(strstr(why, c->reason) != NULL, "case %d: why \"%s\", want \"%s\"", _i, why,
                  c->reason);
    /* the reason names the route */
    ck_assert_msg(strstr(why, "route 1, ") != NULL && strstr(why, c->r.pattern) != NULL, "%s", why);
}
END_TEST

START_TEST(duplicate_method_and_pattern_is_refused)
{
    char why[512] = "";
    const gw_route same[] = {patch_route, member_route, patch_route};
    ck_assert_int_eq(gw_routes_check(same, 3, why, sizeof(why)), SP_ERR_VALIDATION_FAILED);
    ck_assert_msg(
        strstr(why, "route 2, PATCH /v1/widgets/{id}: same method and pattern as route 0") != NULL,
        "%s", why);
    /* the same paths under other parameter names are the same route */
    gw_route renamed = member_route;
    renamed.pattern = "/v1/widgets/{userId}/members/{id}";
    const gw_route shape[] = {member_route, renamed};
    ck_assert_int_eq(gw_routes_check(shape, 2, why, sizeof(why)), SP_ERR_VALIDATION_FAILED);
    ck_assert_msg(strstr(why, "same method and pattern") != NULL, "%s", why);
    /* another method on the same pattern is not a duplicate */
    gw_route get = member_route;
    get.method = "GET";
    get.status = 200;
    const gw_route two[] = {member_route, get};
    ck_assert_msg(gw_routes_check(two, 2, why, sizeof(why)) == SP_OK, "%s", why);
}
END_TEST

/* ---- roles and the path ----------------------------------------------------------------- */

START_TEST(role_bits_of_token_roles)
{
    ck_assert_uint_eq(gw_role_bit("admin"), GW_ROLE_ADMIN);
    ck_assert_uint_eq(gw_role_bit("client_admin"), GW_ROLE_CLIENT_ADMIN);
    ck_assert_uint_eq(gw_role_bit("app_user"), GW_ROLE_APP_USER);
    ck_assert_uint_eq(gw_role_bit("Admin"), 0);
    ck_assert_uint_eq(gw_role_bit("service"), 0);
    ck_assert_uint_eq(gw_role_bit(""), 0);
    ck_assert_uint_eq(gw_role_bit(NULL), 0);
    ck_assert_uint_eq(gw_role_bit("app_user") & STAFF, 0); /* an app user on a staff route: 403 */
}
END_TEST

START_TEST(path_params_fill_fields_of_their_json_names)
{
    const gw_route t[] = {members_route, member_route, patch_route};
    const gw_route *r = NULL;
    gw_param p[GW_MAX_PARAMS];
    size_t np = 0;
    char allow[64];
    const char *id = "2b0c3f0e-8a4c-4c55-9a51-3f1f0f4b6d11",
               *uid = "3f1c2a8e-5b7d-4e2f-9a1b-0c6d8e4f2a10";
    char path[256];
    snprintf(path, sizeof(path), "/v1/widgets/%s/members/%s", id, uid);
    ck_assert_int_eq(gw_route_match(&r, p, &np, t, 3, "DELETE", path, allow, sizeof(allow)),
                     GW_MATCH_OK);
    ck_assert_ptr_eq(r, &t[1]);
    ck_assert_uint_eq(np, 2);
    ck_assert_str_eq(p[0].name, "id");
    ck_assert_str_eq(p[1].name, "userId");
    ck_assert_str_eq(p[1].value, uid);

    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    ck_assert_int_eq(gw_query_decode(&m, r, NULL, arena, &errs), SP_OK);
    gw_set_params(m, p, np, arena);
    Sp__Gwtest__V1__ListWidgetsRequest *in = (Sp__Gwtest__V1__ListWidgetsRequest *)m;
    ck_assert_str_eq(in->id, id);
    ck_assert_str_eq(in->user_id, uid);

    /* another method on a routed path: 405 with Allow; a path id not a UUID: 404 */
    ck_assert_int_eq(gw_route_match(&r, p, &np, t, 3, "POST", path, allow, sizeof(allow)),
                     GW_MATCH_METHOD);
    ck_assert_str_eq(allow, "DELETE");
    snprintf(path, sizeof(path), "/v1/widgets/%s/members/42", id);
    ck_assert_int_eq(gw_route_match(&r, p, &np, t, 3, "DELETE", path, allow, sizeof(allow)),
                     GW_MATCH_NOT_FOUND);
    snprintf(path, sizeof(path), "/v1/widgets/%.35sX/members", id);
    ck_assert_int_eq(gw_route_match(&r, p, &np, t, 3, "GET", path, allow, sizeof(allow)),
                     GW_MATCH_NOT_FOUND);
}
END_TEST

/* ---- the query ------------------------------------------------------------------------ */

static Sp__Gwtest__V1__ListWidgetsRequest *query_ok(const gw_route *r, const char *qs)
{
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    sp_status s = gw_query_decode(&m, r, qs, arena, &errs);
    ck_assert_msg(s == SP_OK, "'%s': %d (%s: %s)", qs, s, errs.n ? errs.e[0].path : "",
                  errs.n ? errs.e[0].reason : "");
    ck_assert_ptr_nonnull(m);
    return (Sp__Gwtest__V1__ListWidgetsRequest *)m;
}

/* The query is refused, with 'field' among the fields named. */
static void query_bad(const gw_route *r, const char *qs, const char *field, const char *reason)
{
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    ck_assert_msg(gw_query_decode(&m, r, qs, arena, &errs) == SP_ERR_VALIDATION_FAILED,
                  "'%s' accepted", qs);
    ck_assert_ptr_null(m);
    bool found = false;
    for (size_t i = 0; i < errs.n; i++)
        found = found || (strcmp(errs.e[i].path, field) == 0 &&
                          (reason == NULL || strstr(errs.e[i].reason, reason) != NULL));
    ck_assert_msg(found, "'%s': no field %s (%s); first: %s: %s", qs, field, reason ? reason : "",
                  errs.n ? errs.e[0].path : "", errs.n ? errs.e[0].reason : "");
}

START_TEST(query_params_fill_fields_of_their_json_names)
{
    Sp__Gwtest__V1__ListWidgetsRequest *in =
        query_ok(&list_route, "limit=10&cursor=abc_-Z9&status=OPEN&active=true&lat=-23.5"
                              "&clientId=2b0c3f0e-8a4c-4c55-9a51-3f1f0f4b6d11");
    ck_assert(in->has_limit);
    ck_assert_int_eq(in->limit, 10);
    ck_assert_str_eq(in->cursor, "abc_-Z9");
    ck_assert_str_eq(in->status, "OPEN");
    ck_assert(in->has_active && in->active);
    ck_assert(in->has_lat);
    ck_assert_double_eq(in->lat, -23.5);
    ck_assert_str_eq(in->client_id, "2b0c3f0e-8a4c-4c55-9a51-3f1f0f4b6d11");
    ck_assert_ptr_null(in->user_id);

    /* percent-decoding, '+' as a space, empty segments skipped */
    in = query_ok(&list_route, "&status=a%20b+c%2Bd&&");
    ck_assert_str_eq(in->status, "a b c+d");
    in = query_ok(&list_route, "status=caf%C3%A9");
    ck_assert_str_eq(in->status, "caf\xc3\xa9");
}
END_TEST

START_TEST(list_limit_defaults_to_50_and_stays_in_1_to_500)
{
    Sp__Gwtest__V1__ListWidgetsRequest *in = query_ok(&list_route, NULL);
    ck_assert(in->has_limit);
    ck_assert_int_eq(in->limit, 50);
    ck_assert_ptr_null(in->cursor);
    in = query_ok(&list_route, "");
    ck_assert_int_eq(in->limit, 50);
    ck_assert_int_eq(query_ok(&list_route, "limit=1")->limit, 1);
    ck_assert_int_eq(query_ok(&list_route, "limit=500")->limit, 500);
    query_bad(&list_route, "limit=0", "limit", "1..500");
    query_bad(&list_route, "limit=501", "limit", "1..500");
    query_bad(&list_route, "limit=-1", "limit", "1..500");
    query_bad(&list_route, "limit=abc", "limit", NULL);
    query_bad(&list_route, "limit=", "limit", NULL);
    query_bad(&list_route, "limit=1.5", "limit", NULL);
    query_bad(&list_route, "limit=99999999999", "limit", NULL);
}
END_TEST

START_TEST(list_cursor_is_at_most_512_of_base64url)
{
    char qs[700], c[600];
    memset(c, 'A', 512);
    c[512] = '\0';
    snprintf(qs, sizeof(qs), "cursor=%s", c);
    ck_assert_uint_eq(strlen(query_ok(&list_route, qs)->cursor), 512);
    ck_assert_str_eq(query_ok(&list_route, "cursor=eyJpZCI6MX0")->cursor, "eyJpZCI6MX0");
    c[512] = 'A';
    c[513] = '\0';
    snprintf(qs, sizeof(qs), "cursor=%s", c);
    query_bad(&list_route, qs, "cursor", "base64url");
    query_bad(&list_route, "cursor=", "cursor", "base64url");
    query_bad(&list_route, "cursor=a.b", "cursor", "base64url");
    query_bad(&list_route, "cursor=a%2Fb", "cursor", "base64url");
    query_bad(&list_route, "cursor=a+b", "cursor", "base64url");
}
END_TEST

START_TEST(undeclared_repeated_or_bad_params_are_named)
{
    query_bad(&list_route, "foo=1", "foo", "unknown parameter");
    query_bad(&list_route, "status=A&foo", "foo", "unknown parameter");
    query_bad(&list_route, "user_id=x", "user_id", "unknown parameter"); /* JSON names only */
    query_bad(&list_route, "Status=A", "Status", "unknown parameter");
    query_bad(&list_route, "userId=x", "userId", "unknown parameter"); /* a field, not declared */
    query_bad(&list_route, "%FF=1", "query", "unknown parameter");     /* never echoed raw */
    query_bad(&list_route, "sta%00tus=1", "query", "unknown parameter");
    query_bad(&list_route, "status=A&status=B", "status", "repeated parameter");
    query_bad(&list_route, "limit=5&limit=5", "limit", "repeated parameter");
    query_bad(&list_route, "status=a%00b", "status", "NUL");
    query_bad(&list_route, "status=%FF", "status", "UTF-8");
    query_bad(&list_route, "status=%C3", "status", "UTF-8");
    query_bad(&list_route, "active=yes", "active", NULL);
    query_bad(&list_route, "lat=north", "lat", NULL);
    char many[256] = "";
    for (int i = 0; i < 17; i++)
        strcat(many, "status=A&");
    query_bad(&list_route, many, "query", "GW_MAX_QUERY_PARAMS");

    /* a route without a query refuses any parameter, takes none */
    size_t n = 0;
    const gw_route *t = gw_routes(&n);
    const gw_route *me = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].pattern, "/v1/me") == 0 && strcmp(t[i].method, "GET") == 0) me = &t[i];
    ck_assert_ptr_nonnull(me);
    query_bad(me, "foo=1", "foo", "unknown parameter");
    query_bad(me, "limit=10", "limit", "unknown parameter");
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    ck_assert_int_eq(gw_query_decode(&m, me, "", arena, &errs), SP_OK);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(gw_query_decode(&m, me, "&&", arena, &errs), SP_OK);
}
END_TEST

/* ---- lists: the answer ---------------------------------------------------------------- */

START_TEST(list_reply_has_items_and_next_cursor_always)
{
    Sp__Gwtest__V1__ListWidgetsReply rep = SP__GWTEST__V1__LIST_WIDGETS_REPLY__INIT;
    cJSON *j = sppb_to_json(&rep.base);
    char *s = cJSON_PrintUnformatted(j);
    ck_assert_str_eq(s, "{\"items\":[],\"nextCursor\":null}");
    free(s);
    cJSON_Delete(j);

    Sp__Gwtest__V1__Widget w = SP__GWTEST__V1__WIDGET__INIT;
    w.id = "2b0c3f0e-8a4c-4c55-9a51-3f1f0f4b6d11";
    w.name = "A";
    Sp__Gwtest__V1__Widget *items[] = {&w};
    rep.n_items = 1;
    rep.items = items;
    rep.next_cursor = "eyJpZCI6MX0";
    j = sppb_to_json(&rep.base);
    s = cJSON_PrintUnformatted(j);
    ck_assert_str_eq(
        s, "{\"items\":[{\"id\":\"2b0c3f0e-8a4c-4c55-9a51-3f1f0f4b6d11\",\"name\":\"A\"}],"
           "\"nextCursor\":\"eyJpZCI6MX0\"}");
    free(s);
    cJSON_Delete(j);
}
END_TEST

/* ---- PATCH: null clears ------------------------------------------------------------- */

static sp_status body(const gw_route *r, const char *text, ProtobufCMessage **m, sppb_errors *errs)
{
    cJSON *j = cJSON_Parse(text);
    ck_assert_ptr_nonnull(j);
    sp_status s = gw_body_decode(m, r, j, arena, errs);
    cJSON_Delete(j);
    return s;
}

static void body_bad(const gw_route *r, const char *text, const char *field, const char *reason)
{
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    ck_assert_msg(body(r, text, &m, &errs) == SP_ERR_VALIDATION_FAILED, "%s accepted", text);
    ck_assert_ptr_null(m);
    bool found = false;
    for (size_t i = 0; i < errs.n; i++)
        found = found ||
                (strcmp(errs.e[i].path, field) == 0 && strstr(errs.e[i].reason, reason) != NULL);
    ck_assert_msg(found, "%s: no %s (%s); first %s: %s", text, field, reason,
                  errs.n ? errs.e[0].path : "", errs.n ? errs.e[0].reason : "");
}

START_TEST(null_clears_optional_fields_of_a_message_with_cleared)
{
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    ck_assert_int_eq(
        body(&patch_route, "{\"name\":null,\"lotId\":null,\"size\":3,\"nested\":null}", &m, &errs),
        SP_OK);
    Sp__Gwtest__V1__UpdateWidgetRequest *in = (Sp__Gwtest__V1__UpdateWidgetRequest *)m;
    ck_assert_ptr_null(in->name);
    ck_assert(in->has_size && in->size == 3);
    ck_assert_uint_eq(in->n_cleared, 3);
    ck_assert_str_eq(in->cleared[0], "name");
    ck_assert_str_eq(in->cleared[1], "lotId");
    ck_assert_str_eq(in->cleared[2], "nested");

    /* absent stays as it is: nothing cleared */
    ck_assert_int_eq(body(&patch_route, "{\"name\":\"B\"}", &m, &errs), SP_OK);
    in = (Sp__Gwtest__V1__UpdateWidgetRequest *)m;
    ck_assert_str_eq(in->name, "B");
    ck_assert_uint_eq(in->n_cleared, 0);
    ck_assert_int_eq(body(&patch_route, "{}", &m, &errs), SP_OK);
    ck_assert_uint_eq(((Sp__Gwtest__V1__UpdateWidgetRequest *)m)->n_cleared, 0);

    /* what null may not clear stays 400 */
    body_bad(&patch_route, "{\"tags\":null}", "tags", "must not be null");
    body_bad(&patch_route, "{\"nested\":{\"name\":null}}", "nested.name", "must not be null");
    body_bad(&patch_route, "{\"cleared\":[\"name\"]}", "cleared", "unknown field");
    body_bad(&patch_route, "{\"cleared\":null}", "cleared", "unknown field");
    body_bad(&patch_route, "{\"bogus\":null}", "bogus", "unknown field");
    body_bad(&patch_route, "{\"name\":null,\"size\":\"x\"}", "size", "integer");
}
END_TEST

/* api.md: a body is optional on state actions; elsewhere a body route needs one */
START_TEST(no_body_is_empty_only_where_the_body_is_optional)
{
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    ck_assert_int_eq(gw_body_decode(&m, &approve_route, NULL, arena, &errs), SP_OK);
    ck_assert_ptr_nonnull(m);
    ck_assert_ptr_eq(m->descriptor, UPD_REQ);
    ck_assert_int_eq(body(&approve_route, "{}", &m, &errs), SP_OK);
    body_bad(&approve_route, "{\"bogus\":1}", "bogus", "unknown field");
    ck_assert_int_eq(gw_body_decode(&m, &patch_route, NULL, arena, &errs),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_null(m);
}
END_TEST

START_TEST(null_is_refused_without_cleared)
{
    size_t n = 0;
    const gw_route *t = gw_routes(&n);
    const gw_route *patch_me = NULL;
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].method, "PATCH") == 0 && strcmp(t[i].pattern, "/v1/me") == 0)
            patch_me = &t[i];
    ck_assert_ptr_nonnull(patch_me);
    body_bad(patch_me, "{\"name\":null}", "name", "must not be null");
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    ck_assert_int_eq(body(patch_me, "{\"name\":\"Ana\"}", &m, &errs), SP_OK);
    ck_assert_str_eq(((Sp__Auth__V1__UpdateMeRequest *)m)->name, "Ana");
}
END_TEST

/* ---- the OpenAPI document built from routes and descriptors (openapi_gen.c) ---------- */

static const char gen_notes[] =
    "{\"openapi\":\"3.1.0\",\"paths\":{},\"components\":{\"schemas\":{}},"
    "\"operations\":{"
    "\"GET /v1/widgets\":{\"operationId\":\"listWidgets\",\"tags\":[\"w\"],"
    "\"summary\":\"List\",\"params\":{\"status\":\"Only these.\"}},"
    "\"PATCH /v1/widgets/{id}\":{\"operationId\":\"updateWidget\",\"tags\":[\"w\"],"
    "\"summary\":\"Update\",\"description\":\"Changes it.\",\"errors\":[409]}},"
    "\"messages\":{\"sp.gwtest.v1.Widget\":{\"set\":[\"id\"],"
    "\"fields\":{\"name\":{\"maxLength\":80}}},"
    "\"sp.gwtest.v1.UpdateWidgetRequest\":{\"required\":[\"name\"]}}}";

static cJSON *build_doc(const char *notes, char *why, size_t whylen)
{
    const gw_route table[] = {list_route, patch_route};
    return gw_openapi_build(table, 2, notes, strlen(notes), why, whylen);
}

static const cJSON *at(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, "|", &save); k != NULL && o != NULL;
         k = strtok_r(NULL, "|", &save))
        o = cJSON_GetObjectItemCaseSensitive(o, k);
    return o;
}

START_TEST(openapi_schemas_come_from_the_descriptors_and_the_table)
{
    char why[256] = "";
    cJSON *doc = build_doc(gen_notes, why, sizeof(why));
    ck_assert_msg(doc != NULL, "%s", why);
    /* the list's items: every field written, null unless "set", the notes' keywords merged */
    const cJSON *w = at(doc, "components|schemas|Widget");
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(cJSON_GetArraySize(at(w, "required")), 2);
    ck_assert_str_eq(at(w, "properties|id|type")->valuestring, "string");
    ck_assert_ptr_nonnull(at(w, "properties|name|anyOf"));
    ck_assert_int_eq(cJSON_GetArrayItem(at(w, "properties|name|anyOf"), 0)->child->next->valueint,
                     80);
    ck_assert(cJSON_IsFalse(at(w, "additionalProperties")));
    /* the query parameters by their JSON names, with the field's type */
    const cJSON *ps = at(doc, "paths|/v1/widgets|get|parameters");
    bool lat = false;
    const cJSON *p;
    cJSON_ArrayForEach(p, ps)
    {
        const cJSON *name = at(p, "name");
        if (name != NULL && strcmp(name->valuestring, "lat") == 0)
            lat = strcmp(at(p, "schema|type")->valuestring, "number") == 0;
    }
    ck_assert(lat);
    /* roles from the table: 401 and 403; a path parameter: 404; the notes' 409 */
    const cJSON *rs = at(doc, "paths|/v1/widgets/{id}|patch|responses");
    ck_assert_ptr_nonnull(at(rs, "200"));
    ck_assert_ptr_nonnull(at(rs, "401"));
    ck_assert_ptr_nonnull(at(rs, "403"));
    ck_assert_ptr_nonnull(at(rs, "404"));
    ck_assert_ptr_nonnull(at(rs, "409"));
    ck_assert_ptr_nonnull(at(rs, "413"));
    ck_assert_ptr_null(at(doc, "paths|/v1/widgets|get|responses|413"));
    ck_assert_ptr_nonnull(strstr(at(doc, "paths|/v1/widgets/{id}|patch|description")->valuestring,
                                 "Roles: `admin`, `client_admin`."));
    /* the body: the request message less the path parameter and 'cleared'; clearable
     * fields take null; required from the notes */
    const cJSON *b = at(doc, "components|schemas|UpdateWidgetRequest");
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_null(at(b, "properties|id"));
    ck_assert_ptr_null(at(b, "properties|cleared"));
    ck_assert_ptr_nonnull(at(b, "properties|lotId|anyOf"));
    ck_assert_str_eq(cJSON_GetArrayItem(at(b, "required"), 0)->valuestring, "name");
    cJSON_Delete(doc);
}
END_TEST

/* The notes must describe the table exactly: each of these is refused, naming the cause. */
static const struct {
    const char *from, *to, *why;
} bad_notes[] = {
    {"\"GET /v1/widgets\"", "\"GET /v1/gadgets\"", "no operation: GET /v1/widgets"},
    {"\"name\":{\"maxLength\"", "\"nmae\":{\"maxLength\"", "names no field nmae"},
    {"[\"name\"]", "[\"title\"]", "names no field title"},
    {"[409]", "[418]", "an error status without a response"},
    {"sp.gwtest.v1.Widget\"", "sp.gwtest.v1.Gadget\"", "a message no route uses"},
    {"\"summary\":\"List\",", "", "no tags, summary or operationId"},
};

START_TEST(openapi_notes_that_do_not_fit_the_table_are_refused)
{
    char notes[sizeof(gen_notes) + 64];
    const char *hit = strstr(gen_notes, bad_notes[_i].from);
    ck_assert_ptr_nonnull(hit);
    snprintf(notes, sizeof(notes), "%.*s%s%s", (int)(hit - gen_notes), gen_notes, bad_notes[_i].to,
             hit + strlen(bad_notes[_i].from));
    char why[256] = "";
    cJSON *doc = build_doc(notes, why, sizeof(why));
    ck_assert_ptr_null(doc);
    ck_assert_msg(strstr(why, bad_notes[_i].why) != NULL, "why: %s", why);
    ck_assert_ptr_null(build_doc("[]", why, sizeof(why)));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gateway_routes");
    TCase *tc = tcase_create("routes");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, real_table_passes_the_check);
    tcase_add_test(tc, real_routes_keep_their_roles_and_deadlines);
    tcase_add_test(tc, subject_comes_from_the_request_message);
    tcase_add_loop_test(tc, bad_route_is_refused_with_a_reason, 0,
                        (int)(sizeof(bad) / sizeof(bad[0])));
    tcase_add_test(tc, duplicate_method_and_pattern_is_refused);
    tcase_add_test(tc, role_bits_of_token_roles);
    tcase_add_test(tc, path_params_fill_fields_of_their_json_names);
    tcase_add_test(tc, query_params_fill_fields_of_their_json_names);
    tcase_add_test(tc, list_limit_defaults_to_50_and_stays_in_1_to_500);
    tcase_add_test(tc, list_cursor_is_at_most_512_of_base64url);
    tcase_add_test(tc, undeclared_repeated_or_bad_params_are_named);
    tcase_add_test(tc, list_reply_has_items_and_next_cursor_always);
    tcase_add_test(tc, null_clears_optional_fields_of_a_message_with_cleared);
    tcase_add_test(tc, no_body_is_empty_only_where_the_body_is_optional);
    tcase_add_test(tc, null_is_refused_without_cleared);
    tcase_add_test(tc, openapi_schemas_come_from_the_descriptors_and_the_table);
    tcase_add_loop_test(tc, openapi_notes_that_do_not_fit_the_table_are_refused, 0,
                        (int)(sizeof(bad_notes) / sizeof(bad_notes[0])));
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
