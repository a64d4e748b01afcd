/* test_spbus.c -- the bus against a real nats-server: envelope, errors, deadlines,
 * queue groups, concurrent workers, batch routes, revoked sessions, core subscriptions,
 * NATS restarts, time budgets along a chain of calls, JetStream durable pull consumers. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "sp/auth/v1/auth.pb-c.h"
#include "spadmin.h"
#include "spbus.h"
#include "sptest.h"

static sptest_env *g_env; /* one nats-server for the suite; started before the tests fork */

static atomic_int g_echoed;      /* Echo handler calls */
static atomic_int g_running;     /* Sleep handlers running now */
static atomic_int g_max_running; /* the most seen at once */

/* ---- handlers --------------------------------------------------------------------------- */

/* Echo: replies the context it received, so the test can compare it with what it sent. */
static sp_status h_echo(spbus_req *req)
{
    const Sp__V1__RequestContext *c = spbus_req_ctx(req);
    const Sp__Auth__V1__RegisterRequest *in = (const void *)spbus_req_input(req);
    Sp__Auth__V1__RegisterReply out = SP__AUTH__V1__REGISTER_REPLY__INIT;
    atomic_fetch_add(&g_echoed, 1);
    int *tag = spbus_req_user(req);
    out.id = (char *)spbus_req_id(req);
    out.name = c->user_id;
    out.role = c->role;
    out.email = in->email;
    out.has_created_at = c->has_timeout_us;
    out.created_at = c->timeout_us;
    if (tag != NULL) *tag += 1;
    return spbus_reply(req, &out.base);
}

static sp_status h_fail(spbus_req *req)
{
    return spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "bad input", "email",
                             "already registered", "password", "too short", NULL);
}

static sp_status h_deny(spbus_req *req)
{
    (void)req;
    return SP_ERR_FORBIDDEN;
}

/* Sleep: sleeps the milliseconds in 'email', replies its worker index as token_type. */
static sp_status h_sleep(spbus_req *req)
{
    const Sp__Auth__V1__LoginRequest *in = (const void *)spbus_req_input(req);
    int now = atomic_fetch_add(&g_running, 1) + 1;
    int seen = atomic_load(&g_max_running);
    while (now > seen && !atomic_compare_exchange_weak(&g_max_running, &seen, now)) {
    }
    usleep((useconds_t)atoi(in->email ? in->email : "0") * 1000);
    atomic_fetch_sub(&g_running, 1);
    Sp__Auth__V1__LoginReply out = SP__AUTH__V1__LOGIN_REPLY__INIT;
    out.token_type = sp_arena_printf(spbus_req_arena(req), "%d", spbus_req_worker(req));
    return spbus_reply(req, &out.base);
}

static atomic_int g_late_revoke; /* what spbus_req_revoked said after the reply; -1: not yet */

/* Revoke: revokes sessions "s-1" then "s-2", then by 'email': "error" replies forbidden,
 * "deny" returns forbidden without replying, anything else replies the email. Then tries
 * one more revocation, which must fail since the reply is gone. */
static sp_status h_revoke(spbus_req *req)
{
    const Sp__Auth__V1__RegisterRequest *in = (const void *)spbus_req_input(req);
    const char *what = in->email != NULL ? in->email : "";
    ck_assert_int_eq(spbus_req_revoked(req, "s-1"), SP_OK);
    char s2[8] = "s-2"; /* the library copies it: overwritten right after */
    ck_assert_int_eq(spbus_req_revoked(req, s2), SP_OK);
    strcpy(s2, "XXX");
    sp_status s;
    if (strcmp(what, "deny") == 0) return SP_ERR_FORBIDDEN;
    if (strcmp(what, "error") == 0) {
        s = spbus_reply_error(req, SP_ERR_FORBIDDEN, "not yours", NULL);
    } else {
        Sp__Auth__V1__RegisterReply out = SP__AUTH__V1__REGISTER_REPLY__INIT;
        out.email = (char *)what;
        s = spbus_reply(req, &out.base);
    }
    atomic_store(&g_late_revoke, (int)spbus_req_revoked(req, "s-late"));
    return s;
}

/* Remaining: replies what spbus_req_remaining_us says, and the budget it was sent with, in
 * created_at and id. */
static sp_status h_remaining(spbus_req *req)
{
    Sp__Auth__V1__RegisterReply out = SP__AUTH__V1__REGISTER_REPLY__INIT;
    out.has_created_at = 1;
    out.created_at = spbus_req_remaining_us(req);
    const Sp__V1__RequestContext *c = spbus_req_ctx(req);
    out.id = sp_arena_printf(spbus_req_arena(req), "%lld",
                             c->has_timeout_us ? (long long)c->timeout_us : -1LL);
    return spbus_reply(req, &out.base);
}

static const spbus_route k_routes[] = {
    {"Echo", h_echo, &sp__auth__v1__register_request__descriptor, NULL},
    {"Fail", h_fail, &sp__auth__v1__login_request__descriptor, NULL},
    {"Deny", h_deny, &sp__auth__v1__get_me_request__descriptor, NULL},
    {"Sleep", h_sleep, &sp__auth__v1__login_request__descriptor, NULL},
    {"Revoke", h_revoke, &sp__auth__v1__register_request__descriptor, NULL},
    {"Remaining", h_remaining, &sp__auth__v1__register_request__descriptor, NULL},
};
#define NROUTES (sizeof(k_routes) / sizeof(k_routes[0]))

/* What the batch handler saw, and in which order the handlers of the batch service ran. */
static pthread_mutex_t g_batch_mu = PTHREAD_MUTEX_INITIALIZER;
static size_t g_batch_sizes[64];   /* n of each call */
static int g_batch_calls;
static char g_batch_emails[64][16]; /* every input it was handed */
static int g_batch_seen;
static char g_order[32];            /* 'B' per batch call, 'N' per Note call */

static void batch_reset(void)
{
    pthread_mutex_lock(&g_batch_mu);
    g_batch_calls = 0;
    g_batch_seen = 0;
    g_order[0] = '\0';
    pthread_mutex_unlock(&g_batch_mu);
}

static void order_add(char c)
{
    size_t n = strlen(g_order);
    if (n + 1 < sizeof(g_order)) {
        g_order[n] = c;
        g_order[n + 1] = '\0';
    }
}

/* Batch: echoes each request's email and request id, except "skip", left unanswered. */
static void h_batch(spbus_req **reqs, size_t n)
{
    pthread_mutex_lock(&g_batch_mu);
    if (g_batch_calls < 64) g_batch_sizes[g_batch_calls] = n;
    g_batch_calls++;
    order_add('B');
    for (size_t i = 0; i < n; i++) {
        const Sp__Auth__V1__RegisterRequest *in = (const void *)spbus_req_input(reqs[i]);
        ck_assert_ptr_nonnull(in);
        if (g_batch_seen < 64)
            snprintf(g_batch_emails[g_batch_seen], sizeof(g_batch_emails[0]), "%s",
                     in->email != NULL ? in->email : "");
        g_batch_seen++;
    }
    pthread_mutex_unlock(&g_batch_mu);
    for (size_t i = 0; i < n; i++) {
        const Sp__Auth__V1__RegisterRequest *in = (const void *)spbus_req_input(reqs[i]);
        if (in->email != NULL && strcmp(in->email, "skip") == 0) continue;
        Sp__Auth__V1__RegisterReply out = SP__AUTH__V1__REGISTER_REPLY__INIT;
        out.email = in->email;
        out.id = (char *)spbus_req_id(reqs[i]);
        ck_assert_int_eq(spbus_reply(reqs[i], &out.base), SP_OK);
    }
}

/* Note: a plain route of the batch service; records that it ran. */
static sp_status h_note(spbus_req *req)
{
    pthread_mutex_lock(&g_batch_mu);
    order_add('N');
    pthread_mutex_unlock(&g_batch_mu);
    Sp__Auth__V1__RegisterReply out = SP__AUTH__V1__REGISTER_REPLY__INIT;
    out.email = "note";
    return spbus_reply(req, &out.base);
}

/* The batch service, api "tb". */
static const spbus_route k_batch_routes[] = {
    {"Batch", NULL, &sp__auth__v1__register_request__descriptor, h_batch},
    {"Sleep", h_sleep, &sp__auth__v1__login_request__descriptor, NULL},
    {"Note", h_note, &sp__auth__v1__register_request__descriptor, NULL},
};
#define NBATCH_ROUTES (sizeof(k_batch_routes) / sizeof(k_batch_routes[0]))

/* ---- helpers ---------------------------------------------------------------------------- */

static spbus *bus_to(const char *url, int connections)
{
    spbus_opts o = {.url = url, .name = "test_spbus", .connections = connections};
    spbus *b = NULL;
    ck_assert_int_eq(spbus_connect(&b, &o), SP_OK);
    ck_assert_ptr_nonnull(b);
    return b;
}

static spbus_service *serve(spbus *b, const char *queue, int workers, void *user)
{
    spbus_service *s = NULL;
    ck_assert_int_eq(spbus_serve(&s, b, "t", queue, k_routes, NROUTES, workers, user), SP_OK);
    return s;
}

static sp_status echo(spbus *b, const Sp__V1__RequestContext *ctx, const char *email,
                      int timeout_ms, Sp__Auth__V1__RegisterReply **out, sp_arena *a)
{
    Sp__Auth__V1__RegisterRequest in = SP__AUTH__V1__REGISTER_REQUEST__INIT;
    in.email = (char *)email;
    ProtobufCMessage *m = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s = spbus_request(&m, &err, b, "sp.t.v1.Echo", ctx, &in.base,
                                &sp__auth__v1__register_reply__descriptor, timeout_ms, a);
    if (out != NULL) *out = (Sp__Auth__V1__RegisterReply *)m;
    return s;
}

