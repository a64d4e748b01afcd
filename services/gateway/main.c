/* main.c -- the gateway process: configuration, connections, the HTTP server, shutdown.
 * Only wiring: the routes are in routes.c, the request pipeline in http.c. */
#include <civetweb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gateway.h"
#include "spadmin.h"

static const sp_cfg_item config[] = {
    {"SP_HTTP_ADDR", SP_CFG_STR, "127.0.0.1:8080", 3, 64, "public HTTP listener, host:port"},
    {"SP_ADMIN_ADDR", SP_CFG_STR, "127.0.0.1:9100", 3, 64, "admin listener (/healthz, /readyz, /metrics)"},
    {"SP_HTTP_THREADS", SP_CFG_INT, "128", 16, 1024, "HTTP worker threads (one per keep-alive connection)"},
    {"SP_HTTP_MAX_BODY", SP_CFG_INT, "1048576", 1024, 16777216, "largest request body in bytes (413 beyond)"},
    {"SP_HTTP_MAX_HEADER", SP_CFG_INT, "8192", 1024, 65536, "largest request line plus headers in bytes"},
    {"SP_BUS_TIMEOUT_MS", SP_CFG_INT, "2000", 100, 60000, "deadline of a bus request (503 beyond)"},
    {"SP_NATS_URL", SP_CFG_STR, "nats://127.0.0.1:4222", 1, 1024, "NATS server(s), comma-separated"},
    {"SP_NATS_USER", SP_CFG_STR, "gateway", 0, 128, "NATS user"},
    {"SP_NATS_PASSWORD", SP_CFG_SECRET, "", 0, 256, "NATS password"},
    {"SP_NATS_CONNECTIONS", SP_CFG_INT, "1", 1, 64, "NATS connections requests are spread over (one batches best, bench/results)"},
    {"SP_REDIS_URL", SP_CFG_STR, "redis://127.0.0.1:56379", 1, 1024, "Redis, redis://[:password@]host:port[/db]"},
    {"SP_ACCESS_TTL_S", SP_CFG_INT, "900", 60, 86400, "access token lifetime, seconds (same as auth): how long a revoked session is remembered"},
    {"SP_JWT_SECRET", SP_CFG_SECRET, NULL, 32, 4096, "HS256 key of access tokens (the string's bytes; same as auth)"},
    {"SP_JWT_ISSUER", SP_CFG_STR, "smartpark", 1, 256, "required 'iss' of access tokens"},
    {"SP_JWT_AUDIENCE", SP_CFG_STR, "smartpark-api", 1, 256, "required 'aud' of access tokens"},
    {"SP_SHUTDOWN_S", SP_CFG_INT, "10", 1, 300, "seconds allowed to finish open work on SIGTERM"},
    {"SP_TRUSTED_PROXIES", SP_CFG_STR, "", 0, 4096,
     "IPv4/IPv6 addresses and CIDRs whose X-Forwarded-For is believed, comma-separated"},
};
#define NCONFIG (sizeof(config) / sizeof(config[0]))

static int begin_request(struct mg_connection *conn)
{
    return gw_http_handle(conn);
}

static int log_message(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    sp_log_warn(NULL, "civetweb", "detail", message);
    return 1;
}

static struct mg_context *start_http(const sp_config *cfg, gw_state *g)
{
    char threads[16], header[16];
    snprintf(threads, sizeof(threads), "%lld", sp_config_int(cfg, "SP_HTTP_THREADS"));
    snprintf(header, sizeof(header), "%lld", sp_config_int(cfg, "SP_HTTP_MAX_HEADER"));
    /* pitfalls.md, CivetWeb: keep-alive on, no Nagle, a request timeout, no CORS by
     * default, no document_root (so no files and no directory listing). */
    const char *options[] = {
        "listening_ports", sp_config_str(cfg, "SP_HTTP_ADDR"),
        "num_threads", threads,
        "enable_keep_alive", "yes",
        "tcp_nodelay", "1",
        "request_timeout_ms", "10000",
        "keep_alive_timeout_ms", "5000",
        "max_request_size", header,
        "access_control_allow_origin", "",
        "access_control_allow_methods", "",
        "access_control_allow_headers", "",
        "enable_directory_listing", "no",
        NULL,
    };
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.begin_request = begin_request;
    cb.log_message = log_message;
    cb.http_error = gw_http_error;
    cb.init_connection = gw_conn_init;
    cb.connection_close = gw_conn_close;
    return mg_start(&cb, g, options);
}

