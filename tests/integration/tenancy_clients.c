/* tenancy_clients.c -- end-to-end test of the clients (tenants) over HTTP through the
 * gateway to the tenancy and auth services, on real NATS, PostgreSQL and Redis: every
 * client route as each caller (admin, the client's manager and operator, another client's
 * manager, an app user, no token), with nothing changed where a call is refused; every
 * transition of PENDING -> ACTIVE -> SUSPENDED -> ACTIVE, valid and invalid; the same
 * X-Request-Id answering the same client; lists, filters and cursors; 403 before 400. */
#include <check.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spcrypto.h"
#include "sptest.h"

#include "tenancy_fixture.h"
/* ---- create ---------------------------------------------------------------------------------- */

START_TEST(create_answers_a_pending_client)
{
    char name[128];
    unique_name(name, sizeof(name), "new");
    sptest_resp *r = create_client(name, "12.345.678/0001-90", NULL, NULL);
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_int_eq(count_members(r->json), 6);
    ck_assert(spcrypto_uuid_valid(sptest_jstr(r, "id")));
    ck_assert_str_eq(sptest_jstr(r, "name"), name);
    ck_assert_str_eq(sptest_jstr(r, "document"), "12.345.678/0001-90");
    ck_assert_str_eq(sptest_jstr(r, "status"), "PENDING");
    ck_assert_msg(matches(RFC3339_MS, sptest_jstr(r, "createdAt")), "%s", r->body);
    ck_assert_msg(matches(RFC3339_MS, sptest_jstr(r, "updatedAt")), "%s", r->body);

    sptest_resp *g = admin_get(sptest_jstr(r, "id"));
    ck_assert_str_eq(sptest_jstr(g, "id"), sptest_jstr(r, "id"));
    ck_assert_str_eq(sptest_jstr(g, "name"), name);
    ck_assert_str_eq(sptest_jstr(g, "document"), "12.345.678/0001-90");
    ck_assert_str_eq(sptest_jstr(g, "status"), "PENDING");
    ck_assert_str_eq(sptest_jstr(g, "createdAt"), sptest_jstr(r, "createdAt"));
    sptest_resp_free(g);
    sptest_resp_free(r);

    /* without a document: null */
    unique_name(name, sizeof(name), "nodoc");
    r = create_client(name, NULL, NULL, NULL);
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "document")));
    sptest_resp_free(r);
}
END_TEST

START_TEST(create_with_admin_makes_a_manager_who_logs_in)
{
    char name[128], email[128];
    unique_name(name, sizeof(name), "withadm");
    sptest_unique_email(email, sizeof(email), "first-mgr");
    char *id = must_client(name, email);
    account m = must_login(email);
    sptest_resp *r = call("GET", "/v1/me", m.token, NULL, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "role"), "client_admin");
    ck_assert_str_eq(sptest_jstr(r, "clientId"), id);
    ck_assert_str_eq(sptest_jstr(r, "clientRole"), "client_manager");
    ck_assert_str_eq(sptest_jstr(r, "email"), email);
    sptest_resp_free(r);
    account_free(&m);
    free(id);
}
END_TEST

/* Anyone but an admin: 403 (401 without a token), whatever the body; nothing created. */
START_TEST(create_refuses_everyone_but_the_admin)
{
    tenant t = new_tenant("create-403", true, true);
    account app = new_app_user("create-403-app");
    char name[128], email[128];
    unique_name(name, sizeof(name), "refused");
    sptest_unique_email(email, sizeof(email), "refused-mgr");
    char *good = client_body(name, NULL, email);
    const char *bodies[] = {good, "{not json", "{\"name\":\"\",\"status\":\"ACTIVE\"}", "[]"};

    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        /* 403 beats 400: the role may never use this route */
        EXPECT("POST", "/v1/clients", app.token, bodies[i], 403);
        EXPECT("POST", "/v1/clients", t.mgr.token, bodies[i], 403);
        EXPECT("POST", "/v1/clients", t.op.token, bodies[i], 403);
        EXPECT("POST", "/v1/clients", NULL, bodies[i], 401);
    }
    sptest_resp *r = call("POST", "/v1/clients", app.token, "{not json", NULL);
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);

    cJSON *all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "name", name), 0);
    cJSON_Delete(all);
    /* nor its manager: the email is free */
    char *b = sptest_json_obj("name", "Later", "email", email, "password", PW, NULL);
    EXPECT("POST", "/v1/auth/register", NULL, b, 201);
    free(b);
    free(good);
    account_free(&app);
    tenant_free(&t);
}
END_TEST

