/* tenancy_suspend.c -- end-to-end test of a client's suspension and of the audit log over
 * HTTP, through two gateways to the tenancy and auth services, on real NATS, PostgreSQL
 * and Redis: after /suspend every member's token is refused at once on the gateway that
 * served the call and on the other one, their logins answer 403 client_suspended, and
 * after /reactivate they log in again; every change is in GET /v1/audit once, with its
 * actor and request id, and a client_admin reads only its own client's rows. */
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

static char ADMIN_ID[64];
/* The second gateway: http://127.0.0.1:<its own port> */
static char B_BASE[128];

/* The admin's user id into ADMIN_ID, for main(); false (said on stderr) on failure. */
static bool admin_id_outside_a_test(void)
{
    sptest_resp *r = call("GET", "/v1/me", ADMIN, NULL, NULL);
    const char *id = sptest_jstr(r, "id");
    bool ok = r->status == 200 && id != NULL;
    if (ok)
        snprintf(ADMIN_ID, sizeof(ADMIN_ID), "%s", id);
    else
        fprintf(stderr, "GET /v1/me as the admin: %ld %s\n", r->status, r->body);
    sptest_resp_free(r);
    return ok;
}

/* ---- the second gateway, sessions --------------------------------------------------------- */

/* Logs 'email' in at 'base' with PW: the access token (200 asserted), malloc'd. */
static char *login_at(const char *base, const char *email)
{
    char *b = sptest_json_obj("email", email, "password", PW, NULL);
    sptest_resp *r = call_at(base, "POST", "/v1/auth/login", NULL, b, NULL);
    free(b);
    ck_assert_msg(r->status == 200, "login %s at %s: %ld %s", email, base, r->status, r->body);
    char *t = strdup(sptest_jstr(r, "accessToken"));
    sptest_resp_free(r);
    return t;
}

static long me_at(const char *base, const char *token)
{
    sptest_resp *r = call_at(base, "GET", "/v1/me", token, NULL, NULL);
    long st = r->status;
    sptest_resp_free(r);
    return st;
}

/* GET /v1/me at 'base' answers 'want' within 'ms' (0: on the first call). */
static bool me_becomes(const char *base, const char *token, long want, int ms)
{
    for (int waited = 0;; waited += 20) {
        if (me_at(base, token) == want) return true;
        if (waited >= ms) return false;
        usleep(20 * 1000);
    }
}

/* Login of 'email' at 'base' answers 403 client_suspended. */
static void assert_login_suspended(int line, const char *base, const char *email)
{
    char *b = sptest_json_obj("email", email, "password", PW, NULL);
    sptest_resp *r = call_at(base, "POST", "/v1/auth/login", NULL, b, NULL);
    free(b);
    ck_assert_msg(r->status == 403, "line %d: login %s: %ld %s", line, email, r->status, r->body);
    const char *code = sptest_jstr(r, "error.code");
    ck_assert_msg(code != NULL && strcmp(code, "client_suspended") == 0, "line %d: %s", line,
                  r->body);
    sptest_resp_free(r);
}
#define ASSERT_LOGIN_SUSPENDED(base, email) assert_login_suspended(__LINE__, base, email)

/* How long the gateway that did not serve a revoking call may take to hear of it (auth's
 * sp.auth.changed.sessions message); the one that served it refuses at once. */
#define OTHER_GATEWAY_MS 500

/* Suspends 'id' through 'via' and checks every session of its members on both gateways,
 * their logins, the other tenant, and the reactivation. */
