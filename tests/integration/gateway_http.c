/* gateway_http.c -- the gateway's HTTP contract with no service behind it: routing, request
 * ids, token checks, body checks, the error shape and 503 when the bus has nobody. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "spcrypto.h"
#include "spjwt.h"
#include "sptest.h"

static sptest_env *env;
static sptest_proc *gw;
static char jwt_secret[512];

static void read_secret(void)
{
    FILE *f = fopen(env->secrets, "r");
    ck_assert_msg(f != NULL, "cannot open %s", env->secrets);
    char line[1024];
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = line;
        if (strncmp(s, "export ", 7) == 0) s += 7;
        if (strncmp(s, "SP_JWT_SECRET=", 14) != 0) continue;
        s += 14;
        s[strcspn(s, "\r\n")] = '\0';
        size_t n = strlen(s);
        if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
            s[n - 1] = '\0';
            s++;
        }
        snprintf(jwt_secret, sizeof(jwt_secret), "%s", s);
    }
    fclose(f);
    ck_assert_uint_ge(strlen(jwt_secret), 32);
}

static bool wait_session_store(bool fresh);

static void setup(void)
{
    env = sptest_start("gateway_http", SPTEST_NATS | SPTEST_REDIS);
    gw = sptest_start_service(env, "gateway", NULL);
    read_secret();
    /* no auth service runs here: stand in for it and say Redis holds the revocations
     * (auth's keeper sets this key), so that a valid token gets past the session check */
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "REDISCLI_AUTH=%s redis-cli -h 127.0.0.1 -p %d SET sp:revocations:loaded 1 >/dev/null",
             env->redis_password, env->redis_port);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(wait_session_store(true));
}

static void teardown(void)
{
    sptest_stop(env);
}

/* ---- helpers -------------------------------------------------------------------------- */

static spjwt_claims good_claims(void)
{
    spjwt_claims c;
    memset(&c, 0, sizeof(c));
    snprintf(c.sub, sizeof(c.sub), "3f1c2a8e-5b7d-4e2f-9a1b-0c6d8e4f2a10");
    snprintf(c.role, sizeof(c.role), "app_user");
    snprintf(c.jti, sizeof(c.jti), "b2c4e6f8-1a3c-4e5f-8a9b-0c1d2e3f4a5b");
    snprintf(c.sid, sizeof(c.sid), "c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f");
    c.iat = time(NULL);
    c.exp = c.iat + 900;
    return c;
}

static char *sign(const char *key, const char *iss, const char *aud, spjwt_claims c)
{
    spjwt_keys k = {.key = (const uint8_t *)key,
                    .keylen = strlen(key),
                    .issuer = iss,
                    .audience = aud,
                    .leeway_s = 0};
    char *tok = NULL;
    ck_assert_int_eq(spjwt_sign(&tok, &k, &c), SP_OK);
    return tok;
}

static char *good_token(void)
{
    return sign(jwt_secret, "smartpark", "smartpark-api", good_claims());
}

/* GET /v1/me with this Authorization header (NULL: none). */
static sptest_resp *get_me(const char *authorization)
{
    char url[256], h[8192];
    snprintf(url, sizeof(url), "%s/v1/me", env->base_url);
    const char *headers[] = {h, NULL};
    if (authorization != NULL) snprintf(h, sizeof(h), "Authorization: %s", authorization);
    return sptest_http("GET", url, authorization != NULL ? headers : NULL, NULL, 0);
}

static sptest_resp *get_me_bearer(const char *token)
{
    char h[8192];
    snprintf(h, sizeof(h), "Bearer %s", token);
    return get_me(h);
}

/* Waits (at most 3 s) until a valid token is past the session check ('fresh') or refused
 * with 503 "session store unavailable" (!fresh): the gateway reads Redis's loaded key every
 * 250 ms into its copy of the revoked sessions. */