START_TEST(create_checks_its_fields_and_creates_nothing)
{
    char name[128], long_name[122], long_doc[34], email[128], body[1024];
    unique_name(name, sizeof(name), "bad");
    memset(long_name, 'n', 121);
    long_name[121] = '\0';
    memset(long_doc, '1', 33);
    long_doc[33] = '\0';
    sptest_unique_email(email, sizeof(email), "bad-mgr");
    struct {
        char body[512];
        const char *field;
    } rows[8];
    int n = 0;
    snprintf(rows[n].body, sizeof(rows[n].body), "{}");
    rows[n++].field = "name";
    snprintf(rows[n].body, sizeof(rows[n].body), "{\"name\":\"\"}");
    rows[n++].field = "name";
    snprintf(rows[n].body, sizeof(rows[n].body), "{\"name\":\"%s\"}", long_name);
    rows[n++].field = "name";
    snprintf(rows[n].body, sizeof(rows[n].body), "{\"name\":\"%s\",\"document\":\"%s\"}", name,
             long_doc);
    rows[n++].field = "document";
    snprintf(rows[n].body, sizeof(rows[n].body), "{\"name\":\"%s\",\"status\":\"ACTIVE\"}", name);
    rows[n++].field = NULL; /* unknown field: no mass assignment */
    snprintf(rows[n].body, sizeof(rows[n].body), "{\"name\":42}");
    rows[n++].field = "name";
    snprintf(rows[n].body, sizeof(rows[n].body),
             "{\"name\":\"%s\",\"admin\":{\"name\":\"M\",\"email\":\"%s\"}}", name, email);
    rows[n++].field = "admin.password";
    snprintf(rows[n].body, sizeof(rows[n].body),
             "{\"name\":\"%s\",\"admin\":{\"name\":\"M\",\"password\":\"%s\"}}", name, PW);
    rows[n++].field = "admin.email";

    for (int i = 0; i < n; i++) {
        sptest_resp *r = call("POST", "/v1/clients", ADMIN, rows[i].body, NULL);
        ck_assert_msg(r->status == 400, "%s: %ld %s", rows[i].body, r->status, r->body);
        ck_assert_str_eq(sptest_jstr(r, "error.code"), "validation_failed");
        if (rows[i].field != NULL) {
            char path[64];
            snprintf(path, sizeof(path), "error.fields.%s", rows[i].field);
            const cJSON *fields = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(r->json, "error"), "fields");
            ck_assert_msg(cJSON_GetObjectItemCaseSensitive(fields, rows[i].field) != NULL,
                          "%s: no %s in %s", rows[i].body, path, r->body);
        }
        sptest_resp_free(r);
    }
    cJSON *all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "name", name), 0);
    cJSON_Delete(all);
    snprintf(body, sizeof(body), "{\"name\":\"Later\",\"email\":\"%s\",\"password\":\"%s\"}", email,
             PW);
    EXPECT("POST", "/v1/auth/register", NULL, body, 201); /* no manager was made either */
}
END_TEST

START_TEST(create_with_a_registered_admin_email_conflicts)
{
    account app = new_app_user("taken");
    char name[128];
    unique_name(name, sizeof(name), "taken");
    sptest_resp *r = create_client(name, NULL, app.email, NULL);
    assert_error(r, 409, "conflict");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r->json, "error"), "fields");
    ck_assert_msg(cJSON_GetObjectItemCaseSensitive(fields, "admin.email") != NULL, "%s", r->body);
    sptest_resp_free(r);
    cJSON *all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "name", name), 0);
    cJSON_Delete(all);
    /* the existing account is untouched */
    r = call("GET", "/v1/me", app.token, NULL, NULL);
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user");
    sptest_resp_free(r);
    account_free(&app);
}
END_TEST

