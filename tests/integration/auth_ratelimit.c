/* auth_ratelimit.c -- login rate limits end to end (api.md, "Auth and profile"): failures
 * per account and per client ip counted in Redis, 429 with Retry-After without checking the
 * password, exact under concurrent bursts (no overshoot by the requests in flight), a
 * success clearing the account's count and not counting against the ip, X-Forwarded-For
 * believed only from SP_TRUSTED_PROXIES (right-most untrusted entry; garbage ignored), and
 * 503 while Redis is down. Auth runs with small limits (3 per account, 8 per ip per 45 s);
 * the gateway trusts 127.0.0.1 and 127.0.1.0/24, and the test picks its source address
 * among 127/8 to be a trusted proxy or not. */
#include <arpa/inet.h>
#include <check.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "spcrypto.h"
#include "sptest.h"

#define FAILS_PER_ACCOUNT 3
#define FAILS_PER_IP 8
#define ACCOUNT_WINDOW_S 900
#define IP_WINDOW_S 45 /* not the gateway's default Retry-After (60): it must come from Redis */
#define PASSWORD "right-password-1"

static sptest_env *E;

/* ---- helpers --------------------------------------------------------------------------- */

/* A client address no other test uses: 10.<random>.<random>.<n>. */
static void fresh_ip(char *buf, size_t len)
{
    static unsigned n;
    uint8_t r[2];
    spcrypto_random(r, sizeof(r));
    snprintf(buf, len, "10.%u.%u.%u", r[0], r[1], (++n % 250) + 1);
}

typedef struct {
    long status;
    long retry_after; /* -1 when absent */
    char code[64];    /* error.code, or "" */
    double seconds;
    char *access; /* accessToken of a 200, malloc'd (post_from), or NULL */
} attempt_res;

static size_t on_body(char *p, size_t size, size_t n, void *user)
{
    char **buf = user;
    size_t old = *buf != NULL ? strlen(*buf) : 0, add = size * n;
    char *nb = realloc(*buf, old + add + 1);
    ck_assert_ptr_nonnull(nb);
    memcpy(nb + old, p, add);
    nb[old + add] = '\0';
    *buf = nb;
    return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *user)
{
    attempt_res *res = user;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
        res->retry_after = strtol(p + 12, NULL, 10);
    return len;
}

/* POST 'path' with the JSON 'json' from source address 'src' (NULL: the default,
 * 127.0.0.1) with 'xff' as X-Forwarded-For (NULL: none) and 'token' as the bearer (NULL:
 * none). */
static attempt_res post_from(const char *src, const char *xff, const char *token, const char *path,
                             const char *json)
{
    attempt_res res = {.status = 0, .retry_after = -1, .code = ""};
    char url[256], xh[512], auth[2048];
    char *body = NULL;

    CURL *c = curl_easy_init();
    ck_assert_ptr_nonnull(c);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    if (xff != NULL) {
        snprintf(xh, sizeof(xh), "X-Forwarded-For: %s", xff);
        h = curl_slist_append(h, xh);
    }
    if (token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    snprintf(url, sizeof(url), "%s%s", E->base_url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &res);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 15L);
    if (src != NULL) curl_easy_setopt(c, CURLOPT_INTERFACE, src);
    CURLcode rc = curl_easy_perform(c);
    ck_assert_msg(rc == CURLE_OK, "POST %s: %s", path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res.status);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &res.seconds);
    cJSON *j = body != NULL ? cJSON_Parse(body) : NULL;
    const cJSON *code =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "error"), "code");
    if (cJSON_IsString(code)) snprintf(res.code, sizeof(res.code), "%s", code->valuestring);
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "accessToken");
    if (cJSON_IsString(at)) res.access = strdup(at->valuestring);
    cJSON_Delete(j);
    free(body);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return res;
}

/* POST /v1/auth/login {email,password}, as post_from. */
static attempt_res login_from(const char *src, const char *xff, const char *email,
                              const char *password)
{
    char *json = sptest_json_obj("email", email, "password", password, NULL);
    attempt_res res = post_from(src, xff, NULL, "/v1/auth/login", json);
    free(json);
    free(res.access);
    res.access = NULL;
    return res;
}