static bool wait_session_store(bool fresh)
{
    char *tok = good_token();
    bool ok = false;
    for (int i = 0; i < 150 && !ok; i++) {
        if (i > 0) usleep(20 * 1000);
        sptest_resp *r = get_me_bearer(tok);
        const char *msg = r->json != NULL ? sptest_jstr(r, "error.message") : NULL;
        bool stale =
            r->status == 503 && msg != NULL && strcmp(msg, "session store unavailable") == 0;
        ok = fresh ? !stale : stale;
        sptest_resp_free(r);
    }
    free(tok);
    return ok;
}

/* The error shape every error answer has: code, message, requestId = X-Request-Id. */
static void assert_error(sptest_resp *r, long status, const char *code)
{
    ck_assert_msg(r->status == status, "status %ld, want %ld: %s", r->status, status, r->body);
    ck_assert_ptr_nonnull(r->json);
    ck_assert_str_eq(sptest_jstr(r, "error.code"), code);
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.message"));
    const char *rid = sptest_resp_header(r, "X-Request-Id");
    ck_assert_ptr_nonnull(rid);
    ck_assert_str_eq(sptest_jstr(r, "error.requestId"), rid);
    const char *ct = sptest_resp_header(r, "Content-Type");
    ck_assert_ptr_nonnull(ct);
    ck_assert_str_eq(ct, "application/json; charset=utf-8");
}

static sptest_resp *post_register(const char *ctype, const char *body, size_t len)
{
    char url[256], h[256];
    snprintf(url, sizeof(url), "%s/v1/auth/register", env->base_url);
    snprintf(h, sizeof(h), "Content-Type: %s", ctype);
    const char *headers[] = {h, NULL};
    return sptest_http("POST", url, headers, body, len);
}

/* Sends raw bytes to the gateway and returns what it answered (until close or 3 s). */
static char *raw_http(const char *req, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)env->http_port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (n <= 0) break; /* the server may answer and close before reading it all */
        off += (size_t)n;
    }
    size_t cap = 65536, got = 0;
    char *buf = calloc(1, cap + 1);
    for (;;) {
        ssize_t n = recv(fd, buf + got, cap - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
        if (got == cap) break;
    }
    buf[got] = '\0';
    close(fd);
    return buf;
}

/* ---- operations endpoints -------------------------------------------------------------- */

START_TEST(ops_endpoints_on_both_ports)
{
    char url[256];
    sptest_resp *r = sptest_json(env, "GET", "/v1/nothing-here", NULL, NULL);
    sptest_resp_free(r);
    int ports[2] = {env->http_port, gw->admin_port};
    for (int i = 0; i < 2; i++) {
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", ports[i]);
        const char *hdr[] = {"X-Request-Id: probe-1", NULL};
        r = sptest_http("GET", url, hdr, NULL, 0);
        ck_assert_int_eq(r->status, 200);
        if (i == 0) /* the API port: every response carries X-Request-Id (api.md) */
            ck_assert_str_eq(sptest_resp_header(r, "X-Request-Id"), "probe-1");
        sptest_resp_free(r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", ports[i]);
        r = sptest_http("GET", url, NULL, NULL, 0);
        ck_assert_msg(r->status == 200, "readyz on %d: %ld %s", ports[i], r->status, r->body);
        sptest_resp_free(r);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", ports[i]);
        r = sptest_http("GET", url, NULL, NULL, 0);
        ck_assert_int_eq(r->status, 200);
        ck_assert_msg(strstr(r->body, "sp_http_requests_total{") != NULL, "%s", r->body);
        ck_assert_ptr_nonnull(strstr(r->body, "route=\"unmatched\""));
        ck_assert_ptr_nonnull(strstr(r->body, "sp_http_request_duration_seconds"));
        ck_assert_ptr_null(strstr(r->body, "/v1/nothing-here")); /* pattern, never raw path */
        sptest_resp_free(r);
    }
}
END_TEST

/* ---- routing ------------------------------------------------------------------------------ */

START_TEST(unknown_path_is_404_with_error_shape)
{
    sptest_resp *r = sptest_json(env, "GET", "/v1/no/such/thing", NULL, NULL);
    assert_error(r, 404, "not_found");
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r->json, "error"), "fields"));
    sptest_resp_free(r);
    r = sptest_json(env, "GET", "/v1/me/", NULL, NULL); /* no trailing-slash alias */
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
}
END_TEST

