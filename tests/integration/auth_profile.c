/* auth_profile.c -- end-to-end test of the caller's own account and the memberships:
 * PATCH /v1/me, POST /v1/me/password (the other sessions revoked at once), DELETE /v1/me
 * (anonymised, email free again, the audit event on SP_AUDIT and the outbox emptied), and
 * sp.auth.v1.SetMembership / RemoveMembership called over NATS as the spctl user, on real
 * NATS, PostgreSQL and Redis through the gateway and the auth service. */
#include <check.h>
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "sp/audit/v1/audit.pb-c.h"
#include "sp/auth/v1/auth.pb-c.h"
#include "sp/v1/envelope.pb-c.h"
#include "spcrypto.h"
#include "spjwt.h"
#include "sptest.h"

static sptest_env *E;
static sptest_proc *AUTH;

/* ---- helpers --------------------------------------------------------------------------- */

static sptest_resp *login(const char *email, const char *password)
{
    char *b = sptest_json_obj("email", email, "password", password, NULL);
    sptest_resp *r = sptest_json(E, "POST", "/v1/auth/login", NULL, b);
    free(b);
    return r;
}

/* Registers (201 asserted) and returns the new user's id, malloc'd. */
static char *must_register(const char *name, const char *email, const char *password)
{
    char *b = sptest_json_obj("name", name, "email", email, "password", password, NULL);
    sptest_resp *r = sptest_json(E, "POST", "/v1/auth/register", NULL, b);
    free(b);
    ck_assert_msg(r->status == 201, "register %s: %ld %s", email, r->status, r->body);
    char *id = strdup(sptest_jstr(r, "id"));
    sptest_resp_free(r);
    return id;
}

/* A session: its access and refresh tokens, malloc'd. */
typedef struct {
    char *access, *refresh;
} session;

static session must_login(const char *email, const char *password)
{
    sptest_resp *r = login(email, password);
    ck_assert_msg(r->status == 200, "login %s: %ld %s", email, r->status, r->body);
    session s = {strdup(sptest_jstr(r, "accessToken")), strdup(sptest_jstr(r, "refreshToken"))};
    sptest_resp_free(r);
    return s;
}

static void session_free(session *s)
{
    free(s->access);
    free(s->refresh);
}

static void assert_error(const sptest_resp *r, long status, const char *code)
{
    ck_assert_msg(r->status == status, "want %ld, got %ld %s", status, r->status, r->body);
    const char *c = sptest_jstr(r, "error.code");
    ck_assert_msg(c != NULL && strcmp(c, code) == 0, "want code %s: %s", code, r->body);
}

/* A call that must fail with 'status' and 'code'; the response freed. */
static void expect_error(const char *method, const char *path, const char *token, const char *body,
                         long status, const char *code)
{
    sptest_resp *r = sptest_json(E, method, path, token, body);
    assert_error(r, status, code);
    sptest_resp_free(r);
}

/* The status of a call, the response freed. */
static long status_of(const char *method, const char *path, const char *token, const char *body)
{
    sptest_resp *r = sptest_json(E, method, path, token, body);
    long st = r->status;
    sptest_resp_free(r);
    return st;
}

static long me_status(const char *token)
{
    return status_of("GET", "/v1/me", token, NULL);
}

/* true once GET /v1/me answers 'want', polling every 20 ms for at most 'ms'. */
static bool wait_me_status(const char *token, long want, int ms)
{
    for (int waited = 0;; waited += 20) {
        if (me_status(token) == want) return true;
        if (waited >= ms) return false;
        usleep(20 * 1000);
    }
}

/* A value of the stack's secrets.env ("K=V" or "export K=V", quotes allowed). */
static void secret(char *out, size_t len, const char *key)
{
    FILE *f = fopen(E->secrets, "r");
    char line[1024];
    size_t klen = strlen(key);
    out[0] = '\0';
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *s = line;
        if (strncmp(s, "export ", 7) == 0) s += 7;
        if (strncmp(s, key, klen) != 0 || s[klen] != '=') continue;
        s += klen + 1;
        size_t n = strlen(s);
        if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
            s[n - 1] = '\0';
            s++;
        }
        snprintf(out, len, "%s", s);
    }
    fclose(f);
    ck_assert_msg(out[0] != '\0', "no %s in %s", key, E->secrets);
}

