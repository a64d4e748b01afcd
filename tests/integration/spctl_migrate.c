/* spctl_migrate.c -- the operator CLI against real servers: migrations apply once and
 * are checked, the JetStream streams exist with their limits, the first admin is created
 * once, and the NATS users of integrators and cameras stay inside their permissions. */
#include <check.h>
#include <libpq-fe.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sptest.h"

extern char **environ;

static sptest_env *env;
static char spctl_password[128];

/* ---- running spctl ---------------------------------------------------------------------- */

/* Value of KEY in the harness's secrets.env, into buf ("" when missing). */
static void secret(char *buf, size_t len, const char *key)
{
    char line[512];
    size_t klen = strlen(key);
    FILE *f = fopen(env->secrets, "r");

    buf[0] = '\0';
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == '=') {
            line[strcspn(line, "\r\n")] = '\0';
            snprintf(buf, len, "%s", line + klen + 1);
        }
    }
    if (f) fclose(f);
}

/* Runs spctl with 'args' (NULL-ended) and the stack's environment: database, NATS as the
 * spctl user, plus 'extra' ("K=V", NULL-ended, may be NULL; they win). Output (stdout and
 * stderr) into out. Returns the exit status, -1 when it did not exit normally. */
static int run_spctl(char *out, size_t outlen, const char *const *args, const char *const *extra)
{
    char bin[600], db[300], nats[160], pw[200];
    const char *argv[16];
    const char *envp[256];
    size_t na = 0, ne = 0;
    int pipefd[2];

    snprintf(bin, sizeof bin, "%s/spctl", SP_BINARY_DIR);
    argv[na++] = bin;
    for (size_t i = 0; args[i] && na < 15; i++)
        argv[na++] = args[i];
    argv[na] = NULL;

    snprintf(db, sizeof db, "SP_DATABASE_URL=%s", env->db_url);
    snprintf(nats, sizeof nats, "SP_NATS_URL=%s", env->nats_url);
    snprintf(pw, sizeof pw, "SP_NATS_PASSWORD=%s", spctl_password);
    /* glibc's getenv returns the first match: extras first, then ours, then the rest */
    for (size_t i = 0; extra && extra[i] && ne < 200; i++)
        envp[ne++] = extra[i];
    envp[ne++] = db;
    envp[ne++] = nats;
    envp[ne++] = "SP_NATS_USER=spctl";
    envp[ne++] = pw;
    for (char **e = environ; *e && ne < 254; e++) {
        if (strncmp(*e, "SP_", 3) != 0) envp[ne++] = *e;
    }
    envp[ne] = NULL;

    ck_assert_int_eq(pipe(pipefd), 0);
    pid_t pid = fork();

    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        execve(bin, (char *const *)argv, (char *const *)envp);
        _exit(127);
    }
    close(pipefd[1]);
    size_t n = 0;
    ssize_t r;
    char sink[512];

    while ((r = read(pipefd[0], n + 1 < outlen ? out + n : sink,
                     n + 1 < outlen ? outlen - 1 - n : sizeof sink)) > 0) {
        if (n + 1 < outlen) n += (size_t)r;
    }
    out[n] = '\0';
    close(pipefd[0]);
    int st = 0;

    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void migrate_ok(void)
{
    char out[8192];
    const char *args[] = {"migrate", NULL};

    ck_assert_msg(run_spctl(out, sizeof out, args, NULL) == 0, "spctl migrate failed: %s", out);
}

/* ---- PostgreSQL ---------------------------------------------------------------------------- */

/* The first column of the first row of 'sql' (malloc'd; "" when no row). */
static char *query1(const char *sql, int nparams, const char *const *params)
{
    PGconn *c = PQconnectdb(env->db_url);

    ck_assert_msg(PQstatus(c) == CONNECTION_OK, "connect: %s", PQerrorMessage(c));
    PGresult *r = PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0);

    ck_assert_msg(PQresultStatus(r) == PGRES_TUPLES_OK || PQresultStatus(r) == PGRES_COMMAND_OK,
                  "%s: %s", sql, PQresultErrorMessage(r));
    char *v = strdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");

    PQclear(r);
    PQfinish(c);
    return v;
}

/* The first line of the outcome of 'sql' run as 'role' with 'password': the first value,
 * or the error message (static). */
static const char *as_role(const char *role, const char *password, const char *sql)
{
    static char out[512];
    char url[300];
    snprintf(url, sizeof url, "postgresql://%s:%s@127.0.0.1:%d/smartpark", role, password,
             env->pg_port);
    PGconn *c = PQconnectdb(url);
    PGresult *r = PQstatus(c) == CONNECTION_OK ? PQexec(c, sql) : NULL;
    if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0)
        snprintf(out, sizeof out, "%s", PQgetvalue(r, 0, 0));
    else if (r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK)
        snprintf(out, sizeof out, "OK");
    else
        snprintf(out, sizeof out, "%s", r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
    out[strcspn(out, "\n")] = '\0';
    PQclear(r);
    PQfinish(c);
    return out;
}

