/* bus_fixture.h -- calling a service's sp.<api>.v1.* over NATS as the spctl user, with the
 * caller's role (and client) set in the request's context as the gateway or a service
 * would: for the suites that check a bus API the gateway does not expose (yet). After
 * Link PkgConfig::NATS and spproto. */
#ifndef BUS_FIXTURE_H
#define BUS_FIXTURE_H

#include <check.h>
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>

#include "sp/v1/envelope.pb-c.h"
#include "sptest.h"

#ifndef FIXTURE
#define FIXTURE static __attribute__((unused))
#endif

FIXTURE natsConnection *bus_connect_as(sptest_env *e, const char *user, const char *password_key)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
    ck_assert_int_eq(natsOptions_SetURL(o, e->nats_url), NATS_OK);
    ck_assert_int_eq(natsOptions_SetUserInfo(o, user, sptest_secret(e, password_key)), NATS_OK);
    /* the services' inbox prefix: the ones that consume JetStream answer there only */
    ck_assert_int_eq(natsOptions_SetCustomInboxPrefix(o, "_SP_INBOX"), NATS_OK);
    natsStatus s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    ck_assert_msg(s == NATS_OK, "connect as %s: %s", user, natsStatus_GetText(s));
    return nc;
}

/* What a call answered: "" or the error code, its fields "path=reason;..." and the result
 * (unpacked with the descriptor given, or NULL). */
typedef struct {
    char code[64];
    char fields[1024];
    ProtobufCMessage *out;
} bus_result;

/* Sends 'in' to 'subject' inside an sp.v1.Request whose ctx has 'role' and 'client_id'
 * (either may be NULL: anonymous, no tenant); a user role comes with a user id. */
FIXTURE bus_result bus_request(natsConnection *nc, const char *subject, const char *role,
                               const char *client_id, const ProtobufCMessage *in,
                               const ProtobufCMessageDescriptor *out_desc)
{
    bus_result r;
    uint8_t payload[4096], buf[8192];

    memset(&r, 0, sizeof(r));
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    ctx.request_id = "it-bus-fixture";
    ctx.role = (char *)role;
    if (role != NULL && strcmp(role, "service") != 0) /* a user, as the gateway verified it */
        ctx.user_id = "7d1c5b2a-3e4f-4a6b-8c9d-0e1f2a3b4c5d";
    ctx.client_id = (char *)client_id;
    ctx.has_timeout_us = 1;
    ctx.timeout_us = 10000000;
    Sp__V1__Request req = SP__V1__REQUEST__INIT;
    req.ctx = &ctx;
    req.has_payload = 1;
    ck_assert_uint_le(protobuf_c_message_get_packed_size(in), sizeof(payload));
    req.payload.len = protobuf_c_message_pack(in, payload);
    req.payload.data = payload;
    size_t len = sp__v1__request__pack(&req, buf);

    natsMsg *m = NULL;
    natsStatus ns = natsConnection_Request(&m, nc, subject, (const char *)buf, (int)len, 10000);
    ck_assert_msg(ns == NATS_OK, "%s: %s", subject, natsStatus_GetText(ns));
    Sp__V1__Reply *rep = sp__v1__reply__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                               (const uint8_t *)natsMsg_GetData(m));
    ck_assert_ptr_nonnull(rep);
    if (rep->result_case == SP__V1__REPLY__RESULT_ERROR) {
        snprintf(r.code, sizeof(r.code), "%s", rep->error->code);
        size_t used = 0;
        for (size_t i = 0; i < rep->error->n_fields && used < sizeof(r.fields); i++)
            used += (size_t)snprintf(r.fields + used, sizeof(r.fields) - used, "%s=%s;",
                                     rep->error->fields[i]->path, rep->error->fields[i]->reason);
    } else if (out_desc != NULL) {
        r.out = protobuf_c_message_unpack(out_desc, NULL, rep->payload.len, rep->payload.data);
        ck_assert_ptr_nonnull(r.out);
    }
    sp__v1__reply__free_unpacked(rep, NULL);
    natsMsg_Destroy(m);
    return r;
}

FIXTURE void bus_result_free(bus_result *r)
{
    if (r->out != NULL) protobuf_c_message_free_unpacked(r->out, NULL);
    r->out = NULL;
}

#endif
