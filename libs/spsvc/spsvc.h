/* spsvc.h -- the service kit: what every bus service of SmartPark is made of, so that a
 * service's main.c is a few lines of wiring and its handlers read top to bottom.
 *  - the process: the common settings (NATS, PostgreSQL, Redis, admin address, workers,
 *    shutdown) joined to the service's own table, the bus connection, the admin listener
 *    with readiness from what the service declares, signals, drain within SP_SHUTDOWN_S;
 *  - route tables: static arrays added by each handler file, any number of them;
 *  - per-worker PostgreSQL and Redis connections, made on first use by their worker;
 *  - the caller (principal) and the role / tenant-scope checks, as _or_reply steps;
 *  - field errors, reported all at once, and the shared input checks;
 *  - the audit outbox: rows written in the handler's transaction, published to SP_AUDIT
 *    by a task after the commit;
 *  - periodic tasks (sp_task), stopped before the bus goes.
 * Threads: spsvc_main runs on the main thread; every _or_reply step and spsvc_db/redis
 * run inside a handler, on its worker; spsvc_every and spsvc_routes only from 'start'.
 * Prefix: spsvc_. */
#ifndef SPSVC_H
#define SPSVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp/v1/changed.pb-c.h"
#include "sp/v1/envelope.pb-c.h"
#include "spbus.h"
#include "spcore.h"
#include "spdb.h"
#include "spredis.h"

typedef struct spsvc spsvc;

enum {
    SPSVC_DB = 1u << 0,    /* SP_DATABASE_URL; a connection per worker; /readyz pings it */
    SPSVC_REDIS = 1u << 1, /* SP_REDIS_URL; a connection per worker (not in /readyz) */
};

typedef struct {
    const char *name;         /* "auth": log name, NATS user default, queue group, bus api */
    const char *admin_addr;   /* default of SP_ADMIN_ADDR, "127.0.0.1:9101" */
    const char *api;          /* the bus api served, sp.<api>.v1.*, when not 'name' ("status") */
    unsigned needs;           /* SPSVC_DB | SPSVC_REDIS */
    const sp_cfg_item *items; /* the service's own settings (may be NULL) */
    size_t nitems;
    /* "auth.outbox": the table of the audit outbox (spsvc_audit_or_reply), published by a
     * task of the kit; NULL: the service writes no audit events. Needs SPSVC_DB. */
    const char *outbox;
    /* Called once the bus is connected, before serving: reads the service's settings,
     * adds its routes (spsvc_routes) and tasks. A failure stops the start (logged). */
    sp_status (*start)(spsvc *svc);
    /* Called after serving stopped and the tasks were stopped, before the bus is
     * destroyed (may be NULL): frees what start made. */
    void (*stop)(spsvc *svc);
    /* Extra readiness (may be NULL): false with 'why' when the service cannot work. */
    bool (*ready)(spsvc *svc, char *why, size_t whylen);
    void *user; /* the service's own state, spsvc_user() */
} spsvc_def;

/* The whole life of a service process: returns the exit code (0 after a clean stop, 2 on
 * a bad setting, 1 on a failed start). */
int spsvc_main(const spsvc_def *def, int argc, char **argv);

const sp_config *spsvc_config(const spsvc *svc);
spbus *spsvc_bus(const spsvc *svc);
void *spsvc_user(const spsvc *svc);
int spsvc_workers(const spsvc *svc);
const char *spsvc_name(const spsvc *svc);
/* The kit of the service serving 'req', and the service's own state. */
spsvc *spsvc_of(const spbus_req *req);
void *spsvc_req_user(const spbus_req *req);

/* Adds a static route table (not copied: it must outlive the service). From start only. */
void spsvc_routes(spsvc *svc, const spbus_route *routes, size_t n);
#define SPSVC_ROUTES(svc, table) spsvc_routes((svc), (table), sizeof(table) / sizeof((table)[0]))
/* Runs fn(user) every period_ms on a thread of its own (sp_task), stopped by the kit
 * before the bus goes. From start only. *out (may be NULL) can be woken. */
sp_status spsvc_every(spsvc *svc, sp_task **out, int period_ms, sp_task_fn fn, void *user);

/* ---- per-worker connections -------------------------------------------------------------- */

