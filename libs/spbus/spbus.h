/* spbus.h -- the bus over cnats, for every process: request/reply carrying the envelope
 * (sp.v1.Request / sp.v1.Reply) with a time budget, queue-group serving with handlers
 * registered from a table (one by one or in batches), core subscriptions, JetStream
 * publish with ack and durable pull consumers, unlimited reconnects, private reply prefix
 * _SP_INBOX.
 * Prefix: spbus_.
 *
 * Threads:
 * - spbus_connect / spbus_drain / spbus_destroy: once each, from one thread, after every
 *   other call on that bus returned (spbus_drain stops the consumers and services, and
 *   spbus_destroy destroys those still registered).
 * - From any thread, at once: spbus_request, spbus_publish, spbus_js_publish,
 *   spbus_connected, spbus_disconnects, spbus_subscribe, spbus_serve, spbus_consume,
 *   spbus_consumer_ready, spbus_consumer_caught_up.
 * - spbus_on_revoked: once, before the first request.
 * - spbus_service_destroy / spbus_consumer_destroy: once per object, from any thread but
 *   never from one of its own handlers (they wait for the running handlers).
 * - spbus_req_* and spbus_reply*: only inside the handler that got 'req', on its thread (a
 *   batch handler may touch each of its reqs, from its own thread only). The request and
 *   everything in its arena die when the handler returns.
 * - spbus_js_msg: only inside the spbus_consume_fn it was handed to.
 * - spbus_js_batch: one thread at a time (each its own).
 * - Handlers of one service run on its worker threads, several at once; the messages of
 *   one spbus_subscribe or one consumer are handled one at a time, on that subscription's
 *   or consumer's own thread. */
#ifndef SPBUS_H
#define SPBUS_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "sp/v1/envelope.pb-c.h"
#include "spcore.h"

typedef struct spbus spbus;
typedef struct spbus_req spbus_req;

typedef struct {
    const char *url;      /* "nats://127.0.0.1:4222"; several comma-separated allowed */
    const char *user;     /* NULL or "" for none */
    const char *password;
    const char *name;     /* connection name shown by the server: the process name */
    int connections;      /* client side: requests spread over this many connections (>=1) */
} spbus_opts;

/* Connects with buffered sends (cnats' flusher thread writes what several threads
 * published in one system call: measured 1.2x the req/s of SendAsap under load,
 * bench/results), unlimited reconnects (every 250 ms..2 s), the custom inbox
 * prefix "_SP_INBOX", and keeps trying in the background if the server is not up yet
 * (natsOptions_SetRetryOnFailedConnect): returns SP_OK even when the first attempt fails,
 * so a process can start before NATS. */
sp_status spbus_connect(spbus **out, const spbus_opts *opts);
/* Drains the subscriptions (waiting for running handlers, at most timeout_ms), closes. */
void spbus_drain(spbus *b, int timeout_ms);
void spbus_destroy(spbus *b);
bool spbus_connected(const spbus *b);
/* How many times a connection of 'b' was lost so far: a core subscriber that keeps state
 * compares it to know that it may have missed messages and must reload. */
uint64_t spbus_disconnects(const spbus *b);

/* Core subscription: 'fn' runs on the subscription's own thread for every message on
 * 'subject' (wildcards allowed), with the payload; cnats renews it after a reconnect
 * (messages sent meanwhile are lost: see spbus_disconnects). Lives until spbus_drain or
 * spbus_destroy. */
typedef void (*spbus_msg_fn)(void *user, const char *subject, const void *data, size_t len);
sp_status spbus_subscribe(spbus *b, const char *subject, spbus_msg_fn fn, void *user);

/* ---- client side ------------------------------------------------------------------------ */

/* Sends 'in' to 'subject' inside an sp.v1.Request with 'ctx' and waits at most its budget.
 * The budget travels as ctx.timeout_us (a remaining time, not a wall-clock instant, so
 * that skewed clocks between hosts drop nothing); it is the least of timeout_ms, the
 * ctx.timeout_us the caller set (if any) and, when called from inside a handler, what is
 * left of the request being served (spbus_req_remaining_us), so a chain of calls never
 * outlives the first caller's budget. A budget already spent: SP_ERR_UNAVAILABLE at once,
 * nothing sent.
 * On a result: *out = the reply message unpacked with reply_desc, in 'arena' (freed with
 * it), returns SP_OK. On an error reply: *err = the sp.v1.Error (in 'arena'), returns the
 * status of its code. No answer in time or no connection: SP_ERR_UNAVAILABLE. */
