/* tenancy_fixture.h -- what the tenancy suites (tenancy_clients.c, tenancy_members.c,
 * tenancy_suspend.c) share: calls to the gateway, accounts and tenants made over HTTP, the
 * admin made by spctl, lists read page by page. Included once by each suite (each is its
 * own program); a suite uses some of it. */
#ifndef TENANCY_FIXTURE_H
#define TENANCY_FIXTURE_H

#include <check.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <regex.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spcrypto.h"
#include "sptest.h"

extern char **environ;

#define FIXTURE static __attribute__((unused))

static sptest_env *E;
/* auth, for the suites that stop and start it */
static __attribute__((unused)) sptest_proc *AUTH;
/* The platform admin (spctl create-admin), logged in once before the tests fork. */
static char *ADMIN;

#define PW "password-tenancy"

/* ---- HTTP helpers ------------------------------------------------------------------------ */

/* One call to the gateway at 'base': Content-Type only with a body, the bearer token and
 * X-Request-Id when given. */
FIXTURE sptest_resp *call_at(const char *base, const char *method, const char *path,
                             const char *token, const char *body, const char *rid)
{
    char url[1024], auth[4096], ridh[160];
    const char *h[5];
    int n = 0;
    snprintf(url, sizeof(url), "%s%s", base, path);
    if (body != NULL) h[n++] = "Content-Type: application/json";
    h[n++] = "Accept: application/json";
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h[n++] = auth;
    }
    if (rid != NULL) {
        snprintf(ridh, sizeof(ridh), "X-Request-Id: %s", rid);
        h[n++] = ridh;
    }
    h[n] = NULL;
    return sptest_http(method, url, h, body, body != NULL ? strlen(body) : 0);
}

FIXTURE sptest_resp *call(const char *method, const char *path, const char *token, const char *body,
                          const char *rid)
{
    return call_at(E->base_url, method, path, token, body, rid);
}

/* A call that must answer 'want' (line: the caller's, for the message); freed. */
FIXTURE void expect_(int line, const char *method, const char *path, const char *token,
                     const char *body, long want)
{
    sptest_resp *r = call(method, path, token, body, NULL);
    ck_assert_msg(r->status == want, "line %d: %s %s %s: want %ld, got %ld %s", line, method, path,
                  body != NULL ? body : "", want, r->status, r->body);
    sptest_resp_free(r);
}
#define EXPECT(m, p, t, b, st) expect_(__LINE__, m, p, t, b, st)

/* A call as 'token' that must answer 'want'; the answer (caller frees). */
FIXTURE sptest_resp *must_(int line, const char *method, const char *path, const char *token,
                           const char *body, long want)
{
    sptest_resp *r = call(method, path, token, body, NULL);
    ck_assert_msg(r->status == want, "line %d: %s %s %s: want %ld, got %ld %s", line, method, path,
                  body != NULL ? body : "", want, r->status, r->body);
    return r;
}
#define MUST(m, p, t, b, st) must_(__LINE__, m, p, t, b, st)

/* Whether an error answer's fields name 'path' ("slots[1].slotCode": not a dotted path). */
FIXTURE bool names_field(const sptest_resp *r, const char *path)
{
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(r->json, "error");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(err, "fields");
    return cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fields, path));
}

FIXTURE void assert_error(const sptest_resp *r, long status, const char *code)
{
    ck_assert_msg(r->status == status, "want %ld, got %ld %s", status, r->status, r->body);
    const char *c = sptest_jstr(r, "error.code");
    ck_assert_msg(c != NULL && strcmp(c, code) == 0, "want code %s: %s", code, r->body);
}

FIXTURE bool matches(const char *re, const char *s)
{
    regex_t rx;
    ck_assert_int_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = s != NULL && regexec(&rx, s, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}

#define RFC3339_MS "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"

FIXTURE int count_members(const cJSON *o)
{
    int n = 0;
    for (const cJSON *c = o != NULL ? o->child : NULL; c != NULL; c = c->next)
        n++;
    return n;
}

FIXTURE const char *item_str(const cJSON *item, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(item, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A fresh name, unique across tests and runs. */
FIXTURE void unique_name(char *buf, size_t len, const char *tag)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), tag);
    email[strcspn(email, "@")] = '\0';
    snprintf(buf, len, "Client %s", email);
}

/* ---- accounts ------------------------------------------------------------------------------ */

/* Runs build/spctl with 'args' (NULL-ended, after the program) and the stack's URLs, as
 * the NATS user spctl; its exit status, -1 when it could not run. */
