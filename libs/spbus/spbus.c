/* spbus.c -- the bus over cnats: envelope request/reply with time budgets, queue-group
 * serving, JetStream durable pull consumers. */
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spadmin.h"
#include "spbus.h"
#include "spcrypto.h"

/* nats-server's max_payload is raised to 8 MB (bus.md): nothing bigger is ever valid. */
#define SPBUS_MAX_MSG ((size_t)8 * 1024 * 1024)
#define SPBUS_MAX_CONNS 64
#define SPBUS_MAX_WORKERS 256
#define SPBUS_STOP_WAIT_MS 15000
/* What a service keeps queued for its workers beyond which it drops (as cnats' own pending
 * limits did before): the budgets drop what waited too long, this only bounds memory. */
#define SPBUS_QUEUE_MAX_MSGS 65536
#define SPBUS_QUEUE_MAX_BYTES ((size_t)256 * 1024 * 1024)
#define SPBUS_EXPIRED_METRIC "sp_bus_requests_expired_total"

/* A request received by a service and not yet taken by a worker. */
typedef struct {
    natsMsg *msg;
    int64_t recv_us; /* monotonic, when cnats handed it to us: the start of its budget */
} queued_msg;

typedef struct worker {
    spbus_service *svc;
    int index;
    pthread_t thread;
    bool started, joined;
} worker;

struct spbus_service {
    spbus *bus;
    spbus_service *next; /* in bus->services, under bus->mu */
    char *api;
    spbus_route *routes;
    char **labels; /* per route: subject="sp.<api>.v1.<Method>", for the metrics */
    size_t nroutes;
    void *user;
    int workers;
    natsConnection *nc; /* the connection 'sub' lives on; replies leave on it */
    natsSubscription *sub;
    worker *w;
    /* The requests received and not yet taken: a ring under qmu, filled by the
     * subscription's callback (which stamps the time each arrived), emptied by the workers. */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;
    queued_msg *q;
    size_t qcap, qhead, qlen, qbytes;
    bool qinit;
    bool sub_watched; /* on_service_done is set on 'sub' */
    bool sub_done;    /* under qmu: cnats will not call on_service_msg again */
    bool stop;        /* under qmu: no more requests come; workers end once the queue is empty */
    bool abandon;     /* under qmu: workers end now, what is queued is dropped */
    bool qfull;       /* under qmu: dropping since the queue filled (logged once) */
    /* under qmu: workers waiting for a request, and those signalled but not yet running.
     * A request wakes a worker only when none is on its way: the one woken takes every
     * request of a batch route queued by then (one query for all of them), where a wake-up
     * per request would spread a burst over every idle worker, one request each. */
    int nidle, nwaking;
};

/* A reply inbox of the client side: a synchronous subscription on "<prefix>.*" that one
 * request at a time borrows; each request waits on "<prefix>.<seq>", so a late reply to an
 * earlier request that timed out is told apart by its subject and dropped. The reader
 * thread hands a reply straight to the waiting caller (no dispatch thread in between,
 * unlike natsConnection_Request). */
typedef struct inbox {
    struct inbox *next; /* in bus->free_inboxes[conn] */
    natsSubscription *sub;
    int conn; /* index of the connection 'sub' lives on */
    uint64_t seq;
    char prefix[64]; /* "_SP_INBOX.<nuid>" */
} inbox;

/* A core subscription of spbus_subscribe. */
typedef struct core_sub {
    struct core_sub *next; /* in bus->subs, under bus->mu */
    natsSubscription *sub;
    spbus_msg_fn fn;
    void *user;
} core_sub;

struct spbus {
    natsConnection **conns;
    int nconns;
    atomic_uint_fast64_t disconnects;
    spbus_revoked_fn on_revoked;
    void *on_revoked_user;
    core_sub *subs;
    pthread_mutex_t inbox_mu;
    inbox **free_inboxes; /* per connection, under inbox_mu; as many as requests in flight */
    atomic_uint rr;
    pthread_mutex_t mu;
    spbus_service *services;
    spbus_consumer *consumers;
    pthread_mutex_t cb_mu; /* closed counts the connections whose closed callback ran */
    pthread_cond_t cb_cv;
    int closed;
    /* up[i]: conns[i] is connected, kept by the connection callbacks so that picking a
     * connection per request takes no connection lock (natsConnection_Status does, and
     * 64 threads queued on it). conns[i] is written under cb_mu, which the callbacks take. */
    int nalloc;
    atomic_bool up[SPBUS_MAX_CONNS];
};

/* A durable pull consumer of spbus_consume: one thread fetches and hands batches to fn. */
struct spbus_consumer {
    spbus *bus;
    spbus_consumer *next; /* in bus->consumers, under bus->mu */
    char *stream, *durable, *filter;
    int batch, ack_wait_ms, max_ack_pending, max_deliver, fetch_wait_ms;
    spbus_consume_fn fn;
    void *user;
    pthread_t thread;
    bool started, joined;
    pthread_mutex_t mu; /* stop, sub (written by the thread, unsubscribed by the stopper) */
    pthread_cond_t cv;  /* CLOCK_MONOTONIC: wakes the thread's retry pauses on stop */
    bool stop;
    natsSubscription *sub;
    natsConnection *nc; /* the connection 'sub' lives on (thread only) */
    atomic_bool bound;
    atomic_bool caught_up; /* the last fetch found less than a batch */
};

struct spbus_req {
    spbus_service *svc;
    natsConnection *nc;
    natsMsg *msg;
    sp_arena *arena;
    const Sp__V1__RequestContext *ctx;
    const ProtobufCMessage *input;
    const spbus_route *route;
    int64_t recv_us;     /* monotonic, when the service received it */
    int64_t deadline_us; /* monotonic: recv_us + the caller's timeout_us; INT64_MAX: none */
    int worker;
    bool replied;
    char **revoked; /* spbus_req_revoked, in the arena */
    size_t nrevoked, caprevoked;
};

static bool join_workers(spbus_service *s, int64_t until_us);
static bool consumer_stop(spbus_consumer *c);
static void stop_workers(spbus_service *s, bool abandon);
/* The request this thread's handler is serving (one-at-a-time routes), for spbus_request:
 * revocations that a call made on its behalf reports go into its own reply, and the call
 * gets at most what is left of its budget. */
static __thread spbus_req *tl_serving;
static sp_status map_nats(natsStatus ns);

static pthread_once_t g_metrics_once = PTHREAD_ONCE_INIT;

static void register_metrics(void)
{
    spadmin_metric_help(SPBUS_EXPIRED_METRIC, "counter",
                        "Requests dropped unanswered because their budget ran out before a "
                        "worker took them");
}

/* ---- received messages ------------------------------------------------------------------ */

/* cnats frees each received message on its garbage-collector thread: natsMsg_Destroy takes
 * the collector's global lock and wakes that thread whenever its list was empty, which with
 * one message per request was a quarter of the gateway's futex calls. A thread keeps the
 * messages it is done with and hands them over MSG_STASH at a time (one wake-up for all);
 * what is left goes when the thread ends. */
#define MSG_STASH 32

typedef struct {
    natsMsg *m[MSG_STASH];
    int n;
} msg_stash;

static pthread_key_t g_stash_key;
static pthread_once_t g_stash_once = PTHREAD_ONCE_INIT;
static bool g_stash_ok;

static void stash_flush(msg_stash *st)
{
    for (int i = 0; i < st->n; i++)
        natsMsg_Destroy(st->m[i]);
    st->n = 0;
}

static void stash_end(void *p)
{
    stash_flush(p);
    free(p);
}

static void stash_init(void)
{
    g_stash_ok = pthread_key_create(&g_stash_key, stash_end) == 0;
}

/* natsMsg_Destroy, deferred for up to MSG_STASH messages of this thread. */
static void msg_release(natsMsg *m)
{
    if (m == NULL) return;
    pthread_once(&g_stash_once, stash_init);
    msg_stash *st = g_stash_ok ? pthread_getspecific(g_stash_key) : NULL;
    if (st == NULL && g_stash_ok && (st = calloc(1, sizeof(*st))) != NULL &&
        pthread_setspecific(g_stash_key, st) != 0) {
        free(st);
        st = NULL;
    }
    if (st == NULL) {
        natsMsg_Destroy(m);
        return;
    }
    st->m[st->n++] = m;
    if (st->n == MSG_STASH) stash_flush(st);
}

/* The calling thread's deferred messages, now (spbus_destroy: the main thread does not run
 * the key's destructor at exit). */
static void stash_flush_mine(void)
{
    msg_stash *st = g_stash_ok ? pthread_getspecific(g_stash_key) : NULL;
    if (st != NULL) stash_flush(st);
}

/* ---- library and connection ---------------------------------------------------------- */

static pthread_once_t g_open_once = PTHREAD_ONCE_INIT;
static natsStatus g_open_status = NATS_OK;

/* Spin count 0: no lock spinning, which only burns the 2 cores (pitfalls.md). */
static void open_library(void)
{
    g_open_status = nats_Open(0);
}

static void *arena_alloc(void *data, size_t n)
{
    return sp_arena_alloc((sp_arena *)data, n);
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;
}

ProtobufCAllocator spbus_arena_allocator(sp_arena *a)
{
    ProtobufCAllocator al = {.alloc = arena_alloc, .free = arena_free, .allocator_data = a};
    return al;
}

/* Records whether 'nc' is connected (ignored for a connection not stored yet: its creator
 * reads the status itself once it has stored it). */
static void set_up(spbus *b, natsConnection *nc, bool up)
{
    if (b == NULL) return;
    pthread_mutex_lock(&b->cb_mu);
    for (int i = 0; i < b->nalloc; i++)
        if (b->conns[i] == nc) atomic_store(&b->up[i], up);
    pthread_mutex_unlock(&b->cb_mu);
}

static void on_connected(natsConnection *nc, void *closure)
{
    set_up(closure, nc, true);
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    sp_log_info(NULL, "nats_connected", "url", url);
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    spbus *b = closure;
    if (b != NULL) atomic_fetch_add(&b->disconnects, 1);
    set_up(b, nc, false);
    sp_log_warn(NULL, "nats_disconnected");
}

/* The last callback cnats runs for a connection (one thread runs them all, in order):
 * spbus_destroy waits for it before freeing 'b', which the other callbacks use. */
static void on_closed(natsConnection *nc, void *closure)
{
    spbus *b = closure;
    set_up(b, nc, false);
    pthread_mutex_lock(&b->cb_mu);
    b->closed++;
    pthread_cond_broadcast(&b->cb_cv);
    pthread_mutex_unlock(&b->cb_mu);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    set_up(closure, nc, true);
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    sp_log_info(NULL, "nats_reconnected", "url", url);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    sp_log_warn(NULL, "nats_async_error", "error", natsStatus_GetText(err));
}