START_TEST(known_path_other_method_is_405_with_allow)
{
    sptest_resp *r = sptest_json(env, "DELETE", "/v1/auth/login", NULL, NULL);
    assert_error(r, 405, "method_not_allowed");
    ck_assert_str_eq(sptest_resp_header(r, "Allow"), "POST");
    sptest_resp_free(r);
    r = sptest_json(env, "POST", "/v1/me", NULL, "{}");
    assert_error(r, 405, "method_not_allowed");
    ck_assert_str_eq(sptest_resp_header(r, "Allow"), "GET, PATCH, DELETE");
    sptest_resp_free(r);
}
END_TEST

/* ---- request ids -------------------------------------------------------------------------- */

START_TEST(safe_request_id_is_echoed)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/v1/nope", env->base_url);
    const char *h[] = {"X-Request-Id: Abc-123_x.Y", NULL};
    sptest_resp *r = sptest_http("GET", url, h, NULL, 0);
    ck_assert_str_eq(sptest_resp_header(r, "X-Request-Id"), "Abc-123_x.Y");
    ck_assert_str_eq(sptest_jstr(r, "error.requestId"), "Abc-123_x.Y");
    sptest_resp_free(r);

    char id64[100] = "X-Request-Id: ";
    memset(id64 + strlen(id64), 'a', 64);
    r = sptest_http("GET", url, (const char *[]){id64, NULL}, NULL, 0);
    ck_assert_uint_eq(strlen(sptest_resp_header(r, "X-Request-Id")), 64);
    sptest_resp_free(r);
}
END_TEST

START_TEST(unsafe_request_id_is_replaced)
{
    char url[256], id65[100] = "X-Request-Id: ";
    snprintf(url, sizeof(url), "%s/v1/nope", env->base_url);
    memset(id65 + strlen(id65), 'a', 65);
    const char *bad[] = {id65, "X-Request-Id: bad id", "X-Request-Id: a<script>",
                         "X-Request-Id: a/b", "X-Request-Id: caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sptest_resp *r = sptest_http("GET", url, (const char *[]){bad[i], NULL}, NULL, 0);
        const char *rid = sptest_resp_header(r, "X-Request-Id");
        ck_assert_ptr_nonnull(rid);
        ck_assert_msg(spcrypto_uuid_valid(rid), "'%s' replaced by '%s'", bad[i], rid);
        ck_assert_str_eq(sptest_jstr(r, "error.requestId"), rid);
        sptest_resp_free(r);
    }
    /* none sent: a fresh one, different each time */
    sptest_resp *a = sptest_json(env, "GET", "/v1/nope", NULL, NULL);
    sptest_resp *b = sptest_json(env, "GET", "/v1/nope", NULL, NULL);
    ck_assert(spcrypto_uuid_valid(sptest_resp_header(a, "X-Request-Id")));
    ck_assert_str_ne(sptest_resp_header(a, "X-Request-Id"), sptest_resp_header(b, "X-Request-Id"));
    sptest_resp_free(a);
    sptest_resp_free(b);
}
END_TEST

/* ---- tokens ------------------------------------------------------------------------------- */

START_TEST(me_without_token_is_unauthenticated)
{
    sptest_resp *r = get_me(NULL);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
}
END_TEST

START_TEST(me_with_basic_scheme_is_unauthenticated)
{
    sptest_resp *r = get_me("Basic x");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    r = get_me("Bearer");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
}
END_TEST