static attempt_res login_xff(const char *xff, const char *email, const char *password)
{
    return login_from(NULL, xff, email, password);
}

static void must_register(const char *email)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", "Rate Limited");
    cJSON_AddStringToObject(o, "email", email);
    cJSON_AddStringToObject(o, "password", PASSWORD);
    char *b = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    sptest_resp *r = sptest_json(E, "POST", "/v1/auth/register", NULL, b);
    ck_assert_msg(r->status == 201, "register %s: %ld %s", email, r->status, r->body);
    sptest_resp_free(r);
    free(b);
}

static void assert_401(attempt_res r, const char *what)
{
    ck_assert_msg(r.status == 401 && strcmp(r.code, "unauthenticated") == 0,
                  "%s: want 401, got %ld %s", what, r.status, r.code);
}

/* 429 rate_limited with a Retry-After of what is left of a window of max_s seconds that
 * began during this test (a test takes well under 30 s). */
static void assert_429(attempt_res r, long max_s, const char *what)
{
    ck_assert_msg(r.status == 429 && strcmp(r.code, "rate_limited") == 0,
                  "%s: want 429, got %ld %s", what, r.status, r.code);
    ck_assert_msg(r.retry_after > max_s - 30 && r.retry_after <= max_s,
                  "%s: Retry-After %ld (window %ld)", what, r.retry_after, max_s);
}

/* 'n' wrong passwords for 'email' from X-Forwarded-For 'ip', each answered 401. */
static void fail_n(const char *ip, const char *email, int n)
{
    for (int i = 0; i < n; i++)
        assert_401(login_xff(ip, email, "wrong-password"), email);
}

/* One inline command to the stack's Redis (after AUTH); the first line of its answer ("+PONG",
 * ":1",
 * "*0") into out. */
static void redis_line(const char *cmd, char *out, size_t len)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)E->redis_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    char line[512];
    int n = snprintf(line, sizeof(line), "AUTH %s\r\n%s\r\n", E->redis_password, cmd);
    ck_assert_int_eq(write(fd, line, (size_t)n), n);
    size_t got = 0;
    for (int lines = 0; lines < 2 && got + 1 < len;) { /* AUTH's +OK, then the answer */
        ssize_t k = read(fd, out + got, 1);
        if (k <= 0) break;
        if (out[got] == '\n') {
            if (++lines == 1) got = 0;
            continue;
        }
        got++;
    }
    out[got] = '\0';
    out[strcspn(out, "\r")] = '\0';
    close(fd);
}

/* ---- concurrent bursts ------------------------------------------------------------------ */

#define BURST_MAX 32

typedef struct {
    pthread_barrier_t *start;
    const char *xff;
    char email[128];
    const char *password;
    attempt_res res;
} burst_one;

static void *burst_thread(void *arg)
{
    burst_one *b = arg;
    pthread_barrier_wait(b->start);
    b->res = login_xff(b->xff, b->email, b->password);
    return NULL;
}

/* 'n' logins at once (one thread and one connection each, released together by a
 * barrier) from X-Forwarded-For 'ip'; emails[i] and the password of each in 'b'. Counts
 * the 401s and 429s into *n401 and *n429; every 429 must carry what is left of a window
 * of 'window_s' seconds. */
