/* auth_members.c -- end-to-end test of the calls tenancy makes to auth for client members
 * and client status: sp.auth.v1.CreateMember (pending, cannot log in), ActivateMember,
 * DiscardMember, the cleaner of stale pending members and SetClientSuspended (sessions
 * revoked at once, login and refresh refused), called over NATS as the spctl user, on real
 * NATS, PostgreSQL and Redis through the gateway and the auth service. */
#include <check.h>
#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "bus_fixture.h"
#include "sp/audit/v1/audit.pb-c.h"
#include "sp/auth/v1/auth.pb-c.h"
#include "sp/v1/envelope.pb-c.h"
#include "spcrypto.h"
#include "sptest.h"

static sptest_env *E;
static sptest_proc *AUTH;

#define PASSWORD "member-password"

/* ---- HTTP helpers ---------------------------------------------------------------------- */

static sptest_resp *login(const char *email, const char *password)
{
    char *b = sptest_json_obj("email", email, "password", password, NULL);
    sptest_resp *r = sptest_json(E, "POST", "/v1/auth/login", NULL, b);
    free(b);
    return r;
}

static sptest_resp *refresh(const char *token)
{
    char *b = sptest_json_obj("refreshToken", token, NULL);
    sptest_resp *r = sptest_json(E, "POST", "/v1/auth/refresh", NULL, b);
    free(b);
    return r;
}

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

static void expect_login_error(const char *email, const char *password, long status,
                               const char *code)
{
    sptest_resp *r = login(email, password);
    assert_error(r, status, code);
    sptest_resp_free(r);
}

static long me_status(const char *token)
{
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", token, NULL);
    long st = r->status;
    sptest_resp_free(r);
    return st;
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

/* ---- PostgreSQL ------------------------------------------------------------------------ */

static PGconn *pg(void)
{
    PGconn *c = PQconnectdb(E->db_url);
    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "%s", PQerrorMessage(c));
    return c;
}

/* The single value of a one-parameter query, malloc'd ("" for NULL); NULL when no row. */
static char *pg_value(const char *sql, const char *param)
{
    PGconn *c = pg();
    const char *params[] = {param};
    PGresult *res = PQexecParams(c, sql, param ? 1 : 0, NULL, param ? params : NULL, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK,
                  "%s", PQerrorMessage(c));
    char *v = PQntuples(res) > 0 ? strdup(PQgetvalue(res, 0, 0)) : NULL;
    PQclear(res);
    PQfinish(c);
    return v;
}

/* pg_value of a count, as a number. */
static long pg_count(const char *sql, const char *param)
{
    char *v = pg_value(sql, param);
    ck_assert_ptr_nonnull(v);
    long n = strtol(v, NULL, 10);
    free(v);
    return n;
}

static long users_of_key(const char *key)
{
    return pg_count("SELECT count(*) FROM auth.users WHERE create_key = $1", key);
}

static long people_of_email(const char *email)
{
    return pg_count("SELECT count(*) FROM auth.people WHERE lower(email) = lower($1)", email);
}

/* ---- the bus, as tenancy ----------------------------------------------------------------- */

static natsConnection *NC; /* spctl's connection, made for each test (checked fixture) */

/* Sends 'in' to sp.auth.v1.<method> as a caller of 'role'. */
static bus_result bus_call(const char *method, const char *role, const ProtobufCMessage *in,
                           const ProtobufCMessageDescriptor *out_desc)
{
    char subject[96];
    snprintf(subject, sizeof(subject), "sp.auth.v1.%s", method);
    return bus_request(NC, subject, role, NULL, in, out_desc);
}

static void nats_setup(void)
{
    NC = bus_connect_as(E, "spctl", "SP_NATS_SPCTL_PASSWORD");
}

static void nats_teardown(void)
{
    natsConnection_Destroy(NC);
    NC = NULL;
    nats_Close();
}

/* One member to create: its key, email and client, made unique per call. */
typedef struct {
    char key[64], email[128], client[SPCRYPTO_UUID_LEN];
    const char *role; /* client_role */
} member;