static sp_status sleep_req(spbus *b, int ms, int timeout_ms, sp_arena *a,
                           Sp__Auth__V1__LoginReply **out)
{
    Sp__Auth__V1__LoginRequest in = SP__AUTH__V1__LOGIN_REQUEST__INIT;
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", ms);
    in.email = buf;
    ProtobufCMessage *m = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s = spbus_request(&m, &err, b, "sp.t.v1.Sleep", NULL, &in.base,
                                &sp__auth__v1__login_reply__descriptor, timeout_ms, a);
    if (out != NULL) *out = (Sp__Auth__V1__LoginReply *)m;
    return s;
}

static sp_status sleep_req_ctx(spbus *b, const Sp__V1__RequestContext *ctx, int ms, int timeout_ms,
                               sp_arena *a)
{
    Sp__Auth__V1__LoginRequest in = SP__AUTH__V1__LOGIN_REQUEST__INIT;
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", ms);
    in.email = buf;
    ProtobufCMessage *m = NULL;
    Sp__V1__Error *err = NULL;
    return spbus_request(&m, &err, b, "sp.t.v1.Sleep", ctx, &in.base,
                         &sp__auth__v1__login_reply__descriptor, timeout_ms, a);
}

/* Retries Echo until it answers or 'ms' pass; returns the last status. */
static sp_status echo_until_ok(spbus *b, int ms)
{
    int64_t until = sp_monotonic_us() + (int64_t)ms * 1000;
    sp_status s;
    do {
        sp_arena *a = sp_arena_create(1024);
        s = echo(b, NULL, "x@y.z", 500, NULL, a);
        sp_arena_destroy(a);
        if (s != SP_OK) usleep(100 * 1000);
    } while (s != SP_OK && sp_monotonic_us() < until);
    return s;
}

/* Polls '*flag' until it differs from 'unset' or 'ms' pass; returns its last value. */
static int wait_change(atomic_int *flag, int unset, int ms)
{
    int64_t until = sp_monotonic_us() + (int64_t)ms * 1000;
    int v;
    while ((v = atomic_load(flag)) == unset && sp_monotonic_us() < until)
        usleep(5000);
    return v;
}

/* The batch routes served as api "t" (so that sleep_req reaches their Sleep). */
static spbus_service *serve_batch(spbus *b, int workers)
{
    spbus_service *s = NULL;
    ck_assert_int_eq(
        spbus_serve(&s, b, "t", "qb", k_batch_routes, NBATCH_ROUTES, workers, NULL), SP_OK);
    return s;
}

/* A RegisterRequest with 'email' on 'subject', request id 'request_id' (may be NULL). */
static sp_status email_req(spbus *b, const char *subject, const char *request_id,
                           const char *email, int timeout_ms, sp_arena *a,
                           Sp__Auth__V1__RegisterReply **out, Sp__V1__Error **err)
{
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.request_id = (char *)request_id;
    Sp__Auth__V1__RegisterRequest in = SP__AUTH__V1__REGISTER_REQUEST__INIT;
    in.email = (char *)email;
    ProtobufCMessage *m = NULL;
    sp_status s = spbus_request(&m, err, b, subject, &ctx, &in.base,
                                &sp__auth__v1__register_reply__descriptor, timeout_ms, a);
    if (out != NULL) *out = (Sp__Auth__V1__RegisterReply *)m;
    return s;
}

/* Waits (polling, at most 5 s) until a Sleep handler runs: the one worker is busy. */
static void wait_worker_busy(void)
{
    int64_t until = sp_monotonic_us() + 5000 * 1000;
    while (atomic_load(&g_running) == 0 && sp_monotonic_us() < until)
        usleep(2000);
    ck_assert_int_eq(atomic_load(&g_running), 1);
}

/* One caller of the batch route, on its own thread and arena. */
typedef struct {
    spbus *b;
    const char *email; /* NULL: "e-<i>" */
    int i;
    sp_status s;
    char want[16], got[16], got_id[16], err_code[32];
} batch_arg;

static void *par_batch(void *p)
{
    batch_arg *x = p;
    sp_arena *a = sp_arena_create(1024);
    char rid[16];
    snprintf(rid, sizeof(rid), "r-%d", x->i);
    snprintf(x->want, sizeof(x->want), "%s", x->email != NULL ? x->email : "");
    if (x->email == NULL) snprintf(x->want, sizeof(x->want), "e-%d", x->i);
    Sp__Auth__V1__RegisterReply *r = NULL;
    Sp__V1__Error *err = NULL;
    x->s = email_req(x->b, "sp.t.v1.Batch", rid, x->want, 5000, a, &r, &err);
    if (r != NULL) {
        snprintf(x->got, sizeof(x->got), "%s", r->email != NULL ? r->email : "(null)");
        snprintf(x->got_id, sizeof(x->got_id), "%s", r->id != NULL ? r->id : "(null)");
    }
    if (err != NULL) snprintf(x->err_code, sizeof(x->err_code), "%s", err->code);
    sp_arena_destroy(a);
    return NULL;
}

/* Packs 'm' into 'buf' (256 bytes). */
static size_t pack_small(uint8_t *buf, const ProtobufCMessage *m)
{
    ck_assert_uint_le(protobuf_c_message_get_packed_size(m), 256);
    return protobuf_c_message_pack(m, buf);
}

/* Publishes from a plain connection, in order, an sp.v1.Request (budget 10 s) whose
 * payload is the 'len' bytes at 'payload' (a packed message, or bytes that are not one),
 * with reply subject 'reply'. */
static void raw_send(natsConnection *nc, const char *subject, const char *reply,
                     const uint8_t *payload, size_t len)
{
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.has_timeout_us = 1;
    ctx.timeout_us = 10 * 1000 * 1000;
    Sp__V1__Request r = SP__V1__REQUEST__INIT;
    r.ctx = &ctx;
    r.has_payload = 1;
    r.payload.data = (uint8_t *)payload;
    r.payload.len = len;
    uint8_t buf[512];
    ck_assert_uint_le(sp__v1__request__get_packed_size(&r), sizeof(buf));
    size_t n = sp__v1__request__pack(&r, buf);
    ck_assert_int_eq(natsConnection_PublishRequest(nc, subject, reply, buf, (int)n), NATS_OK);
}

static void raw_send_email(natsConnection *nc, const char *subject, const char *reply,
                           const char *email)
{
    Sp__Auth__V1__RegisterRequest in = SP__AUTH__V1__REGISTER_REQUEST__INIT;
    in.email = (char *)email;
    uint8_t buf[256];
    raw_send(nc, subject, reply, buf, pack_small(buf, &in.base));
}

static void raw_send_sleep(natsConnection *nc, const char *reply, int ms)
{
    char txt[16];
    snprintf(txt, sizeof(txt), "%d", ms);
    Sp__Auth__V1__LoginRequest in = SP__AUTH__V1__LOGIN_REQUEST__INIT;
    in.email = txt;
    uint8_t buf[256];
    raw_send(nc, "sp.t.v1.Sleep", reply, buf, pack_small(buf, &in.base));
}

/* Reads 'n' replies on 'sub' within 5 s; reply subjects end in ".<i>", i < n, and rep[i] is
 * the reply to request i (free with sp__v1__reply__free_unpacked). */
static void raw_replies(natsSubscription *sub, Sp__V1__Reply **rep, int n)
{
    for (int i = 0; i < n; i++)
        rep[i] = NULL;
    int64_t until = sp_monotonic_us() + 5000 * 1000;
    for (int got = 0; got < n; got++) {
        int64_t left = (until - sp_monotonic_us()) / 1000;
        ck_assert_int_gt(left, 0);
        natsMsg *m = NULL;
        ck_assert_int_eq(natsSubscription_NextMsg(&m, sub, left), NATS_OK);
        const char *dot = strrchr(natsMsg_GetSubject(m), '.');
        ck_assert_ptr_nonnull(dot);
        int i = atoi(dot + 1);
        ck_assert(i >= 0 && i < n && rep[i] == NULL);
        rep[i] = sp__v1__reply__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                       (const uint8_t *)natsMsg_GetData(m));
        ck_assert_ptr_nonnull(rep[i]);
        natsMsg_Destroy(m);
    }
}

static void assert_reply_email(const Sp__V1__Reply *rep, const char *want)
{
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_PAYLOAD);
    Sp__Auth__V1__RegisterReply *r =
        sp__auth__v1__register_reply__unpack(NULL, rep->payload.len, rep->payload.data);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->email, want);
    sp__auth__v1__register_reply__free_unpacked(r, NULL);
}

static void assert_reply_error(const Sp__V1__Reply *rep, const char *code)
{
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_ERROR);
    ck_assert_str_eq(rep->error->code, code);
}

/* The session ids a client's spbus_on_revoked hook was given. */
typedef struct {
    int n;
    char ids[8][16];
    pthread_t caller;
    bool other_thread; /* called from a thread other than the caller's */
} revoked_rec;

static void on_revoked_rec(void *user, const char *session_id)
{
    revoked_rec *r = user;
    if (!pthread_equal(pthread_self(), r->caller)) r->other_thread = true;
    if (r->n < 8) snprintf(r->ids[r->n], sizeof(r->ids[0]), "%s", session_id);
    r->n++;
}

/* What a spbus_subscribe callback received. */
typedef struct {
    pthread_mutex_t mu;
    int n;
    char subject[8][64];
    char data[8][16];
    size_t len[8];
} msg_box;

static void on_msg(void *user, const char *subject, const void *data, size_t len)
{
    msg_box *bx = user;
    pthread_mutex_lock(&bx->mu);
    if (bx->n < 8) {
        snprintf(bx->subject[bx->n], sizeof(bx->subject[0]), "%s", subject);
        bx->len[bx->n] = len;
        if (len > 0) memcpy(bx->data[bx->n], data, len < 16 ? len : 16);
    }
    bx->n++;
    pthread_mutex_unlock(&bx->mu);
}

static int box_count(msg_box *bx)
{
    pthread_mutex_lock(&bx->mu);
    int n = bx->n;
    pthread_mutex_unlock(&bx->mu);
    return n;
}