/* 250 ms, doubling per round over the server list, capped at 2 s, with up to 20% jitter so
 * that every replica does not hit a restarted server in the same millisecond. */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    (void)nc;
    (void)closure;
    int64_t d = 250;
    for (int i = 1; i < attempts && d < 2000; i++)
        d *= 2;
    if (d > 2000) d = 2000;
    return d + (int64_t)(rand() % (int)(d / 5 + 1));
}

/* Splits 'url' at commas into natsOptions_SetServers. */
static natsStatus set_servers(natsOptions *o, const char *url)
{
    char *copy = strdup(url);
    if (copy == NULL) return NATS_NO_MEMORY;
    const char *list[32];
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t != NULL && n < 32;
         t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (*t != '\0') list[n++] = t;
    }
    natsStatus s = n > 0 ? natsOptions_SetServers(o, list, n) : NATS_INVALID_ARG;
    free(copy);
    return s;
}

static natsStatus build_options(natsOptions **out, const spbus_opts *opts, spbus *b)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK) s = set_servers(o, opts->url);
    if (s == NATS_OK && opts->user != NULL && opts->user[0] != '\0')
        s = natsOptions_SetUserInfo(o, opts->user, opts->password ? opts->password : "");
    if (s == NATS_OK && opts->name != NULL && opts->name[0] != '\0')
        s = natsOptions_SetName(o, opts->name);
    /* Buffered: the flusher thread writes what several threads published in one system
     * call, and nats-server reads them in one go (SendAsap: one write per message). */
    if (s == NATS_OK) s = natsOptions_SetSendAsap(o, false);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(o, 250);
    if (s == NATS_OK) s = natsOptions_SetReconnectJitter(o, 50, 250);
    /* Overrides wait and jitter above with the 250 ms .. 2 s backoff. */
    if (s == NATS_OK) s = natsOptions_SetCustomReconnectDelay(o, reconnect_delay, NULL);
    /* A connected callback makes the first connect asynchronous: without one cnats retries
     * in the caller's thread, forever with unlimited reconnects. */
    if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(o, true, on_connected, b);
    if (s == NATS_OK) s = natsOptions_SetCustomInboxPrefix(o, "_SP_INBOX");
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(o, on_disconnected, b);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(o, on_reconnected, b);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(o, on_closed, b);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(o, on_async_error, NULL);
    if (s != NATS_OK) {
        natsOptions_Destroy(o);
        return s;
    }
    *out = o;
    return NATS_OK;
}

sp_status spbus_connect(spbus **out, const spbus_opts *opts)
{
    if (out == NULL) return SP_ERR_INTERNAL;
    *out = NULL;
    if (opts == NULL || opts->url == NULL || opts->url[0] == '\0') return SP_ERR_VALIDATION_FAILED;
    int n = opts->connections < 1 ? 1 : opts->connections;
    if (n > SPBUS_MAX_CONNS) n = SPBUS_MAX_CONNS;

    pthread_once(&g_open_once, open_library);
    if (g_open_status != NATS_OK) {
        sp_log_error(NULL, "nats_open_failed", "error", natsStatus_GetText(g_open_status));
        return SP_ERR_INTERNAL;
    }

    spbus *b = calloc(1, sizeof(*b));
    if (b == NULL || (b->conns = calloc((size_t)n, sizeof(natsConnection *))) == NULL ||
        (b->free_inboxes = calloc((size_t)n, sizeof(inbox *))) == NULL) {
        if (b != NULL) free(b->conns);
        free(b);
        return SP_ERR_INTERNAL;
    }
    natsOptions *o = NULL;
    natsStatus ns = build_options(&o, opts, b);
    if (ns != NATS_OK) {
        sp_log_error(NULL, "nats_options_invalid", "error", natsStatus_GetText(ns));
        free(b->free_inboxes);
        free(b->conns);
        free(b);
        return SP_ERR_VALIDATION_FAILED;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->inbox_mu, NULL);
    pthread_mutex_init(&b->cb_mu, NULL);
    pthread_cond_init(&b->cb_cv, NULL);
    atomic_init(&b->rr, 0);
    atomic_init(&b->disconnects, 0);
    for (int i = 0; i < SPBUS_MAX_CONNS; i++)
        atomic_init(&b->up[i], false);
    b->nalloc = n;
    for (int i = 0; i < n; i++) {
        natsConnection *nc = NULL;
        ns = natsConnection_Connect(&nc, o);
        pthread_mutex_lock(&b->cb_mu);
        b->conns[i] = nc;
        /* after storing it: a callback that came earlier found nothing to update */
        if (nc != NULL)
            atomic_store(&b->up[i], natsConnection_Status(nc) == NATS_CONN_STATUS_CONNECTED);
        pthread_mutex_unlock(&b->cb_mu);
        if (ns == NATS_NOT_YET_CONNECTED) {
            sp_log_warn(NULL, "nats_not_yet_connected", "url", opts->url);
        } else if (ns != NATS_OK) {
            sp_log_error(NULL, "nats_connect_failed", "url", opts->url, "error",
                         natsStatus_GetText(ns));
            break;
        }
        b->nconns++;
    }
    natsOptions_Destroy(o);
    if (ns != NATS_OK && ns != NATS_NOT_YET_CONNECTED) {
        spbus_destroy(b);
        return SP_ERR_UNAVAILABLE;
    }
    *out = b;
    return SP_OK;
}

bool spbus_connected(const spbus *b)
{
    if (b == NULL) return false;
    for (int i = 0; i < b->nconns; i++)
        if (natsConnection_Status(b->conns[i]) == NATS_CONN_STATUS_CONNECTED) return true;
    return false;
}

uint64_t spbus_disconnects(const spbus *b)
{
    return b == NULL ? 0 : (uint64_t)atomic_load(&((spbus *)b)->disconnects);
}

void spbus_on_revoked(spbus *b, spbus_revoked_fn fn, void *user)
{
    if (b == NULL) return;
    b->on_revoked = fn;
    b->on_revoked_user = user;
}

static void on_core_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    core_sub *cs = closure;
    int len = natsMsg_GetDataLength(msg);
    cs->fn(cs->user, natsMsg_GetSubject(msg), natsMsg_GetData(msg), len > 0 ? (size_t)len : 0);
    natsMsg_Destroy(msg);
}

sp_status spbus_subscribe(spbus *b, const char *subject, spbus_msg_fn fn, void *user)
{
    if (b == NULL || b->nconns < 1 || subject == NULL || subject[0] == '\0' || fn == NULL)
        return SP_ERR_INTERNAL;
    core_sub *cs = calloc(1, sizeof(*cs));
    if (cs == NULL) return SP_ERR_INTERNAL;
    cs->fn = fn;
    cs->user = user;
    natsStatus ns = natsConnection_Subscribe(&cs->sub, b->conns[0], subject, on_core_msg, cs);
    if (ns != NATS_OK) {
        sp_log_error(NULL, "bus_subscribe_failed", "subject", subject, "error",
                     natsStatus_GetText(ns));
        free(cs);
        return map_nats(ns);
    }
    pthread_mutex_lock(&b->mu);
    cs->next = b->subs;
    b->subs = cs;
    pthread_mutex_unlock(&b->mu);
    if (natsConnection_Status(b->conns[0]) == NATS_CONN_STATUS_CONNECTED)
        natsConnection_FlushTimeout(b->conns[0], 2000); /* subscribed on the server */
    return SP_OK;
}

/* The next connection round-robin that is connected, or NULL when none is. */
static natsConnection *pick_conn(spbus *b)
{
    if (b->nconns == 1) return atomic_load(&b->up[0]) ? b->conns[0] : NULL;
    unsigned start = atomic_fetch_add_explicit(&b->rr, 1, memory_order_relaxed);
    for (int i = 0; i < b->nconns; i++) {
        unsigned k = (start + (unsigned)i) % (unsigned)b->nconns;
        if (atomic_load(&b->up[k])) return b->conns[k];
    }
    return NULL;
}

void spbus_drain(spbus *b, int timeout_ms)
{
    if (b == NULL) return;
    int64_t until = sp_monotonic_us() + (int64_t)(timeout_ms > 0 ? timeout_ms : 1) * 1000;
    pthread_mutex_lock(&b->mu);
    /* Consumers first: the fn running finishes and acks; what is unacked is redelivered. */
    for (spbus_consumer *c = b->consumers; c != NULL; c = c->next)
        consumer_stop(c);
    for (core_sub *cs = b->subs; cs != NULL; cs = cs->next)
        natsSubscription_Drain(cs->sub);
    for (spbus_service *s = b->services; s != NULL; s = s->next)
        if (s->sub != NULL) natsSubscription_Drain(s->sub);
    for (spbus_service *s = b->services; s != NULL; s = s->next) {
        if (s->sub == NULL) continue;
        int64_t left = (until - sp_monotonic_us()) / 1000;
        natsStatus ns = natsSubscription_WaitForDrainCompletion(s->sub, left > 0 ? left : 1);
        if (ns != NATS_OK && ns != NATS_INVALID_SUBSCRIPTION)
            sp_log_warn(NULL, "bus_drain_incomplete", "api", s->api, "error",
                        natsStatus_GetText(ns));
        /* Everything received is queued now: the workers serve it, then end. */
        stop_workers(s, false);
        if (!join_workers(s, until)) sp_log_warn(NULL, "bus_drain_handlers_running", "api", s->api);
    }
    pthread_mutex_unlock(&b->mu);
    /* What handlers published must leave before the connections close. */
    for (int i = 0; i < b->nconns; i++) {
        int64_t left = (until - sp_monotonic_us()) / 1000;
        if (natsConnection_Status(b->conns[i]) == NATS_CONN_STATUS_CONNECTED)
            natsConnection_FlushTimeout(b->conns[i], left > 100 ? left : 100);
        natsConnection_Close(b->conns[i]);
    }
}