static member new_member(const char *tag)
{
    member m;
    char id[SPCRYPTO_UUID_LEN];
    spcrypto_uuid_v4(id);
    snprintf(m.key, sizeof(m.key), "tenancy.%s", id);
    sptest_unique_email(m.email, sizeof(m.email), tag);
    spcrypto_uuid_v4(m.client);
    m.role = "client_manager";
    return m;
}

static bus_result create_as(const char *role, const member *m)
{
    Sp__Auth__V1__CreateMemberRequest in = SP__AUTH__V1__CREATE_MEMBER_REQUEST__INIT;
    in.key = (char *)m->key;
    in.name = "Member Tester";
    in.email = (char *)m->email;
    in.password = PASSWORD;
    in.client_id = (char *)m->client;
    in.client_role = (char *)m->role;
    return bus_call("CreateMember", role, &in.base, &sp__auth__v1__create_member_reply__descriptor);
}

/* CreateMember as a service, which must succeed; the user id, malloc'd. */
static char *must_create(const member *m)
{
    bus_result r = create_as("service", m);
    ck_assert_msg(r.code[0] == '\0', "create %s: %s %s", m->email, r.code, r.fields);
    const Sp__Auth__V1__CreateMemberReply *out = (const void *)r.out;
    ck_assert(spcrypto_uuid_valid(out->user_id));
    ck_assert_str_eq(out->email, m->email);
    ck_assert_str_eq(out->name, "Member Tester");
    ck_assert(out->has_created_at && out->created_at > 0);
    char *id = strdup(out->user_id);
    bus_result_free(&r);
    return id;
}

static const char *key_call(const char *method, const char *role, const char *key)
{
    static bus_result r;
    /* the two requests have the same single field */
    Sp__Auth__V1__ActivateMemberRequest a = SP__AUTH__V1__ACTIVATE_MEMBER_REQUEST__INIT;
    Sp__Auth__V1__DiscardMemberRequest d = SP__AUTH__V1__DISCARD_MEMBER_REQUEST__INIT;
    a.key = (char *)key;
    d.key = (char *)key;
    r = bus_call(
        method, role,
        strcmp(method, "ActivateMember") == 0 ? &a.base : (const ProtobufCMessage *)&d.base, NULL);
    return r.code;
}

static const char *activate(const char *key)
{
    return key_call("ActivateMember", "service", key);
}

static const char *discard(const char *key)
{
    return key_call("DiscardMember", "service", key);
}

/* SetClientSuspended as 'role'; 'suspended' -1 leaves the field out. */
static bus_result suspend_as(const char *role, const char *client, int suspended)
{
    Sp__Auth__V1__SetClientSuspendedRequest in = SP__AUTH__V1__SET_CLIENT_SUSPENDED_REQUEST__INIT;
    in.client_id = (char *)client;
    if (suspended >= 0) {
        in.has_suspended = 1;
        in.suspended = suspended != 0;
    }
    return bus_call("SetClientSuspended", role, &in.base,
                    &sp__auth__v1__set_client_suspended_reply__descriptor);
}

/* SetClientSuspended as a service, which must succeed; the sessions it revoked. */
static int must_suspend(const char *client, bool suspended)
{
    bus_result r = suspend_as("service", client, suspended ? 1 : 0);
    ck_assert_msg(r.code[0] == '\0', "suspend: %s %s", r.code, r.fields);
    const Sp__Auth__V1__SetClientSuspendedReply *out = (const void *)r.out;
    int n = out->has_sessions_revoked ? out->sessions_revoked : 0;
    bus_result_free(&r);
    return n;
}

/* A member created and activated, with one session. */
static char *must_active_member(const member *m, session *s)
{
    char *id = must_create(m);
    ck_assert_str_eq(activate(m->key), "");
    *s = must_login(m->email, PASSWORD);
    return id;
}

/* Waits up to 'ms' for the AuditEvent of 'action' on 'target_id' under 'subject' in
 * SP_AUDIT; true when found. */