static PGconn *pg(void)
{
    PGconn *c = PQconnectdb(E->db_url);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* The single value of a one-parameter query, malloc'd ("" for NULL); NULL when no row. */
static char *pg_value(PGconn *c, const char *sql, const char *param)
{
    const char *params[] = {param};
    PGresult *res = PQexecParams(c, sql, param ? 1 : 0, NULL, param ? params : NULL, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
    char *v = PQntuples(res) > 0 ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    return v;
}

/* The NATS connection of the operator (spctl: may publish on sp.auth.v1.* and read
 * SP_AUDIT), as tenancy would call auth. */
static natsConnection *spctl_conn(void)
{
    char pw[256];
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    secret(pw, sizeof(pw), "SP_NATS_SPCTL_PASSWORD");
    ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
    ck_assert_int_eq(natsOptions_SetURL(o, E->nats_url), NATS_OK);
    ck_assert_int_eq(natsOptions_SetUserInfo(o, "spctl", pw), NATS_OK);
    natsStatus s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    ck_assert_msg(s == NATS_OK, "connect as spctl: %s", natsStatus_GetText(s));
    return nc;
}

static void nats_done(natsConnection *nc)
{
    natsConnection_Destroy(nc);
    nats_Close();
}

/* Sends 'in' to sp.auth.v1.<method> inside an sp.v1.Request whose ctx.role is 'role'.
 * Returns "" on a result, else the error code (static storage). */
static const char *bus_call(natsConnection *nc, const char *method, const char *role,
                            const ProtobufCMessage *in)
{
    static char code[64];
    char subject[96];
    uint8_t payload[512], buf[1024];

    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.request_id = "it-auth-profile";
    ctx.role = (char *)role;
    ctx.has_timeout_us = 1;
    ctx.timeout_us = 5000000;
    Sp__V1__Request req = SP__V1__REQUEST__INIT;
    req.ctx = &ctx;
    req.has_payload = 1;
    req.payload.len = protobuf_c_message_pack(in, payload);
    req.payload.data = payload;
    size_t len = sp__v1__request__pack(&req, buf);

    snprintf(subject, sizeof(subject), "sp.auth.v1.%s", method);
    natsMsg *m = NULL;
    ck_assert_int_eq(natsConnection_Request(&m, nc, subject, (const char *)buf, (int)len, 5000),
                     NATS_OK);
    Sp__V1__Reply *rep = sp__v1__reply__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                               (const uint8_t *)natsMsg_GetData(m));
    ck_assert_ptr_nonnull(rep);
    if (rep->result_case == SP__V1__REPLY__RESULT_ERROR)
        snprintf(code, sizeof(code), "%s", rep->error->code);
    else
        code[0] = '\0';
    sp__v1__reply__free_unpacked(rep, NULL);
    natsMsg_Destroy(m);
    return code;
}

static const char *set_membership(natsConnection *nc, const char *role, const char *user_id,
                                  const char *client_id, const char *client_role)
{
    Sp__Auth__V1__SetMembershipRequest in = SP__AUTH__V1__SET_MEMBERSHIP_REQUEST__INIT;
    in.user_id = (char *)user_id;
    in.client_id = (char *)client_id;
    in.client_role = (char *)client_role;
    return bus_call(nc, "SetMembership", role, &in.base);
}

static const char *remove_membership(natsConnection *nc, const char *role, const char *user_id,
                                     const char *client_id)
{
    Sp__Auth__V1__RemoveMembershipRequest in = SP__AUTH__V1__REMOVE_MEMBERSHIP_REQUEST__INIT;
    in.user_id = (char *)user_id;
    in.client_id = (char *)client_id;
    return bus_call(nc, "RemoveMembership", role, &in.base);
}

/* A registered user with one session. */
typedef struct {
    char email[128];
    char *id;
    session s;
} account;

static account must_account(const char *tag, const char *password)
{
    account a;
    sptest_unique_email(a.email, sizeof(a.email), tag);
    a.id = must_register("Profile Tester", a.email, password);
    a.s = must_login(a.email, password);
    return a;
}

static void account_free(account *a)
{
    free(a->id);
    session_free(&a->s);
}

/* ---- PATCH /v1/me ---------------------------------------------------------------------- */

START_TEST(patch_name_returns_the_profile_and_keeps_it)
{
    account a = must_account("patch", "password-one");
    sptest_resp *r = sptest_json(E, "PATCH", "/v1/me", a.s.access, "{\"name\":\"Bia Lima\"}");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Bia Lima");
    ck_assert_str_eq(sptest_jstr(r, "id"), a.id);
    ck_assert_str_eq(sptest_jstr(r, "email"), a.email);
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user");
    ck_assert_ptr_nonnull(sptest_jstr(r, "createdAt"));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "clientId")));
    sptest_resp_free(r);

    r = sptest_json(E, "GET", "/v1/me", a.s.access, NULL);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Bia Lima");
    sptest_resp_free(r);
    account_free(&a);
}
END_TEST