/* The PostgreSQL connection of the worker running 'req', connected on first use. Replies
 * 503 unavailable when PostgreSQL cannot be reached. */
sp_status spsvc_db_or_reply(spdb **out, spbus_req *req);
/* The Redis connection of that worker, created on first use; NULL when the service has
 * none (spredis reconnects by itself: a command tells whether Redis answers). */
spredis *spsvc_redis(spbus_req *req);
/* Replies the error of a failed statement (503 unavailable, else 500 internal: a caller
 * that expects a conflict checks for SP_ERR_CONFLICT first) and logs 'what'. Returns 's'. */
sp_status spsvc_db_error_reply(spbus_req *req, sp_status s, const char *what);
sp_status spsvc_begin_or_reply(spbus_req *req, spdb *db);
/* Commits; wakes the outbox publisher when this request wrote an audit event. */
sp_status spsvc_commit_or_reply(spbus_req *req, spdb *db);
/* Rolls back whatever transaction the handler left open (no-op otherwise). */
void spsvc_rollback(spdb *db);

/* ---- calls to other services ------------------------------------------------------------ */

/* How a service calls another (spsvc_call_for). */
typedef struct {
    int timeout_ms;              /* the call's deadline */
    const char *client_id;       /* act for this client only (the callee's tenant scope), or NULL */
    const char *idempotency_key; /* RequestContext.idempotency_key, or NULL */
    bool validate_only;          /* RequestContext.validate_only: check, change nothing */
} spsvc_call_opts;

/* Calls sp.<api>.v1.<method> of another service as this service (ctx.role "service"),
 * keeping the request id, ip, user agent and acting user of 'req' for the callee's logs and
 * audit ('req' NULL: a task's own call). SP_OK with *out, or the status of the callee's
 * error with *err (NULL: no answer within the timeout, SP_ERR_UNAVAILABLE). Replies
 * nothing. */
sp_status spsvc_call_for(ProtobufCMessage **out, Sp__V1__Error **err, spbus *bus, spbus_req *req,
                         const char *api, const char *method, const ProtobufCMessage *in,
                         const ProtobufCMessageDescriptor *reply_desc, const spsvc_call_opts *o,
                         sp_arena *arena);
/* The same with only a timeout. */
sp_status spsvc_call(ProtobufCMessage **out, Sp__V1__Error **err, spbus *bus, spbus_req *req,
                     const char *api, const char *method, const ProtobufCMessage *in,
                     const ProtobufCMessageDescriptor *reply_desc, int timeout_ms, sp_arena *arena);
/* Whether this call is a service's validate_only one (reply an empty result after the
 * checks, change nothing). */
bool spsvc_validate_only(const spbus_req *req);

/* After the commit: publishes sp.v1.Changed on sp.<service>.changed.<client_id>.<kind>
 * (bus.md), so that the copies other processes keep of the resource are dropped. Core
 * pub/sub, at most once (the copies expire too); a failure is logged at warn, never
 * replied. 'parent_id' may be NULL. */
void spsvc_changed(spbus_req *req, const char *client_id, const char *kind, const char *id,
                   const char *what, const char *parent_id);

/* ---- the caller ------------------------------------------------------------------------------ */

enum {
    SPSVC_ROLE_ADMIN = 1u << 0,
    SPSVC_ROLE_CLIENT_ADMIN = 1u << 1,
    SPSVC_ROLE_APP_USER = 1u << 2,
    SPSVC_ROLE_SERVICE = 1u << 3, /* another service on its own authority (bus only) */
    SPSVC_ROLE_USERS = SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN | SPSVC_ROLE_APP_USER,
};

/* The caller as the gateway verified it (ctx), strings pointing into the request. */
typedef struct {
    unsigned role;         /* one SPSVC_ROLE_*, 0 when anonymous */
    const char *user_id;   /* public id, NULL when anonymous */
    const char *client_id; /* for client_admin: its tenant; for a service acting for one
                              client (spsvc_call_opts.client_id): that client; else NULL */
    bool manager;          /* client_admin with client_role client_manager */
} spsvc_principal;