/* Polls until 'bx' holds at least 'want' messages or 'ms' pass; returns how many it holds. */
static int box_wait(msg_box *bx, int want, int ms)
{
    int64_t until = sp_monotonic_us() + (int64_t)ms * 1000;
    int n;
    while ((n = box_count(bx)) < want && sp_monotonic_us() < until)
        usleep(5000);
    return n;
}

/* ---- tests ------------------------------------------------------------------------------ */

START_TEST(round_trip_carries_ctx)
{
    spbus *b = bus_to(g_env->nats_url, 2);
    spbus_service *svc = serve(b, "q", 2, NULL);
    sp_arena *a = sp_arena_create(1024);
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.request_id = "req-123";
    ctx.user_id = "user-9";
    ctx.role = "admin";

    /* No budget from the caller: the bus sends the timeout, in a copy. */
    Sp__Auth__V1__RegisterReply *r = NULL;
    ck_assert_int_eq(echo(b, &ctx, "a@b.c", 2000, &r, a), SP_OK);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->id, "req-123");
    ck_assert_str_eq(r->name, "user-9");
    ck_assert_str_eq(r->role, "admin");
    ck_assert_str_eq(r->email, "a@b.c");
    ck_assert(r->has_created_at);
    ck_assert_int_eq(r->created_at, 2000 * 1000);
    ck_assert(!ctx.has_timeout_us);

    /* A budget the caller set below the timeout bounds it; one above it does not. */
    ctx.has_timeout_us = 1;
    ctx.timeout_us = 1500 * 1000;
    ck_assert_int_eq(echo(b, &ctx, "a@b.c", 2000, &r, a), SP_OK);
    ck_assert_int_eq(r->created_at, 1500 * 1000);
    ctx.timeout_us = 5 * 1000 * 1000;
    ck_assert_int_eq(echo(b, &ctx, "a@b.c", 2000, &r, a), SP_OK);
    ck_assert_int_eq(r->created_at, 2000 * 1000);

    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(b);
}
END_TEST

START_TEST(error_reply_fills_status_and_err)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    sp_arena *a = sp_arena_create(1024);
    Sp__Auth__V1__LoginRequest in = SP__AUTH__V1__LOGIN_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s = spbus_request(&m, &err, b, "sp.t.v1.Fail", NULL, &in.base,
                                &sp__auth__v1__login_reply__descriptor, 2000, a);
    ck_assert_int_eq(s, SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_null(m);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->code, "validation_failed");
    ck_assert_str_eq(err->message, "bad input");
    ck_assert_uint_eq(err->n_fields, 2);
    ck_assert_str_eq(err->fields[0]->path, "email");
    ck_assert_str_eq(err->fields[0]->reason, "already registered");
    ck_assert_str_eq(err->fields[1]->path, "password");
    ck_assert_str_eq(err->fields[1]->reason, "too short");
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(b);
}
END_TEST

START_TEST(handler_error_without_reply_is_replied)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    sp_arena *a = sp_arena_create(1024);
    Sp__Auth__V1__GetMeRequest in = SP__AUTH__V1__GET_ME_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    Sp__V1__Error *err = NULL;
    int64_t t0 = sp_monotonic_us();
    sp_status s = spbus_request(&m, &err, b, "sp.t.v1.Deny", NULL, &in.base,
                                &sp__auth__v1__get_me_reply__descriptor, 2000, a);
    ck_assert_int_eq(s, SP_ERR_FORBIDDEN);
    ck_assert_int_lt(sp_monotonic_us() - t0, 1000 * 1000);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->code, "forbidden");
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(b);
}
END_TEST

START_TEST(no_responder_is_unavailable_quickly)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    sp_arena *a = sp_arena_create(1024);
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(echo(b, NULL, "x", 3000, NULL, a), SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 1000 * 1000);
    sp_arena_destroy(a);
    spbus_destroy(b);
}
END_TEST

START_TEST(slow_handler_is_unavailable_after_timeout)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    sp_arena *a = sp_arena_create(1024);
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(sleep_req(b, 1500, 300, a, NULL), SP_ERR_UNAVAILABLE);
    int64_t took = sp_monotonic_us() - t0;
    ck_assert_int_ge(took, 250 * 1000);
    ck_assert_int_lt(took, 1000 * 1000);
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(b);
}
END_TEST

START_TEST(expired_deadline_is_not_sent)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    sp_arena *a = sp_arena_create(1024);
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.has_timeout_us = 1;
    ctx.timeout_us = 0; /* spent */
    atomic_store(&g_echoed, 0);
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(echo(b, &ctx, "late", 2000, NULL, a), SP_ERR_UNAVAILABLE);
    ctx.timeout_us = -1000 * 1000;
    ck_assert_int_eq(echo(b, &ctx, "late", 2000, NULL, a), SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 100 * 1000);
    /* A budget smaller than the timeout bounds the wait. */
    ctx.timeout_us = 300 * 1000;
    t0 = sp_monotonic_us();
    ck_assert_int_eq(sleep_req_ctx(b, &ctx, 1500, 5000, a), SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 1000 * 1000);
    ck_assert_int_eq(atomic_load(&g_echoed), 0);
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(b);
}
END_TEST

START_TEST(unknown_method_is_not_found)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    sp_arena *a = sp_arena_create(1024);
    Sp__Auth__V1__GetMeRequest in = SP__AUTH__V1__GET_ME_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s = spbus_request(&m, &err, b, "sp.t.v1.NoSuchMethod", NULL, &in.base,
                                &sp__auth__v1__get_me_reply__descriptor, 2000, a);
    ck_assert_int_eq(s, SP_ERR_NOT_FOUND);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err->code, "not_found");
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(b);
}
END_TEST

START_TEST(queue_group_shares_work)
{
    int n1 = 0, n2 = 0;
    spbus *b1 = bus_to(g_env->nats_url, 1), *b2 = bus_to(g_env->nats_url, 1);
    spbus_service *s1 = serve(b1, "shared", 1, &n1);
    spbus_service *s2 = serve(b2, "shared", 1, &n2);
    spbus *c = bus_to(g_env->nats_url, 1);
    sp_arena *a = sp_arena_create(1024);
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(echo(c, NULL, "x", 2000, NULL, a), SP_OK);
    spbus_service_destroy(s1);
    spbus_service_destroy(s2);
    ck_assert_int_eq(n1 + n2, 40); /* each request went to one member only */
    ck_assert_int_gt(n1, 0);
    ck_assert_int_gt(n2, 0);
    sp_arena_destroy(a);
    spbus_destroy(c);
    spbus_destroy(b1);
    spbus_destroy(b2);
}
END_TEST

typedef struct {
    spbus *b;
    sp_status s;
    int worker;
} par_arg;

static void *par_sleep(void *p)
{
    par_arg *x = p;
    sp_arena *a = sp_arena_create(1024);
    Sp__Auth__V1__LoginReply *r = NULL;
    x->s = sleep_req(x->b, 600, 5000, a, &r);
    x->worker = r != NULL ? atoi(r->token_type) : -1;
    sp_arena_destroy(a);
    return NULL;
}

START_TEST(workers_run_concurrently)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 4, NULL);
    spbus *c = bus_to(g_env->nats_url, 2);
    atomic_store(&g_max_running, 0);
    pthread_t th[4];
    par_arg args[4];
    int64_t t0 = sp_monotonic_us();
    for (int i = 0; i < 4; i++) {
        args[i] = (par_arg){.b = c};
        ck_assert_int_eq(pthread_create(&th[i], NULL, par_sleep, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    int64_t took = sp_monotonic_us() - t0;
    bool seen[4] = {false};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(args[i].s, SP_OK);
        ck_assert_int_ge(args[i].worker, 0);
        ck_assert_int_lt(args[i].worker, 4);
        ck_assert(!seen[args[i].worker]); /* a worker index is never used twice at once */
        seen[args[i].worker] = true;
    }
    ck_assert_int_eq(atomic_load(&g_max_running), 4);
    ck_assert_int_lt(took, 1200 * 1000); /* ~1x 600 ms, not 4x */
    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
}
END_TEST

typedef struct {
    spbus *b;
    sp_status s;
} drain_arg;

static void *drain_sleep(void *p)
{
    drain_arg *x = p;
    sp_arena *a = sp_arena_create(1024);
    x->s = sleep_req(x->b, 500, 5000, a, NULL);
    sp_arena_destroy(a);
    return NULL;
}

START_TEST(drain_finishes_running_handlers)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    spbus *c = bus_to(g_env->nats_url, 1);
    atomic_store(&g_running, 0);
    drain_arg x = {.b = c};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, drain_sleep, &x), 0);
    while (atomic_load(&g_running) == 0)
        usleep(5000);
    int64_t t0 = sp_monotonic_us();
    spbus_drain(b, 5000);
    int64_t took = sp_monotonic_us() - t0;
    pthread_join(th, NULL);
    ck_assert_int_eq(x.s, SP_OK); /* the request it held was answered */
    ck_assert_int_lt(took, 3000 * 1000);
    ck_assert(!spbus_connected(b));
    /* Nothing serves any more. */
    sp_arena *a = sp_arena_create(1024);
    ck_assert_int_eq(echo(c, NULL, "x", 1000, NULL, a), SP_ERR_UNAVAILABLE);
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
}
END_TEST

/* A plain cnats connection, as an outsider would have. */
static natsConnection *raw_conn(void)
{
    natsConnection *nc = NULL;
    ck_assert_int_eq(natsConnection_ConnectTo(&nc, g_env->nats_url), NATS_OK);
    return nc;
}

