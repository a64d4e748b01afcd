/* tenancy_members.c -- end-to-end test of a client's members over HTTP through the
 * gateway to the tenancy and auth services, on real NATS, PostgreSQL and Redis: listing,
 * adding and removing members as each caller (admin, the client's manager and operator,
 * another client's manager and operator, an app user, no token) with nothing changed where
 * a call is refused; a removed member's token refused at once; never the last manager;
 * and a client with its manager made in both services or in neither while auth is down,
 * then once on the retry with the same X-Request-Id. */
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

/* ---- members --------------------------------------------------------------------------------- */

static void members_path(char *buf, size_t len, const char *client)
{
    snprintf(buf, len, "/v1/clients/%s/members", client);
}

/* The members of 'client' as 'token' lists them (200 asserted, every page): a JSON
 * array; caller deletes. */
static cJSON *members_of(const char *token, const char *client)
{
    char base[128];
    members_path(base, sizeof(base), client);
    cJSON *all = cJSON_CreateArray();
    char cursor[512] = "";
    for (int page = 0; page < 1000; page++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s?limit=2%s%s", base, cursor[0] ? "&cursor=" : "", cursor);
        sptest_resp *r = call("GET", path, token, NULL, NULL);
        ck_assert_msg(r->status == 200, "%s: %ld %s", path, r->status, r->body);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(r->json, "items");
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(r->json, "nextCursor");
        ck_assert(cJSON_IsArray(items));
        const cJSON *it;
        cJSON_ArrayForEach(it, items) cJSON_AddItemToArray(all, cJSON_Duplicate(it, 1));
        if (!cJSON_IsString(next)) {
            ck_assert_msg(cJSON_IsNull(next), "%s", r->body);
            sptest_resp_free(r);
            return all;
        }
        snprintf(cursor, sizeof(cursor), "%s", next->valuestring);
        sptest_resp_free(r);
    }
    ck_abort_msg("no end of the members");
    return all;
}

static int member_count(const char *client)
{
    cJSON *m = members_of(ADMIN, client);
    int n = cJSON_GetArraySize(m);
    cJSON_Delete(m);
    return n;
}

/* POST /v1/clients/{client}/members as 'token'; caller frees. */
static sptest_resp *add_member(const char *token, const char *client, const char *email,
                               const char *role, const char *rid)
{
    char path[128];
    members_path(path, sizeof(path), client);
    char *b = sptest_json_obj("name", "New Member", "email", email, "password", PW, "clientRole",
                              role, NULL);
    sptest_resp *r = call("POST", path, token, b, rid);
    free(b);
    return r;
}

/* A member made by 'token' (201 asserted), logged in. */
static account must_member(const char *token, const char *client, const char *role)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "member");
    sptest_resp *r = add_member(token, client, email, role, NULL);
    ck_assert_msg(r->status == 201, "add %s: %ld %s", role, r->status, r->body);
    sptest_resp_free(r);
    return must_login(email);
}

static long me_status(const char *token)
{
    sptest_resp *r = call("GET", "/v1/me", token, NULL, NULL);
    long st = r->status;
    sptest_resp_free(r);
    return st;
}

