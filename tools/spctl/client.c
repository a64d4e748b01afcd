/* client.c -- "spctl create-client": creates a client (tenant), optionally with its first
 * client_manager and approved at once, through the tenancy service on the bus (so that
 * auth and tenancy both hold the manager, or neither does). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp/tenancy/v1/tenancy.pb-c.h"
#include "spbus.h"
#include "spcrypto.h"
#include "spctl.h"

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
    s = spctl_bus_connect(&bus, "create-client");
    if (s != SP_OK) return s;

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
    printf("request id %s\n", rid);
    s = a == NULL ? SP_ERR_INTERNAL
                  : spctl_call((ProtobufCMessage **)&c, bus, "create-client", rid, "tenancy",
                               "CreateClient", &in.base, &sp__tenancy__v1__client_reply__descriptor,
                               NULL, a);
    if (s == SP_OK && approve && c->status != NULL && strcmp(c->status, "PENDING") == 0) {
        Sp__Tenancy__V1__ApproveClientRequest ap = SP__TENANCY__V1__APPROVE_CLIENT_REQUEST__INIT;
        ap.id = c->id;
        s = spctl_call((ProtobufCMessage **)&c, bus, "create-client", rid, "tenancy",
                       "ApproveClient", &ap.base, &sp__tenancy__v1__client_reply__descriptor, NULL,
                       a);
    }
    if (s == SP_OK && c != NULL)
        printf("client %s \"%s\" %s%s%s\n", c->id, c->name, c->status,
               email != NULL ? ", manager " : "", email != NULL ? email : "");
    sp_arena_destroy(a);
    spbus_destroy(bus);
    return s;
}
