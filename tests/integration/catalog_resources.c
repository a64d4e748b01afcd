/* catalog_resources.c -- establishments, lots, slots, API keys and cameras through the
 * gateway and the catalog service on real NATS, PostgreSQL and Redis (with auth and tenancy
 * for the accounts, the clients and the audit log): the role x tenant matrix of every route
 * with nothing changed where refused, other tenants' ids 404 and lists that never show
 * them, uniqueness and soft delete freeing names and codes, bulk slots all or nothing,
 * field limits, PATCH with null, the state machine, secrets shown once and never kept,
 * revocation in Redis, the change messages on the bus and the audit events. */
#include <libpq-fe.h>
#include <nats/nats.h>

#include "sp/v1/changed.pb-c.h"
#include "spredis.h"
#include "tenancy_fixture.h"
#include "site_fixture.h"

/* ---- fixture: two tenants, an app user ------------------------------------------------- */

static tenant A, B;
static account APP;

static void setup(void)
{
    A = new_tenant("sitesA", true, true);
    B = new_tenant("sitesB", true, false);
    APP = new_app_user("sitesapp");
}

static void teardown(void)
{
    tenant_free(&A);
    tenant_free(&B);
    account_free(&APP);
}

/* An establishment with a lot and a slot, all of tenant A. */
typedef struct {
    char *est, *lot, *slot, *key, *cam;
    char est_name[64], lot_code[24], cam_code[48];
} site;

static site new_site(void)
{
    site s;
    fresh(s.est_name, sizeof(s.est_name), "Mall ", 40);
    fresh(s.lot_code, sizeof(s.lot_code), "L", 20);
    fresh(s.cam_code, sizeof(s.cam_code), "CAM-", 40);
    s.est = new_establishment(A.id, s.est_name, "Campinas");
    s.lot = new_lot(s.est, s.lot_code, NULL);
    s.slot = new_slot(s.lot, "A1");
    char body[256];
    snprintf(body, sizeof(body), "{\"name\":\"Key\",\"clientId\":\"%s\"}", A.id);
    s.key = MADE("/v1/api-keys", body);
    snprintf(body, sizeof(body),
             "{\"cameraCode\":\"%s\",\"clientId\":\"%s\",\"apiKeyId\":\"%s\",\"lotId\":\"%s\"}",
             s.cam_code, A.id, s.key, s.lot);
    s.cam = MADE("/v1/cameras", body);
    return s;
}

static void site_free(site *s)
{
    free(s->est);
    free(s->lot);
    free(s->slot);
    free(s->key);
    free(s->cam);
}

/* What the admin reads of the site and of tenant A's lists: equal before and after a
 * refused call means the call changed nothing. Caller frees. */
static char *snapshot(const site *s)
{
    char path[256], *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    const char *paths[] = {"/v1/establishments/%s",
                           "/v1/lots/%s",
                           "/v1/slots/%s",
                           "/v1/establishments/%s/lots",
                           "/v1/lots/%s/slots",
                           "/v1/cameras/%s",
                           "/v1/cameras?clientId=%s&limit=500",
                           "/v1/api-keys?clientId=%s&limit=500"};
    const char *ids[] = {s->est, s->lot, s->slot, s->est, s->lot, s->cam, A.id, A.id};
    for (size_t i = 0; i < 8; i++) {
        snprintf(path, sizeof(path), paths[i], ids[i]);
        sptest_resp *r = call("GET", path, ADMIN, NULL, NULL);
        fprintf(f, "%ld %s\n", r->status, r->body);
        sptest_resp_free(r);
    }
    snprintf(path, sizeof(path), "/v1/establishments?clientId=%s&limit=500", A.id);
    sptest_resp *r = call("GET", path, ADMIN, NULL, NULL);
    fprintf(f, "%ld %s\n", r->status, r->body);
    sptest_resp_free(r);
    fclose(f);
    return out;
}

/* ---- the role x tenant matrix --------------------------------------------------------------- */

enum { R_ADMIN, R_MGR, R_OP, R_OTHER, R_APP, R_ANON, NROLES };
static const char *const role_names[] = {"admin",        "manager",  "operator",
                                         "other tenant", "app user", "no token"};

static const char *token_of(int role)
{
    switch (role) {
    case R_ADMIN:
        return ADMIN;
    case R_MGR:
        return A.mgr.token;
    case R_OP:
        return A.op.token;
    case R_OTHER:
        return B.mgr.token;
    case R_APP:
        return APP.token;
    default:
        return NULL;
    }
}

/* 'path' with %s for the id of kind 'on' ('e' establishment, 'l' lot, 's' slot, 'k' API
 * key, 'c' camera, '-' none); 'body' formatted with tenant A's id, the site's key and a
 * fresh code. */
/* clang-format off */
static const struct {
    const char *method, *path;
    char on;
    const char *body;
    long want[NROLES];
} matrix[] = {
    /*                                                              admin mgr  op   other app anon */
    {"POST", "/v1/establishments", '-', "{\"clientId\":\"%s\",\"name\":\"Matrix\"}",
                                                                   {201, 403, 403, 403, 403, 401}},
    {"GET", "/v1/establishments", '-', NULL,                        {200, 200, 200, 200, 403, 401}},
    {"GET", "/v1/establishments/%s", 'e', NULL,                     {200, 200, 200, 404, 403, 401}},
    {"PATCH", "/v1/establishments/%s", 'e', "{\"city\":\"Santos\"}", {200, 200, 403, 404, 403, 401}},
    {"DELETE", "/v1/establishments/%s", 'e', NULL,                  {204, 403, 403, 403, 403, 401}},
    {"POST", "/v1/establishments/%s/deactivate", 'e', NULL,         {200, 403, 403, 403, 403, 401}},
    {"POST", "/v1/establishments/%s/activate", 'e', NULL,           {409, 403, 403, 403, 403, 401}},
    {"POST", "/v1/establishments/%s/lots", 'e', "{\"lotCode\":\"MX\"}",
                                                                   {201, 403, 403, 403, 403, 401}},
    {"GET", "/v1/establishments/%s/lots", 'e', NULL,                {200, 200, 200, 404, 403, 401}},
    {"GET", "/v1/lots/%s", 'l', NULL,                               {200, 200, 200, 404, 403, 401}},
    {"PATCH", "/v1/lots/%s", 'l', "{\"debounceMs\":500}",           {200, 200, 403, 404, 403, 401}},
    {"DELETE", "/v1/lots/%s", 'l', NULL,                            {204, 403, 403, 403, 403, 401}},
    {"POST", "/v1/lots/%s/slots", 'l', "{\"slotCode\":\"MX\",\"slotType\":\"regular\"}",
                                                                   {201, 403, 403, 403, 403, 401}},
    {"GET", "/v1/lots/%s/slots", 'l', NULL,                         {200, 200, 200, 404, 403, 401}},
    {"GET", "/v1/slots/%s", 's', NULL,                              {200, 200, 200, 404, 403, 401}},
    {"PATCH", "/v1/slots/%s", 's', "{\"active\":false}",            {200, 200, 403, 404, 403, 401}},
    {"DELETE", "/v1/slots/%s", 's', NULL,                           {204, 403, 403, 403, 403, 401}},
    {"POST", "/v1/api-keys", '-', "{\"clientId\":\"%s\",\"name\":\"Matrix\"}",
                                                                   {201, 201, 403, 404, 403, 401}},
    {"GET", "/v1/api-keys", '-', NULL,                              {200, 200, 200, 200, 403, 401}},
    {"POST", "/v1/api-keys/%s/revoke", 'k', NULL,                   {204, 204, 403, 404, 403, 401}},
    {"POST", "/v1/cameras", '-',
     "{\"clientId\":\"%s\",\"apiKeyId\":\"%s\",\"cameraCode\":\"%s\"}",
                                                                   {201, 201, 403, 404, 403, 401}},
    {"GET", "/v1/cameras", '-', NULL,                               {200, 200, 200, 200, 403, 401}},
    {"GET", "/v1/cameras/%s", 'c', NULL,                            {200, 200, 200, 404, 403, 401}},
    {"PATCH", "/v1/cameras/%s", 'c', "{\"lotId\":null}",            {200, 200, 403, 404, 403, 401}},
    {"DELETE", "/v1/cameras/%s", 'c', NULL,                         {204, 204, 403, 404, 403, 401}},
};
/* clang-format on */
#define NMATRIX (sizeof(matrix) / sizeof(matrix[0]))