/* true when 'email' is free in auth: registering it works (the account is then made). */
static bool email_is_free(const char *email)
{
    char *b = sptest_json_obj("name", "Probe", "email", email, "password", PW, NULL);
    sptest_resp *r = call("POST", "/v1/auth/register", NULL, b, NULL);
    free(b);
    bool free_ = r->status == 201;
    ck_assert_msg(r->status == 201 || r->status == 409, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    return free_;
}

static void delete_path(char *buf, size_t len, const char *client, const char *user)
{
    snprintf(buf, len, "/v1/clients/%s/members/%s", client, user);
}

/* ---- GET members ----------------------------------------------------------------------------- */

START_TEST(list_members_as_each_caller)
{
    tenant t = new_tenant("mlist", true, true);
    tenant other = new_tenant("mlist-other", true, false);
    account app = new_app_user("mlist-app");
    char path[128];
    members_path(path, sizeof(path), t.id);

    const char *readers[] = {ADMIN, t.mgr.token, t.op.token};
    for (int i = 0; i < 3; i++) {
        sptest_resp *r = call("GET", path, readers[i], NULL, NULL);
        ck_assert_msg(r->status == 200, "reader %d: %ld %s", i, r->status, r->body);
        ck_assert_int_eq(count_members(r->json), 2);
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "nextCursor")));
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(r->json, "items");
        ck_assert_int_eq(cJSON_GetArraySize(items), 2);
        /* oldest first: the manager, then the operator it made */
        const cJSON *m = cJSON_GetArrayItem(items, 0), *o = cJSON_GetArrayItem(items, 1);
        ck_assert_int_eq(count_members(m), 5);
        ck_assert_str_eq(item_str(m, "userId"), t.mgr.id);
        ck_assert_str_eq(item_str(m, "email"), t.mgr.email);
        ck_assert_str_eq(item_str(m, "name"), "Client Manager");
        ck_assert_str_eq(item_str(m, "clientRole"), "client_manager");
        ck_assert_msg(matches(RFC3339_MS, item_str(m, "createdAt")), "%s", r->body);
        ck_assert_str_eq(item_str(o, "userId"), t.op.id);
        ck_assert_str_eq(item_str(o, "email"), t.op.email);
        ck_assert_str_eq(item_str(o, "clientRole"), "client_operator");
        sptest_resp_free(r);
    }
    sptest_resp *r = call("GET", path, other.mgr.token, NULL, NULL);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    r = call("GET", path, app.token, NULL, NULL);
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);
    r = call("GET", path, NULL, NULL, NULL);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    char uuid[64], missing[128];
    spcrypto_uuid_v4(uuid);
    members_path(missing, sizeof(missing), uuid);
    EXPECT("GET", missing, ADMIN, NULL, 404);
    /* paging: limit=1 gives each member once */
    char p1[256];
    snprintf(p1, sizeof(p1), "%s?limit=1", path);
    r = call("GET", p1, ADMIN, NULL, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(r->json, "items")), 1);
    const char *next = sptest_jstr(r, "nextCursor");
    ck_assert_ptr_nonnull(next);
    char p2[1024];
    snprintf(p2, sizeof(p2), "%s?limit=1&cursor=%s", path, next);
    sptest_resp *r2 = call("GET", p2, ADMIN, NULL, NULL);
    ck_assert_msg(r2->status == 200, "%ld %s", r2->status, r2->body);
    const cJSON *items2 = cJSON_GetObjectItemCaseSensitive(r2->json, "items");
    ck_assert_int_eq(cJSON_GetArraySize(items2), 1);
    ck_assert_str_eq(item_str(cJSON_GetArrayItem(items2, 0), "userId"), t.op.id);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r2->json, "nextCursor")));
    sptest_resp_free(r2);
    sptest_resp_free(r);
    snprintf(p1, sizeof(p1), "%s?limit=0", path);
    EXPECT("GET", p1, ADMIN, NULL, 400);
    snprintf(p1, sizeof(p1), "%s?cursor=garbage", path);
    EXPECT("GET", p1, ADMIN, NULL, 400);
    account_free(&app);
    tenant_free(&other);
    tenant_free(&t);
}
END_TEST

/* ---- POST members ---------------------------------------------------------------------------- */