START_TEST(create_with_the_same_request_id_answers_the_same_client)
{
    char name[128], rid[64], email[128];
    unique_name(name, sizeof(name), "idem");
    spcrypto_uuid_v4(rid);

    sptest_resp *a = create_client(name, "doc-1", NULL, rid);
    ck_assert_msg(a->status == 201, "%ld %s", a->status, a->body);
    sptest_resp *b = create_client(name, "doc-1", NULL, rid);
    ck_assert_msg(b->status == 201, "%ld %s", b->status, b->body);
    ck_assert_str_eq(sptest_jstr(b, "id"), sptest_jstr(a, "id"));
    ck_assert_str_eq(sptest_jstr(b, "createdAt"), sptest_jstr(a, "createdAt"));
    ck_assert_str_eq(sptest_resp_header(b, "X-Request-Id"), rid);
    cJSON *all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "name", name), 1);
    cJSON_Delete(all);
    sptest_resp_free(a);
    sptest_resp_free(b);

    /* a new request id is a new creation */
    char rid2[64];
    spcrypto_uuid_v4(rid2);
    a = create_client(name, "doc-1", NULL, rid2);
    ck_assert_msg(a->status == 201, "%ld %s", a->status, a->body);
    all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "name", name), 2);
    cJSON_Delete(all);
    sptest_resp_free(a);

    /* with its manager: one client, one manager, who logs in */
    unique_name(name, sizeof(name), "idem-adm");
    sptest_unique_email(email, sizeof(email), "idem-mgr");
    spcrypto_uuid_v4(rid);
    a = create_client(name, NULL, email, rid);
    ck_assert_msg(a->status == 201, "%ld %s", a->status, a->body);
    b = create_client(name, NULL, email, rid);
    ck_assert_msg(b->status == 201, "%ld %s", b->status, b->body);
    ck_assert_str_eq(sptest_jstr(b, "id"), sptest_jstr(a, "id"));
    all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "name", name), 1);
    cJSON_Delete(all);
    char path[128];
    snprintf(path, sizeof(path), "/v1/clients/%s/members", sptest_jstr(a, "id"));
    sptest_resp *m = call("GET", path, ADMIN, NULL, NULL);
    ck_assert_msg(m->status == 200, "%ld %s", m->status, m->body);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(m->json, "items")), 1);
    sptest_resp_free(m);
    account mgr = must_login(email);
    account_free(&mgr);
    sptest_resp_free(a);
    sptest_resp_free(b);
}
END_TEST

/* ---- GET /v1/clients/{id} ------------------------------------------------------------------- */

