/* main.c -- the catalog service on the service kit (libs/spsvc): its settings, the routes
 * of lookups.c, establishments.c, lots.c, slots.c, keys.c and cameras.c, the keeper of the
 * revoked keys in Redis; audit events through catalog.outbox. */
#include <string.h>

#include "catalog.h"
#include "spcrypto.h"

static const sp_cfg_item cfg_items[] = {
    {"SP_MASTER_KEY", SP_CFG_SECRET, NULL, 64, 64,
     "32 bytes as 64 hex digits: seals the API keys' secrets (AES-256-GCM)"},
};

static cat_svc g_cat;

static sp_status start(spsvc *kit)
{
    const sp_config *cfg = spsvc_config(kit);
    const char *mk = sp_config_str(cfg, "SP_MASTER_KEY");
    if (spcrypto_hex_decode(g_cat.master_key, sizeof(g_cat.master_key), mk, strlen(mk)) !=
        (long)sizeof(g_cat.master_key)) {
        sp_log_error(NULL, "bad_setting", "name", "SP_MASTER_KEY", "why", "not 64 hex digits");
        return SP_ERR_VALIDATION_FAILED;
    }
    lookups_register(kit);
    establishments_register(kit);
    lots_register(kit);
    slots_register(kit);
    keys_register(kit);
    cameras_register(kit);
    devices_register(kit);
    return cat_keeper_start(kit, sp_config_str(cfg, "SP_DATABASE_URL"),
                            sp_config_str(cfg, "SP_REDIS_URL"));
}

static void stop(spsvc *kit)
{
    (void)kit;
    cat_keeper_free();
    memset(g_cat.master_key, 0, sizeof(g_cat.master_key));
}

int main(int argc, char **argv)
{
    const spsvc_def def = {.name = "catalog",
                           .admin_addr = "127.0.0.1:9103",
                           .needs = SPSVC_DB | SPSVC_REDIS,
                           .items = cfg_items,
                           .nitems = sizeof(cfg_items) / sizeof(cfg_items[0]),
                           .outbox = "catalog.outbox",
                           .start = start,
                           .stop = stop,
                           .user = &g_cat};
    return spsvc_main(&def, argc, argv);
}
