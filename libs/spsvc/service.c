/* service.c -- the process of a bus service: settings, bus, admin listener, readiness,
 * routes, tasks, per-worker connections, signals and the drain. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spadmin.h"
#include "spsvc_internal.h"

/* The settings every service has; SP_NATS_USER and SP_ADMIN_ADDR take their defaults from
 * the service's definition. */
enum { COMMON_MAX = 8 };

static size_t common_items(sp_cfg_item *out, const spsvc_def *def)
{
    size_t n = 0;
    out[n++] = (sp_cfg_item){"SP_NATS_URL", SP_CFG_STR,          "nats://127.0.0.1:4222", 1,
                             1024,          "NATS server URL(s)"};
    out[n++] =
        (sp_cfg_item){"SP_NATS_USER", SP_CFG_STR, def->name, 0, 128, "NATS user of this service"};
    out[n++] = (sp_cfg_item){
        "SP_NATS_PASSWORD", SP_CFG_SECRET, "", 0, 1024, "NATS password of this service"};
    if (def->needs & SPSVC_DB)
        out[n++] = (sp_cfg_item){"SP_DATABASE_URL",
                                 SP_CFG_STR,
                                 "postgresql://sp@127.0.0.1:55432/smartpark",
                                 1,
                                 2048,
                                 "PostgreSQL connection URI"};
    if (def->needs & SPSVC_REDIS)
        out[n++] = (sp_cfg_item){"SP_REDIS_URL", SP_CFG_STR, "redis://127.0.0.1:56379", 1,
                                 1024,           "Redis URL"};
    out[n++] = (sp_cfg_item){"SP_ADMIN_ADDR",
                             SP_CFG_STR,
                             def->admin_addr,
                             3,
                             128,
                             "host:port of /healthz /readyz /metrics"};
    out[n++] = (sp_cfg_item){"SP_BUS_WORKERS",
                             SP_CFG_INT,
                             "4",
                             1,
                             64,
                             "bus worker threads (one database connection each)"};
    out[n++] = (sp_cfg_item){
        "SP_SHUTDOWN_S", SP_CFG_INT, "10", 1, 300, "seconds allowed to drain on SIGTERM"};
    return n;
}

/* ---- accessors ------------------------------------------------------------------------------ */

const sp_config *spsvc_config(const spsvc *svc)
{
    return svc->cfg;
}
spbus *spsvc_bus(const spsvc *svc)
{
    return svc->bus;
}
void *spsvc_user(const spsvc *svc)
{
    return svc->def->user;
}
int spsvc_workers(const spsvc *svc)
{
    return svc->workers;
}
const char *spsvc_name(const spsvc *svc)
{
    return svc->def->name;
}
spsvc *spsvc_of(const spbus_req *req)
{
    return spbus_req_user(req);
}
void *spsvc_req_user(const spbus_req *req)
{
    return spsvc_of(req)->def->user;
}

/* ---- routes and tasks ------------------------------------------------------------------- */

void spsvc_routes(spsvc *svc, const spbus_route *routes, size_t n)
{
    spbus_route *r = realloc(svc->routes, (svc->nroutes + n) * sizeof(*r));
    if (r == NULL) {
        sp_log_error(NULL, "out_of_memory", "what", "routes");
        abort();
    }
    memcpy(r + svc->nroutes, routes, n * sizeof(*r));
    svc->routes = r;
    svc->nroutes += n;
}

sp_status spsvc_every(spsvc *svc, sp_task **out, int period_ms, sp_task_fn fn, void *user)
{
    if (out != NULL) *out = NULL;
    sp_task **t = realloc(svc->tasks, (svc->ntasks + 1) * sizeof(sp_task *));
    if (t == NULL) return SP_ERR_INTERNAL;
    svc->tasks = t;
    sp_status s = sp_task_start(&t[svc->ntasks], period_ms, fn, user);
    if (s != SP_OK) return s;
    if (out != NULL) *out = t[svc->ntasks];
    svc->ntasks++;
    return SP_OK;
}

/* ---- per-worker connections ------------------------------------------------------------ */

static int worker_or_reply(spbus_req *req)
{
    spsvc *svc = spsvc_of(req);
    int w = spbus_req_worker(req);
    if (w < 0 || w >= svc->workers) {
        sp_log_error(spbus_req_id(req), "bad_worker_index");
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return -1;
    }
    return w;
}