/* One row of the matrix, each role on a fresh site: the status, and where refused, the
 * site and tenant A's lists exactly as they were. */
START_TEST(role_by_tenant_matrix)
{
    for (int role = 0; role < NROLES; role++) {
        site s = new_site();
        char path[256], body[512];
        const char *id = matrix[_i].on == 'e'   ? s.est
                         : matrix[_i].on == 'l' ? s.lot
                         : matrix[_i].on == 's' ? s.slot
                         : matrix[_i].on == 'k' ? s.key
                         : matrix[_i].on == 'c' ? s.cam
                                                : NULL;
        snprintf(path, sizeof(path), matrix[_i].path, id != NULL ? id : "");
        char code[48];
        fresh(code, sizeof(code), "MX-", 40);
        if (matrix[_i].body != NULL)
            snprintf(body, sizeof(body), matrix[_i].body, A.id, s.key, code);
        char *before = snapshot(&s);
        sptest_resp *r =
            call(matrix[_i].method, path, token_of(role), matrix[_i].body ? body : NULL, NULL);
        long want = matrix[_i].want[role];
        ck_assert_msg(r->status == want, "%s %s as %s: want %ld, got %ld %s", matrix[_i].method,
                      matrix[_i].path, role_names[role], want, r->status, r->body);
        if (want >= 400) {
            char *after = snapshot(&s);
            ck_assert_msg(strcmp(before, after) == 0, "%s %s as %s changed something:\n%s\n%s",
                          matrix[_i].method, matrix[_i].path, role_names[role], before, after);
            free(after);
            ck_assert_ptr_nonnull(sptest_jstr(r, "error.code"));
        }
        free(before);
        sptest_resp_free(r);
        site_free(&s);
    }
}
END_TEST