FIXTURE int run_spctl(const char *const *args)
{
    char exe[PATH_MAX], bin[PATH_MAX + 16];
    /* the build directory: this test is <build>/tests/it_<name> */
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) return -1;
    exe[n] = '\0';
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(exe, '/');
        if (slash == NULL) return -1;
        *slash = '\0';
    }
    snprintf(bin, sizeof(bin), "%s/spctl", exe);
    setenv("SP_DATABASE_URL", E->db_url, 1);
    setenv("SP_NATS_URL", E->nats_url, 1);
    setenv("SP_REDIS_URL", E->redis_url, 1);
    setenv("SP_NATS_USER", "spctl", 1);
    const char *pw = sptest_secret(E, "SP_NATS_SPCTL_PASSWORD");
    if (pw != NULL) setenv("SP_NATS_PASSWORD", pw, 1);
    char *argv[16] = {bin};
    for (int i = 0; args[i] != NULL && i < 14; i++)
        argv[i + 1] = (char *)args[i];
    pid_t pid;
    int st = 0;
    if (posix_spawn(&pid, bin, NULL, NULL, argv, environ) != 0) return -1;
    if (waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs `spctl create-admin` with the stack's database; 0 on success. */
FIXTURE int spctl_create_admin(const char *email, const char *password)
{
    setenv("SP_ADMIN_PASSWORD", password, 1);
    const char *const args[] = {"create-admin", "--email", email, "--name", "Platform Admin", NULL};
    int st = run_spctl(args);
    unsetenv("SP_ADMIN_PASSWORD");
    return st;
}

typedef struct {
    char email[128];
    char *id;    /* user id */
    char *token; /* access token */
} account;

FIXTURE void account_free(account *a)
{
    free(a->id);
    free(a->token);
    a->id = a->token = NULL;
}

/* Logs 'email' in with PW (200 asserted); fills token and id (from /v1/me). */
FIXTURE account must_login(const char *email)
{
    account a;
    memset(&a, 0, sizeof(a));
    snprintf(a.email, sizeof(a.email), "%s", email);
    char *b = sptest_json_obj("email", email, "password", PW, NULL);
    sptest_resp *r = call("POST", "/v1/auth/login", NULL, b, NULL);
    free(b);
    ck_assert_msg(r->status == 200, "login %s: %ld %s", email, r->status, r->body);
    a.token = strdup(sptest_jstr(r, "accessToken"));
    sptest_resp_free(r);
    r = call("GET", "/v1/me", a.token, NULL, NULL);
    ck_assert_msg(r->status == 200, "me %s: %ld %s", email, r->status, r->body);
    a.id = strdup(sptest_jstr(r, "id"));
    sptest_resp_free(r);
    return a;
}

FIXTURE account new_app_user(const char *tag)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), tag);
    char *b = sptest_json_obj("name", "App User", "email", email, "password", PW, NULL);
    sptest_resp *r = call("POST", "/v1/auth/register", NULL, b, NULL);
    free(b);
    ck_assert_msg(r->status == 201, "register %s: %ld %s", email, r->status, r->body);
    sptest_resp_free(r);
    return must_login(email);
}

/* The access token of 'email' (PW), for main(): no check assertions outside a test.
 * Exits when the login fails. */
FIXTURE char *login_outside_a_test(const char *email)
{
    char *b = sptest_json_obj("email", email, "password", PW, NULL);
    sptest_resp *r = call("POST", "/v1/auth/login", NULL, b, NULL);
    free(b);
    const char *t = sptest_jstr(r, "accessToken");
    if (r->status != 200 || t == NULL) {
        fprintf(stderr, "login %s: %ld %s\n", email, r->status, r->body);
        sptest_mark_failed(E);
        sptest_stop(E);
        exit(EXIT_FAILURE);
    }
    char *tok = strdup(t);
    sptest_resp_free(r);
    return tok;
}

/* The end of every suite's main(), once its services run: the platform admin made by spctl
 * and logged in (ADMIN), then 'ready' (may be NULL: what the suite still needs before its
 * tests; false stops), the suite run (CK_VERBOSITY=verbose lists each test), the stack
 * stopped (kept when a test failed). The exit status of the program. */
FIXTURE int run_suite_as_admin(Suite *suite, bool (*ready)(void))
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "admin");
    if (spctl_create_admin(email, PW) != 0) {
        fprintf(stderr, "spctl create-admin failed\n");
        sptest_mark_failed(E);
        sptest_stop(E);
        return EXIT_FAILURE;
    }
    ADMIN = login_outside_a_test(email);
    if (ready != NULL && !ready()) {
        free(ADMIN);
        sptest_mark_failed(E);
        sptest_stop(E);
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    free(ADMIN);
    if (failed > 0) sptest_mark_failed(E);
    sptest_stop(E);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* ---- clients --------------------------------------------------------------------------------- */

/* The body of POST /v1/clients; 'admin_email' NULL for none; caller frees. */
FIXTURE char *client_body(const char *name, const char *doc, const char *admin_email)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    if (doc != NULL) cJSON_AddStringToObject(o, "document", doc);
    if (admin_email != NULL) {
        cJSON *a = cJSON_AddObjectToObject(o, "admin");
        cJSON_AddStringToObject(a, "name", "Client Manager");
        cJSON_AddStringToObject(a, "email", admin_email);
        cJSON_AddStringToObject(a, "password", PW);
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

FIXTURE sptest_resp *create_client(const char *name, const char *doc, const char *admin_email,
                                   const char *rid)
{
    char *b = client_body(name, doc, admin_email);
    sptest_resp *r = call("POST", "/v1/clients", ADMIN, b, rid);
    free(b);
    return r;
}

/* A client of the admin's (201 asserted): its id, malloc'd. */
FIXTURE char *must_client(const char *name, const char *admin_email)
{
    sptest_resp *r = create_client(name, NULL, admin_email, NULL);
    ck_assert_msg(r->status == 201, "create %s: %ld %s", name, r->status, r->body);
    char *id = strdup(sptest_jstr(r, "id"));
    sptest_resp_free(r);
    return id;
}

/* POST /v1/clients/{id}/<action> as the admin, 200 and the new status asserted. */
FIXTURE void must_action(const char *id, const char *action, const char *status)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/clients/%s/%s", id, action);
    sptest_resp *r = call("POST", path, ADMIN, NULL, NULL);
    ck_assert_msg(r->status == 200, "%s: %ld %s", path, r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "status"), status);
    sptest_resp_free(r);
}

