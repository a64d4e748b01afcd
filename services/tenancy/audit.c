/* audit.c -- the readable audit log (domain.md rule 8): every service's audit events
 * arrive on the SP_AUDIT stream through tenancy's durable consumer and are stored once
 * each in tenancy.audit_log (the event id is unique: a redelivery is a no-op); ListAudit
 * reads it newest first, tenant-scoped. Ends with audit_register(). */
#include <cjson/cJSON.h>
#include <string.h>

#include "sp/audit/v1/audit.pb-c.h"
#include "spcrypto.h"
#include "tenancy.h"

#define AUDIT_BATCH 64
#define AUDIT_ACK_WAIT_MS 10000
#define AUDIT_MAX_ACK_PENDING 1024
#define AUDIT_ACTION_MAX 64

static const char *sql_insert =
    "INSERT INTO tenancy.audit_log (event_id, at, actor_user_id, actor_role, client_id, action,"
    "   target_kind, target_id, request_id, ip, details, service)"
    " VALUES ($1::uuid, 'epoch'::timestamptz + $2::bigint * interval '1 microsecond',"
    "   $3::uuid, $4, $5::uuid, $6, $7, $8, $9, $10, $11::jsonb, $12)"
    " ON CONFLICT (event_id) DO NOTHING";

/* $1 client, $2 action, $3/$4 from/to (us), $5/$6 the cursor (at us, id), $7 page + 1 */
static const char *sql_list =
    "SELECT event_id::text, (extract(epoch FROM at) * 1000000)::bigint, actor_user_id::text,"
    "   actor_role, client_id::text, action, target_kind, target_id, request_id, ip,"
    "   details::text, id"
    " FROM tenancy.audit_log"
    " WHERE ($1::uuid IS NULL OR client_id = $1::uuid) AND ($2::text IS NULL OR action = $2)"
    "   AND ($3::bigint IS NULL OR at >= 'epoch'::timestamptz + $3::bigint * interval '1 "
    "microsecond')"
    "   AND ($4::bigint IS NULL OR at < 'epoch'::timestamptz + $4::bigint * interval '1 "
    "microsecond')"
    "   AND ($5::bigint IS NULL OR (at, id) <"
    "        ('epoch'::timestamptz + $5::bigint * interval '1 microsecond', $6::bigint))"
    " ORDER BY at DESC, id DESC LIMIT $7::int";

/* ---- the consumer ------------------------------------------------------------------------- */

static const char *uuid_or_null(const char *s)
{
    return s != NULL && spcrypto_uuid_valid(s) ? s : NULL;
}

/* The service: the last token of sp.audit.<client>.<service>. */
static const char *service_of(const char *subject)
{
    const char *dot = strrchr(subject, '.');
    return dot != NULL && dot[1] != '\0' ? dot + 1 : "unknown";
}

/* Stores one event inside the batch's transaction. A message that is not an audit event
 * is logged and dropped (acked): redelivering it could never help. */
static sp_status store_one(spdb *db, const spbus_js_msg *m)
{
    Sp__Audit__V1__AuditEvent *ev =
        sp__audit__v1__audit_event__unpack(NULL, m->len, (const uint8_t *)m->data);
    if (ev == NULL || uuid_or_null(ev->id) == NULL || ev->action == NULL || !ev->has_occurred_at) {
        sp_log_warn(NULL, "audit_event_dropped", "subject", m->subject, "why", "not an AuditEvent");
        if (ev != NULL) sp__audit__v1__audit_event__free_unpacked(ev, NULL);
        return SP_OK;
    }
    char at[24];
    snprintf(at, sizeof(at), "%lld", (long long)ev->occurred_at);
    const char *details = ev->details_json;
    cJSON *j = details != NULL ? cJSON_ParseWithLength(details, strlen(details)) : NULL;
    if (details != NULL && !cJSON_IsObject(j)) {
        sp_log_warn(NULL, "audit_details_dropped", "eventId", ev->id, "why", "not a JSON object");
        details = NULL;
    }
    cJSON_Delete(j);
    const char *params[] = {ev->id,
                            at,
                            uuid_or_null(ev->actor_user_id),
                            ev->actor_role,
                            uuid_or_null(ev->client_id),
                            ev->action,
                            ev->target_kind,
                            ev->target_id,
                            ev->request_id,
                            ev->ip,
                            details,
                            service_of(m->subject)};
    sp_status s = spdb_exec(db, sql_insert, 12, params);
    sp__audit__v1__audit_event__free_unpacked(ev, NULL);
    return s;
}

typedef struct {
    char *db_url;
    spdb *db; /* the consumer thread's own connection */
} audit_state;

static audit_state g_audit;

/* One batch, one transaction; acked only once committed (else redelivered later). */
static void consume(void *user, spbus_js_msg *msgs, size_t n)
{
    audit_state *st = user;
    if (st->db == NULL && spdb_connect(&st->db, st->db_url) != SP_OK) return;
    sp_status s = spdb_begin(st->db);
    for (size_t i = 0; s == SP_OK && i < n; i++)
        s = store_one(st->db, &msgs[i]);
    if (s == SP_OK) s = spdb_commit(st->db);
    if (s != SP_OK) {
        spdb_rollback(st->db);
        sp_log_warn(NULL, "audit_batch_failed", "code", sp_error_code(s));
        return;
    }
    for (size_t i = 0; i < n; i++)
        msgs[i].ack = true;
}

