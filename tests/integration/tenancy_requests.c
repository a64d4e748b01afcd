/* tenancy_requests.c -- the requests workflow through the gateway, tenancy and catalog on
 * real NATS, PostgreSQL and Redis: a client asks (the payload checked by catalog at once),
 * an admin decides once; approving makes the resource ACTIVE and answers it, a creation
 * catalog refuses leaves the request OPEN and nothing made; the role x tenant matrix of the
 * request routes; and last, catalog killed (-9) after making the resource and before
 * answering: the retried approval finds it, exactly one exists and the request is
 * APPROVED. */
#include "tenancy_fixture.h"

static tenant A, B;
static account APP;
static sptest_proc *CATALOG;

static void setup(void)
{
    A = new_tenant("reqA", true, true);
    B = new_tenant("reqB", true, false);
    APP = new_app_user("reqapp");
}

static void teardown(void)
{
    tenant_free(&A);
    tenant_free(&B);
    account_free(&APP);
}

/* A request of 'who' (201 asserted): its id, malloc'd. */
static char *ask_(int line, const char *token, const char *type, const char *payload)
{
    char body[8192];
    snprintf(body, sizeof(body), "{\"type\":\"%s\",\"payload\":%s}", type, payload);
    sptest_resp *r = must_(line, "POST", "/v1/requests", token, body, 201);
    ck_assert_str_eq(sptest_jstr(r, "status"), "OPEN");
    ck_assert_str_eq(sptest_jstr(r, "type"), type);
    char *id = strdup(sptest_jstr(r, "id"));
    sptest_resp_free(r);
    return id;
}
#define ASK(t, ty, p) ask_(__LINE__, t, ty, p)

/* POST /v1/requests/{id}/<action> as 'token'; the answer (caller frees). */
static sptest_resp *decide(const char *id, const char *action, const char *token, const char *body)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/requests/%s/%s", id, action);
    return call("POST", path, token, body, NULL);
}

/* The id of a live establishment of client 'client' made by the admin, malloc'd. */
static char *establishment_of(const char *client, const char *name)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"clientId\":\"%s\",\"name\":\"%s\"}", client, name);
    sptest_resp *r = MUST("POST", "/v1/establishments", ADMIN, body, 201);
    char *id = strdup(sptest_jstr(r, "id"));
    sptest_resp_free(r);
    return id;
}

/* How many of client A's establishments have 'name' (the admin's view). */
static int establishments_named(const char *name)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/establishments?clientId=%s&limit=500", A.id);
    sptest_resp *r = MUST("GET", path, ADMIN, NULL, 200);
    int n = count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "name", name);
    sptest_resp_free(r);
    return n;
}

START_TEST(an_approved_establishment_request_makes_it_active)
{
    char *id = ASK(A.op.token, "NEW_ESTABLISHMENT",
                   "{\"name\":\"Asked Mall\",\"storeType\":\"supermarket\",\"city\":\"Santos\"}");
    ck_assert_int_eq(establishments_named("Asked Mall"), 0);
    char path[160];
    snprintf(path, sizeof(path), "/v1/requests/%s", id);
    sptest_resp *r = MUST("GET", path, A.mgr.token, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "payload.name"), "Asked Mall");
    ck_assert_str_eq(sptest_jstr(r, "clientId"), A.id);
    ck_assert_str_eq(sptest_jstr(r, "createdBy"), A.op.id);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "result")));
    sptest_resp_free(r);
    r = decide(id, "approve", ADMIN, "{\"reason\":\"welcome\"}");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "status"), "APPROVED");
    ck_assert_str_eq(sptest_jstr(r, "reason"), "welcome");
    ck_assert(matches(RFC3339_MS, sptest_jstr(r, "decidedAt")));
    ck_assert_str_eq(sptest_jstr(r, "result.status"), "ACTIVE");
    ck_assert_str_eq(sptest_jstr(r, "result.clientId"), A.id);
    ck_assert_str_eq(sptest_jstr(r, "result.storeType"), "supermarket");
    char est[64];
    snprintf(est, sizeof(est), "%s", sptest_jstr(r, "result.id"));
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/establishments/%s", est);
    sptest_resp_free(MUST("GET", path, A.op.token, NULL, 200));
    ck_assert_int_eq(establishments_named("Asked Mall"), 1);
    /* decided once */
    r = decide(id, "approve", ADMIN, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    r = decide(id, "reject", ADMIN, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    ck_assert_int_eq(establishments_named("Asked Mall"), 1);
    /* the decision is audited */
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        r = MUST("GET", "/v1/audit?action=request.approved", A.mgr.token, NULL, 200);
        seen = strstr(r->body, id) != NULL;
        sptest_resp_free(r);
        if (!seen) usleep(100 * 1000);
    }
    ck_assert(seen);
    free(id);
}
END_TEST