static void suspend_and_reactivate(const char *via, const char *other_gw)
{
    tenant t = new_tenant("susp", true, true);
    tenant other = new_tenant("susp-other", true, false);
    /* a second session of each member, made on the other gateway */
    char *mgr2 = login_at(other_gw, t.mgr.email), *op2 = login_at(other_gw, t.op.email);
    const char *tokens[] = {t.mgr.token, t.op.token, mgr2, op2};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(me_at(E->base_url, tokens[i]), 200);
        ck_assert_int_eq(me_at(B_BASE, tokens[i]), 200);
    }

    char path[160];
    snprintf(path, sizeof(path), "/v1/clients/%s/suspend", t.id);
    sptest_resp *r = call_at(via, "POST", path, ADMIN, NULL, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "status"), "SUSPENDED");
    sptest_resp_free(r);
    /* at once where the call was served */
    for (int i = 0; i < 4; i++) {
        r = call_at(via, "GET", "/v1/me", tokens[i], NULL, NULL);
        ck_assert_msg(r->status == 401, "token %d on the serving gateway: %ld %s", i, r->status,
                      r->body);
        sptest_resp_free(r);
    }
    /* and on the other gateway */
    for (int i = 0; i < 4; i++)
        ck_assert_msg(me_becomes(other_gw, tokens[i], 401, OTHER_GATEWAY_MS),
                      "token %d still accepted by the other gateway after %d ms", i,
                      OTHER_GATEWAY_MS);
    /* every client route refuses them too */
    char cpath[128];
    snprintf(cpath, sizeof(cpath), "/v1/clients/%s", t.id);
    for (int i = 0; i < 4; i++) {
        r = call_at(via, "GET", cpath, tokens[i], NULL, NULL);
        ck_assert_msg(r->status == 401, "token %d: %ld %s", i, r->status, r->body);
        sptest_resp_free(r);
    }
    ASSERT_LOGIN_SUSPENDED(E->base_url, t.mgr.email);
    ASSERT_LOGIN_SUSPENDED(E->base_url, t.op.email);
    ASSERT_LOGIN_SUSPENDED(B_BASE, t.mgr.email);
    ASSERT_LOGIN_SUSPENDED(B_BASE, t.op.email);
    /* a wrong password stays a plain 401: the answer does not tell a stranger more */
    char *b = sptest_json_obj("email", t.mgr.email, "password", "not-the-password", NULL);
    r = call("POST", "/v1/auth/login", NULL, b, NULL);
    free(b);
    ck_assert_msg(r->status == 401, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    /* the other client is untouched */
    ck_assert_int_eq(me_at(E->base_url, other.mgr.token), 200);
    ck_assert_int_eq(me_at(B_BASE, other.mgr.token), 200);
    r = admin_get(t.id);
    ck_assert_str_eq(sptest_jstr(r, "status"), "SUSPENDED");
    sptest_resp_free(r);

    snprintf(path, sizeof(path), "/v1/clients/%s/reactivate", t.id);
    r = call_at(via, "POST", path, ADMIN, "{}", NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "status"), "ACTIVE");
    sptest_resp_free(r);
    const char *emails[] = {t.mgr.email, t.op.email};
    const char *bases[] = {E->base_url, B_BASE};
    for (int i = 0; i < 2; i++)
        for (int g = 0; g < 2; g++) {
            char *tok = login_at(bases[g], emails[i]);
            r = call_at(bases[g], "GET", cpath, tok, NULL, NULL);
            ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
            ck_assert_str_eq(sptest_jstr(r, "status"), "ACTIVE");
            sptest_resp_free(r);
            r = call_at(bases[1 - g], "GET", "/v1/me", tok, NULL, NULL);
            ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
            ck_assert_str_eq(sptest_jstr(r, "clientId"), t.id);
            sptest_resp_free(r);
            free(tok);
        }
    /* the sessions revoked by the suspension stay revoked */
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(me_at(E->base_url, tokens[i]), 401);
        ck_assert_int_eq(me_at(B_BASE, tokens[i]), 401);
    }
    free(mgr2);
    free(op2);
    tenant_free(&other);
    tenant_free(&t);
}

START_TEST(suspension_through_the_first_gateway)
{
    suspend_and_reactivate(E->base_url, B_BASE);
}
END_TEST

START_TEST(suspension_through_the_second_gateway)
{
    suspend_and_reactivate(B_BASE, E->base_url);
}
END_TEST

/* ---- the audit log --------------------------------------------------------------------------- */

/* Every row 'token' reads with 'query' ("" or "k=v&..."), page by page with 'limit',
 * each page well formed and newest first: a JSON array; caller deletes. NULL when the
 * first page does not answer 200 (*status says what it answered). */