static void burst(burst_one *b, int n, const char *ip, long window_s, int *n401, int *n429)
{
    pthread_t t[BURST_MAX];
    pthread_barrier_t start;
    ck_assert_int_le(n, BURST_MAX);
    ck_assert_int_eq(pthread_barrier_init(&start, NULL, (unsigned)n), 0);
    for (int i = 0; i < n; i++) {
        b[i].start = &start;
        b[i].xff = ip;
        ck_assert_int_eq(pthread_create(&t[i], NULL, burst_thread, &b[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&start);
    *n401 = *n429 = 0;
    for (int i = 0; i < n; i++) {
        if (b[i].res.status == 401) {
            assert_401(b[i].res, b[i].email);
            (*n401)++;
        } else {
            assert_429(b[i].res, window_s, b[i].email);
            (*n429)++;
        }
    }
}

/* ---- per account ----------------------------------------------------------------------- */

START_TEST(account_key_is_a_digest_of_the_lower_cased_email)
{
    char email[128], mixed[128], ip[32], cmd[256], out[64], hex[65];
    uint8_t digest[32];
    sptest_unique_email(email, sizeof(email), "digest");
    snprintf(mixed, sizeof(mixed), "DiGeSt%s", email + 6);
    fresh_ip(ip, sizeof(ip));
    assert_401(login_xff(ip, mixed, "wrong-password"), mixed);

    spcrypto_sha256(digest, email, strlen(email));
    spcrypto_hex(hex, digest, sizeof(digest));
    snprintf(cmd, sizeof(cmd), "TTL sp:login:fail:acct:%s", hex);
    redis_line(cmd, out, sizeof(out));
    long ttl = out[0] == ':' ? strtol(out + 1, NULL, 10) : -100;
    ck_assert_msg(ttl > ACCOUNT_WINDOW_S - 30 && ttl <= ACCOUNT_WINDOW_S, "%s -> %s", cmd, out);
    snprintf(cmd, sizeof(cmd), "TTL sp:login:fail:ip:%s", ip);
    redis_line(cmd, out, sizeof(out));
    ttl = out[0] == ':' ? strtol(out + 1, NULL, 10) : -100;
    ck_assert_msg(ttl > IP_WINDOW_S - 30 && ttl <= IP_WINDOW_S, "%s -> %s", cmd, out);
    redis_line("KEYS *@*", out, sizeof(out)); /* no email anywhere in a key */
    ck_assert_str_eq(out, "*0");
}
END_TEST

START_TEST(account_burst_tries_exactly_the_limit)
{
    enum { N = 4 * FAILS_PER_ACCOUNT + 3 };
    burst_one b[N];
    char email[128], ip[32], other_ip[32];
    int n401, n429;
    sptest_unique_email(email, sizeof(email), "burst");
    fresh_ip(ip, sizeof(ip));
    fresh_ip(other_ip, sizeof(other_ip));
    must_register(email);
    memset(b, 0, sizeof(b));
    for (int i = 0; i < N; i++) {
        snprintf(b[i].email, sizeof(b[i].email), "%s", email);
        b[i].password = "wrong-password";
    }
    burst(b, N, ip, ACCOUNT_WINDOW_S, &n401, &n429);
    /* each 401 is one password tried: exactly the limit, whatever was in flight */
    ck_assert_int_eq(n401, FAILS_PER_ACCOUNT);
    ck_assert_int_eq(n429, N - FAILS_PER_ACCOUNT);

    /* the window is not over: the right password is refused, from anywhere */
    assert_429(login_xff(ip, email, PASSWORD), ACCOUNT_WINDOW_S, "right password after the burst");
    assert_429(login_xff(other_ip, email, PASSWORD), ACCOUNT_WINDOW_S, "right password, other ip");
}
END_TEST

START_TEST(account_limit_refuses_even_the_right_password)
{
    char email[128], ip[32], other_ip[32];
    sptest_unique_email(email, sizeof(email), "acct");
    fresh_ip(ip, sizeof(ip));
    fresh_ip(other_ip, sizeof(other_ip));
    must_register(email);
    fail_n(ip, email, FAILS_PER_ACCOUNT);

    /* not checked while limited: the right password gets the same 429 */
    assert_429(login_xff(ip, email, PASSWORD), ACCOUNT_WINDOW_S, "right password, same ip");
    /* the count is the account's, whatever the ip */
    assert_429(login_xff(other_ip, email, PASSWORD), ACCOUNT_WINDOW_S, "right password, other ip");
}
END_TEST

START_TEST(unknown_email_is_limited_the_same_in_any_case)
{
    char email[128], upper[128], ip[32];
    sptest_unique_email(email, sizeof(email), "nobody");
    fresh_ip(ip, sizeof(ip));
    fail_n(ip, email, FAILS_PER_ACCOUNT);

    assert_429(login_xff(ip, email, "wrong-password"), ACCOUNT_WINDOW_S, "unknown email");
    snprintf(upper, sizeof(upper), "%s", email);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    assert_429(login_xff(ip, upper, "wrong-password"), ACCOUNT_WINDOW_S,
               "unknown email, upper case");
}
END_TEST

START_TEST(another_account_from_another_ip_still_logs_in)
{
    char locked[128], other[128], ip[32], other_ip[32];
    sptest_unique_email(locked, sizeof(locked), "locked");
    sptest_unique_email(other, sizeof(other), "free");
    fresh_ip(ip, sizeof(ip));
    fresh_ip(other_ip, sizeof(other_ip));
    must_register(locked);
    must_register(other);
    fail_n(ip, locked, FAILS_PER_ACCOUNT);
    assert_429(login_xff(ip, locked, PASSWORD), ACCOUNT_WINDOW_S, "locked account");

    attempt_res r = login_xff(other_ip, other, PASSWORD);
    ck_assert_msg(r.status == 200, "other account: %ld %s", r.status, r.code);
}
END_TEST

START_TEST(success_before_the_limit_clears_the_account_count)
{
    char email[128], ip[32];
    sptest_unique_email(email, sizeof(email), "clear");
    fresh_ip(ip, sizeof(ip));
    must_register(email);
    fail_n(ip, email, FAILS_PER_ACCOUNT - 1);
    attempt_res r = login_xff(ip, email, PASSWORD);
    ck_assert_msg(r.status == 200, "login before the limit: %ld %s", r.status, r.code);

    /* a whole new allowance: without the clear the first of these would be refused */
    fail_n(ip, email, FAILS_PER_ACCOUNT);
    assert_429(login_xff(ip, email, PASSWORD), ACCOUNT_WINDOW_S, "after a new series");
}
END_TEST

/* ---- per client ip --------------------------------------------------------------------- */

START_TEST(ip_limit_spans_emails_and_spares_other_ips)
{
    char email[128], ip[32], other_ip[32], known[128];
    fresh_ip(ip, sizeof(ip));
    fresh_ip(other_ip, sizeof(other_ip));
    sptest_unique_email(known, sizeof(known), "ipknown");
    must_register(known);
    for (int i = 0; i < FAILS_PER_IP; i++) {
        sptest_unique_email(email, sizeof(email), "spray");
        assert_401(login_xff(ip, email, "wrong-password"), email);
    }

    sptest_unique_email(email, sizeof(email), "spray");
    assert_429(login_xff(ip, email, "wrong-password"), IP_WINDOW_S, "new email, same ip");
    assert_429(login_xff(ip, known, PASSWORD), IP_WINDOW_S, "right password, same ip");
    attempt_res r = login_xff(other_ip, known, PASSWORD);
    ck_assert_msg(r.status == 200, "other ip: %ld %s", r.status, r.code);
    assert_401(login_xff(other_ip, email, "wrong-password"), "other ip, unknown email");
}
END_TEST

START_TEST(ip_burst_over_many_accounts_tries_exactly_the_limit)
{
    enum { N = 2 * FAILS_PER_IP + 4 };
    burst_one b[N];
    char ip[32], email[128];
    int n401, n429;
    fresh_ip(ip, sizeof(ip));
    memset(b, 0, sizeof(b));
    for (int i = 0; i < N; i++) {
        sptest_unique_email(b[i].email, sizeof(b[i].email), "ipburst");
        b[i].password = "wrong-password";
    }
    burst(b, N, ip, IP_WINDOW_S, &n401, &n429);
    ck_assert_int_eq(n401, FAILS_PER_IP);
    ck_assert_int_eq(n429, N - FAILS_PER_IP);

    sptest_unique_email(email, sizeof(email), "ipburst");
    assert_429(login_xff(ip, email, "wrong-password"), IP_WINDOW_S, "after the burst");
}
END_TEST

/* A login is counted in advance and a success gives the ip's share back: successes never
 * use up the ip's allowance of failures. */
START_TEST(successes_do_not_count_against_the_ip)
{
    char email[128], known[128], ip[32];
    fresh_ip(ip, sizeof(ip));
    sptest_unique_email(known, sizeof(known), "ipok");
    must_register(known);
    for (int i = 0; i < FAILS_PER_IP - 1; i++) {
        sptest_unique_email(email, sizeof(email), "ipok-fail");
        assert_401(login_xff(ip, email, "wrong-password"), email);
    }
    for (int i = 0; i < 3; i++) {
        attempt_res r = login_xff(ip, known, PASSWORD);
        ck_assert_msg(r.status == 200, "success %d: %ld %s", i, r.status, r.code);
    }

    /* the last failure of the allowance is still there, and then no more */
    sptest_unique_email(email, sizeof(email), "ipok-fail");
    assert_401(login_xff(ip, email, "wrong-password"), "the last allowed failure");
    assert_429(login_xff(ip, known, PASSWORD), IP_WINDOW_S, "past the ip limit");
}
END_TEST

/* Each proxy appends what it saw: the entries left of the last untrusted one are the
 * client's to forge, and trusted hops on the right are skipped. */
START_TEST(xff_counts_the_rightmost_untrusted_address)
{
    char email[128], ip[32], forged[32], xff[128];
    fresh_ip(ip, sizeof(ip));
    for (int i = 0; i < FAILS_PER_IP; i++) {
        sptest_unique_email(email, sizeof(email), "forge");
        fresh_ip(forged, sizeof(forged));
        snprintf(xff, sizeof(xff), "%s, %s", forged, ip);
        assert_401(login_xff(xff, email, "wrong-password"), xff);
    }

    sptest_unique_email(email, sizeof(email), "forge");
    assert_429(login_xff(ip, email, "wrong-password"), IP_WINDOW_S, "the real client ip alone");
    snprintf(xff, sizeof(xff), "%s, 127.0.1.9", ip); /* a trusted hop behind the client */
    assert_429(login_xff(xff, email, "wrong-password"), IP_WINDOW_S, "behind a trusted hop");
}
END_TEST

START_TEST(xff_from_an_untrusted_peer_is_ignored)
{
    char email[128], xff[32], ip[32];
    /* 127.0.0.2 is not in SP_TRUSTED_PROXIES: its X-Forwarded-For is the client's own claim */
    for (int i = 0; i < FAILS_PER_IP; i++) {
        sptest_unique_email(email, sizeof(email), "untrusted");
        fresh_ip(xff, sizeof(xff));
        assert_401(login_from("127.0.0.2", xff, email, "wrong-password"), xff);
    }

    sptest_unique_email(email, sizeof(email), "untrusted");
    fresh_ip(xff, sizeof(xff));
    assert_429(login_from("127.0.0.2", xff, email, "wrong-password"), IP_WINDOW_S,
               "a fresh forged ip from the same peer");
    /* the same kind of header from a trusted proxy is believed */
    fresh_ip(ip, sizeof(ip));
    assert_401(login_xff(ip, email, "wrong-password"), "through the trusted proxy");
}
END_TEST

START_TEST(xff_with_garbage_is_ignored)
{
    static const char *garbage[] = {
        "not-an-ip",     "%s, junk",     "%s:8080", "%s,,%s",
        "999.1.1.1, %s", "%s; 10.0.0.1", "[::1]",   "%s 10.9.9.9",
    };
    char email[128], ip[32], xff[160];
    ck_assert_int_eq(sizeof(garbage) / sizeof(garbage[0]), FAILS_PER_IP);
    /* 127.0.1.7: a trusted proxy (by the CIDR 127.0.1.0/24) sending broken headers; each
     * also names a fresh valid address, which must not be believed */
    for (int i = 0; i < FAILS_PER_IP; i++) {
        sptest_unique_email(email, sizeof(email), "garbage");
        fresh_ip(ip, sizeof(ip));
        snprintf(xff, sizeof(xff), garbage[i], ip, ip);
        assert_401(login_from("127.0.1.7", xff, email, "wrong-password"), xff);
    }

    sptest_unique_email(email, sizeof(email), "garbage");
    assert_429(login_from("127.0.1.7", NULL, email, "wrong-password"), IP_WINDOW_S,
               "the proxy's own address");
    fresh_ip(ip, sizeof(ip));
    assert_401(login_from("127.0.1.7", ip, email, "wrong-password"), "a valid header again");
}
END_TEST

/* ---- Redis down ------------------------------------------------------------------------ */

START_TEST(redis_down_login_is_503_register_works_and_recovers)
{
    char email[128], ip[32];
    sptest_unique_email(email, sizeof(email), "redis");
    fresh_ip(ip, sizeof(ip));
    must_register(email);

    sptest_kill(&E->redis, SIGKILL);
    attempt_res r = login_xff(ip, email, PASSWORD);
    ck_assert_msg(r.status == 503 && strcmp(r.code, "unavailable") == 0, "login: %ld %s", r.status,
                  r.code);
    ck_assert_msg(r.retry_after >= 1, "Retry-After %ld", r.retry_after);
    /* auth's own answer, not the gateway giving up after SP_BUS_TIMEOUT_MS */
    ck_assert_msg(r.seconds < 5.0, "took %.2f s", r.seconds);
    r = login_xff(ip, email, "wrong-password");
    ck_assert_msg(r.status == 503, "wrong password: %ld %s", r.status, r.code);
    char other[128];
    sptest_unique_email(other, sizeof(other), "redis-reg");
    must_register(other); /* register does not need the counters */

    sptest_restart(E, &E->redis);
    /* Each auth worker tries to reconnect at most once per 200 ms (spredis): one that
     * failed just before the restart answers 503 for up to that long, whichever account
     * it serves. Allow it for each login. */
    const char *accounts[] = {email, other};
    const char *what[] = {"after restart", "registered while down"};
    for (size_t a = 0; a < 2; a++) {
        r = login_xff(ip, accounts[a], PASSWORD);
        for (int i = 0; i < 20 && r.status == 503; i++) {
            usleep(100 * 1000);
            r = login_xff(ip, accounts[a], PASSWORD);
        }
        ck_assert_msg(r.status == 200, "%s: %ld %s", what[a], r.status, r.code);
    }
}
END_TEST

/* ---- password change --------------------------------------------------------------- */

/* POST /v1/me/password with 'token' from X-Forwarded-For 'ip'. */
static attempt_res change_password(const char *ip, const char *token, const char *current,
                                   const char *next)
{
    char *json = sptest_json_obj("currentPassword", current, "newPassword", next, NULL);
    attempt_res res = post_from(NULL, ip, token, "/v1/me/password", json);
    free(json);
    return res;
}

/* 'n' password changes with a wrong current password, each answered 400 validation_failed. */
static void fail_change_n(const char *ip, const char *token, int n)
{
    for (int i = 0; i < n; i++) {
        attempt_res r = change_password(ip, token, "wrong-password", "new-password-1");
        ck_assert_msg(r.status == 400 && strcmp(r.code, "validation_failed") == 0,
                      "wrong current %d: %ld %s", i, r.status, r.code);
    }
}

/* An access token of 'email' (PASSWORD), logged in from 'ip'; malloc'd. */
static char *must_token(const char *ip, const char *email)
{
    char *json = sptest_json_obj("email", email, "password", PASSWORD, NULL);
    attempt_res r = post_from(NULL, ip, NULL, "/v1/auth/login", json);
    free(json);
    ck_assert_msg(r.status == 200 && r.access != NULL, "login %s: %ld %s", email, r.status, r.code);
    return r.access;
}

/* A held access token is no oracle for the password: wrong current passwords count as the
 * account's failed logins, and past the limit even the right one is refused, here and at
 * login. */
START_TEST(password_change_shares_the_account_limit_with_login)
{
    char email[128], ip[32], other_ip[32];
    sptest_unique_email(email, sizeof(email), "pwchange");
    fresh_ip(ip, sizeof(ip));
    fresh_ip(other_ip, sizeof(other_ip));
    must_register(email);
    char *token = must_token(ip, email);

    fail_change_n(ip, token, FAILS_PER_ACCOUNT);
    assert_429(change_password(ip, token, PASSWORD, "new-password-1"), ACCOUNT_WINDOW_S,
               "right current password past the limit");
    assert_429(change_password(other_ip, token, PASSWORD, "new-password-1"), ACCOUNT_WINDOW_S,
               "right current password, other ip");
    assert_429(login_xff(other_ip, email, PASSWORD), ACCOUNT_WINDOW_S, "login past the limit");
    free(token);
}
END_TEST

START_TEST(right_current_password_clears_the_count)
{
    char email[128], ip[32];
    sptest_unique_email(email, sizeof(email), "pwclear");
    fresh_ip(ip, sizeof(ip));
    must_register(email);
    char *token = must_token(ip, email);

    fail_change_n(ip, token, FAILS_PER_ACCOUNT - 1);
    attempt_res r = change_password(ip, token, PASSWORD, "new-password-1");
    ck_assert_msg(r.status == 204, "right current: %ld %s", r.status, r.code);
    /* the count is gone: a limit's worth of failures again before a 429 */
    fail_n(ip, email, FAILS_PER_ACCOUNT - 1);
    attempt_res ok = login_xff(ip, email, "new-password-1");
    ck_assert_msg(ok.status == 200, "login with the new password: %ld %s", ok.status, ok.code);
    free(token);
}
END_TEST

static Suite *auth_ratelimit_suite(void)
{
    Suite *s = suite_create("auth_ratelimit");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, account_key_is_a_digest_of_the_lower_cased_email);
    tcase_add_test(tc, account_burst_tries_exactly_the_limit);
    tcase_add_test(tc, account_limit_refuses_even_the_right_password);
    tcase_add_test(tc, unknown_email_is_limited_the_same_in_any_case);
    tcase_add_test(tc, another_account_from_another_ip_still_logs_in);
    tcase_add_test(tc, success_before_the_limit_clears_the_account_count);
    tcase_add_test(tc, ip_limit_spans_emails_and_spares_other_ips);
    tcase_add_test(tc, ip_burst_over_many_accounts_tries_exactly_the_limit);
    tcase_add_test(tc, successes_do_not_count_against_the_ip);
    tcase_add_test(tc, xff_counts_the_rightmost_untrusted_address);
    tcase_add_test(tc, xff_from_an_untrusted_peer_is_ignored);
    tcase_add_test(tc, xff_with_garbage_is_ignored);
    tcase_add_test(tc, password_change_shares_the_account_limit_with_login);
    tcase_add_test(tc, right_current_password_clears_the_count);
    tcase_add_test(tc, redis_down_login_is_503_register_works_and_recovers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    static const char *const auth_env[] = {
        "SP_LOGIN_FAILS_PER_ACCOUNT=3", "SP_LOGIN_FAILS_PER_IP=8", "SP_LOGIN_IP_WINDOW_S=45", NULL};
    /* a long bus deadline: dozens of argon2id checks on a loaded 2-core machine must not
     * turn into 503s (the Redis test tells auth's 503 from a timeout by its speed) */
    static const char *const gw_env[] = {"SP_TRUSTED_PROXIES=127.0.0.1, 127.0.1.0/24",
                                         "SP_BUS_TIMEOUT_MS=10000", NULL};
    E = sptest_start("auth_ratelimit", SPTEST_ALL);
    sptest_start_service(E, "auth", auth_env);
    sptest_start_service(E, "gateway", gw_env);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    SRunner *sr = srunner_create(auth_ratelimit_suite());
    srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    curl_global_cleanup();
    if (failed > 0) sptest_mark_failed(E);
    sptest_stop(E);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