START_TEST(patch_empty_object_answers_the_profile_unchanged)
{
    account a = must_account("patch-empty", "password-one");
    sptest_resp *r = sptest_json(E, "PATCH", "/v1/me", a.s.access, "{}");
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Profile Tester");
    ck_assert_str_eq(sptest_jstr(r, "email"), a.email);
    sptest_resp_free(r);
    account_free(&a);
}

END_TEST

/* name is not optional: null cannot clear it (api.md: null clears an optional field) */
START_TEST(patch_null_name_is_refused)
{
    account a = must_account("patch-null", "password-one");
    sptest_resp *r = sptest_json(E, "PATCH", "/v1/me", a.s.access, "{\"name\":null}");
    ck_assert_msg(r->status == 400, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "error.code"), "validation_failed");
    ck_assert_str_eq(sptest_jstr(r, "error.fields.name"), "must not be null");
    sptest_resp_free(r);
    r = sptest_json(E, "GET", "/v1/me", a.s.access, NULL);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Profile Tester");
    sptest_resp_free(r);
    account_free(&a);
}
END_TEST

START_TEST(patch_bad_names_are_refused)
{
    account a = must_account("patch-bad", "password-one");
    char long_name[200], body[256];
    memset(long_name, 'x', 121);
    long_name[121] = '\0';
    const char *bad[] = {"{\"name\":\"\"}", "{\"name\":\"   \"}", "{\"name\":\"a\\u0001b\"}",
                         "{\"name\":123}", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        sptest_resp *r = sptest_json(E, "PATCH", "/v1/me", a.s.access, bad[i]);
        assert_error(r, 400, "validation_failed");
        ck_assert_msg(sptest_jstr(r, "error.fields.name") != NULL, "%s: %s", bad[i], r->body);
        sptest_resp_free(r);
    }
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", long_name);
    sptest_resp *r = sptest_json(E, "PATCH", "/v1/me", a.s.access, body);
    assert_error(r, 400, "validation_failed");
    sptest_resp_free(r);
    long_name[120] = '\0'; /* exactly 120: fine */
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", long_name);
    ck_assert_int_eq(status_of("PATCH", "/v1/me", a.s.access, body), 200);
    account_free(&a);
}
END_TEST

START_TEST(patch_unknown_or_forbidden_fields_are_refused)
{
    account a = must_account("patch-mass", "password-one");
    const char *bad[] = {"{\"nickname\":\"x\"}", "{\"name\":\"Evil\",\"role\":\"admin\"}",
                         "{\"name\":\"Evil\",\"email\":\"evil@example.com\"}",
                         "{\"clientId\":\"00000000-0000-4000-8000-000000000000\"}", NULL};
    for (int i = 0; bad[i] != NULL; i++) {
        sptest_resp *r = sptest_json(E, "PATCH", "/v1/me", a.s.access, bad[i]);
        assert_error(r, 400, "validation_failed");
        sptest_resp_free(r);
    }
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", a.s.access, NULL);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Profile Tester");
    ck_assert_str_eq(sptest_jstr(r, "email"), a.email);
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user");
    sptest_resp_free(r);
    account_free(&a);
}
END_TEST

START_TEST(profile_routes_need_a_token)
{
    expect_error("PATCH", "/v1/me", NULL, "{\"name\":\"x\"}", 401, "unauthenticated");
    ck_assert_int_eq(status_of("PATCH", "/v1/me", NULL, "{\"name\":\"x\"}"), 401);
    ck_assert_int_eq(
        status_of("POST", "/v1/me/password", NULL,
                  "{\"currentPassword\":\"password-one\",\"newPassword\":\"password-two\"}"),
        401);
    ck_assert_int_eq(status_of("DELETE", "/v1/me", NULL, NULL), 401);
}
END_TEST