static cJSON *audit_rows(const char *token, const char *query, int limit, long *status)
{
    cJSON *all = cJSON_CreateArray();
    char cursor[512] = "";
    for (int page = 0; page < 10000; page++) {
        char path[2048];
        snprintf(path, sizeof(path), "/v1/audit?%slimit=%d%s%s", query, limit,
                 cursor[0] ? "&cursor=" : "", cursor);
        sptest_resp *r = call("GET", path, token, NULL, NULL);
        if (status != NULL) *status = r->status;
        if (r->status != 200 && page == 0 && status != NULL) {
            sptest_resp_free(r);
            cJSON_Delete(all);
            return NULL;
        }
        ck_assert_msg(r->status == 200, "%s: %ld %s", path, r->status, r->body);
        ck_assert_int_eq(count_members(r->json), 2);
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(r->json, "items");
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(r->json, "nextCursor");
        ck_assert(cJSON_IsArray(items));
        ck_assert_int_le(cJSON_GetArraySize(items), limit);
        const cJSON *it;
        cJSON_ArrayForEach(it, items) cJSON_AddItemToArray(all, cJSON_Duplicate(it, 1));
        if (!cJSON_IsString(next)) {
            ck_assert_msg(cJSON_IsNull(next), "%s", r->body);
            sptest_resp_free(r);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", next->valuestring);
        sptest_resp_free(r);
    }
    /* newest first */
    const char *prev = NULL;
    const cJSON *it;
    cJSON_ArrayForEach(it, all)
    {
        const char *at = item_str(it, "at");
        ck_assert_msg(matches(RFC3339_MS, at), "at: %s", at != NULL ? at : "(null)");
        ck_assert_msg(prev == NULL || strcmp(prev, at) >= 0, "not newest first: %s then %s", prev,
                      at);
        prev = at;
    }
    return all;
}

static const char *sub_str(const cJSON *item, const char *obj, const char *key)
{
    return item_str(cJSON_GetObjectItemCaseSensitive(item, obj), key);
}

/* The rows of 'rows' with this action and target id. */
static int count_rows(const cJSON *rows, const char *action, const char *target_id)
{
    int n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, rows)
    {
        const char *a = item_str(it, "action"), *t = sub_str(it, "target", "id");
        if (a != NULL && strcmp(a, action) == 0 &&
            (target_id == NULL || (t != NULL && strcmp(t, target_id) == 0)))
            n++;
    }
    return n;
}

/* One expected audit row. */
typedef struct {
    const char *action, *target_kind, *target_id, *actor_id, *actor_role, *rid;
} want_row;

/* The rows the admin reads with 'query' once each of 'want' is there (polling up to
 * AUDIT_WAIT_MS: rows arrive through the outbox and SP_AUDIT), and a little later, so
 * that a second copy on its way would show too. Caller deletes. */
#define AUDIT_WAIT_MS 6000
static cJSON *await_rows(const char *query, const want_row *want, int n)
{
    cJSON *rows = NULL;
    for (int waited = 0;; waited += 100) {
        cJSON_Delete(rows);
        rows = audit_rows(ADMIN, query, 500, NULL);
        int have = 0;
        for (int i = 0; i < n; i++)
            if (count_rows(rows, want[i].action, want[i].target_id) > 0) have++;
        if (have == n) break;
        if (waited >= AUDIT_WAIT_MS) {
            char *s = cJSON_PrintUnformatted(rows);
            ck_abort_msg("only %d of %d audit rows after %d ms: %s", have, n, AUDIT_WAIT_MS, s);
        }
        usleep(100 * 1000);
    }
    usleep(500 * 1000);
    cJSON_Delete(rows);
    return audit_rows(ADMIN, query, 500, NULL);
}