/* Each service connects as its own role, which owns its schema and nothing else: it is no
 * superuser, cannot read another service's tables, create a schema or log in without its
 * password. Objects an earlier migrate created as the superuser are handed over too. */
START_TEST(migrate_gives_each_schema_to_its_own_role)
{
    char auth_pw[128], ten_pw[128], e1[200], e2[200], out[8192];
    secret(auth_pw, sizeof auth_pw, "SP_PG_AUTH_PASSWORD");
    secret(ten_pw, sizeof ten_pw, "SP_PG_TENANCY_PASSWORD");
    ck_assert(auth_pw[0] && ten_pw[0]);
    migrate_ok(); /* without the passwords: everything stays the superuser's */
    snprintf(e1, sizeof e1, "SP_PG_AUTH_PASSWORD=%s", auth_pw);
    snprintf(e2, sizeof e2, "SP_PG_TENANCY_PASSWORD=%s", ten_pw);
    const char *extra[] = {e1, e2, NULL};
    const char *args[] = {"migrate", "--no-streams", NULL};
    ck_assert_msg(run_spctl(out, sizeof out, args, extra) == 0, "migrate: %s", out);
    ck_assert_msg(run_spctl(out, sizeof out, args, extra) == 0, "migrate again: %s", out);

    const char *svc[] = {"auth", "tenancy"};
    for (size_t i = 0; i < 2; i++) {
        char role[32];
        snprintf(role, sizeof role, "sp_%s", svc[i]);
        const char *p[] = {svc[i], role};
        char *v = query1("SELECT rolsuper::text || rolcreatedb::text || rolcreaterole::text"
                         " FROM pg_roles WHERE rolname = $2 AND $1 <> ''",
                         2, p);
        ck_assert_str_eq(v, "falsefalsefalse");
        free(v);
        v = query1("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", 1, p);
        ck_assert_str_eq(v, role);
        free(v);
        /* every table and sequence of the schema is the role's */
        v = query1("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " WHERE n.nspname = $1 AND c.relkind IN ('r', 'S', 'v')"
                   "   AND pg_get_userbyid(c.relowner) <> $2",
                   2, p);
        ck_assert_str_eq(v, "0");
        free(v);
    }
    ck_assert_str_eq(as_role("sp_auth", auth_pw, "SELECT count(*) >= 0 FROM auth.users"), "t");
    ck_assert_str_eq(as_role("sp_tenancy", ten_pw, "SELECT count(*) >= 0 FROM tenancy.clients"),
                     "t");
    ck_assert_ptr_nonnull(
        strstr(as_role("sp_auth", auth_pw, "SELECT count(*) FROM tenancy.clients"),
               "permission denied for schema tenancy"));
    ck_assert_ptr_nonnull(strstr(as_role("sp_tenancy", ten_pw, "SELECT count(*) FROM auth.users"),
                                 "permission denied for schema auth"));
    ck_assert_ptr_nonnull(
        strstr(as_role("sp_auth", auth_pw, "SELECT count(*) FROM public.sp_migrations"),
               "permission denied"));
    ck_assert_ptr_nonnull(
        strstr(as_role("sp_auth", auth_pw, "CREATE SCHEMA intruder"), "permission denied"));
    ck_assert_ptr_nonnull(
        strstr(as_role("sp_auth", "wrong", "SELECT 1"), "password authentication failed"));
}
END_TEST

/* ---- NATS ------------------------------------------------------------------------------------ */

/* The last asynchronous error (permission violations arrive this way). */
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;
static natsStatus last_err;
static char last_err_text[512];

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    const char *text = NULL;

    (void)sub;
    (void)closure;
    natsConnection_GetLastError(nc, &text);
    pthread_mutex_lock(&err_mu);
    last_err = err;
    snprintf(last_err_text, sizeof last_err_text, "%s", text ? text : "");
    pthread_mutex_unlock(&err_mu);
}

/* Waits up to 2 s for an async error whose text holds 'needle'. */
static bool saw_error(const char *needle)
{
    for (int i = 0; i < 40; i++) {
        pthread_mutex_lock(&err_mu);
        bool hit = last_err == NATS_NOT_PERMITTED && strstr(last_err_text, needle) != NULL;
        pthread_mutex_unlock(&err_mu);
        if (hit) return true;
        usleep(50 * 1000);
    }
    return false;
}

static natsConnection *connect_inbox(const char *user, const char *password, const char *inbox)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;

    ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
    if (inbox != NULL) ck_assert_int_eq(natsOptions_SetCustomInboxPrefix(o, inbox), NATS_OK);
    ck_assert_int_eq(natsOptions_SetURL(o, env->nats_url), NATS_OK);
    ck_assert_int_eq(natsOptions_SetUserInfo(o, user, password), NATS_OK);
    ck_assert_int_eq(natsOptions_SetErrorHandler(o, on_error, NULL), NATS_OK);
    natsStatus s = natsConnection_Connect(&nc, o);

    natsOptions_Destroy(o);
    ck_assert_msg(s == NATS_OK, "connect as %s: %s", user, natsStatus_GetText(s));
    return nc;
}