/* ---- POST /v1/me/password ------------------------------------------------------------ */

START_TEST(password_wrong_current_is_a_field_error)
{
    account a = must_account("pw-wrong", "password-one");
    sptest_resp *r = sptest_json(E, "POST", "/v1/me/password", a.s.access,
                                 "{\"currentPassword\":\"not-it-at-all\","
                                 "\"newPassword\":\"password-two\"}");
    assert_error(r, 400, "validation_failed");
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.currentPassword"));
    sptest_resp_free(r);
    r = login(a.email, "password-one"); /* unchanged */
    ck_assert_int_eq(r->status, 200);
    sptest_resp_free(r);
    ck_assert_int_eq(me_status(a.s.access), 200); /* nothing revoked */
    account_free(&a);
}
END_TEST

START_TEST(password_bad_bodies_are_refused)
{
    account a = must_account("pw-bad", "password-one");
    char long_pw[140], body[300];
    memset(long_pw, 'p', 129);
    long_pw[129] = '\0';
    snprintf(body, sizeof(body), "{\"currentPassword\":\"password-one\",\"newPassword\":\"%s\"}",
             long_pw);
    struct {
        const char *body, *field;
    } bad[] = {
        {"{\"currentPassword\":\"password-one\",\"newPassword\":\"short\"}", "newPassword"},
        {body, "newPassword"},
        {"{\"currentPassword\":\"password-one\"}", "newPassword"},
        {"{\"newPassword\":\"password-two\"}", "currentPassword"},
        {"{\"currentPassword\":\"password-one\",\"newPassword\":\"password-two\",\"x\":1}", "x"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sptest_resp *r = sptest_json(E, "POST", "/v1/me/password", a.s.access, bad[i].body);
        assert_error(r, 400, "validation_failed");
        char path[64];
        snprintf(path, sizeof(path), "error.fields.%s", bad[i].field);
        ck_assert_msg(sptest_jstr(r, path) != NULL, "%s: %s", bad[i].body, r->body);
        sptest_resp_free(r);
    }
    sptest_resp *r = login(a.email, "password-one");
    ck_assert_int_eq(r->status, 200);
    sptest_resp_free(r);
    account_free(&a);
}
END_TEST

START_TEST(password_change_revokes_the_other_sessions_only)
{
    account a = must_account("pw-ok", "password-one");
    session other = must_login(a.email, "password-one");
    ck_assert_int_eq(me_status(other.access), 200);

    ck_assert_int_eq(
        status_of("POST", "/v1/me/password", a.s.access,
                  "{\"currentPassword\":\"password-one\",\"newPassword\":\"password-two\"}"),
        204);
    /* the other session is dead at once, its access and its refresh token */
    expect_error("GET", "/v1/me", other.access, NULL, 401, "invalid_token");
    char *b = sptest_json_obj("refreshToken", other.refresh, NULL);
    ck_assert_int_eq(status_of("POST", "/v1/auth/refresh", NULL, b), 401);
    free(b);
    /* this one lives on, and can still refresh */
    ck_assert_int_eq(me_status(a.s.access), 200);
    b = sptest_json_obj("refreshToken", a.s.refresh, NULL);
    ck_assert_int_eq(status_of("POST", "/v1/auth/refresh", NULL, b), 200);
    free(b);
    /* the old password is refused, the new one works */
    sptest_resp *r = login(a.email, "password-one");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    r = login(a.email, "password-two");
    ck_assert_int_eq(r->status, 200);
    sptest_resp_free(r);
    session_free(&other);
    account_free(&a);
}
END_TEST

/* ---- DELETE /v1/me ----------------------------------------------------------------------- */

START_TEST(delete_with_a_body_is_refused)
{
    account a = must_account("del-body", "password-one");
    expect_error("DELETE", "/v1/me", a.s.access, "{}", 400, "bad_request");
    ck_assert_int_eq(me_status(a.s.access), 200);
    account_free(&a);
}
END_TEST

/* Waits up to 'ms' for the AuditEvent of 'action' on 'target_id' in SP_AUDIT (subject
 * 'subject'); true when found. */
static bool audit_arrives(natsConnection *nc, const char *subject, const char *action,
                          const char *target_id, int ms, char *actor, size_t actorlen)
{
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    bool found = false;

    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsSubOptions_Init(&so);
    so.Stream = "SP_AUDIT";
    so.Ordered = true;
    ck_assert_int_eq(js_SubscribeSync(&sub, js, subject, NULL, &so, &jerr), NATS_OK);
    int64_t until = (int64_t)time(NULL) * 1000 + ms;
    while (!found && (int64_t)time(NULL) * 1000 < until) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 500) != NATS_OK) continue;
        Sp__Audit__V1__AuditEvent *ev = sp__audit__v1__audit_event__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        if (ev != NULL && ev->action != NULL && ev->target_id != NULL &&
            strcmp(ev->action, action) == 0 && strcmp(ev->target_id, target_id) == 0) {
            const char *msg_id = NULL;
            found = natsMsgHeader_Get(m, "Nats-Msg-Id", &msg_id) == NATS_OK && ev->id != NULL &&
                    strcmp(msg_id, ev->id) == 0 && ev->has_occurred_at && ev->occurred_at > 0;
            snprintf(actor, actorlen, "%s", ev->actor_user_id ? ev->actor_user_id : "");
        }
        if (ev != NULL) sp__audit__v1__audit_event__free_unpacked(ev, NULL);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    return found;
}