START_TEST(publish_reaches_subscribers)
{
    natsConnection *nc = raw_conn();
    natsSubscription *sub = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, "sp.catalog.changed.>"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
    spbus *b = bus_to(g_env->nats_url, 2);
    ck_assert_int_eq(spbus_publish(b, "sp.catalog.changed.c1.lot", "abc", 3), SP_OK);
    natsMsg *m = NULL;
    ck_assert_int_eq(natsSubscription_NextMsg(&m, sub, 2000), NATS_OK);
    ck_assert_int_eq(natsMsg_GetDataLength(m), 3);
    ck_assert_int_eq(memcmp(natsMsg_GetData(m), "abc", 3), 0);
    natsMsg_Destroy(m);
    spbus_destroy(b);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(replies_use_the_private_inbox_prefix)
{
    natsConnection *nc = raw_conn();
    natsSubscription *sub = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, "sp.t.v1.Echo"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    sp_arena *a = sp_arena_create(1024);
    ck_assert_int_eq(echo(b, NULL, "x", 2000, NULL, a), SP_OK);
    natsMsg *m = NULL;
    ck_assert_int_eq(natsSubscription_NextMsg(&m, sub, 2000), NATS_OK);
    ck_assert_int_eq(strncmp(natsMsg_GetReply(m), "_SP_INBOX.", 10), 0);
    natsMsg_Destroy(m);
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(b);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(expired_deadline_is_never_handled)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    natsConnection *nc = raw_conn();
    /* The envelope of a caller whose budget was spent when it sent, straight onto the
     * subject. */
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.has_timeout_us = 1;
    ctx.timeout_us = 0;
    Sp__V1__Request r = SP__V1__REQUEST__INIT;
    r.ctx = &ctx;
    uint8_t buf[256];
    size_t len = sp__v1__request__pack(&r, buf);
    atomic_store(&g_echoed, 0);
    natsMsg *m = NULL;
    ck_assert_int_eq(natsConnection_Request(&m, nc, "sp.t.v1.Echo", buf, (int)len, 500),
                     NATS_TIMEOUT);
    /* One worker: this one is served after the expired one was looked at. */
    sp_arena *a = sp_arena_create(1024);
    ck_assert_int_eq(echo(b, NULL, "on time", 2000, NULL, a), SP_OK);
    ck_assert_int_eq(atomic_load(&g_echoed), 1);
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(b);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(malformed_envelope_is_bad_request)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    natsConnection *nc = raw_conn();
    natsMsg *m = NULL;
    ck_assert_int_eq(natsConnection_Request(&m, nc, "sp.t.v1.Echo", "\xff\xff\xff", 3, 2000),
                     NATS_OK);
    Sp__V1__Reply *rep = sp__v1__reply__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                               (const uint8_t *)natsMsg_GetData(m));
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_ERROR);
    ck_assert_str_eq(rep->error->code, "bad_request");
    sp__v1__reply__free_unpacked(rep, NULL);
    natsMsg_Destroy(m);
    spbus_service_destroy(svc);
    spbus_destroy(b);
    natsConnection_Destroy(nc);
}
END_TEST

/* A stream of its own for each test: the suite's nats-server has JetStream. */
static void add_stream(natsConnection *nc, const char *name, const char *subject)
{
    jsCtx *js = NULL;
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[] = {subject};
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsStreamConfig_Init(&cfg);
    cfg.Name = name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_MemoryStorage;
    ck_assert_int_eq(js_AddStream(&si, js, &cfg, NULL, &jerr), NATS_OK);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
}

static uint64_t stream_msgs(natsConnection *nc, const char *name)
{
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    ck_assert_int_eq(js_GetStreamInfo(&si, js, name, NULL, &jerr), NATS_OK);
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    return n;
}

START_TEST(js_publish_is_acked_and_deduplicated_by_msg_id)
{
    natsConnection *nc = raw_conn();
    add_stream(nc, "T_JS_DEDUP", "t.js.dedup.>");
    spbus *b = bus_to(g_env->nats_url, 1);
    ck_assert_int_eq(spbus_js_publish(b, "t.js.dedup.a", "one", 3, "id-1", 2000), SP_OK);
    ck_assert_int_eq(spbus_js_publish(b, "t.js.dedup.a", "one", 3, "id-1", 2000), SP_OK);
    ck_assert_int_eq(spbus_js_publish(b, "t.js.dedup.a", "two", 3, "id-2", 2000), SP_OK);
    ck_assert_int_eq(stream_msgs(nc, "T_JS_DEDUP"), 2);

    /* the stored message carries the id as Nats-Msg-Id */
    jsCtx *js = NULL;
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    const char *id = NULL;
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    ck_assert_int_eq(js_GetLastMsg(&m, js, "T_JS_DEDUP", "t.js.dedup.a", NULL, &jerr), NATS_OK);
    ck_assert_int_eq(natsMsgHeader_Get(m, "Nats-Msg-Id", &id), NATS_OK);
    ck_assert_str_eq(id, "id-2");
    ck_assert_int_eq(natsMsg_GetDataLength(m), 3);
    ck_assert_int_eq(memcmp(natsMsg_GetData(m), "two", 3), 0);
    natsMsg_Destroy(m);
    jsCtx_Destroy(js);
    spbus_destroy(b);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(js_publish_without_a_stream_is_unavailable_quickly)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(spbus_js_publish(b, "t.js.nostream", "x", 1, "id-x", 1000),
                     SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 1500 * 1000);
    spbus_destroy(b);
}
END_TEST

START_TEST(survives_nats_kill_and_restart)
{
    sptest_env *e = sptest_start("spbus-restart", SPTEST_NATS_NOAUTH);
    spbus *b = bus_to(e->nats_url, 1);
    spbus_service *svc = serve(b, "q", 2, NULL);
    spbus *c = bus_to(e->nats_url, 2);
    ck_assert_int_eq(echo_until_ok(c, 2000), SP_OK);

    sptest_kill(&e->nats, SIGKILL);
    sp_arena *a = sp_arena_create(1024);
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(echo(c, NULL, "x", 1000, NULL, a), SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 1500 * 1000);
    sp_arena_destroy(a);

    sptest_restart(e, &e->nats);
    t0 = sp_monotonic_us();
    ck_assert_int_eq(echo_until_ok(c, 10000), SP_OK);
    ck_assert_int_lt(sp_monotonic_us() - t0, 6000 * 1000);
    ck_assert(spbus_connected(b));
    ck_assert(spbus_connected(c));

    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
    sptest_stop(e);
}
END_TEST

START_TEST(connects_before_the_server_exists)
{
    sptest_env *e = sptest_start("spbus-late", SPTEST_NATS_NOAUTH);
    sptest_kill(&e->nats, SIGKILL);

    int64_t t0 = sp_monotonic_us();
    spbus *b = bus_to(e->nats_url, 1);
    spbus *c = bus_to(e->nats_url, 1);
    ck_assert_int_lt(sp_monotonic_us() - t0, 3000 * 1000); /* did not block on the server */
    ck_assert(!spbus_connected(b));
    spbus_service *svc = serve(b, "q", 1, NULL); /* subscribing while down is fine */
    sp_arena *a = sp_arena_create(1024);
    ck_assert_int_eq(echo(c, NULL, "x", 500, NULL, a), SP_ERR_UNAVAILABLE);
    sp_arena_destroy(a);

    sptest_restart(e, &e->nats);
    ck_assert_int_eq(echo_until_ok(c, 10000), SP_OK);
    ck_assert(spbus_connected(b));

    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
    sptest_stop(e);
}
END_TEST

START_TEST(batch_route_takes_the_queued_requests_together)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve_batch(b, 1);
    spbus *c = bus_to(g_env->nats_url, 2);
    batch_reset();
    atomic_store(&g_running, 0);
    /* The one worker sleeps 500 ms while the 20 requests queue up behind it. */
    drain_arg sl = {.b = c};
    pthread_t sleeper, th[20];
    ck_assert_int_eq(pthread_create(&sleeper, NULL, drain_sleep, &sl), 0);
    wait_worker_busy();
    batch_arg args[20];
    for (int i = 0; i < 20; i++) {
        args[i] = (batch_arg){.b = c, .i = i};
        ck_assert_int_eq(pthread_create(&th[i], NULL, par_batch, &args[i]), 0);
    }
    for (int i = 0; i < 20; i++)
        pthread_join(th[i], NULL);
    pthread_join(sleeper, NULL);
    ck_assert_int_eq(sl.s, SP_OK);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(args[i].s, SP_OK);
        ck_assert_str_eq(args[i].got, args[i].want); /* its own reply, not a neighbour's */
        char rid[16];
        snprintf(rid, sizeof(rid), "r-%d", i);
        ck_assert_str_eq(args[i].got_id, rid);
    }
    pthread_mutex_lock(&g_batch_mu);
    int calls = g_batch_calls, seen = g_batch_seen;
    size_t total = 0, biggest = 0;
    for (int i = 0; i < calls && i < 64; i++) {
        total += g_batch_sizes[i];
        if (g_batch_sizes[i] > biggest) biggest = g_batch_sizes[i];
    }
    pthread_mutex_unlock(&g_batch_mu);
    ck_assert_int_eq(seen, 20);
    ck_assert_uint_eq(total, 20);
    ck_assert_int_lt(calls, 20);
    ck_assert_uint_gt(biggest, 1);
    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
}
END_TEST

START_TEST(batch_request_left_unanswered_is_internal)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve_batch(b, 1);
    spbus *c = bus_to(g_env->nats_url, 1);
    batch_reset();
    atomic_store(&g_running, 0);
    drain_arg sl = {.b = c};
    pthread_t sleeper, th[3];
    ck_assert_int_eq(pthread_create(&sleeper, NULL, drain_sleep, &sl), 0);
    wait_worker_busy();
    const char *emails[3] = {"a", "skip", "c"};
    batch_arg args[3];
    int64_t t0 = sp_monotonic_us();
    for (int i = 0; i < 3; i++) {
        args[i] = (batch_arg){.b = c, .i = i, .email = emails[i]};
        ck_assert_int_eq(pthread_create(&th[i], NULL, par_batch, &args[i]), 0);
    }
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    pthread_join(sleeper, NULL);
    ck_assert_int_lt(sp_monotonic_us() - t0, 3000 * 1000); /* answered, not timed out */
    ck_assert_int_eq(args[0].s, SP_OK);
    ck_assert_str_eq(args[0].got, "a");
    ck_assert_int_eq(args[1].s, SP_ERR_INTERNAL);
    ck_assert_str_eq(args[1].err_code, "internal");
    ck_assert_int_eq(args[2].s, SP_OK);
    ck_assert_str_eq(args[2].got, "c");
    pthread_mutex_lock(&g_batch_mu);
    ck_assert_int_eq(g_batch_seen, 3);
    pthread_mutex_unlock(&g_batch_mu);
    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
}
END_TEST