/* Destroys the services still registered, then the connections. */
void spbus_destroy(spbus *b)
{
    if (b == NULL) return;
    stash_flush_mine();
    for (;;) {
        pthread_mutex_lock(&b->mu);
        spbus_consumer *c = b->consumers;
        pthread_mutex_unlock(&b->mu);
        if (c == NULL) break;
        spbus_consumer_destroy(c);
    }
    for (;;) {
        pthread_mutex_lock(&b->mu);
        spbus_service *s = b->services;
        pthread_mutex_unlock(&b->mu);
        if (s == NULL) break;
        spbus_service_destroy(s);
    }
    for (int i = 0; i < b->nconns; i++)
        for (inbox *ib = b->free_inboxes[i], *next; ib != NULL; ib = next) {
            next = ib->next;
            natsSubscription_Destroy(ib->sub);
            free(ib);
        }
    free(b->free_inboxes);
    /* Unsubscribe waits for a running callback of the subscription to end. */
    for (core_sub *cs = b->subs, *next; cs != NULL; cs = next) {
        next = cs->next;
        (void)natsSubscription_Unsubscribe(cs->sub);
        natsSubscription_Destroy(cs->sub);
        free(cs);
    }
    for (int i = 0; i < b->nconns; i++)
        natsConnection_Destroy(b->conns[i]);
    /* cnats runs the callbacks later on its own thread: wait until none is left for 'b'. */
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&b->cb_mu);
    int rc = 0;
    while (b->closed < b->nconns && rc == 0)
        rc = pthread_cond_timedwait(&b->cb_cv, &b->cb_mu, &until);
    bool all = b->closed >= b->nconns;
    pthread_mutex_unlock(&b->cb_mu);
    if (!all) {
        sp_log_error(NULL, "bus_callbacks_pending"); /* leak rather than free what they use */
        return;
    }
    pthread_cond_destroy(&b->cb_cv);
    pthread_mutex_destroy(&b->cb_mu);
    free(b->conns);
    pthread_mutex_destroy(&b->inbox_mu);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* ---- client side ------------------------------------------------------------------------ */

static sp_status map_nats(natsStatus ns)
{
    switch (ns) {
    case NATS_OK:
        return SP_OK;
    case NATS_INVALID_ARG:
    case NATS_INVALID_SUBJECT:
    case NATS_NO_MEMORY:
        return SP_ERR_INTERNAL;
    case NATS_MAX_PAYLOAD:
        return SP_ERR_PAYLOAD_TOO_LARGE;
    default:
        return SP_ERR_UNAVAILABLE; /* timeout, no responders, closed, reconnecting */
    }
}

/* Packs 'm' into a buffer from 'arena'; an empty message packs to zero bytes. */
static sp_status pack_in_arena(uint8_t **buf, size_t *len, const ProtobufCMessage *m,
                               sp_arena *arena)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (n > SPBUS_MAX_MSG) return SP_ERR_PAYLOAD_TOO_LARGE;
    *buf = sp_arena_alloc(arena, n ? n : 1);
    if (*buf == NULL) return SP_ERR_INTERNAL;
    *len = protobuf_c_message_pack(m, *buf);
    return SP_OK;
}

/* Borrows a free inbox of connection 'ci', or subscribes a new one. */
static natsStatus inbox_get(inbox **out, spbus *b, int ci)
{
    *out = NULL;
    pthread_mutex_lock(&b->inbox_mu);
    inbox *ib = b->free_inboxes[ci];
    if (ib != NULL) b->free_inboxes[ci] = ib->next;
    pthread_mutex_unlock(&b->inbox_mu);
    if (ib != NULL) {
        *out = ib;
        return NATS_OK;
    }
    natsInbox *nuid = NULL;
    natsStatus ns = natsInbox_Create(&nuid); /* "_INBOX.<nuid>": the nuid is what we keep */
    if (ns != NATS_OK) return ns;
    ib = calloc(1, sizeof(*ib));
    if (ib == NULL) {
        natsInbox_Destroy(nuid);
        return NATS_NO_MEMORY;
    }
    const char *dot = strchr(nuid, '.');
    snprintf(ib->prefix, sizeof(ib->prefix), "_SP_INBOX.%s", dot != NULL ? dot + 1 : nuid);
    natsInbox_Destroy(nuid);
    ib->conn = ci;
    char wild[80];
    snprintf(wild, sizeof(wild), "%s.*", ib->prefix);
    ns = natsConnection_SubscribeSync(&ib->sub, b->conns[ci], wild);
    if (ns != NATS_OK) {
        free(ib);
        return ns;
    }
    *out = ib;
    return NATS_OK;
}

/* Gives the inbox back for the next request, or destroys it when its subscription is no
 * longer usable (connection closed). */
static void inbox_put(spbus *b, inbox *ib, bool reusable)
{
    if (!reusable) {
        natsSubscription_Destroy(ib->sub);
        free(ib);
        return;
    }
    pthread_mutex_lock(&b->inbox_mu);
    ib->next = b->free_inboxes[ib->conn];
    b->free_inboxes[ib->conn] = ib;
    pthread_mutex_unlock(&b->inbox_mu);
}

/* Publishes 'buf' to 'subject' with a fresh reply subject of a borrowed inbox and waits at
 * most timeout_ms for the reply to that very subject; replies to earlier requests of the
 * same inbox (which gave up) are dropped. */
static natsStatus request_via_inbox(natsMsg **reply, spbus *b, natsConnection *nc,
                                    const char *subject, const char *const *headers,
                                    const void *buf, int len, int timeout_ms)
{
    *reply = NULL;
    int ci = 0;
    while (ci < b->nconns && b->conns[ci] != nc)
        ci++;
    if (ci == b->nconns) return NATS_INVALID_ARG;
    inbox *ib = NULL;
    natsStatus ns = inbox_get(&ib, b, ci);
    if (ns != NATS_OK) return ns;
    char to[96];
    snprintf(to, sizeof(to), "%s.%llu", ib->prefix, (unsigned long long)++ib->seq);
    if (headers == NULL) {
        ns = natsConnection_PublishRequest(nc, subject, to, buf, len);
    } else {
        natsMsg *m = NULL;
        ns = natsMsg_Create(&m, subject, to, buf, len);
        for (size_t i = 0; ns == NATS_OK && headers[i] != NULL && headers[i + 1] != NULL; i += 2)
            ns = natsMsgHeader_Set(m, headers[i], headers[i + 1]);
        if (ns == NATS_OK) ns = natsConnection_PublishMsg(nc, m);
        natsMsg_Destroy(m);
    }
    int64_t until = sp_monotonic_us() + (int64_t)timeout_ms * 1000;
    while (ns == NATS_OK) {
        int64_t left = (until - sp_monotonic_us() + 999) / 1000;
        if (left <= 0) {
            ns = NATS_TIMEOUT;
            break;
        }
        natsMsg *m = NULL;
        ns = natsSubscription_NextMsg(&m, ib->sub, left);
        if (ns == NATS_SLOW_CONSUMER) {
            ns = NATS_OK; /* messages were dropped; ours may still come */
            continue;
        }
        if (ns != NATS_OK) break;
        if (strcmp(natsMsg_GetSubject(m), to) == 0) {
            *reply = m;
            break;
        }
        msg_release(m); /* the late reply of a request that timed out */
    }
    inbox_put(b, ib, ns == NATS_OK || ns == NATS_TIMEOUT);
    return ns;
}

/* The budget of a call: the least of timeout_ms, a timeout_us the caller put in ctx (a
 * handler passing on its own ctx passes its first budget, hence also) and what is left of
 * the request this thread serves, so that a chain of calls never outlives the first
 * caller. <= 0: spent. */
static int64_t call_budget(const Sp__V1__RequestContext *c, int timeout_ms)
{
    int64_t budget = (int64_t)timeout_ms * 1000;
    if (c->has_timeout_us && c->timeout_us < budget) budget = c->timeout_us;
    if (tl_serving != NULL) {
        int64_t left = spbus_req_remaining_us(tl_serving);
        if (left < budget) budget = left;
    }
    return budget;
}

/* Sends 'buf' (with 'headers', or none) and unpacks the sp.v1.Reply that answers it. */
static sp_status call_and_decode(ProtobufCMessage **out, Sp__V1__Error **err, spbus *b,
                                 const char *subject, const char *request_id,
                                 const char *const *headers, const void *buf, size_t len,
                                 const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
                                 sp_arena *arena)
{
    natsConnection *nc = pick_conn(b);
    if (nc == NULL) return SP_ERR_UNAVAILABLE;
    natsMsg *reply = NULL;
    natsStatus ns = request_via_inbox(&reply, b, nc, subject, headers, buf, (int)len, timeout_ms);
    if (ns != NATS_OK) {
        sp_log_debug(request_id, "bus_request_failed", "subject", subject, "error",
                     natsStatus_GetText(ns));
        return map_nats(ns);
    }

    sp_status s = SP_OK;
    int dlen = natsMsg_GetDataLength(reply);
    if (dlen < 0 || (size_t)dlen > SPBUS_MAX_MSG) s = SP_ERR_INTERNAL;
    ProtobufCAllocator al = spbus_arena_allocator(arena);
    Sp__V1__Reply *rep = NULL;
    if (s == SP_OK) {
        rep = sp__v1__reply__unpack(&al, (size_t)dlen, (const uint8_t *)natsMsg_GetData(reply));
        if (rep == NULL) s = SP_ERR_INTERNAL;
    }
    /* revocations flow back along the chain of calls to the gateway that started it */
    for (size_t i = 0; s == SP_OK && i < rep->n_revoked_sessions; i++) {
        if (b->on_revoked != NULL) b->on_revoked(b->on_revoked_user, rep->revoked_sessions[i]);
        if (tl_serving != NULL && !tl_serving->replied)
            spbus_req_revoked(tl_serving, rep->revoked_sessions[i]);
    }
    if (s == SP_OK && rep->result_case == SP__V1__REPLY__RESULT_ERROR) {
        if (err != NULL) *err = rep->error;
        s = sp_error_from_code(rep->error->code);
        if (s == SP_OK) s = SP_ERR_INTERNAL;
    } else if (s == SP_OK) {
        size_t plen = rep->result_case == SP__V1__REPLY__RESULT_PAYLOAD ? rep->payload.len : 0;
        *out = protobuf_c_message_unpack(reply_desc, &al, plen, plen ? rep->payload.data : NULL);
        if (*out == NULL) s = SP_ERR_INTERNAL;
    }
    if (s == SP_ERR_INTERNAL && (rep == NULL || rep->result_case != SP__V1__REPLY__RESULT_ERROR))
        sp_log_warn(request_id, "bus_bad_reply", "subject", subject);
    msg_release(reply);
    return s;
}

sp_status spbus_request(ProtobufCMessage **out, Sp__V1__Error **err, spbus *b, const char *subject,
                        const Sp__V1__RequestContext *ctx, const ProtobufCMessage *in,
                        const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
                        sp_arena *arena)
{
    if (out != NULL) *out = NULL;
    if (err != NULL) *err = NULL;
    if (out == NULL || b == NULL || subject == NULL || in == NULL || reply_desc == NULL ||
        arena == NULL || timeout_ms <= 0)
        return SP_ERR_INTERNAL;

    /* The caller's ctx stays untouched: the budget goes into a copy. */
    Sp__V1__RequestContext c = SP__V1__REQUEST_CONTEXT__INIT;
    if (ctx != NULL) c = *ctx;
    int64_t budget = call_budget(&c, timeout_ms);
    if (budget <= 0) return SP_ERR_UNAVAILABLE; /* the caller's caller has given up already */
    c.has_timeout_us = 1;
    c.timeout_us = budget;
    timeout_ms = (int)((budget + 999) / 1000); /* no wait past the budget */
    Sp__V1__Request r = SP__V1__REQUEST__INIT;
    r.ctx = &c;
    sp_status s = pack_in_arena(&r.payload.data, &r.payload.len, in, arena);
    if (s != SP_OK) return s;
    r.has_payload = 1;
    uint8_t *buf = NULL;
    size_t len = 0;
    s = pack_in_arena(&buf, &len, &r.base, arena);
    if (s != SP_OK) return s;
    return call_and_decode(out, err, b, subject, c.request_id, NULL, buf, len, reply_desc,
                           timeout_ms, arena);
}