/* No list shows another tenant's rows, whatever the filters say. */
START_TEST(lists_never_show_another_tenants_rows)
{
    site s = new_site();
    char path[256];
    snprintf(path, sizeof(path), "/v1/establishments?clientId=%s&limit=500", A.id);
    const char *who[] = {B.mgr.token, A.mgr.token, A.op.token, ADMIN};
    for (size_t k = 0; k < 4; k++) {
        sptest_resp *r = MUST("GET", path, who[k], NULL, 200);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(r->json, "items"), *it;
        int mine = 0;
        cJSON_ArrayForEach(it, items)
        {
            const char *client = item_str(it, "clientId");
            ck_assert_msg(k == 3 || strcmp(client, k == 0 ? B.id : A.id) == 0,
                          "a row of another tenant: %s", r->body);
            mine += strcmp(item_str(it, "id"), s.est) == 0;
        }
        ck_assert_int_eq(mine, k == 0 ? 0 : 1);
        sptest_resp_free(r);
    }
    /* B's own list is B's only */
    char *eb = new_establishment(B.id, "B Site", "Campinas");
    sptest_resp *r = MUST("GET", "/v1/establishments?limit=500", B.mgr.token, NULL, 200);
    ck_assert_int_eq(
        count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "clientId", B.id),
        cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")));
    ck_assert_int_ge(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")), 1);
    sptest_resp_free(r);
    free(eb);
    site_free(&s);
}
END_TEST

/* ---- establishments ----------------------------------------------------------------------- */

START_TEST(establishment_is_created_active_with_its_fields)
{
    char name[64], body[512];
    fresh(name, sizeof(name), "Demo Mall ", 40);
    snprintf(body, sizeof(body),
             "{\"clientId\":\"%s\",\"name\":\"%s\",\"storeType\":\"shopping\",\"address\":\"Av. "
             "Paulista 1000\",\"city\":\"São Paulo\",\"state\":\"SP\",\"lat\":-23.5614,\"lng\":-46."
             "6559}",
             A.id, name);
    sptest_resp *r = MUST("POST", "/v1/establishments", ADMIN, body, 201);
    ck_assert_str_eq(sptest_jstr(r, "status"), "ACTIVE");
    ck_assert_str_eq(sptest_jstr(r, "clientId"), A.id);
    ck_assert_str_eq(sptest_jstr(r, "name"), name);
    ck_assert_str_eq(sptest_jstr(r, "storeType"), "shopping");
    ck_assert_str_eq(sptest_jstr(r, "city"), "São Paulo");
    ck_assert_msg(cJSON_GetObjectItemCaseSensitive(r->json, "lat")->valuedouble == -23.5614, "%s",
                  r->body);
    ck_assert(matches(RFC3339_MS, sptest_jstr(r, "createdAt")));
    ck_assert_int_eq(count_members(r->json), 12);
    char path[128];
    snprintf(path, sizeof(path), "/v1/establishments/%s", sptest_jstr(r, "id"));
    sptest_resp *g = MUST("GET", path, A.op.token, NULL, 200);
    ck_assert_str_eq(g->body, r->body);
    sptest_resp_free(g);
    /* the name is taken in this client, free in another */
    sptest_resp *dup = call("POST", "/v1/establishments", ADMIN, body, NULL);
    assert_error(dup, 409, "conflict");
    sptest_resp_free(dup);
    snprintf(body, sizeof(body), "{\"clientId\":\"%s\",\"name\":\"%s\"}", B.id, name);
    sptest_resp_free(MUST("POST", "/v1/establishments", ADMIN, body, 201));
    sptest_resp_free(r);
}
END_TEST

static const struct {
    const char *body; /* %s: tenant A's id */
    const char *field;
} bad_establishments[] = {
    {"{\"clientId\":\"%s\",\"name\":\"\"}", "name"},
    {"{\"clientId\":\"%s\"}", "name"},
    {"{\"name\":\"X\"}", "clientId"},
    {"{\"clientId\":\"not-a-uuid\",\"name\":\"X\"}", "clientId"},
    {"{\"clientId\":\"00000000-0000-4000-8000-000000000000\",\"name\":\"X\"}", "clientId"},
    {"{\"clientId\":\"%s\",\"name\":\"X\",\"lat\":90.5}", "lat"},
    {"{\"clientId\":\"%s\",\"name\":\"X\",\"lng\":-181}", "lng"},
    {"{\"clientId\":\"%s\",\"name\":\"X\",\"storeType\":\"castle\"}", "storeType"},
    {"{\"clientId\":\"%s\",\"name\":\"X\",\"city\":\"%081d\"}", "city"},
    {"{\"clientId\":\"%s\",\"name\":\"X\",\"status\":\"INACTIVE\"}", "status"},
    {"{\"clientId\":\"%s\",\"name\":\"X\",\"state\":\"%041d\"}", "state"},
};

START_TEST(bad_establishments_are_400_naming_the_field_and_make_nothing)
{
    char path[256], body[512];
    snprintf(path, sizeof(path), "/v1/establishments?clientId=%s&limit=500", A.id);
    sptest_resp *before = MUST("GET", path, ADMIN, NULL, 200);
    for (size_t k = 0; k < sizeof(bad_establishments) / sizeof(bad_establishments[0]); k++) {
        const char *b = bad_establishments[k].body;
        if (strstr(b, "%0") != NULL)
            snprintf(body, sizeof(body), b, A.id, 0);
        else
            snprintf(body, sizeof(body), b, A.id);
        sptest_resp *r = call("POST", "/v1/establishments", ADMIN, body, NULL);
        assert_error(r, 400, "validation_failed");
        ck_assert_msg(names_field(r, bad_establishments[k].field), "%s: %s not named: %s", body,
                      bad_establishments[k].field, r->body);
        sptest_resp_free(r);
    }
    sptest_resp *after = MUST("GET", path, ADMIN, NULL, 200);
    ck_assert_str_eq(before->body, after->body);
    sptest_resp_free(before);
    sptest_resp_free(after);
}
END_TEST

START_TEST(establishment_patch_changes_given_fields_and_null_clears)
{
    char *e = new_establishment(A.id, "Patch Mall", "Campinas");
    char path[128];
    snprintf(path, sizeof(path), "/v1/establishments/%s", e);
    sptest_resp *r = MUST("PATCH", path, A.mgr.token,
                          "{\"address\":\"Rua 1\",\"storeType\":\"hospital\",\"lat\":1.5}", 200);
    ck_assert_str_eq(sptest_jstr(r, "address"), "Rua 1");
    ck_assert_str_eq(sptest_jstr(r, "city"), "Campinas"); /* absent: as it was */
    ck_assert_str_eq(sptest_jstr(r, "storeType"), "hospital");
    sptest_resp_free(r);
    r = MUST("PATCH", path, A.mgr.token, "{\"city\":null,\"storeType\":null,\"lat\":null}", 200);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "city")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "storeType")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "lat")));
    ck_assert_str_eq(sptest_jstr(r, "address"), "Rua 1");
    sptest_resp_free(r);
    r = call("PATCH", path, A.mgr.token, "{\"name\":null}", NULL);
    assert_error(r, 400, "validation_failed");
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.name"));
    sptest_resp_free(r);
    r = call("PATCH", path, A.mgr.token, "{\"status\":\"INACTIVE\"}", NULL);
    assert_error(r, 400, "validation_failed");
    sptest_resp_free(r);
    /* a name taken in the client */
    char *other = new_establishment(A.id, "Patch Mall Two", "Campinas");
    r = call("PATCH", path, A.mgr.token, "{\"name\":\"Patch Mall Two\"}", NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    r = MUST("GET", path, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Patch Mall");
    sptest_resp_free(r);
    free(other);
    free(e);
}
END_TEST

START_TEST(establishment_status_changes_only_from_the_right_state)
{
    char *e = new_establishment(A.id, "State Mall", "Campinas");
    char path[160];
    snprintf(path, sizeof(path), "/v1/establishments/%s/activate", e);
    sptest_resp *r = call("POST", path, ADMIN, NULL, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/establishments/%s/deactivate", e);
    r = MUST("POST", path, ADMIN, "{}", 200);
    ck_assert_str_eq(sptest_jstr(r, "status"), "INACTIVE");
    sptest_resp_free(r);
    r = call("POST", path, ADMIN, NULL, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    /* filters */
    char list[256];
    snprintf(list, sizeof(list), "/v1/establishments?status=INACTIVE&limit=500");
    r = MUST("GET", list, A.mgr.token, NULL, 200);
    ck_assert_int_eq(count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "id", e), 1);
    ck_assert_int_eq(
        count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "status", "ACTIVE"), 0);
    sptest_resp_free(r);
    r = MUST("GET", "/v1/establishments?city=CAMPINAS&limit=500", A.mgr.token, NULL, 200);
    ck_assert_int_eq(count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "id", e), 1);
    sptest_resp_free(r);
    r = call("GET", "/v1/establishments?status=CLOSED", A.mgr.token, NULL, NULL);
    assert_error(r, 400, "validation_failed");
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.status"));
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/establishments/%s/activate", e);
    r = MUST("POST", path, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "status"), "ACTIVE");
    sptest_resp_free(r);
    /* the decisions are in the client's audit log (through catalog's outbox and SP_AUDIT) */
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        r = MUST("GET", "/v1/audit?action=establishment.deactivated", A.mgr.token, NULL, 200);
        seen = strstr(r->body, e) != NULL;
        sptest_resp_free(r);
        if (!seen) usleep(100 * 1000);
    }
    ck_assert_msg(seen, "no establishment.deactivated in the client's audit log");
    free(e);
}
END_TEST

