/* revoked.c -- the revoked sessions, kept in the gateway's memory so that a token check costs
 * no Redis round trip (a Redis hop per request was ~15% of GET /v1/me, bench/results).
 *
 * Redis stays the source (api.md): auth writes each revoked sid there before the revoking
 * call returns. The set here is a copy that is
 *   - filled from Redis (SCAN sp:revoked:sid:*) at start, after every NATS disconnect,
 *     whenever it was not fresh, and every GW_REVOKED_RELOAD_MS anyway;
 *   - told of each new revocation by the reply of the revoking call this gateway made
 *     (sp.v1.Reply.revoked_sessions, applied before the gateway answers: the caller's next
 *     request is refused) and by auth's sp.auth.changed.sessions message (every gateway);
 *   - "fresh" only while Redis answers and holds its loaded key (auth rewrote the recent
 *     revocations into it) and NATS is connected: otherwise a token is refused with 503,
 *     never accepted unchecked. A keeper task checks that every GW_REVOKED_CHECK_MS.
 * Sessions are never un-revoked, so an entry kept longer than needed is harmless; entries
 * go GW access-token lifetimes after they were last seen in Redis or announced. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "sp/auth/v1/auth.pb-c.h"
#include "spadmin.h"

#define GW_REVOKED_CHECK_MS 250
#define GW_REVOKED_RELOAD_MS 10000
#define GW_REVOKED_SCAN_COUNT "1000"
#define SID_MAX 36 /* a canonical UUID */
#define REVOKED_PREFIX "sp:revoked:sid:"
/* Set by auth once Redis holds every recent revocation (services/auth/revocations.c). */
#define REVOCATIONS_LOADED_KEY "sp:revocations:loaded"

typedef struct {
    char sid[SID_MAX + 1]; /* "" marks an empty slot */
    int64_t until_s;       /* monotonic seconds: forgotten after that */
} entry;

struct gw_revoked {
    pthread_rwlock_t lock; /* guards tab, cap, n */
    entry *tab;            /* open addressing, linear probing; cap a power of two */
    size_t cap, n;
    int64_t ttl_s;
    atomic_bool fresh;
    spbus *bus;
    spredis *r;                /* the keeper task's */
    sp_task *keeper;           /* runs keep() every GW_REVOKED_CHECK_MS */
    uint64_t seen_disconnects; /* the keeper's: spbus_disconnects at the last reload */
    int64_t last_reload_us;
};

static int64_t now_s(void)
{
    return sp_monotonic_us() / 1000000;
}

/* FNV-1a of the sid. */
static size_t hash(const char *sid)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *sid != '\0'; sid++)
        h = (h ^ (unsigned char)*sid) * 1099511628211ULL;
    return (size_t)h;
}