START_TEST(delete_anonymises_revokes_audits_and_frees_the_email)
{
    account a = must_account("del", "password-one");
    session other = must_login(a.email, "password-one");

    ck_assert_int_eq(status_of("DELETE", "/v1/me", a.s.access, NULL), 204);
    /* every session is dead at once */
    expect_error("GET", "/v1/me", a.s.access, NULL, 401, "invalid_token");
    ck_assert_int_eq(me_status(other.access), 401);
    char *b = sptest_json_obj("refreshToken", other.refresh, NULL);
    ck_assert_int_eq(status_of("POST", "/v1/auth/refresh", NULL, b), 401);
    free(b);
    sptest_resp *r = login(a.email, "password-one");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);

    /* the person is anonymised, the user deactivated */
    PGconn *c = pg();
    char *name = pg_value(c,
                          "SELECT p.name || '|' || p.email || '|' || (p.deleted_at IS NOT NULL)"
                          "       || '|' || u.active || '|' || (u.deleted_at IS NOT NULL)"
                          " FROM auth.users u JOIN auth.people p ON p.id = u.person_id"
                          " WHERE u.public_id = $1::uuid",
                          a.id);
    ck_assert_ptr_nonnull(name);
    ck_assert_msg(strncmp(name, "Deleted user|deleted+", 21) == 0, "%s", name);
    ck_assert_msg(strstr(name, "@invalid|true|false|true") != NULL, "%s", name);
    ck_assert_msg(strstr(name, a.email) == NULL, "%s", name);
    free(name);

    /* the audit event reaches SP_AUDIT, carrying its id as Nats-Msg-Id; the row is gone */
    natsConnection *nc = spctl_conn();
    char actor[64] = "";
    ck_assert(audit_arrives(nc, "sp.audit.platform.auth", "user.deleted", a.id, 10000, actor,
                            sizeof(actor)));
    ck_assert_str_eq(actor, a.id);
    nats_done(nc);
    char *left = NULL;
    for (int i = 0; i < 50; i++) {
        free(left);
        left = pg_value(c, "SELECT count(*)::text FROM auth.outbox", NULL);
        if (strcmp(left, "0") == 0) break;
        usleep(100 * 1000);
    }
    ck_assert_str_eq(left, "0");
    free(left);
    PQfinish(c);

    /* the email is free again */
    char *again = must_register("New Owner", a.email, "password-three");
    ck_assert_str_ne(again, a.id);
    session s2 = must_login(a.email, "password-three");
    ck_assert_int_eq(me_status(s2.access), 200);
    free(again);
    session_free(&s2);
    session_free(&other);
    account_free(&a);
}
END_TEST

/* ---- memberships over the bus -------------------------------------------------------- */