/* true when row 'it' is of w's action, target and request. */
static bool row_is(const cJSON *it, const want_row *w)
{
    const char *a = item_str(it, "action"), *t = sub_str(it, "target", "id");
    const char *rid = item_str(it, "requestId");
    return a != NULL && strcmp(a, w->action) == 0 && t != NULL && strcmp(t, w->target_id) == 0 &&
           rid != NULL && strcmp(rid, w->rid) == 0;
}

/* Asserts the row of want[i] is in 'rows' exactly once (every copy printed otherwise), as
 * wanted: actor, target, tenant, ip, the fields of api.md. */
static void assert_rows(const cJSON *rows, const want_row *want, int n, const char *client_id)
{
    for (int i = 0; i < n; i++) {
        const want_row *w = &want[i];
        cJSON *copies = cJSON_CreateArray();
        const cJSON *it;
        cJSON_ArrayForEach(it, rows) if (row_is(it, w))
            cJSON_AddItemToArray(copies, cJSON_Duplicate(it, 1));
        char *all = cJSON_PrintUnformatted(copies);
        ck_assert_msg(cJSON_GetArraySize(copies) == 1, "%s of %s (request %s): %d rows, want 1: %s",
                      w->action, w->target_id, w->rid, cJSON_GetArraySize(copies), all);
        free(all);
        it = cJSON_GetArrayItem(copies, 0);
        char *s = cJSON_PrintUnformatted(it);
        ck_assert_msg(count_members(it) == 9, "want the 9 fields of api.md: %s", s);
        ck_assert_msg(spcrypto_uuid_valid(item_str(it, "id")), "%s", s);
        ck_assert_msg(strcmp(sub_str(it, "target", "kind"), w->target_kind) == 0, "%s: %s",
                      w->action, s);
        ck_assert_msg(strcmp(sub_str(it, "actor", "userId"), w->actor_id) == 0, "%s: %s", w->action,
                      s);
        ck_assert_msg(strcmp(sub_str(it, "actor", "role"), w->actor_role) == 0, "%s: %s", w->action,
                      s);
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(it, "clientId");
        if (client_id != NULL)
            ck_assert_msg(cJSON_IsString(cid) && strcmp(cid->valuestring, client_id) == 0, "%s: %s",
                          w->action, s);
        else
            ck_assert_msg(cJSON_IsNull(cid), "%s: %s", w->action, s);
        const char *ip = item_str(it, "ip");
        ck_assert_msg(ip != NULL && strcmp(ip, "127.0.0.1") == 0, "%s: ip: %s", w->action, s);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(it, "details");
        ck_assert_msg(cJSON_IsObject(d) || cJSON_IsNull(d), "%s: details: %s", w->action, s);
        free(s);
        cJSON_Delete(copies);
    }
}

