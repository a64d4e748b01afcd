/* sptest.h -- the one test harness: real nats-server, PostgreSQL and Redis on reserved free
 * loopback ports, each in its own directory under build/tmp/, polled until they answer,
 * logs kept when a test failed, everything killed at exit (crash or not); our own
 * services started and stopped; an HTTP client over libcurl. Prefix: sptest_. */
#ifndef SPTEST_H
#define SPTEST_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

enum {
    SPTEST_NATS = 1u << 0,        /* nats-server with JetStream and the generated users */
    SPTEST_NATS_NOAUTH = 1u << 1, /* nats-server with JetStream and no users (library tests) */
    SPTEST_PG = 1u << 2,          /* private PostgreSQL cluster, database "smartpark" */
    SPTEST_REDIS = 1u << 3,
    SPTEST_MIGRATE = 1u << 4, /* run "spctl migrate" once the servers are up */
    SPTEST_ALL = SPTEST_NATS | SPTEST_PG | SPTEST_REDIS | SPTEST_MIGRATE,
};

typedef struct {
    pid_t pid; /* 0 when not running */
    char name[32];
    char log[512];  /* its stdout+stderr */
    int admin_port; /* our services: the SP_ADMIN_ADDR port */
} sptest_proc;

typedef struct {
    char dir[512]; /* build/tmp/<suite>-XXXXXX */
    unsigned what;
    int nats_port, pg_port, redis_port, http_port;
    char nats_url[128];  /* nats://127.0.0.1:<port> */
    char db_url[256];    /* postgresql://sp:<password>@127.0.0.1:<port>/smartpark: the superuser */
    char redis_url[160]; /* redis://:<password>@127.0.0.1:<port> */
    char redis_password[80]; /* for raw connections: send AUTH first */
    char base_url[128];      /* http://127.0.0.1:<http_port> (the gateway, once started) */
    char secrets[512];       /* path of the generated secrets.env (SP_JWT_SECRET, ...) */
    sptest_proc nats, pg, redis;
    sptest_proc svc[8]; /* services started by sptest_start_service */
    int nsvc;
    sptest_proc edge;   /* nginx in front of the gateway (sptest_start_edge) */
    int edge_port;      /* its public port, 0 until started */
    char edge_url[128]; /* http://127.0.0.1:<edge_port> */
} sptest_env;

/* Starts what 'what' asks for; aborts the test program (with the logs printed) when a
 * server does not come up within 30 s. Registers cleanup at exit and on fatal signals. */
sptest_env *sptest_start(const char *suite, unsigned what);
/* Kills everything; removes the directory unless a test failed (sptest_mark_failed) or
 * SP_KEEP_TMP=1. */
void sptest_stop(sptest_env *e);
void sptest_mark_failed(sptest_env *e);

int sptest_free_port(void); /* reserved: never handed out twice in this process */

/* Starts build/.../services binary 'name' ("auth", "gateway") with the environment of the
 * stack (URLs, its NATS user and password, secrets, SP_ADMIN_ADDR on a free port, and for
 * the gateway SP_HTTP_ADDR on e->http_port) plus 'extra_env' ("K=V" strings, NULL-ended),
 * and waits for its /readyz to answer 200 (aborts after 30 s). */
sptest_proc *sptest_start_service(sptest_env *e, const char *name, const char *const *extra_env);
/* Starts nginx as the public listener in front of the gateway (which must be running), as
 * `make run` does: deploy/nginx/edge.conf.template rendered by spctl edge-config, with
 * SP_EDGE_ADDR on a new free port, SP_EDGE_UPSTREAM the gateway's e->http_port, and
 * 'extra_env' ("SP_EDGE_CONN_PER_ADDR=8", NULL-ended, may be NULL). Waits until /healthz
 * answers 200 through it (aborts after 30 s); sets e->edge_port and e->edge_url. Start the
 * gateway with SP_TRUSTED_PROXIES=127.0.0.1 to have it believe the client addresses. */
sptest_proc *sptest_start_edge(sptest_env *e, const char *const *extra_env);
/* A generated secret of the stack (SP_NATS_INGEST_PASSWORD, SP_MASTER_KEY, ...), NULL when
 * there is none; it lives as long as e. */
const char *sptest_secret(sptest_env *e, const char *key);
/* Sends 'sig' and waits for the process to exit (SIGKILL after 10 s). */
void sptest_kill(sptest_proc *p, int sig);
/* Restarts a killed infrastructure server or service on the same port and directory,
 * waiting until it answers. */
void sptest_restart(sptest_env *e, sptest_proc *p);
/* The size of p's log now: an offset for sptest_log_has to look only at what comes after. */
long sptest_log_size(const sptest_proc *p);
/* true when a line of p's log from byte 'from' on contains 'needle'. */
bool sptest_log_has(const sptest_proc *p, long from, const char *needle);
/* true when p's log from byte 'from' on holds a sanitizer report (ASan, UBSan, LSan). */
bool sptest_log_has_sanitizer(const sptest_proc *p, long from);

bool sptest_wait_tcp(int port, int timeout_ms);
bool sptest_wait_http(const char *url, long want_status, int timeout_ms);

/* ---- HTTP client ------------------------------------------------------------------------ */

typedef struct {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *headers;  /* raw response headers */
    cJSON *json;    /* parsed body, or NULL */
    double seconds; /* total time */
} sptest_resp;

/* headers: "Name: value" strings, NULL-ended (may be NULL). body may be NULL. Timeout 15 s. */
sptest_resp *sptest_http(const char *method, const char *url, const char *const *headers,
                         const char *body, size_t len);
/* JSON convenience: sets Content-Type: application/json, and Authorization: Bearer <token>
 * when token is not NULL. path is appended to e->base_url. */
sptest_resp *sptest_json(sptest_env *e, const char *method, const char *path, const char *token,
                         const char *body);
void sptest_resp_free(sptest_resp *r);
/* Case-insensitive header lookup; returns a static-per-response copy or NULL. */
const char *sptest_resp_header(sptest_resp *r, const char *name);
/* A fresh email per call, unique across tests, threads and runs:
 * "<tag>-<pid>-<n>-<random hex>@example.com". */
void sptest_unique_email(char *buf, size_t len, const char *tag);
/* A JSON object of the non-NULL string pairs (key, value, ..., NULL); caller frees. */
char *sptest_json_obj(const char *key, ...) __attribute__((sentinel));

/* String at a dotted path in r->json ("error.code"), or NULL. */
const char *sptest_jstr(const sptest_resp *r, const char *path);

#endif
