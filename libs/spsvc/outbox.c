/* outbox.c -- the audit outbox of a service: handlers insert sp.audit.v1.AuditEvent rows
 * into the service's outbox table in the transaction of their change; a task sends each
 * row to the SP_AUDIT stream (Nats-Msg-Id = event_id, publish with ack) and deletes it
 * after the ack. A row whose publish fails stays and is retried on the next round, so an
 * event is never lost; a repeat (a crash between ack and delete, two replicas) is dropped
 * by the stream's dedup window and by tenancy's unique event id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp/audit/v1/audit.pb-c.h"
#include "spcrypto.h"
#include "spsvc_internal.h"

/* ---- writing, inside a handler's transaction ------------------------------------------ */

sp_status spsvc_audit_or_reply(spbus_req *req, spdb *db, const char *client_id, const char *action,
                               const char *target_kind, const char *target_id,
                               const char *details_json)
{
    spsvc *svc = spsvc_of(req);
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    sp_arena *a = spbus_req_arena(req);
    char event_id[SPCRYPTO_UUID_LEN];

    if (svc->sql_insert == NULL) {
        sp_log_error(spbus_req_id(req), "service_without_outbox");
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    spcrypto_uuid_v4(event_id);
    Sp__Audit__V1__AuditEvent ev = SP__AUDIT__V1__AUDIT_EVENT__INIT;
    ev.id = event_id;
    ev.has_occurred_at = 1;
    ev.occurred_at = sp_now_us();
    if (ctx != NULL) {
        ev.actor_user_id = spsvc_nonempty(ctx->user_id);
        ev.actor_role = spsvc_nonempty(ctx->role);
        ev.request_id = spsvc_nonempty(ctx->request_id);
        ev.ip = spsvc_nonempty(ctx->ip);
    }
    ev.client_id = spsvc_nonempty(client_id);
    ev.action = (char *)action;
    ev.target_kind = (char *)target_kind;
    ev.target_id = (char *)target_id;
    ev.details_json = spsvc_nonempty(details_json);

    size_t len = sp__audit__v1__audit_event__get_packed_size(&ev);
    uint8_t *buf = sp_arena_alloc(a, len ? len : 1);
    char *hex = sp_arena_alloc(a, len * 2 + 1);
    /* a client id is a public UUID (no dots): safe as a subject token */
    char *subject = sp_arena_printf(
        a, "sp.audit.%s.%s",
        ev.client_id != NULL && spcrypto_uuid_valid(ev.client_id) ? ev.client_id : "platform",
        svc->def->name);
    if (buf == NULL || hex == NULL || subject == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    sp__audit__v1__audit_event__pack(&ev, buf);
    spcrypto_hex(hex, buf, len);
    hex[len * 2] = '\0';

    const char *params[] = {event_id, subject, hex};
    sp_status s = spdb_exec(db, svc->sql_insert, 3, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "outbox_insert");
    int w = spbus_req_worker(req);
    if (w >= 0 && w < svc->workers) svc->audited[w] = true;
    sp_log_info(spbus_req_id(req), "audit_queued", "eventId", event_id, "action", action);
    return SP_OK;
}

/* ---- publishing, on the outbox task ----------------------------------------------------- */

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
static int publish_pending(spsvc *svc)
{
    PGresult *res = NULL;

    if (svc->outbox_db == NULL && spdb_connect(&svc->outbox_db, svc->db_url) != SP_OK) return -1;
    sp_status s = spdb_query(&res, svc->outbox_db, svc->sql_pending, 0, NULL);
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
        s = spbus_js_publish(svc->bus, subject, payload, len, event_id, SPSVC_OUTBOX_ACK_MS);
        free(payload);
        if (s != SP_OK) {
            sp_log_warn(NULL, "outbox_publish_failed", "eventId", event_id, "code",
                        sp_error_code(s));
            done = -1;
            break;
        }
        const char *params[] = {id};
        s = spdb_exec(svc->outbox_db, svc->sql_delete, 1, params);
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

static void outbox_run(void *user)
{
    int n;
    do { /* a full batch: there may be more behind it */
        n = publish_pending(user);
    } while (n == SPSVC_OUTBOX_BATCH);
}

sp_status spsvc__outbox_start(spsvc *svc)
{
    const char *t = svc->def->outbox;
    if (svc->db_url == NULL) return SP_ERR_INTERNAL; /* an outbox needs SPSVC_DB */
    /* 't' is the service's own constant table name, never input */
    if (asprintf(&svc->sql_insert,
                 "INSERT INTO %s (event_id, subject, payload)"
                 " VALUES ($1::uuid, $2, decode($3, 'hex'))",
                 t) < 0 ||
        asprintf(&svc->sql_pending,
                 "SELECT id, event_id::text, subject, encode(payload, 'hex') FROM %s"
                 " ORDER BY id LIMIT %d",
                 t, SPSVC_OUTBOX_BATCH) < 0 ||
        asprintf(&svc->sql_delete, "DELETE FROM %s WHERE id = $1::bigint", t) < 0)
        return SP_ERR_INTERNAL;
    return spsvc_every(svc, &svc->outbox_task, SPSVC_OUTBOX_POLL_MS, outbox_run, svc);
}

void spsvc__outbox_free(spsvc *svc)
{
    spdb_destroy(svc->outbox_db);
    free(svc->sql_insert);
    free(svc->sql_pending);
    free(svc->sql_delete);
}