/* The batch service with one worker, and a plain connection whose replies come to _TB.* */
typedef struct {
    spbus *b;
    spbus_service *svc;
    natsConnection *nc;
    natsSubscription *sub;
} raw_batch;

static raw_batch raw_batch_start(void)
{
    raw_batch f = {.b = bus_to(g_env->nats_url, 1)};
    f.svc = serve_batch(f.b, 1);
    f.nc = raw_conn();
    ck_assert_int_eq(natsConnection_SubscribeSync(&f.sub, f.nc, "_TB.*"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(f.nc), NATS_OK);
    batch_reset();
    return f;
}

static void raw_batch_end(raw_batch *f)
{
    spbus_service_destroy(f->svc);
    spbus_destroy(f->b);
    natsSubscription_Destroy(f->sub);
    natsConnection_Destroy(f->nc);
}

START_TEST(batch_bad_requests_never_reach_the_handler)
{
    raw_batch f = raw_batch_start();
    natsConnection *nc = f.nc;
    natsSubscription *sub = f.sub;
    /* One connection, so they queue in this order behind the Sleep: the worker takes 1 with
     * 2 and 3 (same subject) and 4 (another method, which ends the batch), then 5. */
    const uint8_t junk[3] = {0xff, 0xff, 0xff};
    raw_send_sleep(nc, "_TB.0", 400);
    raw_send_email(nc, "sp.t.v1.Batch", "_TB.1", "g1");
    raw_send(nc, "sp.t.v1.Batch", "_TB.2", junk, sizeof(junk)); /* not a RegisterRequest */
    ck_assert_int_eq(natsConnection_PublishRequest(nc, "sp.t.v1.Batch", "_TB.3", junk, 3),
                     NATS_OK); /* not an envelope */
    raw_send_email(nc, "sp.t.v1.NoSuchMethod", "_TB.4", "nf");
    raw_send_email(nc, "sp.t.v1.Batch", "_TB.5", "g2");
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
    Sp__V1__Reply *rep[6];
    raw_replies(sub, rep, 6);
    ck_assert_int_eq(rep[0]->result_case, SP__V1__REPLY__RESULT_PAYLOAD);
    assert_reply_email(rep[1], "g1");
    assert_reply_error(rep[2], "bad_request");
    assert_reply_error(rep[3], "bad_request");
    assert_reply_error(rep[4], "not_found");
    assert_reply_email(rep[5], "g2");
    for (int i = 0; i < 6; i++)
        sp__v1__reply__free_unpacked(rep[i], NULL);
    pthread_mutex_lock(&g_batch_mu);
    ck_assert_int_eq(g_batch_seen, 2);
    ck_assert_str_eq(g_batch_emails[0], "g1");
    ck_assert_str_eq(g_batch_emails[1], "g2");
    pthread_mutex_unlock(&g_batch_mu);
    raw_batch_end(&f);
}
END_TEST

START_TEST(batch_other_method_taken_along_is_served_after_the_batch)
{
    raw_batch f = raw_batch_start();
    natsConnection *nc = f.nc;
    natsSubscription *sub = f.sub;
    /* Queued in this order behind the Sleep: Batch x3, then Note (taken along, ends the batch). */
    raw_send_sleep(nc, "_TB.0", 400);
    raw_send_email(nc, "sp.t.v1.Batch", "_TB.1", "o1");
    raw_send_email(nc, "sp.t.v1.Batch", "_TB.2", "o2");
    raw_send_email(nc, "sp.t.v1.Batch", "_TB.3", "o3");
    raw_send_email(nc, "sp.t.v1.Note", "_TB.4", "n");
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
    Sp__V1__Reply *rep[5];
    raw_replies(sub, rep, 5);
    assert_reply_email(rep[1], "o1");
    assert_reply_email(rep[2], "o2");
    assert_reply_email(rep[3], "o3");
    assert_reply_email(rep[4], "note");
    for (int i = 0; i < 5; i++)
        sp__v1__reply__free_unpacked(rep[i], NULL);
    pthread_mutex_lock(&g_batch_mu);
    ck_assert_int_eq(g_batch_calls, 1);
    ck_assert_uint_eq(g_batch_sizes[0], 3);
    ck_assert_str_eq(g_order, "BN"); /* the requests that came first are answered first */
    pthread_mutex_unlock(&g_batch_mu);
    raw_batch_end(&f);
}
END_TEST

START_TEST(revoked_sessions_reach_the_callers_hook)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    spbus *c = bus_to(g_env->nats_url, 1);
    revoked_rec rec = {.caller = pthread_self()};
    spbus_on_revoked(c, on_revoked_rec, &rec);
    sp_arena *a = sp_arena_create(1024);
    const char *cases[3] = {"fine", "error", "deny"}; /* result, error reply, error returned */
    for (int k = 0; k < 3; k++) {
        rec.n = 0;
        atomic_store(&g_late_revoke, -1);
        Sp__Auth__V1__RegisterReply *r = NULL;
        Sp__V1__Error *err = NULL;
        sp_status s = email_req(c, "sp.t.v1.Revoke", NULL, cases[k], 2000, a, &r, &err);
        if (k == 0) {
            ck_assert_int_eq(s, SP_OK);
            ck_assert_str_eq(r->email, "fine");
        } else {
            ck_assert_int_eq(s, SP_ERR_FORBIDDEN);
            ck_assert_ptr_nonnull(err);
            ck_assert_str_eq(err->code, "forbidden");
        }
        /* already there when spbus_request returned, on the caller's thread, in order */
        ck_assert_int_eq(rec.n, 2);
        ck_assert_str_eq(rec.ids[0], "s-1");
        ck_assert_str_eq(rec.ids[1], "s-2");
        ck_assert(!rec.other_thread);
        if (k < 2) { /* a revocation after the reply is refused */
            int late = wait_change(&g_late_revoke, -1, 2000);
            ck_assert_int_ne(late, -1);
            ck_assert_int_ne(late, SP_OK);
        }
    }
    /* A request whose handler revokes nothing calls no hook. */
    rec.n = 0;
    ck_assert_int_eq(echo(c, NULL, "x", 2000, NULL, a), SP_OK);
    ck_assert_int_eq(rec.n, 0);
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
}
END_TEST

/* Relay: calls sp.t.v1.Revoke on the bus in 'user' (as a service calling auth for a
 * gateway) and replies its own answer: the revocations must come back all the same. */
static sp_status h_relay(spbus_req *req)
{
    Sp__Auth__V1__RegisterReply *r = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s = email_req(spbus_req_user(req), "sp.t.v1.Revoke", NULL, "fine", 2000,
                            spbus_req_arena(req), &r, &err);
    if (s != SP_OK) return s;
    Sp__Auth__V1__RegisterReply out = SP__AUTH__V1__REGISTER_REPLY__INIT;
    out.email = "relayed";
    return spbus_reply(req, &out.base);
}

static const spbus_route k_relay_routes[] = {
    {"Relay", h_relay, &sp__auth__v1__register_request__descriptor, NULL},
};

START_TEST(revoked_sessions_come_back_along_a_chain_of_calls)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    spbus *mid = bus_to(g_env->nats_url, 1); /* the service in the middle, no hook of its own */
    spbus_service *relay = NULL;
    ck_assert_int_eq(spbus_serve(&relay, mid, "relay", "relay", k_relay_routes, 1, 1, mid), SP_OK);
    spbus *c = bus_to(g_env->nats_url, 1);
    revoked_rec rec = {.caller = pthread_self()};
    spbus_on_revoked(c, on_revoked_rec, &rec);
    sp_arena *a = sp_arena_create(1024);
    Sp__Auth__V1__RegisterReply *r = NULL;
    Sp__V1__Error *err = NULL;
    ck_assert_int_eq(email_req(c, "sp.relay.v1.Relay", NULL, "x", 3000, a, &r, &err), SP_OK);
    ck_assert_str_eq(r->email, "relayed");
    ck_assert_int_eq(rec.n, 2);
    ck_assert_str_eq(rec.ids[0], "s-1");
    ck_assert_str_eq(rec.ids[1], "s-2");
    sp_arena_destroy(a);
    spbus_service_destroy(relay);
    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(mid);
    spbus_destroy(b);
}
END_TEST

START_TEST(revoked_sessions_without_a_hook_are_harmless)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    spbus *c = bus_to(g_env->nats_url, 1);
    sp_arena *a = sp_arena_create(1024);
    Sp__Auth__V1__RegisterReply *r = NULL;
    Sp__V1__Error *err = NULL;
    ck_assert_int_eq(email_req(c, "sp.t.v1.Revoke", NULL, "fine", 2000, a, &r, &err), SP_OK);
    ck_assert_str_eq(r->email, "fine");
    ck_assert_int_eq(email_req(c, "sp.t.v1.Revoke", NULL, "error", 2000, a, &r, &err),
                     SP_ERR_FORBIDDEN);
    ck_assert_str_eq(err->message, "not yours");
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
}
END_TEST