/* Deleting an establishment takes its lots and slots; the name and the codes are free. */
START_TEST(establishment_delete_takes_lots_and_slots_and_frees_codes)
{
    site s = new_site();
    char path[160];
    snprintf(path, sizeof(path), "/v1/establishments/%s", s.est);
    sptest_resp_free(MUST("DELETE", path, ADMIN, NULL, 204));
    sptest_resp *r = call("GET", path, ADMIN, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/lots/%s", s.lot);
    r = call("GET", path, ADMIN, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/slots/%s", s.slot);
    r = call("GET", path, A.mgr.token, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/establishments/%s", s.est);
    r = call("DELETE", path, ADMIN, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    char *again = new_establishment(A.id, s.est_name, "Campinas");
    char *lot = new_lot(again, s.lot_code, NULL);
    free(lot);
    free(again);
    site_free(&s);
}
END_TEST

/* ---- lots ------------------------------------------------------------------------------------ */

START_TEST(lot_codes_are_unique_per_client_with_defaults_and_ranges)
{
    site s = new_site();
    char path[160];
    snprintf(path, sizeof(path), "/v1/lots/%s", s.lot);
    sptest_resp *r = MUST("GET", path, A.op.token, NULL, 200);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r->json, "debounceMs")->valueint, 0);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r->json, "unknownAfterS")->valueint, 120);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r->json, "slotCount")->valueint, 1);
    ck_assert_str_eq(sptest_jstr(r, "establishmentId"), s.est);
    ck_assert_str_eq(sptest_jstr(r, "clientId"), A.id);
    sptest_resp_free(r);
    /* the code is taken in the whole client (another establishment too), free in another */
    char *e2 = new_establishment(A.id, "Lots Two", "Campinas");
    char body[256];
    snprintf(path, sizeof(path), "/v1/establishments/%s/lots", e2);
    snprintf(body, sizeof(body), "{\"lotCode\":\"%s\"}", s.lot_code);
    r = call("POST", path, ADMIN, body, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    snprintf(body, sizeof(body), "{\"lotCode\":\"%s\"}", s.lot_code);
    char *eb = new_establishment(B.id, "Lots B", "Campinas");
    free(new_lot(eb, s.lot_code, NULL));
    /* codes compare case-sensitively */
    char lower[24];
    snprintf(lower, sizeof(lower), "%s", s.lot_code);
    lower[0] = 'l';
    free(new_lot(e2, lower, NULL));
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"lotCode\":\"\"}", "lotCode"},
        {"{\"lotCode\":\"has space\"}", "lotCode"},
        {"{\"lotCode\":\"ABCDEFGHIJKLMNOPQRSTU\"}", "lotCode"},
        {"{\"lotCode\":\"OK1\",\"debounceMs\":60001}", "debounceMs"},
        {"{\"lotCode\":\"OK1\",\"debounceMs\":-1}", "debounceMs"},
        {"{\"lotCode\":\"OK1\",\"unknownAfterS\":86401}", "unknownAfterS"},
        {"{\"lotCode\":\"OK1\",\"name\":\"\"}", "name"},
        {"{\"lotCode\":\"OK1\",\"slots\":[{\"slotCode\":\"A1\"}]}", "slots[0].slotType"},
        {"{\"lotCode\":\"OK1\",\"slotCount\":3}", "slotCount"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        r = call("POST", path, ADMIN, bad[k].body, NULL);
        assert_error(r, 400, "validation_failed");
        ck_assert_msg(names_field(r, bad[k].field), "%s: %s not named: %s", bad[k].body,
                      bad[k].field, r->body);
        sptest_resp_free(r);
    }
    free(new_lot(e2, "EDGE", "\"debounceMs\":60000,\"unknownAfterS\":0"));
    snprintf(path, sizeof(path), "/v1/establishments/%s/lots", e2);
    r = MUST("GET", path, A.op.token, NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")), 2);
    sptest_resp_free(r);
    /* patch: null clears the name, not the numbers */
    snprintf(path, sizeof(path), "/v1/lots/%s", s.lot);
    r = MUST("PATCH", path, A.mgr.token, "{\"name\":\"Roof\",\"unknownAfterS\":30}", 200);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Roof");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r->json, "unknownAfterS")->valueint, 30);
    sptest_resp_free(r);
    r = MUST("PATCH", path, A.mgr.token, "{\"name\":null}", 200);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "name")));
    sptest_resp_free(r);
    r = call("PATCH", path, A.mgr.token, "{\"debounceMs\":null}", NULL);
    assert_error(r, 400, "validation_failed");
    sptest_resp_free(r);
    /* delete frees the code */
    sptest_resp_free(MUST("DELETE", path, ADMIN, NULL, 204));
    free(new_lot(e2, s.lot_code, NULL));
    free(eb);
    free(e2);
    site_free(&s);
}
END_TEST

/* ---- slots ----------------------------------------------------------------------------------- */

/* The slots of a lot, one page of 500 (asserted 200); caller deletes. */
static cJSON *slots_of(const char *lot)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/lots/%s/slots?limit=500", lot);
    sptest_resp *r = MUST("GET", path, ADMIN, NULL, 200);
    cJSON *items = cJSON_DetachItemFromObject(r->json, "items");
    sptest_resp_free(r);
    return items;
}

START_TEST(one_slot_is_answered_as_the_slot_a_batch_as_items)
{
    site s = new_site();
    char path[160];
    snprintf(path, sizeof(path), "/v1/lots/%s/slots", s.lot);
    sptest_resp *r =
        MUST("POST", path, ADMIN,
             "{\"slotCode\":\"P-9\",\"slotType\":\"ev\",\"polygon\":[[0,0],[0.5,0],[0.5,"
             "0.25],[0,1]]}",
             201);
    ck_assert_str_eq(sptest_jstr(r, "slotCode"), "P-9");
    ck_assert_str_eq(sptest_jstr(r, "slotType"), "ev");
    ck_assert_str_eq(sptest_jstr(r, "status"), "UNKNOWN");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "changedAt")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "vehicle")));
    const cJSON *poly = cJSON_GetObjectItemCaseSensitive(r->json, "polygon");
    ck_assert_int_eq(cJSON_GetArraySize(poly), 4);
    ck_assert(cJSON_GetArrayItem(cJSON_GetArrayItem(poly, 2), 1)->valuedouble == 0.25);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(r->json, "items"));
    sptest_resp_free(r);
    r = MUST("POST", path, ADMIN,
             "{\"slots\":[{\"slotCode\":\"B1\",\"slotType\":\"regular\"},{\"slotCode\":\"B2\","
             "\"slotType\":\"moto\"}]}",
             201);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(r->json, "items");
    ck_assert_int_eq(count_members(r->json), 1);
    ck_assert_int_eq(cJSON_GetArraySize(items), 2);
    ck_assert_str_eq(item_str(cJSON_GetArrayItem(items, 0), "slotCode"), "B1");
    ck_assert_str_eq(item_str(cJSON_GetArrayItem(items, 1), "slotType"), "moto");
    sptest_resp_free(r);
    cJSON *all = slots_of(s.lot);
    ck_assert_int_eq(cJSON_GetArraySize(all), 4);
    ck_assert_str_eq(item_str(cJSON_GetArrayItem(all, 0), "slotCode"), "A1");
    ck_assert_str_eq(item_str(cJSON_GetArrayItem(all, 3), "slotCode"), "B2");
    cJSON_Delete(all);
    site_free(&s);
}
END_TEST