sp_status spsvc_db_or_reply(spdb **out, spbus_req *req)
{
    spsvc *svc = spsvc_of(req);

    *out = NULL;
    if (svc->db == NULL) {
        sp_log_error(spbus_req_id(req), "service_without_database");
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    int w = worker_or_reply(req);
    if (w < 0) return SP_ERR_INTERNAL;
    if (svc->db[w] == NULL) {
        sp_status s = spdb_connect(&svc->db[w], svc->db_url);
        if (s != SP_OK) {
            sp_log_warn(spbus_req_id(req), "db_connect_failed", "code", sp_error_code(s));
            spbus_reply_error(req, SP_ERR_UNAVAILABLE, "database unavailable", NULL);
            return s;
        }
    }
    svc->audited[w] = false; /* a new request on this worker: nothing written yet */
    *out = svc->db[w];
    return SP_OK;
}

spredis *spsvc_redis(spbus_req *req)
{
    spsvc *svc = spsvc_of(req);
    int w = spbus_req_worker(req);

    if (svc->redis == NULL || w < 0 || w >= svc->workers) return NULL;
    if (svc->redis[w] == NULL &&
        spredis_create(&svc->redis[w], svc->redis_url, SPSVC_REDIS_TIMEOUT_MS) != SP_OK)
        sp_log_error(spbus_req_id(req), "redis_url_invalid");
    return svc->redis[w];
}

sp_status spsvc_call_for(ProtobufCMessage **out, Sp__V1__Error **err, spbus *bus, spbus_req *req,
                         const char *api, const char *method, const ProtobufCMessage *in,
                         const ProtobufCMessageDescriptor *reply_desc, const spsvc_call_opts *o,
                         sp_arena *arena)
{
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    const Sp__V1__RequestContext *rc = req != NULL ? spbus_req_ctx(req) : NULL;
    char subject[128];

    if (rc != NULL) {
        ctx.request_id = rc->request_id;
        ctx.ip = rc->ip;
        ctx.user_agent = rc->user_agent;
        ctx.user_id = rc->user_id;
    }
    ctx.role = "service";
    ctx.client_id = (char *)o->client_id;
    ctx.idempotency_key = (char *)o->idempotency_key;
    ctx.has_validate_only = o->validate_only;
    ctx.validate_only = o->validate_only;
    snprintf(subject, sizeof(subject), "sp.%s.v1.%s", api, method);
    return spbus_request(out, err, bus, subject, &ctx, in, reply_desc, o->timeout_ms, arena);
}

sp_status spsvc_call(ProtobufCMessage **out, Sp__V1__Error **err, spbus *bus, spbus_req *req,
                     const char *api, const char *method, const ProtobufCMessage *in,
                     const ProtobufCMessageDescriptor *reply_desc, int timeout_ms, sp_arena *arena)
{
    const spsvc_call_opts o = {.timeout_ms = timeout_ms};
    return spsvc_call_for(out, err, bus, req, api, method, in, reply_desc, &o, arena);
}

bool spsvc_validate_only(const spbus_req *req)
{
    const Sp__V1__RequestContext *ctx = spbus_req_ctx(req);
    spsvc_principal p;
    spsvc_principal_of(&p, req);
    return p.role == SPSVC_ROLE_SERVICE && ctx != NULL && ctx->has_validate_only &&
           ctx->validate_only;
}

void spsvc_changed(spbus_req *req, const char *client_id, const char *kind, const char *id,
                   const char *what, const char *parent_id)
{
    Sp__V1__Changed c = SP__V1__CHANGED__INIT;
    char subject[160];
    uint8_t buf[512];
    c.kind = (char *)kind;
    c.id = (char *)id;
    c.what = (char *)what;
    c.client_id = (char *)client_id;
    c.parent_id = (char *)parent_id;
    c.has_at = 1;
    c.at = sp_now_us();
    spsvc *svc = spsvc_of(req);
    int n = snprintf(subject, sizeof(subject), "sp.%s.changed.%s.%s", spsvc_name(svc),
                     client_id != NULL ? client_id : "platform", kind);
    size_t len = protobuf_c_message_get_packed_size(&c.base);
    sp_status s =
        n > 0 && (size_t)n < sizeof(subject) && len <= sizeof(buf) ? SP_OK : SP_ERR_INTERNAL;
    if (s == SP_OK) {
        protobuf_c_message_pack(&c.base, buf);
        s = spbus_publish(spsvc_bus(svc), subject, buf, len);
    }
    if (s != SP_OK)
        sp_log_warn(spbus_req_id(req), "changed_not_published", "kind", kind, "id", id, "error",
                    sp_error_code(s));
}

sp_status spsvc_db_error_reply(spbus_req *req, sp_status s, const char *what)
{
    sp_log_warn(spbus_req_id(req), "db_failed", "what", what, "code", sp_error_code(s));
    if (s == SP_ERR_UNAVAILABLE)
        spbus_reply_error(req, s, "database unavailable", NULL);
    else
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
    return s;
}

sp_status spsvc_begin_or_reply(spbus_req *req, spdb *db)
{
    sp_status s = spdb_begin(db);
    return s == SP_OK ? SP_OK : spsvc_db_error_reply(req, s, "begin");
}

sp_status spsvc_commit_or_reply(spbus_req *req, spdb *db)
{
    spsvc *svc = spsvc_of(req);
    int w = spbus_req_worker(req);
    sp_status s = spdb_commit(db);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "commit");
#ifdef SP_FAULTS
    /* tests only: the process dies after a commit, before it answers (a crash at the worst
     * moment), when SP_FAULT_KILL_AFTER_COMMIT names this request's message */
    const char *kill_after = getenv("SP_FAULT_KILL_AFTER_COMMIT");
    const ProtobufCMessage *in = spbus_req_input(req);
    if (kill_after != NULL && in != NULL && strcmp(kill_after, in->descriptor->short_name) == 0)
        raise(SIGKILL);
#endif
    if (w >= 0 && w < svc->workers && svc->audited[w]) {
        svc->audited[w] = false;
        sp_task_wake(svc->outbox_task);
    }
    return SP_OK;
}