static const struct {
    const char *type, *payload, *field;
} bad_requests[] = {
    {"NEW_ESTABLISHMENT", "{\"name\":\"\"}", "payload.name"},
    {"NEW_ESTABLISHMENT", "{\"name\":\"X\",\"storeType\":\"castle\"}", "payload.storeType"},
    {"NEW_ESTABLISHMENT", "{\"name\":\"X\",\"lat\":100}", "payload.lat"},
    {"NEW_ESTABLISHMENT", "{\"name\":\"X\",\"colour\":\"red\"}", "payload.colour"},
    {"NEW_ESTABLISHMENT", "{\"name\":\"X\",\"clientId\":\"%s\"}", "payload.clientId"},
    {"NEW_ESTABLISHMENT", "[1]", "payload"},
    {"NEW_LOT", "{\"lotCode\":\"P9\"}", "payload.establishmentId"},
    {"NEW_LOT", "{\"establishmentId\":\"%s\",\"lotCode\":\"P 9\"}", "payload.lotCode"},
    {"NEW_LOT", "{\"establishmentId\":\"%s\",\"lotCode\":\"P9\",\"slots\":[{\"slotCode\":\"A1\"}]}",
     "payload.slots[0].slotType"},
    {"NEW_LOT", "{\"establishmentId\":\"00000000-0000-4000-8000-000000000000\",\"lotCode\":\"P9\"}",
     "payload.establishmentId"},
    {"NEW_HARDWARE", "{\"cameraCode\":\"CAM-9\"}", "payload.apiKeyId"},
    {"NEW_HARDWARE", "{\"cameraCode\":\"CAM 9\",\"apiKeyId\":\"%s\"}", "payload.cameraCode"},
    {"NEW_SPACESHIP", "{}", "type"},
};