START_TEST(get_as_each_caller)
{
    tenant t = new_tenant("get", false, true);
    tenant other = new_tenant("get-other", false, false);
    account app = new_app_user("get-app");
    char path[128];
    snprintf(path, sizeof(path), "/v1/clients/%s", t.id);

    const char *readers[] = {ADMIN, t.mgr.token, t.op.token};
    for (size_t i = 0; i < 3; i++) {
        sptest_resp *r = call("GET", path, readers[i], NULL, NULL);
        ck_assert_msg(r->status == 200, "reader %zu: %ld %s", i, r->status, r->body);
        ck_assert_int_eq(count_members(r->json), 6);
        ck_assert_str_eq(sptest_jstr(r, "id"), t.id);
        ck_assert_str_eq(sptest_jstr(r, "name"), t.name);
        ck_assert_str_eq(sptest_jstr(r, "status"), "PENDING");
        sptest_resp_free(r);
    }
    /* another tenant's client answers like a missing one */
    sptest_resp *r = call("GET", path, other.mgr.token, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    char missing[128], uuid[64];
    spcrypto_uuid_v4(uuid);
    snprintf(missing, sizeof(missing), "/v1/clients/%s", uuid);
    r = call("GET", missing, ADMIN, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    EXPECT("GET", missing, other.mgr.token, NULL, 404);
    EXPECT("GET", "/v1/clients/not-a-uuid", ADMIN, NULL, 404);
    r = call("GET", path, app.token, NULL, NULL);
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);
    r = call("GET", path, NULL, NULL, NULL);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    account_free(&app);
    tenant_free(&other);
    tenant_free(&t);
}
END_TEST

/* ---- PATCH /v1/clients/{id} ------------------------------------------------------------------ */

START_TEST(patch_as_each_caller)
{
    tenant t = new_tenant("patch", true, true);
    tenant other = new_tenant("patch-other", true, false);
    account app = new_app_user("patch-app");
    char path[128];
    snprintf(path, sizeof(path), "/v1/clients/%s", t.id);

    /* the admin and the client's manager may */
    sptest_resp *r = call("PATCH", path, ADMIN, "{\"name\":\"By Admin\"}", NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_int_eq(count_members(r->json), 6);
    ck_assert_str_eq(sptest_jstr(r, "name"), "By Admin");
    ck_assert_str_eq(sptest_jstr(r, "status"), "ACTIVE");
    sptest_resp_free(r);
    ASSERT_CLIENT_IS(t.id, "By Admin", "ACTIVE");
    r = call("PATCH", path, t.mgr.token, "{\"name\":\"By Manager\"}", NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), "By Manager");
    sptest_resp_free(r);
    ASSERT_CLIENT_IS(t.id, "By Manager", "ACTIVE");

    /* the operator reads only: 403, also before a bad field (403 beats 400) */
    r = call("PATCH", path, t.op.token, "{\"name\":\"By Operator\"}", NULL);
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);
    EXPECT("PATCH", path, t.op.token, "{\"name\":\"\"}", 403);
    /* another tenant's manager: 404, also before a bad field (404 beats 400) */
    r = call("PATCH", path, other.mgr.token, "{\"name\":\"By Other\"}", NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    EXPECT("PATCH", path, other.mgr.token, "{\"name\":\"\"}", 404);
    /* an app user may never: 403 whatever the body */
    EXPECT("PATCH", path, app.token, "{\"name\":\"By App\"}", 403);
    EXPECT("PATCH", path, app.token, "{not json", 403);
    EXPECT("PATCH", path, app.token, "{\"status\":\"SUSPENDED\"}", 403);
    EXPECT("PATCH", path, NULL, "{\"name\":\"Anonymous\"}", 401);
    ASSERT_CLIENT_IS(t.id, "By Manager", "ACTIVE");
    /* the other client is untouched too */
    ASSERT_CLIENT_IS(other.id, other.name, "ACTIVE");

    /* a missing client */
    char uuid[64], missing[128];
    spcrypto_uuid_v4(uuid);
    snprintf(missing, sizeof(missing), "/v1/clients/%s", uuid);
    EXPECT("PATCH", missing, ADMIN, "{\"name\":\"Ghost\"}", 404);
    account_free(&app);
    tenant_free(&other);
    tenant_free(&t);
}
END_TEST

START_TEST(patch_fields_absent_null_and_bad)
{
    char name[128], long_doc[34], body[128];
    unique_name(name, sizeof(name), "fields");
    sptest_resp *c = create_client(name, "doc-42", NULL, NULL);
    ck_assert_msg(c->status == 201, "%ld %s", c->status, c->body);
    char *id = strdup(sptest_jstr(c, "id"));
    sptest_resp_free(c);
    char path[128];
    snprintf(path, sizeof(path), "/v1/clients/%s", id);

    /* an absent field stays */
    sptest_resp *r = call("PATCH", path, ADMIN, "{\"name\":\"Renamed\"}", NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Renamed");
    ck_assert_str_eq(sptest_jstr(r, "document"), "doc-42");
    sptest_resp_free(r);
    r = call("PATCH", path, ADMIN, "{}", NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Renamed");
    ck_assert_str_eq(sptest_jstr(r, "document"), "doc-42");
    sptest_resp_free(r);
    r = call("PATCH", path, ADMIN, "{\"document\":\"doc-43\"}", NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Renamed");
    ck_assert_str_eq(sptest_jstr(r, "document"), "doc-43");
    sptest_resp_free(r);

    /* name is required: null is refused; bad values are refused */
    memset(long_doc, 'd', 33);
    long_doc[33] = '\0';
    snprintf(body, sizeof(body), "{\"document\":\"%s\"}", long_doc);
    struct {
        const char *body, *field;
    } bad[] = {{"{\"name\":null}", "name"},       {"{\"name\":\"\"}", "name"},
               {"{\"name\":7}", "name"},          {body, "document"},
               {"{\"status\":\"ACTIVE\"}", NULL}, {"{\"name\":\"Ok\",\"nickname\":\"x\"}", NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = call("PATCH", path, ADMIN, bad[i].body, NULL);
        ck_assert_msg(r->status == 400, "%s: %ld %s", bad[i].body, r->status, r->body);
        ck_assert_str_eq(sptest_jstr(r, "error.code"), "validation_failed");
        if (bad[i].field != NULL) {
            char fp[64];
            snprintf(fp, sizeof(fp), "error.fields.%s", bad[i].field);
            ck_assert_msg(sptest_jstr(r, fp) != NULL, "%s: %s", bad[i].body, r->body);
        }
        sptest_resp_free(r);
    }
    r = admin_get(id);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Renamed");
    ck_assert_str_eq(sptest_jstr(r, "document"), "doc-43");
    ck_assert_str_eq(sptest_jstr(r, "status"), "PENDING");
    sptest_resp_free(r);

    /* null clears the document */
    r = call("PATCH", path, ADMIN, "{\"document\":null}", NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "document")));
    ck_assert_str_eq(sptest_jstr(r, "name"), "Renamed");
    sptest_resp_free(r);
    r = admin_get(id);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "document")));
    sptest_resp_free(r);
    free(id);
}
END_TEST

