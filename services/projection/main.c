/* main.c -- the projection service on the service kit (libs/spsvc): the consumer of
 * SP_EVENTS (apply.c) with its copies of the lots (lots.c), the debounce and UNKNOWN timers
 * (timers.c), sp.status.v1.* (status.c),
 * and slot-status changes published from status.outbox by the kit's outbox publisher. */
#include <stdio.h>

#include "projection.h"

static prj_svc g_prj;

static sp_status start(spsvc *kit)
{
    g_prj.kit = kit;
    g_prj.db_url = sp_config_str(spsvc_config(kit), "SP_DATABASE_URL");
    sp_status s = prj_lots_start(&g_prj);
    if (s != SP_OK) return s;
    status_register(kit);
    s = prj_snapshots_start(&g_prj); /* before the consumer and the timers, which feed it */
    if (s != SP_OK) return s;
    s = prj_apply_start(&g_prj); /* before the timers, which read its consumer */
    if (s != SP_OK) return s;
    return prj_timers_start(&g_prj);
}

static void stop(spsvc *kit)
{
    (void)kit;
    prj_apply_stop(&g_prj);
    prj_timers_stop(&g_prj);
    prj_snapshots_stop(&g_prj);
    prj_lots_free(&g_prj);
}

static bool ready(spsvc *kit, char *why, size_t whylen)
{
    (void)kit;
    if (prj_apply_ready(&g_prj)) return true;
    snprintf(why, whylen, "not bound to the SP_EVENTS consumer");
    return false;
}

int main(int argc, char **argv)
{
    const spsvc_def def = {.name = "projection",
                           .admin_addr = "127.0.0.1:9105",
                           .api = "status",
                           .needs = SPSVC_DB | SPSVC_REDIS,
                           .outbox = "status.outbox",
                           .start = start,
                           .stop = stop,
                           .ready = ready,
                           .user = &g_prj};
    return spsvc_main(&def, argc, argv);
}
