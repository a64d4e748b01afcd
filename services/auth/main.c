/* main.c -- the auth service: wires config, the bus, PostgreSQL, the admin listener and the
 * routes of users.c and sessions.c; runs until SIGINT/SIGTERM, then drains. */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "spadmin.h"

static const sp_cfg_item cfg_items[] = {
    {"SP_NATS_URL", SP_CFG_STR, "nats://127.0.0.1:4222", 1, 1024, "NATS server URL(s)"},
    {"SP_NATS_USER", SP_CFG_STR, "auth", 0, 128, "NATS user of this service"},
    {"SP_NATS_PASSWORD", SP_CFG_SECRET, "", 0, 1024, "NATS password of this service"},
    {"SP_DATABASE_URL", SP_CFG_STR, "postgresql://sp@127.0.0.1:55432/smartpark", 1, 2048,
     "PostgreSQL connection URI"},
    {"SP_REDIS_URL", SP_CFG_STR, "redis://127.0.0.1:56379", 1, 1024,
     "Redis URL (revoked sessions, login failure counters)"},
    {"SP_ADMIN_ADDR", SP_CFG_STR, "127.0.0.1:9101", 3, 128,
     "host:port of /healthz /readyz /metrics"},
    {"SP_JWT_SECRET", SP_CFG_SECRET, NULL, SPJWT_MIN_KEY, 4096,
     "HS256 key of access tokens: the bytes of the string as given"},
    {"SP_JWT_ISSUER", SP_CFG_STR, "smartpark", 1, 256, "iss of access tokens"},
    {"SP_JWT_AUDIENCE", SP_CFG_STR, "smartpark-api", 1, 256, "aud of access tokens"},
    {"SP_ACCESS_TTL_S", SP_CFG_INT, "900", 60, 86400, "access token lifetime, seconds"},
    {"SP_REFRESH_TTL_S", SP_CFG_INT, "1209600", 60, 31536000, "refresh token lifetime, seconds"},
    {"SP_BUS_WORKERS", SP_CFG_INT, "4", 1, 64, "bus worker threads (one database connection each)"},
    {"SP_LOGIN_FAILS_PER_ACCOUNT", SP_CFG_INT, "10", 1, 1000000,
     "failed logins of one email per SP_LOGIN_ACCOUNT_WINDOW_S (429 beyond)"},
    {"SP_LOGIN_ACCOUNT_WINDOW_S", SP_CFG_INT, "900", 1, 86400,
     "window of the per-account count, seconds"},
    {"SP_LOGIN_FAILS_PER_IP", SP_CFG_INT, "100", 1, 1000000,
     "failed logins from one client ip per SP_LOGIN_IP_WINDOW_S (429 beyond)"},
    {"SP_LOGIN_IP_WINDOW_S", SP_CFG_INT, "60", 1, 86400, "window of the per-ip count, seconds"},
    {"SP_SHUTDOWN_S", SP_CFG_INT, "10", 1, 300, "seconds allowed to drain on SIGTERM"},
};
#define CFG_N (sizeof(cfg_items) / sizeof(cfg_items[0]))

/* What /readyz looks at: the bus, and PostgreSQL through a connection of its own. */
typedef struct {
    spbus *bus;
    const char *db_url;
    pthread_mutex_t mu;
    spdb *db; /* guarded by mu */
} ready_state;

static bool ready(void *user, char *why, size_t whylen)
{
    ready_state *r = user;
    bool db_ok;

    if (!spbus_connected(r->bus)) {
        snprintf(why, whylen, "nats down");
        return false;
    }
    pthread_mutex_lock(&r->mu);
    if (r->db == NULL) spdb_connect(&r->db, r->db_url);
    db_ok = r->db != NULL && spdb_ping(r->db);
    pthread_mutex_unlock(&r->mu);
    if (!db_ok) {
        snprintf(why, whylen, "postgres down");
        return false;
    }
    return true;
}

static int fail(const char *msg, sp_status s)
{
    sp_log_error(NULL, msg, "code", sp_error_code(s));
    return 1;
}