START_TEST(me_with_garbage_token_is_invalid)
{
    sptest_resp *r = get_me_bearer("not.a.token");
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    r = get_me_bearer("garbage");
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
}
END_TEST

START_TEST(me_with_token_of_another_key_is_invalid)
{
    char *tok = sign("another-key-of-at-least-32-bytes-long!!", "smartpark", "smartpark-api",
                     good_claims());
    sptest_resp *r = get_me_bearer(tok);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    free(tok);
}
END_TEST

START_TEST(me_with_expired_token_is_token_expired)
{
    spjwt_claims c = good_claims();
    c.iat -= 7200;
    c.exp = c.iat + 900;
    char *tok = sign(jwt_secret, "smartpark", "smartpark-api", c);
    sptest_resp *r = get_me_bearer(tok);
    assert_error(r, 401, "token_expired");
    sptest_resp_free(r);
    free(tok);
}
END_TEST

START_TEST(me_with_alg_none_is_invalid)
{
    /* a valid token's payload under an unsigned header, in several letter cases */
    char *good = good_token();
    const char *payload = strchr(good, '.') + 1;
    size_t plen = strcspn(payload, ".");
    const char *algs[] = {"none", "None", "NONE", "nOnE"};
    for (size_t i = 0; i < 4; i++) {
        char hdr[64], h64[128], tok[4096];
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", algs[i]);
        spcrypto_b64url_encode(h64, hdr, strlen(hdr));
        snprintf(tok, sizeof(tok), "%s.%.*s.", h64, (int)plen, payload);
        sptest_resp *r = get_me_bearer(tok);
        assert_error(r, 401, "invalid_token");
        sptest_resp_free(r);
    }
    free(good);
}
END_TEST

/* A valid token's payload under another algorithm's header, signed with HMAC-SHA256 over
 * the shared secret: the HS/RS confusion (a verifier that trusted the header's RS256 would
 * take the secret for a public key) and the HS family's other members. */
START_TEST(me_with_other_algorithm_header_is_invalid)
{
    char *good = good_token();
    const char *payload = strchr(good, '.') + 1;
    size_t plen = strcspn(payload, ".");
    const char *algs[] = {"HS256", "RS256", "HS512", "HS384", "ES256", "PS256"};
    for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        char hdr[64], h64[128], input[4096], tok[4096 + 64], sig64[64];
        uint8_t mac[32];
        snprintf(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"typ\":\"JWT\"}", algs[i]);
        spcrypto_b64url_encode(h64, hdr, strlen(hdr));
        int n = snprintf(input, sizeof(input), "%s.%.*s", h64, (int)plen, payload);
        spcrypto_hmac_sha256(mac, jwt_secret, strlen(jwt_secret), input, (size_t)n);
        spcrypto_b64url_encode(sig64, mac, sizeof(mac));
        snprintf(tok, sizeof(tok), "%s.%s", input, sig64);
        sptest_resp *r = get_me_bearer(tok);
        if (i == 0) { /* the crafting is right: HS256 passes the token check (no auth: 503) */
            ck_assert_msg(r->status == 503, "HS256: %ld %s", r->status, r->body);
        } else {
            ck_assert_msg(r->status == 401, "%s: %ld %s", algs[i], r->status, r->body);
            ck_assert_str_eq(sptest_jstr(r, "error.code"), "invalid_token");
        }
        sptest_resp_free(r);
    }
    free(good);
}
END_TEST

START_TEST(me_with_wrong_issuer_or_audience_is_invalid)
{
    char *tok = sign(jwt_secret, "someone-else", "smartpark-api", good_claims());
    sptest_resp *r = get_me_bearer(tok);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    free(tok);
    tok = sign(jwt_secret, "smartpark", "another-api", good_claims());
    r = get_me_bearer(tok);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    free(tok);
}
END_TEST

