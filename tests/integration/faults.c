/* faults.c -- the gateway and auth under faults, on real servers: kill -9 of NATS,
 * PostgreSQL and Redis, and SIGTERM of auth and of the gateway, each while clients keep
 * calling GET /v1/me and POST /v1/auth/register. Every answer is 200/201 or 503, within
 * 5 s; readiness follows the fault; everything serves again once the server is back,
 * without restarting our services. Also the gateway's /metrics after traffic. */
#include <check.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spcrypto.h"
#include "sptest.h"

static sptest_env *E;
static sptest_proc *AUTH, *GW;

#define CLIENT_TIMEOUT_MS 5000L /* a request that takes longer is a hang */
#define RECOVER_MS 10000        /* a restarted server: everything serves again within this */
#define SHUTDOWN_S 10           /* SP_SHUTDOWN_S default */
#define BUS_DEADLINE_S 2.0      /* SP_BUS_TIMEOUT_MS default; the margin is for a loaded machine */

/* ---- helpers --------------------------------------------------------------------------- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct {
    long status; /* 0: no answer (connection refused or reset, timeout) */
    char body[2048];
    size_t len;
    double seconds;
} answer;

static size_t body_cb(char *p, size_t sz, size_t n, void *ud)
{
    answer *a = ud;
    size_t k = sz * n, room = sizeof(a->body) - 1 - a->len;
    memcpy(a->body + a->len, p, k < room ? k : room);
    a->len += k < room ? k : room;
    a->body[a->len] = '\0';
    return sz * n;
}

/* One request bounded by CLIENT_TIMEOUT_MS (thread-safe: an easy handle per call). 'url' is
 * absolute; token and body may be NULL. */
static answer call(const char *method, const char *url, const char *token, const char *body)
{
    answer a;
    memset(&a, 0, sizeof(a));
    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    struct curl_slist *h = NULL;
    char auth[2048];
    if (body != NULL) h = curl_slist_append(h, "Content-Type: application/json");
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &a);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, CLIENT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &a.seconds);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return a;
}

static answer api(const char *method, const char *path, const char *token, const char *body)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", E->base_url, path);
    return call(method, url, token, body);
}

static long admin_status(const sptest_proc *p, const char *path)
{
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", p->admin_port, path);
    return call("GET", url, NULL, NULL).status;
}

static char *register_body(const char *name, const char *email, const char *password)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "email", email);
    cJSON_AddStringToObject(o, "password", password);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static answer register_new(const char *tag)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), tag);
    char *b = register_body("Fault Client", email, "password-fault");
    answer a = api("POST", "/v1/auth/register", NULL, b);
    free(b);
    return a;
}

/* A registered, logged-in user: its email and access token. */
typedef struct {
    char email[128];
    char token[2048];
} user;

static void must_user(user *u, const char *tag)
{
    sptest_unique_email(u->email, sizeof(u->email), tag);
    char *b = register_body("Fault User", u->email, "password-fault");
    answer a = api("POST", "/v1/auth/register", NULL, b);
    free(b);
    ck_assert_msg(a.status == 201, "register: %ld %s", a.status, a.body);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "email", u->email);
    cJSON_AddStringToObject(o, "password", "password-fault");
    b = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    a = api("POST", "/v1/auth/login", NULL, b);
    free(b);
    ck_assert_msg(a.status == 200, "login: %ld %s", a.status, a.body);
    cJSON *j = cJSON_Parse(a.body);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "accessToken");
    ck_assert(cJSON_IsString(t));
    snprintf(u->token, sizeof(u->token), "%s", t->valuestring);
    cJSON_Delete(j);
}

/* True when a 200 of /v1/me is the profile of 'email' (never another user's). */
static bool is_profile_of(const answer *a, const char *email)
{
    cJSON *j = cJSON_Parse(a->body);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "email");
    bool ok = cJSON_IsString(e) && strcmp(e->valuestring, email) == 0;
    cJSON_Delete(j);
    return ok;
}