/* The path names the client: a body field of the same name ("id") is not part of the
 * contract, and must neither be taken (no mass assignment, api.md) nor reach another
 * client. */
START_TEST(body_fields_named_like_the_path_id_are_refused)
{
    tenant t = new_tenant("bodyid", true, false);
    tenant other = new_tenant("bodyid-other", true, false);
    char patch[160], suspend[160], pbody[256], sbody[256];
    snprintf(patch, sizeof(patch), "/v1/clients/%s", t.id);
    snprintf(pbody, sizeof(pbody), "{\"id\":\"%s\",\"name\":\"Hijacked\"}", other.id);
    snprintf(suspend, sizeof(suspend), "/v1/clients/%s/suspend", t.id);
    snprintf(sbody, sizeof(sbody), "{\"id\":\"%s\"}", other.id);
    /* both calls first, then the verdict on both, so that one failure shows everything */
    sptest_resp *p = call("PATCH", patch, t.mgr.token, pbody, NULL);
    sptest_resp *s = call("POST", suspend, ADMIN, sbody, NULL);
    sptest_resp *mine = admin_get(t.id), *theirs = admin_get(other.id);
    ck_assert_msg(p->status == 400 && s->status == 400 &&
                      strcmp(sptest_jstr(mine, "name"), t.name) == 0 &&
                      strcmp(sptest_jstr(mine, "status"), "ACTIVE") == 0 &&
                      strcmp(sptest_jstr(theirs, "name"), other.name) == 0 &&
                      strcmp(sptest_jstr(theirs, "status"), "ACTIVE") == 0,
                  "want 400 and both clients unchanged; PATCH %s %s: %ld %s; POST %s %s: %ld %s; "
                  "now the path's client: %s, the body's: %s",
                  patch, pbody, p->status, p->body, suspend, sbody, s->status, s->body, mine->body,
                  theirs->body);
    sptest_resp_free(p);
    sptest_resp_free(s);
    sptest_resp_free(mine);
    sptest_resp_free(theirs);
    tenant_free(&other);
    tenant_free(&t);
}
END_TEST

/* ---- state actions --------------------------------------------------------------------------- */

static const char *const actions[] = {"approve", "suspend", "reactivate"};

/* Nobody but the admin may change a client's state: 403 (401 without a token), with or
 * without a body, and the client stays as it was. */
START_TEST(state_actions_refuse_everyone_but_the_admin)
{
    tenant t = new_tenant("state-403", false, true);
    tenant other = new_tenant("state-403-other", false, false);
    account app = new_app_user("state-403-app");
    const char *refused[] = {t.mgr.token, t.op.token, other.mgr.token, app.token};
    const char *status = "PENDING";
    sptest_resp *fr = call("POST", "/v1/clients/00000000-0000-4000-8000-000000000000/approve",
                           app.token, NULL, NULL);
    assert_error(fr, 403, "forbidden");
    sptest_resp_free(fr);

    for (int round = 0; round < 3; round++) {
        for (size_t a = 0; a < 3; a++) {
            char path[160];
            snprintf(path, sizeof(path), "/v1/clients/%s/%s", t.id, actions[a]);
            for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                /* once suspended, the client's own members' sessions are revoked: 401 */
                long want = round == 2 && i < 2 ? 401 : 403;
                sptest_resp *r = call("POST", path, refused[i], NULL, NULL);
                ck_assert_msg(r->status == want, "%s as caller %zu: want %ld, got %ld %s", path, i,
                              want, r->status, r->body);
                sptest_resp_free(r);
                EXPECT("POST", path, refused[i], "{}", want);
                EXPECT("POST", path, refused[i], "{bad", want); /* 403 beats 400 */
            }
            EXPECT("POST", path, NULL, NULL, 401);
            EXPECT("POST", path, NULL, "{}", 401);
            ASSERT_CLIENT_IS(t.id, t.name, status);
        }
        /* and the same in the next state */
        if (round == 0) {
            must_action(t.id, "approve", "ACTIVE");
            status = "ACTIVE";
        } else if (round == 1) {
            must_action(t.id, "suspend", "SUSPENDED");
            status = "SUSPENDED";
        }
    }
    account_free(&app);
    tenant_free(&other);
    tenant_free(&t);
}
END_TEST