/* Every bad payload is 400 naming its field, now, and makes no request. */
START_TEST(a_bad_payload_is_400_when_asked)
{
    char *est = establishment_of(A.id, "Bad Payload Mall");
    for (size_t k = 0; k < sizeof(bad_requests) / sizeof(bad_requests[0]); k++) {
        char payload[512], body[1024];
        snprintf(payload, sizeof(payload), bad_requests[k].payload,
                 strstr(bad_requests[k].payload, "clientId") ? A.id : est);
        snprintf(body, sizeof(body), "{\"type\":\"%s\",\"payload\":%s}", bad_requests[k].type,
                 payload);
        sptest_resp *r = call("POST", "/v1/requests", A.mgr.token, body, NULL);
        assert_error(r, 400, "validation_failed");
        ck_assert_msg(names_field(r, bad_requests[k].field), "%s: %s not named: %s", body,
                      bad_requests[k].field, r->body);
        sptest_resp_free(r);
    }
    /* another tenant's establishment is as good as none */
    char *eb = establishment_of(B.id, "Other Mall");
    char body[512];
    snprintf(body, sizeof(body),
             "{\"type\":\"NEW_LOT\",\"payload\":{\"establishmentId\":\"%s\",\"lotCode\":\"P1\"}}",
             eb);
    sptest_resp *r = call("POST", "/v1/requests", A.mgr.token, body, NULL);
    assert_error(r, 400, "validation_failed");
    ck_assert(names_field(r, "payload.establishmentId"));
    sptest_resp_free(r);
    r = MUST("GET", "/v1/requests?limit=500", A.mgr.token, NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")), 0);
    sptest_resp_free(r);
    free(eb);
    free(est);
}
END_TEST

/* A lot request with slots approved: the lot and its slots; a lotCode taken since: the
 * approval is that 409, the request stays OPEN and nothing more exists. */
START_TEST(a_lot_request_is_made_with_its_slots_or_not_at_all)
{
    char *est = establishment_of(A.id, "Lot Mall");
    char payload[512];
    snprintf(payload, sizeof(payload),
             "{\"establishmentId\":\"%s\",\"lotCode\":\"RQ1\",\"debounceMs\":1000,\"slots\":[{"
             "\"slotCode\":\"A1\",\"slotType\":\"regular\"},{\"slotCode\":\"A2\",\"slotType\":"
             "\"ev\"}]}",
             est);
    char *ok = ASK(A.mgr.token, "NEW_LOT", payload);
    snprintf(payload, sizeof(payload), "{\"establishmentId\":\"%s\",\"lotCode\":\"RQ2\"}", est);
    char *taken = ASK(A.mgr.token, "NEW_LOT", payload);
    sptest_resp *r = decide(ok, "approve", ADMIN, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(r->json, "result");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(result, "slotCount")->valueint, 2);
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(result, "debounceMs")->valueint, 1000);
    ck_assert_str_eq(sptest_jstr(r, "result.establishmentId"), est);
    sptest_resp_free(r);
    /* RQ2 made directly meanwhile */
    char path[160];
    snprintf(path, sizeof(path), "/v1/establishments/%s/lots", est);
    sptest_resp_free(MUST("POST", path, ADMIN, "{\"lotCode\":\"RQ2\"}", 201));
    r = decide(taken, "approve", ADMIN, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/requests/%s", taken);
    r = MUST("GET", path, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "status"), "OPEN");
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/establishments/%s/lots", est);
    r = MUST("GET", path, ADMIN, NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")), 2);
    sptest_resp_free(r);
    /* it can still be rejected, with a reason */
    r = decide(taken, "reject", ADMIN, "{\"reason\":\"code taken\"}");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "status"), "REJECTED");
    ck_assert_str_eq(sptest_jstr(r, "reason"), "code taken");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "result")));
    sptest_resp_free(r);
    r = MUST("GET", "/v1/requests?status=REJECTED&limit=500", A.op.token, NULL, 200);
    ck_assert_int_eq(count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "id", taken),
                     1);
    sptest_resp_free(r);
    free(ok);
    free(taken);
    free(est);
}
END_TEST

START_TEST(a_hardware_request_makes_the_camera)
{
    sptest_resp *k = MUST("POST", "/v1/api-keys", A.mgr.token, "{\"name\":\"Gate\"}", 201);
    char payload[512];
    snprintf(payload, sizeof(payload), "{\"cameraCode\":\"CAM-RQ\",\"apiKeyId\":\"%s\"}",
             sptest_jstr(k, "id"));
    char *id = ASK(A.op.token, "NEW_HARDWARE", payload);
    sptest_resp *r = decide(id, "approve", ADMIN, "{}");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "result.cameraCode"), "CAM-RQ");
    ck_assert_str_eq(sptest_jstr(r, "result.apiKeyId"), sptest_jstr(k, "id"));
    ck_assert_str_eq(sptest_jstr(r, "result.state"), "UNASSIGNED");
    sptest_resp_free(r);
    sptest_resp_free(k);
    free(id);
}
END_TEST

/* The request routes: each role's status; where refused, nothing decided. */
/* clang-format off */
enum { R_ADMIN, R_MGR, R_OP, R_OTHER, R_APP, R_ANON, NROLES };
static const struct {
    const char *method, *path; /* %s: an OPEN request of tenant A */
    const char *body;
    long want[NROLES];
} matrix[] = {
    /*                                                                admin mgr  op   other app  anon */
    {"POST", "/v1/requests", "{\"type\":\"NEW_ESTABLISHMENT\",\"payload\":{\"name\":\"M\"}}",
                                                                     {403, 201, 201, 201, 403, 401}},
    {"GET", "/v1/requests", NULL,                                     {200, 200, 200, 200, 403, 401}},
    {"GET", "/v1/requests/%s", NULL,                                  {200, 200, 200, 404, 403, 401}},
    {"POST", "/v1/requests/%s/approve", NULL,                         {200, 403, 403, 403, 403, 401}},
    {"POST", "/v1/requests/%s/reject", "{\"reason\":\"no\"}",          {200, 403, 403, 403, 403, 401}},
};
/* clang-format on */