/* True when a 503 has the contract's shape: error.code "unavailable". */
static bool is_unavailable(const answer *a)
{
    cJSON *j = cJSON_Parse(a->body);
    const cJSON *c =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
    bool ok = cJSON_IsString(c) && strcmp(c->valuestring, "unavailable") == 0;
    cJSON_Delete(j);
    return ok;
}

/* ---- the load: clients calling during a fault ------------------------------------------ */

typedef struct {
    const user *u;
    bool register_must_succeed; /* Redis down: register does not need it */
    atomic_bool stop;
    pthread_t th;
    /* counted by the thread, read after join */
    long me_ok, me_503, reg_ok, reg_503, bad;
    char first_bad[512];
} load;

static void load_bad(load *l, const char *what, const answer *a)
{
    if (l->bad++ == 0)
        snprintf(l->first_bad, sizeof(l->first_bad), "%s: %ld after %.2f s: %.300s", what,
                 a->status, a->seconds, a->body);
}

static void *load_main(void *arg)
{
    load *l = arg;
    while (!atomic_load(&l->stop)) {
        answer a = api("GET", "/v1/me", l->u->token, NULL);
        if (a.status == 200 && is_profile_of(&a, l->u->email))
            l->me_ok++;
        else if (a.status == 503 && is_unavailable(&a))
            l->me_503++;
        else
            load_bad(l, "GET /v1/me", &a);
        a = register_new("load");
        if (a.status == 201)
            l->reg_ok++;
        else if (a.status == 503 && is_unavailable(&a) &&
                 (!l->register_must_succeed || strstr(a.body, "did not answer within") != NULL))
            l->reg_503++; /* the latter: auth busy hashing on a loaded machine, not the fault */
        else
            load_bad(l, "POST /v1/auth/register", &a);
        sleep_ms(20);
    }
    return NULL;
}

static void load_start(load *l, const user *u, bool register_must_succeed)
{
    memset(l, 0, sizeof(*l));
    l->u = u;
    l->register_must_succeed = register_must_succeed;
    ck_assert_int_eq(pthread_create(&l->th, NULL, load_main, l), 0);
}

/* Stops the load and asserts that every answer was a right one. */
static void load_stop(load *l)
{
    atomic_store(&l->stop, true);
    pthread_join(l->th, NULL);
    ck_assert_msg(l->bad == 0, "%ld wrong answers, first: %s", l->bad, l->first_bad);
    ck_assert_msg(l->me_ok > 0 && (l->reg_ok > 0 || !l->register_must_succeed),
                  "the load made no successful call (me %ld/%ld, register %ld/%ld)", l->me_ok,
                  l->me_503, l->reg_ok, l->reg_503);
}

/* Polls until GET /v1/me answers 'want' (checking the profile on a 200). */
static bool wait_me(const user *u, long want, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    do {
        answer a = api("GET", "/v1/me", u->token, NULL);
        if (a.status == want && (want != 200 || is_profile_of(&a, u->email))) return true;
        sleep_ms(100);
    } while (now_ms() < end);
    return false;
}

static bool wait_register(long want, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    do {
        if (register_new("wait").status == want) return true;
        sleep_ms(100);
    } while (now_ms() < end);
    return false;
}

static bool wait_admin(const sptest_proc *p, const char *path, long want, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    do {
        if (admin_status(p, path) == want) return true;
        sleep_ms(100);
    } while (now_ms() < end);
    return false;
}

/* The process 'p' (a child of this test process) was told to stop: waits for its exit and
 * returns its status as waitpid gives it, or -1 when it was still alive after timeout_ms. */
static int wait_exit(sptest_proc *p, int timeout_ms)
{
    long long end = now_ms() + timeout_ms;
    int st = 0;
    for (;;) {
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return st;
        }
        ck_assert_msg(r == 0, "waitpid %s: %s", p->name, strerror(errno));
        if (now_ms() >= end) return -1;
        sleep_ms(20);
    }
}

/* ---- metrics ------------------------------------------------------------------------- */

/* True when a line of 'text' starts with 'prefix'. */
static bool has_line(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, prefix, n) == 0) return true;
        p = strchr(p, '\n');
        if (p != NULL) p++;
    }
    return false;
}

