/* auth.c -- tenancy's calls to auth, which owns users, memberships and sessions: tenancy
 * calls as the service itself (ctx.role "service"), keeping the request id, ip and acting
 * user of the request it serves. */
#include <stdio.h>
#include <string.h>

#include "spcrypto.h"
#include "tenancy.h"

sp_status ten_auth_call(ProtobufCMessage **out, Sp__V1__Error **err, spbus *bus, spbus_req *req,
                        const char *method, const ProtobufCMessage *in,
                        const ProtobufCMessageDescriptor *reply_desc, sp_arena *arena)
{
    return spsvc_call(out, err, bus, req, "auth", method, in, reply_desc, TEN_AUTH_TIMEOUT_MS,
                      arena);
}

char *ten_create_key(spbus_req *req, const char *what)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    sp_arena *a = spbus_req_arena(req);
    uint8_t digest[32];
    char *hex = sp_arena_alloc(a, 65);
    char *text = sp_arena_printf(a, "%s|%s|%s", what,
                                 ctx != NULL && ctx->user_id != NULL ? ctx->user_id : "",
                                 ctx != NULL && ctx->request_id != NULL ? ctx->request_id : "");
    if (hex == NULL || text == NULL) return NULL;
    spcrypto_sha256(digest, text, strlen(text));
    spcrypto_hex(hex, digest, sizeof(digest));
    return hex;
}

sp_status ten_auth_create_member(Sp__Auth__V1__CreateMemberReply **out, Sp__V1__Error **err,
                                 spbus_req *req, const char *key, const char *name,
                                 const char *email, const char *password, const char *client_id,
                                 const char *client_role)
{
    Sp__Auth__V1__CreateMemberRequest in = SP__AUTH__V1__CREATE_MEMBER_REQUEST__INIT;
    in.key = (char *)key;
    in.name = (char *)name;
    in.email = (char *)email;
    in.password = (char *)password;
    in.client_id = (char *)client_id;
    in.client_role = (char *)client_role;
    *out = NULL;
    return ten_auth_call((ProtobufCMessage **)out, err, ten_of(req)->bus, req, "CreateMember",
                         &in.base, &sp__auth__v1__create_member_reply__descriptor,
                         spbus_req_arena(req));
}

/* A call whose reply carries nothing: SP_OK or the status of auth's error. */
static sp_status call_void(spbus *bus, spbus_req *req, const char *method,
                           const ProtobufCMessage *in, const ProtobufCMessageDescriptor *reply,
                           sp_arena *a)
{
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s = ten_auth_call(&out, &err, bus, req, method, in, reply, a);
    if (s != SP_OK)
        sp_log_warn(req != NULL ? spbus_req_id(req) : NULL, "auth_call_failed", "method", method,
                    "code", sp_error_code(s), "message",
                    err != NULL && err->message != NULL ? err->message : "");
    return s;
}

sp_status ten_auth_activate(spbus *bus, spbus_req *req, const char *key, sp_arena *a)
{
    Sp__Auth__V1__ActivateMemberRequest in = SP__AUTH__V1__ACTIVATE_MEMBER_REQUEST__INIT;
    in.key = (char *)key;
    return call_void(bus, req, "ActivateMember", &in.base,
                     &sp__auth__v1__activate_member_reply__descriptor, a);
}

sp_status ten_auth_discard(spbus *bus, spbus_req *req, const char *key, sp_arena *a)
{
    Sp__Auth__V1__DiscardMemberRequest in = SP__AUTH__V1__DISCARD_MEMBER_REQUEST__INIT;
    in.key = (char *)key;
    return call_void(bus, req, "DiscardMember", &in.base,
                     &sp__auth__v1__discard_member_reply__descriptor, a);
}

sp_status ten_auth_remove(spbus *bus, spbus_req *req, const char *user_id, const char *client_id,
                          sp_arena *a)
{
    Sp__Auth__V1__RemoveMembershipRequest in = SP__AUTH__V1__REMOVE_MEMBERSHIP_REQUEST__INIT;
    in.user_id = (char *)user_id;
    in.client_id = (char *)client_id;
    sp_status s = call_void(bus, req, "RemoveMembership", &in.base,
                            &sp__auth__v1__remove_membership_reply__descriptor, a);
    return s == SP_ERR_NOT_FOUND ? SP_OK : s; /* removed already: a retry */
}

sp_status ten_auth_suspend(spbus *bus, spbus_req *req, const char *client_id, bool suspended,
                           sp_arena *a)
{
    Sp__Auth__V1__SetClientSuspendedRequest in = SP__AUTH__V1__SET_CLIENT_SUSPENDED_REQUEST__INIT;
    in.client_id = (char *)client_id;
    in.has_suspended = 1;
    in.suspended = suspended;
    return call_void(bus, req, "SetClientSuspended", &in.base,
                     &sp__auth__v1__set_client_suspended_reply__descriptor, a);
}