static natsConnection *connect_as(const char *user, const char *password)
{
    return connect_inbox(user, password, NULL);
}

/* true when 'sub' receives a message within 'ms'. */
static bool receives(natsSubscription *sub, int ms)
{
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, sub, ms);

    natsMsg_Destroy(m);
    return s == NATS_OK;
}

static void close_nats(natsConnection *a, natsConnection *b)
{
    natsConnection_Destroy(a);
    natsConnection_Destroy(b);
    nats_Close();
}

/* ---- tests --------------------------------------------------------------------------------- */

START_TEST(migrate_twice_applies_nothing_the_second_time)
{
    char out[8192];
    const char *args[] = {"migrate", NULL};

    migrate_ok();
    char *before = query1("SELECT string_agg(service || '/' || version || '/' || name || '/' ||"
                          " sha256 || '/' || applied_at, ',' ORDER BY service, version)"
                          " FROM public.sp_migrations",
                          0, NULL);
    char *auth = query1("SELECT sha256 FROM public.sp_migrations"
                        " WHERE service = 'auth' AND version = 1 AND name = 'init'",
                        0, NULL);

    ck_assert_int_eq(strlen(auth), 64);
    char *people = query1("SELECT to_regclass('auth.people')::text", 0, NULL);

    ck_assert_str_eq(people, "auth.people");
    free(people);

    ck_assert_int_eq(run_spctl(out, sizeof out, args, NULL), 0);
    ck_assert_msg(strstr(out, "applied") == NULL, "second migrate applied: %s", out);
    char *after = query1("SELECT string_agg(service || '/' || version || '/' || name || '/' ||"
                         " sha256 || '/' || applied_at, ',' ORDER BY service, version)"
                         " FROM public.sp_migrations",
                         0, NULL);

    ck_assert_str_eq(before, after);
    free(before);
    free(after);
    free(auth);
}
END_TEST

START_TEST(migrate_refuses_a_changed_applied_file)
{
    char out[8192];
    const char *args[] = {"migrate", "--no-streams", NULL};

    migrate_ok();
    char *sum = query1("SELECT sha256 FROM public.sp_migrations"
                       " WHERE service = 'auth' AND version = 1",
                       0, NULL);

    free(query1("UPDATE public.sp_migrations SET sha256 = repeat('0', 64)"
                " WHERE service = 'auth' AND version = 1",
                0, NULL));
    int rc = run_spctl(out, sizeof out, args, NULL);
    const char *p[] = {sum};

    free(query1("UPDATE public.sp_migrations SET sha256 = $1"
                " WHERE service = 'auth' AND version = 1",
                1, p));
    free(sum);
    ck_assert_int_eq(rc, 1);
    ck_assert_msg(strstr(out, "auth/0001_init.sql") && strstr(out, "checksum"), "%s", out);
}
END_TEST

START_TEST(streams_exist_with_their_limits)
{
    migrate_ok();
    natsConnection *nc = connect_as("spctl", spctl_password);
    jsCtx *js = NULL;

    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    const struct {
        const char *name, *subject;
        int64_t max_age_days;
        jsDiscardPolicy discard;
    } want[] = {
        {"SP_EVENTS", "sp.events.>", 7, js_DiscardNew},
        {"SP_AUDIT", "sp.audit.>", 365, js_DiscardOld},
        {"SP_SLOT_STATUS", "sp.slot-status.v1.>", 7, js_DiscardOld},
    };
    for (size_t i = 0; i < 3; i++) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetStreamInfo(&si, js, want[i].name, NULL, &jerr);

        ck_assert_msg(s == NATS_OK, "%s: %s", want[i].name, natsStatus_GetText(s));
        ck_assert_int_eq(si->Config->SubjectsLen, 1);
        ck_assert_str_eq(si->Config->Subjects[0], want[i].subject);
        ck_assert_int_eq(si->Config->Storage, js_FileStorage);
        ck_assert_int_eq(si->Config->Duplicates, INT64_C(120) * 1000000000);
        ck_assert_int_eq(si->Config->MaxAge, want[i].max_age_days * 86400 * INT64_C(1000000000));
        ck_assert_int_eq(si->Config->Discard, want[i].discard);
        if (i == 0) ck_assert_int_eq(si->Config->MaxBytes, INT64_C(1) << 30);
        jsStreamInfo_Destroy(si);
    }
    jsCtx_Destroy(js);
    close_nats(nc, NULL);
}
END_TEST

