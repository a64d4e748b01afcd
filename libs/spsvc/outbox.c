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

/* Publishes the pending rows oldest first as one batch of asynchronous publishes and
 * deletes them once every one is acked, in a transaction holding the outbox's advisory
 * lock: one publisher at a time over every replica, so that the rows leave in the order
 * they were written (a slot's changes in its order). A failure leaves every row of the
 * batch for the next round (the stream drops the repeats of those already stored).
 * Returns how many rows were published, -1 on a failure. */
static int publish_pending(spsvc *svc)
{
    PGresult *res = NULL, *lock = NULL;
    spdb *db = svc->outbox_db;
    if (db == NULL && spdb_connect(&svc->outbox_db, svc->db_url) != SP_OK) return -1;
    db = svc->outbox_db;
    const char *lp[] = {svc->def->outbox};
    sp_status s = spdb_begin(db);
    if (s == SP_OK)
        s = spdb_query(&lock, db, "SELECT pg_try_advisory_xact_lock(hashtext($1::text))", 1, lp);
    if (s == SP_OK && PQgetvalue(lock, 0, 0)[0] != 't') { /* another replica publishes */
        PQclear(lock);
        spdb_rollback(db);
        return 0;
    }
    PQclear(lock);
    if (s == SP_OK) s = spdb_query(&res, db, svc->sql_pending, 0, NULL);
    if (s != SP_OK) {
        spdb_rollback(db);
        sp_log_warn(NULL, "outbox_read_failed", "code", sp_error_code(s));
        return -1;
    }
    int rows = PQntuples(res);
    spbus_js_msg_out *msgs = calloc((size_t)(rows ? rows : 1), sizeof(*msgs));
    uint8_t **bufs = calloc((size_t)(rows ? rows : 1), sizeof(*bufs));
    char *ids = malloc((size_t)rows * 24 + 3);
    int done = msgs != NULL && bufs != NULL && ids != NULL ? rows : -1;
    size_t at = 0;
    if (ids != NULL) ids[at++] = '{';
    for (int i = 0; done > 0 && i < rows; i++) {
        size_t len = 0;
        if (!unhex(&bufs[i], &len, PQgetvalue(res, i, 3))) {
            sp_log_error(NULL, "outbox_row_unreadable", "eventId", PQgetvalue(res, i, 1));
            done = -1;
            break;
        }
        msgs[i] = (spbus_js_msg_out){PQgetvalue(res, i, 2), bufs[i], len, PQgetvalue(res, i, 1)};
        at += (size_t)snprintf(ids + at, 24, "%s%s", i ? "," : "", PQgetvalue(res, i, 0));
    }
    if (ids != NULL) {
        ids[at++] = '}';
        ids[at] = '\0';
    }
    size_t dups = 0;
    if (done > 0) {
        if (svc->outbox_js == NULL && spbus_js_batch_create(&svc->outbox_js, svc->bus, 0) != SP_OK)
            done = -1;
        else if ((s = spbus_js_publish_all(svc->outbox_js, msgs, (size_t)rows, &dups,
                                           SPSVC_OUTBOX_ACK_MS)) != SP_OK) {
            sp_log_warn(NULL, "outbox_publish_failed", "code", sp_error_code(s));
            done = -1;
        }
    }
    if (done > 0) {
        const char *params[] = {ids};
        s = spdb_exec(db, svc->sql_delete, 1, params);
        if (s == SP_OK) s = spdb_commit(db);
        if (s != SP_OK) {
            /* published: the next round publishes them again and the stream drops the repeats */
            sp_log_warn(NULL, "outbox_delete_failed", "code", sp_error_code(s));
            done = -1;
        }
    }
    spdb_rollback(db); /* no-op after the commit */
    for (int i = 0; bufs != NULL && i < rows; i++)
        free(bufs[i]);
    free(bufs);
    free(msgs);
    free(ids);
    if (done > 0) {
        char n[16];
        snprintf(n, sizeof(n), "%d", done);
        sp_log_debug(NULL, "outbox_published", "rows", n, "table", svc->def->outbox);
    }
    PQclear(res);
    return done;
}

void spsvc_outbox_wake(spsvc *svc)
{
    if (svc != NULL && svc->outbox_task != NULL) sp_task_wake(svc->outbox_task);
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
        asprintf(&svc->sql_delete, "DELETE FROM %s WHERE id = ANY($1::bigint[])", t) < 0)
        return SP_ERR_INTERNAL;
    return spsvc_every(svc, &svc->outbox_task, SPSVC_OUTBOX_POLL_MS, outbox_run, svc);
}

void spsvc__outbox_free(spsvc *svc)
{
    spbus_js_batch_destroy(svc->outbox_js);
    spdb_destroy(svc->outbox_db);
    free(svc->sql_insert);
    free(svc->sql_pending);
    free(svc->sql_delete);
}