sp_status spbus_request(ProtobufCMessage **out, Sp__V1__Error **err, spbus *b,
                        const char *subject, const Sp__V1__RequestContext *ctx,
                        const ProtobufCMessage *in,
                        const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
                        sp_arena *arena);

/* Called by spbus_request, before it returns, with each session id that the reply says its
 * call revoked (sp.v1.Reply.revoked_sessions). Set once, before the first request.
 * Independently of it, a request made from a handler (one-at-a-time routes) adds those ids
 * to the reply of the request being handled, so that they reach the gateway that started
 * the chain. */
typedef void (*spbus_revoked_fn)(void *user, const char *session_id);
void spbus_on_revoked(spbus *b, spbus_revoked_fn fn, void *user);

/* The headers that carry a raw request's context (below): set by spbus_request_raw from
 * ctx, read back by the serving side. Only for logs and the budget: a device that sends
 * them chooses nothing else. */
#define SPBUS_H_REQUEST_ID "Sp-Request-Id"
#define SPBUS_H_CLIENT_IP "Sp-Client-Ip"
#define SPBUS_H_TIMEOUT_US "Sp-Timeout-Us"

/* A request to a raw route (spbus_route with in_desc NULL): 'data' as the message payload,
 * without an envelope, with 'headers' (name, value pairs ending with NULL; may be NULL)
 * and the context's request id, ip and budget as the SPBUS_H_* headers. The reply is an
 * sp.v1.Reply as for spbus_request, and so is everything else. */
sp_status spbus_request_raw(ProtobufCMessage **out, Sp__V1__Error **err, spbus *b,
                            const char *subject, const Sp__V1__RequestContext *ctx,
                            const char *const *headers, const void *data, size_t len,
                            const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
                            sp_arena *arena);

/* Core publish of a raw payload (change notifications). */
sp_status spbus_publish(spbus *b, const char *subject, const void *data, size_t len);

/* JetStream publish with ack: sends 'data' to 'subject' with the header Nats-Msg-Id =
 * 'msg_id' (NULL or "": none; the stream drops a repeat within its dedup window) and
 * waits at most timeout_ms for the stream's ack. SP_OK once acked (a duplicate counts as
 * acked); SP_ERR_UNAVAILABLE when no stream took it in time (no connection, no stream on
 * that subject, timeout, stream full); the caller keeps the data and retries. */
sp_status spbus_js_publish(spbus *b, const char *subject, const void *data, size_t len,
                           const char *msg_id, int timeout_ms);

/* Whether JetStream has stream 'stream' (asks the server, at most 2 s): for /readyz. The
 * NATS user needs publish on $JS.API.STREAM.INFO.<stream>. */
bool spbus_stream_exists(spbus *b, const char *stream);

/* A batch of JetStream publishes acknowledged together (ingest: the 202 of a camera's
 * batch leaves only once each of its events is in the stream). One per thread: a batch
 * owns its JetStream context while it publishes. Created on connection index % the bus's
 * connections. At most SPBUS_JS_MAX_PENDING unacked at once (a bigger batch waits for
 * room). */
#define SPBUS_JS_MAX_PENDING 4096
typedef struct spbus_js_batch spbus_js_batch;
typedef struct {
    const char *subject;
    const void *data;
    size_t len;
    const char *msg_id; /* Nats-Msg-Id, or NULL */
} spbus_js_msg_out;
sp_status spbus_js_batch_create(spbus_js_batch **out, spbus *b, int index);
void spbus_js_batch_destroy(spbus_js_batch *jb);
/* Publishes msgs[0..n) asynchronously and waits at most timeout_ms for every ack: SP_OK
 * once each is stored, *duplicates of them recognised by the stream's dedup window as
 * stored before; SP_ERR_UNAVAILABLE when any was not acknowledged in time or refused
 * (stream full, no stream, no connection): some may be stored, so the caller's retry must
 * carry the same message ids. */