int main(int argc, char **argv)
{
    char err[256] = "";
    sp_config *cfg = NULL;
    spbus *bus = NULL;
    spbus_service *service = NULL;
    spadmin *admin = NULL;
    auth_svc svc;
    ready_state rs = {.mu = PTHREAD_MUTEX_INITIALIZER};
    sigset_t sigs;
    int rc = 1;

    memset(&svc, 0, sizeof(svc));
    sp_log_init("auth", SP_LOG_INFO);
    if (sp_config_load(&cfg, "auth", cfg_items, CFG_N, argc, argv, err, sizeof(err)) != SP_OK) {
        sp_log_error(NULL, "bad_config", "reason", err);
        return 2;
    }
    if (cfg == NULL) return 0; /* --help */

    /* every thread started from here on inherits the mask: only sigwait sees the signals */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    const char *secret = sp_config_str(cfg, "SP_JWT_SECRET");
    svc.jwt = (spjwt_keys){.key = (const uint8_t *)secret,
                           .keylen = strlen(secret),
                           .issuer = sp_config_str(cfg, "SP_JWT_ISSUER"),
                           .audience = sp_config_str(cfg, "SP_JWT_AUDIENCE"),
                           .leeway_s = 0};
    svc.access_ttl_s = sp_config_int(cfg, "SP_ACCESS_TTL_S");
    svc.refresh_ttl_s = sp_config_int(cfg, "SP_REFRESH_TTL_S");
    svc.workers = (int)sp_config_int(cfg, "SP_BUS_WORKERS");
    svc.rl_fails_per_account = (int)sp_config_int(cfg, "SP_LOGIN_FAILS_PER_ACCOUNT");
    svc.rl_account_window_s = (int)sp_config_int(cfg, "SP_LOGIN_ACCOUNT_WINDOW_S");
    svc.rl_fails_per_ip = (int)sp_config_int(cfg, "SP_LOGIN_FAILS_PER_IP");
    svc.rl_ip_window_s = (int)sp_config_int(cfg, "SP_LOGIN_IP_WINDOW_S");
    svc.db_url = sp_config_str(cfg, "SP_DATABASE_URL");
    svc.db = calloc((size_t)svc.workers, sizeof(spdb *));
    svc.redis_url = sp_config_str(cfg, "SP_REDIS_URL");
    svc.redis = calloc((size_t)svc.workers, sizeof(spredis *));
    svc.redis_gen = calloc((size_t)svc.workers, sizeof(unsigned));
    rs.db_url = svc.db_url;

    /* the dummy hash: a random password nobody knows, hashed like a real one */
    uint8_t rnd[24];
    char dummy[40];
    spcrypto_random(rnd, sizeof(rnd));
    spcrypto_b64url_encode(dummy, rnd, sizeof(rnd));
    sp_status s =
        svc.db == NULL || svc.redis == NULL || svc.redis_gen == NULL
            ? SP_ERR_INTERNAL
            : spcrypto_password_hash(svc.dummy_hash, sizeof(svc.dummy_hash), dummy, strlen(dummy));
    explicit_bzero(dummy, sizeof(dummy));
    if (s != SP_OK) {
        rc = fail("startup_failed", s);
        goto out;
    }

    spbus_opts bo = {.url = sp_config_str(cfg, "SP_NATS_URL"),
                     .user = sp_config_str(cfg, "SP_NATS_USER"),
                     .password = sp_config_str(cfg, "SP_NATS_PASSWORD"),
                     .name = "auth",
                     .connections = 1};
    s = spbus_connect(&bus, &bo);
    if (s != SP_OK) {
        rc = fail("nats_connect_failed", s);
        goto out;
    }
    svc.bus = bus;
    rs.bus = bus;

    users_register(&svc);
    sessions_register(&svc);
    profile_register(&svc);
    memberships_register(&svc);
    s = auth_outbox_create(&svc.outbox, bus, svc.db_url);
    if (s != SP_OK) {
        rc = fail("outbox_start_failed", s);
        goto out;
    }
    s = auth_keeper_create(&svc.keeper, svc.db_url, svc.redis_url, svc.access_ttl_s);
    if (s != SP_OK) {
        rc = fail("keeper_start_failed", s);
        goto out;
    }
    s = spbus_serve(&service, bus, "auth", "auth", svc.routes, svc.nroutes, svc.workers, &svc);
    if (s != SP_OK) {
        rc = fail("serve_failed", s);
        goto out;
    }
    s = spadmin_start(&admin, sp_config_str(cfg, "SP_ADMIN_ADDR"), ready, &rs);
    if (s != SP_OK) {
        rc = fail("admin_start_failed", s);
        goto out;
    }
    sp_log_info(NULL, "started", "adminAddr", sp_config_str(cfg, "SP_ADMIN_ADDR"));

    int sig = 0;
    sigwait(&sigs, &sig);
    sp_log_info(NULL, "stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* a drain that hangs must not keep the process past SP_SHUTDOWN_S */
    int shutdown_ms = (int)sp_config_int(cfg, "SP_SHUTDOWN_S") * 1000;
    alarm((unsigned)(shutdown_ms / 1000));
    spbus_drain(bus, shutdown_ms > 1500 ? shutdown_ms - 1000 : shutdown_ms / 2);
    rc = 0;

out:
    spadmin_stop(admin); /* first: /readyz looks at the bus */
    spbus_service_destroy(service);
    auth_outbox_destroy(svc.outbox); /* before the bus it publishes on */
    auth_keeper_destroy(svc.keeper);
    spbus_destroy(bus);
    if (svc.db != NULL)
        for (int i = 0; i < svc.workers; i++)
            spdb_destroy(svc.db[i]);
    free(svc.db);
    if (svc.redis != NULL)
        for (int i = 0; i < svc.workers; i++)
            spredis_destroy(svc.redis[i]);
    free(svc.redis);
    free(svc.redis_gen);
    spdb_destroy(rs.db);
    sp_config_destroy(cfg);
    if (rc == 0) sp_log_info(NULL, "stopped");
    return rc;
}