START_TEST(request_routes_by_role_and_tenant)
{
    const char *tokens[NROLES] = {ADMIN, A.mgr.token, A.op.token, B.mgr.token, APP.token, NULL};
    for (int role = 0; role < NROLES; role++) {
        char name[64], payload[128], path[160];
        snprintf(name, sizeof(name), "Matrix %d %d", _i, role);
        snprintf(payload, sizeof(payload), "{\"name\":\"%s\"}", name);
        char *id = ASK(A.mgr.token, "NEW_ESTABLISHMENT", payload);
        snprintf(path, sizeof(path), matrix[_i].path, id);
        sptest_resp *r = call(matrix[_i].method, path, tokens[role], matrix[_i].body, NULL);
        ck_assert_msg(r->status == matrix[_i].want[role], "%s %s as role %d: want %ld, got %ld %s",
                      matrix[_i].method, matrix[_i].path, role, matrix[_i].want[role], r->status,
                      r->body);
        sptest_resp_free(r);
        snprintf(path, sizeof(path), "/v1/requests/%s", id);
        r = MUST("GET", path, ADMIN, NULL, 200);
        bool decided = strcmp(sptest_jstr(r, "status"), "OPEN") != 0;
        ck_assert_msg(decided == (matrix[_i].want[role] == 200 && strstr(matrix[_i].path, "/%s/")),
                      "role %d: %s", role, r->body);
        ck_assert_int_eq(establishments_named(name), strstr(matrix[_i].path, "approve") != NULL &&
                                                         matrix[_i].want[role] == 200);
        sptest_resp_free(r);
        free(id);
    }
    /* lists never show another tenant's requests */
    sptest_resp *r = MUST("GET", "/v1/requests?limit=500", B.mgr.token, NULL, 200);
    ck_assert_int_eq(
        count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "clientId", A.id), 0);
    sptest_resp_free(r);
    char path[160];
    snprintf(path, sizeof(path), "/v1/requests?clientId=%s&limit=500", A.id);
    r = MUST("GET", path, B.mgr.token, NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")), 0);
    sptest_resp_free(r);
    r = call("GET", "/v1/requests?status=DONE", ADMIN, NULL, NULL);
    assert_error(r, 400, "validation_failed");
    sptest_resp_free(r);
}
END_TEST

/* Catalog dies (SIGKILL, through its fault hook) after committing the establishment and
 * before answering: the approval is 503 and the request OPEN; retried once catalog is
 * back, it finds the establishment made with the request's id: exactly one exists and the
 * request is APPROVED with it. Last: it replaces the suite's catalog. */
START_TEST(approval_survives_catalog_killed_between_commit_and_answer)
{
    char *id = ASK(A.mgr.token, "NEW_ESTABLISHMENT", "{\"name\":\"Crash Mall\"}");
    sptest_kill(CATALOG, SIGTERM);
    static const char *const fault[] = {"SP_FAULT_KILL_AFTER_COMMIT=CreateEstablishmentRequest",
                                        NULL};
    sptest_proc *doomed = sptest_start_service(E, "catalog", fault);
    sptest_resp *r = decide(id, "approve", ADMIN, NULL);
    assert_error(r, 503, "unavailable");
    sptest_resp_free(r);
    sptest_kill(doomed, SIGKILL); /* reaped: it killed itself */
    char path[160];
    snprintf(path, sizeof(path), "/v1/requests/%s", id);
    r = MUST("GET", path, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "status"), "OPEN");
    sptest_resp_free(r);
    CATALOG = sptest_start_service(E, "catalog", NULL);
    ck_assert_int_eq(establishments_named("Crash Mall"), 1); /* made before the crash */
    r = decide(id, "approve", ADMIN, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "status"), "APPROVED");
    ck_assert_str_eq(sptest_jstr(r, "result.name"), "Crash Mall");
    sptest_resp_free(r);
    ck_assert_int_eq(establishments_named("Crash Mall"), 1);
    free(id);
}
END_TEST

/* Reads KEY=VALUE lines of 'path' into a JSON object (caller deletes). */
static cJSON *read_env_file(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    cJSON *o = cJSON_CreateObject();
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *eq = strchr(line, '=');
        if (line[0] == '#' || eq == NULL) continue;
        *eq = '\0';
        cJSON_AddStringToObject(o, line, eq + 1);
    }
    fclose(f);
    return o;
}

/* spctl demo-seed: the demo client ACTIVE, Demo Mall in São Paulo, lot P1 with 40 slots,
 * camera CAM-DEMO-01 assigned to it with a working key; seeding again makes no second
 * copy (same ids) and gives the camera a new key. */