START_TEST(subscribe_delivers_matching_subjects_intact)
{
    spbus *s = bus_to(g_env->nats_url, 1);
    msg_box star = {.mu = PTHREAD_MUTEX_INITIALIZER}, all = {.mu = PTHREAD_MUTEX_INITIALIZER};
    ck_assert_int_eq(spbus_subscribe(s, "t.sub.*.changed", on_msg, &star), SP_OK);
    ck_assert_int_eq(spbus_subscribe(s, "t.sub.>", on_msg, &all), SP_OK);
    spbus *p = bus_to(g_env->nats_url, 1); /* one connection: its messages arrive in order */
    const char bin[5] = {'a', '\0', 'b', '\xff', 'c'};
    ck_assert_int_eq(spbus_publish(p, "t.sub.c1.changed", bin, sizeof(bin)), SP_OK);
    ck_assert_int_eq(spbus_publish(p, "t.sub.c2.other", "zz", 2), SP_OK);
    ck_assert_int_eq(spbus_publish(p, "t.other.c3.changed", "yy", 2), SP_OK);
    ck_assert_int_eq(spbus_publish(p, "t.sub.c4.changed", NULL, 0), SP_OK);
    /* The last one arriving means the earlier ones would have arrived before it. */
    ck_assert_int_eq(box_wait(&star, 2, 3000), 2);
    ck_assert_int_eq(box_wait(&all, 3, 3000), 3);
    spbus_destroy(p);
    spbus_destroy(s); /* no callback runs after this */
    ck_assert_int_eq(star.n, 2);
    ck_assert_str_eq(star.subject[0], "t.sub.c1.changed");
    ck_assert_uint_eq(star.len[0], sizeof(bin));
    ck_assert_int_eq(memcmp(star.data[0], bin, sizeof(bin)), 0);
    ck_assert_str_eq(star.subject[1], "t.sub.c4.changed");
    ck_assert_uint_eq(star.len[1], 0);
    ck_assert_int_eq(all.n, 3);
    ck_assert_str_eq(all.subject[0], "t.sub.c1.changed");
    ck_assert_str_eq(all.subject[1], "t.sub.c2.other");
    ck_assert_uint_eq(all.len[1], 2);
    ck_assert_int_eq(memcmp(all.data[1], "zz", 2), 0);
    ck_assert_str_eq(all.subject[2], "t.sub.c4.changed");
}
END_TEST

START_TEST(subscribe_rejects_bad_arguments)
{
    spbus *s = bus_to(g_env->nats_url, 1);
    msg_box bx = {.mu = PTHREAD_MUTEX_INITIALIZER};
    ck_assert_int_ne(spbus_subscribe(s, "", on_msg, &bx), SP_OK);
    ck_assert_int_ne(spbus_subscribe(s, NULL, on_msg, &bx), SP_OK);
    ck_assert_int_ne(spbus_subscribe(s, "t.x", NULL, &bx), SP_OK);
    ck_assert_int_ne(spbus_subscribe(NULL, "t.x", on_msg, &bx), SP_OK);
    spbus_destroy(s);
}
END_TEST

START_TEST(disconnects_count_lost_connections)
{
    sptest_env *e = sptest_start("spbus-disc", SPTEST_NATS_NOAUTH);
    spbus *s = bus_to(e->nats_url, 1);
    msg_box bx = {.mu = PTHREAD_MUTEX_INITIALIZER};
    ck_assert_int_eq(spbus_subscribe(s, "t.disc.>", on_msg, &bx), SP_OK);
    spbus *p = bus_to(e->nats_url, 1);
    ck_assert(spbus_connected(s));
    ck_assert_uint_eq(spbus_disconnects(s), 0);
    ck_assert_uint_eq(spbus_disconnects(p), 0);

    sptest_kill(&e->nats, SIGKILL);
    int64_t until = sp_monotonic_us() + 5000 * 1000;
    while (spbus_disconnects(s) == 0 && sp_monotonic_us() < until)
        usleep(10 * 1000);
    ck_assert_uint_ge(spbus_disconnects(s), 1);

    sptest_restart(e, &e->nats);
    /* The subscription is renewed: what is published after the reconnect arrives. */
    until = sp_monotonic_us() + 10000 * 1000;
    while (box_count(&bx) == 0 && sp_monotonic_us() < until) {
        (void)spbus_publish(p, "t.disc.x", "after", 5);
        usleep(100 * 1000);
    }
    ck_assert_int_ge(box_count(&bx), 1);
    ck_assert(spbus_connected(s));
    ck_assert_uint_ge(spbus_disconnects(s), 1);
    ck_assert_uint_ge(spbus_disconnects(p), 1);

    spbus_destroy(p);
    spbus_destroy(s);
    sptest_stop(e);
}
END_TEST

/* cnats runs every connection callback (disconnected, closed, ...) of the process on one
 * thread, in order: these make it busy, then tell when it got past what was queued. */
static void closed_slowly(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
    usleep(300 * 1000);
}

static void closed_mark(natsConnection *nc, void *closure)
{
    (void)nc;
    atomic_store((atomic_int *)closure, 1);
}

static natsConnection *raw_conn_closed_cb(natsConnectionHandler cb, void *closure)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
    ck_assert_int_eq(natsOptions_SetURL(o, g_env->nats_url), NATS_OK);
    ck_assert_int_eq(natsOptions_SetClosedCB(o, cb, closure), NATS_OK);
    ck_assert_int_eq(natsConnection_Connect(&nc, o), NATS_OK);
    natsOptions_Destroy(o);
    return nc;
}

START_TEST(destroy_outlives_pending_connection_callbacks)
{
    atomic_int done = 0;
    natsConnection *slow = raw_conn_closed_cb(closed_slowly, NULL);
    natsConnection *mark = raw_conn_closed_cb(closed_mark, &done);
    spbus *b = bus_to(g_env->nats_url, 1);
    ck_assert(spbus_connected(b));
    natsConnection_Close(slow); /* the callback thread sleeps 300 ms */
    spbus_destroy(b);           /* its connection's disconnected callback queues behind */
    natsConnection_Close(mark); /* and this one behind that */
    ck_assert_int_eq(wait_change(&done, 0, 5000), 1);
    natsConnection_Destroy(slow);
    natsConnection_Destroy(mark);
}
END_TEST

/* ---- time budgets ----------------------------------------------------------------------- */

typedef struct {
    spbus *b;
    int ms, timeout_ms;
    sp_status s;
} budget_arg;

static void *par_sleep_budget(void *p)
{
    budget_arg *x = p;
    sp_arena *a = sp_arena_create(1024);
    x->s = sleep_req(x->b, x->ms, x->timeout_ms, a, NULL);
    sp_arena_destroy(a);
    return NULL;
}

START_TEST(request_expired_while_queued_is_dropped_and_counted)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *svc = serve(b, "q", 1, NULL);
    spbus *c = bus_to(g_env->nats_url, 1);
    atomic_store(&g_echoed, 0);
    atomic_store(&g_running, 0);
    /* The one worker sleeps 800 ms ... */
    budget_arg busy = {.b = c, .ms = 800, .timeout_ms = 5000};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, par_sleep_budget, &busy), 0);
    wait_worker_busy();
    /* ... while a request with a 200 ms budget waits for it, and is given up. */
    sp_arena *a = sp_arena_create(1024);
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(echo(c, NULL, "queued", 200, NULL, a), SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 600 * 1000);
    pthread_join(t, NULL);
    ck_assert_int_eq(busy.s, SP_OK);
    /* Once the worker is free it drops the expired request unanswered: the next request is
     * served first thing, and the handler of the expired one never ran. */
    ck_assert_int_eq(echo(c, NULL, "fresh", 2000, NULL, a), SP_OK);
    ck_assert_int_eq(atomic_load(&g_echoed), 1);
    char *text = spadmin_metrics_render();
    ck_assert_ptr_nonnull(text);
    ck_assert_msg(strstr(text, "sp_bus_requests_expired_total{subject=\"sp.t.v1.Echo\"} 1\n") !=
                      NULL,
                  "no expired series in:\n%s", text);
    ck_assert_ptr_nonnull(strstr(text, "# HELP sp_bus_requests_expired_total "));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE sp_bus_requests_expired_total counter\n"));
    ck_assert_ptr_null(strstr(text, "sp_bus_requests_expired_total{subject=\"sp.t.v1.Sleep\"}"));
    free(text);
    sp_arena_destroy(a);
    spbus_service_destroy(svc);
    spbus_destroy(c);
    spbus_destroy(b);
}
END_TEST

static atomic_llong g_outer_left; /* what the outer handler had left when it called inner */

/* Outer: waits 100 ms, then calls sp.t.v1.Remaining with a 10 s timeout (far above its own
 * budget) and replies what the inner handler saw. */
static sp_status h_outer(spbus_req *req)
{
    usleep(100 * 1000);
    atomic_store(&g_outer_left, (long long)spbus_req_remaining_us(req));
    Sp__Auth__V1__RegisterRequest in = SP__AUTH__V1__REGISTER_REQUEST__INIT;
    ProtobufCMessage *m = NULL;
    Sp__V1__Error *err = NULL;
    /* the caller's ctx passed on as it came, budget included: still bounded */
    sp_status s = spbus_request(
        &m, &err, spbus_req_user(req), "sp.t.v1.Remaining", spbus_req_ctx(req), &in.base,
        &sp__auth__v1__register_reply__descriptor, 10000, spbus_req_arena(req));
    if (s != SP_OK) return s;
    return spbus_reply(req, m);
}

static const spbus_route k_outer_routes[] = {
    {"Outer", h_outer, &sp__auth__v1__register_request__descriptor, NULL},
};