START_TEST(me_with_valid_token_and_no_auth_service_is_503)
{
    char *tok = good_token();
    sptest_resp *r = get_me_bearer(tok);
    assert_error(r, 503, "unavailable");
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Retry-After"));
    ck_assert_msg(r->seconds < 2.5, "took %.2f s", r->seconds);
    sptest_resp_free(r);
    free(tok);
}
END_TEST

/* an empty Redis (restarted without its data) holds no revocations: no token is accepted
 * until auth has rewritten them and set the loaded key */
START_TEST(valid_token_is_503_while_revocations_are_not_loaded)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "REDISCLI_AUTH=%s redis-cli -h 127.0.0.1 -p %d DEL sp:revocations:loaded >/dev/null",
             env->redis_password, env->redis_port);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(wait_session_store(false));
    char *tok = good_token();
    sptest_resp *r = get_me_bearer(tok);
    assert_error(r, 503, "unavailable");
    ck_assert_str_eq(sptest_jstr(r, "error.message"), "session store unavailable");
    sptest_resp_free(r);
    free(tok);
    snprintf(cmd, sizeof(cmd),
             "REDISCLI_AUTH=%s redis-cli -h 127.0.0.1 -p %d SET sp:revocations:loaded 1 >/dev/null",
             env->redis_password, env->redis_port);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(wait_session_store(true));
}
END_TEST

/* revocations the gateway never heard of (neither the call nor auth's announcement) are
 * taken from Redis whenever its copy was stale, as at start: here Redis loses the loaded
 * key, gets a revoked session and the key back, as when auth rewrites an emptied Redis */
START_TEST(revocations_in_redis_are_loaded_after_being_stale)
{
    spjwt_claims c = good_claims();
    snprintf(c.sid, sizeof(c.sid), "d1e2f3a4-b5c6-4d7e-8f9a-0b1c2d3e4f5a");
    char *revoked = sign(jwt_secret, "smartpark", "smartpark-api", c);
    char *other = good_token();
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "REDISCLI_AUTH=%s redis-cli -h 127.0.0.1 -p %d DEL sp:revocations:loaded >/dev/null",
             env->redis_password, env->redis_port);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(wait_session_store(false));
    snprintf(cmd, sizeof(cmd),
             "REDISCLI_AUTH=%s redis-cli -h 127.0.0.1 -p %d SET sp:revoked:sid:%s 1 EX 900 "
             ">/dev/null && "
             "REDISCLI_AUTH=%s redis-cli -h 127.0.0.1 -p %d SET sp:revocations:loaded 1 >/dev/null",
             env->redis_password, env->redis_port, c.sid, env->redis_password, env->redis_port);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert(wait_session_store(true));
    sptest_resp *r = get_me_bearer(revoked);
    assert_error(r, 401, "invalid_token");
    ck_assert_str_eq(sptest_jstr(r, "error.message"), "session revoked");
    sptest_resp_free(r);
    r = get_me_bearer(other); /* past the session check: no auth runs here, so 503 */
    ck_assert_int_ne(r->status, 401);
    sptest_resp_free(r);
    free(revoked);
    free(other);
}
END_TEST

START_TEST(route_without_body_refuses_a_body)
{
    char *tok = good_token();
    sptest_resp *r = sptest_json(env, "GET", "/v1/me", tok, "{\"x\":1}");
    assert_error(r, 400, "bad_request");
    sptest_resp_free(r);
    free(tok);
}
END_TEST

/* ---- roles and the query (api.md "Which error wins": 401 -> 403 -> 413/415/400) -------- */

static char *token_with_role(const char *role)
{
    spjwt_claims c = good_claims();
    snprintf(c.role, sizeof(c.role), "%s", role);
    return sign(jwt_secret, "smartpark", "smartpark-api", c);
}

static void assert_field(sptest_resp *r, const char *field, const char *reason)
{
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(r->json, "error"), "fields");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(fields, field);
    ck_assert_msg(cJSON_IsString(f), "no fields.%s in %s", field, r->body);
    if (reason != NULL) ck_assert_str_eq(f->valuestring, reason);
}

