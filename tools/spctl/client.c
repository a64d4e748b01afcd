/* client.c -- "spctl create-client": creates a client (tenant), optionally with its first
 * client_manager and approved at once, through the tenancy service on the bus (so that
 * auth and tenancy both hold the manager, or neither does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sp/tenancy/v1/tenancy.pb-c.h"
#include "spbus.h"
#include "spcrypto.h"
#include "spctl.h"

#define CONNECT_WAIT_MS 5000
#define CALL_TIMEOUT_MS 10000

static void help(void)
{
    fputs("usage: spctl create-client --name NAME [--document DOC]\n"
          "                           [--admin-email EMAIL --admin-name NAME] [--approve]\n"
          "                           [--request-id ID]\n\n"
          "Creates a client through the tenancy service (PENDING, or ACTIVE with --approve).\n"
          "With --admin-email, also its first client_manager, whose password comes from\n"
          "SP_CLIENT_ADMIN_PASSWORD. NATS: SP_NATS_URL, SP_NATS_USER (default spctl),\n"
          "SP_NATS_PASSWORD. The request id (printed; a new one unless --request-id) makes a\n"
          "retry safe: the same id answers the same client.\n",
          stdout);
}

/* Calls sp.tenancy.v1.<method> as the operator (ctx.role "service"). */
static sp_status call(ProtobufCMessage **out, Sp__V1__Error **err, spbus *bus, const char *rid,
                      const char *method, const ProtobufCMessage *in, sp_arena *a)
{
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    char subject[64];
    ctx.request_id = (char *)rid;
    ctx.role = "service";
    snprintf(subject, sizeof(subject), "sp.tenancy.v1.%s", method);
    return spbus_request(out, err, bus, subject, &ctx, in,
                         &sp__tenancy__v1__client_reply__descriptor, CALL_TIMEOUT_MS, a);
}

static sp_status report(sp_status s, const Sp__V1__Error *err, const char *what)
{
    if (err == NULL)
        return spctl_fail(s, "create-client: %s: %s", what,
                          s == SP_ERR_UNAVAILABLE ? "tenancy did not answer" : sp_error_code(s));
    for (size_t i = 0; i < err->n_fields; i++)
        fprintf(stderr, "spctl: %s: %s\n", err->fields[i]->path, err->fields[i]->reason);
    return spctl_fail(s, "create-client: %s: %s (%s)", what,
                      err->message != NULL ? err->message : "", err->code);
}

sp_status spctl_create_client(int argc, char **argv)
{
    const char *name = NULL, *doc = NULL, *email = NULL, *aname = NULL, *rid_in = NULL;
    bool approve = false, help_f = false;
    const spctl_opt opts[] = {
        {"--name", true, &name, NULL},         {"--document", true, &doc, NULL},
        {"--admin-email", true, &email, NULL}, {"--admin-name", true, &aname, NULL},
        {"--approve", false, NULL, &approve},  {"--request-id", true, &rid_in, NULL}};
    size_t npos = 0;
    sp_status s =
        spctl_parse(argc, argv, opts, sizeof(opts) / sizeof(opts[0]), NULL, 0, &npos, &help_f);
    if (s != SP_OK) return s;
    if (help_f) {
        help();
        return SP_OK;
    }
    if (name == NULL)
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "create-client: --name is required");
    if ((email == NULL) != (aname == NULL))
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "create-client: --admin-email and --admin-name go together");
    const char *password = spctl_env("SP_CLIENT_ADMIN_PASSWORD");
    if (email != NULL && password == NULL)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "create-client: SP_CLIENT_ADMIN_PASSWORD is not set");
    char rid[SPCRYPTO_UUID_LEN + 64];
    if (rid_in != NULL)
        snprintf(rid, sizeof(rid), "%s", rid_in);
    else
        spcrypto_uuid_v4(rid);

    spbus *bus = NULL;
    const char *user = spctl_env("SP_NATS_USER");
    spbus_opts bo = {.url = spctl_env("SP_NATS_URL") ? spctl_env("SP_NATS_URL")
                                                     : "nats://127.0.0.1:4222",
                     .user = user != NULL ? user : "spctl",
                     .password = spctl_env("SP_NATS_PASSWORD"),
                     .name = "spctl",
                     .connections = 1};
    s = spbus_connect(&bus, &bo);
    for (int waited = 0; s == SP_OK && !spbus_connected(bus) && waited < CONNECT_WAIT_MS;
         waited += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (s != SP_OK || !spbus_connected(bus)) {
        spbus_destroy(bus);
        return spctl_fail(SP_ERR_UNAVAILABLE, "create-client: cannot connect to NATS");
    }

    sp_arena *a = sp_arena_create(4096);
    Sp__Tenancy__V1__NewUser admin = SP__TENANCY__V1__NEW_USER__INIT;
    Sp__Tenancy__V1__CreateClientRequest in = SP__TENANCY__V1__CREATE_CLIENT_REQUEST__INIT;
    in.name = (char *)name;
    in.document = (char *)doc;
    if (email != NULL) {
        admin.name = (char *)aname;
        admin.email = (char *)email;
        admin.password = (char *)password;
        in.admin = &admin;
    }
    Sp__Tenancy__V1__ClientReply *c = NULL;
    Sp__V1__Error *err = NULL;
    printf("request id %s\n", rid);
    s = a == NULL ? SP_ERR_INTERNAL
                  : call((ProtobufCMessage **)&c, &err, bus, rid, "CreateClient", &in.base, a);
    if (s == SP_OK && c == NULL) s = SP_ERR_INTERNAL;
    if (s != SP_OK) {
        s = report(s, err, "create");
    } else if (approve && c->status != NULL && strcmp(c->status, "PENDING") == 0) {
        Sp__Tenancy__V1__ApproveClientRequest ap = SP__TENANCY__V1__APPROVE_CLIENT_REQUEST__INIT;
        ap.id = c->id;
        s = call((ProtobufCMessage **)&c, &err, bus, rid, "ApproveClient", &ap.base, a);
        if (s == SP_OK && c == NULL) s = SP_ERR_INTERNAL;
        if (s != SP_OK) s = report(s, err, "approve");
    }
    if (s == SP_OK && c != NULL)
        printf("client %s \"%s\" %s%s%s\n", c->id, c->name, c->status,
               email != NULL ? ", manager " : "", email != NULL ? email : "");
    sp_arena_destroy(a);
    spbus_destroy(bus);
    return s;
}