/* POST /v1/clients/{id}/<action> as the admin: want 'status' (200: the new state; 409:
 * unchanged); 'body' NULL for none. */
static void admin_action(int line, const char *id, const char *action, const char *body, long want,
                         const char *state)
{
    char path[160];
    snprintf(path, sizeof(path), "/v1/clients/%s/%s", id, action);
    sptest_resp *r = call("POST", path, ADMIN, body, NULL);
    ck_assert_msg(r->status == want, "line %d: %s: want %ld, got %ld %s", line, path, want,
                  r->status, r->body);
    if (want == 200) {
        ck_assert_int_eq(count_members(r->json), 6);
        ck_assert_str_eq(sptest_jstr(r, "id"), id);
        ck_assert_str_eq(sptest_jstr(r, "status"), state);
    } else if (want == 409) {
        ck_assert_str_eq(sptest_jstr(r, "error.code"), "conflict");
    }
    sptest_resp_free(r);
    r = admin_get(id);
    ck_assert_msg(strcmp(sptest_jstr(r, "status"), state) == 0, "line %d: after %s: %s", line,
                  action, r->body);
    sptest_resp_free(r);
}
#define ADMIN_ACTION(id, a, body, want, state) admin_action(__LINE__, id, a, body, want, state)

START_TEST(state_machine_valid_and_invalid_transitions)
{
    char name[128];
    unique_name(name, sizeof(name), "states");
    char *id = must_client(name, NULL);

    /* PENDING: only approve */
    ADMIN_ACTION(id, "suspend", NULL, 409, "PENDING");
    ADMIN_ACTION(id, "reactivate", "{}", 409, "PENDING");
    ADMIN_ACTION(id, "approve", "{\"status\":\"SUSPENDED\"}", 400, "PENDING"); /* unknown field */
    ADMIN_ACTION(id, "approve", NULL, 200, "ACTIVE");
    /* ACTIVE: only suspend */
    ADMIN_ACTION(id, "approve", NULL, 409, "ACTIVE");
    ADMIN_ACTION(id, "approve", "{}", 409, "ACTIVE");
    ADMIN_ACTION(id, "reactivate", NULL, 409, "ACTIVE");
    ADMIN_ACTION(id, "suspend", "{}", 200, "SUSPENDED");
    /* SUSPENDED: only reactivate */
    ADMIN_ACTION(id, "suspend", NULL, 409, "SUSPENDED");
    ADMIN_ACTION(id, "approve", NULL, 409, "SUSPENDED");
    ADMIN_ACTION(id, "reactivate", NULL, 200, "ACTIVE");
    /* and round again */
    ADMIN_ACTION(id, "reactivate", "{}", 409, "ACTIVE");
    ADMIN_ACTION(id, "suspend", NULL, 200, "SUSPENDED");
    ADMIN_ACTION(id, "reactivate", "{}", 200, "ACTIVE");

    /* the state shows in the list at once */
    cJSON *act = list_all(ADMIN, "status=ACTIVE&", 500);
    ck_assert_int_eq(count_where(act, "id", id), 1);
    cJSON_Delete(act);

    /* a missing client */
    char uuid[64];
    spcrypto_uuid_v4(uuid);
    for (size_t a = 0; a < 3; a++) {
        char path[160];
        snprintf(path, sizeof(path), "/v1/clients/%s/%s", uuid, actions[a]);
        sptest_resp *r = call("POST", path, ADMIN, NULL, NULL);
        assert_error(r, 404, "not_found");
        sptest_resp_free(r);
    }
    free(id);
}
END_TEST