START_TEST(chain_of_calls_passes_on_at_most_the_remaining_budget)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    spbus_service *inner = serve(b, "q", 1, NULL);
    spbus *mid = bus_to(g_env->nats_url, 1);
    spbus_service *outer = NULL;
    ck_assert_int_eq(spbus_serve(&outer, mid, "chain", "chain", k_outer_routes, 1, 1, mid), SP_OK);
    spbus *c = bus_to(g_env->nats_url, 1);
    sp_arena *a = sp_arena_create(1024);
    Sp__Auth__V1__RegisterReply *r = NULL;
    Sp__V1__Error *err = NULL;
    atomic_store(&g_outer_left, -1);
    ck_assert_int_eq(email_req(c, "sp.chain.v1.Outer", NULL, "x", 1000, a, &r, &err), SP_OK);
    long long outer_left = atomic_load(&g_outer_left);
    long long sent = atoll(r->id);
    /* the outer had its 1 s less the 100 ms it slept */
    ck_assert_int_gt(outer_left, 0);
    ck_assert_int_le(outer_left, 900 * 1000);
    /* the inner was sent at most that, and had at most that left */
    ck_assert_int_gt(sent, 0);
    ck_assert_int_le(sent, outer_left);
    ck_assert(r->has_created_at);
    ck_assert_int_gt(r->created_at, 0);
    ck_assert_int_le(r->created_at, sent);
    /* A request with no budget at all has no limit. */
    Sp__V1__RequestContext none = SP__V1__REQUEST_CONTEXT__INIT;
    natsConnection *nc = raw_conn();
    Sp__V1__Request q = SP__V1__REQUEST__INIT;
    q.ctx = &none;
    uint8_t buf[64];
    size_t len = sp__v1__request__pack(&q, buf);
    natsMsg *m = NULL;
    ck_assert_int_eq(natsConnection_Request(&m, nc, "sp.t.v1.Remaining", buf, (int)len, 2000),
                     NATS_OK);
    Sp__V1__Reply *rep = sp__v1__reply__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                               (const uint8_t *)natsMsg_GetData(m));
    ck_assert_ptr_nonnull(rep);
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_PAYLOAD);
    Sp__Auth__V1__RegisterReply *rr =
        sp__auth__v1__register_reply__unpack(NULL, rep->payload.len, rep->payload.data);
    ck_assert_ptr_nonnull(rr);
    ck_assert_int_eq(rr->created_at, INT64_MAX);
    ck_assert_str_eq(rr->id, "-1");
    sp__auth__v1__register_reply__free_unpacked(rr, NULL);
    sp__v1__reply__free_unpacked(rep, NULL);
    natsMsg_Destroy(m);
    natsConnection_Destroy(nc);
    sp_arena_destroy(a);
    spbus_service_destroy(outer);
    spbus_service_destroy(inner);
    spbus_destroy(c);
    spbus_destroy(mid);
    spbus_destroy(b);
}
END_TEST

/* ---- JetStream durable pull consumer ----------------------------------------------------- */

/* What a consumer's fn saw: every message of every call, in order. */
typedef struct {
    pthread_mutex_t mu;
    int calls;
    size_t sizes[256]; /* n of each call */
    int n;             /* messages seen, redeliveries included */
    char subject[256][48];
    char data[256][16];
    char msg_id[256][16]; /* "" when none */
    uint64_t delivered[256];
    uint64_t seq[256];
    int64_t at_us[256]; /* monotonic, when seen */
    uint64_t ack_from;  /* acks a message from this delivery on (0: never) */
    int sleep_ms;       /* per call, before returning */
} js_rec;

#define JS_REC_INIT                                                                                \
    {                                                                                              \
        .mu = PTHREAD_MUTEX_INITIALIZER                                                            \
    }

static void on_js(void *user, spbus_js_msg *msgs, size_t n)
{
    js_rec *r = user;
    pthread_mutex_lock(&r->mu);
    if (r->calls < 256) r->sizes[r->calls] = n;
    r->calls++;
    for (size_t i = 0; i < n; i++) {
        if (r->n < 256) {
            int k = r->n;
            snprintf(r->subject[k], sizeof(r->subject[k]), "%s", msgs[i].subject);
            snprintf(r->data[k], sizeof(r->data[k]), "%.*s", (int)msgs[i].len,
                     (const char *)msgs[i].data);
            snprintf(r->msg_id[k], sizeof(r->msg_id[k]), "%s",
                     msgs[i].msg_id != NULL ? msgs[i].msg_id : "");
            r->delivered[k] = msgs[i].delivered;
            r->seq[k] = msgs[i].stream_seq;
            r->at_us[k] = sp_monotonic_us();
        }
        r->n++;
        msgs[i].ack = r->ack_from > 0 && msgs[i].delivered >= r->ack_from;
    }
    int ms = r->sleep_ms;
    pthread_mutex_unlock(&r->mu);
    if (ms > 0) usleep((useconds_t)ms * 1000);
}