sp_status spbus_js_publish_all(spbus_js_batch *jb, spbus_js_msg_out *msgs, size_t n,
                               size_t *duplicates, int timeout_ms);

/* ---- server side ------------------------------------------------------------------------ */

/* A handler returns SP_OK when it replied (spbus_reply / spbus_reply_error), or an error
 * status without replying, in which case the library replies that error for it. */
typedef sp_status (*spbus_handler)(spbus_req *req);
/* A batch handler gets the requests of its method that were queued together (1 up to
 * SPBUS_MAX_BATCH, e.g. to answer them with one query) and replies to each; the library
 * replies internal to any it left unanswered. */
#define SPBUS_MAX_BATCH 64
typedef void (*spbus_batch_handler)(spbus_req **reqs, size_t n);

/* A raw route (fn set, in_desc NULL) takes messages that are not in the envelope: what a
 * device publishes (sp.ingest.v1.SlotEvents). Its handler reads spbus_req_payload and
 * spbus_req_header; its context holds only what the SPBUS_H_* headers gave (a new request
 * id when none); it replies as any other. */
typedef struct {
    const char *method;                        /* "Register": subject sp.<api>.v1.Register */
    spbus_handler fn;                          /* one request at a time, or */
    const ProtobufCMessageDescriptor *in_desc; /* the <Method>Request */
    spbus_batch_handler batch;                 /* the requests queued together (fn NULL) */
} spbus_route;

typedef struct spbus_service spbus_service;

/* Serves sp.<api>.v1.* in queue group 'queue': one queue subscription whose callback
 * stamps each request with the (monotonic) time it arrived and queues it for 'workers'
 * threads, so a handler blocking on PostgreSQL holds one worker only and a request waits
 * only when every worker is busy (nats-server picks a random member of a queue group, so
 * one subscription per worker would queue behind busy ones).
 * 'user' is handed to every handler (spbus_req_user). Routes are copied. A request's local
 * deadline is its arrival + the ctx.timeout_us it carries (none without one); one whose
 * deadline passed before a worker took it is dropped unanswered (the caller has answered
 * 503 already), logged at warn ("request_expired") and counted in
 * sp_bus_requests_expired_total{subject="sp.<api>.v1.<Method>"}. */
sp_status spbus_serve(spbus_service **out, spbus *b, const char *api, const char *queue,
                      const spbus_route *routes, size_t nroutes, int workers, void *user);
void spbus_service_destroy(spbus_service *s);

/* The request: context, decoded input, arena. Valid only inside the handler. */
const Sp__V1__RequestContext *spbus_req_ctx(const spbus_req *req);
const char *spbus_req_id(const spbus_req *req);  /* request id, "" if none */
const ProtobufCMessage *spbus_req_input(const spbus_req *req); /* decoded with in_desc */
sp_arena *spbus_req_arena(spbus_req *req);
/* The payload of the message as received (a raw route's input; *len 0 when empty). */
const void *spbus_req_payload(const spbus_req *req, size_t *len);
/* The first value of header 'name' of the message, or NULL. */
const char *spbus_req_header(const spbus_req *req, const char *name);
void *spbus_req_user(const spbus_req *req);
int spbus_req_worker(const spbus_req *req);       /* 0..workers-1, for per-worker state */
/* Microseconds left of the caller's budget (0 once spent; INT64_MAX when the caller sent
 * none): a handler can skip work nobody waits for. spbus_request from the handler passes
 * on at most this much. */
int64_t spbus_req_remaining_us(const spbus_req *req);

sp_status spbus_reply(spbus_req *req, const ProtobufCMessage *out);
/* Records that this call revoked 'session_id': the reply (result or error) carries it in
 * sp.v1.Reply.revoked_sessions. Call before replying; the string is copied. */
sp_status spbus_req_revoked(spbus_req *req, const char *session_id);
/* Replies an sp.v1.Error; fields are path, reason string pairs ending with NULL.
 * Returns SP_OK once sent (so a handler can 'return spbus_reply_error(...)'). */