START_TEST(create_member_as_each_caller)
{
    tenant t = new_tenant("madd", true, true);
    tenant other = new_tenant("madd-other", true, false);
    account app = new_app_user("madd-app");

    /* the admin makes an operator; the manager makes a manager and an operator */
    char email[128];
    sptest_unique_email(email, sizeof(email), "by-admin");
    sptest_resp *r = add_member(ADMIN, t.id, email, "client_operator", NULL);
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_int_eq(count_members(r->json), 5);
    ck_assert(spcrypto_uuid_valid(sptest_jstr(r, "userId")));
    ck_assert_str_eq(sptest_jstr(r, "email"), email);
    ck_assert_str_eq(sptest_jstr(r, "name"), "New Member");
    ck_assert_str_eq(sptest_jstr(r, "clientRole"), "client_operator");
    ck_assert_msg(matches(RFC3339_MS, sptest_jstr(r, "createdAt")), "%s", r->body);
    char *by_admin = strdup(sptest_jstr(r, "userId"));
    sptest_resp_free(r);
    account a = must_login(email);
    ck_assert_str_eq(a.id, by_admin);
    r = call("GET", "/v1/me", a.token, NULL, NULL);
    ck_assert_str_eq(sptest_jstr(r, "role"), "client_admin");
    ck_assert_str_eq(sptest_jstr(r, "clientId"), t.id);
    ck_assert_str_eq(sptest_jstr(r, "clientRole"), "client_operator");
    sptest_resp_free(r);

    account m2 = must_member(t.mgr.token, t.id, "client_manager");
    r = call("GET", "/v1/me", m2.token, NULL, NULL);
    ck_assert_str_eq(sptest_jstr(r, "clientRole"), "client_manager");
    ck_assert_str_eq(sptest_jstr(r, "clientId"), t.id);
    sptest_resp_free(r);
    account o2 = must_member(m2.token, t.id, "client_operator"); /* the new manager may too */
    ck_assert_int_eq(member_count(t.id), 5);

    /* refused: operator 403, another client's manager 404, app user 403, no token 401 */
    struct {
        const char *token;
        long want;
    } refused[] = {
        {t.op.token, 403}, {a.token, 403}, {other.mgr.token, 404}, {app.token, 403}, {NULL, 401}};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        const char *roles[] = {"client_operator", "client_manager"};
        for (int k = 0; k < 2; k++) {
            sptest_unique_email(email, sizeof(email), "refused");
            r = add_member(refused[i].token, t.id, email, roles[k], NULL);
            ck_assert_msg(r->status == refused[i].want, "caller %zu: want %ld, got %ld %s", i,
                          refused[i].want, r->status, r->body);
            sptest_resp_free(r);
            ck_assert_msg(email_is_free(email), "caller %zu: a user %s was made", i, email);
        }
    }
    /* 404 and 403 before 400 */
    char path[128];
    members_path(path, sizeof(path), t.id);
    EXPECT("POST", path, other.mgr.token, "{\"clientRole\":\"admin\"}", 404);
    EXPECT("POST", path, t.op.token, "{\"clientRole\":\"admin\"}", 403);
    EXPECT("POST", path, app.token, "{bad", 403);
    ck_assert_int_eq(member_count(t.id), 5);
    ck_assert_int_eq(member_count(other.id), 1);
    account_free(&o2);
    account_free(&m2);
    account_free(&a);
    free(by_admin);
    account_free(&app);
    tenant_free(&other);
    tenant_free(&t);
}
END_TEST