START_TEST(create_admin_creates_once)
{
    char out[8192];
    const char *args1[] = {"create-admin", "--email", "Boss@Example.com", "--name", "Boss", NULL};
    const char *args2[] = {"create-admin", "--email", "boss@example.com", NULL};
    const char *pw[] = {"SP_ADMIN_PASSWORD=correct horse battery", NULL};

    migrate_ok();
    ck_assert_msg(run_spctl(out, sizeof out, args1, pw) == 0, "%s", out);
    ck_assert_ptr_null(strstr(out, "correct horse"));
    char *row = query1("SELECT p.name || '|' || p.email || '|' || r.code || '|' ||"
                       " left(u.password_hash, 10) || '|' || (u.public_id <> p.public_id)"
                       " FROM auth.people p JOIN auth.users u ON u.person_id = p.id"
                       " JOIN auth.user_roles ur ON ur.user_id = u.id"
                       " JOIN auth.roles r ON r.id = ur.role_id"
                       " WHERE p.email = 'boss@example.com'",
                       0, NULL);

    ck_assert_str_eq(row, "Boss|boss@example.com|admin|$argon2id$|true");
    free(row);

    ck_assert_msg(run_spctl(out, sizeof out, args2, pw) == 0, "%s", out);
    ck_assert_msg(strstr(out, "admin boss@example.com already exists"), "%s", out);
    char *n =
        query1("SELECT count(*) FROM auth.people WHERE lower(email) = 'boss@example.com'", 0, NULL);

    ck_assert_str_eq(n, "1");
    free(n);
}
END_TEST

START_TEST(create_admin_requires_a_sound_password)
{
    char out[8192];
    const char *args[] = {"create-admin", "--email", "short@example.com", NULL};
    const char *pw[] = {"SP_ADMIN_PASSWORD=1234567", NULL};

    migrate_ok();
    ck_assert_int_eq(run_spctl(out, sizeof out, args, pw), 1);
    ck_assert_msg(strstr(out, "8..128"), "%s", out);
    char *n = query1("SELECT count(*) FROM auth.people WHERE email = 'short@example.com'", 0, NULL);

    ck_assert_str_eq(n, "0");
    free(n);
}
END_TEST

