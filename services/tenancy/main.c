/* main.c -- the tenancy service: clients, members, requests and the audit log on the
 * service kit (libs/spsvc); the routes of clients.c, members.c, requests.c and audit.c, the sync
 * task that brings auth in line (sync.c) and the SP_AUDIT consumer. */
#include "tenancy.h"

static ten_svc g_ten;

static sp_status start(spsvc *kit)
{
    g_ten.kit = kit;
    g_ten.bus = spsvc_bus(kit);
    clients_register(kit);
    members_register(kit);
    audit_register(kit);
    requests_register(kit);
    sp_status s = ten_sync_start(&g_ten, sp_config_str(spsvc_config(kit), "SP_DATABASE_URL"));
    if (s == SP_OK) s = audit_consumer_start(&g_ten);
    return s;
}

static void stop(spsvc *kit)
{
    (void)kit;
    audit_consumer_stop(&g_ten);
    ten_sync_free(&g_ten);
}

static bool ready(spsvc *kit, char *why, size_t whylen)
{
    (void)kit;
    return audit_consumer_ready(&g_ten, why, whylen);
}

int main(int argc, char **argv)
{
    const spsvc_def def = {.name = "tenancy",
                           .admin_addr = "127.0.0.1:9102",
                           .needs = SPSVC_DB,
                           .outbox = "tenancy.outbox",
                           .start = start,
                           .stop = stop,
                           .ready = ready,
                           .user = &g_ten};
    return spsvc_main(&def, argc, argv);
}