START_TEST(slot_batches_are_all_or_nothing)
{
    site s = new_site();
    char path[160];
    snprintf(path, sizeof(path), "/v1/lots/%s/slots", s.lot);
    /* a code of the lot (A1), or twice in the body: 409, nothing made */
    const char *bodies[] = {
        "{\"slots\":[{\"slotCode\":\"C1\",\"slotType\":\"regular\"},{\"slotCode\":\"A1\","
        "\"slotType\":\"regular\"}]}",
        "{\"slots\":[{\"slotCode\":\"C1\",\"slotType\":\"regular\"},{\"slotCode\":\"C1\","
        "\"slotType\":\"regular\"}]}",
        "{\"slotCode\":\"A1\",\"slotType\":\"regular\"}",
    };
    for (size_t k = 0; k < 3; k++) {
        sptest_resp *r = call("POST", path, ADMIN, bodies[k], NULL);
        assert_error(r, 409, "conflict");
        sptest_resp_free(r);
    }
    /* bad items: 400 naming them, nothing made */
    static const struct {
        const char *body, *field;
    } bad[] = {
        {"{\"slots\":[{\"slotCode\":\"D1\",\"slotType\":\"regular\"},{\"slotCode\":\"ELEVENCHARS\","
         "\"slotType\":\"regular\"}]}",
         "slots[1].slotCode"},
        {"{\"slots\":[{\"slotCode\":\"D.1\",\"slotType\":\"regular\"}]}", "slots[0].slotCode"},
        {"{\"slots\":[{\"slotCode\":\"D1\",\"slotType\":\"boat\"}]}", "slots[0].slotType"},
        {"{\"slotCode\":\"D1\",\"slotType\":\"regular\",\"polygon\":[[0,0],[1,1]]}", "polygon"},
        {"{\"slotCode\":\"D1\",\"slotType\":\"regular\",\"polygon\":[[0,0],[1,1],[1.5,0]]}",
         "polygon"},
        {"{\"slotCode\":\"D1\",\"slotType\":\"regular\",\"polygon\":[[0,0],[1,1],[1]]}", "polygon"},
        {"{\"slotCode\":\"D1\",\"slotType\":\"regular\",\"polygon\":\"square\"}", "polygon"},
        {"{\"slotCode\":\"D1\",\"slotType\":\"regular\",\"slots\":[{\"slotCode\":\"D2\","
         "\"slotType\":\"regular\"}]}",
         "slots"},
        {"{\"slots\":[{\"slotCode\":\"D1\",\"slotType\":\"regular\",\"active\":true}]}",
         "slots[0].active"},
        {"{\"slots\":[]}", "slotCode"},
    };
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        sptest_resp *r = call("POST", path, ADMIN, bad[k].body, NULL);
        assert_error(r, 400, "validation_failed");
        ck_assert_msg(names_field(r, bad[k].field), "%s: %s not named: %s", bad[k].body,
                      bad[k].field, r->body);
        sptest_resp_free(r);
    }
    cJSON *all = slots_of(s.lot);
    ck_assert_int_eq(cJSON_GetArraySize(all), 1);
    cJSON_Delete(all);
    /* 1,001 slots: 400; 1,000: all made */
    for (int n = 1001; n >= 1000; n--) {
        size_t cap = 64 + (size_t)n * 48;
        char *body = malloc(cap);
        size_t o = (size_t)snprintf(body, cap, "{\"slots\":[");
        for (int i = 0; i < n; i++)
            o += (size_t)snprintf(body + o, cap - o,
                                  "%s{\"slotCode\":\"S%d\",\"slotType\":\"regular\"}", i ? "," : "",
                                  i);
        snprintf(body + o, cap - o, "]}");
        sptest_resp *r = call("POST", path, ADMIN, body, NULL);
        free(body);
        if (n == 1001) {
            assert_error(r, 400, "validation_failed");
            ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.slots"));
        } else {
            ck_assert_msg(r->status == 201, "%ld %.300s", r->status, r->body);
            ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")),
                             1000);
        }
        sptest_resp_free(r);
    }
    char lp[160];
    snprintf(lp, sizeof(lp), "/v1/lots/%s", s.lot);
    sptest_resp *r = MUST("GET", lp, ADMIN, NULL, 200);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r->json, "slotCount")->valueint, 1001);
    sptest_resp_free(r);
    site_free(&s);
}
END_TEST

START_TEST(a_lot_made_with_slots_is_all_or_nothing)
{
    char *e = new_establishment(A.id, "Bulk Mall", "Campinas");
    char *lot = new_lot(e, "BULK",
                        "\"slots\":[{\"slotCode\":\"A1\",\"slotType\":\"regular\"},{\"slotCode\":"
                        "\"A2\",\"slotType\":\"accessible\"}]");
    char path[160];
    snprintf(path, sizeof(path), "/v1/lots/%s", lot);
    sptest_resp *r = MUST("GET", path, ADMIN, NULL, 200);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r->json, "slotCount")->valueint, 2);
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/establishments/%s/lots", e);
    r = call("POST", path, ADMIN,
             "{\"lotCode\":\"BULK2\",\"slots\":[{\"slotCode\":\"A1\",\"slotType\":\"regular\"},{"
             "\"slotCode\":\"A1\",\"slotType\":\"regular\"}]}",
             NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    /* the lot was not made: its code is free */
    free(new_lot(e, "BULK2", NULL));
    free(lot);
    free(e);
}
END_TEST

START_TEST(slot_patch_and_delete)
{
    site s = new_site();
    char path[160];
    snprintf(path, sizeof(path), "/v1/slots/%s", s.slot);
    sptest_resp *r = MUST("PATCH", path, A.mgr.token,
                          "{\"slotType\":\"accessible\",\"polygon\":[[0,0],[1,0],[1,1]]}", 200);
    ck_assert_str_eq(sptest_jstr(r, "slotType"), "accessible");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "polygon")), 3);
    sptest_resp_free(r);
    r = MUST("PATCH", path, A.mgr.token, "{\"polygon\":null,\"active\":false}", 200);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "polygon")));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r->json, "active")));
    ck_assert_str_eq(sptest_jstr(r, "slotType"), "accessible");
    sptest_resp_free(r);
    const char *bad[] = {"{\"slotType\":null}", "{\"active\":null}", "{\"slotType\":\"boat\"}",
                         "{\"slotCode\":\"Z9\"}", "{\"polygon\":[]}"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
        r = call("PATCH", path, A.mgr.token, bad[k], NULL);
        ck_assert_msg(r->status == 400, "%s: %ld %s", bad[k], r->status, r->body);
        sptest_resp_free(r);
    }
    sptest_resp_free(MUST("DELETE", path, ADMIN, NULL, 204));
    r = call("GET", path, ADMIN, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    /* the code is free again */
    free(new_slot(s.lot, "A1"));
    site_free(&s);
}
END_TEST