sp_status spbus_request_raw(ProtobufCMessage **out, Sp__V1__Error **err, spbus *b,
                            const char *subject, const Sp__V1__RequestContext *ctx,
                            const char *const *headers, const void *data, size_t len,
                            const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
                            sp_arena *arena)
{
    if (out != NULL) *out = NULL;
    if (err != NULL) *err = NULL;
    if (out == NULL || b == NULL || subject == NULL || (data == NULL && len > 0) ||
        reply_desc == NULL || arena == NULL || timeout_ms <= 0)
        return SP_ERR_INTERNAL;
    if (len > SPBUS_MAX_MSG) return SP_ERR_PAYLOAD_TOO_LARGE;
    Sp__V1__RequestContext c = SP__V1__REQUEST_CONTEXT__INIT;
    if (ctx != NULL) c = *ctx;
    int64_t budget = call_budget(&c, timeout_ms);
    if (budget <= 0) return SP_ERR_UNAVAILABLE;
    timeout_ms = (int)((budget + 999) / 1000);

    size_t nh = 0;
    while (headers != NULL && headers[nh] != NULL && headers[nh + 1] != NULL)
        nh += 2;
    const char **all = sp_arena_alloc(arena, (nh + 7) * sizeof(*all));
    char *budget_s = sp_arena_printf(arena, "%lld", (long long)budget);
    if (all == NULL || budget_s == NULL) return SP_ERR_INTERNAL;
    size_t k = 0;
    for (size_t i = 0; i < nh; i++)
        all[k++] = headers[i];
    all[k++] = SPBUS_H_TIMEOUT_US;
    all[k++] = budget_s;
    if (c.request_id != NULL && c.request_id[0] != '\0') {
        all[k++] = SPBUS_H_REQUEST_ID;
        all[k++] = c.request_id;
    }
    if (c.ip != NULL && c.ip[0] != '\0') {
        all[k++] = SPBUS_H_CLIENT_IP;
        all[k++] = c.ip;
    }
    all[k] = NULL;
    return call_and_decode(out, err, b, subject, c.request_id, all, data, len, reply_desc,
                           timeout_ms, arena);
}

sp_status spbus_publish(spbus *b, const char *subject, const void *data, size_t len)
{
    if (b == NULL || subject == NULL || (data == NULL && len > 0)) return SP_ERR_INTERNAL;
    if (len > SPBUS_MAX_MSG) return SP_ERR_PAYLOAD_TOO_LARGE;
    natsConnection *nc = pick_conn(b);
    if (nc == NULL) return SP_ERR_UNAVAILABLE;
    return map_nats(natsConnection_Publish(nc, subject, data, (int)len));
}

/* A JetStream context per call: cheap next to the ack's round trip, and nothing to share
 * between threads or to rebuild after a reconnect. */
sp_status spbus_js_publish(spbus *b, const char *subject, const void *data, size_t len,
                           const char *msg_id, int timeout_ms)
{
    if (b == NULL || subject == NULL || (data == NULL && len > 0) || timeout_ms <= 0)
        return SP_ERR_INTERNAL;
    if (len > SPBUS_MAX_MSG) return SP_ERR_PAYLOAD_TOO_LARGE;
    natsConnection *nc = pick_conn(b);
    if (nc == NULL) return SP_ERR_UNAVAILABLE;

    jsCtx *js = NULL;
    natsMsg *msg = NULL;
    jsPubAck *ack = NULL;
    jsErrCode jerr = 0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms;
    if (msg_id != NULL && msg_id[0] != '\0') po.MsgId = msg_id;

    natsStatus ns = natsConnection_JetStream(&js, nc, NULL);
    if (ns == NATS_OK) ns = natsMsg_Create(&msg, subject, NULL, (const char *)data, (int)len);
    if (ns == NATS_OK) ns = js_PublishMsg(&ack, js, msg, &po, &jerr);
    if (ns != NATS_OK) {
        char code[16];
        snprintf(code, sizeof(code), "%d", (int)jerr);
        sp_log_warn(NULL, "js_publish_failed", "subject", subject, "error", natsStatus_GetText(ns),
                    "jsErrCode", code);
    }
    jsPubAck_Destroy(ack);
    natsMsg_Destroy(msg);
    jsCtx_Destroy(js);
    if (ns == NATS_OK) return SP_OK;
    return ns == NATS_NO_MEMORY || ns == NATS_INVALID_ARG || ns == NATS_INVALID_SUBJECT
               ? SP_ERR_INTERNAL
               : SP_ERR_UNAVAILABLE;
}

bool spbus_stream_exists(spbus *b, const char *stream)
{
    natsConnection *nc = b != NULL && stream != NULL ? pick_conn(b) : NULL;
    if (nc == NULL) return false;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    bool ok = natsConnection_JetStream(&js, nc, &jo) == NATS_OK &&
              js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    return ok;
}

/* ---- JetStream: a batch of asynchronous publishes, acked together ----------------------- */

/* One JetStream context with an ack handler that counts: its owner publishes one batch at
 * a time, so every ack it gets belongs to the batch being published (a batch that failed
 * takes its pending messages back, so no late ack of it arrives afterwards). */
struct spbus_js_batch {
    spbus *bus;
    natsConnection *nc;
    jsCtx *js;
    pthread_mutex_t mu;
    size_t acked, duplicates, failed;
};

static void on_batch_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    spbus_js_batch *jb = closure;
    pthread_mutex_lock(&jb->mu);
    if (pa != NULL) {
        jb->acked++;
        if (pa->Duplicate) jb->duplicates++;
    } else {
        jb->failed++;
        (void)pae;
    }
    pthread_mutex_unlock(&jb->mu);
    natsMsg_Destroy(msg);
}

sp_status spbus_js_batch_create(spbus_js_batch **out, spbus *b, int index)
{
    *out = NULL;
    if (b == NULL || index < 0) return SP_ERR_INTERNAL;
    spbus_js_batch *jb = calloc(1, sizeof(*jb));
    if (jb == NULL) return SP_ERR_INTERNAL;
    pthread_mutex_init(&jb->mu, NULL);
    jb->bus = b;
    jb->nc = b->conns[index % b->nconns];
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = SPBUS_JS_MAX_PENDING;
    jo.PublishAsync.AckHandler = on_batch_ack;
    jo.PublishAsync.AckHandlerClosure = jb;
    jo.PublishAsync.StallWait = 1000;
    if (natsConnection_JetStream(&jb->js, jb->nc, &jo) != NATS_OK) {
        spbus_js_batch_destroy(jb);
        return SP_ERR_INTERNAL;
    }
    *out = jb;
    return SP_OK;
}

void spbus_js_batch_destroy(spbus_js_batch *jb)
{
    if (jb == NULL) return;
    if (jb->js != NULL) {
        natsMsgList pending = {0};
        if (js_PublishAsyncGetPendingList(&pending, jb->js) == NATS_OK)
            natsMsgList_Destroy(&pending);
        jsCtx_Destroy(jb->js);
    }
    pthread_mutex_destroy(&jb->mu);
    free(jb);
}

sp_status spbus_js_publish_all(spbus_js_batch *jb, spbus_js_msg_out *msgs, size_t n,
                               size_t *duplicates, int timeout_ms)
{
    *duplicates = 0;
    if (jb == NULL || (msgs == NULL && n > 0) || timeout_ms <= 0) return SP_ERR_INTERNAL;
    if (n == 0) return SP_OK;
    if (natsConnection_Status(jb->nc) != NATS_CONN_STATUS_CONNECTED)
        return SP_ERR_UNAVAILABLE; /* buffered publishes would only time out */
    pthread_mutex_lock(&jb->mu);
    jb->acked = jb->duplicates = jb->failed = 0;
    pthread_mutex_unlock(&jb->mu);

    natsStatus ns = NATS_OK;
    int64_t until = sp_monotonic_us() + (int64_t)timeout_ms * 1000;
    for (size_t i = 0; ns == NATS_OK && i < n; i++) {
        natsMsg *m = NULL;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        if (msgs[i].msg_id != NULL && msgs[i].msg_id[0] != '\0') po.MsgId = msgs[i].msg_id;
        ns =
            natsMsg_Create(&m, msgs[i].subject, NULL, (const char *)msgs[i].data, (int)msgs[i].len);
        if (ns == NATS_OK) ns = js_PublishMsgAsync(jb->js, &m, &po);
        natsMsg_Destroy(m); /* NULL once the library took it */
    }
    if (ns == NATS_OK) {
        /* on the wire now, not after cnats' flusher's 1 ms wait: the caller waits for these
         * acks (a camera's 202, the outbox's next batch) */
        int64_t left = (until - sp_monotonic_us()) / 1000;
        ns = natsConnection_FlushTimeout(jb->nc, left > 0 ? left : 1);
    }
    if (ns == NATS_OK) {
        int64_t left = (until - sp_monotonic_us()) / 1000;
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = left > 0 ? left : 1;
        ns = js_PublishAsyncComplete(jb->js, &po);
    }
    if (ns != NATS_OK) {
        /* take back what is still pending: no late ack of this batch reaches the next */
        natsMsgList pending = {0};
        if (js_PublishAsyncGetPendingList(&pending, jb->js) == NATS_OK)
            natsMsgList_Destroy(&pending);
    }
    pthread_mutex_lock(&jb->mu);
    size_t acked = jb->acked, failed = jb->failed;
    *duplicates = jb->duplicates;
    pthread_mutex_unlock(&jb->mu);
    if (ns == NATS_OK && failed == 0 && acked == n) return SP_OK;
    char a[24], f[24];
    snprintf(a, sizeof(a), "%zu", acked);
    snprintf(f, sizeof(f), "%zu", failed);
    sp_log_warn(NULL, "js_batch_failed", "error", natsStatus_GetText(ns), "acked", a, "failed", f);
    return ns == NATS_NO_MEMORY || ns == NATS_INVALID_ARG ? SP_ERR_INTERNAL : SP_ERR_UNAVAILABLE;
}

/* ---- server side ------------------------------------------------------------------------ */

const Sp__V1__RequestContext *spbus_req_ctx(const spbus_req *req)
{
    return req->ctx;
}

const char *spbus_req_id(const spbus_req *req)
{
    return req->ctx != NULL && req->ctx->request_id != NULL ? req->ctx->request_id : "";
}