static bool audit_arrives(const char *subject, const char *action, const char *target_id, int ms)
{
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    jsSubOptions so;
    jsErrCode jerr = 0;
    bool found = false;

    ck_assert_int_eq(natsConnection_JetStream(&js, NC, NULL), NATS_OK);
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
        found = ev != NULL && ev->action != NULL && ev->target_id != NULL &&
                strcmp(ev->action, action) == 0 && strcmp(ev->target_id, target_id) == 0;
        if (ev != NULL) sp__audit__v1__audit_event__free_unpacked(ev, NULL);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    return found;
}

/* ---- CreateMember and ActivateMember --------------------------------------------------- */

START_TEST(created_member_is_pending_until_activated)
{
    member m = new_member("pending");
    char *id = must_create(&m);

    /* pending: inactive, no app_user role, a membership; it cannot log in, and says so
     * exactly as for a wrong password */
    char *row = pg_value("SELECT u.pending || '|' || u.active || '|' || m.client_id || '|'"
                         "       || m.client_role || '|' || m.suspended || '|'"
                         "       || (SELECT count(*) FROM auth.user_roles r WHERE r.user_id = u.id)"
                         " FROM auth.users u JOIN auth.memberships m ON m.user_id = u.id"
                         " WHERE u.public_id = $1::uuid",
                         id);
    ck_assert_ptr_nonnull(row);
    char want[256];
    snprintf(want, sizeof(want), "true|false|%s|client_manager|false|0", m.client);
    ck_assert_str_eq(row, want);
    free(row);
    sptest_resp *r = login(m.email, PASSWORD);
    assert_error(r, 401, "unauthenticated");
    sptest_resp *bad = login(m.email, "wrong-password");
    ck_assert_str_eq(sptest_jstr(r, "error.message"), sptest_jstr(bad, "error.message"));
    sptest_resp_free(bad);
    sptest_resp_free(r);

    char subject[128];
    snprintf(subject, sizeof(subject), "sp.audit.%s.auth", m.client);
    /* tenancy audits the creation (with the acting user), not auth: one row per change */
    ck_assert(!audit_arrives(subject, "member.created", id, 1500));

    ck_assert_str_eq(activate(m.key), "");
    session s = must_login(m.email, PASSWORD);
    r = sptest_json(E, "GET", "/v1/me", s.access, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "id"), id);
    ck_assert_str_eq(sptest_jstr(r, "role"), "client_admin");
    ck_assert_str_eq(sptest_jstr(r, "clientId"), m.client);
    ck_assert_str_eq(sptest_jstr(r, "clientRole"), "client_manager");
    sptest_resp_free(r);

    /* activating again changes nothing */
    ck_assert_str_eq(activate(m.key), "");
    ck_assert_int_eq(me_status(s.access), 200);
    session_free(&s);
    free(id);
}
END_TEST

START_TEST(same_key_answers_the_same_user_once)
{
    member m = new_member("retry");
    char *first = must_create(&m);
    char *again = must_create(&m);
    ck_assert_str_eq(again, first);
    ck_assert_int_eq(users_of_key(m.key), 1);
    ck_assert_int_eq(people_of_email(m.email), 1);
    /* and after the activation too: a retry of a call whose reply was lost */
    ck_assert_str_eq(activate(m.key), "");
    char *third = must_create(&m);
    ck_assert_str_eq(third, first);
    ck_assert_int_eq(users_of_key(m.key), 1);
    free(first);
    free(again);
    free(third);
}
END_TEST

START_TEST(same_key_for_another_client_is_a_conflict)
{
    member m = new_member("key-409");
    char *id = must_create(&m);
    member other = m;
    spcrypto_uuid_v4(other.client);
    sptest_unique_email(other.email, sizeof(other.email), "key-409b");
    bus_result r = create_as("service", &other);
    ck_assert_str_eq(r.code, "conflict");
    ck_assert_int_eq(users_of_key(m.key), 1);
    ck_assert_int_eq(people_of_email(other.email), 0);
    free(id);
}
END_TEST