START_TEST(demo_seed_makes_the_demo_once)
{
    char path[600], p2[600];
    snprintf(path, sizeof(path), "%s/demo-1.env", E->dir);
    snprintf(p2, sizeof(p2), "%s/demo-2.env", E->dir);
    const char *const first[] = {"demo-seed", "--out", path, NULL};
    const char *const second[] = {"demo-seed", "--out", p2, NULL};
    ck_assert_int_eq(run_spctl(first), 0);
    ck_assert_int_eq(run_spctl(second), 0);
    cJSON *a = read_env_file(path), *b = read_env_file(p2);
    const char *same[] = {"SP_DEMO_CLIENT_ID", "SP_DEMO_ESTABLISHMENT_ID", "SP_DEMO_LOT_ID",
                          "SP_DEMO_CAMERA_ID"};
    for (size_t k = 0; k < 4; k++)
        ck_assert_str_eq(item_str(a, same[k]), item_str(b, same[k]));
    ck_assert_str_ne(item_str(a, "SP_DEMO_API_KEY"), item_str(b, "SP_DEMO_API_KEY"));
    char url[256];
    snprintf(url, sizeof(url), "/v1/clients/%s", item_str(b, "SP_DEMO_CLIENT_ID"));
    sptest_resp *r = MUST("GET", url, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Demo Parking");
    ck_assert_str_eq(sptest_jstr(r, "status"), "ACTIVE");
    sptest_resp_free(r);
    snprintf(url, sizeof(url), "/v1/establishments/%s", item_str(b, "SP_DEMO_ESTABLISHMENT_ID"));
    r = MUST("GET", url, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Demo Mall");
    ck_assert_str_eq(sptest_jstr(r, "city"), "São Paulo");
    sptest_resp_free(r);
    snprintf(url, sizeof(url), "/v1/lots/%s", item_str(b, "SP_DEMO_LOT_ID"));
    r = MUST("GET", url, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "lotCode"), "P1");
    ck_assert_int_eq(cJSON_GetObjectItemCaseSensitive(r->json, "slotCount")->valueint, 40);
    sptest_resp_free(r);
    snprintf(url, sizeof(url), "/v1/cameras/%s", item_str(b, "SP_DEMO_CAMERA_ID"));
    r = MUST("GET", url, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "cameraCode"), "CAM-DEMO-01");
    ck_assert_str_eq(sptest_jstr(r, "lotId"), item_str(b, "SP_DEMO_LOT_ID"));
    ck_assert_str_eq(sptest_jstr(r, "apiKeyId"), item_str(b, "SP_DEMO_API_KEY_ID"));
    sptest_resp_free(r);
    snprintf(url, sizeof(url), "/v1/establishments?clientId=%s", item_str(b, "SP_DEMO_CLIENT_ID"));
    r = MUST("GET", url, ADMIN, NULL, 200);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")), 1);
    sptest_resp_free(r);
    cJSON_Delete(a);
    cJSON_Delete(b);
}
END_TEST

static Suite *tenancy_requests_suite(void)
{
    Suite *s = suite_create("tenancy_requests");
    TCase *tc = tcase_create("requests");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, an_approved_establishment_request_makes_it_active);
    tcase_add_test(tc, a_bad_payload_is_400_when_asked);
    tcase_add_test(tc, a_lot_request_is_made_with_its_slots_or_not_at_all);
    tcase_add_test(tc, a_hardware_request_makes_the_camera);
    tcase_add_loop_test(tc, request_routes_by_role_and_tenant, 0,
                        (int)(sizeof(matrix) / sizeof(matrix[0])));
    tcase_add_test(tc, demo_seed_makes_the_demo_once);
    tcase_add_test(tc, approval_survives_catalog_killed_between_commit_and_answer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    E = sptest_start("tenancy_requests", SPTEST_ALL);
    sptest_start_service(E, "auth", NULL);
    sptest_start_service(E, "tenancy", NULL);
    CATALOG = sptest_start_service(E, "catalog", NULL);
    static const char *const gw_env[] = {"SP_BUS_TIMEOUT_MS=15000", NULL};
    sptest_start_service(E, "gateway", gw_env);

    return run_suite_as_admin(tenancy_requests_suite(), NULL);
}
