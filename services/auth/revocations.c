/* revocations.c -- the keeper: a thread that refills Redis with the recent revocations as
 * soon as Redis comes back empty (restarted without its data), so that the gateway, which
 * refuses every token while the loaded key is missing, is back within a second without
 * waiting for a revoking call. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"

struct auth_keeper {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    char *db_url, *redis_url;
    int64_t access_ttl_s;
    spredis *r; /* the keeper's own connections, made on first use */
    spdb *db;
};

/* One check: connects what is missing, rewrites when the key is missing. */
static void keep(auth_keeper *k)
{
    if (k->r == NULL && spredis_create(&k->r, k->redis_url, AUTH_REDIS_TIMEOUT_MS) != SP_OK)
        return;
    /* Redis answers and holds the key: nothing to do (not answering: the rewrite fails
     * too and is tried again next time) */
    if (spredis_exists(k->r, AUTH_REVOCATIONS_LOADED_KEY)) return;
    if (k->db == NULL && spdb_connect(&k->db, k->db_url) != SP_OK) return;
    sp_status s = auth_revocations_rewrite(k->r, k->db, k->access_ttl_s, NULL);
    if (s != SP_OK) sp_log_debug(NULL, "revocations_rewrite_failed", "code", sp_error_code(s));
}

static void *keeper_main(void *arg)
{
    auth_keeper *k = arg;

    pthread_mutex_lock(&k->mu);
    while (!k->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)AUTH_KEEPER_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (!k->stop && pthread_cond_timedwait(&k->cv, &k->mu, &until) != ETIMEDOUT) {
        }
        if (k->stop) break;
        pthread_mutex_unlock(&k->mu);
        keep(k);
        pthread_mutex_lock(&k->mu);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

sp_status auth_keeper_create(auth_keeper **out, const char *db_url, const char *redis_url,
                             int64_t access_ttl_s)
{
    *out = NULL;
    auth_keeper *k = calloc(1, sizeof(*k));
    if (k == NULL) return SP_ERR_INTERNAL;
    k->db_url = strdup(db_url);
    k->redis_url = strdup(redis_url);
    k->access_ttl_s = access_ttl_s;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->cv, &ca);
    pthread_condattr_destroy(&ca);
    /* once before serving, so that tokens are accepted as soon as the service is up */
    if (k->db_url != NULL && k->redis_url != NULL) keep(k);
    if (k->db_url == NULL || k->redis_url == NULL ||
        pthread_create(&k->thread, NULL, keeper_main, k) != 0) {
        pthread_cond_destroy(&k->cv);
        pthread_mutex_destroy(&k->mu);
        spredis_destroy(k->r);
        spdb_destroy(k->db);
        free(k->db_url);
        free(k->redis_url);
        free(k);
        return SP_ERR_INTERNAL;
    }
    *out = k;
    return SP_OK;
}

void auth_keeper_destroy(auth_keeper *k)
{
    if (k == NULL) return;
    pthread_mutex_lock(&k->mu);
    k->stop = true;
    pthread_cond_signal(&k->cv);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    pthread_cond_destroy(&k->cv);
    pthread_mutex_destroy(&k->mu);
    spredis_destroy(k->r);
    spdb_destroy(k->db);
    free(k->db_url);
    free(k->redis_url);
    free(k);
}