/* /v1/me allows the three roles; a token of any other role may never use it */
START_TEST(forbidden_role_is_403_before_a_bad_body)
{
    char *tok = token_with_role("service");
    sptest_resp *r = sptest_json(env, "PATCH", "/v1/me", tok, "{bad");
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);
    r = sptest_json(env, "GET", "/v1/me?foo=1", tok, NULL);
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);
    char url[256], auth[4096];
    snprintf(url, sizeof(url), "%s/v1/me", env->base_url);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
    const char *h[] = {auth, "Content-Type: text/plain", NULL};
    r = sptest_http("PATCH", url, h, "x", 1);
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);
    free(tok);
    /* the three roles get past the role check to the body's own error */
    const char *roles[] = {"admin", "client_admin", "app_user"};
    for (size_t i = 0; i < 3; i++) {
        tok = token_with_role(roles[i]);
        r = sptest_json(env, "PATCH", "/v1/me", tok, "{bad");
        assert_error(r, 400, "malformed_json");
        sptest_resp_free(r);
        free(tok);
    }
}
END_TEST

START_TEST(undeclared_query_param_is_400_naming_it)
{
    char *tok = good_token();
    sptest_resp *r = sptest_json(env, "GET", "/v1/me?foo=1", tok, NULL);
    assert_error(r, 400, "validation_failed");
    assert_field(r, "foo", "unknown parameter");
    sptest_resp_free(r);
    r = sptest_json(env, "GET", "/v1/me?limit=10&cursor=abc", tok, NULL); /* not a list */
    assert_error(r, 400, "validation_failed");
    assert_field(r, "limit", "unknown parameter");
    assert_field(r, "cursor", "unknown parameter");
    sptest_resp_free(r);
    r = sptest_json(env, "GET", "/v1/me?%FF%00=1", tok, NULL); /* never echoed raw */
    assert_error(r, 400, "validation_failed");
    assert_field(r, "query", "unknown parameter");
    sptest_resp_free(r);
    r = sptest_json(env, "PATCH", "/v1/me?name=x", tok, "{\"name\":\"Ana\"}");
    assert_error(r, 400, "validation_failed");
    assert_field(r, "name", "unknown parameter");
    sptest_resp_free(r);
    /* no parameter at all: past every check (no auth service here: 503) */
    r = sptest_json(env, "GET", "/v1/me?", tok, NULL);
    assert_error(r, 503, "unavailable");
    sptest_resp_free(r);
    free(tok);
    /* public routes too */
    r = sptest_json(env, "POST", "/v1/auth/login?next=/x", NULL,
                    "{\"email\":\"a@b.c\",\"password\":\"12345678\"}");
    assert_error(r, 400, "validation_failed");
    assert_field(r, "next", "unknown parameter");
    sptest_resp_free(r);
}
END_TEST

START_TEST(query_errors_come_after_401)
{
    sptest_resp *r = sptest_json(env, "GET", "/v1/me?foo=1&foo=2", NULL, NULL);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    r = get_me_bearer("garbage");
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
}
END_TEST

START_TEST(login_503_names_its_own_deadline)
{
    /* no auth service: nobody answers; 503 with Retry-After, whatever the route's deadline */
    sptest_resp *r = sptest_json(env, "POST", "/v1/auth/login", NULL,
                                 "{\"email\":\"a@b.c\",\"password\":\"12345678\"}");
    assert_error(r, 503, "unavailable");
    ck_assert_str_eq(sptest_resp_header(r, "Retry-After"), "1");
    /* the subject comes from LoginRequest; the deadline is login's, not SP_BUS_TIMEOUT_MS */
    ck_assert_str_eq(sptest_jstr(r, "error.message"),
                     "sp.auth.v1.Login did not answer within the route's deadline (5000 ms)");
    sptest_resp_free(r);
    r = sptest_json(env, "POST", "/v1/auth/refresh", NULL, "{\"refreshToken\":\"a.b\"}");
    assert_error(r, 503, "unavailable");
    ck_assert_str_eq(sptest_jstr(r, "error.message"),
                     "sp.auth.v1.Refresh did not answer within SP_BUS_TIMEOUT_MS (2000 ms)");
    sptest_resp_free(r);
}
END_TEST

