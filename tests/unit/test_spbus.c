/* test_spbus.c -- the bus against a real nats-server: envelope, errors, deadlines,
 * queue groups, concurrent workers, NATS restarts. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nats/nats.h>

#include "sp/auth/v1/auth.pb-c.h"
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
    out.has_created_at = c->has_deadline_us;
    out.created_at = c->deadline_us;
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

static const spbus_route k_routes[] = {
    {"Echo", h_echo, &sp__auth__v1__register_request__descriptor},
    {"Fail", h_fail, &sp__auth__v1__login_request__descriptor},
    {"Deny", h_deny, &sp__auth__v1__get_me_request__descriptor},
    {"Sleep", h_sleep, &sp__auth__v1__login_request__descriptor},
};
#define NROUTES (sizeof(k_routes) / sizeof(k_routes[0]))

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

    /* No deadline from the caller: the bus sets now + timeout, in a copy. */
    Sp__Auth__V1__RegisterReply *r = NULL;
    int64_t before = sp_now_us();
    ck_assert_int_eq(echo(b, &ctx, "a@b.c", 2000, &r, a), SP_OK);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(r->id, "req-123");
    ck_assert_str_eq(r->name, "user-9");
    ck_assert_str_eq(r->role, "admin");
    ck_assert_str_eq(r->email, "a@b.c");
    ck_assert(r->has_created_at);
    ck_assert_int_ge(r->created_at, before + 2000 * 1000);
    ck_assert_int_le(r->created_at, sp_now_us() + 2000 * 1000);
    ck_assert(!ctx.has_deadline_us);

    /* A deadline the caller set arrives unchanged. */
    ctx.has_deadline_us = 1;
    ctx.deadline_us = sp_now_us() + 5 * 1000 * 1000;
    ck_assert_int_eq(echo(b, &ctx, "a@b.c", 2000, &r, a), SP_OK);
    ck_assert_int_eq(r->created_at, ctx.deadline_us);

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
    ctx.has_deadline_us = 1;
    ctx.deadline_us = sp_now_us() - 1000 * 1000;
    atomic_store(&g_echoed, 0);
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(echo(b, &ctx, "late", 2000, NULL, a), SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 100 * 1000);
    /* A deadline sooner than the timeout bounds the wait. */
    ctx.deadline_us = sp_now_us() + 300 * 1000;
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
    /* The envelope a slow caller sent long ago, straight onto the subject. */
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.has_deadline_us = 1;
    ctx.deadline_us = sp_now_us() - 1000 * 1000;
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
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed) sptest_mark_failed(g_env);
    sptest_stop(g_env);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