START_TEST(create_member_checks_its_fields)
{
    tenant t = new_tenant("mbad", true, false);
    char email[128], body[512], path[128];
    members_path(path, sizeof(path), t.id);
    sptest_unique_email(email, sizeof(email), "mbad");
    struct {
        const char *fmt, *field;
    } rows[] = {
        {"{\"name\":\"N\",\"email\":\"%s\",\"password\":\"" PW "\",\"clientRole\":\"admin\"}",
         "clientRole"},
        {"{\"name\":\"N\",\"email\":\"%s\",\"password\":\"" PW "\",\"clientRole\":\"owner\"}",
         "clientRole"},
        {"{\"name\":\"N\",\"email\":\"%s\",\"password\":\"" PW "\"}", "clientRole"},
        {"{\"email\":\"%s\",\"password\":\"" PW "\",\"clientRole\":\"client_operator\"}", "name"},
        {"{\"name\":\"\",\"email\":\"%s\",\"password\":\"" PW
         "\",\"clientRole\":\"client_operator\"}",
         "name"},
        {"{\"name\":\"N\",\"email\":\"%s\",\"clientRole\":\"client_operator\"}", "password"},
        {"{\"name\":\"N\",\"email\":\"%s\",\"password\":\"short\",\"clientRole\":\"client_"
         "operator\"}",
         "password"},
        {"{\"name\":\"N\",\"email\":\"no-at-sign%s\",\"password\":\"" PW
         "\",\"clientRole\":\"client_operator\"}",
         "email"},
        {"{\"name\":\"N\",\"email\":\"%s\",\"password\":\"" PW
         "\",\"clientRole\":\"client_operator\",\"role\":\"admin\"}",
         NULL},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        /* the email goes in without its '@' where the row wants a bad one */
        char e[128];
        snprintf(e, sizeof(e), "%s", email);
        if (strstr(rows[i].fmt, "no-at-sign") != NULL) e[strcspn(e, "@")] = '\0';
        snprintf(body, sizeof(body), rows[i].fmt, e);
        sptest_resp *r = call("POST", path, t.mgr.token, body, NULL);
        ck_assert_msg(r->status == 400, "%s: %ld %s", body, r->status, r->body);
        ck_assert_str_eq(sptest_jstr(r, "error.code"), "validation_failed");
        if (rows[i].field != NULL) {
            char fp[64];
            snprintf(fp, sizeof(fp), "error.fields.%s", rows[i].field);
            ck_assert_msg(sptest_jstr(r, fp) != NULL, "%s: no %s in %s", body, fp, r->body);
        }
        sptest_resp_free(r);
    }
    ck_assert_int_eq(member_count(t.id), 1);
    ck_assert(email_is_free(email));
    tenant_free(&t);
}
END_TEST

START_TEST(create_member_with_a_registered_email_conflicts)
{
    tenant t = new_tenant("mdup", true, true);
    account app = new_app_user("mdup-app");
    const char *taken[] = {app.email, t.op.email, t.mgr.email};
    for (int i = 0; i < 3; i++) {
        sptest_resp *r = add_member(t.mgr.token, t.id, taken[i], "client_operator", NULL);
        assert_error(r, 409, "conflict");
        ck_assert_msg(sptest_jstr(r, "error.fields.email") != NULL, "%s", r->body);
        sptest_resp_free(r);
    }
    /* compared lower-cased */
    char upper[128];
    snprintf(upper, sizeof(upper), "%s", app.email);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    sptest_resp *r = add_member(ADMIN, t.id, upper, "client_manager", NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    ck_assert_int_eq(member_count(t.id), 2);
    r = call("GET", "/v1/me", app.token, NULL, NULL);
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user");
    sptest_resp_free(r);
    account_free(&app);
    tenant_free(&t);
}
END_TEST

START_TEST(create_member_with_the_same_request_id_answers_the_same_member)
{
    tenant t = new_tenant("midem", true, false);
    char email[128], rid[64];
    sptest_unique_email(email, sizeof(email), "midem");
    spcrypto_uuid_v4(rid);
    sptest_resp *a = add_member(t.mgr.token, t.id, email, "client_operator", rid);
    ck_assert_msg(a->status == 201, "%ld %s", a->status, a->body);
    sptest_resp *b = add_member(t.mgr.token, t.id, email, "client_operator", rid);
    ck_assert_msg(b->status == 201, "%ld %s", b->status, b->body);
    ck_assert_str_eq(sptest_jstr(b, "userId"), sptest_jstr(a, "userId"));
    ck_assert_int_eq(member_count(t.id), 2);
    account m = must_login(email);
    ck_assert_str_eq(m.id, sptest_jstr(a, "userId"));
    account_free(&m);
    sptest_resp_free(a);
    sptest_resp_free(b);
    tenant_free(&t);
}
END_TEST

/* ---- DELETE members -------------------------------------------------------------------------- */

START_TEST(delete_member_as_each_caller)
{
    tenant t = new_tenant("mdel", true, true);
    tenant other = new_tenant("mdel-other", true, true);
    account app = new_app_user("mdel-app");
    account victim = must_member(t.mgr.token, t.id, "client_operator");
    char path[256];
    delete_path(path, sizeof(path), t.id, victim.id);

    struct {
        const char *token;
        long want;
    } refused[] = {{t.op.token, 403},
                   {other.mgr.token, 404},
                   {other.op.token, 404},
                   {app.token, 403},
                   {NULL, 401}};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        sptest_resp *r = call("DELETE", path, refused[i].token, NULL, NULL);
        ck_assert_msg(r->status == refused[i].want, "caller %zu: want %ld, got %ld %s", i,
                      refused[i].want, r->status, r->body);
        sptest_resp_free(r);
        ck_assert_int_eq(me_status(victim.token), 200);
    }
    ck_assert_int_eq(member_count(t.id), 3);

    /* the admin removes it: 204, no body, its token dead at once */
    sptest_resp *r = call("DELETE", path, ADMIN, NULL, NULL);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    ck_assert_int_eq((int)r->len, 0);
    sptest_resp_free(r);
    r = call("GET", "/v1/me", victim.token, NULL, NULL);
    ck_assert_msg(r->status == 401, "the removed member's token: %ld %s", r->status, r->body);
    sptest_resp_free(r);
    cJSON *ms = members_of(ADMIN, t.id);
    ck_assert_int_eq(count_where(ms, "userId", victim.id), 0);
    ck_assert_int_eq(cJSON_GetArraySize(ms), 2);
    cJSON_Delete(ms);
    /* it is an app user now */
    account again = must_login(victim.email);
    r = call("GET", "/v1/me", again.token, NULL, NULL);
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "clientId")));
    sptest_resp_free(r);
    char cpath[128];
    snprintf(cpath, sizeof(cpath), "/v1/clients/%s", t.id);
    EXPECT("GET", cpath, again.token, NULL, 403);
    /* removing it again, or a stranger: 404 */
    EXPECT("DELETE", path, ADMIN, NULL, 404);
    char stranger[256];
    delete_path(stranger, sizeof(stranger), t.id, app.id);
    EXPECT("DELETE", stranger, ADMIN, NULL, 404);
    delete_path(stranger, sizeof(stranger), t.id, other.op.id); /* another client's member */
    EXPECT("DELETE", stranger, t.mgr.token, NULL, 404);
    ck_assert_int_eq(me_status(other.op.token), 200);

    /* the client's manager removes its operator the same way */
    delete_path(path, sizeof(path), t.id, t.op.id);
    r = call("DELETE", path, t.mgr.token, NULL, NULL);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    ck_assert_int_eq(me_status(t.op.token), 401);
    ck_assert_int_eq(me_status(t.mgr.token), 200);
    ck_assert_int_eq(member_count(t.id), 1);
    ck_assert_int_eq(member_count(other.id), 2);
    account_free(&again);
    account_free(&victim);
    account_free(&app);
    tenant_free(&other);
    tenant_free(&t);
}
END_TEST