/* ---- bodies ------------------------------------------------------------------------------- */

static const char valid_register[] =
    "{\"name\":\"Ana\",\"email\":\"ana@example.com\",\"password\":\"s3cret-pass\"}";

START_TEST(register_with_text_plain_is_415)
{
    sptest_resp *r = post_register("text/plain", valid_register, strlen(valid_register));
    assert_error(r, 415, "unsupported_media_type");
    sptest_resp_free(r);
    r = post_register("application/jsonx", valid_register, strlen(valid_register));
    assert_error(r, 415, "unsupported_media_type");
    sptest_resp_free(r);
}
END_TEST

START_TEST(register_with_2mib_body_is_413)
{
    size_t n = 2u << 20;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    sptest_resp *r = post_register("application/json", big, n);
    assert_error(r, 413, "payload_too_large");
    sptest_resp_free(r);
    free(big);
}
END_TEST

START_TEST(chunked_body_over_the_limit_is_413)
{
    /* 1.25 MiB in 64 KiB chunks, no Content-Length: counted while read */
    size_t chunk = 65536, nchunks = 20;
    size_t cap = 512 + nchunks * (chunk + 16);
    char *req = malloc(cap);
    size_t off = (size_t)snprintf(req, cap,
                                  "POST /v1/auth/register HTTP/1.1\r\nHost: x\r\n"
                                  "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                                  "Connection: close\r\n\r\n");
    for (size_t i = 0; i < nchunks; i++) {
        off += (size_t)sprintf(req + off, "%zx\r\n", chunk);
        memset(req + off, ' ', chunk);
        off += chunk;
        memcpy(req + off, "\r\n", 2);
        off += 2;
    }
    memcpy(req + off, "0\r\n\r\n", 5);
    off += 5;
    char *resp = raw_http(req, off);
    ck_assert_msg(strncmp(resp, "HTTP/1.1 413 ", 13) == 0, "%.200s", resp);
    ck_assert_ptr_nonnull(strstr(resp, "\"payload_too_large\""));
    free(resp);
    free(req);
}
END_TEST

START_TEST(transfer_encoding_with_content_length_is_400)
{
    static const char req[] = "POST /v1/auth/register HTTP/1.1\r\nHost: x\r\n"
                              "Content-Type: application/json\r\nContent-Length: 5\r\n"
                              "Transfer-Encoding: chunked\r\nX-Request-Id: smuggle-1\r\n\r\n"
                              "2\r\n{}\r\n0\r\n\r\n";
    char *resp = raw_http(req, sizeof(req) - 1);
    ck_assert_msg(strncmp(resp, "HTTP/1.1 400 ", 13) == 0, "%.200s", resp);
    ck_assert_ptr_nonnull(strstr(resp, "\"code\":\"bad_request\""));
    ck_assert_ptr_nonnull(strstr(resp, "X-Request-Id: smuggle-1\r\n"));
    ck_assert_ptr_nonnull(strstr(resp, "Connection: close\r\n"));
    free(resp);
}
END_TEST

static void assert_register_error(const char *body, const char *code, const char *field)
{
    sptest_resp *r = sptest_json(env, "POST", "/v1/auth/register", NULL, body);
    assert_error(r, 400, code);
    if (field != NULL) {
        cJSON *fields = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(r->json, "error"), "fields");
        ck_assert_msg(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fields, field)),
                      "no fields.%s in %s", field, r->body);
    }
    sptest_resp_free(r);
}