START_TEST(gateway_metrics_count_routes_bus_and_process)
{
    user u;
    must_user(&u, "metrics");
    for (int i = 0; i < 3; i++)
        ck_assert(wait_me(&u, 200, 0));
    answer a = api("GET", "/v1/me", NULL, NULL);
    ck_assert_int_eq(a.status, 401);

    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", GW->admin_port);
    /* a request is counted just after its answer is sent: allow the last one a moment */
    sptest_resp *r = NULL;
    for (int i = 0; i < 100; i++) {
        if (r != NULL) {
            sptest_resp_free(r);
            sleep_ms(20);
        }
        r = sptest_http("GET", url, NULL, NULL, 0);
        ck_assert_int_eq(r->status, 200);
        if (has_line(r->body, "sp_http_requests_total{route=\"/v1/me\",method=\"GET\",status=\"401\"} "))
            break;
    }
    const char *m = r->body;
    /* the route's pattern and the status are labels; a raw path never is */
    ck_assert_msg(
        has_line(m, "sp_http_requests_total{route=\"/v1/me\",method=\"GET\",status=\"200\"} "),
        "%s", m);
    ck_assert(
        has_line(m, "sp_http_requests_total{route=\"/v1/me\",method=\"GET\",status=\"401\"} "));
    ck_assert(has_line(m, "sp_http_requests_total{route=\"/v1/auth/register\",method=\"POST\","
                          "status=\"201\"} "));
    ck_assert(
        has_line(m, "sp_http_request_duration_seconds_bucket{route=\"/v1/me\",method=\"GET\",le="));
    ck_assert(
        has_line(m, "sp_http_request_duration_seconds_count{route=\"/v1/me\",method=\"GET\"} "));
    ck_assert(
        has_line(m, "sp_http_request_duration_seconds_sum{route=\"/v1/me\",method=\"GET\"} "));
    ck_assert(
        has_line(m, "sp_bus_request_duration_seconds_bucket{subject=\"sp.auth.v1.GetMe\",le="));
    ck_assert(
        has_line(m, "sp_bus_request_duration_seconds_count{subject=\"sp.auth.v1.Register\"} "));
    ck_assert(has_line(m, "process_resident_memory_bytes "));
    ck_assert(has_line(m, "process_open_fds "));
    ck_assert_msg(strstr(m, "route=\"/v1/me/") == NULL, "a raw path as a label");
    sptest_resp_free(r);
}
END_TEST

/* ---- kill -9 of the servers ------------------------------------------------------------ */

START_TEST(nats_killed_answers_503_and_recovers_without_restarts)
{
    user u;
    must_user(&u, "nats");
    load l;
    load_start(&l, &u, false);
    sleep_ms(300);

    sptest_kill(&E->nats, SIGKILL);
    answer a = api("GET", "/v1/me", u.token, NULL);
    ck_assert_msg(a.status == 503 && is_unavailable(&a), "%ld %s", a.status, a.body);
    ck_assert_msg(a.seconds < BUS_DEADLINE_S + 2.0, "503 after %.2f s", a.seconds);
    a = register_new("nats-down");
    ck_assert_msg(a.status == 503 && is_unavailable(&a), "%ld %s", a.status, a.body);
    ck_assert_msg(a.seconds < BUS_DEADLINE_S + 2.0, "503 after %.2f s", a.seconds);
    ck_assert_msg(wait_admin(GW, "/readyz", 503, 5000), "gateway /readyz stays 200 without NATS");
    ck_assert_msg(wait_admin(AUTH, "/readyz", 503, 5000), "auth /readyz stays 200 without NATS");
    ck_assert_int_eq(admin_status(GW, "/healthz"), 200);
    sleep_ms(3000); /* longer than the bus deadline: the load sees the fault */

    pid_t auth_pid = AUTH->pid, gw_pid = GW->pid;
    sptest_restart(E, &E->nats);
    ck_assert_msg(wait_me(&u, 200, RECOVER_MS), "GET /v1/me not back within 10 s");
    ck_assert_msg(wait_register(201, RECOVER_MS), "register not back within 10 s");
    ck_assert(wait_admin(GW, "/readyz", 200, RECOVER_MS));
    ck_assert(wait_admin(AUTH, "/readyz", 200, RECOVER_MS));
    sleep_ms(300);
    load_stop(&l);
    ck_assert_msg(l.me_503 > 0, "the load never saw the fault");
    ck_assert(AUTH->pid == auth_pid && GW->pid == gw_pid);
    ck_assert_int_eq(kill(auth_pid, 0), 0);
    ck_assert_int_eq(kill(gw_pid, 0), 0);
}
END_TEST