START_TEST(ids_that_are_not_uuids_or_unknown_are_404)
{
    const char *paths[] = {"/v1/establishments/%s", "/v1/lots/%s", "/v1/slots/%s",
                           "/v1/establishments/%s/lots", "/v1/lots/%s/slots"};
    for (size_t k = 0; k < 5; k++) {
        char path[160];
        snprintf(path, sizeof(path), paths[k], "00000000-0000-4000-8000-000000000000");
        sptest_resp *r = call("GET", path, ADMIN, NULL, NULL);
        assert_error(r, 404, "not_found");
        sptest_resp_free(r);
        snprintf(path, sizeof(path), paths[k], "nope");
        r = call("GET", path, ADMIN, NULL, NULL);
        assert_error(r, 404, "not_found");
        sptest_resp_free(r);
    }
}
END_TEST

/* ---- change messages on the bus ---------------------------------------------------------------
 */

/* Every change publishes sp.catalog.changed.<clientId>.<kind> (bus.md), read here as the
 * ingest user, which may subscribe to them. */
START_TEST(changes_are_published_on_the_bus)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    natsSubscription *sub = NULL;
    const char *pw = sptest_secret(E, "SP_NATS_INGEST_PASSWORD");
    ck_assert_ptr_nonnull(pw);
    ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
    ck_assert_int_eq(natsOptions_SetURL(o, E->nats_url), NATS_OK);
    ck_assert_int_eq(natsOptions_SetUserInfo(o, "ingest", pw), NATS_OK);
    ck_assert_int_eq(natsConnection_Connect(&nc, o), NATS_OK);
    char subject[160];
    snprintf(subject, sizeof(subject), "sp.catalog.changed.%s.>", A.id);
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, subject), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);

    char *e = new_establishment(A.id, "Bus Mall", "Campinas");
    char path[160];
    snprintf(path, sizeof(path), "/v1/establishments/%s/deactivate", e);
    sptest_resp_free(MUST("POST", path, ADMIN, NULL, 200));
    char *lot = new_lot(e, "BUS", NULL);
    snprintf(path, sizeof(path), "/v1/establishments/%s", e);
    sptest_resp_free(MUST("DELETE", path, ADMIN, NULL, 204));

    static const struct {
        const char *kind, *what;
        int idx; /* 0: e, 1: lot */
    } want[] = {{"establishment", "created", 0},
                {"establishment", "status", 0},
                {"lot", "created", 1},
                {"lot", "deleted", 1},
                {"establishment", "deleted", 0}};
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++) {
        natsMsg *m = NULL;
        ck_assert_msg(natsSubscription_NextMsg(&m, sub, 5000) == NATS_OK, "no message %zu", k);
        Sp__V1__Changed *c = sp__v1__changed__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                                     (const uint8_t *)natsMsg_GetData(m));
        ck_assert_ptr_nonnull(c);
        char subj[160];
        snprintf(subj, sizeof(subj), "sp.catalog.changed.%s.%s", A.id, want[k].kind);
        ck_assert_str_eq(natsMsg_GetSubject(m), subj);
        ck_assert_str_eq(c->kind, want[k].kind);
        ck_assert_str_eq(c->what, want[k].what);
        ck_assert_str_eq(c->id, want[k].idx == 0 ? e : lot);
        ck_assert_str_eq(c->client_id, A.id);
        sp__v1__changed__free_unpacked(c, NULL);
        natsMsg_Destroy(m);
    }
    /* a client's status comes from tenancy's changes */
    natsSubscription *tsub = NULL;
    snprintf(subject, sizeof(subject), "sp.tenancy.changed.%s.client", A.id);
    ck_assert_int_eq(natsConnection_SubscribeSync(&tsub, nc, subject), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
    must_action(A.id, "suspend", "SUSPENDED");
    natsMsg *tm = NULL;
    ck_assert_int_eq(natsSubscription_NextMsg(&tm, tsub, 5000), NATS_OK);
    Sp__V1__Changed *tc = sp__v1__changed__unpack(NULL, (size_t)natsMsg_GetDataLength(tm),
                                                  (const uint8_t *)natsMsg_GetData(tm));
    ck_assert_ptr_nonnull(tc);
    ck_assert_str_eq(tc->id, A.id);
    ck_assert_str_eq(tc->what, "status");
    sp__v1__changed__free_unpacked(tc, NULL);
    natsMsg_Destroy(tm);
    natsSubscription_Destroy(tsub);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    free(lot);
    free(e);
}
END_TEST

/* ---- API keys ---------------------------------------------------------------------------- */

static sptest_proc *CATALOG, *GATEWAY;

/* A key of tenant A made by its manager: the whole creation answer (caller frees). */
static sptest_resp *manager_key(void)
{
    return MUST("POST", "/v1/api-keys", A.mgr.token, "{\"name\":\"Gate\"}", 201);
}

START_TEST(api_key_secret_is_shown_once)
{
    sptest_resp *r = manager_key();
    const char *secret = sptest_jstr(r, "secret"), *key_id = sptest_jstr(r, "keyId");
    ck_assert_ptr_nonnull(secret);
    ck_assert_ptr_nonnull(key_id);
    ck_assert_int_eq(strlen(secret), 43);
    ck_assert(matches("^[A-Za-z0-9_-]{16,64}$", key_id));
    char want[160];
    snprintf(want, sizeof(want), "%s.%s", key_id, secret);
    ck_assert_str_eq(sptest_jstr(r, "apiKey"), want);
    ck_assert_str_eq(sptest_jstr(r, "clientId"), A.id);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "enabled")));
    /* no list shows it, to anyone */
    const char *who[] = {ADMIN, A.mgr.token, A.op.token};
    for (size_t k = 0; k < 3; k++) {
        sptest_resp *l = MUST("GET", "/v1/api-keys?limit=500", who[k], NULL, 200);
        ck_assert_msg(strstr(l->body, secret) == NULL, "a list shows the secret: %s", l->body);
        ck_assert_msg(strstr(l->body, "\"secret\"") == NULL, "%s", l->body);
        ck_assert_int_ge(
            count_where(cJSON_GetObjectItemCaseSensitive(l->json, "items"), "keyId", key_id), 1);
        sptest_resp_free(l);
    }
    /* another tenant's list does not show the key */
    sptest_resp *l = MUST("GET", "/v1/api-keys?limit=500", B.mgr.token, NULL, 200);
    ck_assert_msg(strstr(l->body, key_id) == NULL, "%s", l->body);
    sptest_resp_free(l);
    /* an admin must say whose key it is */
    sptest_resp *bad = call("POST", "/v1/api-keys", ADMIN, "{\"name\":\"x\"}", NULL);
    assert_error(bad, 400, "validation_failed");
    ck_assert(names_field(bad, "clientId"));
    sptest_resp_free(bad);
    bad = call("POST", "/v1/api-keys", A.mgr.token, "{\"name\":\"\"}", NULL);
    assert_error(bad, 400, "validation_failed");
    sptest_resp_free(bad);
    /* the secret is in no log line of the services that saw it */
    ck_assert(!sptest_log_has(CATALOG, 0, secret));
    ck_assert(!sptest_log_has(GATEWAY, 0, secret));
    sptest_resp_free(r);
}
END_TEST

