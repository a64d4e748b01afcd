/* revocations.c -- the keeper: a thread that refills Redis with the recent revocations as
 * soon as Redis comes back empty (restarted without its data), so that the gateway, which
 * refuses every token while the loaded key is missing, is back within a second without
 * waiting for a revoking call. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"

struct auth_keeper {
    char *db_url, *redis_url;
    int64_t access_ttl_s;
    spredis *r; /* the keeper's own connections, made on first use */
    spdb *db;
};

/* One keeper per process: its task belongs to the kit, its connections to this file. */
static struct auth_keeper g_keeper;

/* One check: connects what is missing, rewrites when the key is missing. */
static void keep(void *arg)
{
    struct auth_keeper *k = arg;
    if (k->r == NULL && spredis_create(&k->r, k->redis_url, AUTH_REDIS_TIMEOUT_MS) != SP_OK) return;
    /* Redis answers and holds the key: nothing to do (not answering: the rewrite fails
     * too and is tried again next time) */
    if (spredis_exists(k->r, AUTH_REVOCATIONS_LOADED_KEY)) return;
    if (k->db == NULL && spdb_connect(&k->db, k->db_url) != SP_OK) return;
    sp_status s = auth_revocations_rewrite(k->r, k->db, k->access_ttl_s, NULL);
    if (s != SP_OK) sp_log_debug(NULL, "revocations_rewrite_failed", "code", sp_error_code(s));
}

sp_status auth_keeper_start(spsvc *kit, const char *db_url, const char *redis_url,
                            int64_t access_ttl_s)
{
    struct auth_keeper *k = &g_keeper;
    k->db_url = strdup(db_url);
    k->redis_url = strdup(redis_url);
    k->access_ttl_s = access_ttl_s;
    if (k->db_url == NULL || k->redis_url == NULL) return SP_ERR_INTERNAL;
    /* once before serving, so that tokens are accepted as soon as the service is up */
    keep(k);
    return spsvc_every(kit, NULL, AUTH_KEEPER_MS, keep, k);
}

void auth_keeper_free(void)
{
    struct auth_keeper *k = &g_keeper;
    spredis_destroy(k->r);
    spdb_destroy(k->db);
    free(k->db_url);
    free(k->redis_url);
    memset(k, 0, sizeof(*k));
}