sp_status spbus_reply_error(spbus_req *req, sp_status code, const char *message, ...)
    __attribute__((sentinel));
/* Same, with a list of field errors built by the caller (may be NULL / 0). */
sp_status spbus_reply_error_fields(spbus_req *req, sp_status code, const char *message,
                                   Sp__V1__FieldError **fields, size_t nfields);

/* An error with a Retry-After in seconds (rate_limited, unavailable). Returns SP_OK once sent. */
sp_status spbus_reply_error_retry(spbus_req *req, sp_status code, const char *message,
                                  int retry_after_s);

/* ---- JetStream durable pull consumer ------------------------------------------------------ */

typedef struct spbus_consumer spbus_consumer;

typedef struct {
    const char *stream;         /* "SP_AUDIT" */
    const char *durable;        /* durable consumer name, shared by the replicas: "tenancy" */
    const char *filter_subject; /* "sp.audit.>", or NULL for the whole stream */
    int batch;                  /* at most this many messages per call of fn: 1..256 */
    int ack_wait_ms;            /* redelivery of an unacked message after this (0: 30 s) */
    int max_ack_pending;        /* delivered and unacked at most (0: the server's 1000) */
    int max_deliver;            /* deliveries of one message at most; -1 (or 0): unlimited */
    int fetch_wait_ms;          /* one fetch waits at most this long (0: 1 s; 10..30000) */
} spbus_consumer_opts;

typedef struct {
    const char *subject;
    const void *data;
    size_t len;
    const char *msg_id; /* its Nats-Msg-Id header, or NULL */
    uint64_t delivered; /* 1 on the first delivery, 2 on the first redelivery, ... */
    uint64_t stream_seq;
    bool ack; /* fn sets it: acked once fn returns; false: redelivered later */
} spbus_js_msg;

/* Called with 1..opts.batch messages in stream order (redeliveries aside). It handles them
 * (one database transaction, committed before it returns) and sets 'ack' on each message
 * it is done with. Messages and their fields live until it returns. */
typedef void (*spbus_consume_fn)(void *user, spbus_js_msg *msgs, size_t n);

/* Consumes 'o->stream' through the durable pull consumer 'o->durable' on a thread of its
 * own: creates it or updates its settings (explicit ack, AckWait, MaxAckPending,
 * MaxDeliver, deliver all, filter subject), fetches batches of at most o->batch, hands
 * each to fn, then acks exactly the messages fn marked (and waits for the server to have
 * them); the others are left unacked and the server redelivers them after AckWait, with
 * 'delivered' one higher (a failed transaction is simply retried later; no nak, so a
 * failing database is not hammered). Several processes with the same durable share the
 * stream's messages. Rebinds by itself after a NATS restart or when the stream or consumer
 * is missing (it may not exist yet: retried every second, spbus_consumer_ready false until
 * bound). Strings of 'o' are copied. SP_ERR_VALIDATION_FAILED on bad options.
 * The NATS user needs: publish on $JS.API.CONSUMER.DURABLE.CREATE.<stream>.<durable>,
 * $JS.API.CONSUMER.INFO.<stream>.<durable>, $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>
 * and $JS.ACK.<stream>.<durable>.>, and subscribe on _SP_INBOX.>. */
sp_status spbus_consume(spbus_consumer **out, spbus *b, const spbus_consumer_opts *o,
                        spbus_consume_fn fn, void *user);
/* Bound, and its last fetch found less than a batch (nothing more was waiting): what the
 * stream held is handed over. False while it works through a backlog. */
bool spbus_consumer_caught_up(const spbus_consumer *c);
/* Bound to its consumer and connected: for /readyz. */
bool spbus_consumer_ready(const spbus_consumer *c);
/* Stops fetching, waits for a running fn (its acks are sent), frees. NULL: no-op. */
void spbus_consumer_destroy(spbus_consumer *c);

/* ProtobufCAllocator that allocates from an arena (frees are no-ops). */
ProtobufCAllocator spbus_arena_allocator(sp_arena *a);

#endif