/* Decodes hex into out; asserts it fits. */
static size_t unhex(uint8_t *out, size_t cap, const char *hex)
{
    long n = spcrypto_hex_decode(out, cap, hex, strlen(hex));
    ck_assert_int_ge(n, 0);
    return (size_t)n;
}

/* From a copy of the tables alone, no usable secret: no column holds it (as text, hex or
 * base64url), only its SHA-256 and a copy that opens with SP_MASTER_KEY alone (which the
 * database never holds) and only for its own row. */
START_TEST(database_alone_never_yields_a_usable_secret)
{
    sptest_resp *r = manager_key();
    const char *secret = sptest_jstr(r, "secret"), *key_id = sptest_jstr(r, "keyId");
    PGconn *pg = PQconnectdb(E->db_url);
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    const char *params[] = {key_id};
    PGresult *res = PQexecParams(pg,
                                 "SELECT k::text, encode(secret_sha256, 'hex'),"
                                 " encode(secret_sealed, 'hex') FROM catalog.api_keys k"
                                 " WHERE key_id = $1",
                                 1, NULL, params, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    ck_assert_int_eq(PQntuples(res), 1);
    const char *row = PQgetvalue(res, 0, 0);
    uint8_t raw[32];
    char raw_hex[65];
    ck_assert_int_eq(spcrypto_b64url_decode(raw, sizeof(raw), secret, strlen(secret)), 32);
    spcrypto_hex(raw_hex, raw, sizeof(raw));
    char secret_hex[2 * 43 + 1];
    spcrypto_hex(secret_hex, secret, strlen(secret));
    ck_assert_msg(strstr(row, secret) == NULL, "the row holds the secret");
    ck_assert_msg(strstr(row, raw_hex) == NULL, "the row holds the secret's bytes");
    ck_assert_msg(strstr(row, secret_hex) == NULL, "the row holds the secret in hex");
    uint8_t digest[32], stored[32];
    spcrypto_sha256(digest, secret, strlen(secret));
    ck_assert_int_eq(unhex(stored, sizeof(stored), PQgetvalue(res, 0, 1)), 32);
    ck_assert_mem_eq(digest, stored, 32);
    uint8_t sealed[256], plain[256], master[32], other[32];
    size_t n = unhex(sealed, sizeof(sealed), PQgetvalue(res, 0, 2));
    unhex(master, sizeof(master), sptest_secret(E, "SP_MASTER_KEY"));
    ck_assert_int_eq(spcrypto_open(plain, master, sealed, n, key_id, strlen(key_id)), SP_OK);
    ck_assert_int_eq(n - SPCRYPTO_SEAL_OVERHEAD, strlen(secret));
    ck_assert_mem_eq(plain, secret, strlen(secret));
    memcpy(other, master, sizeof(other));
    other[0] ^= 1;
    ck_assert_int_ne(spcrypto_open(plain, other, sealed, n, key_id, strlen(key_id)), SP_OK);
    ck_assert_int_ne(spcrypto_open(plain, master, sealed, n, "spk_another", 11), SP_OK);
    PQclear(res);
    PQfinish(pg);
    sptest_resp_free(r);
}
END_TEST

/* Whether Redis holds key id 'member' in the revoked set, and the set's loaded mark. */
static bool redis_has(spredis *rd, const char *cmd, const char *key, const char *member)
{
    redisReply *rr = NULL;
    sp_status s = member != NULL ? spredis_cmd(&rr, rd, cmd, key, member, NULL)
                                 : spredis_cmd(&rr, rd, cmd, key, NULL);
    bool yes = s == SP_OK && rr != NULL && rr->type == REDIS_REPLY_INTEGER && rr->integer == 1;
    if (rr != NULL) freeReplyObject(rr);
    return yes;
}

START_TEST(revocation_is_in_redis_when_the_call_returns)
{
    sptest_resp *r = manager_key();
    char id[64], key_id[64], path[160];
    snprintf(id, sizeof(id), "%s", sptest_jstr(r, "id"));
    snprintf(key_id, sizeof(key_id), "%s", sptest_jstr(r, "keyId"));
    sptest_resp_free(r);
    spredis *rd = NULL;
    ck_assert_int_eq(spredis_create(&rd, E->redis_url, 2000), SP_OK);
    ck_assert(!redis_has(rd, "SISMEMBER", "sp:api-keys:revoked", key_id));
    snprintf(path, sizeof(path), "/v1/api-keys/%s/revoke", id);
    sptest_resp *no = call("POST", path, A.op.token, NULL, NULL);
    assert_error(no, 403, "forbidden");
    sptest_resp_free(no);
    no = call("POST", path, B.mgr.token, NULL, NULL);
    assert_error(no, 404, "not_found");
    sptest_resp_free(no);
    ck_assert(!redis_has(rd, "SISMEMBER", "sp:api-keys:revoked", key_id));
    sptest_resp_free(MUST("POST", path, A.mgr.token, NULL, 204));
    ck_assert(redis_has(rd, "SISMEMBER", "sp:api-keys:revoked", key_id));
    sptest_resp_free(MUST("POST", path, A.mgr.token, "{}", 204)); /* again: nothing changes */
    sptest_resp *l = MUST("GET", "/v1/api-keys?limit=500", A.op.token, NULL, 200);
    const cJSON *it;
    bool seen = false;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(l->json, "items"))
    {
        if (strcmp(item_str(it, "id"), id) != 0) continue;
        seen = true;
        ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(it, "enabled")));
        ck_assert(matches(RFC3339_MS, item_str(it, "revokedAt")));
    }
    ck_assert(seen);
    sptest_resp_free(l);
    /* a revoked key binds no camera */
    char body[256];
    snprintf(body, sizeof(body), "{\"cameraCode\":\"CAM-R\",\"apiKeyId\":\"%s\"}", id);
    sptest_resp *c = call("POST", "/v1/cameras", A.mgr.token, body, NULL);
    assert_error(c, 400, "validation_failed");
    ck_assert(names_field(c, "apiKeyId"));
    sptest_resp_free(c);
    /* the set lost (Redis restarted without its data): it comes back from PostgreSQL */
    ck_assert_int_eq(
        spredis_cmd(NULL, rd, "DEL", "sp:api-keys:revoked", "sp:api-keys:revoked:loaded", NULL),
        SP_OK);
    bool back = false;
    for (int i = 0; i < 50 && !back; i++) {
        back = redis_has(rd, "SISMEMBER", "sp:api-keys:revoked", key_id) &&
               redis_has(rd, "EXISTS", "sp:api-keys:revoked:loaded", NULL);
        if (!back) usleep(100 * 1000);
    }
    ck_assert_msg(back, "the revoked set was not rewritten");
    spredis_destroy(rd);
    /* the audit log has the creation and the revocation, without the secret */
    bool audited = false;
    for (int i = 0; i < 100 && !audited; i++) {
        sptest_resp *a = MUST("GET", "/v1/audit?action=api_key.revoked", A.mgr.token, NULL, 200);
        audited = strstr(a->body, id) != NULL;
        sptest_resp_free(a);
        if (!audited) usleep(100 * 1000);
    }
    ck_assert(audited);
}
END_TEST

