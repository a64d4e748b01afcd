/* outbox.c -- the audit outbox of the auth service: handlers insert sp.audit.v1.AuditEvent
 * rows into auth.outbox in the transaction of their change; a publisher thread sends each
 * row to the SP_AUDIT stream (Nats-Msg-Id = event_id, publish with ack) and deletes it
 * after the ack. A row whose publish fails stays and is retried on the next round, so an
 * event is never lost; a repeat (a crash between ack and delete, two replicas) is dropped
 * by the stream's dedup window. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "sp/audit/v1/audit.pb-c.h"

#define STR_(x) #x
#define STR(x) STR_(x)

struct auth_outbox {
    spbus *bus;
    char *db_url;
    spdb *db; /* the thread's own connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, woken; /* guarded by mu */
};

static const char *sql_insert =
    "INSERT INTO auth.outbox (event_id, subject, payload) VALUES ($1::uuid, $2, decode($3, 'hex'))";

static const char *sql_pending =
    "SELECT id, event_id::text, subject, encode(payload, 'hex') FROM auth.outbox"
    " ORDER BY id LIMIT " STR(AUTH_OUTBOX_BATCH);

static const char *sql_delete = "DELETE FROM auth.outbox WHERE id = $1::bigint";

/* ---- writing, inside a handler's transaction ------------------------------------------ */

static char *nonempty(const char *s)
{
    return s != NULL && s[0] != '\0' ? (char *)s : NULL;
}

sp_status auth_audit_or_reply(spbus_req *req, spdb *db, const char *client_id, const char *action,
                              const char *target_kind, const char *target_id,
                              const char *details_json)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    sp_arena *a = spbus_req_arena(req);
    char event_id[SPCRYPTO_UUID_LEN];

    spcrypto_uuid_v4(event_id);
    Sp__Audit__V1__AuditEvent ev = SP__AUDIT__V1__AUDIT_EVENT__INIT;
    ev.id = event_id;
    ev.has_occurred_at = 1;
    ev.occurred_at = sp_now_us();
    if (ctx != NULL) {
        ev.actor_user_id = nonempty(ctx->user_id);
        ev.actor_role = nonempty(ctx->role);
        ev.request_id = nonempty(ctx->request_id);
        ev.ip = nonempty(ctx->ip);
    }
    ev.client_id = nonempty(client_id);
    ev.action = (char *)action;
    ev.target_kind = (char *)target_kind;
    ev.target_id = (char *)target_id;
    ev.details_json = nonempty(details_json);

    size_t len = sp__audit__v1__audit_event__get_packed_size(&ev);
    uint8_t *buf = sp_arena_alloc(a, len ? len : 1);
    char *hex = sp_arena_alloc(a, len * 2 + 1);
    /* a client id is a public UUID (no dots): safe as a subject token */
    char *subject = sp_arena_printf(
        a, "sp.audit.%s.auth",
        ev.client_id != NULL && spcrypto_uuid_valid(ev.client_id) ? ev.client_id : "platform");
    if (buf == NULL || hex == NULL || subject == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    sp__audit__v1__audit_event__pack(&ev, buf);
    spcrypto_hex(hex, buf, len);
    hex[len * 2] = '\0';

    const char *params[] = {event_id, subject, hex};
    sp_status s = spdb_exec(db, sql_insert, 3, params);
    if (s != SP_OK) return auth_db_error_reply(req, s, "outbox_insert");
    sp_log_info(spbus_req_id(req), "audit_queued", "eventId", event_id, "action", action);
    return SP_OK;
}

/* ---- publishing, on the outbox thread --------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes 'hex' into a malloc'd buffer (*out, *len); false on a bad digit or OOM. */
static bool unhex(uint8_t **out, size_t *len, const char *hex)
{
    size_t n = strlen(hex);
    *out = NULL;
    *len = 0;
    if (n % 2 != 0) return false;
    uint8_t *b = malloc(n / 2 + 1);
    if (b == NULL) return false;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return false;
        }
        b[i] = (uint8_t)(hi * 16 + lo);
    }
    *out = b;
    *len = n / 2;
    return true;
}

