/* main.c -- the auth service: its settings and state on the service kit (libs/spsvc), the
 * routes of users.c, sessions.c, profile.c, memberships.c and members.c, and the revocation
 * keeper. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"

static const sp_cfg_item cfg_items[] = {
    {"SP_JWT_SECRET", SP_CFG_SECRET, NULL, SPJWT_MIN_KEY, 4096,
     "HS256 key of access tokens: the bytes of the string as given"},
    {"SP_JWT_ISSUER", SP_CFG_STR, "smartpark", 1, 256, "iss of access tokens"},
    {"SP_JWT_AUDIENCE", SP_CFG_STR, "smartpark-api", 1, 256, "aud of access tokens"},
    {"SP_ACCESS_TTL_S", SP_CFG_INT, "900", 60, 86400, "access token lifetime, seconds"},
    {"SP_REFRESH_TTL_S", SP_CFG_INT, "1209600", 60, 31536000, "refresh token lifetime, seconds"},
    {"SP_LOGIN_FAILS_PER_ACCOUNT", SP_CFG_INT, "10", 1, 1000000,
     "failed logins of one email per SP_LOGIN_ACCOUNT_WINDOW_S (429 beyond)"},
    {"SP_LOGIN_ACCOUNT_WINDOW_S", SP_CFG_INT, "900", 1, 86400,
     "window of the per-account count, seconds"},
    {"SP_LOGIN_FAILS_PER_IP", SP_CFG_INT, "100", 1, 1000000,
     "failed logins from one client ip per SP_LOGIN_IP_WINDOW_S (429 beyond)"},
    {"SP_LOGIN_IP_WINDOW_S", SP_CFG_INT, "60", 1, 86400, "window of the per-ip count, seconds"},
    {"SP_PENDING_MEMBER_TTL_S", SP_CFG_INT, "3600", 60, 86400,
     "a member created by tenancy and neither activated nor discarded is discarded after it"},
    {"SP_PENDING_MEMBER_SWEEP_S", SP_CFG_INT, "60", 1, 3600,
     "period of the discarding of stale pending members, seconds"},
};

static auth_svc g_auth;

static sp_status start(spsvc *kit)
{
    auth_svc *svc = &g_auth;
    const sp_config *cfg = spsvc_config(kit);
    const char *secret = sp_config_str(cfg, "SP_JWT_SECRET");

    svc->kit = kit;
    svc->bus = spsvc_bus(kit);
    svc->jwt = (spjwt_keys){.key = (const uint8_t *)secret,
                            .keylen = strlen(secret),
                            .issuer = sp_config_str(cfg, "SP_JWT_ISSUER"),
                            .audience = sp_config_str(cfg, "SP_JWT_AUDIENCE"),
                            .leeway_s = 0};
    svc->access_ttl_s = sp_config_int(cfg, "SP_ACCESS_TTL_S");
    svc->refresh_ttl_s = sp_config_int(cfg, "SP_REFRESH_TTL_S");
    svc->rl_fails_per_account = (int)sp_config_int(cfg, "SP_LOGIN_FAILS_PER_ACCOUNT");
    svc->rl_account_window_s = (int)sp_config_int(cfg, "SP_LOGIN_ACCOUNT_WINDOW_S");
    svc->rl_fails_per_ip = (int)sp_config_int(cfg, "SP_LOGIN_FAILS_PER_IP");
    svc->rl_ip_window_s = (int)sp_config_int(cfg, "SP_LOGIN_IP_WINDOW_S");
    svc->redis_gen = calloc((size_t)spsvc_workers(kit), sizeof(unsigned));
    if (svc->redis_gen == NULL) return SP_ERR_INTERNAL;

    /* the dummy hash: a random password nobody knows, hashed like a real one */
    uint8_t rnd[24];
    char dummy[40];
    spcrypto_random(rnd, sizeof(rnd));
    spcrypto_b64url_encode(dummy, rnd, sizeof(rnd));
    sp_status s =
        spcrypto_password_hash(svc->dummy_hash, sizeof(svc->dummy_hash), dummy, strlen(dummy));
    explicit_bzero(dummy, sizeof(dummy));
    if (s != SP_OK) return s;

    users_register(kit);
    sessions_register(kit);
    profile_register(kit);
    memberships_register(kit);
    s = members_register(kit, sp_config_int(cfg, "SP_PENDING_MEMBER_TTL_S"),
                         (int)sp_config_int(cfg, "SP_PENDING_MEMBER_SWEEP_S"));
    if (s != SP_OK) return s;
    return auth_keeper_start(kit, sp_config_str(cfg, "SP_DATABASE_URL"),
                             sp_config_str(cfg, "SP_REDIS_URL"), svc->access_ttl_s);
}

static void stop(spsvc *kit)
{
    (void)kit;
    auth_keeper_free();
    members_free();
    free(g_auth.redis_gen);
}

int main(int argc, char **argv)
{
    const spsvc_def def = {.name = "auth",
                           .admin_addr = "127.0.0.1:9101",
                           .needs = SPSVC_DB | SPSVC_REDIS,
                           .items = cfg_items,
                           .nitems = sizeof(cfg_items) / sizeof(cfg_items[0]),
                           .outbox = "auth.outbox",
                           .start = start,
                           .stop = stop,
                           .user = &g_auth};
    return spsvc_main(&def, argc, argv);
}