START_TEST(taken_email_is_a_conflict_on_email)
{
    member m = new_member("email-409");
    char *b = sptest_json_obj("name", "App User", "email", m.email, "password", PASSWORD, NULL);
    sptest_resp *reg = sptest_json(E, "POST", "/v1/auth/register", NULL, b);
    free(b);
    ck_assert_int_eq(reg->status, 201);
    sptest_resp_free(reg);

    /* compared lower-cased, as register does */
    for (char *p = m.email; *p != '\0'; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    bus_result r = create_as("service", &m);
    ck_assert_str_eq(r.code, "conflict");
    ck_assert_msg(strstr(r.fields, "email=already registered;") != NULL, "%s", r.fields);
    ck_assert_int_eq(users_of_key(m.key), 0);
    /* another pending member's email is taken as well */
    member n = new_member("email-409p");
    char *id = must_create(&n);
    member n2 = new_member("email-409q");
    snprintf(n2.email, sizeof(n2.email), "%s", n.email);
    r = create_as("service", &n2);
    ck_assert_str_eq(r.code, "conflict");
    ck_assert_msg(strstr(r.fields, "email=") != NULL, "%s", r.fields);
    free(id);
}
END_TEST

START_TEST(bad_fields_are_named_together)
{
    member m = new_member("bad");
    char longkey[140];
    memset(longkey, 'k', 129);
    longkey[129] = '\0';
    Sp__Auth__V1__CreateMemberRequest in = SP__AUTH__V1__CREATE_MEMBER_REQUEST__INIT;
    in.key = "bad key!";
    in.name = "";
    in.email = "not-an-email";
    in.password = "short";
    in.client_id = "not-a-uuid";
    in.client_role = "client_admin";
    bus_result r = bus_call("CreateMember", "service", &in.base, NULL);
    ck_assert_str_eq(r.code, "validation_failed");
    static const char *const fields[] = {
        "key=", "name=", "email=", "password=", "clientId=", "clientRole="};
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        ck_assert_msg(strstr(r.fields, fields[i]) != NULL, "%s in %s", fields[i], r.fields);

    /* each alone, and absent fields */
    Sp__Auth__V1__CreateMemberRequest one = SP__AUTH__V1__CREATE_MEMBER_REQUEST__INIT;
    one.key = longkey;
    one.name = "Member Tester";
    one.email = m.email;
    one.password = PASSWORD;
    one.client_id = m.client;
    one.client_role = "client_operator";
    r = bus_call("CreateMember", "service", &one.base, NULL);
    ck_assert_str_eq(r.code, "validation_failed");
    ck_assert_msg(strcmp(r.fields, "key=at most 128 characters;") == 0, "%s", r.fields);
    Sp__Auth__V1__CreateMemberRequest none = SP__AUTH__V1__CREATE_MEMBER_REQUEST__INIT;
    r = bus_call("CreateMember", "service", &none.base, NULL);
    ck_assert_str_eq(r.code, "validation_failed");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        ck_assert_msg(strstr(r.fields, fields[i]) != NULL, "%s in %s", fields[i], r.fields);
    ck_assert_int_eq(people_of_email(m.email), 0);

    ck_assert_str_eq(key_call("ActivateMember", "service", "bad key"), "validation_failed");
    ck_assert_str_eq(key_call("DiscardMember", "service", NULL), "validation_failed");
    r = suspend_as("service", "x", 1);
    ck_assert_str_eq(r.code, "validation_failed");
    ck_assert_msg(strstr(r.fields, "clientId=") != NULL, "%s", r.fields);
    r = suspend_as("service", m.client, -1);
    ck_assert_str_eq(r.code, "validation_failed");
    ck_assert_msg(strstr(r.fields, "suspended=") != NULL, "%s", r.fields);
}
END_TEST

START_TEST(other_callers_are_refused_and_nothing_is_written)
{
    member m = new_member("forbidden");
    static const char *const roles[] = {"app_user", "client_admin", NULL};
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        bus_result r = create_as(roles[i], &m);
        ck_assert_str_eq(r.code, "forbidden");
    }
    ck_assert_int_eq(users_of_key(m.key), 0);
    ck_assert_int_eq(people_of_email(m.email), 0);

    /* an admin may */
    bus_result ok = create_as("admin", &m);
    ck_assert_str_eq(ok.code, "");
    bus_result_free(&ok);
    ck_assert_str_eq(key_call("ActivateMember", "app_user", m.key), "forbidden");
    ck_assert_str_eq(key_call("DiscardMember", "client_admin", m.key), "forbidden");
    bus_result r = suspend_as("app_user", m.client, 1);
    ck_assert_str_eq(r.code, "forbidden");
    char *state = pg_value("SELECT u.pending || '|' || m.suspended FROM auth.users u"
                           " JOIN auth.memberships m ON m.user_id = u.id WHERE u.create_key = $1",
                           m.key);
    ck_assert_str_eq(state, "true|false");
    free(state);
    ck_assert_str_eq(key_call("ActivateMember", "admin", m.key), "");
}
END_TEST