const ProtobufCMessage *spbus_req_input(const spbus_req *req)
{
    return req->input;
}

sp_arena *spbus_req_arena(spbus_req *req)
{
    return req->arena;
}

void *spbus_req_user(const spbus_req *req)
{
    return req->svc->user;
}

int spbus_req_worker(const spbus_req *req)
{
    return req->worker;
}

int64_t spbus_req_remaining_us(const spbus_req *req)
{
    if (req == NULL || req->deadline_us == INT64_MAX) return INT64_MAX;
    int64_t left = req->deadline_us - sp_monotonic_us();
    return left > 0 ? left : 0;
}

/* Packs 'rep' and publishes it on the request's reply subject; once per request. */
static sp_status send_reply(spbus_req *req, const Sp__V1__Reply *rep)
{
    if (req->replied) {
        sp_log_warn(spbus_req_id(req), "bus_double_reply", "subject", natsMsg_GetSubject(req->msg));
        return SP_ERR_INTERNAL;
    }
    req->replied = true;
    const char *to = natsMsg_GetReply(req->msg);
    if (to == NULL || to[0] == '\0') return SP_OK; /* a publish, not a request: no one waits */
    Sp__V1__Reply with = *rep;
    with.n_revoked_sessions = req->nrevoked;
    with.revoked_sessions = req->revoked;
    rep = &with;
    uint8_t *buf = NULL;
    size_t len = 0;
    sp_status s = pack_in_arena(&buf, &len, &rep->base, req->arena);
    if (s != SP_OK) return s;
    return map_nats(natsConnection_Publish(req->nc, to, buf, (int)len));
}

sp_status spbus_req_revoked(spbus_req *req, const char *session_id)
{
    if (req == NULL || session_id == NULL || req->replied) return SP_ERR_INTERNAL;
    if (req->nrevoked == req->caprevoked) {
        size_t cap = req->caprevoked ? req->caprevoked * 2 : 8;
        char **grown = sp_arena_alloc(req->arena, cap * sizeof(*grown));
        if (grown == NULL) return SP_ERR_INTERNAL;
        if (req->nrevoked > 0) memcpy(grown, req->revoked, req->nrevoked * sizeof(*grown));
        req->revoked = grown;
        req->caprevoked = cap;
    }
    char *copy = sp_arena_strdup(req->arena, session_id);
    if (copy == NULL) return SP_ERR_INTERNAL;
    req->revoked[req->nrevoked++] = copy;
    return SP_OK;
}

sp_status spbus_reply(spbus_req *req, const ProtobufCMessage *out)
{
    if (req == NULL || out == NULL) return SP_ERR_INTERNAL;
    Sp__V1__Reply rep = SP__V1__REPLY__INIT;
    rep.result_case = SP__V1__REPLY__RESULT_PAYLOAD;
    sp_status s = pack_in_arena(&rep.payload.data, &rep.payload.len, out, req->arena);
    if (s != SP_OK) return s;
    return send_reply(req, &rep);
}

/* Builds and sends the sp.v1.Error; retry_after_s <= 0 leaves it out. */
static sp_status reply_error(spbus_req *req, sp_status code, const char *message,
                             Sp__V1__FieldError **fields, size_t nfields, int retry_after_s)
{
    if (req == NULL) return SP_ERR_INTERNAL;
    if (code <= SP_OK || code >= SP_ERR__COUNT) code = SP_ERR_INTERNAL;
    Sp__V1__Error e = SP__V1__ERROR__INIT;
    e.code = (char *)sp_error_code(code);
    e.message = (char *)(message != NULL ? message : sp_error_code(code));
    e.n_fields = fields != NULL ? nfields : 0;
    e.fields = fields;
    e.has_retry_after_s = retry_after_s > 0;
    e.retry_after_s = retry_after_s;
    Sp__V1__Reply rep = SP__V1__REPLY__INIT;
    rep.result_case = SP__V1__REPLY__RESULT_ERROR;
    rep.error = &e;
    return send_reply(req, &rep);
}

sp_status spbus_reply_error_fields(spbus_req *req, sp_status code, const char *message,
                                   Sp__V1__FieldError **fields, size_t nfields)
{
    return reply_error(req, code, message, fields, nfields, 0);
}

sp_status spbus_reply_error_retry(spbus_req *req, sp_status code, const char *message,
                                  int retry_after_s)
{
    return reply_error(req, code, message, NULL, 0, retry_after_s);
}

sp_status spbus_reply_error(spbus_req *req, sp_status code, const char *message, ...)
{
    if (req == NULL) return SP_ERR_INTERNAL;
    va_list ap;
    size_t n = 0;
    va_start(ap, message);
    while (va_arg(ap, const char *) != NULL) {
        (void)va_arg(ap, const char *);
        n++;
    }
    va_end(ap);

    Sp__V1__FieldError **fields = NULL;
    if (n > 0) {
        fields = sp_arena_alloc(req->arena, n * sizeof(Sp__V1__FieldError *));
        Sp__V1__FieldError *fe = sp_arena_alloc(req->arena, n * sizeof(*fe));
        if (fields == NULL || fe == NULL) return SP_ERR_INTERNAL;
        va_start(ap, message);
        for (size_t i = 0; i < n; i++) {
            const char *path = va_arg(ap, const char *);
            const char *reason = va_arg(ap, const char *);
            sp__v1__field_error__init(&fe[i]);
            fe[i].path = (char *)path;
            fe[i].reason = (char *)(reason != NULL ? reason : "");
            fields[i] = &fe[i];
        }
        va_end(ap);
    }
    return spbus_reply_error_fields(req, code, message, fields, n);
}

static const spbus_route *find_route(const spbus_service *svc, const char *method)
{
    for (size_t i = 0; i < svc->nroutes; i++)
        if (strcmp(svc->routes[i].method, method) == 0) return &svc->routes[i];
    return NULL;
}

/* The method of a request subject "sp.<api>.v1.<Method>". */
static const char *method_of(const char *subject)
{
    const char *dot = strrchr(subject, '.');
    return dot != NULL ? dot + 1 : subject;
}

/* The route of a request subject, or NULL. */
static const spbus_route *route_of(const spbus_service *svc, const char *subject)
{
    return find_route(svc, method_of(subject));
}

/* recv_us + timeout_us, saturating; INT64_MAX when the caller sent no budget. */
static int64_t deadline_of(const Sp__V1__RequestContext *ctx, int64_t recv_us)
{
    if (!ctx->has_timeout_us) return INT64_MAX;
    if (ctx->timeout_us <= 0) return recv_us;
    if (ctx->timeout_us >= INT64_MAX - recv_us) return INT64_MAX - 1;
    return recv_us + ctx->timeout_us;
}

/* Drops a request whose budget ran out before a worker took it: the caller has answered
 * 503 already. Counted per route in sp_bus_requests_expired_total. */
static void drop_expired(spbus_req *req, const char *subject)
{
    size_t ri = (size_t)(req->route - req->svc->routes);
    spadmin_counter_add(SPBUS_EXPIRED_METRIC, req->svc->labels[ri], 1);
    char waited[24];
    snprintf(waited, sizeof(waited), "%lld", (long long)(sp_monotonic_us() - req->recv_us));
    sp_log_warn(spbus_req_id(req), "request_expired", "subject", subject, "waitedUs", waited);
    req->replied = true; /* dropped on purpose: the caller has given up */
}

/* A header of a raw request that is a safe request id: 1..64 of [A-Za-z0-9._-]. */
static bool safe_id(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n > 0 && n <= 64 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789._-") == n;
}

const char *spbus_req_header(const spbus_req *req, const char *name)
{
    const char *v = NULL;
    if (req == NULL || req->msg == NULL || name == NULL) return NULL;
    if (natsMsgHeader_Get(req->msg, name, &v) != NATS_OK) return NULL;
    return v;
}

const void *spbus_req_payload(const spbus_req *req, size_t *len)
{
    int n = req != NULL && req->msg != NULL ? natsMsg_GetDataLength(req->msg) : 0;
    *len = n > 0 ? (size_t)n : 0;
    return *len > 0 ? natsMsg_GetData(req->msg) : "";
}

/* A raw route's request: no envelope; its context from the SPBUS_H_* headers (the gateway
 * sets them, a device may not: a new request id then, and no budget). */
static bool prepare_raw(spbus_req *req, const char *subject)
{
    Sp__V1__RequestContext *ctx = sp_arena_alloc(req->arena, sizeof(*ctx));
    if (ctx == NULL) return false;
    sp__v1__request_context__init(ctx);
    const char *rid = spbus_req_header(req, SPBUS_H_REQUEST_ID);
    if (safe_id(rid)) {
        ctx->request_id = sp_arena_strdup(req->arena, rid);
    } else {
        char id[SPCRYPTO_UUID_LEN];
        spcrypto_uuid_v4(id);
        ctx->request_id = sp_arena_strdup(req->arena, id);
    }
    const char *ip = spbus_req_header(req, SPBUS_H_CLIENT_IP);
    if (ip != NULL && strlen(ip) < 64 && strspn(ip, "0123456789abcdefABCDEF.:") == strlen(ip))
        ctx->ip = sp_arena_strdup(req->arena, ip);
    const char *t = spbus_req_header(req, SPBUS_H_TIMEOUT_US);
    char *end = NULL;
    long long us = t != NULL ? strtoll(t, &end, 10) : 0;
    if (t != NULL && end != t && *end == '\0' && us > 0 && us <= INT64_C(3600000000)) {
        ctx->has_timeout_us = 1;
        ctx->timeout_us = us;
    }
    req->ctx = ctx;
    req->deadline_us = deadline_of(ctx, req->recv_us);
    if (req->deadline_us != INT64_MAX && sp_monotonic_us() >= req->deadline_us) {
        drop_expired(req, subject);
        return false;
    }
    return true;
}

/* Envelope, route, budget, input: true when the request is ready for its handler;
 * otherwise it was answered (bad_request, not_found) or dropped (its budget ran out). */