START_TEST(postgres_killed_answers_503_and_recovers_without_restarts)
{
    user u;
    must_user(&u, "pg");
    load l;
    load_start(&l, &u, false);
    sleep_ms(300);

    sptest_kill(&E->pg, SIGKILL);
    ck_assert_msg(wait_me(&u, 503, 5000), "GET /v1/me is not 503 without PostgreSQL");
    answer a = register_new("pg-down");
    ck_assert_msg(a.status == 503 && is_unavailable(&a), "%ld %s", a.status, a.body);
    ck_assert_msg(a.seconds < BUS_DEADLINE_S + 2.0, "503 after %.2f s", a.seconds);
    ck_assert_msg(wait_admin(AUTH, "/readyz", 503, 5000),
                  "auth /readyz stays 200 without PostgreSQL");
    /* one service's database down must not take the gateway out of rotation */
    ck_assert_int_eq(admin_status(GW, "/readyz"), 200);
    sleep_ms(1000);

    pid_t auth_pid = AUTH->pid;
    sptest_restart(E, &E->pg);
    ck_assert_msg(wait_me(&u, 200, RECOVER_MS), "GET /v1/me not back within 10 s");
    ck_assert_msg(wait_register(201, RECOVER_MS), "register not back within 10 s");
    ck_assert(wait_admin(AUTH, "/readyz", 200, RECOVER_MS));
    sleep_ms(300);
    load_stop(&l);
    ck_assert_msg(l.me_503 > 0, "the load never saw the fault");
    ck_assert(AUTH->pid == auth_pid);
    ck_assert_int_eq(kill(auth_pid, 0), 0);
}
END_TEST

START_TEST(redis_killed_refuses_tokens_keeps_register_and_recovers)
{
    user u;
    must_user(&u, "redis");
    load l;

    sptest_kill(&E->redis, SIGKILL);
    load_start(&l, &u, true);
    /* the gateway's copy of the revoked sessions goes stale within its 250 ms check */
    ck_assert_msg(wait_me(&u, 503, 2000), "a token still accepted 2 s after Redis died");
    answer a = api("GET", "/v1/me", u.token, NULL);
    ck_assert_msg(a.status == 503 && is_unavailable(&a), "%ld %s", a.status, a.body);
    ck_assert_msg(a.seconds < BUS_DEADLINE_S + 2.0, "503 after %.2f s", a.seconds);
    ck_assert_msg(wait_register(201, 5000), "register needs Redis");
    ck_assert(wait_admin(GW, "/readyz", 503, 5000));
    sleep_ms(1000);

    sptest_restart(E, &E->redis);
    ck_assert_msg(wait_me(&u, 200, RECOVER_MS), "GET /v1/me not back within 10 s");
    ck_assert(wait_admin(GW, "/readyz", 200, RECOVER_MS));
    sleep_ms(300);
    load_stop(&l);
    ck_assert_msg(l.me_503 > 0, "the load never saw the fault");
}
END_TEST

/* ---- SIGTERM with requests in flight ------------------------------------------------ */

#define INFLIGHT 6

typedef struct {
    pthread_t th;
    answer a;
} flight;

static void *register_one(void *arg)
{
    flight *f = arg;
    f->a = register_new("inflight");
    return NULL;
}

static void flights_start(flight *f)
{
    for (int i = 0; i < INFLIGHT; i++)
        ck_assert_int_eq(pthread_create(&f[i].th, NULL, register_one, &f[i]), 0);
}