START_TEST(audit_records_each_change_once)
{
    char name[128], email[128], oemail[128], rid[7][64], path[256];
    for (int i = 0; i < 7; i++)
        spcrypto_uuid_v4(rid[i]);
    unique_name(name, sizeof(name), "audit");
    sptest_unique_email(email, sizeof(email), "audit-mgr");
    sptest_unique_email(oemail, sizeof(oemail), "audit-op");

    sptest_resp *r = create_client(name, NULL, email, rid[0]);
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    char *id = strdup(sptest_jstr(r, "id"));
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/clients/%s/approve", id);
    r = call("POST", path, ADMIN, NULL, rid[1]);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    account mgr = must_login(email);
    snprintf(path, sizeof(path), "/v1/clients/%s/members", id);
    char *b = sptest_json_obj("name", "Audit Operator", "email", oemail, "password", PW,
                              "clientRole", "client_operator", NULL);
    r = call("POST", path, mgr.token, b, rid[2]);
    free(b);
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    char *op = strdup(sptest_jstr(r, "userId"));
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/clients/%s/suspend", id);
    r = call("POST", path, ADMIN, "{}", rid[3]);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    snprintf(path, sizeof(path), "/v1/clients/%s/reactivate", id);
    r = call("POST", path, ADMIN, NULL, rid[4]);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    account_free(&mgr);
    mgr = must_login(email); /* the suspension ended the first session */
    snprintf(path, sizeof(path), "/v1/clients/%s/members/%s", id, op);
    r = call("DELETE", path, mgr.token, NULL, rid[5]);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    /* refused calls change nothing and write nothing */
    snprintf(path, sizeof(path), "/v1/clients/%s/approve", id);
    r = call("POST", path, ADMIN, NULL, rid[6]);
    ck_assert_msg(r->status == 409, "%ld %s", r->status, r->body);
    sptest_resp_free(r);

    const want_row want[] = {
        {"client.created", "client", id, ADMIN_ID, "admin", rid[0]},
        {"member.created", "user", mgr.id, ADMIN_ID, "admin", rid[0]},
        {"client.approved", "client", id, ADMIN_ID, "admin", rid[1]},
        {"member.created", "user", op, mgr.id, "client_admin", rid[2]},
        {"client.suspended", "client", id, ADMIN_ID, "admin", rid[3]},
        {"client.reactivated", "client", id, ADMIN_ID, "admin", rid[4]},
        {"member.removed", "user", op, mgr.id, "client_admin", rid[5]},
    };
    const int n = (int)(sizeof(want) / sizeof(want[0]));
    char q[128];
    snprintf(q, sizeof(q), "clientId=%s&", id);
    cJSON *rows = await_rows(q, want, n);
    /* first how many of each, all in one message, then each row's fields */
    char counts[1024] = "";
    bool once = true;
    for (int i = 0; i < n; i++) {
        int c = 0;
        const cJSON *row;
        cJSON_ArrayForEach(row, rows) if (row_is(row, &want[i])) c++;
        once = once && c == 1;
        size_t used = strlen(counts);
        snprintf(counts + used, sizeof(counts) - used, "%s%s by %s: %d", i ? ", " : "",
                 want[i].action, want[i].actor_role, c);
    }
    ck_assert_msg(once, "each change once: %s", counts);
    assert_rows(rows, want, n, id);
    /* each once in all: no copy under another request id either */
    ck_assert_int_eq(count_rows(rows, "client.created", id), 1);
    ck_assert_int_eq(count_rows(rows, "client.approved", id), 1);
    ck_assert_int_eq(count_rows(rows, "client.suspended", id), 1);
    ck_assert_int_eq(count_rows(rows, "client.reactivated", id), 1);
    ck_assert_int_eq(count_rows(rows, "member.created", mgr.id), 1);
    ck_assert_int_eq(count_rows(rows, "member.created", op), 1);
    ck_assert_int_eq(count_rows(rows, "member.removed", op), 1);
    const cJSON *it;
    cJSON_ArrayForEach(it, rows)
    {
        const char *rr = item_str(it, "requestId");
        ck_assert_msg(rr == NULL || strcmp(rr, rid[6]) != 0, "the refused call was audited");
    }
    cJSON_Delete(rows);
    /* the same rows unfiltered, and by action */
    rows = audit_rows(ADMIN, "", 500, NULL);
    ck_assert_int_eq(count_rows(rows, "client.created", id), 1);
    cJSON_Delete(rows);
    snprintf(q, sizeof(q), "clientId=%s&action=member.created&", id);
    rows = audit_rows(ADMIN, q, 500, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(rows), 2);
    ck_assert_int_eq(count_rows(rows, "member.created", NULL), 2);
    cJSON_Delete(rows);
    free(op);
    free(id);
    account_free(&mgr);
}
END_TEST