START_TEST(the_last_manager_cannot_be_removed)
{
    tenant t = new_tenant("mlast", true, true);
    char path[256];
    delete_path(path, sizeof(path), t.id, t.mgr.id);
    sptest_resp *r = call("DELETE", path, ADMIN, NULL, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    r = call("DELETE", path, t.mgr.token, NULL, NULL); /* nor by itself */
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    ck_assert_int_eq(me_status(t.mgr.token), 200);
    ck_assert_int_eq(member_count(t.id), 2);

    /* with a second manager the first may go; then the second is the last */
    account m2 = must_member(t.mgr.token, t.id, "client_manager");
    r = call("DELETE", path, m2.token, NULL, NULL);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    ck_assert_int_eq(me_status(t.mgr.token), 401);
    delete_path(path, sizeof(path), t.id, m2.id);
    r = call("DELETE", path, ADMIN, NULL, NULL);
    assert_error(r, 409, "conflict");
    sptest_resp_free(r);
    ck_assert_int_eq(me_status(m2.token), 200);
    /* an operator is never the last manager */
    delete_path(path, sizeof(path), t.id, t.op.id);
    EXPECT("DELETE", path, m2.token, NULL, 204);
    cJSON *ms = members_of(ADMIN, t.id);
    ck_assert_int_eq(cJSON_GetArraySize(ms), 1);
    ck_assert_str_eq(item_str(cJSON_GetArrayItem(ms, 0), "userId"), m2.id);
    cJSON_Delete(ms);
    account_free(&m2);
    tenant_free(&t);
}
END_TEST

/* ---- both or neither ------------------------------------------------------------------------- */

/* Last: kills and restarts auth. A client with its manager while auth is down: 503 and
 * nothing made; the same request again once auth is back: made once. The admin's token
 * keeps working meanwhile (the gateway checks tokens itself). */
START_TEST(create_client_is_both_or_neither_when_auth_is_down)
{
    tenant t = new_tenant("down", true, false);
    char name[128], email[128], rid[64], memail[128], mrid[64];
    unique_name(name, sizeof(name), "down");
    sptest_unique_email(email, sizeof(email), "down-mgr");
    sptest_unique_email(memail, sizeof(memail), "down-op");
    spcrypto_uuid_v4(rid);
    spcrypto_uuid_v4(mrid);

    sptest_kill(AUTH, SIGKILL);
    sptest_resp *r = create_client(name, NULL, email, rid);
    assert_error(r, 503, "unavailable");
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Retry-After"));
    sptest_resp_free(r);
    cJSON *all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "name", name), 0);
    cJSON_Delete(all);
    r = add_member(t.mgr.token, t.id, memail, "client_operator", mrid);
    assert_error(r, 503, "unavailable");
    sptest_resp_free(r);
    ck_assert_int_eq(member_count(t.id), 1);

    sptest_restart(E, AUTH);
    r = create_client(name, NULL, email, rid);
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    char *id = strdup(sptest_jstr(r, "id"));
    sptest_resp_free(r);
    r = create_client(name, NULL, email, rid); /* and once more: still the one */
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "id"), id);
    sptest_resp_free(r);
    all = list_all(ADMIN, "", 500);
    ck_assert_int_eq(count_where(all, "name", name), 1);
    cJSON_Delete(all);
    account m = must_login(email);
    r = call("GET", "/v1/me", m.token, NULL, NULL);
    ck_assert_str_eq(sptest_jstr(r, "clientId"), id);
    ck_assert_str_eq(sptest_jstr(r, "clientRole"), "client_manager");
    sptest_resp_free(r);
    cJSON *ms = members_of(ADMIN, id);
    ck_assert_int_eq(cJSON_GetArraySize(ms), 1);
    ck_assert_str_eq(item_str(cJSON_GetArrayItem(ms, 0), "userId"), m.id);
    cJSON_Delete(ms);

    r = add_member(t.mgr.token, t.id, memail, "client_operator", mrid);
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    ck_assert_int_eq(member_count(t.id), 2);
    account o = must_login(memail);
    account_free(&o);
    account_free(&m);
    free(id);
    tenant_free(&t);
}
END_TEST