/* Joins them; returns how many got 201. */
static int flights_join(flight *f, bool answer_required)
{
    int ok = 0;
    for (int i = 0; i < INFLIGHT; i++)
        pthread_join(f[i].th, NULL);
    for (int i = 0; i < INFLIGHT; i++) {
        const answer *a = &f[i].a;
        if (a->status == 201) ok++;
        ck_assert_msg(a->status == 201 || (a->status == 503 && is_unavailable(a)) ||
                          (!answer_required && a->status == 0),
                      "in-flight register: %ld after %.2f s %s", a->status, a->seconds, a->body);
    }
    return ok;
}

static void assert_clean_exit(sptest_proc *p, int st)
{
    ck_assert_msg(st != -1, "%s still running %d s after SIGTERM", p->name, SHUTDOWN_S);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s %d (see %s)", p->name,
                  WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                  p->log);
    ck_assert_msg(!sptest_log_has_sanitizer(p, 0), "sanitizer report in %s", p->log);
}

START_TEST(auth_sigterm_finishes_requests_in_flight_and_exits_0)
{
    flight f[INFLIGHT];
    memset(f, 0, sizeof(f));
    ck_assert(wait_register(201, 5000));
    flights_start(f);
    sleep_ms(150); /* sent: registering hashes a password (tens of ms each) */
    long long t0 = now_ms();
    ck_assert_int_eq(kill(AUTH->pid, SIGTERM), 0);
    int st = wait_exit(AUTH, SHUTDOWN_S * 1000 + 500);
    long long took = now_ms() - t0;
    int ok = flights_join(f, true);
    assert_clean_exit(AUTH, st);
    ck_assert_msg(took <= SHUTDOWN_S * 1000, "exit after %lld ms", took);
    ck_assert_msg(ok > 0, "no in-flight request was finished");

    /* nobody serves now: 503, quickly */
    answer a = register_new("auth-gone");
    ck_assert_msg(a.status == 503 && is_unavailable(&a), "%ld %s", a.status, a.body);
    sptest_restart(E, AUTH);
    ck_assert(wait_register(201, RECOVER_MS));
}
END_TEST

START_TEST(gateway_sigterm_finishes_requests_in_flight_and_stops_listening)
{
    flight f[INFLIGHT];
    memset(f, 0, sizeof(f));
    ck_assert(wait_register(201, 5000));
    flights_start(f);
    sleep_ms(150);
    long long t0 = now_ms();
    ck_assert_int_eq(kill(GW->pid, SIGTERM), 0);
    int st = wait_exit(GW, SHUTDOWN_S * 1000 + 500);
    long long took = now_ms() - t0;
    int ok = flights_join(f, true);
    assert_clean_exit(GW, st);
    ck_assert_msg(took <= SHUTDOWN_S * 1000, "exit after %lld ms", took);
    ck_assert_msg(ok > 0, "no in-flight request was finished");
    ck_assert_msg(!sptest_wait_tcp(E->http_port, 200), "the HTTP port still accepts");
    ck_assert_msg(!sptest_wait_tcp(GW->admin_port, 200), "the admin port still accepts");

    sptest_restart(E, GW);
    ck_assert(wait_register(201, RECOVER_MS));
}
END_TEST

static Suite *faults_suite(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = tcase_create("faults");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, gateway_metrics_count_routes_bus_and_process);
    tcase_add_test(tc, nats_killed_answers_503_and_recovers_without_restarts);
    tcase_add_test(tc, postgres_killed_answers_503_and_recovers_without_restarts);
    tcase_add_test(tc, redis_killed_refuses_tokens_keeps_register_and_recovers);
    tcase_add_test(tc, auth_sigterm_finishes_requests_in_flight_and_exits_0);
    tcase_add_test(tc, gateway_sigterm_finishes_requests_in_flight_and_stops_listening);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    E = sptest_start("faults", SPTEST_ALL);
    AUTH = sptest_start_service(E, "auth", NULL);
    GW = sptest_start_service(E, "gateway", NULL);

    SRunner *sr = srunner_create(faults_suite());
    /* No fork: the servers a test restarts must outlive it (a restarted server dies with
     * the process that started it), and our services must stay children of this process
     * for their exit status. Every request is bounded by the client (5 s). */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed > 0) sptest_mark_failed(E);
    sptest_stop(E);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