/* ---- lists ----------------------------------------------------------------------------------- */

START_TEST(list_filters_by_status_for_the_admin)
{
    char pn[128], an[128], sn[128];
    unique_name(pn, sizeof(pn), "list-p");
    unique_name(an, sizeof(an), "list-a");
    unique_name(sn, sizeof(sn), "list-s");
    char *p = must_client(pn, NULL), *a = must_client(an, NULL), *s = must_client(sn, NULL);
    must_action(a, "approve", "ACTIVE");
    must_action(s, "approve", "ACTIVE");
    must_action(s, "suspend", "SUSPENDED");

    cJSON *all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "id", p), 1);
    ck_assert_int_eq(count_where(all, "id", a), 1);
    ck_assert_int_eq(count_where(all, "id", s), 1);
    cJSON_Delete(all);
    const char *states[] = {"PENDING", "ACTIVE", "SUSPENDED"};
    const char *ids[] = {p, a, s};
    for (int i = 0; i < 3; i++) {
        char q[64];
        snprintf(q, sizeof(q), "status=%s&", states[i]);
        cJSON *l = list_all(ADMIN, q, 500);
        for (int j = 0; j < 3; j++)
            ck_assert_msg(count_where(l, "id", ids[j]) == (i == j ? 1 : 0), "%s: client %d", q, j);
        ck_assert_int_eq(count_where(l, "status", states[i]), cJSON_GetArraySize(l));
        cJSON_Delete(l);
    }
    const char *bad[] = {"/v1/clients?status=pending", "/v1/clients?status=DELETED"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sptest_resp *r = call("GET", bad[i], ADMIN, NULL, NULL);
        ck_assert_msg(r->status == 400, "%s: %ld %s", bad[i], r->status, r->body);
        ck_assert_str_eq(sptest_jstr(r, "error.code"), "validation_failed");
        sptest_resp_free(r);
    }
    free(p);
    free(a);
    free(s);
}
END_TEST

START_TEST(list_shows_a_client_admin_only_its_own_client)
{
    tenant t = new_tenant("list-own", true, true);
    tenant other = new_tenant("list-own-other", false, false);
    account app = new_app_user("list-app");
    const char *own[] = {t.mgr.token, t.op.token};
    for (int i = 0; i < 2; i++) {
        cJSON *l = list_all(own[i], "", 50);
        ck_assert_int_eq(cJSON_GetArraySize(l), 1);
        ck_assert_str_eq(item_str(cJSON_GetArrayItem(l, 0), "id"), t.id);
        ck_assert_str_eq(item_str(cJSON_GetArrayItem(l, 0), "name"), t.name);
        cJSON_Delete(l);
        l = list_all(own[i], "status=ACTIVE&", 1);
        ck_assert_int_eq(cJSON_GetArraySize(l), 1);
        cJSON_Delete(l);
        l = list_all(own[i], "status=PENDING&", 50); /* the other one is PENDING: not shown */
        ck_assert_int_eq(cJSON_GetArraySize(l), 0);
        cJSON_Delete(l);
    }
    cJSON *l = list_all(other.mgr.token, "", 50);
    ck_assert_int_eq(cJSON_GetArraySize(l), 1);
    ck_assert_str_eq(item_str(cJSON_GetArrayItem(l, 0), "id"), other.id);
    cJSON_Delete(l);

    sptest_resp *r = call("GET", "/v1/clients", app.token, NULL, NULL);
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);
    EXPECT("GET", "/v1/clients?limit=0", app.token, NULL, 403); /* 403 beats 400 */
    r = call("GET", "/v1/clients", NULL, NULL, NULL);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    account_free(&app);
    tenant_free(&other);
    tenant_free(&t);
}
END_TEST