/* Reads the caller of 'req' (never fails: anonymous or an unknown role is role 0). */
void spsvc_principal_of(spsvc_principal *p, const spbus_req *req);
/* The caller must be an authenticated user (a valid user id); 401 unauthenticated
 * otherwise. *user_id points into the request. */
sp_status spsvc_require_user_or_reply(spbus_req *req, const char **user_id);
/* The caller's role must be one of 'roles': 401 unauthenticated when anonymous, 403
 * forbidden otherwise. *p (may be NULL) is filled. */
sp_status spsvc_require_role_or_reply(spbus_req *req, unsigned roles, spsvc_principal *p);
/* Tenant scope of a resource of client 'client_id' (public id): an admin or a service sees
 * every client (a service acting for one client: that one), a client_admin only its own; anyone
 * else gets 404 not_found "<what> not found", never a 403 that would confirm the resource exists
 * (domain.md rule 1). */
sp_status spsvc_scope_or_reply(spbus_req *req, const char *client_id, const char *what);
/* The one row of 'sql' ($1: the public id 'id') for the caller: 404 not_found "<what> not
 * found" when 'id' is no UUID, no row matches, or the row's client (public id, column
 * 'client_col') is out of the caller's scope (spsvc_scope_or_reply). The caller clears
 * *res (NULL after a failure). */
sp_status spsvc_row_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *sql,
                             const char *id, int client_col, const char *what);
/* After the scope: writing needs an admin, a service or the client's manager; an operator
 * gets 403 forbidden. */
sp_status spsvc_require_writer_or_reply(spbus_req *req);

/* ---- field errors and input checks ------------------------------------------------------ */

#define SPSVC_MAX_FIELDS 16

/* Field errors of one request, all reported at once. Strings must outlive the reply. */
typedef struct {
    Sp__V1__FieldError items[SPSVC_MAX_FIELDS];
    Sp__V1__FieldError *ptrs[SPSVC_MAX_FIELDS];
    size_t n;
} spsvc_fields;

void spsvc_fields_init(spsvc_fields *f);
/* Records 'reason' for 'path' when reason is not NULL (beyond SPSVC_MAX_FIELDS: dropped). */
void spsvc_fields_add(spsvc_fields *f, const char *path, const char *reason);
/* SP_OK when no field is bad; else replies 400 validation_failed naming each one. */
sp_status spsvc_fields_or_reply(spbus_req *req, const spsvc_fields *f);
/* Replies 'code' with 'message' (no fields) and returns 'code': a step's failure. */
sp_status spsvc_fail(spbus_req *req, sp_status code, const char *message);
/* Replies the error another service answered (its code, message and fields). Returns s. */
sp_status spsvc_forward_error_reply(spbus_req *req, sp_status s, const Sp__V1__Error *err);

/* Code points of a UTF-8 string; -1 when it is not valid UTF-8. */
long spsvc_utf8_len(const char *s);
/* Decodes the code point at s into *cp: its length in bytes, 0 at the end of the string,
 * -1 when s does not start with valid UTF-8 (overlong, surrogate, past U+10FFFF, cut). */
int spsvc_utf8_next(const char *s, uint32_t *cp);
/* Whether cp shows nothing where it stands: controls, spaces of any width, format
 * characters (zero-width space and joiners, soft hyphen, bidi controls, BOM, tags,
 * variation selectors), fillers and private use. Such a character in an identifier makes
 * a look-alike of another one. */
bool spsvc_invisible(uint32_t cp);
/* Each check returns NULL when the value is fine, else the reason to report. */
/* Required text of 1..max code points, valid UTF-8, no control characters, not blank. */
const char *spsvc_check_text(const char *s, long max);
/* The same, but NULL (absent) is fine. */
const char *spsvc_check_opt_text(const char *s, long max);
/* Required canonical UUID. */
const char *spsvc_check_uuid(const char *s);

/* ---- lists ---------------------------------------------------------------------------------- */

/* api.md Lists: limit 1..500, default 50. The cursor is opaque to clients: base64url of
 * "<created_at us>.<internal id>" of the last row given, the keyset of (created_at, id). */
#define SPSVC_LIST_DEFAULT 50
#define SPSVC_LIST_MAX 500
/* The cursor after the row (at, id), in the request's arena (NULL on OOM). */
char *spsvc_cursor(spbus_req *req, int64_t at, int64_t id);