/* ---- cameras ------------------------------------------------------------------------------ */

START_TEST(cameras_bind_keys_and_lots_of_their_client_only)
{
    site s = new_site();
    char body[512], path[160];
    snprintf(path, sizeof(path), "/v1/cameras/%s", s.cam);
    sptest_resp *r = MUST("GET", path, A.op.token, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "state"), "ASSIGNED");
    ck_assert_str_eq(sptest_jstr(r, "lotId"), s.lot);
    ck_assert_str_eq(sptest_jstr(r, "apiKeyId"), s.key);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "lastSeenAt")));
    sptest_resp_free(r);
    /* the code is taken in the client */
    snprintf(body, sizeof(body), "{\"cameraCode\":\"%s\",\"apiKeyId\":\"%s\"}", s.cam_code, s.key);
    r = call("POST", "/v1/cameras", A.mgr.token, body, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    /* another tenant's key or lot is as good as none */
    sptest_resp *kb = MUST("POST", "/v1/api-keys", B.mgr.token, "{\"name\":\"B\"}", 201);
    snprintf(body, sizeof(body), "{\"cameraCode\":\"CAM-2\",\"apiKeyId\":\"%s\"}",
             sptest_jstr(kb, "id"));
    r = call("POST", "/v1/cameras", A.mgr.token, body, NULL);
    assert_error(r, 400, "validation_failed");
    ck_assert(names_field(r, "apiKeyId"));
    sptest_resp_free(r);
    snprintf(body, sizeof(body), "{\"cameraCode\":\"CAM-2\",\"apiKeyId\":\"%s\",\"lotId\":\"%s\"}",
             sptest_jstr(kb, "id"), s.lot);
    r = call("POST", "/v1/cameras", B.mgr.token, body, NULL);
    assert_error(r, 400, "validation_failed");
    ck_assert(names_field(r, "lotId"));
    sptest_resp_free(r);
    sptest_resp_free(kb);
    const char *bad[] = {"{\"cameraCode\":\"\",\"apiKeyId\":\"%s\"}",
                         "{\"cameraCode\":\"CAM 3\",\"apiKeyId\":\"%s\"}",
                         "{\"cameraCode\":\"CAM-3\"}",
                         "{\"cameraCode\":\"CAM-3\",\"apiKeyId\":\"%s\","
                         "\"state\":\"ONLINE\"}"};
    for (size_t k = 0; k < 4; k++) {
        snprintf(body, sizeof(body), bad[k], s.key);
        r = call("POST", "/v1/cameras", A.mgr.token, body, NULL);
        assert_error(r, 400, "validation_failed");
        sptest_resp_free(r);
    }
    /* unassign, disable, assign again: audited */
    r = MUST("PATCH", path, A.mgr.token, "{\"lotId\":null,\"enabled\":false}", 200);
    ck_assert_str_eq(sptest_jstr(r, "state"), "UNASSIGNED");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "lotId")));
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r->json, "enabled")));
    sptest_resp_free(r);
    r = call("PATCH", path, A.mgr.token, "{\"enabled\":null}", NULL);
    assert_error(r, 400, "validation_failed");
    sptest_resp_free(r);
    snprintf(body, sizeof(body), "{\"lotId\":\"%s\"}", s.lot);
    r = MUST("PATCH", path, A.mgr.token, body, 200);
    ck_assert_str_eq(sptest_jstr(r, "state"), "ASSIGNED");
    sptest_resp_free(r);
    bool audited = false;
    for (int i = 0; i < 100 && !audited; i++) {
        sptest_resp *a = MUST("GET", "/v1/audit?action=camera.unassigned", A.mgr.token, NULL, 200);
        audited = strstr(a->body, s.cam) != NULL;
        sptest_resp_free(a);
        if (!audited) usleep(100 * 1000);
    }
    ck_assert(audited);
    /* the lot deleted: the camera is unassigned; the camera deleted: its code is free */
    char lp[160];
    snprintf(lp, sizeof(lp), "/v1/lots/%s", s.lot);
    sptest_resp_free(MUST("DELETE", lp, ADMIN, NULL, 204));
    r = MUST("GET", path, A.mgr.token, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "state"), "UNASSIGNED");
    sptest_resp_free(r);
    sptest_resp_free(MUST("DELETE", path, A.mgr.token, NULL, 204));
    r = call("GET", path, ADMIN, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    snprintf(body, sizeof(body), "{\"cameraCode\":\"%s\",\"apiKeyId\":\"%s\"}", s.cam_code, s.key);
    sptest_resp_free(MUST("POST", "/v1/cameras", A.mgr.token, body, 201));
    site_free(&s);
}
END_TEST

static Suite *catalog_resources_suite(void)
{
    Suite *s = suite_create("catalog_resources");
    TCase *tc = tcase_create("sites");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, role_by_tenant_matrix, 0, (int)NMATRIX);
    tcase_add_test(tc, lists_never_show_another_tenants_rows);
    tcase_add_test(tc, establishment_is_created_active_with_its_fields);
    tcase_add_test(tc, bad_establishments_are_400_naming_the_field_and_make_nothing);
    tcase_add_test(tc, establishment_patch_changes_given_fields_and_null_clears);
    tcase_add_test(tc, establishment_status_changes_only_from_the_right_state);
    tcase_add_test(tc, establishment_delete_takes_lots_and_slots_and_frees_codes);
    tcase_add_test(tc, lot_codes_are_unique_per_client_with_defaults_and_ranges);
    tcase_add_test(tc, one_slot_is_answered_as_the_slot_a_batch_as_items);
    tcase_add_test(tc, slot_batches_are_all_or_nothing);
    tcase_add_test(tc, a_lot_made_with_slots_is_all_or_nothing);
    tcase_add_test(tc, slot_patch_and_delete);
    tcase_add_test(tc, ids_that_are_not_uuids_or_unknown_are_404);
    tcase_add_test(tc, changes_are_published_on_the_bus);
    tcase_add_test(tc, api_key_secret_is_shown_once);
    tcase_add_test(tc, database_alone_never_yields_a_usable_secret);
    tcase_add_test(tc, revocation_is_in_redis_when_the_call_returns);
    tcase_add_test(tc, cameras_bind_keys_and_lots_of_their_client_only);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    E = sptest_start("catalog_resources", SPTEST_ALL);
    sptest_start_service(E, "auth", NULL);
    sptest_start_service(E, "tenancy", NULL);
    CATALOG = sptest_start_service(E, "catalog", NULL);
    static const char *const gw_env[] = {"SP_BUS_TIMEOUT_MS=15000", NULL};
    GATEWAY = sptest_start_service(E, "gateway", gw_env);

    return run_suite_as_admin(catalog_resources_suite(), NULL);
}
