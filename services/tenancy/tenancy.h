/* tenancy.h -- what the files of the tenancy service share: its state on the service kit
 * (libs/spsvc), the calls to auth, the client row and the audit consumer.
 * Internal to services/tenancy/. Prefix: ten_. */
#ifndef TENANCY_H
#define TENANCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sp/auth/v1/auth.pb-c.h"
#include "sp/tenancy/v1/tenancy.pb-c.h"
#include "spbus.h"
#include "spcore.h"
#include "spdb.h"
#include "spsvc.h"

/* api.md, "Field limits": in Unicode code points. */
#define TEN_NAME_MAX 120
#define TEN_DOCUMENT_MAX 32

/* How long a call to auth may take (CreateMember hashes a password with argon2id). */
#define TEN_AUTH_TIMEOUT_MS 5000
/* The sync task: how often it looks for members and clients auth has not acknowledged,
 * and how old such a row must be (a handler still working on it is left alone). */
#define TEN_SYNC_MS 1000
#define TEN_SYNC_AGE_SQL "interval '3 seconds'"

typedef struct {
    spsvc *kit;
    spbus *bus;
    struct ten_sync *sync;        /* sync.c */
    struct spbus_consumer *audit; /* audit.c: SP_AUDIT into tenancy.audit_log */
} ten_svc;

static inline ten_svc *ten_of(const spbus_req *req)
{
    return spsvc_req_user(req);
}

/* clients.c: CreateClient, ListClients, GetClient, UpdateClient, Approve/Suspend/
 * ReactivateClient. members.c: ListMembers, CreateMember, DeleteMember. audit.c: ListAudit
 * and the SP_AUDIT consumer. requests.c: CreateRequest, ListRequests, GetRequest,
 * Approve / RejectRequest. */
void clients_register(spsvc *kit);
void members_register(spsvc *kit);
void audit_register(spsvc *kit);
void requests_register(spsvc *kit);
sp_status audit_consumer_start(ten_svc *t);
void audit_consumer_stop(ten_svc *t);
bool audit_consumer_ready(ten_svc *t, char *why, size_t whylen);

/* ---- calls to auth (auth.c) ------------------------------------------------------------ */

/* Calls sp.auth.v1.<method> as the service itself (ctx.role "service"), keeping the
 * request id, ip and acting user of 'req' for auth's logs and audit. SP_OK with *out, or
 * the status of auth's error with *err (NULL: no answer in time, SP_ERR_UNAVAILABLE).
 * 'req' may be NULL (the sync task). Replies nothing. */
sp_status ten_auth_call(ProtobufCMessage **out, Sp__V1__Error **err, spbus *bus, spbus_req *req,
                        const char *method, const ProtobufCMessage *in,
                        const ProtobufCMessageDescriptor *reply_desc, sp_arena *arena);
/* The idempotency key of a creation asked by 'req': SHA-256 hex of what 'what' is, the
 * caller's user id and the request id, so that only the same caller's retry of the same
 * request finds the first result. In the request's arena. */
char *ten_create_key(spbus_req *req, const char *what);
/* Creates a member in auth (pending until ActivateMember), or finds the one of 'key'. */
sp_status ten_auth_create_member(Sp__Auth__V1__CreateMemberReply **out, Sp__V1__Error **err,
                                 spbus_req *req, const char *key, const char *name,
                                 const char *email, const char *password, const char *client_id,
                                 const char *client_role);
/* ActivateMember / DiscardMember / RemoveMembership / SetClientSuspended of auth. */
sp_status ten_auth_activate(spbus *bus, spbus_req *req, const char *key, sp_arena *a);
sp_status ten_auth_discard(spbus *bus, spbus_req *req, const char *key, sp_arena *a);
sp_status ten_auth_remove(spbus *bus, spbus_req *req, const char *user_id, const char *client_id,
                          sp_arena *a);
sp_status ten_auth_suspend(spbus *bus, spbus_req *req, const char *client_id, bool suspended,
                           sp_arena *a);

/* ---- clients (clients.c) ----------------------------------------------------------------- */

/* A client row as every client query returns it (columns in this order). */
#define TEN_CLIENT_COLS                                                                            \
    "c.public_id::text, c.name, c.document, c.status,"                                             \
    " (extract(epoch FROM c.created_at) * 1000000)::bigint,"                                       \
    " (extract(epoch FROM c.updated_at) * 1000000)::bigint, c.id, c.auth_status"
enum {
    TEN_C_ID,
    TEN_C_NAME,
    TEN_C_DOCUMENT,
    TEN_C_STATUS,
    TEN_C_CREATED,
    TEN_C_UPDATED,
    TEN_C_INTERNAL,
    TEN_C_AUTH_STATUS
};

/* Reads live client 'id' (public) for the caller: 404 not_found when it does not exist,
 * is deleted, or belongs to another tenant (spsvc_scope_or_reply). FOR UPDATE when
 * 'lock' (inside the caller's transaction). *res has one row; the caller clears it. */
sp_status ten_client_or_reply(PGresult **res, spbus_req *req, spdb *db, const char *id, bool lock);
/* Fills a Client from row 'row' of 'res' (strings point into res). */
void ten_client_from_row(Sp__Tenancy__V1__Client *c, PGresult *res, int row);

/* ---- sync with auth (sync.c) ------------------------------------------------------------ */

/* Starts the task that pushes to auth what auth has not acknowledged yet: members to
 * activate or remove, client suspensions and reactivations. */
sp_status ten_sync_start(ten_svc *t, const char *db_url);
void ten_sync_free(ten_svc *t);

#endif