static int rec_count(js_rec *r)
{
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* Polls until 'r' saw at least 'n' messages or 'ms' pass; returns what it saw. */
static int rec_wait(js_rec *r, int n, int ms)
{
    int64_t until = sp_monotonic_us() + (int64_t)ms * 1000;
    while (rec_count(r) < n && sp_monotonic_us() < until)
        usleep(10 * 1000);
    return rec_count(r);
}

static bool wait_ready(spbus_consumer *c, int ms)
{
    int64_t until = sp_monotonic_us() + (int64_t)ms * 1000;
    while (!spbus_consumer_ready(c) && sp_monotonic_us() < until)
        usleep(10 * 1000);
    return spbus_consumer_ready(c);
}

static spbus_consumer *consume(spbus *b, const char *stream, const char *durable,
                               const char *filter, int batch, int ack_wait_ms, js_rec *r)
{
    spbus_consumer_opts o = {.stream = stream,
                             .durable = durable,
                             .filter_subject = filter,
                             .batch = batch,
                             .ack_wait_ms = ack_wait_ms,
                             .max_ack_pending = 1000,
                             .max_deliver = -1,
                             .fetch_wait_ms = 200};
    spbus_consumer *c = NULL;
    ck_assert_int_eq(spbus_consume(&c, b, &o, on_js, r), SP_OK);
    ck_assert_ptr_nonnull(c);
    return c;
}

START_TEST(consumer_redelivers_what_was_not_acked_after_ack_wait)
{
    natsConnection *nc = raw_conn();
    add_stream(nc, "T_CONS_RD", "t.cons.rd.>");
    spbus *b = bus_to(g_env->nats_url, 1);
    ck_assert_int_eq(spbus_js_publish(b, "t.cons.rd.a", "one", 3, "m-1", 2000), SP_OK);
    js_rec r = JS_REC_INIT;
    r.ack_from = 2; /* the first delivery fails, the redelivery succeeds */
    spbus_consumer *c = consume(b, "T_CONS_RD", "rd", "t.cons.rd.>", 10, 1000, &r);
    ck_assert(wait_ready(c, 5000));
    ck_assert_int_eq(rec_wait(&r, 2, 6000), 2);
    ck_assert_str_eq(r.subject[0], "t.cons.rd.a");
    ck_assert_str_eq(r.data[0], "one");
    ck_assert_str_eq(r.msg_id[0], "m-1");
    ck_assert_uint_eq(r.delivered[0], 1);
    ck_assert_uint_eq(r.seq[0], 1);
    /* the same message again, once AckWait (1 s) passed */
    ck_assert_str_eq(r.data[1], "one");
    ck_assert_str_eq(r.msg_id[1], "m-1");
    ck_assert_uint_eq(r.delivered[1], 2);
    ck_assert_uint_eq(r.seq[1], 1);
    ck_assert_int_ge(r.at_us[1] - r.at_us[0], 900 * 1000);
    /* acked the second time: never again, well past two more AckWaits */
    usleep(2500 * 1000);
    ck_assert_int_eq(rec_count(&r), 2);
    /* a new message, acked at once (ack_from 1), comes once */
    pthread_mutex_lock(&r.mu);
    r.ack_from = 1;
    pthread_mutex_unlock(&r.mu);
    ck_assert_int_eq(spbus_js_publish(b, "t.cons.rd.b", "two", 3, NULL, 2000), SP_OK);
    ck_assert_int_eq(rec_wait(&r, 3, 3000), 3);
    ck_assert_str_eq(r.msg_id[2], "");
    ck_assert_uint_eq(r.delivered[2], 1);
    ck_assert_uint_eq(r.seq[2], 2);
    usleep(2000 * 1000);
    ck_assert_int_eq(rec_count(&r), 3);
    spbus_consumer_destroy(c);
    /* The durable consumer outlives its process: a new one starts after the acked ones. */
    js_rec r2 = JS_REC_INIT;
    r2.ack_from = 1;
    ck_assert_int_eq(spbus_js_publish(b, "t.cons.rd.c", "three", 5, NULL, 2000), SP_OK);
    c = consume(b, "T_CONS_RD", "rd", "t.cons.rd.>", 10, 1000, &r2);
    ck_assert_int_eq(rec_wait(&r2, 1, 5000), 1);
    ck_assert_str_eq(r2.data[0], "three");
    ck_assert_uint_eq(r2.seq[0], 3);
    spbus_consumer_destroy(c);
    spbus_destroy(b);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(consumer_batches_are_bounded_by_opts_batch)
{
    natsConnection *nc = raw_conn();
    add_stream(nc, "T_CONS_BATCH", "t.cons.batch.>");
    spbus *b = bus_to(g_env->nats_url, 1);
    for (int i = 0; i < 25; i++) {
        char d[16];
        int n = snprintf(d, sizeof(d), "d-%d", i);
        ck_assert_int_eq(spbus_js_publish(b, "t.cons.batch.x", d, (size_t)n, NULL, 2000), SP_OK);
    }
    js_rec r = JS_REC_INIT;
    r.ack_from = 1;
    spbus_consumer *c = consume(b, "T_CONS_BATCH", "batch", "t.cons.batch.>", 4, 5000, &r);
    ck_assert_int_eq(rec_wait(&r, 25, 10000), 25);
    usleep(300 * 1000);
    spbus_consumer_destroy(c);
    ck_assert_int_eq(r.n, 25);
    bool full = false;
    for (int i = 0; i < r.calls; i++) {
        ck_assert_uint_ge(r.sizes[i], 1);
        ck_assert_uint_le(r.sizes[i], 4);
        if (r.sizes[i] == 4) full = true;
    }
    ck_assert(full); /* what was waiting came in batches, not one by one */
    ck_assert_int_ge(r.calls, 7);
    for (int i = 0; i < 25; i++) { /* in stream order, each once */
        char want[16];
        snprintf(want, sizeof(want), "d-%d", i);
        ck_assert_str_eq(r.data[i], want);
        ck_assert_uint_eq(r.seq[i], (uint64_t)i + 1);
        ck_assert_uint_eq(r.delivered[i], 1);
    }
    spbus_destroy(b);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(consumer_stops_promptly_while_idle)
{
    natsConnection *nc = raw_conn();
    add_stream(nc, "T_CONS_IDLE", "t.cons.idle.>");
    spbus *b = bus_to(g_env->nats_url, 1);
    js_rec r = JS_REC_INIT;
    spbus_consumer_opts o = {.stream = "T_CONS_IDLE",
                             .durable = "idle",
                             .filter_subject = "t.cons.idle.>",
                             .batch = 16,
                             .fetch_wait_ms = 30000}; /* a fetch that would wait 30 s */
    spbus_consumer *c = NULL;
    ck_assert_int_eq(spbus_consume(&c, b, &o, on_js, &r), SP_OK);
    ck_assert(wait_ready(c, 5000));
    usleep(300 * 1000); /* inside the fetch now */
    int64_t t0 = sp_monotonic_us();
    spbus_consumer_destroy(c);
    ck_assert_int_lt(sp_monotonic_us() - t0, 1000 * 1000);
    ck_assert_int_eq(r.n, 0);
    /* spbus_destroy stops a consumer left running as promptly */
    ck_assert_int_eq(spbus_consume(&c, b, &o, on_js, &r), SP_OK);
    ck_assert(wait_ready(c, 5000));
    usleep(300 * 1000);
    t0 = sp_monotonic_us();
    spbus_destroy(b);
    ck_assert_int_lt(sp_monotonic_us() - t0, 1500 * 1000);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(consumer_rejects_bad_options)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    js_rec r = JS_REC_INIT;
    spbus_consumer_opts ok = {.stream = "S", .durable = "d", .batch = 1};
    spbus_consumer_opts o;
    spbus_consumer *c = (void *)1;
    o = ok;
    o.batch = 0;
    ck_assert_int_eq(spbus_consume(&c, b, &o, on_js, &r), SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_null(c);
    o.batch = 257;
    ck_assert_int_eq(spbus_consume(&c, b, &o, on_js, &r), SP_ERR_VALIDATION_FAILED);
    o = ok;
    o.durable = "a.b";
    ck_assert_int_eq(spbus_consume(&c, b, &o, on_js, &r), SP_ERR_VALIDATION_FAILED);
    o = ok;
    o.stream = NULL;
    ck_assert_int_eq(spbus_consume(&c, b, &o, on_js, &r), SP_ERR_VALIDATION_FAILED);
    o = ok;
    o.fetch_wait_ms = 60000;
    ck_assert_int_eq(spbus_consume(&c, b, &o, on_js, &r), SP_ERR_VALIDATION_FAILED);
    ck_assert_int_ne(spbus_consume(&c, b, &ok, NULL, &r), SP_OK);
    spbus_consumer_destroy(NULL);
    ck_assert(!spbus_consumer_ready(NULL));
    spbus_destroy(b);
}
END_TEST

START_TEST(consumer_waits_for_a_stream_that_does_not_exist_yet)
{
    spbus *b = bus_to(g_env->nats_url, 1);
    js_rec r = JS_REC_INIT;
    r.ack_from = 1;
    spbus_consumer *c = consume(b, "T_CONS_LATE", "late", "t.cons.late.>", 8, 5000, &r);
    usleep(1500 * 1000);
    ck_assert(!spbus_consumer_ready(c)); /* /readyz says no */
    natsConnection *nc = raw_conn();
    add_stream(nc, "T_CONS_LATE", "t.cons.late.>");
    ck_assert_int_eq(spbus_js_publish(b, "t.cons.late.x", "hi", 2, NULL, 2000), SP_OK);
    ck_assert(wait_ready(c, 5000));
    ck_assert_int_eq(rec_wait(&r, 1, 5000), 1);
    ck_assert_str_eq(r.data[0], "hi");
    spbus_consumer_destroy(c);
    spbus_destroy(b);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(consumer_recreates_a_deleted_consumer)
{
    natsConnection *nc = raw_conn();
    add_stream(nc, "T_CONS_DEL", "t.cons.del.>");
    spbus *b = bus_to(g_env->nats_url, 1);
    js_rec r = JS_REC_INIT;
    r.ack_from = 1;
    spbus_consumer *c = consume(b, "T_CONS_DEL", "del", "t.cons.del.>", 8, 5000, &r);
    ck_assert(wait_ready(c, 5000));
    /* an operator (or a server that lost its state) removes it under the running process */
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    ck_assert_int_eq(js_DeleteConsumer(js, "T_CONS_DEL", "del", NULL, &jerr), NATS_OK);
    jsCtx_Destroy(js);
    ck_assert_int_eq(spbus_js_publish(b, "t.cons.del.x", "again", 5, NULL, 2000), SP_OK);
    ck_assert_int_eq(rec_wait(&r, 1, 15000), 1);
    ck_assert_str_eq(r.data[0], "again");
    ck_assert(spbus_consumer_ready(c));
    spbus_consumer_destroy(c);
    spbus_destroy(b);
    natsConnection_Destroy(nc);
}
END_TEST

START_TEST(consumer_survives_nats_restart)
{
    sptest_env *e = sptest_start("spbus-jsrestart", SPTEST_NATS_NOAUTH);
    natsConnection *nc = NULL;
    ck_assert_int_eq(natsConnection_ConnectTo(&nc, e->nats_url), NATS_OK);
    /* file storage: the stream and the durable consumer outlive the server process */
    jsCtx *js = NULL;
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[] = {"t.cons.rs.>"};
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsStreamConfig_Init(&cfg);
    cfg.Name = "T_CONS_RS";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    ck_assert_int_eq(js_AddStream(&si, js, &cfg, NULL, &jerr), NATS_OK);
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    spbus *b = bus_to(e->nats_url, 1);
    js_rec r = JS_REC_INIT;
    r.ack_from = 1;
    spbus_consumer *c = consume(b, "T_CONS_RS", "rs", "t.cons.rs.>", 8, 5000, &r);
    ck_assert_int_eq(spbus_js_publish(b, "t.cons.rs.x", "before", 6, NULL, 2000), SP_OK);
    ck_assert_int_eq(rec_wait(&r, 1, 5000), 1);

    sptest_kill(&e->nats, SIGKILL);
    int64_t until = sp_monotonic_us() + 5000 * 1000;
    while (spbus_consumer_ready(c) && sp_monotonic_us() < until)
        usleep(10 * 1000);
    ck_assert(!spbus_consumer_ready(c));
    sptest_restart(e, &e->nats);
    ck_assert(wait_ready(c, 15000));
    until = sp_monotonic_us() + 15000 * 1000;
    while (spbus_js_publish(b, "t.cons.rs.x", "after", 5, "after-1", 1000) != SP_OK &&
           sp_monotonic_us() < until)
        usleep(100 * 1000);
    ck_assert_int_ge(rec_wait(&r, 2, 15000), 2);
    ck_assert_str_eq(r.data[1], "after");
    ck_assert_uint_eq(r.seq[1], 2);
    spbus_consumer_destroy(c);
    spbus_destroy(b);
    sptest_stop(e);
}
END_TEST

int main(void)
{
    g_env = sptest_start("spbus", SPTEST_NATS_NOAUTH);
    Suite *s = suite_create("spbus");
    TCase *tc = tcase_create("bus");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, round_trip_carries_ctx);
    tcase_add_test(tc, error_reply_fills_status_and_err);
    tcase_add_test(tc, handler_error_without_reply_is_replied);
    tcase_add_test(tc, no_responder_is_unavailable_quickly);
    tcase_add_test(tc, slow_handler_is_unavailable_after_timeout);
    tcase_add_test(tc, expired_deadline_is_not_sent);
    tcase_add_test(tc, expired_deadline_is_never_handled);
    tcase_add_test(tc, malformed_envelope_is_bad_request);
    tcase_add_test(tc, unknown_method_is_not_found);
    tcase_add_test(tc, queue_group_shares_work);
    tcase_add_test(tc, workers_run_concurrently);
    tcase_add_test(tc, drain_finishes_running_handlers);
    tcase_add_test(tc, publish_reaches_subscribers);
    tcase_add_test(tc, replies_use_the_private_inbox_prefix);
    tcase_add_test(tc, js_publish_is_acked_and_deduplicated_by_msg_id);
    tcase_add_test(tc, js_publish_without_a_stream_is_unavailable_quickly);
    tcase_add_test(tc, survives_nats_kill_and_restart);
    tcase_add_test(tc, connects_before_the_server_exists);
    tcase_add_test(tc, batch_route_takes_the_queued_requests_together);
    tcase_add_test(tc, batch_request_left_unanswered_is_internal);
    tcase_add_test(tc, batch_bad_requests_never_reach_the_handler);
    tcase_add_test(tc, batch_other_method_taken_along_is_served_after_the_batch);
    tcase_add_test(tc, revoked_sessions_reach_the_callers_hook);
    tcase_add_test(tc, revoked_sessions_without_a_hook_are_harmless);
    tcase_add_test(tc, revoked_sessions_come_back_along_a_chain_of_calls);
    tcase_add_test(tc, subscribe_delivers_matching_subjects_intact);
    tcase_add_test(tc, subscribe_rejects_bad_arguments);
    tcase_add_test(tc, disconnects_count_lost_connections);
    tcase_add_test(tc, destroy_outlives_pending_connection_callbacks);
    tcase_add_test(tc, request_expired_while_queued_is_dropped_and_counted);
    tcase_add_test(tc, chain_of_calls_passes_on_at_most_the_remaining_budget);
    tcase_add_test(tc, consumer_redelivers_what_was_not_acked_after_ack_wait);
    tcase_add_test(tc, consumer_batches_are_bounded_by_opts_batch);
    tcase_add_test(tc, consumer_stops_promptly_while_idle);
    tcase_add_test(tc, consumer_rejects_bad_options);
    tcase_add_test(tc, consumer_waits_for_a_stream_that_does_not_exist_yet);
    tcase_add_test(tc, consumer_recreates_a_deleted_consumer);
    tcase_add_test(tc, consumer_survives_nats_restart);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed) sptest_mark_failed(g_env);
    sptest_stop(g_env);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