START_TEST(activate_unknown_key_is_not_found)
{
    ck_assert_str_eq(activate("tenancy.never-created"), "not_found");
    member m = new_member("act-404");
    char *id = must_create(&m);
    ck_assert_str_eq(discard(m.key), "");
    ck_assert_str_eq(activate(m.key), "not_found");
    free(id);
}
END_TEST

/* ---- DiscardMember and the cleaner ----------------------------------------------------- */

START_TEST(discard_removes_a_pending_member_for_good)
{
    member m = new_member("discard");
    char *id = must_create(&m);
    ck_assert_str_eq(discard(m.key), "");
    ck_assert_int_eq(users_of_key(m.key), 0);
    ck_assert_int_eq(people_of_email(m.email), 0);
    ck_assert_int_eq(
        pg_count("SELECT count(*) FROM auth.memberships WHERE client_id = $1::uuid", m.client), 0);
    /* again, and an unknown key: nothing to do */
    ck_assert_str_eq(discard(m.key), "");
    ck_assert_str_eq(discard("tenancy.never-created"), "");
    /* the email is free again */
    char *b = sptest_json_obj("name", "New Owner", "email", m.email, "password", PASSWORD, NULL);
    sptest_resp *r = sptest_json(E, "POST", "/v1/auth/register", NULL, b);
    free(b);
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_str_ne(sptest_jstr(r, "id"), id);
    sptest_resp_free(r);
    free(id);
}
END_TEST

START_TEST(discard_refuses_an_active_member)
{
    member m = new_member("discard-409");
    session s;
    char *id = must_active_member(&m, &s);
    ck_assert_str_eq(discard(m.key), "conflict");
    ck_assert_int_eq(users_of_key(m.key), 1);
    ck_assert_int_eq(me_status(s.access), 200);
    session_free(&s);
    session s2 = must_login(m.email, PASSWORD);
    session_free(&s2);
    free(id);
}
END_TEST

START_TEST(cleaner_discards_stale_pending_members_only)
{
    member stale = new_member("stale"), fresh = new_member("fresh"), old = new_member("old");
    char *a = must_create(&stale), *b = must_create(&fresh), *c = must_create(&old);
    ck_assert_str_eq(activate(old.key), "");
    /* older than SP_PENDING_MEMBER_TTL_S (3600 s by default) */
    static const char *backdate =
        "UPDATE auth.users SET created_at = now() - interval '2 hours' WHERE create_key = $1";
    free(pg_value(backdate, stale.key));
    free(pg_value(backdate, old.key));
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) {
        gone = users_of_key(stale.key) == 0;
        if (!gone) usleep(100 * 1000);
    }
    ck_assert_msg(gone, "the stale pending member is still there after 10 s");
    ck_assert_int_eq(people_of_email(stale.email), 0);
    ck_assert_int_eq(users_of_key(fresh.key), 1);
    ck_assert_int_eq(users_of_key(old.key), 1); /* activated: never discarded */
    session s = must_login(old.email, PASSWORD);
    session_free(&s);
    ck_assert_str_eq(activate(stale.key), "not_found");
    free(a);
    free(b);
    free(c);
}
END_TEST

/* ---- SetClientSuspended ---------------------------------------------------------------- */