static bool prepare_request(spbus_req *req)
{
    const char *subject = natsMsg_GetSubject(req->msg);
    int dlen = natsMsg_GetDataLength(req->msg);
    if (dlen < 0 || (size_t)dlen > SPBUS_MAX_MSG) {
        spbus_reply_error(req, SP_ERR_PAYLOAD_TOO_LARGE, "request exceeds 8 MiB", NULL);
        return false;
    }
    req->route = route_of(req->svc, subject);
    if (req->route != NULL && req->route->in_desc == NULL) return prepare_raw(req, subject);
    ProtobufCAllocator al = spbus_arena_allocator(req->arena);
    Sp__V1__Request *r =
        sp__v1__request__unpack(&al, (size_t)dlen, (const uint8_t *)natsMsg_GetData(req->msg));
    if (r == NULL || r->ctx == NULL) {
        spbus_reply_error(req, SP_ERR_BAD_REQUEST, "malformed request envelope", NULL);
        return false;
    }
    req->ctx = r->ctx;
    req->deadline_us = deadline_of(r->ctx, req->recv_us);
    if (req->route == NULL) {
        spbus_reply_error(req, SP_ERR_NOT_FOUND, "unknown method", NULL);
        return false;
    }
    if (req->deadline_us != INT64_MAX && sp_monotonic_us() >= req->deadline_us) {
        drop_expired(req, subject);
        return false;
    }
    size_t plen = r->has_payload ? r->payload.len : 0;
    req->input =
        protobuf_c_message_unpack(req->route->in_desc, &al, plen, plen ? r->payload.data : NULL);
    if (req->input == NULL) {
        spbus_reply_error(req, SP_ERR_BAD_REQUEST, "malformed request payload", NULL);
        return false;
    }
    return true;
}

/* Replies 's' (or internal) for a handler that did not reply, logs, frees the request. */
static void finish_request(spbus_req *req, sp_status s, int64_t t0)
{
    if (!req->replied) {
        if (s == SP_OK) {
            sp_log_error(spbus_req_id(req), "bus_handler_did_not_reply", "method",
                         req->route != NULL ? req->route->method : "");
            s = SP_ERR_INTERNAL;
        }
        spbus_reply_error(req, s, s == SP_ERR_INTERNAL ? "internal error" : sp_error_code(s), NULL);
    }
    char us[24];
    snprintf(us, sizeof(us), "%lld", (long long)(sp_monotonic_us() - t0));
    sp_log_debug(spbus_req_id(req), "bus_request_served", "method",
                 method_of(natsMsg_GetSubject(req->msg)), "us", us);
    sp_arena_destroy(req->arena);
    msg_release(req->msg);
}

/* Serves the messages a worker took together: each alone through its route's handler, or
 * with the others of the same method through the route's batch handler. */
static void serve_msgs(worker *w, const queued_msg *msgs, size_t n)
{
    int64_t t0 = sp_monotonic_us();
    spbus_req reqs[SPBUS_MAX_BATCH];
    spbus_req *batch[SPBUS_MAX_BATCH];
    bool ready[SPBUS_MAX_BATCH];

    for (size_t i = 0; i < n; i++) {
        reqs[i] = (spbus_req){.svc = w->svc,
                              .nc = w->svc->nc,
                              .msg = msgs[i].msg,
                              .recv_us = msgs[i].recv_us,
                              .deadline_us = INT64_MAX,
                              .worker = w->index};
        reqs[i].arena = sp_arena_create(4096);
        ready[i] = false;
        if (reqs[i].arena == NULL) {
            msg_release(msgs[i].msg);
            continue;
        }
        ready[i] = prepare_request(&reqs[i]);
        if (!ready[i]) finish_request(&reqs[i], SP_OK, t0);
    }
    /* requests of batch routes: one call per route */
    for (size_t i = 0; i < n; i++) {
        if (!ready[i] || reqs[i].route->batch == NULL) continue;
        const spbus_route *route = reqs[i].route;
        size_t nb = 0;
        for (size_t j = i; j < n; j++)
            if (ready[j] && reqs[j].route == route) {
                batch[nb++] = &reqs[j];
                ready[j] = false;
            }
        route->batch(batch, nb);
        for (size_t j = 0; j < nb; j++)
            finish_request(batch[j], SP_OK, t0);
    }
    /* then, in the order they came, the others (a request of another method taken along) */
    for (size_t i = 0; i < n; i++)
        if (ready[i]) {
            tl_serving = &reqs[i];
            sp_status s = reqs[i].route->fn(&reqs[i]);
            tl_serving = NULL;
            finish_request(&reqs[i], s, t0);
        }
}

/* The subscription's callback (one cnats thread per subscription): stamps each request
 * with the time it arrived, where its budget starts, and queues it for the workers. The
 * stamp is why the workers do not pull from a synchronous subscription themselves: a
 * request that waited there while every worker was busy would look fresh when taken. */
/* Wakes an idle worker for what is queued, unless one is already on its way. */
static void wake_worker_locked(spbus_service *s)
{
    if (s->qlen == 0 || s->nidle <= s->nwaking || s->nwaking > 0) return;
    s->nwaking++;
    pthread_cond_signal(&s->qcv);
}