sp_status audit_consumer_start(ten_svc *t)
{
    g_audit.db_url = strdup(sp_config_str(spsvc_config(t->kit), "SP_DATABASE_URL"));
    if (g_audit.db_url == NULL) return SP_ERR_INTERNAL;
    spbus_consumer_opts o = {.stream = "SP_AUDIT",
                             .durable = "tenancy",
                             .filter_subject = NULL, /* the whole stream (projection/apply.c) */
                             .batch = AUDIT_BATCH,
                             .ack_wait_ms = AUDIT_ACK_WAIT_MS,
                             .max_ack_pending = AUDIT_MAX_ACK_PENDING,
                             .max_deliver = -1,
                             .fetch_wait_ms = 1000};
    return spbus_consume(&t->audit, t->bus, &o, consume, &g_audit);
}

void audit_consumer_stop(ten_svc *t)
{
    spbus_consumer_destroy(t->audit);
    t->audit = NULL;
    spdb_destroy(g_audit.db);
    free(g_audit.db_url);
    memset(&g_audit, 0, sizeof(g_audit));
}

bool audit_consumer_ready(ten_svc *t, char *why, size_t whylen)
{
    if (spbus_consumer_ready(t->audit)) return true;
    snprintf(why, whylen, "SP_AUDIT consumer not bound");
    return false;
}

/* ---- ListAudit --------------------------------------------------------------------------------
 */

static char *col(PGresult *res, int row, int c)
{
    return PQgetisnull(res, row, c) ? NULL : PQgetvalue(res, row, c);
}

/* Fills entry i of the page from row i. */
static void entry_from_row(ProtobufCMessage *m, PGresult *res, int i, spbus_req *req)
{
    Sp__Tenancy__V1__AuditEntry *e = (Sp__Tenancy__V1__AuditEntry *)m;
    sp_arena *a = spbus_req_arena(req);
    Sp__Tenancy__V1__AuditActor *actor = sp_arena_alloc(a, sizeof(*actor));
    Sp__Tenancy__V1__AuditTarget *target = sp_arena_alloc(a, sizeof(*target));
    sp__tenancy__v1__audit_entry__init(e);
    e->id = col(res, i, 0);
    e->has_at = 1;
    e->at = spsvc_pg_int64(col(res, i, 1));
    if (actor != NULL) {
        sp__tenancy__v1__audit_actor__init(actor);
        actor->user_id = col(res, i, 2);
        actor->role = col(res, i, 3);
        e->actor = actor;
    }
    e->client_id = col(res, i, 4);
    e->action = col(res, i, 5);
    if (target != NULL) {
        sp__tenancy__v1__audit_target__init(target);
        target->kind = col(res, i, 6);
        target->id = col(res, i, 7);
        e->target = target;
    }
    e->request_id = col(res, i, 8);
    e->ip = col(res, i, 9);
    e->details_json = col(res, i, 10);
}

/* ListAudit: newest first. An admin sees every row (?clientId= narrows it), a client_admin
 * (either role) only its own client's: another clientId is 404. ?action= ?from= ?to=
 * (from inclusive, to exclusive). 403 for anyone else. */
static sp_status list_audit(spbus_req *req)
{
    const Sp__Tenancy__V1__ListAuditRequest *in = (const void *)spbus_req_input(req);
    spsvc_principal p;
    spsvc_page pg;
    PGresult *res = NULL;
    spdb *db = NULL;
    char from_s[24], to_s[24];

    sp_status s = spsvc_require_role_or_reply(req, SPSVC_ROLE_ADMIN | SPSVC_ROLE_CLIENT_ADMIN, &p);
    if (s == SP_OK) s = spsvc_page_or_reply(&pg, req, in->has_limit, in->limit, in->cursor);
    if (s == SP_OK) {
        spsvc_fields f;
        spsvc_fields_init(&f);
        if (in->client_id != NULL)
            spsvc_fields_add(&f, "clientId", spsvc_check_uuid(in->client_id));
        spsvc_fields_add(&f, "action", spsvc_check_opt_text(in->action, AUDIT_ACTION_MAX));
        if (in->has_from && in->has_to && in->to <= in->from)
            spsvc_fields_add(&f, "to", "must be after from");
        s = spsvc_fields_or_reply(req, &f);
    }
    const char *client = in->client_id;
    if (s == SP_OK && p.role == SPSVC_ROLE_CLIENT_ADMIN) {
        if (client != NULL && strcmp(client, p.client_id) != 0)
            s = spsvc_fail(req, SP_ERR_NOT_FOUND, "client not found");
        client = p.client_id;
    }
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;

    snprintf(from_s, sizeof(from_s), "%lld", (long long)in->from);
    snprintf(to_s, sizeof(to_s), "%lld", (long long)in->to);
    const char *params[] = {client,
                            in->action,
                            in->has_from ? from_s : NULL,
                            in->has_to ? to_s : NULL,
                            spsvc_page_after(&pg),
                            pg.id_s,
                            pg.fetch_s};
    s = spdb_query(&res, db, sql_list, 7, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "list_audit");

    spsvc_reply_page(req, &pg, res, 1, 11, &sp__tenancy__v1__list_audit_reply__descriptor,
                     entry_from_row);
    PQclear(res);
    return SP_OK;
}

static const spbus_route routes[] = {
    {"ListAudit", list_audit, &sp__tenancy__v1__list_audit_request__descriptor, NULL},
};

void audit_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