START_TEST(suspension_revokes_and_refuses_until_reactivated)
{
    member m = new_member("suspend"), other = new_member("suspend-b"), outside = new_member("out");
    snprintf(other.client, sizeof(other.client), "%s", m.client);
    other.role = "client_operator";
    session s, s2, so;
    char *a = must_active_member(&m, &s), *b = must_active_member(&other, &s2);
    char *c = must_active_member(&outside, &so);
    session extra = must_login(m.email, PASSWORD);

    ck_assert_int_eq(must_suspend(m.client, true), 3);
    /* the sessions are dead (a call not made through the gateway reaches it by auth's
     * sp.auth.changed.sessions message: within a message's time) */
    ck_assert(wait_me_status(s.access, 401, 2000));
    ck_assert(wait_me_status(extra.access, 401, 2000));
    ck_assert(wait_me_status(s2.access, 401, 2000));
    ck_assert_int_eq(me_status(so.access), 200); /* another client's member */
    /* login and refresh say why; a wrong password still says nothing */
    expect_login_error(m.email, PASSWORD, 403, "client_suspended");
    expect_login_error(other.email, PASSWORD, 403, "client_suspended");
    expect_login_error(m.email, "wrong-password", 401, "unauthenticated");
    sptest_resp *r = refresh(s.refresh);
    assert_error(r, 403, "client_suspended");
    sptest_resp_free(r);
    ck_assert_int_eq(pg_count("SELECT count(*) FROM auth.sessions s JOIN auth.users u"
                              " ON u.id = s.user_id WHERE u.create_key = $1"
                              " AND s.revoked_at IS NULL",
                              m.key),
                     0);

    /* idempotent: nothing left to revoke */
    ck_assert_int_eq(must_suspend(m.client, true), 0);

    ck_assert_int_eq(must_suspend(m.client, false), 0);
    session back = must_login(m.email, PASSWORD);
    ck_assert_int_eq(me_status(back.access), 200);
    r = refresh(back.refresh);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    r = refresh(s.refresh); /* the old session stays revoked */
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    ck_assert_int_eq(must_suspend(m.client, false), 0);

    session_free(&back);
    session_free(&extra);
    session_free(&so);
    session_free(&s2);
    session_free(&s);
    free(a);
    free(b);
    free(c);
}
END_TEST

/* A login in flight while a suspension holds the membership's row: the login must wait
 * for it (its FOR SHARE read of the membership), then see it and answer 403. Without that
 * lock, the login would read the old row and answer 200 while the suspension is open. */
START_TEST(login_racing_a_suspension_waits_and_sees_it)
{
    member m = new_member("race");
    session s;
    char *id = must_active_member(&m, &s);

    /* the first half of a suspension: the membership's row updated, not yet committed */
    PGconn *c = pg();
    const char *params[] = {m.client};
    PGresult *res = PQexec(c, "BEGIN");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    res = PQexecParams(c, "UPDATE auth.memberships SET suspended = true WHERE client_id = $1::uuid",
                       1, NULL, params, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
    PQclear(res);

    /* a login over the bus, its reply awaited later */
    char *inbox = NULL;
    natsSubscription *sub = NULL;
    uint8_t payload[512], buf[1024];
    ck_assert_int_eq(natsInbox_Create(&inbox), NATS_OK);
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, NC, inbox), NATS_OK);
    Sp__Auth__V1__LoginRequest in = SP__AUTH__V1__LOGIN_REQUEST__INIT;
    in.email = m.email;
    in.password = PASSWORD;
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.request_id = "it-auth-members-race";
    ctx.ip = "127.0.0.1";
    ctx.has_timeout_us = 1;
    ctx.timeout_us = 30000000;
    Sp__V1__Request req = SP__V1__REQUEST__INIT;
    req.ctx = &ctx;
    req.has_payload = 1;
    req.payload.len = protobuf_c_message_pack(&in.base, payload);
    req.payload.data = payload;
    size_t len = sp__v1__request__pack(&req, buf);
    ck_assert_int_eq(
        natsConnection_PublishRequest(NC, "sp.auth.v1.Login", inbox, (const char *)buf, (int)len),
        NATS_OK);
    /* about the password check (argon2id): the login then waits on the row, for less than
     * spdb's lock_timeout (2 s, after which it would answer 503) */
    natsMsg *early = NULL;
    ck_assert_msg(natsSubscription_NextMsg(&early, sub, 1200) == NATS_TIMEOUT,
                  "the login answered while the suspension was open");

    res = PQexec(c, "COMMIT");
    ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(c);
    natsMsg *msg = NULL;
    ck_assert_int_eq(natsSubscription_NextMsg(&msg, sub, 15000), NATS_OK);
    Sp__V1__Reply *rep = sp__v1__reply__unpack(NULL, (size_t)natsMsg_GetDataLength(msg),
                                               (const uint8_t *)natsMsg_GetData(msg));
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_ERROR);
    ck_assert_str_eq(rep->error->code, "client_suspended");
    sp__v1__reply__free_unpacked(rep, NULL);
    natsMsg_Destroy(msg);
    natsSubscription_Destroy(sub);
    free(inbox);

    ck_assert_int_eq(must_suspend(m.client, false), 0);
    session_free(&s);
    free(id);
}
END_TEST