static void on_service_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    spbus_service *s = closure;
    int64_t now = sp_monotonic_us();
    size_t len = (size_t)(natsMsg_GetDataLength(msg) > 0 ? natsMsg_GetDataLength(msg) : 0);
    pthread_mutex_lock(&s->qmu);
    if (s->stop || s->qlen >= SPBUS_QUEUE_MAX_MSGS || s->qbytes + len > SPBUS_QUEUE_MAX_BYTES) {
        bool say = !s->stop && !s->qfull; /* once until it has room again */
        if (!s->stop) s->qfull = true;
        pthread_mutex_unlock(&s->qmu);
        if (say) sp_log_warn(NULL, "bus_queue_full", "api", s->api);
        natsMsg_Destroy(msg);
        return;
    }
    if (s->qlen == s->qcap) { /* grow the ring, keeping the order */
        size_t cap = s->qcap ? s->qcap * 2 : 64;
        queued_msg *q = malloc(cap * sizeof(*q));
        if (q == NULL) {
            pthread_mutex_unlock(&s->qmu);
            sp_log_error(NULL, "bus_queue_oom", "api", s->api);
            natsMsg_Destroy(msg);
            return;
        }
        for (size_t i = 0; i < s->qlen; i++)
            q[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = q;
        s->qcap = cap;
        s->qhead = 0;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = (queued_msg){.msg = msg, .recv_us = now};
    s->qlen++;
    s->qbytes += len;
    wake_worker_locked(s);
    pthread_mutex_unlock(&s->qmu);
}

/* cnats calls it once the subscription is closed and its last on_service_msg returned. */
static void on_service_done(void *closure)
{
    spbus_service *s = closure;
    pthread_mutex_lock(&s->qmu);
    s->sub_done = true;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
}

/* Waits until on_service_done ran, at most until 'until_us' (monotonic). */
static bool wait_sub_done(spbus_service *s, int64_t until_us)
{
    if (s->sub == NULL || !s->sub_watched) return true;
    pthread_mutex_lock(&s->qmu);
    int rc = 0;
    while (!s->sub_done && rc == 0) {
        struct timespec ts = {.tv_sec = (time_t)(until_us / 1000000),
                              .tv_nsec = (long)(until_us % 1000000) * 1000};
        rc = pthread_cond_timedwait(&s->qcv, &s->qmu, &ts);
        /* a signal meant for a worker may have woken this thread: pass it on */
        if (s->nwaking > 0) {
            s->nwaking--;
            wake_worker_locked(s);
        }
    }
    bool done = s->sub_done;
    pthread_mutex_unlock(&s->qmu);
    return done;
}

/* The oldest queued request; the queue is not empty. */
static queued_msg queue_pop_locked(spbus_service *s)
{
    queued_msg m = s->q[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    int len = natsMsg_GetDataLength(m.msg);
    s->qbytes -= len > 0 ? (size_t)len : 0;
    if (s->qlen < SPBUS_QUEUE_MAX_MSGS / 2 && s->qbytes < SPBUS_QUEUE_MAX_BYTES / 2)
        s->qfull = false;
    return m;
}

/* Ends the workers: once the queue is empty, or at once (abandon: what is queued stays for
 * free_service to drop). */
static void stop_workers(spbus_service *s, bool abandon)
{
    if (!s->qinit) return;
    pthread_mutex_lock(&s->qmu);
    s->stop = true;
    if (abandon) s->abandon = true;
    pthread_cond_broadcast(&s->qcv);
    pthread_mutex_unlock(&s->qmu);
}

/* A worker thread: takes the next request from the service's one queue. All the workers
 * take from one queue, so a request waits only when every worker is busy (with one
 * subscription per worker the server would pick a busy one at random). A request of a
 * batch route takes with it the requests of the same method queued behind it (never
 * waiting for more), so that one query answers them all. Ends on stop_workers. */
static void *worker_main(void *arg)
{
    worker *w = arg;
    spbus_service *s = w->svc;
    queued_msg msgs[SPBUS_MAX_BATCH];
    for (;;) {
        pthread_mutex_lock(&s->qmu);
        while (s->qlen == 0 && !s->stop) {
            s->nidle++;
            pthread_cond_wait(&s->qcv, &s->qmu);
            s->nidle--;
            if (s->nwaking > 0) s->nwaking--;
        }
        if (s->abandon || s->qlen == 0) {
            pthread_mutex_unlock(&s->qmu);
            break;
        }
        size_t n = 0;
        msgs[n++] = queue_pop_locked(s);
        const spbus_route *r = route_of(s, natsMsg_GetSubject(msgs[0].msg));
        while (r != NULL && r->batch != NULL && n < SPBUS_MAX_BATCH && s->qlen > 0) {
            msgs[n++] = queue_pop_locked(s);
            if (route_of(s, natsMsg_GetSubject(msgs[n - 1].msg)) != r) break; /* served alone */
        }
        wake_worker_locked(s); /* more than this worker takes: another one for the rest */
        pthread_mutex_unlock(&s->qmu);
        serve_msgs(w, msgs, n);
    }
    return NULL;
}

/* Waits for the worker threads to end, at most until 'until_us' (monotonic). Returns false when one
 * is still running (a stuck handler). */
static bool join_workers(spbus_service *s, int64_t until_us)
{
    bool all = true;
    for (int i = 0; i < s->workers; i++) {
        worker *w = &s->w[i];
        if (!w->started || w->joined) continue;
        /* pthread_timedjoin_np measures against CLOCK_REALTIME. */
        int64_t left = until_us - sp_monotonic_us();
        if (left < 0) left = 0;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t ns = (int64_t)ts.tv_nsec + (left % 1000000) * 1000;
        ts.tv_sec += (time_t)(left / 1000000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        if (pthread_timedjoin_np(w->thread, NULL, &ts) == 0)
            w->joined = true;
        else
            all = false;
    }
    return all;
}

static void free_service(spbus_service *s)
{
    if (s->routes != NULL)
        for (size_t i = 0; i < s->nroutes; i++)
            free((char *)s->routes[i].method);
    if (s->labels != NULL)
        for (size_t i = 0; i < s->nroutes; i++)
            free(s->labels[i]);
    free(s->labels);
    if (s->qinit) {
        while (s->qlen > 0)
            natsMsg_Destroy(queue_pop_locked(s).msg);
        free(s->q);
        pthread_cond_destroy(&s->qcv);
        pthread_mutex_destroy(&s->qmu);
    }
    free(s->routes);
    free(s->w);
    free(s->api);
    free(s);
}

/* Stops the workers (after the handler each one runs), closes the subscription, frees.
 * A handler stuck for SPBUS_STOP_WAIT_MS makes it leak the service rather than free what
 * that handler still uses. */
static void stop_service(spbus_service *s)
{
    int64_t until = sp_monotonic_us() + (int64_t)SPBUS_STOP_WAIT_MS * 1000;
    if (s->sub != NULL) (void)natsSubscription_Unsubscribe(s->sub);
    stop_workers(s, true);
    /* A callback may still run after Unsubscribe: free nothing it uses before it is done. */
    if (!wait_sub_done(s, until) || !join_workers(s, until)) {
        sp_log_error(NULL, "bus_handler_stuck", "api", s->api);
        return;
    }
    natsSubscription_Destroy(s->sub);
    free_service(s);
}

sp_status spbus_serve(spbus_service **out, spbus *b, const char *api, const char *queue,
                      const spbus_route *routes, size_t nroutes, int workers, void *user)
{
    if (out == NULL) return SP_ERR_INTERNAL;
    *out = NULL;
    if (b == NULL || api == NULL || api[0] == '\0' || strpbrk(api, ".*> ") != NULL ||
        strlen(api) > 64 || queue == NULL || queue[0] == '\0' || (routes == NULL && nroutes > 0) ||
        workers < 1 || workers > SPBUS_MAX_WORKERS)
        return SP_ERR_INTERNAL;

    pthread_once(&g_metrics_once, register_metrics);
    spbus_service *s = calloc(1, sizeof(*s));
    if (s == NULL) return SP_ERR_INTERNAL;
    pthread_mutex_init(&s->qmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* wait_sub_done counts in sp_monotonic_us */
    pthread_cond_init(&s->qcv, &ca);
    pthread_condattr_destroy(&ca);
    s->qinit = true;
    s->bus = b;
    s->user = user;
    s->api = strdup(api);
    s->routes = calloc(nroutes ? nroutes : 1, sizeof(*s->routes));
    s->labels = calloc(nroutes ? nroutes : 1, sizeof(char *));
    s->w = calloc((size_t)workers, sizeof(*s->w));
    if (s->api == NULL || s->routes == NULL || s->labels == NULL || s->w == NULL) {
        free_service(s);
        return SP_ERR_INTERNAL;
    }
    for (size_t i = 0; i < nroutes; i++) {
        s->routes[i] = routes[i];
        s->routes[i].method = strdup(routes[i].method ? routes[i].method : "");
        s->nroutes = i + 1;
        /* method names come from our own tables: no quote or backslash to escape */
        if (s->routes[i].method == NULL || (routes[i].fn == NULL) == (routes[i].batch == NULL) ||
            (routes[i].in_desc == NULL && routes[i].fn == NULL) ||
            strpbrk(s->routes[i].method, "\\\"\n. *>") != NULL ||
            asprintf(&s->labels[i], "subject=\"sp.%s.v1.%s\"", api, s->routes[i].method) < 0) {
            s->labels[i] = NULL;
            free_service(s);
            return SP_ERR_INTERNAL;
        }
    }
    s->workers = workers;

    char subject[128];
    snprintf(subject, sizeof(subject), "sp.%s.v1.*", api);
    /* Services take turns over the connections; a bus that serves one api uses the first. */
    pthread_mutex_lock(&b->mu);
    int nth = 0;
    for (spbus_service *o = b->services; o != NULL; o = o->next)
        nth++;
    pthread_mutex_unlock(&b->mu);
    s->nc = b->conns[nth % b->nconns];
    natsStatus ns =
        natsConnection_QueueSubscribe(&s->sub, s->nc, subject, queue, on_service_msg, s);
    if (ns == NATS_OK) ns = natsSubscription_SetOnCompleteCB(s->sub, on_service_done, s);
    if (ns == NATS_OK) s->sub_watched = true;
    /* Flow control is ours: the budgets drop what waited too long, not a pending cap (the
     * callback empties cnats' queue at once; SPBUS_QUEUE_MAX_* bound ours). */
    if (ns == NATS_OK) ns = natsSubscription_SetPendingLimits(s->sub, 65536, 256 * 1024 * 1024);
    if (ns != NATS_OK) {
        sp_log_error(NULL, "bus_subscribe_failed", "subject", subject, "error",
                     natsStatus_GetText(ns));
        stop_service(s);
        return map_nats(ns);
    }
    for (int i = 0; i < workers; i++) {
        s->w[i].svc = s;
        s->w[i].index = i;
        if (pthread_create(&s->w[i].thread, NULL, worker_main, &s->w[i]) != 0) {
            sp_log_error(NULL, "bus_thread_failed", "subject", subject);
            stop_service(s);
            return SP_ERR_INTERNAL;
        }
        s->w[i].started = true;
    }
    pthread_mutex_lock(&b->mu);
    s->next = b->services;
    b->services = s;
    pthread_mutex_unlock(&b->mu);
    if (natsConnection_Status(s->nc) == NATS_CONN_STATUS_CONNECTED)
        natsConnection_FlushTimeout(s->nc, 2000); /* subscribed on the server before we return */
    sp_log_info(NULL, "bus_serving", "subject", subject, "queue", queue);
    *out = s;
    return SP_OK;
}

void spbus_service_destroy(spbus_service *s)
{
    if (s == NULL) return;
    spbus *b = s->bus;
    pthread_mutex_lock(&b->mu);
    for (spbus_service **p = &b->services; *p != NULL; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    pthread_mutex_unlock(&b->mu);
    stop_service(s);
}

/* ---- JetStream durable pull consumer ---------------------------------------------------- */

#define SPBUS_CONSUMER_MAX_BATCH 256
#define SPBUS_CONSUMER_RETRY_MS 1000
/* Idle this long (or after a reconnect), the thread checks that its consumer still exists
 * (a server that lost its state, an operator who deleted it): pulls on a missing consumer
 * only time out. */
#define SPBUS_CONSUMER_CHECK_MS 5000

static bool consumer_stopping(spbus_consumer *c)
{
    pthread_mutex_lock(&c->mu);
    bool stop = c->stop;
    pthread_mutex_unlock(&c->mu);
    return stop;
}

/* Sleeps 'ms' or until stopped; true when stopped. */
static bool consumer_pause(spbus_consumer *c, int ms)
{
    int64_t until = sp_monotonic_us() + (int64_t)ms * 1000;
    struct timespec ts = {.tv_sec = (time_t)(until / 1000000),
                          .tv_nsec = (long)(until % 1000000) * 1000};
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (!c->stop && rc == 0)
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    bool stop = c->stop;
    pthread_mutex_unlock(&c->mu);
    return stop;
}

/* The subscription goes (the consumer on the server stays: it was bound, not created, by
 * js_PullSubscribe, so cnats does not delete it). */
static void consumer_unbind(spbus_consumer *c)
{
    atomic_store(&c->bound, false);
    pthread_mutex_lock(&c->mu);
    natsSubscription *sub = c->sub;
    c->sub = NULL;
    pthread_mutex_unlock(&c->mu);
    natsSubscription_Destroy(sub);
    c->nc = NULL;
}

/* Creates or updates the durable consumer (a durable create with the same name updates its
 * settings), then binds a pull subscription to it. *why: what failed, for the log. */
static natsStatus consumer_bind(spbus_consumer *c, const char **why, jsErrCode *jerr)
{
    *why = "no connection";
    *jerr = 0;
    natsConnection *nc = pick_conn(c->bus);
    if (nc == NULL) return NATS_NOT_YET_CONNECTED;
    jsCtx *js = NULL;
    jsConsumerInfo *ci = NULL;
    natsSubscription *sub = NULL;
    jsConsumerConfig cfg;
    jsConsumerConfig_Init(&cfg);
    cfg.Durable = c->durable;
    cfg.AckPolicy = js_AckExplicit;
    cfg.DeliverPolicy = js_DeliverAll;
    cfg.AckWait = (int64_t)c->ack_wait_ms * 1000000;
    cfg.MaxAckPending = c->max_ack_pending;
    cfg.MaxDeliver = c->max_deliver;
    cfg.FilterSubject = c->filter;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000; /* bounds how long a stop waits for a bind in progress */

    *why = "jetstream context";
    natsStatus ns = natsConnection_JetStream(&js, nc, &jo);
    if (ns == NATS_OK) {
        *why = "creating the consumer";
        ns = js_AddConsumer(&ci, js, c->stream, &cfg, NULL, jerr);
        /* The server refused the settings of a consumer that exists (one it cannot update,
         * such as another filter): bind to it as it is, and say so. */
        if (ns != NATS_OK && *jerr != 0 && *jerr != JSStreamNotFoundErr) {
            char code[16];
            snprintf(code, sizeof(code), "%d", (int)*jerr);
            sp_log_warn(NULL, "js_consumer_settings_kept", "stream", c->stream, "durable",
                        c->durable, "jsErrCode", code, "error", nats_GetLastError(NULL));
            ns = NATS_OK;
        }
    }
    if (ns == NATS_OK) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = c->stream;
        so.Consumer = c->durable; /* bind: cnats neither creates nor, later, deletes it */
        so.ManualAck = true;
        *why = "binding the consumer";
        ns = js_PullSubscribe(&sub, js, c->filter, c->durable, NULL, &so, jerr);
    }
    jsConsumerInfo_Destroy(ci);
    jsCtx_Destroy(js);
    if (ns != NATS_OK) return ns;
    pthread_mutex_lock(&c->mu);
    bool stop = c->stop;
    if (!stop) c->sub = sub;
    pthread_mutex_unlock(&c->mu);
    if (stop) {
        natsSubscription_Destroy(sub);
        return NATS_CONNECTION_CLOSED;
    }
    c->nc = nc;
    atomic_store(&c->bound, true);
    return NATS_OK;
}

/* Whether the bound consumer still exists; a failed lookup for any other reason (no
 * connection, timeout) counts as existing: the fetches tell. */
static bool consumer_exists(spbus_consumer *c)
{
    jsCtx *js = NULL;
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus ns = natsConnection_JetStream(&js, c->nc, NULL);
    if (ns == NATS_OK) ns = js_GetConsumerInfo(&ci, js, c->stream, c->durable, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    jsCtx_Destroy(js);
    return !(ns == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr);
}

/* Hands one fetched batch to fn, then acks what it marked and waits (one round trip) until
 * the server has the acks, so that an ack is not left in a buffer when the process stops. */
static void consumer_deliver(spbus_consumer *c, natsMsgList *list)
{
    spbus_js_msg m[SPBUS_CONSUMER_MAX_BATCH];
    size_t n = 0;
    for (int i = 0; i < list->Count && n < SPBUS_CONSUMER_MAX_BATCH; i++) {
        natsMsg *msg = list->Msgs[i];
        jsMsgMetaData *meta = NULL;
        const char *id = NULL;
        int len = natsMsg_GetDataLength(msg);
        m[n] = (spbus_js_msg){.subject = natsMsg_GetSubject(msg),
                              .data = natsMsg_GetData(msg),
                              .len = len > 0 ? (size_t)len : 0};
        if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK) m[n].msg_id = id;
        if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
            m[n].delivered = meta->NumDelivered;
            m[n].stream_seq = meta->Sequence.Stream;
            jsMsgMetaData_Destroy(meta);
        }
        n++;
    }
    c->fn(c->user, m, n);
    int acked = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!m[i].ack) continue;
        if (natsMsg_Ack(list->Msgs[i], NULL) == NATS_OK)
            acked++;
        else
            failed++;
    }
    if (acked > 0 && natsConnection_FlushTimeout(c->nc, 2000) != NATS_OK) failed += acked;
    if (failed > 0) {
        char nf[16];
        snprintf(nf, sizeof(nf), "%d", failed);
        /* redelivered after AckWait: the handler is idempotent */
        sp_log_warn(NULL, "js_ack_failed", "stream", c->stream, "durable", c->durable, "count", nf);
    }
}

/* natsSubscription_Fetch of cnats 3.4 overflows its array when the subscription already
 * holds more than half a batch of messages (the leftovers of an earlier pull request: it
 * then waits for "batch - held" messages while counting from "held"). Those are taken one
 * by one instead (a fetch of 1 takes a held message without asking the server), then a
 * fetch asks for a batch with nothing held. */
static natsStatus fetch_batch(natsMsgList *list, spbus_consumer *c, jsErrCode *jerr)
{
    int held = 0;
    memset(list, 0, sizeof(*list));
    if (natsSubscription_GetPending(c->sub, &held, NULL) != NATS_OK || held <= 0) {
        /* What the stream has now, up to a batch, without waiting; with nothing there, the
         * first message to come, at once (a fetch of a whole batch would wait until the
         * batch is full or fetch_wait_ms passed: the latency of every lone event). The
         * next call takes what came meanwhile. */
        jsFetchRequest r;
        jsFetchRequest_Init(&r);
        r.Batch = c->batch;
        r.NoWait = true;
        r.Expires = (int64_t)c->fetch_wait_ms * 1000000; /* bounds the wait for the answer */
        natsStatus ns = natsSubscription_FetchRequest(list, c->sub, &r);
        if (ns == NATS_OK || (ns != NATS_NOT_FOUND && ns != NATS_TIMEOUT)) return ns;
        return natsSubscription_Fetch(list, c->sub, 1, c->fetch_wait_ms, jerr);
    }
    int want = held < c->batch ? held : c->batch;
    natsMsg **msgs = calloc((size_t)want, sizeof(natsMsg *));
    if (msgs == NULL) return NATS_NO_MEMORY;
    int n = 0;
    natsStatus ns = NATS_OK;
    while (n < want) {
        natsMsgList one = {0};
        ns = natsSubscription_Fetch(&one, c->sub, 1, n == 0 ? c->fetch_wait_ms : 1, jerr);
        if (ns != NATS_OK) break;
        for (int i = 0; i < one.Count && n < want; i++) {
            msgs[n++] = one.Msgs[i];
            one.Msgs[i] = NULL;
        }
        natsMsgList_Destroy(&one); /* the array, and any message past 'want' */
    }
    if (n == 0) {
        free(msgs);
        return ns != NATS_OK ? ns : NATS_TIMEOUT;
    }
    list->Msgs = msgs; /* natsMsgList_Destroy frees it with free(), as cnats allocates */
    list->Count = n;
    return NATS_OK;
}

static void *consumer_main(void *arg)
{
    spbus_consumer *c = arg;
    bool said_waiting = false;
    uint64_t disconnects = 0;
    int64_t last_check = 0;
    while (!consumer_stopping(c)) {
        if (c->sub == NULL) {
            const char *why = NULL;
            jsErrCode jerr = 0;
            disconnects = spbus_disconnects(c->bus);
            natsStatus ns = consumer_bind(c, &why, &jerr);
            if (ns != NATS_OK) {
                if (!said_waiting) { /* once per outage, not once per second */
                    char code[16];
                    snprintf(code, sizeof(code), "%d", (int)jerr);
                    sp_log_warn(NULL, "js_consumer_waiting", "stream", c->stream, "durable",
                                c->durable, "step", why, "error", natsStatus_GetText(ns),
                                "jsErrCode", code, "detail", nats_GetLastError(NULL));
                    said_waiting = true;
                }
                consumer_pause(c, SPBUS_CONSUMER_RETRY_MS);
                continue;
            }
            said_waiting = false;
            last_check = sp_monotonic_us();
            sp_log_info(NULL, "js_consumer_bound", "stream", c->stream, "durable", c->durable);
        }
        natsMsgList list = {0};
        jsErrCode jerr = 0;
        natsStatus ns = fetch_batch(&list, c, &jerr);
        atomic_store(&c->caught_up, ns == NATS_TIMEOUT || (ns == NATS_OK && list.Count < c->batch));
        if (ns == NATS_OK) {
            consumer_deliver(c, &list);
            natsMsgList_Destroy(&list);
            last_check = sp_monotonic_us();
            continue;
        }
        if (consumer_stopping(c)) break;
        if (ns == NATS_TIMEOUT || ns == NATS_NOT_FOUND) {
            /* idle: after a reconnect or a while, make sure the consumer is still there */
            uint64_t d = spbus_disconnects(c->bus);
            if (d == disconnects &&
                sp_monotonic_us() - last_check < (int64_t)SPBUS_CONSUMER_CHECK_MS * 1000)
                continue;
            if (!spbus_connected(c->bus)) continue;
            disconnects = d;
            last_check = sp_monotonic_us();
            if (consumer_exists(c)) continue;
            sp_log_warn(NULL, "js_consumer_lost", "stream", c->stream, "durable", c->durable);
        } else {
            sp_log_warn(NULL, "js_fetch_failed", "stream", c->stream, "durable", c->durable,
                        "error", natsStatus_GetText(ns), "detail", nats_GetLastError(NULL));
        }
        consumer_unbind(c);
        consumer_pause(c, SPBUS_CONSUMER_RETRY_MS / 4);
    }
    consumer_unbind(c);
    return NULL;
}

static void free_consumer(spbus_consumer *c)
{
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    free(c->stream);
    free(c->durable);
    free(c->filter);
    free(c);
}

/* Stops the thread (after the fn it runs and its acks): a fetch in progress is woken by
 * unsubscribing. False when it did not end within SPBUS_STOP_WAIT_MS. */
static bool consumer_stop(spbus_consumer *c)
{
    if (!c->started || c->joined) return true;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    if (c->sub != NULL) (void)natsSubscription_Unsubscribe(c->sub);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    int64_t left = (int64_t)SPBUS_STOP_WAIT_MS * 1000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts); /* pthread_timedjoin_np measures against it */
    int64_t nsec = (int64_t)ts.tv_nsec + (left % 1000000) * 1000;
    ts.tv_sec += (time_t)(left / 1000000 + nsec / 1000000000);
    ts.tv_nsec = (long)(nsec % 1000000000);
    if (pthread_timedjoin_np(c->thread, NULL, &ts) != 0) {
        sp_log_error(NULL, "js_consumer_stuck", "stream", c->stream, "durable", c->durable);
        return false;
    }
    c->joined = true;
    return true;
}