/* One page of a list: its limit and cursor checked, and the SQL parameters they give. */
typedef struct {
    int limit;      /* rows to answer */
    int64_t at, id; /* the keyset of the row before the page; -1: from the start */
    char at_s[24], id_s[24];
    char fetch_s[16]; /* limit + 1: one more row tells that a next page exists */
} spsvc_page;
/* Checks the limit (400 validation_failed {"limit"} out of range) and decodes the cursor
 * (400 {"cursor": "invalid cursor"} for anything spsvc_cursor did not make; NULL or "":
 * from the start). */
sp_status spsvc_page_or_reply(spsvc_page *p, spbus_req *req, bool has_limit, int64_t limit,
                              const char *cursor);
/* The cursor's created-at parameter: NULL from the start (the query then ignores id_s). */
const char *spsvc_page_after(const spsvc_page *p);
/* How many of the rows of 'res' (fetched with fetch_s) to answer; *next is the cursor
 * after the last of them (columns at_col, id_col: us and internal id) when a next page
 * exists, else NULL. */
int spsvc_page_rows(char **next, spbus_req *req, const spsvc_page *p, PGresult *res, int at_col,
                    int id_col);
/* The items of a page (or any repeated reply field): n messages of 'desc', each
 * initialised, and the array of their pointers, in the request's arena. NULL after
 * replying 500 internal when the arena is exhausted. The array is the 'items' of the reply:
 * cast it to the message's type (Sp__X **), as protobuf-c's own code does. */
ProtobufCMessage **spsvc_items_or_reply(spbus_req *req, const ProtobufCMessageDescriptor *desc,
                                        size_t n);
/* Fills one item of a page from row 'row' of 'res' (strings may point into res, other
 * allocations go to the request's arena). */
typedef void (*spsvc_fill_fn)(ProtobufCMessage *item, PGresult *res, int row, spbus_req *req);
/* Replies one page of a list: a message of 'desc' (a List<X>Reply: 'repeated X items = 1;
 * optional string next_cursor = 2;', the gateway's list shape) with an item per row of
 * 'res' the page answers (fetched with pg->fetch_s), each made by fill, and the cursor
 * after the last (columns at_col, id_col). Replies 500 on OOM or a message of another
 * shape. Returns SP_OK once it replied. */
sp_status spsvc_reply_page(spbus_req *req, const spsvc_page *pg, PGresult *res, int at_col,
                           int id_col, const ProtobufCMessageDescriptor *desc, spsvc_fill_fn fill);
/* The same without a request: encode into 'out'; decode, false for anything else than
 * what encode made (then *at = *id = -1). */
#define SPSVC_CURSOR_MAX 64
void spsvc_cursor_encode(char out[SPSVC_CURSOR_MAX + 1], int64_t at, int64_t id);
bool spsvc_cursor_decode(int64_t *at, int64_t *id, const char *cursor);

/* ---- audit (domain.md rule 8) ------------------------------------------------------------- */

/* Inside the caller's transaction: inserts an sp.audit.v1.AuditEvent of the request's
 * caller (actor, request id, ip from ctx) into the service's outbox, on subject
 * sp.audit.<client_id or "platform">.<service>. 'details_json' may be NULL. The commit
 * (spsvc_commit_or_reply) wakes the publisher. Replies on a database failure. */
sp_status spsvc_audit_or_reply(spbus_req *req, spdb *db, const char *client_id, const char *action,
                               const char *target_kind, const char *target_id,
                               const char *details_json);
/* Wakes the outbox publisher now (after a commit that wrote rows outside a handler: the
 * projection's consumer writes its slot-status changes to its outbox). */
void spsvc_outbox_wake(spsvc *svc);
/* The outbox publisher's batch and wait for each stream ack. */
#define SPSVC_OUTBOX_POLL_MS 500
#define SPSVC_OUTBOX_BATCH 500
#define SPSVC_OUTBOX_ACK_MS 2000

/* ---- small helpers ----------------------------------------------------------------------------
 */

/* A bigint column as int64 (0 for NULL). */
int64_t spsvc_pg_int64(const char *v);
/* 's' when non-empty, else NULL (proto strings that are absent). */
char *spsvc_nonempty(const char *s);

#endif