START_TEST(subscriber_reads_slot_status_but_cannot_call_services)
{
    natsConnection *op = connect_as("spctl", spctl_password);
    natsConnection *nc = connect_as("subscriber", "subscriber");
    natsSubscription *status = NULL, *spy = NULL;

    ck_assert_int_eq(natsConnection_SubscribeSync(&status, nc, "sp.slot-status.v1.>"), NATS_OK);
    ck_assert_int_eq(natsConnection_SubscribeSync(&spy, op, "sp.auth.v1.Register"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(op), NATS_OK);

    ck_assert_int_eq(natsConnection_PublishString(op, "sp.slot-status.v1.c.e.l.A1", "x"), NATS_OK);
    ck_assert(receives(status, 2000));

    ck_assert_int_eq(natsConnection_PublishString(nc, "sp.auth.v1.Register", "x"), NATS_OK);
    natsConnection_Flush(nc);
    ck_assert(saw_error("Permissions Violation for Publish"));
    ck_assert(!receives(spy, 500));

    natsSubscription_Destroy(status);
    natsSubscription_Destroy(spy);
    close_nats(nc, op);
}
END_TEST

/* Forgets the last asynchronous error, so that the next saw_error sees a new one. */
static void forget_error(void)
{
    pthread_mutex_lock(&err_mu);
    last_err = NATS_OK;
    last_err_text[0] = '\0';
    pthread_mutex_unlock(&err_mu);
}

/* The body of the reply to 'subject' from 'nc' within 2 s (malloc'd), or NULL. */
static char *ask(natsConnection *nc, const char *subject, const char *body)
{
    natsMsg *m = NULL;
    if (natsConnection_RequestString(&m, nc, subject, body, 2000) != NATS_OK) return NULL;
    char *v = strndup(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    natsMsg_Destroy(m);
    return v;
}

START_TEST(camera_cannot_read_service_replies)
{
    natsConnection *op = connect_as("spctl", spctl_password);
    natsConnection *nc = connect_as("camera", "camera");
    natsSubscription *svc = NULL, *own = NULL, *replies = NULL;

    /* its own requests get their replies on its own inbox: ingest (here spctl) answers in
     * SP, on the reply subject the server mapped */
    ck_assert_int_eq(natsConnection_SubscribeSync(&svc, op, "sp.ingest.v1.Heartbeat"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(op), NATS_OK);
    ck_assert_int_eq(natsConnection_SubscribeSync(&own, nc, "_INBOX.cam.1"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
    ck_assert_int_eq(
        natsConnection_PublishRequestString(nc, "sp.ingest.v1.Heartbeat", "_INBOX.cam.1", "hb"),
        NATS_OK);
    natsMsg *req = NULL;
    ck_assert_int_eq(natsSubscription_NextMsg(&req, svc, 2000), NATS_OK);
    ck_assert_ptr_nonnull(natsMsg_GetReply(req));
    ck_assert_int_eq(natsConnection_PublishString(op, natsMsg_GetReply(req), "ok"), NATS_OK);
    natsMsg_Destroy(req);
    ck_assert(receives(own, 2000));
    natsSubscription_Destroy(own);

    /* the services' private reply prefix is refused */
    ck_assert_int_eq(natsConnection_SubscribeSync(&replies, nc, "_SP_INBOX.>"), NATS_OK);
    natsConnection_Flush(nc);
    ck_assert(saw_error("Permissions Violation for Subscription"));
    ck_assert_int_eq(natsConnection_PublishString(op, "_SP_INBOX.svc.1", "secret reply"), NATS_OK);
    ck_assert(!receives(replies, 500));

    natsSubscription_Destroy(svc);
    natsSubscription_Destroy(replies);
    close_nats(nc, op);
}
END_TEST

/* An integrator reads SP_SLOT_STATUS (its info, a message by subject or sequence) and
 * nothing else of JetStream: it cannot create a consumer (whose deliver subject would
 * make the server publish where it may not), nor list or delete another party's. */
START_TEST(subscriber_reads_slot_status_but_touches_no_consumer)
{
    migrate_ok();
    natsConnection *op = connect_as("spctl", spctl_password);
    natsConnection *nc = connect_as("subscriber", "subscriber");
    natsSubscription *spy = NULL;
    jsCtx *js = NULL;
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;

    ck_assert_int_eq(natsConnection_JetStream(&js, op, NULL), NATS_OK);
    jsConsumerConfig_Init(&cc);
    cc.Durable = "other-integrator";
    cc.AckPolicy = js_AckExplicit;
    ck_assert_int_eq(js_AddConsumer(&ci, js, "SP_SLOT_STATUS", &cc, NULL, NULL), NATS_OK);
    jsConsumerInfo_Destroy(ci);
    ck_assert_int_eq(natsConnection_PublishString(op, "sp.slot-status.v1.c1.e1.l1.A7", "FREE"),
                     NATS_OK);
    ck_assert_int_eq(natsConnection_SubscribeSync(&spy, op, "sp.auth.v1.>"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(op), NATS_OK);
    usleep(200 * 1000); /* stored by JetStream */

    char *info = ask(nc, "$JS.SP.API.STREAM.INFO.SP_SLOT_STATUS", "");
    ck_assert_msg(info && strstr(info, "\"SP_SLOT_STATUS\""), "%s", info ? info : "(none)");
    free(info);
    char *got = ask(nc, "$JS.SP.API.STREAM.MSG.GET.SP_SLOT_STATUS",
                    "{\"last_by_subj\":\"sp.slot-status.v1.c1.e1.l1.A7\"}");
    ck_assert_msg(got && strstr(got, "\"message\""), "%s", got ? got : "(none)");
    free(got);

    const struct {
        const char *subject, *body;
    } refused[] = {
        {"$JS.API.CONSUMER.CREATE.SP_SLOT_STATUS", "{\"stream_name\":\"SP_SLOT_STATUS\",\"config\":"
                                                   "{\"deliver_subject\":\"sp.auth.v1.Register\","
                                                   "\"ack_policy\":\"none\"}}"},
        {"$JS.API.CONSUMER.DURABLE.CREATE.SP_SLOT_STATUS.mine",
         "{\"stream_name\":\"SP_SLOT_STATUS\",\"config\":{\"durable_name\":\"mine\","
         "\"deliver_subject\":\"_SP_INBOX.steal\",\"ack_policy\":\"none\"}}"},
        {"$JS.API.CONSUMER.LIST.SP_SLOT_STATUS", ""},
        {"$JS.API.CONSUMER.NAMES.SP_SLOT_STATUS", ""},
        {"$JS.API.CONSUMER.DELETE.SP_SLOT_STATUS.other-integrator", ""},
        {"$JS.API.STREAM.DELETE.SP_SLOT_STATUS", ""},
        {"$JS.API.STREAM.PURGE.SP_SLOT_STATUS", ""},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        forget_error();
        char *r = ask(nc, refused[i].subject, refused[i].body);
        ck_assert_msg(r == NULL, "%s answered %s", refused[i].subject, r);
        ck_assert_msg(saw_error("Permissions Violation for Publish"), "%s", refused[i].subject);
    }
    ck_assert(!receives(spy, 500)); /* nothing was delivered onto a service subject */
    ck_assert_int_eq(js_GetConsumerInfo(&ci, js, "SP_SLOT_STATUS", "other-integrator", NULL, NULL),
                     NATS_OK);
    jsConsumerInfo_Destroy(ci);
    ck_assert_int_eq(js_GetConsumerInfo(&ci, js, "SP_SLOT_STATUS", "mine", NULL, NULL),
                     NATS_NOT_FOUND);
    ck_assert_int_eq(js_DeleteConsumer(js, "SP_SLOT_STATUS", "other-integrator", NULL, NULL),
                     NATS_OK);

    natsSubscription_Destroy(spy);
    jsCtx_Destroy(js);
    close_nats(nc, op);
}
END_TEST

/* Cameras and integrators live in accounts of their own: neither sees the other's
 * replies, even subscribed to the whole _INBOX.> it is allowed. */
START_TEST(camera_and_subscriber_do_not_share_replies)
{
    migrate_ok();
    natsConnection *cam = connect_as("camera", "camera");
    natsConnection *sub = connect_as("subscriber", "subscriber");
    natsSubscription *cam_inbox = NULL, *sub_inbox = NULL;

    ck_assert_int_eq(natsConnection_SubscribeSync(&cam_inbox, cam, "_INBOX.>"), NATS_OK);
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub_inbox, sub, "_INBOX.>"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(cam), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(sub), NATS_OK);
    char *info = ask(sub, "$JS.SP.API.STREAM.INFO.SP_SLOT_STATUS", "");
    ck_assert_ptr_nonnull(info);
    free(info);
    ck_assert(receives(sub_inbox, 1000)); /* its own reply, seen by its own wildcard */
    ck_assert(!receives(cam_inbox, 500));

    /* a camera's request answered in SP comes back to the camera only */
    natsConnection *op = connect_as("spctl", spctl_password);
    natsSubscription *svc = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&svc, op, "sp.ingest.v1.Heartbeat"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(op), NATS_OK);
    ck_assert_int_eq(
        natsConnection_PublishRequestString(cam, "sp.ingest.v1.Heartbeat", "_INBOX.cam.2", "hb"),
        NATS_OK);
    natsMsg *req = NULL;
    ck_assert_int_eq(natsSubscription_NextMsg(&req, svc, 2000), NATS_OK);
    ck_assert_int_eq(natsConnection_PublishString(op, natsMsg_GetReply(req), "ok"), NATS_OK);
    natsMsg_Destroy(req);
    ck_assert(receives(cam_inbox, 1000));
    ck_assert(!receives(sub_inbox, 500));

    natsSubscription_Destroy(svc);
    natsSubscription_Destroy(cam_inbox);
    natsSubscription_Destroy(sub_inbox);
    natsConnection_Destroy(op);
    close_nats(cam, sub);
}
END_TEST

/* A service may use the JetStream API of the streams it consumes only: none of them can
 * delete or purge a stream, or touch another stream's consumers. */
START_TEST(services_use_only_their_own_streams)
{
    migrate_ok();
    const struct {
        const char *user, *subject;
    } refused[] = {
        {"auth", "$JS.API.STREAM.DELETE.SP_EVENTS"},
        {"auth", "$JS.API.CONSUMER.INFO.SP_AUDIT.tenancy"},
        {"tenancy", "$JS.API.STREAM.DELETE.SP_AUDIT"},
        {"tenancy", "$JS.API.STREAM.PURGE.SP_EVENTS"},
        {"tenancy", "$JS.API.CONSUMER.DELETE.SP_EVENTS.projection"},
        {"gateway", "$JS.API.STREAM.DELETE.SP_SLOT_STATUS"},
        {"gateway", "$JS.API.CONSUMER.INFO.SP_AUDIT.tenancy"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char key[64], pw[128];
        snprintf(key, sizeof key, "SP_NATS_%s_PASSWORD", refused[i].user);
        for (char *c = key; *c; c++)
            if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
        secret(pw, sizeof pw, key);
        natsConnection *nc = connect_inbox(refused[i].user, pw, "_SP_INBOX");
        forget_error();
        char *r = ask(nc, refused[i].subject, "");
        ck_assert_msg(r == NULL, "%s: %s answered %s", refused[i].user, refused[i].subject, r);
        ck_assert_msg(saw_error("Permissions Violation for Publish"), "%s: %s", refused[i].user,
                      refused[i].subject);
        natsConnection_Destroy(nc);
    }
    /* what tenancy consumes is still its own to read */
    char pw[128];
    secret(pw, sizeof pw, "SP_NATS_TENANCY_PASSWORD");
    natsConnection *nc = connect_inbox("tenancy", pw, "_SP_INBOX");
    char *info = ask(nc, "$JS.API.CONSUMER.NAMES.SP_AUDIT", "");
    ck_assert_msg(info && strstr(info, "consumers"), "%s", info ? info : "(none)");
    free(info);
    close_nats(nc, NULL);
}
END_TEST

START_TEST(camera_publishes_only_on_the_ingest_subjects)
{
    natsConnection *op = connect_as("spctl", spctl_password);
    natsConnection *nc = connect_as("camera", "camera");
    natsSubscription *ingest = NULL, *auth = NULL;

    ck_assert_int_eq(natsConnection_SubscribeSync(&ingest, op, "sp.ingest.v1.Heartbeat"), NATS_OK);
    ck_assert_int_eq(natsConnection_SubscribeSync(&auth, op, "sp.auth.v1.Register"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(op), NATS_OK);

    ck_assert_int_eq(natsConnection_PublishString(nc, "sp.ingest.v1.Heartbeat", "x"), NATS_OK);
    ck_assert(receives(ingest, 2000));
    ck_assert_int_eq(natsConnection_PublishString(nc, "sp.auth.v1.Register", "x"), NATS_OK);
    natsConnection_Flush(nc);
    ck_assert(saw_error("Permissions Violation for Publish"));
    ck_assert(!receives(auth, 500));

    natsSubscription_Destroy(ingest);
    natsSubscription_Destroy(auth);
    close_nats(nc, op);
}
END_TEST

START_TEST(gen_secrets_adds_only_the_missing_keys)
{
    char path[700], out[4096], line[256];
    const char *args[] = {"gen-secrets", path, NULL};
    struct stat st;
    int lines = 0;

    snprintf(path, sizeof path, "%s/gen-secrets-test.env", env->dir);
    FILE *f = fopen(path, "w");

    ck_assert_ptr_nonnull(f);
    fputs("SP_JWT_SECRET=keepme", f); /* no final newline: the next key must not glue on */
    fclose(f);
    chmod(path, 0644);

    ck_assert_msg(run_spctl(out, sizeof out, args, NULL) == 0, "%s", out);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f)) {
        char *eq = strchr(line, '=');

        line[strcspn(line, "\n")] = '\0';
        ck_assert_ptr_nonnull(eq);
        *eq = '\0';
        const char *v = eq + 1;

        lines++;
        if (strcmp(line, "SP_JWT_SECRET") == 0) {
            ck_assert_str_eq(v, "keepme");
            continue;
        }
        ck_assert_int_eq(strspn(v, "0123456789abcdef"), strlen(v));
        ck_assert_int_eq(strlen(v), strcmp(line, "SP_MASTER_KEY") == 0 ? 64 : 32);
        ck_assert_msg(strstr(out, v) == NULL, "a secret was printed: %s", line);
    }
    fclose(f);
    ck_assert_int_eq(lines, 16); /* 9 for JWT, master key and NATS; 6 PostgreSQL, 1 Redis */

    /* a second run changes nothing */
    char before[2048], *text = NULL;
    size_t n = 0;

    f = fopen(path, "r");
    n = fread(before, 1, sizeof before - 1, f);
    before[n] = '\0';
    fclose(f);
    ck_assert_int_eq(run_spctl(out, sizeof out, args, NULL), 0);
    f = fopen(path, "r");
    text = calloc(1, sizeof before);
    ck_assert_uint_eq(fread(text, 1, sizeof before - 1, f), n);
    fclose(f);
    ck_assert_str_eq(text, before);
    free(text);
}
END_TEST

/* ---- the edge's nginx config ------------------------------------------------------------- */

/* The whole file at path, NUL-terminated (NULL when it cannot be read); free() it. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    char *text = NULL;
    size_t cap = 0, n = 0, r;
    do {
        if (cap - n < 4096) text = realloc(text, cap += 65536);
        ck_assert_ptr_nonnull(text);
        r = fread(text + n, 1, cap - n - 1, f);
        n += r;
    } while (r > 0);
    fclose(f);
    text[n] = '\0';
    return text;
}

/* Renders the project's template into dir/name.conf with 'extra'; the exit status. */
static int edge_config(char *out, size_t outlen, const char *name, const char *const *extra,
                       char *conf, size_t conflen)
{
    char tmpl[600];
    snprintf(tmpl, sizeof tmpl, "%s/deploy/nginx/edge.conf.template", SP_SOURCE_DIR);
    snprintf(conf, conflen, "%s/%s.conf", env->dir, name);
    const char *args[] = {"edge-config", tmpl, conf, NULL};
    return run_spctl(out, outlen, args, extra);
}

START_TEST(edge_config_fills_the_template_from_the_environment)
{
    char out[4096], conf[700], edir[600], dirv[700];
    snprintf(edir, sizeof edir, "%s/edge-render", env->dir);
    snprintf(dirv, sizeof dirv, "SP_EDGE_DIR=%s", edir);
    const char *extra[] = {"SP_EDGE_ADDR=127.0.0.1:18080", "SP_EDGE_UPSTREAM=127.0.0.1:18081",
                           dirv, "SP_EDGE_CONN_PER_ADDR=", NULL};
    ck_assert_msg(edge_config(out, sizeof out, "edge-ok", extra, conf, sizeof conf) == 0, "%s",
                  out);
    char *text = slurp(conf);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "listen 127.0.0.1:18080 backlog=4096;"));
    ck_assert_ptr_nonnull(strstr(text, "server 127.0.0.1:18081 "));
    /* unset or empty: the default */
    ck_assert_ptr_nonnull(strstr(text, "limit_conn sp_addr 64;"));
    /* nothing of ours is left; nginx's own variables are */
    char *line = text;
    for (char *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        const char *first = line + strspn(line, " \t");
        if (*first == '#') continue;
        const char *d = strstr(line, "${SP_");
        ck_assert_msg(d == NULL || (nl && d > nl), "unrendered: %.*s",
                      (int)(nl ? nl - line : (long)strlen(line)), line);
    }
    ck_assert_ptr_nonnull(strstr(text, "$binary_remote_addr"));
    free(text);
    struct stat st;
    ck_assert_int_eq(stat(edir, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0700);
}
END_TEST

/* The environment fills in values, never adds configuration: a value that could end a
 * directive or open a block is refused and nothing is written. */
START_TEST(edge_config_refuses_a_value_that_would_add_configuration)
{
    static const char *const bad[] = {
        "SP_EDGE_ADDR=127.0.0.1:1; include /etc/passwd",
        "SP_EDGE_ADDR=127.0.0.1:1;",
        "SP_EDGE_ADDR=127.0.0.1:1}",
        "SP_EDGE_ADDR=127.0.0.1:1\nserver {",
        "SP_EDGE_ADDR=$host",
        "SP_EDGE_ADDR=\"x\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[4096], conf[700], name[32];
        snprintf(name, sizeof name, "edge-bad-%zu", i);
        const char *extra[] = {bad[i], "SP_EDGE_UPSTREAM=127.0.0.1:2", "SP_EDGE_DIR=/nonexistent/e",
                               NULL};
        ck_assert_msg(edge_config(out, sizeof out, name, extra, conf, sizeof conf) != 0,
                      "accepted %s", bad[i]);
        ck_assert_msg(strstr(out, "SP_EDGE_ADDR") != NULL, "%s: %s", bad[i], out);
        ck_assert_msg(access(conf, F_OK) != 0, "%s: %s was written", bad[i], conf);
    }
    /* a required variable unset: refused, with the line that needs it */
    char out[4096], conf[700];
    const char *extra[] = {"SP_EDGE_ADDR=127.0.0.1:1", "SP_EDGE_DIR=/nonexistent/e", NULL};
    ck_assert_int_ne(edge_config(out, sizeof out, "edge-unset", extra, conf, sizeof conf), 0);
    ck_assert_msg(strstr(out, "SP_EDGE_UPSTREAM") != NULL && strstr(out, "edge.conf.template:") != NULL,
                  "%s", out);
    ck_assert_int_ne(access(conf, F_OK), 0);
}
END_TEST

int main(void)
{
    env = sptest_start("spctl_migrate", SPTEST_PG | SPTEST_NATS);
    secret(spctl_password, sizeof spctl_password, "SP_NATS_SPCTL_PASSWORD");
    if (!spctl_password[0]) {
        fprintf(stderr, "no SP_NATS_SPCTL_PASSWORD in %s (is spctl built?)\n", env->secrets);
        sptest_mark_failed(env);
        sptest_stop(env);
        return 1;
    }

    Suite *s = suite_create("spctl_migrate");
    TCase *db = tcase_create("migrate");
    TCase *bus = tcase_create("nats_users");
    TCase *edge = tcase_create("edge_config");

    tcase_set_timeout(db, 120);
    tcase_set_timeout(bus, 60);
    tcase_add_test(db, gen_secrets_adds_only_the_missing_keys);
    tcase_add_test(db, migrate_twice_applies_nothing_the_second_time);
    tcase_add_test(db, migrate_refuses_a_changed_applied_file);
    tcase_add_test(db, migrate_gives_each_schema_to_its_own_role);
    tcase_add_test(db, streams_exist_with_their_limits);
    tcase_add_test(db, create_admin_creates_once);
    tcase_add_test(db, create_admin_requires_a_sound_password);
    tcase_add_test(bus, subscriber_reads_slot_status_but_cannot_call_services);
    tcase_add_test(bus, camera_cannot_read_service_replies);
    tcase_add_test(bus, camera_publishes_only_on_the_ingest_subjects);
    tcase_add_test(bus, subscriber_reads_slot_status_but_touches_no_consumer);
    tcase_add_test(bus, camera_and_subscriber_do_not_share_replies);
    tcase_add_test(bus, services_use_only_their_own_streams);
    suite_add_tcase(s, db);
    tcase_add_test(edge, edge_config_fills_the_template_from_the_environment);
    tcase_add_test(edge, edge_config_refuses_a_value_that_would_add_configuration);
    suite_add_tcase(s, bus);
    suite_add_tcase(s, edge);

    SRunner *sr = srunner_create(s);

    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);

    srunner_free(sr);
    if (failed) sptest_mark_failed(env);
    sptest_stop(env);
    return failed ? 1 : 0;
}