void spsvc_rollback(spdb *db)
{
    if (db != NULL && spdb_in_tx(db)) spdb_rollback(db);
}

/* ---- readiness ------------------------------------------------------------------------------ */

static bool ready(void *user, char *why, size_t whylen)
{
    spsvc *svc = user;

    if (!spbus_connected(svc->bus)) {
        snprintf(why, whylen, "nats down");
        return false;
    }
    if (svc->def->needs & SPSVC_DB) {
        pthread_mutex_lock(&svc->ready_mu);
        if (svc->ready_db == NULL) spdb_connect(&svc->ready_db, svc->db_url);
        bool ok = svc->ready_db != NULL && spdb_ping(svc->ready_db);
        pthread_mutex_unlock(&svc->ready_mu);
        if (!ok) {
            snprintf(why, whylen, "postgres down");
            return false;
        }
    }
    return svc->def->ready == NULL || svc->def->ready(svc, why, whylen);
}

/* ---- the process ------------------------------------------------------------------------------
 */

static int fail(const char *msg, sp_status s)
{
    sp_log_error(NULL, msg, "code", sp_error_code(s));
    return 1;
}

/* Settings, connections arrays; 2 on a bad setting, -1 after --help, 0 when done. */
static int configure(spsvc *svc, int argc, char **argv)
{
    const spsvc_def *def = svc->def;
    char err[256] = "";
    size_t n = 0;
    /* the configuration keeps pointing at the table: it lives as long as svc */
    svc->items = calloc(COMMON_MAX + def->nitems, sizeof(sp_cfg_item));
    if (svc->items == NULL) return 1;
    n = common_items(svc->items, def);
    if (def->nitems > 0) memcpy(svc->items + n, def->items, def->nitems * sizeof(sp_cfg_item));
    n += def->nitems;
    /* svc->items is freed by cleanup(); the analyzer loses it when &svc->cfg escapes */
    /* NOLINTNEXTLINE(clang-analyzer-unix.Malloc) */
    sp_status s = sp_config_load(&svc->cfg, def->name, svc->items, n, argc, argv, err, sizeof(err));
    if (s != SP_OK) {
        sp_log_error(NULL, "bad_config", "reason", err);
        return 2;
    }
    if (svc->cfg == NULL) return -1; /* --help */
    svc->workers = (int)sp_config_int(svc->cfg, "SP_BUS_WORKERS");
    svc->audited = calloc((size_t)svc->workers, sizeof(bool));
    if (svc->audited == NULL) return 1;
    if (def->needs & SPSVC_DB) {
        svc->db_url = sp_config_str(svc->cfg, "SP_DATABASE_URL");
        svc->db = calloc((size_t)svc->workers, sizeof(spdb *));
        if (svc->db == NULL) return 1;
    }
    if (def->needs & SPSVC_REDIS) {
        svc->redis_url = sp_config_str(svc->cfg, "SP_REDIS_URL");
        svc->redis = calloc((size_t)svc->workers, sizeof(spredis *));
        if (svc->redis == NULL) return 1;
    }
    return 0;
}