/* The slot of 'sid', or the empty slot where it would go. */
static entry *slot_locked(entry *tab, size_t cap, const char *sid)
{
    size_t i = hash(sid) & (cap - 1);
    while (tab[i].sid[0] != '\0' && strcmp(tab[i].sid, sid) != 0)
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

/* Rebuilds the table at twice the live entries' room, dropping the expired ones. */
static bool rehash_locked(gw_revoked *rv, int64_t now)
{
    size_t live = 0;
    for (size_t i = 0; i < rv->cap; i++)
        if (rv->tab[i].sid[0] != '\0' && rv->tab[i].until_s > now) live++;
    size_t cap = 1024;
    while (cap < (live + 1) * 4)
        cap *= 2;
    entry *tab = calloc(cap, sizeof(*tab));
    if (tab == NULL) return false;
    for (size_t i = 0; i < rv->cap; i++)
        if (rv->tab[i].sid[0] != '\0' && rv->tab[i].until_s > now)
            *slot_locked(tab, cap, rv->tab[i].sid) = rv->tab[i];
    free(rv->tab);
    rv->tab = tab;
    rv->cap = cap;
    rv->n = live;
    return true;
}

/* Adds 'sid' (kept ttl_s from now; a sid already there gets its time renewed). */
static void revoked_add(gw_revoked *rv, const char *sid)
{
    size_t len = sid != NULL ? strnlen(sid, SID_MAX + 1) : 0;
    if (rv == NULL || len == 0 || len > SID_MAX) return;
    int64_t now = now_s();
    pthread_rwlock_wrlock(&rv->lock);
    if ((rv->n + 1) * 2 > rv->cap && !rehash_locked(rv, now)) {
        pthread_rwlock_unlock(&rv->lock);
        sp_log_error(NULL, "revoked_set_full", "sid", sid);
        atomic_store(&rv->fresh, false); /* refuse tokens rather than forget one */
        return;
    }
    entry *e = slot_locked(rv->tab, rv->cap, sid);
    if (e->sid[0] == '\0') {
        memcpy(e->sid, sid, len);
        e->sid[len] = '\0';
        rv->n++;
    }
    e->until_s = now + rv->ttl_s;
    pthread_rwlock_unlock(&rv->lock);
}

sp_status gw_revoked_check(gw_revoked *rv, const char *sid)
{
    if (rv == NULL || !atomic_load(&rv->fresh)) return SP_ERR_UNAVAILABLE;
    size_t len = strnlen(sid, SID_MAX + 1);
    if (len == 0 || len > SID_MAX) return SP_ERR_INVALID_TOKEN;
    pthread_rwlock_rdlock(&rv->lock);
    const entry *e = slot_locked(rv->tab, rv->cap, sid);
    bool revoked = e->sid[0] != '\0';
    pthread_rwlock_unlock(&rv->lock);
    return revoked ? SP_ERR_INVALID_TOKEN : SP_OK;
}

/* spbus_on_revoked: a revoking call this gateway made. */
static void on_reply_revoked(void *user, const char *sid)
{
    revoked_add(user, sid);
}

/* sp.auth.changed.sessions: a revocation made through any gateway. */
static void on_announced(void *user, const char *subject, const void *data, size_t len)
{
    (void)subject;
    Sp__Auth__V1__SessionsRevoked *m = sp__auth__v1__sessions_revoked__unpack(NULL, len, data);
    if (m == NULL) {
        sp_log_warn(NULL, "revocation_message_malformed");
        return;
    }
    for (size_t i = 0; i < m->n_session_ids; i++)
        revoked_add(user, m->session_ids[i]);
    sp__auth__v1__sessions_revoked__free_unpacked(m, NULL);
}

/* Adds every sp:revoked:sid:* of Redis; false when Redis failed midway. */
static bool reload(gw_revoked *rv)
{
    char cursor[32] = "0";
    size_t count = 0;
    do {
        redisReply *rep = NULL;
        sp_status s = spredis_cmd(&rep, rv->r, "SCAN", cursor, "MATCH", REVOKED_PREFIX "*", "COUNT",
                                  GW_REVOKED_SCAN_COUNT, NULL);
        bool ok = s == SP_OK && rep != NULL && rep->type == REDIS_REPLY_ARRAY &&
                  rep->elements == 2 && rep->element[0]->type == REDIS_REPLY_STRING &&
                  rep->element[0]->len < sizeof(cursor) &&
                  rep->element[1]->type == REDIS_REPLY_ARRAY;
        if (ok) {
            memcpy(cursor, rep->element[0]->str, rep->element[0]->len);
            cursor[rep->element[0]->len] = '\0';
            redisReply *keys = rep->element[1];
            for (size_t i = 0; i < keys->elements; i++) {
                const redisReply *k = keys->element[i];
                size_t plen = sizeof(REVOKED_PREFIX) - 1;
                if (k->type == REDIS_REPLY_STRING && k->len > plen) {
                    revoked_add(rv, k->str + plen);
                    count++;
                }
            }
        }
        if (rep != NULL) freeReplyObject(rep);
        if (!ok) return false;
    } while (strcmp(cursor, "0") != 0);
    char n[24];
    snprintf(n, sizeof(n), "%zu", count);
    sp_log_debug(NULL, "revocations_loaded", "count", n);
    return true;
}

/* One round of the keeper: fresh only while NATS is connected and Redis holds the loaded key;
 * reloads after a NATS disconnect (announcements may have been missed), after being stale,
 * and every GW_REVOKED_RELOAD_MS. */
static void keep(void *arg)
{
    gw_revoked *rv = arg;
    uint64_t d = spbus_disconnects(rv->bus);
    bool ok = spbus_connected(rv->bus) && spredis_exists(rv->r, REVOCATIONS_LOADED_KEY);
    bool due = !atomic_load(&rv->fresh) || d != rv->seen_disconnects ||
               sp_monotonic_us() - rv->last_reload_us >= (int64_t)GW_REVOKED_RELOAD_MS * 1000;
    if (ok && due) {
        /* the key again after the scan: a Redis emptied meanwhile is not taken as loaded */
        ok = reload(rv) && spredis_exists(rv->r, REVOCATIONS_LOADED_KEY);
        if (ok) {
            rv->seen_disconnects = d;
            rv->last_reload_us = sp_monotonic_us();
        }
    }
    if (ok != atomic_load(&rv->fresh)) {
        atomic_store(&rv->fresh, ok);
        if (ok)
            sp_log_info(NULL, "revocations_fresh");
        else
            sp_log_warn(NULL, "revocations_stale", "why",
                        "nats or redis down, or redis not loaded");
    }
    pthread_rwlock_rdlock(&rv->lock);
    double n = (double)rv->n;
    pthread_rwlock_unlock(&rv->lock);
    spadmin_gauge_set("sp_gateway_revoked_sessions", "", n);
}

sp_status gw_revoked_start(gw_revoked **out, spbus *bus, const char *redis_url, int64_t ttl_s)
{
    *out = NULL;
    gw_revoked *rv = calloc(1, sizeof(*rv));
    if (rv == NULL) return SP_ERR_INTERNAL;
    pthread_rwlock_init(&rv->lock, NULL);
    atomic_init(&rv->fresh, false);
    rv->bus = bus;
    rv->ttl_s = ttl_s > 0 ? ttl_s : 1;
    rv->cap = 1024;
    rv->tab = calloc(rv->cap, sizeof(*rv->tab));
    spadmin_metric_help("sp_gateway_revoked_sessions", "gauge",
                        "revoked sessions this gateway knows (its copy of Redis)");
    sp_status s = rv->tab != NULL ? SP_OK : SP_ERR_INTERNAL;
    if (s == SP_OK) s = spredis_create(&rv->r, redis_url, 500);
    if (s == SP_OK) {
        spbus_on_revoked(bus, on_reply_revoked, rv);
        s = spbus_subscribe(bus, GW_SESSIONS_REVOKED_SUBJECT, on_announced, rv);
    }
    if (s == SP_OK) s = sp_task_start(&rv->keeper, GW_REVOKED_CHECK_MS, keep, rv);
    sp_task_wake(rv->keeper); /* the first load at once */
    *out = rv; /* also on failure: the bus may point at it already (gw_revoked_free) */
    return s;
}

/* Stops the keeper. The bus (its hook and subscription point here) must be destroyed
 * before the set is freed: gw_revoked_free. */
void gw_revoked_stop(gw_revoked *rv)
{
    if (rv == NULL) return;
    sp_task_stop(rv->keeper);
    rv->keeper = NULL;
}

void gw_revoked_free(gw_revoked *rv)
{
    if (rv == NULL) return;
    gw_revoked_stop(rv);
    spredis_destroy(rv->r);
    free(rv->tab);
    pthread_rwlock_destroy(&rv->lock);
    free(rv);
}