START_TEST(malformed_json_is_400)
{
    assert_register_error("{\"name\":\"Ana\",", "malformed_json", NULL);
    assert_register_error("{\"name\":'Ana'}", "malformed_json", NULL);
}
END_TEST

START_TEST(trailing_garbage_is_400)
{
    assert_register_error("{\"name\":\"Ana\"}xyz", "malformed_json", NULL);
}
END_TEST

START_TEST(duplicate_key_is_400)
{
    assert_register_error("{\"name\":\"Ana\",\"email\":\"a@b.c\",\"name\":\"Bob\"}",
                          "malformed_json", NULL);
}
END_TEST

START_TEST(unknown_field_is_400_with_fields)
{
    assert_register_error("{\"name\":\"Ana\",\"email\":\"a@b.c\",\"password\":\"12345678\","
                          "\"role\":\"admin\"}",
                          "validation_failed", "role");
    assert_register_error("{\"name\":42}", "validation_failed", "name");
    assert_register_error("[]", "validation_failed", NULL);
}
END_TEST

START_TEST(valid_register_body_reaches_the_bus)
{
    /* every check passed: with no auth service the bus has nobody to answer */
    sptest_resp *r = sptest_json(env, "POST", "/v1/auth/register", NULL, valid_register);
    assert_error(r, 503, "unavailable");
    ck_assert_str_eq(sptest_resp_header(r, "Retry-After"), "1");
    ck_assert_msg(r->seconds < 2.5, "took %.2f s", r->seconds);
    sptest_resp_free(r);
    r = post_register("application/json; charset=utf-8", valid_register, strlen(valid_register));
    assert_error(r, 503, "unavailable");
    sptest_resp_free(r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gateway_http");
    TCase *tc = tcase_create("gateway");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, ops_endpoints_on_both_ports);
    tcase_add_test(tc, unknown_path_is_404_with_error_shape);
    tcase_add_test(tc, known_path_other_method_is_405_with_allow);
    tcase_add_test(tc, safe_request_id_is_echoed);
    tcase_add_test(tc, unsafe_request_id_is_replaced);
    tcase_add_test(tc, me_without_token_is_unauthenticated);
    tcase_add_test(tc, me_with_basic_scheme_is_unauthenticated);
    tcase_add_test(tc, me_with_garbage_token_is_invalid);
    tcase_add_test(tc, me_with_token_of_another_key_is_invalid);
    tcase_add_test(tc, me_with_expired_token_is_token_expired);
    tcase_add_test(tc, me_with_alg_none_is_invalid);
    tcase_add_test(tc, me_with_other_algorithm_header_is_invalid);
    tcase_add_test(tc, me_with_wrong_issuer_or_audience_is_invalid);
    tcase_add_test(tc, me_with_valid_token_and_no_auth_service_is_503);
    tcase_add_test(tc, valid_token_is_503_while_revocations_are_not_loaded);
    tcase_add_test(tc, revocations_in_redis_are_loaded_after_being_stale);
    tcase_add_test(tc, route_without_body_refuses_a_body);
    tcase_add_test(tc, forbidden_role_is_403_before_a_bad_body);
    tcase_add_test(tc, undeclared_query_param_is_400_naming_it);
    tcase_add_test(tc, query_errors_come_after_401);
    tcase_add_test(tc, login_503_names_its_own_deadline);
    tcase_add_test(tc, register_with_text_plain_is_415);
    tcase_add_test(tc, register_with_2mib_body_is_413);
    tcase_add_test(tc, chunked_body_over_the_limit_is_413);
    tcase_add_test(tc, transfer_encoding_with_content_length_is_400);
    tcase_add_test(tc, malformed_json_is_400);
    tcase_add_test(tc, trailing_garbage_is_400);
    tcase_add_test(tc, duplicate_key_is_400);
    tcase_add_test(tc, unknown_field_is_400_with_fields);
    tcase_add_test(tc, valid_register_body_reaches_the_bus);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