static Suite *tenancy_members_suite(void)
{
    Suite *s = suite_create("tenancy_members");
    TCase *tc = tcase_create("members");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, list_members_as_each_caller);
    tcase_add_test(tc, create_member_as_each_caller);
    tcase_add_test(tc, create_member_checks_its_fields);
    tcase_add_test(tc, create_member_with_a_registered_email_conflicts);
    tcase_add_test(tc, create_member_with_the_same_request_id_answers_the_same_member);
    tcase_add_test(tc, delete_member_as_each_caller);
    tcase_add_test(tc, the_last_manager_cannot_be_removed);
    suite_add_tcase(s, tc);
    TCase *tf = tcase_create("faults"); /* last: kills and restarts auth */
    tcase_set_timeout(tf, 120);
    tcase_add_test(tf, create_client_is_both_or_neither_when_auth_is_down);
    suite_add_tcase(s, tf);
    return s;
}

int main(void)
{
    E = sptest_start("tenancy_members", SPTEST_ALL);
    static const char *const gw_env[] = {"SP_BUS_TIMEOUT_MS=15000", NULL};
    AUTH = sptest_start_service(E, "auth", NULL);
    sptest_start_service(E, "tenancy", NULL);
    sptest_start_service(E, "gateway", gw_env);

    return run_suite_as_admin(tenancy_members_suite(), NULL);
}