/* The client as the admin reads it now (200 asserted); caller frees. */
FIXTURE sptest_resp *admin_get(const char *id)
{
    char path[128];
    snprintf(path, sizeof(path), "/v1/clients/%s", id);
    sptest_resp *r = call("GET", path, ADMIN, NULL, NULL);
    ck_assert_msg(r->status == 200, "GET %s: %ld %s", path, r->status, r->body);
    return r;
}

/* Asserts the admin reads client 'id' with this name and status. */
FIXTURE void assert_client_is(int line, const char *id, const char *name, const char *status)
{
    sptest_resp *r = admin_get(id);
    ck_assert_msg(strcmp(sptest_jstr(r, "name"), name) == 0, "line %d: name changed: %s", line,
                  r->body);
    ck_assert_msg(strcmp(sptest_jstr(r, "status"), status) == 0, "line %d: status changed: %s",
                  line, r->body);
    sptest_resp_free(r);
}
#define ASSERT_CLIENT_IS(id, name, status) assert_client_is(__LINE__, id, name, status)

/* A client with its manager (and operator) logged in. */
typedef struct {
    char *id;
    char name[128];
    account mgr, op;
} tenant;

FIXTURE tenant new_tenant(const char *tag, bool approve, bool with_op)
{
    tenant t;
    char email[128];
    memset(&t, 0, sizeof(t));
    unique_name(t.name, sizeof(t.name), tag);
    sptest_unique_email(email, sizeof(email), "mgr");
    t.id = must_client(t.name, email);
    t.mgr = must_login(email);
    if (with_op) {
        char path[128];
        sptest_unique_email(email, sizeof(email), "op");
        char *b = sptest_json_obj("name", "Client Operator", "email", email, "password", PW,
                                  "clientRole", "client_operator", NULL);
        snprintf(path, sizeof(path), "/v1/clients/%s/members", t.id);
        sptest_resp *r = call("POST", path, t.mgr.token, b, NULL);
        free(b);
        ck_assert_msg(r->status == 201, "operator: %ld %s", r->status, r->body);
        sptest_resp_free(r);
        t.op = must_login(email);
    }
    if (approve) must_action(t.id, "approve", "ACTIVE");
    return t;
}

FIXTURE void tenant_free(tenant *t)
{
    free(t->id);
    account_free(&t->mgr);
    account_free(&t->op);
}

/* Every client the admin lists with 'query' ("" or "status=...&"), page by page with
 * 'limit'; asserts each page is well formed. A JSON array; caller deletes. */
FIXTURE cJSON *list_all(const char *token, const char *query, int limit)
{
    cJSON *all = cJSON_CreateArray();
    char cursor[512] = "";
    for (int page = 0; page < 10000; page++) {
        char path[1024];
        snprintf(path, sizeof(path), "/v1/clients?%slimit=%d%s%s", query, limit,
                 cursor[0] ? "&cursor=" : "", cursor);
        sptest_resp *r = call("GET", path, token, NULL, NULL);
        ck_assert_msg(r->status == 200, "%s: %ld %s", path, r->status, r->body);
        ck_assert_int_eq(count_members(r->json), 2);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(r->json, "items");
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(r->json, "nextCursor");
        ck_assert(cJSON_IsArray(items));
        ck_assert_msg(cJSON_GetArraySize(items) <= limit, "%s: %s", path, r->body);
        const cJSON *it;
        cJSON_ArrayForEach(it, items) cJSON_AddItemToArray(all, cJSON_Duplicate(it, 1));
        if (cJSON_IsNull(next)) {
            sptest_resp_free(r);
            return all;
        }
        ck_assert_msg(cJSON_IsString(next) && next->valuestring[0] != '\0', "%s", r->body);
        ck_assert_msg(cJSON_GetArraySize(items) == limit, "a short page with a cursor: %s",
                      r->body);
        /* cursors are base64url: safe in a query as they are */
        snprintf(cursor, sizeof(cursor), "%s", next->valuestring);
        sptest_resp_free(r);
    }
    ck_abort_msg("no end of the list");
    return all;
}

FIXTURE int count_where(const cJSON *items, const char *key, const char *value)
{
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *v = item_str(it, key);
        if (v != NULL && strcmp(v, value) == 0) n++;
    }
    return n;
}

#endif