/* Publishes the pending rows oldest first, deleting each after its ack. Stops at the first
 * failure (the stream or NATS is down: the rest would fail too). Returns how many rows
 * were published, -1 on a failure. */
static int publish_pending(auth_outbox *o)
{
    PGresult *res = NULL;

    if (o->db == NULL && spdb_connect(&o->db, o->db_url) != SP_OK) return -1;
    sp_status s = spdb_query(&res, o->db, sql_pending, 0, NULL);
    if (s != SP_OK) {
        sp_log_warn(NULL, "outbox_read_failed", "code", sp_error_code(s));
        return -1;
    }
    int done = 0, rows = PQntuples(res);
    for (int i = 0; i < rows; i++) {
        const char *id = PQgetvalue(res, i, 0), *event_id = PQgetvalue(res, i, 1);
        const char *subject = PQgetvalue(res, i, 2);
        uint8_t *payload = NULL;
        size_t len = 0;
        if (!unhex(&payload, &len, PQgetvalue(res, i, 3))) {
            sp_log_error(NULL, "outbox_row_unreadable", "eventId", event_id);
            done = -1;
            break;
        }
        s = spbus_js_publish(o->bus, subject, payload, len, event_id, AUTH_OUTBOX_ACK_MS);
        free(payload);
        if (s != SP_OK) {
            sp_log_warn(NULL, "outbox_publish_failed", "eventId", event_id, "code",
                        sp_error_code(s));
            done = -1;
            break;
        }
        const char *params[] = {id};
        s = spdb_exec(o->db, sql_delete, 1, params);
        if (s != SP_OK) {
            /* published: the next round publishes it again and the stream drops the repeat */
            sp_log_warn(NULL, "outbox_delete_failed", "eventId", event_id, "code",
                        sp_error_code(s));
            done = -1;
            break;
        }
        sp_log_info(NULL, "audit_published", "eventId", event_id, "subject", subject);
        done++;
    }
    PQclear(res);
    return done;
}

static void *outbox_main(void *arg)
{
    auth_outbox *o = arg;

    pthread_mutex_lock(&o->mu);
    while (!o->stop) {
        if (!o->woken) {
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            until.tv_nsec += (long)AUTH_OUTBOX_POLL_MS * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            while (!o->stop && !o->woken &&
                   pthread_cond_timedwait(&o->cv, &o->mu, &until) != ETIMEDOUT) {
            }
        }
        if (o->stop) break;
        o->woken = false;
        pthread_mutex_unlock(&o->mu);
        int n;
        /* a full batch: there may be more behind it */
        do {
            n = publish_pending(o);
        } while (n == AUTH_OUTBOX_BATCH);
        pthread_mutex_lock(&o->mu);
    }
    pthread_mutex_unlock(&o->mu);
    return NULL;
}

sp_status auth_outbox_create(auth_outbox **out, spbus *bus, const char *db_url)
{
    *out = NULL;
    auth_outbox *o = calloc(1, sizeof(*o));
    if (o == NULL) return SP_ERR_INTERNAL;
    o->bus = bus;
    o->db_url = strdup(db_url);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (o->db_url == NULL || pthread_create(&o->thread, NULL, outbox_main, o) != 0) {
        pthread_cond_destroy(&o->cv);
        pthread_mutex_destroy(&o->mu);
        free(o->db_url);
        free(o);
        return SP_ERR_INTERNAL;
    }
    *out = o;
    return SP_OK;
}

void auth_outbox_wake(auth_outbox *o)
{
    if (o == NULL) return;
    pthread_mutex_lock(&o->mu);
    o->woken = true;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
}

void auth_outbox_destroy(auth_outbox *o)
{
    if (o == NULL) return;
    pthread_mutex_lock(&o->mu);
    o->stop = true;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
    pthread_join(o->thread, NULL);
    spdb_destroy(o->db);
    pthread_cond_destroy(&o->cv);
    pthread_mutex_destroy(&o->mu);
    free(o->db_url);
    free(o);
}