static void cleanup(spsvc *svc)
{
    spadmin_stop(svc->admin); /* first: /readyz looks at the bus */
    svc->admin = NULL;
    spbus_service_destroy(svc->service);
    for (size_t i = 0; i < svc->ntasks; i++)
        sp_task_halt(svc->tasks[i]); /* before the bus they may publish on */
    /* the service's own threads (a consumer) may still wake a task (the outbox) until its
     * stop() ends them: the tasks are freed only after it */
    if (svc->started && svc->def->stop != NULL) svc->def->stop(svc);
    for (size_t i = 0; i < svc->ntasks; i++)
        sp_task_stop(svc->tasks[i]);
    free(svc->tasks);
    spsvc__outbox_free(svc);
    spbus_destroy(svc->bus);
    for (int i = 0; svc->db != NULL && i < svc->workers; i++)
        spdb_destroy(svc->db[i]);
    for (int i = 0; svc->redis != NULL && i < svc->workers; i++)
        spredis_destroy(svc->redis[i]);
    free(svc->db);
    free(svc->redis);
    free(svc->audited);
    free(svc->routes);
    spdb_destroy(svc->ready_db);
    pthread_mutex_destroy(&svc->ready_mu);
    sp_config_destroy(svc->cfg);
    free(svc->items);
}

int spsvc_main(const spsvc_def *def, int argc, char **argv)
{
    spsvc svc;
    sigset_t sigs;
    int rc;

    memset(&svc, 0, sizeof(svc));
    svc.def = def;
    pthread_mutex_init(&svc.ready_mu, NULL);
    sp_log_init(def->name, SP_LOG_INFO);
    rc = configure(&svc, argc, argv);
    if (rc != 0) {
        cleanup(&svc);
        return rc < 0 ? 0 : rc;
    }

    /* a peer that closed its socket is an error of that write, not the end of the process
     * (hiredis and libpq write without MSG_NOSIGNAL) */
    signal(SIGPIPE, SIG_IGN);
    /* every thread started from here on inherits the mask: only sigwait sees the signals */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    spbus_opts bo = {.url = sp_config_str(svc.cfg, "SP_NATS_URL"),
                     .user = sp_config_str(svc.cfg, "SP_NATS_USER"),
                     .password = sp_config_str(svc.cfg, "SP_NATS_PASSWORD"),
                     .name = def->name,
                     .connections = 1};
    sp_status s = spbus_connect(&svc.bus, &bo);
    if (s != SP_OK) {
        rc = fail("nats_connect_failed", s);
        goto out;
    }
    if (def->outbox != NULL && (s = spsvc__outbox_start(&svc)) != SP_OK) {
        rc = fail("outbox_start_failed", s);
        goto out;
    }
    if (def->start != NULL) {
        s = def->start(&svc);
        svc.started = true; /* stop frees what a start that failed halfway made */
        if (s != SP_OK) {
            rc = fail("service_start_failed", s);
            goto out;
        }
    }
    s = spbus_serve(&svc.service, svc.bus, def->api != NULL ? def->api : def->name, def->name,
                    svc.routes, svc.nroutes, svc.workers, &svc);
    if (s != SP_OK) {
        rc = fail("serve_failed", s);
        goto out;
    }
    s = spadmin_start(&svc.admin, sp_config_str(svc.cfg, "SP_ADMIN_ADDR"), ready, &svc);
    if (s != SP_OK) {
        rc = fail("admin_start_failed", s);
        goto out;
    }
    sp_log_info(NULL, "started", "adminAddr", sp_config_str(svc.cfg, "SP_ADMIN_ADDR"));

    int sig = 0;
    sigwait(&sigs, &sig);
    sp_log_info(NULL, "stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* a drain that hangs must not keep the process past SP_SHUTDOWN_S */
    int shutdown_ms = (int)sp_config_int(svc.cfg, "SP_SHUTDOWN_S") * 1000;
    alarm((unsigned)(shutdown_ms / 1000));
    spbus_drain(svc.bus, shutdown_ms > 1500 ? shutdown_ms - 1000 : shutdown_ms / 2);
    rc = 0;

out:
    cleanup(&svc);
    if (rc == 0) sp_log_info(NULL, "stopped");
    return rc;
}