START_TEST(list_pages_give_each_client_once)
{
    char *mine[3];
    for (int i = 0; i < 3; i++) {
        char name[128];
        unique_name(name, sizeof(name), "page");
        mine[i] = must_client(name, NULL);
    }
    cJSON *whole = list_all(ADMIN, "", 500);
    cJSON *paged = list_all(ADMIN, "", 1);
    ck_assert_int_eq(cJSON_GetArraySize(paged), cJSON_GetArraySize(whole));
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(count_where(paged, "id", mine[i]), 1);
    /* each once, in the same order, oldest first */
    const char *prev = NULL;
    for (int i = 0; i < cJSON_GetArraySize(paged); i++) {
        const cJSON *it = cJSON_GetArrayItem(paged, i);
        ck_assert_int_eq(count_where(paged, "id", item_str(it, "id")), 1);
        ck_assert_str_eq(item_str(it, "id"), item_str(cJSON_GetArrayItem(whole, i), "id"));
        const char *at = item_str(it, "createdAt");
        ck_assert_msg(prev == NULL || strcmp(prev, at) <= 0, "not oldest first: %s then %s", prev,
                      at);
        prev = at;
    }
    /* mine come in their creation order */
    int pos[3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < cJSON_GetArraySize(paged); j++)
            if (strcmp(item_str(cJSON_GetArrayItem(paged, j), "id"), mine[i]) == 0) pos[i] = j;
    ck_assert(pos[0] < pos[1] && pos[1] < pos[2]);
    cJSON_Delete(whole);
    cJSON_Delete(paged);

    /* the default page, and the limits */
    sptest_resp *r = call("GET", "/v1/clients", ADMIN, NULL, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_int_le(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")), 50);
    sptest_resp_free(r);
    EXPECT("GET", "/v1/clients?limit=500", ADMIN, NULL, 200);
    EXPECT("GET", "/v1/clients?limit=1", ADMIN, NULL, 200);
    const char *bad[] = {"/v1/clients?limit=0",     "/v1/clients?limit=501",
                         "/v1/clients?limit=-1",    "/v1/clients?limit=abc",
                         "/v1/clients?limit=1.5",   "/v1/clients?cursor=garbage",
                         "/v1/clients?cursor=AAAA", "/v1/clients?cursor=%00"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = call("GET", bad[i], ADMIN, NULL, NULL);
        ck_assert_msg(r->status == 400, "%s: %ld %s", bad[i], r->status, r->body);
        sptest_resp_free(r);
    }
    for (int i = 0; i < 3; i++)
        free(mine[i]);
}
END_TEST

static Suite *tenancy_clients_suite(void)
{
    Suite *s = suite_create("tenancy_clients");
    TCase *tc = tcase_create("create");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, create_answers_a_pending_client);
    tcase_add_test(tc, create_with_admin_makes_a_manager_who_logs_in);
    tcase_add_test(tc, create_refuses_everyone_but_the_admin);
    tcase_add_test(tc, create_checks_its_fields_and_creates_nothing);
    tcase_add_test(tc, create_with_a_registered_admin_email_conflicts);
    tcase_add_test(tc, create_with_the_same_request_id_answers_the_same_client);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("read_write");
    tcase_set_timeout(tr, 120);
    tcase_add_test(tr, get_as_each_caller);
    tcase_add_test(tr, patch_as_each_caller);
    tcase_add_test(tr, patch_fields_absent_null_and_bad);
    tcase_add_test(tr, body_fields_named_like_the_path_id_are_refused);
    tcase_add_test(tr, state_actions_refuse_everyone_but_the_admin);
    tcase_add_test(tr, state_machine_valid_and_invalid_transitions);
    suite_add_tcase(s, tr);
    TCase *tl = tcase_create("lists");
    tcase_set_timeout(tl, 120);
    tcase_add_test(tl, list_filters_by_status_for_the_admin);
    tcase_add_test(tl, list_shows_a_client_admin_only_its_own_client);
    tcase_add_test(tl, list_pages_give_each_client_once);
    suite_add_tcase(s, tl);
    return s;
}

int main(void)
{
    E = sptest_start("tenancy_clients", SPTEST_ALL);
    /* argon2id on a loaded 2-core machine with ASan can take seconds, and creating a
     * client with its manager hashes a password: the gateway waits longer than its 2 s */
    static const char *const gw_env[] = {"SP_BUS_TIMEOUT_MS=15000", NULL};
    sptest_start_service(E, "auth", NULL);
    sptest_start_service(E, "tenancy", NULL);
    sptest_start_service(E, "gateway", gw_env);

    return run_suite_as_admin(tenancy_clients_suite(), NULL);
}