START_TEST(audit_is_tenant_scoped)
{
    tenant a = new_tenant("scope-a", true, true);
    tenant bt = new_tenant("scope-b", true, false);
    account app = new_app_user("scope-app");
    char qa[128], qb[128];
    snprintf(qa, sizeof(qa), "clientId=%s&", a.id);
    snprintf(qb, sizeof(qb), "clientId=%s&", bt.id);
    /* wait until both clients' rows are there */
    const want_row wa[] = {{"client.approved", "client", a.id, ADMIN_ID, "admin", ""},
                           {"member.created", "user", a.op.id, a.mgr.id, "client_admin", ""}};
    const want_row wb[] = {{"client.approved", "client", bt.id, ADMIN_ID, "admin", ""}};
    cJSON *rows_a = await_rows(qa, wa, 2);
    cJSON *rows_b = await_rows(qb, wb, 1);
    ck_assert_int_ge(cJSON_GetArraySize(rows_a), 4); /* created, member, member, approved */
    const cJSON *it;
    cJSON_ArrayForEach(it, rows_a) ck_assert_str_eq(item_str(it, "clientId"), a.id);
    cJSON_ArrayForEach(it, rows_b) ck_assert_str_eq(item_str(it, "clientId"), bt.id);

    /* the admin sees both unfiltered */
    cJSON *all = audit_rows(ADMIN, "", 500, NULL);
    ck_assert_int_eq(count_rows(all, "client.created", a.id), 1);
    ck_assert_int_eq(count_rows(all, "client.created", bt.id), 1);
    cJSON_Delete(all);

    /* a client_admin of either role sees its own client's rows only */
    const char *own[] = {a.mgr.token, a.op.token};
    for (int i = 0; i < 2; i++) {
        cJSON *mine = audit_rows(own[i], "", 500, NULL);
        ck_assert_int_eq(cJSON_GetArraySize(mine), cJSON_GetArraySize(rows_a));
        cJSON_ArrayForEach(it, mine) ck_assert_str_eq(item_str(it, "clientId"), a.id);
        ck_assert_int_eq(count_rows(mine, "client.created", a.id), 1);
        ck_assert_int_eq(count_rows(mine, "client.created", bt.id), 0);
        cJSON_Delete(mine);
        mine = audit_rows(own[i], qa, 500, NULL);
        ck_assert_int_eq(cJSON_GetArraySize(mine), cJSON_GetArraySize(rows_a));
        cJSON_Delete(mine);
        /* asking for another client's rows never shows them */
        long st = 0;
        cJSON *theirs = audit_rows(own[i], qb, 500, &st);
        if (theirs != NULL) {
            cJSON_ArrayForEach(it, theirs) ck_assert_str_eq(item_str(it, "clientId"), a.id);
            cJSON_Delete(theirs);
        }
        ck_assert_msg(st == 404, "another client's rows: %ld", st);
    }
    cJSON *mine_b = audit_rows(bt.mgr.token, "", 500, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(mine_b), cJSON_GetArraySize(rows_b));
    ck_assert_int_eq(count_rows(mine_b, "client.created", a.id), 0);
    cJSON_Delete(mine_b);

    /* app users and strangers never */
    sptest_resp *r = call("GET", "/v1/audit", app.token, NULL, NULL);
    ck_assert_msg(r->status == 403, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    EXPECT("GET", "/v1/audit?limit=0", app.token, NULL, 403);
    r = call("GET", "/v1/audit", NULL, NULL, NULL);
    ck_assert_msg(r->status == 401, "%ld %s", r->status, r->body);
    sptest_resp_free(r);

    /* filters */
    char q[512];
    snprintf(q, sizeof(q), "clientId=%s&action=client.created&", a.id);
    cJSON *f = audit_rows(ADMIN, q, 500, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(f), 1);
    ck_assert_str_eq(sub_str(cJSON_GetArrayItem(f, 0), "target", "id"), a.id);
    const char *created_at = item_str(cJSON_GetArrayItem(f, 0), "at");
    snprintf(q, sizeof(q), "clientId=%s&from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z&", a.id);
    cJSON *none = audit_rows(ADMIN, q, 500, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(none), 0);
    cJSON_Delete(none);
    snprintf(q, sizeof(q), "clientId=%s&action=client.created&from=%s&", a.id, created_at);
    cJSON *from = audit_rows(ADMIN, q, 500, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(from), 1);
    cJSON_Delete(from);
    snprintf(q, sizeof(q), "clientId=%s&to=2000-01-01T00:00:00Z&", a.id);
    none = audit_rows(ADMIN, q, 500, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(none), 0);
    cJSON_Delete(none);
    cJSON_Delete(f);

    /* paging: limit=1 gives each row once, in the same order */
    cJSON *paged = audit_rows(ADMIN, qa, 1, NULL);
    cJSON *whole = audit_rows(ADMIN, qa, 500, NULL);
    ck_assert_int_eq(cJSON_GetArraySize(paged), cJSON_GetArraySize(whole));
    for (int i = 0; i < cJSON_GetArraySize(paged); i++)
        ck_assert_str_eq(item_str(cJSON_GetArrayItem(paged, i), "id"),
                         item_str(cJSON_GetArrayItem(whole, i), "id"));
    cJSON_Delete(paged);
    cJSON_Delete(whole);

    const char *bad[] = {"/v1/audit?clientId=not-a-uuid",
                         "/v1/audit?limit=0",
                         "/v1/audit?limit=501",
                         "/v1/audit?cursor=garbage",
                         "/v1/audit?from=yesterday",
                         "/v1/audit?from=2001-01-02T00:00:00Z&to=2001-01-01T00:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = call("GET", bad[i], ADMIN, NULL, NULL);
        ck_assert_msg(r->status == 400, "%s: %ld %s", bad[i], r->status, r->body);
        sptest_resp_free(r);
    }
    cJSON_Delete(rows_a);
    cJSON_Delete(rows_b);
    account_free(&app);
    tenant_free(&bt);
    tenant_free(&a);
}
END_TEST

START_TEST(account_deletion_is_audited_once)
{
    account u = new_app_user("audit-del");
    char rid[64];
    spcrypto_uuid_v4(rid);
    sptest_resp *r = call("DELETE", "/v1/me", u.token, NULL, rid);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    const want_row want[] = {{"user.deleted", "user", u.id, u.id, "app_user", rid}};
    cJSON *rows = await_rows("action=user.deleted&", want, 1);
    assert_rows(rows, want, 1, NULL);
    ck_assert_int_eq(count_rows(rows, "user.deleted", u.id), 1);
    cJSON_Delete(rows);
    account_free(&u);
}
END_TEST

static Suite *tenancy_suspend_suite(void)
{
    Suite *s = suite_create("tenancy_suspend");
    TCase *ts = tcase_create("suspension");
    tcase_set_timeout(ts, 120);
    tcase_add_test(ts, suspension_through_the_first_gateway);
    tcase_add_test(ts, suspension_through_the_second_gateway);
    suite_add_tcase(s, ts);
    TCase *ta = tcase_create("audit");
    tcase_set_timeout(ta, 120);
    tcase_add_test(ta, audit_records_each_change_once);
    tcase_add_test(ta, audit_is_tenant_scoped);
    tcase_add_test(ta, account_deletion_is_audited_once);
    suite_add_tcase(s, ta);
    return s;
}

int main(void)
{
    E = sptest_start("tenancy_suspend", SPTEST_ALL);
    static const char *const gw_env[] = {"SP_BUS_TIMEOUT_MS=15000", NULL};
    sptest_start_service(E, "auth", NULL);
    sptest_start_service(E, "tenancy", NULL);
    sptest_start_service(E, "gateway", gw_env);
    /* a second gateway on its own port: the harness gives every gateway SP_HTTP_ADDR on
     * e->http_port, and extra_env overrides it */
    int b_port = sptest_free_port();
    char b_addr[64];
    snprintf(b_addr, sizeof(b_addr), "SP_HTTP_ADDR=127.0.0.1:%d", b_port);
    const char *const gw2_env[] = {"SP_BUS_TIMEOUT_MS=15000", b_addr, NULL};
    sptest_start_service(E, "gateway", gw2_env);
    snprintf(B_BASE, sizeof(B_BASE), "http://127.0.0.1:%d", b_port);
    char url[160];
    snprintf(url, sizeof(url), "%s/healthz", B_BASE);
    if (!sptest_wait_http(url, 200, 30000)) {
        fprintf(stderr, "the second gateway does not answer on %s\n", url);
        sptest_mark_failed(E);
        sptest_stop(E);
        return EXIT_FAILURE;
    }

    return run_suite_as_admin(tenancy_suspend_suite(), admin_id_outside_a_test);
}