static bool valid_js_name(const char *s)
{
    return s != NULL && s[0] != '\0' && strlen(s) <= 64 && strpbrk(s, ".*> \t\r\n") == NULL;
}

sp_status spbus_consume(spbus_consumer **out, spbus *b, const spbus_consumer_opts *o,
                        spbus_consume_fn fn, void *user)
{
    if (out == NULL) return SP_ERR_INTERNAL;
    *out = NULL;
    if (b == NULL || b->nconns < 1 || fn == NULL) return SP_ERR_INTERNAL;
    if (o == NULL || !valid_js_name(o->stream) || !valid_js_name(o->durable) ||
        (o->filter_subject != NULL &&
         (o->filter_subject[0] == '\0' || strpbrk(o->filter_subject, " \t\r\n") != NULL)) ||
        o->batch < 1 || o->batch > SPBUS_CONSUMER_MAX_BATCH || o->ack_wait_ms < 0 ||
        o->max_ack_pending < 0 || o->max_deliver < -1 || o->fetch_wait_ms < 0 ||
        (o->fetch_wait_ms > 0 && (o->fetch_wait_ms < 10 || o->fetch_wait_ms > 30000)))
        return SP_ERR_VALIDATION_FAILED;

    spbus_consumer *c = calloc(1, sizeof(*c));
    if (c == NULL) return SP_ERR_INTERNAL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&c->bound, false);
    c->bus = b;
    c->fn = fn;
    c->user = user;
    c->stream = strdup(o->stream);
    c->durable = strdup(o->durable);
    c->filter = o->filter_subject != NULL ? strdup(o->filter_subject) : NULL;
    c->batch = o->batch;
    c->ack_wait_ms = o->ack_wait_ms > 0 ? o->ack_wait_ms : 30000;
    c->max_ack_pending = o->max_ack_pending;
    c->max_deliver = o->max_deliver > 0 ? o->max_deliver : -1;
    c->fetch_wait_ms = o->fetch_wait_ms > 0 ? o->fetch_wait_ms : 1000;
    if (c->stream == NULL || c->durable == NULL ||
        (o->filter_subject != NULL && c->filter == NULL)) {
        free_consumer(c);
        return SP_ERR_INTERNAL;
    }
    if (pthread_create(&c->thread, NULL, consumer_main, c) != 0) {
        free_consumer(c);
        return SP_ERR_INTERNAL;
    }
    c->started = true;
    pthread_mutex_lock(&b->mu);
    c->next = b->consumers;
    b->consumers = c;
    pthread_mutex_unlock(&b->mu);
    *out = c;
    return SP_OK;
}

bool spbus_consumer_caught_up(const spbus_consumer *c)
{
    return c != NULL && atomic_load(&c->bound) && atomic_load(&c->caught_up);
}

bool spbus_consumer_ready(const spbus_consumer *c)
{
    if (c == NULL) return false;
    spbus_consumer *m = (spbus_consumer *)c;
    return atomic_load(&m->bound) && spbus_connected(c->bus);
}

void spbus_consumer_destroy(spbus_consumer *c)
{
    if (c == NULL) return;
    spbus *b = c->bus;
    pthread_mutex_lock(&b->mu);
    for (spbus_consumer **p = &b->consumers; *p != NULL; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            break;
        }
    pthread_mutex_unlock(&b->mu);
    if (!consumer_stop(c)) return; /* leak rather than free what a stuck fn uses */
    free_consumer(c);
}