START_TEST(set_membership_shows_in_the_next_token_and_me)
{
    account a = must_account("member", "password-one");
    char client[SPCRYPTO_UUID_LEN];
    spcrypto_uuid_v4(client);
    natsConnection *nc = spctl_conn();
    ck_assert_str_eq(set_membership(nc, "admin", a.id, client, "client_manager"), "");
    nats_done(nc);

    session s = must_login(a.email, "password-one");
    char key[512];
    secret(key, sizeof(key), "SP_JWT_SECRET");
    spjwt_keys k = {.key = (const uint8_t *)key,
                    .keylen = strlen(key),
                    .issuer = "smartpark",
                    .audience = "smartpark-api",
                    .leeway_s = 5};
    spjwt_claims cl;
    ck_assert_int_eq(spjwt_verify(&cl, &k, s.access, time(NULL)), SP_OK);
    ck_assert_str_eq(cl.role, "client_admin");
    ck_assert_str_eq(cl.client_id, client);
    ck_assert_str_eq(cl.client_role, "client_manager");

    sptest_resp *r = sptest_json(E, "GET", "/v1/me", s.access, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(sptest_jstr(r, "role"), "client_admin");
    ck_assert_str_eq(sptest_jstr(r, "clientId"), client);
    ck_assert_str_eq(sptest_jstr(r, "clientRole"), "client_manager");
    sptest_resp_free(r);
    session_free(&s);
    account_free(&a);
}
END_TEST

START_TEST(changed_membership_revokes_the_old_claims)
{
    account a = must_account("member-chg", "password-one");
    char client[SPCRYPTO_UUID_LEN];
    spcrypto_uuid_v4(client);
    natsConnection *nc = spctl_conn();
    ck_assert_str_eq(set_membership(nc, "service", a.id, client, "client_manager"), "");
    session s = must_login(a.email, "password-one");
    /* the same membership again changes nothing */
    ck_assert_str_eq(set_membership(nc, "service", a.id, client, "client_manager"), "");
    ck_assert_int_eq(me_status(s.access), 200);
    /* a demotion: no token may keep saying client_manager */
    ck_assert_str_eq(set_membership(nc, "service", a.id, client, "client_operator"), "");
    ck_assert_int_eq(me_status(s.access), 401);
    nats_done(nc);
    session s2 = must_login(a.email, "password-one");
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", s2.access, NULL);
    ck_assert_str_eq(sptest_jstr(r, "clientRole"), "client_operator");
    sptest_resp_free(r);
    session_free(&s2);
    session_free(&s);
    account_free(&a);
}
END_TEST

START_TEST(remove_membership_revokes_the_sessions)
{
    account a = must_account("member-rm", "password-one");
    char client[SPCRYPTO_UUID_LEN], other[SPCRYPTO_UUID_LEN];
    spcrypto_uuid_v4(client);
    spcrypto_uuid_v4(other);
    natsConnection *nc = spctl_conn();
    ck_assert_str_eq(set_membership(nc, "admin", a.id, client, "client_operator"), "");
    session s = must_login(a.email, "password-one");
    ck_assert_int_eq(me_status(s.access), 200);

    ck_assert_str_eq(remove_membership(nc, "admin", a.id, other), "not_found");
    ck_assert_int_eq(me_status(s.access), 200);
    ck_assert_str_eq(remove_membership(nc, "admin", a.id, client), "");
    /* a call not made through the gateway reaches it by auth's sp.auth.changed.sessions
     * message: within a message's time (a revoking call through the gateway: at once) */
    ck_assert(wait_me_status(s.access, 401, 2000));
    ck_assert_str_eq(remove_membership(nc, "admin", a.id, client), "not_found");
    nats_done(nc);

    session s2 = must_login(a.email, "password-one");
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", s2.access, NULL);
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "clientId")));
    sptest_resp_free(r);
    session_free(&s2);
    session_free(&s);
    account_free(&a);
}
END_TEST

START_TEST(memberships_refuse_other_callers)
{
    account a = must_account("member-403", "password-one");
    char client[SPCRYPTO_UUID_LEN];
    spcrypto_uuid_v4(client);
    natsConnection *nc = spctl_conn();
    ck_assert_str_eq(set_membership(nc, "app_user", a.id, client, "client_manager"), "forbidden");
    ck_assert_str_eq(set_membership(nc, "client_admin", a.id, client, "client_manager"),
                     "forbidden");
    ck_assert_str_eq(set_membership(nc, NULL, a.id, client, "client_manager"), "forbidden");
    ck_assert_str_eq(remove_membership(nc, "app_user", a.id, client), "forbidden");
    nats_done(nc);
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", a.s.access, NULL);
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user"); /* nothing was written */
    sptest_resp_free(r);
    account_free(&a);
}
END_TEST