START_TEST(suspending_a_client_without_members_is_fine)
{
    char client[SPCRYPTO_UUID_LEN];
    spcrypto_uuid_v4(client);
    ck_assert_int_eq(must_suspend(client, true), 0);
    ck_assert_int_eq(must_suspend(client, false), 0);
}
END_TEST

/* Last: auth stops cleanly (the cleaner's task and connection included), without a
 * sanitizer report. */
START_TEST(auth_stops_cleanly)
{
    sptest_kill(AUTH, SIGTERM);
    ck_assert_msg(sptest_log_has(AUTH, 0, "\"msg\":\"stopped\""), "no clean stop in %s", AUTH->log);
    ck_assert_msg(!sptest_log_has_sanitizer(AUTH, 0), "sanitizer report in %s", AUTH->log);
    ck_assert_msg(sptest_log_has(AUTH, 0, "pending_members_discarded"), "no cleaner run in %s",
                  AUTH->log);
}
END_TEST

static Suite *auth_members_suite(void)
{
    Suite *s = suite_create("auth_members");
    TCase *tc = tcase_create("members");
    tcase_set_timeout(tc, 90);
    tcase_add_checked_fixture(tc, nats_setup, nats_teardown);
    tcase_add_test(tc, created_member_is_pending_until_activated);
    tcase_add_test(tc, same_key_answers_the_same_user_once);
    tcase_add_test(tc, same_key_for_another_client_is_a_conflict);
    tcase_add_test(tc, taken_email_is_a_conflict_on_email);
    tcase_add_test(tc, bad_fields_are_named_together);
    tcase_add_test(tc, other_callers_are_refused_and_nothing_is_written);
    tcase_add_test(tc, activate_unknown_key_is_not_found);
    tcase_add_test(tc, discard_removes_a_pending_member_for_good);
    tcase_add_test(tc, discard_refuses_an_active_member);
    tcase_add_test(tc, cleaner_discards_stale_pending_members_only);
    suite_add_tcase(s, tc);
    TCase *ts = tcase_create("suspension");
    tcase_set_timeout(ts, 90);
    tcase_add_checked_fixture(ts, nats_setup, nats_teardown);
    tcase_add_test(ts, suspension_revokes_and_refuses_until_reactivated);
    tcase_add_test(ts, suspending_a_client_without_members_is_fine);
    tcase_add_test(ts, login_racing_a_suspension_waits_and_sees_it);
    suite_add_tcase(s, ts);
    TCase *tt = tcase_create("shutdown"); /* last: it stops the auth service */
    tcase_set_timeout(tt, 60);
    tcase_add_test(tt, auth_stops_cleanly);
    suite_add_tcase(s, tt);
    return s;
}

int main(void)
{
    E = sptest_start("auth_members", SPTEST_ALL);
    /* the cleaner every second, so that a backdated pending member goes within the test */
    static const char *const auth_env[] = {"SP_PENDING_MEMBER_SWEEP_S=1", NULL};
    /* argon2id on a loaded 2-core machine can take seconds: this suite tests behaviour,
     * not deadlines, so the gateway waits longer than its default 2 s */
    static const char *const gw_env[] = {"SP_BUS_TIMEOUT_MS=10000", NULL};
    AUTH = sptest_start_service(E, "auth", auth_env);
    sptest_start_service(E, "gateway", gw_env);

    SRunner *sr = srunner_create(auth_members_suite());
    srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed > 0) sptest_mark_failed(E);
    sptest_stop(E);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
