/* main.c -- the ingest service on the service kit (libs/spsvc): cameras' events and
 * heartbeats (events.c) checked against the read model (model.c) and written to
 * SP_EVENTS. No database: Redis holds the revoked keys and the signatures seen. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"

static const sp_cfg_item cfg_items[] = {
    {"SP_MASTER_KEY", SP_CFG_SECRET, NULL, 64, 64,
     "32 bytes as 64 hex digits: opens the API keys' secrets to check HMAC signatures"},
};

static ing_svc g_ing;

static sp_status start(spsvc *kit)
{
    const char *mk = sp_config_str(spsvc_config(kit), "SP_MASTER_KEY");
    if (spcrypto_hex_decode(g_ing.master_key, sizeof(g_ing.master_key), mk, strlen(mk)) !=
        (long)sizeof(g_ing.master_key)) {
        sp_log_error(NULL, "bad_setting", "name", "SP_MASTER_KEY", "why", "not 64 hex digits");
        return SP_ERR_VALIDATION_FAILED;
    }
    g_ing.js = calloc((size_t)spsvc_workers(kit), sizeof(spbus_js_batch *));
    if (g_ing.js == NULL) return SP_ERR_INTERNAL;
    sp_status s = ing_model_start(&g_ing.model, kit, g_ing.master_key);
    if (s != SP_OK) return s;
    events_register(kit);
    return SP_OK;
}

/* Ready when SP_EVENTS exists (bus.md): asked at most every 5 s. */
static bool ready(spsvc *kit, char *why, size_t whylen)
{
    static _Atomic int64_t checked_us;
    static atomic_bool present;
    int64_t now = sp_monotonic_us();
    if (now - atomic_load(&checked_us) > 5000000) {
        atomic_store(&present, spbus_stream_exists(spsvc_bus(kit), "SP_EVENTS"));
        atomic_store(&checked_us, now);
    }
    if (atomic_load(&present)) return true;
    snprintf(why, whylen, "stream SP_EVENTS is missing");
    return false;
}

static void stop(spsvc *kit)
{
    for (int i = 0; g_ing.js != NULL && i < spsvc_workers(kit); i++)
        spbus_js_batch_destroy(g_ing.js[i]);
    free(g_ing.js);
    g_ing.js = NULL;
    ing_model_free(g_ing.model);
    g_ing.model = NULL;
    memset(g_ing.master_key, 0, sizeof(g_ing.master_key));
}

int main(int argc, char **argv)
{
    const spsvc_def def = {.name = "ingest",
                           .admin_addr = "127.0.0.1:9104",
                           .needs = SPSVC_REDIS,
                           .items = cfg_items,
                           .nitems = sizeof(cfg_items) / sizeof(cfg_items[0]),
                           .start = start,
                           .stop = stop,
                           .ready = ready,
                           .user = &g_ing};
    return spsvc_main(&def, argc, argv);
}