START_TEST(set_membership_checks_its_fields_and_the_user)
{
    account a = must_account("member-400", "password-one");
    char client[SPCRYPTO_UUID_LEN], nobody[SPCRYPTO_UUID_LEN];
    spcrypto_uuid_v4(client);
    spcrypto_uuid_v4(nobody);
    natsConnection *nc = spctl_conn();
    ck_assert_str_eq(set_membership(nc, "admin", a.id, client, "owner"), "validation_failed");
    ck_assert_str_eq(set_membership(nc, "admin", a.id, client, NULL), "validation_failed");
    ck_assert_str_eq(set_membership(nc, "admin", "not-a-uuid", client, "client_manager"),
                     "validation_failed");
    ck_assert_str_eq(set_membership(nc, "admin", a.id, "x", "client_manager"), "validation_failed");
    ck_assert_str_eq(set_membership(nc, "admin", nobody, client, "client_manager"), "not_found");
    ck_assert_str_eq(remove_membership(nc, "admin", nobody, client), "not_found");
    nats_done(nc);
    account_free(&a);
}
END_TEST

/* Last: the outbox thread stops with the process, cleanly and without a leak, after it
 * has published. */
START_TEST(auth_stops_cleanly_with_its_outbox)
{
    account a = must_account("term", "password-one");
    ck_assert_int_eq(status_of("DELETE", "/v1/me", a.s.access, NULL), 204);
    PGconn *c = pg();
    char *left = NULL;
    for (int i = 0; i < 50; i++) {
        free(left);
        left = pg_value(c, "SELECT count(*)::text FROM auth.outbox", NULL);
        if (strcmp(left, "0") == 0) break;
        usleep(100 * 1000);
    }
    ck_assert_str_eq(left, "0");
    free(left);
    PQfinish(c);

    sptest_kill(AUTH, SIGTERM);
    ck_assert_msg(sptest_log_has(AUTH, 0, "\"msg\":\"stopped\""), "no clean stop in %s", AUTH->log);
    ck_assert_msg(!sptest_log_has_sanitizer(AUTH, 0), "sanitizer report in %s", AUTH->log);
    account_free(&a);
}
END_TEST

static Suite *auth_profile_suite(void)
{
    Suite *s = suite_create("auth_profile");
    TCase *tc = tcase_create("profile");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, patch_name_returns_the_profile_and_keeps_it);
    tcase_add_test(tc, patch_empty_object_answers_the_profile_unchanged);
    tcase_add_test(tc, patch_null_name_is_refused);
    tcase_add_test(tc, patch_bad_names_are_refused);
    tcase_add_test(tc, patch_unknown_or_forbidden_fields_are_refused);
    tcase_add_test(tc, profile_routes_need_a_token);
    tcase_add_test(tc, password_wrong_current_is_a_field_error);
    tcase_add_test(tc, password_bad_bodies_are_refused);
    tcase_add_test(tc, password_change_revokes_the_other_sessions_only);
    tcase_add_test(tc, delete_with_a_body_is_refused);
    tcase_add_test(tc, delete_anonymises_revokes_audits_and_frees_the_email);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("memberships");
    tcase_set_timeout(tm, 60);
    tcase_add_test(tm, set_membership_shows_in_the_next_token_and_me);
    tcase_add_test(tm, changed_membership_revokes_the_old_claims);
    tcase_add_test(tm, remove_membership_revokes_the_sessions);
    tcase_add_test(tm, memberships_refuse_other_callers);
    tcase_add_test(tm, set_membership_checks_its_fields_and_the_user);
    suite_add_tcase(s, tm);
    TCase *tt = tcase_create("shutdown"); /* last: it stops the auth service */
    tcase_set_timeout(tt, 60);
    tcase_add_test(tt, auth_stops_cleanly_with_its_outbox);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    E = sptest_start("auth_profile", SPTEST_ALL);
    /* argon2id on a loaded 2-core machine can take seconds: this suite tests behaviour,
     * not deadlines, so the gateway waits longer than its default 2 s */
    static const char *const gw_env[] = {"SP_BUS_TIMEOUT_MS=10000", NULL};
    AUTH = sptest_start_service(E, "auth", NULL);
    sptest_start_service(E, "gateway", gw_env);

    SRunner *sr = srunner_create(auth_profile_suite());
    srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed > 0) sptest_mark_failed(E);
    sptest_stop(E);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