int main(int argc, char **argv)
{
    char err[256] = "";
    /* `gateway --openapi`: the document this build serves, on stdout (make openapi writes
     * docs/openapi.json with it); no setting needed. */
    if (argc == 2 && strcmp(argv[1], "--openapi") == 0) {
        size_t n = 0;
        const gw_route *routes = gw_routes(&n);
        if (gw_routes_check(routes, n, err, sizeof(err)) != SP_OK ||
            !gw_openapi_init(true, err, sizeof(err))) {
            fprintf(stderr, "gateway: %s\n", err);
            return 2;
        }
        const char *doc = gw_openapi_text(&n);
        return fwrite(doc, 1, n, stdout) == n && fputc('\n', stdout) != EOF ? 0 : 1;
    }
    sp_config *cfg = NULL;
    if (sp_config_load(&cfg, "gateway", config, NCONFIG, argc, argv, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "gateway: %s\n", err);
        return 2;
    }
    if (cfg == NULL) return 0; /* --help */
    sp_log_init("gateway", SP_LOG_INFO);

    /* A route the table gets wrong would fail on its first request: refuse to start. */
    size_t nroutes = 0;
    const gw_route *routes = gw_routes(&nroutes);
    if (gw_routes_check(routes, nroutes, err, sizeof(err)) != SP_OK) {
        sp_log_error(NULL, "route_table_invalid", "why", err);
        fprintf(stderr, "gateway: route table: %s\n", err);
        sp_config_destroy(cfg);
        return 2;
    }
    /* The notes built in must describe this table: refuse to start otherwise. */
    if (!gw_openapi_init(false, err, sizeof(err))) {
        sp_log_error(NULL, "openapi_invalid", "why", err);
        fprintf(stderr, "gateway: openapi: %s\n", err);
        sp_config_destroy(cfg);
        return 2;
    }

    /* Signals are taken by sigwait below: block them before any thread starts. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    gw_state g;
    memset(&g, 0, sizeof(g));
    pthread_mutex_init(&g.redis_mu, NULL);
    const char *secret = sp_config_str(cfg, "SP_JWT_SECRET");
    g.keys.key = (const uint8_t *)secret;
    g.keys.keylen = strlen(secret);
    g.keys.issuer = sp_config_str(cfg, "SP_JWT_ISSUER");
    g.keys.audience = sp_config_str(cfg, "SP_JWT_AUDIENCE");
    g.keys.leeway_s = 30;
    g.max_body = sp_config_int(cfg, "SP_HTTP_MAX_BODY");
    g.http_threads = (int)sp_config_int(cfg, "SP_HTTP_THREADS");
    g.bus_timeout_ms = (int)sp_config_int(cfg, "SP_BUS_TIMEOUT_MS");
    if (gw_proxies_parse(&g.proxies, sp_config_str(cfg, "SP_TRUSTED_PROXIES"), err, sizeof(err)) !=
        SP_OK) {
        fprintf(stderr, "gateway: %s\n", err);
        sp_config_destroy(cfg);
        return 2;
    }
    int shutdown_s = (int)sp_config_int(cfg, "SP_SHUTDOWN_S");

    int rc = 1;
    spadmin *admin = NULL;
    struct mg_context *http = NULL;
    spbus_opts bo = {
        .url = sp_config_str(cfg, "SP_NATS_URL"),
        .user = sp_config_str(cfg, "SP_NATS_USER"),
        .password = sp_config_str(cfg, "SP_NATS_PASSWORD"),
        .name = "gateway",
        .connections = (int)sp_config_int(cfg, "SP_NATS_CONNECTIONS"),
    };
    mg_init_library(0);
    if (spbus_connect(&g.bus, &bo) != SP_OK) {
        sp_log_error(NULL, "nats_connect_failed", "url", bo.url);
        goto out;
    }
    if (spredis_create(&g.redis, sp_config_str(cfg, "SP_REDIS_URL"), 500) != SP_OK) {
        sp_log_error(NULL, "redis_url_invalid");
        goto out;
    }
    if (gw_revoked_start(&g.revoked, g.bus, sp_config_str(cfg, "SP_REDIS_URL"),
                         sp_config_int(cfg, "SP_ACCESS_TTL_S")) != SP_OK) {
        sp_log_error(NULL, "revoked_sessions_start_failed");
        goto out;
    }
    if (spadmin_start(&admin, sp_config_str(cfg, "SP_ADMIN_ADDR"), gw_ready, &g) != SP_OK) {
        sp_log_error(NULL, "admin_listen_failed", "addr", sp_config_str(cfg, "SP_ADMIN_ADDR"));
        goto out;
    }
    http = start_http(cfg, &g);
    if (http == NULL) {
        sp_log_error(NULL, "http_listen_failed", "addr", sp_config_str(cfg, "SP_HTTP_ADDR"));
        goto out;
    }
    sp_log_info(NULL, "started", "http", sp_config_str(cfg, "SP_HTTP_ADDR"), "admin",
                sp_config_str(cfg, "SP_ADMIN_ADDR"));

    int sig = 0;
    sigwait(&stop, &sig);
    sp_log_info(NULL, "stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* Whatever hangs, the process ends within SP_SHUTDOWN_S (SIGALRM's default action). */
    alarm((unsigned)shutdown_s);
    int64_t t0 = sp_monotonic_us();
    /* CivetWeb drops what a handler writes once mg_stop has begun: let the requests in
     * flight answer first (new ones get 503), leaving time for the drain below */
    if (!gw_http_quiesce(shutdown_s > 2 ? (shutdown_s - 2) * 1000 : 500))
        sp_log_warn(NULL, "requests_still_running_at_stop");
    mg_stop(http); /* stops accepting, closes the connections */
    http = NULL;
    int left_ms = shutdown_s * 1000 - (int)((sp_monotonic_us() - t0) / 1000) - 500;
    spbus_drain(g.bus, left_ms > 100 ? left_ms : 100);
    rc = 0;

out:
    if (http != NULL) mg_stop(http);
    spadmin_stop(admin);
    spredis_destroy(g.redis);
    gw_revoked_stop(g.revoked);
    spbus_destroy(g.bus);
    gw_revoked_free(g.revoked);
    mg_exit_library();
    pthread_mutex_destroy(&g.redis_mu);
    gw_proxies_destroy(g.proxies);
    sp_log_info(NULL, "stopped");
    sp_config_destroy(cfg);
    return rc;
}
