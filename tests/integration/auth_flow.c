/* auth_flow.c -- end-to-end test of the walking skeleton: register, login, refresh,
 * logout and /v1/me over HTTP through the gateway to the auth service, on real NATS,
 * PostgreSQL and Redis; an admin made by `spctl create-admin`; instant revocation (also
 * across a Redis restart); and the gateway's 503 while auth or Redis is down. */
#include <check.h>
#include <cjson/cJSON.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "spcrypto.h"
#include "spjwt.h"
#include "sptest.h"

extern char **environ;

static sptest_env *E;
static sptest_proc *AUTH;

/* ---- helpers --------------------------------------------------------------------------- */

static sptest_resp *post(const char *path, const char *body)
{
    return sptest_json(E, "POST", path, NULL, body);
}

static sptest_resp *register_user(const char *name, const char *email, const char *password)
{
    char *b = sptest_json_obj("name", name, "email", email, "password", password, NULL);
    sptest_resp *r = post("/v1/auth/register", b);
    free(b);
    return r;
}

static sptest_resp *login(const char *email, const char *password)
{
    char *b = sptest_json_obj("email", email, "password", password, NULL);
    sptest_resp *r = post("/v1/auth/login", b);
    free(b);
    return r;
}

/* Registers (201 asserted) and returns the new user's id, malloc'd. */
static char *must_register(const char *name, const char *email, const char *password)
{
    sptest_resp *r = register_user(name, email, password);
    ck_assert_msg(r->status == 201, "register %s: %ld %s", email, r->status, r->body);
    char *id = strdup(sptest_jstr(r, "id"));
    sptest_resp_free(r);
    return id;
}

/* Logs in (200 asserted) and returns the access token, malloc'd. */
static char *must_login(const char *email, const char *password)
{
    sptest_resp *r = login(email, password);
    ck_assert_msg(r->status == 200, "login %s: %ld %s", email, r->status, r->body);
    const char *t = sptest_jstr(r, "accessToken");
    ck_assert_ptr_nonnull(t);
    char *tok = strdup(t);
    sptest_resp_free(r);
    return tok;
}

static bool matches(const char *re, const char *s)
{
    regex_t rx;
    ck_assert_int_eq(regcomp(&rx, re, REG_EXTENDED | REG_NOSUB), 0);
    bool ok = s != NULL && regexec(&rx, s, 0, NULL, 0) == 0;
    regfree(&rx);
    return ok;
}

#define RFC3339_MS "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"

static int count_members(const cJSON *o)
{
    int n = 0;
    for (const cJSON *c = o ? o->child : NULL; c != NULL; c = c->next)
        n++;
    return n;
}

static void assert_error(const sptest_resp *r, long status, const char *code)
{
    ck_assert_msg(r->status == status, "want %ld, got %ld %s", status, r->status, r->body);
    const char *c = sptest_jstr(r, "error.code");
    ck_assert_msg(c != NULL && strcmp(c, code) == 0, "want code %s: %s", code, r->body);
}

/* The key of access tokens, read from the stack's secrets.env. */
static void jwt_secret(char *out, size_t len)
{
    FILE *f = fopen(E->secrets, "r");
    char line[1024];
    out[0] = '\0';
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        char *s = line;
        if (strncmp(s, "export ", 7) == 0) s += 7;
        if (strncmp(s, "SP_JWT_SECRET=", 14) != 0) continue;
        s += 14;
        size_t n = strlen(s);
        if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
            s[n - 1] = '\0';
            s++;
        }
        snprintf(out, len, "%s", s);
    }
    fclose(f);
    ck_assert_msg(out[0] != '\0', "no SP_JWT_SECRET in %s", E->secrets);
}

/* The build directory: SP_BINARY_DIR when given, else the parent of this test's directory
 * (build/<name>/tests/it_auth_flow). */
static void binary_dir(char *out, size_t len)
{
#ifdef SP_BINARY_DIR
    snprintf(out, len, "%s", SP_BINARY_DIR);
#else
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    ck_assert_int_gt(n, 0);
    exe[n] = '\0';
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(exe, '/');
        ck_assert_ptr_nonnull(slash);
        *slash = '\0';
    }
    snprintf(out, len, "%s", exe);
#endif
}

/* ---- register ------------------------------------------------------------------------- */

START_TEST(register_returns_201_with_the_profile)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "reg");
    sptest_resp *r = register_user("Ana Souza", email, "correct horse battery");

    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_int_eq(count_members(r->json), 5);
    ck_assert(spcrypto_uuid_valid(sptest_jstr(r, "id")));
    ck_assert_str_eq(sptest_jstr(r, "name"), "Ana Souza");
    ck_assert_str_eq(sptest_jstr(r, "email"), email);
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user");
    ck_assert_msg(matches(RFC3339_MS, sptest_jstr(r, "createdAt")), "%s", r->body);
    sptest_resp_free(r);
}
END_TEST

START_TEST(register_same_email_in_other_case_conflicts)
{
    char email[128], upper[128];
    sptest_unique_email(email, sizeof(email), "dup");
    snprintf(upper, sizeof(upper), "%s", email);
    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
    free(must_register("First", email, "password-one"));

    sptest_resp *r = register_user("Second", upper, "password-two");
    assert_error(r, 409, "conflict");
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.email"));
    sptest_resp_free(r);
}
END_TEST

START_TEST(register_stores_the_email_lower_cased)
{
    char email[128], mixed[128];
    sptest_unique_email(email, sizeof(email), "mixed");
    snprintf(mixed, sizeof(mixed), "MiXeD%s", email + 5);
    sptest_resp *r = register_user("Mixed Case", mixed, "password-mixed");

    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "email"), email);
    sptest_resp_free(r);
    free(must_login(mixed, "password-mixed"));
}
END_TEST

/* One invalid body per row, and the field the 400 must name. */
static const struct {
    const char *body;
    const char *field;
} bad_rows[] = {
    {"{\"name\":\"\",\"email\":\"@E\",\"password\":\"long enough\"}", "name"},
    {"{\"name\":\"@N121\",\"email\":\"@E\",\"password\":\"long enough\"}", "name"},
    {"{\"name\":\"Ok\",\"email\":\"no-at-sign.example.com\",\"password\":\"long enough\"}",
     "email"},
    {"{\"name\":\"Ok\",\"email\":\"@E255\",\"password\":\"long enough\"}", "email"},
    {"{\"name\":\"Ok\",\"email\":\"@E\",\"password\":\"1234567\"}", "password"},
    {"{\"name\":\"Ok\",\"email\":\"@E\",\"password\":\"@P129\"}", "password"},
    {"{\"email\":\"@E\",\"password\":\"long enough\"}", "name"},
    {"{\"name\":\"Ok\",\"password\":\"long enough\"}", "email"},
    {"{\"name\":\"Ok\",\"email\":\"@E\"}", "password"},
    {"{\"name\":42,\"email\":\"@E\",\"password\":\"long enough\"}", "name"},
    {"{\"name\":\"Ok\",\"email\":[\"@E\"],\"password\":\"long enough\"}", "email"},
    {"{\"name\":\"Ok\",\"email\":\"@E\",\"password\":true}", "password"},
};

/* bad_rows[i].body with its placeholders filled: @E a fresh valid email, @N121 a name of
 * 121 characters, @E255 an email of 255 characters, @P129 a password of 129. */
static char *bad_body(int i)
{
    char email[128], name121[122], email255[256], pw129[130];
    sptest_unique_email(email, sizeof(email), "bad");
    memset(name121, 'n', 121);
    name121[121] = '\0';
    memset(pw129, 'p', 129);
    pw129[129] = '\0';
    /* local part + "@example.com" (12) = 255 */
    memset(email255, 'e', 243);
    snprintf(email255 + 243, sizeof(email255) - 243, "@example.com");
    ck_assert_int_eq(strlen(email255), 255);

    const char *src = bad_rows[i].body;
    char *out = calloc(1, 1024);
    char *o = out;
    while (*src) {
        if (strncmp(src, "@N121", 5) == 0)
            o += sprintf(o, "%s", name121), src += 5;
        else if (strncmp(src, "@E255", 5) == 0)
            o += sprintf(o, "%s", email255), src += 5;
        else if (strncmp(src, "@P129", 5) == 0)
            o += sprintf(o, "%s", pw129), src += 5;
        else if (strncmp(src, "@E", 2) == 0)
            o += sprintf(o, "%s", email), src += 2;
        else
            *o++ = *src++;
    }
    return out;
}

START_TEST(register_rejects_invalid_row)
{
    char *body = bad_body(_i);
    sptest_resp *r = post("/v1/auth/register", body);
    char path[64];
    snprintf(path, sizeof(path), "error.fields.%s", bad_rows[_i].field);

    ck_assert_msg(r->status == 400, "row %d %s: %ld %s", _i, body, r->status, r->body);
    ck_assert_msg(strcmp(sptest_jstr(r, "error.code"), "validation_failed") == 0, "row %d: %s", _i,
                  r->body);
    ck_assert_msg(sptest_jstr(r, path) != NULL, "row %d %s: no %s in %s", _i, body, path, r->body);
    sptest_resp_free(r);
    free(body);
}
END_TEST

START_TEST(register_missing_fields_names_each)
{
    sptest_resp *r = post("/v1/auth/register", "{}");
    assert_error(r, 400, "validation_failed");
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.name"));
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.email"));
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.password"));
    sptest_resp_free(r);
}
END_TEST

START_TEST(register_accepts_120_multibyte_characters)
{
    char email[128], name[120 * 3 + 1] = "";
    sptest_unique_email(email, sizeof(email), "utf8");
    for (int i = 0; i < 120; i++)
        strcat(name, "\xe7\x8c\xab"); /* U+732B, 3 bytes */
    sptest_resp *r = register_user(name, email, "password-utf8");

    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), name);
    sptest_resp_free(r);
}
END_TEST

START_TEST(register_rejects_unknown_field_and_creates_nothing)
{
    char email[128], body[512];
    sptest_unique_email(email, sizeof(email), "mass");
    snprintf(body, sizeof(body),
             "{\"name\":\"Mallory\",\"email\":\"%s\",\"password\":\"password-mass\","
             "\"role\":\"admin\"}",
             email);
    sptest_resp *r = post("/v1/auth/register", body);
    ck_assert_msg(r->status == 400, "%ld %s", r->status, r->body);
    sptest_resp_free(r);

    r = login(email, "password-mass");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
}
END_TEST

START_TEST(register_stores_sql_metacharacters_verbatim)
{
    const char *name = "Robert'); DROP TABLE auth.people;-- \"x\" \\ %_ $1";
    char email[128];
    sptest_unique_email(email, sizeof(email), "sql");
    sptest_resp *r = register_user(name, email, "password-sql");
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), name);
    sptest_resp_free(r);

    char *tok = must_login(email, "password-sql");
    r = sptest_json(E, "GET", "/v1/me", tok, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "name"), name);
    sptest_resp_free(r);
    free(tok);
}
END_TEST

/* Addresses no mail system takes, or that look like another one: each "%s" is a fresh
 * unique token, so that a wrongly accepted row cannot collide with another. */
static const char *const bad_emails[] = {
    "admin-%s@smartpark.local\u200B", /* zero-width space after: an admin look-alike */
    "ad\u00ADmin-%s@smartpark.local", /* soft hyphen */
    "\u200Badmin-%s@example.com",
    "admin-%s@exa\u200Dmple.com", /* zero-width joiner in the domain */
    "a-%s@example.com\u202E",     /* right-to-left override */
    "a-%s\u00A0@example.com",     /* no-break space */
    "a-%s\u2060@example.com",     /* word joiner */
    "a-%s@example.com\uFEFF",     /* byte order mark */
    "a\tb-%s@example.com",
    "a b-%s@example.com",
    "<script>%s@example.com",
    "a..b-%s@example.com",
    ".a-%s@example.com",
    "a-%s.@example.com",
    "\"a-%s\"@example.com",
    "a-%s@",
    "a-%s@b@example.com",
    "a-%s@example",
    "a-%s@-example.com",
    "a-%s@example-.com",
    "a-%s@ex_ample.com",
    "a-%s@example..com",
    "a-%s@.example.com",
    "a-%s@1.2.3.4",
    "a-%s@[127.0.0.1]",
    "a-%s@llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.com", /* 64 */
    "a-%s-llllllllllllllllllllllllllllllllllllllllllllllllllllllll@example.com", /* local 65+ */
};

/* Addresses mail systems take: RFC 5322 atext, UTF-8 (RFC 6531), a label of 63. */
static const char *const good_emails[] = {
    "o'brien+tag-%s@example.co.uk", "jos\u00E9-%s@ex\u00E4mple.de",
    "a-b_c.d~!#$%%&*/=?^`{|}-%s@sub-domain.example.com",
    "x-%s@lllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.com", /* 63 */
};

static void email_from(char *out, size_t len, const char *fmt)
{
    char unique[128];
    sptest_unique_email(unique, sizeof(unique), "e");
    unique[strcspn(unique, "@")] = '\0';
    snprintf(out, len, fmt, unique + 2); /* without the "e-" */
}

START_TEST(register_refuses_look_alike_and_malformed_emails)
{
    char email[256];
    email_from(email, sizeof(email), bad_emails[_i]);
    sptest_resp *r = register_user("Look Alike", email, "password-alike");
    ck_assert_msg(r->status == 400, "%s: %ld %s", email, r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "error.code"), "validation_failed");
    ck_assert_msg(sptest_jstr(r, "error.fields.email") != NULL, "%s: %s", email, r->body);
    sptest_resp_free(r);
    /* nothing was created: that address does not log in */
    r = login(email, "password-alike");
    ck_assert_msg(r->status == 401 || r->status == 400, "%s: %ld %s", email, r->status, r->body);
    sptest_resp_free(r);
}
END_TEST

START_TEST(register_accepts_addresses_mail_systems_take)
{
    char email[256];
    email_from(email, sizeof(email), good_emails[_i]);
    sptest_resp *r = register_user("Good Address", email, "password-good");
    ck_assert_msg(r->status == 201, "%s: %ld %s", email, r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "email"), email);
    sptest_resp_free(r);
}
END_TEST

/* ---- login ---------------------------------------------------------------------------- */

START_TEST(login_returns_a_token_pair)
{
    char email[128], key[512];
    sptest_unique_email(email, sizeof(email), "login");
    char *id = must_register("Login User", email, "password-login");
    sptest_resp *r = login(email, "password-login");

    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_int_eq(count_members(r->json), 4);
    ck_assert_str_eq(sptest_jstr(r, "tokenType"), "Bearer");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(r->json, "expiresIn");
    ck_assert(cJSON_IsNumber(exp) && exp->valuedouble == 900);
    ck_assert_msg(
        matches("^[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}$", sptest_jstr(r, "refreshToken")), "%s",
        r->body);

    /* the access token is the gateway's to check: signed with the shared key, for this user */
    spjwt_claims c;
    jwt_secret(key, sizeof(key));
    spjwt_keys k = {.key = (const uint8_t *)key,
                    .keylen = strlen(key),
                    .issuer = "smartpark",
                    .audience = "smartpark-api",
                    .leeway_s = 5};
    ck_assert_int_eq(spjwt_verify(&c, &k, sptest_jstr(r, "accessToken"), time(NULL)), SP_OK);
    ck_assert_str_eq(c.sub, id);
    ck_assert_str_eq(c.role, "app_user");
    ck_assert_str_eq(c.client_id, "");
    ck_assert(spcrypto_uuid_valid(c.sid));
    ck_assert(spcrypto_uuid_valid(c.jti));
    ck_assert_int_eq(c.exp - c.iat, 900);
    sptest_resp_free(r);
    free(id);
}
END_TEST

/* The error object without its requestId, printed. */
static char *error_without_request_id(const sptest_resp *r)
{
    cJSON *copy = cJSON_Duplicate(r->json, 1);
    cJSON *err = cJSON_GetObjectItemCaseSensitive(copy, "error");
    ck_assert_ptr_nonnull(err);
    cJSON_DeleteItemFromObjectCaseSensitive(err, "requestId");
    char *s = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    return s;
}

START_TEST(login_failures_answer_the_same)
{
    char email[128], unknown[128];
    sptest_unique_email(email, sizeof(email), "fail");
    sptest_unique_email(unknown, sizeof(unknown), "nobody");
    free(must_register("Fail User", email, "password-right"));

    sptest_resp *wrong = login(email, "password-wrong");
    sptest_resp *none = login(unknown, "password-right");
    assert_error(wrong, 401, "unauthenticated");
    assert_error(none, 401, "unauthenticated");
    char *a = error_without_request_id(wrong);
    char *b = error_without_request_id(none);
    ck_assert_str_eq(a, b);
    free(a);
    free(b);
    sptest_resp_free(wrong);
    sptest_resp_free(none);
}
END_TEST

START_TEST(login_missing_password_is_400)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "nopw");
    char *b = sptest_json_obj("email", email, NULL);
    sptest_resp *r = post("/v1/auth/login", b);
    assert_error(r, 400, "validation_failed");
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.password"));
    sptest_resp_free(r);
    free(b);
}
END_TEST

/* ---- me ------------------------------------------------------------------------------- */

START_TEST(me_returns_the_profile)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "me");
    sptest_resp *reg = register_user("Me Myself", email, "password-me");
    ck_assert_msg(reg->status == 201, "%ld %s", reg->status, reg->body);
    char *tok = must_login(email, "password-me");

    sptest_resp *r = sptest_json(E, "GET", "/v1/me", tok, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_int_eq(count_members(r->json), 7);
    ck_assert_str_eq(sptest_jstr(r, "id"), sptest_jstr(reg, "id"));
    ck_assert_str_eq(sptest_jstr(r, "email"), email);
    ck_assert_str_eq(sptest_jstr(r, "name"), "Me Myself");
    ck_assert_str_eq(sptest_jstr(r, "role"), "app_user");
    ck_assert_str_eq(sptest_jstr(r, "createdAt"), sptest_jstr(reg, "createdAt"));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "clientId")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "clientRole")));
    sptest_resp_free(r);
    sptest_resp_free(reg);
    free(tok);
}
END_TEST

START_TEST(me_without_a_token_is_401)
{
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", NULL, NULL);
    ck_assert_msg(r->status == 401, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
}
END_TEST

/* Runs `spctl create-admin --email <email>` with the stack's database and the password. */
static int spctl_create_admin(const char *email, const char *password)
{
    char dir[PATH_MAX], bin[PATH_MAX + 16];
    binary_dir(dir, sizeof(dir));
    snprintf(bin, sizeof(bin), "%s/spctl", dir);
    setenv("SP_DATABASE_URL", E->db_url, 1);
    setenv("SP_NATS_URL", E->nats_url, 1);
    setenv("SP_REDIS_URL", E->redis_url, 1);
    setenv("SP_ADMIN_PASSWORD", password, 1);
    char *argv[] = {bin,      "create-admin",   "--email", (char *)email,
                    "--name", "Platform Admin", NULL};
    pid_t pid;
    int st = 0;
    ck_assert_int_eq(posix_spawn(&pid, bin, NULL, NULL, argv, environ), 0);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    unsetenv("SP_ADMIN_PASSWORD");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

START_TEST(admin_from_spctl_logs_in_as_admin)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "admin");
    ck_assert_int_eq(spctl_create_admin(email, "admin-password-1"), 0);

    char *tok = must_login(email, "admin-password-1");
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", tok, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "role"), "admin");
    ck_assert_str_eq(sptest_jstr(r, "email"), email);
    sptest_resp_free(r);
    free(tok);
}
END_TEST

/* ---- faults --------------------------------------------------------------------------- */

START_TEST(me_is_503_while_auth_is_down_and_recovers)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "fault");
    free(must_register("Fault User", email, "password-fault"));
    char *tok = must_login(email, "password-fault");

    sptest_kill(AUTH, SIGKILL);
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", tok, NULL);
    assert_error(r, 503, "unavailable");
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Retry-After"));
    ck_assert_msg(r->seconds < 3.0, "took %.2f s", r->seconds);
    sptest_resp_free(r);

    sptest_restart(E, AUTH);
    r = sptest_json(E, "GET", "/v1/me", tok, NULL);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "email"), email);
    sptest_resp_free(r);
    free(tok);
}
END_TEST

START_TEST(auth_stops_cleanly_on_sigterm)
{
    /* a fresh instance of our own (the earlier ones died with their test processes) */
    long from = sptest_log_size(AUTH);
    sptest_restart(E, AUTH);
    char email[128];
    sptest_unique_email(email, sizeof(email), "term");
    free(must_register("Term User", email, "password-term"));
    free(must_login(email, "password-term"));

    sptest_kill(AUTH, SIGTERM);
    ck_assert_msg(sptest_log_has(AUTH, from, "\"msg\":\"stopped\""), "no clean stop in %s",
                  AUTH->log);
    ck_assert_msg(!sptest_log_has_sanitizer(AUTH, from), "sanitizer report in %s", AUTH->log);
}
END_TEST

/* ---- refresh, logout, revocation ------------------------------------------------------ */

#define REFRESH_RE "^[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}$"

/* A token pair, malloc'd strings. */
typedef struct {
    char *access;
    char *refresh;
} pair;

static void pair_free(pair *p)
{
    free(p->access);
    free(p->refresh);
    p->access = p->refresh = NULL;
}

/* The pair of a 200 login or refresh answer (asserted). */
static pair pair_of(const sptest_resp *r)
{
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    const char *a = sptest_jstr(r, "accessToken"), *f = sptest_jstr(r, "refreshToken");
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(f);
    return (pair){strdup(a), strdup(f)};
}

/* A new user (tag in its email) logged in once: its first pair. */
static pair new_session(const char *tag)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), tag);
    free(must_register("Session User", email, "password-session"));
    sptest_resp *r = login(email, "password-session");
    pair p = pair_of(r);
    sptest_resp_free(r);
    return p;
}

static sptest_resp *refresh_with(const char *token)
{
    char *b = sptest_json_obj("refreshToken", token, NULL);
    sptest_resp *r = post("/v1/auth/refresh", b);
    free(b);
    return r;
}

static sptest_resp *logout_with(const char *token)
{
    char *b = sptest_json_obj("refreshToken", token, NULL);
    sptest_resp *r = post("/v1/auth/logout", b);
    free(b);
    return r;
}

/* Refreshes with 'token' (200 asserted): the new pair. */
static pair must_refresh(const char *token)
{
    sptest_resp *r = refresh_with(token);
    pair p = pair_of(r);
    sptest_resp_free(r);
    return p;
}

static long me_status(const char *access)
{
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", access, NULL);
    long st = r->status;
    sptest_resp_free(r);
    return st;
}

/* GET /v1/me with 'access' answers 401 invalid_token "session revoked". */
static void assert_me_revoked(const char *access)
{
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", access, NULL);
    assert_error(r, 401, "invalid_token");
    ck_assert_str_eq(sptest_jstr(r, "error.message"), "session revoked");
    sptest_resp_free(r);
}

static spjwt_claims claims_of(const char *access)
{
    char key[512];
    spjwt_claims c;
    jwt_secret(key, sizeof(key));
    spjwt_keys k = {.key = (const uint8_t *)key,
                    .keylen = strlen(key),
                    .issuer = "smartpark",
                    .audience = "smartpark-api",
                    .leeway_s = 5};
    ck_assert_int_eq(spjwt_verify(&c, &k, access, time(NULL)), SP_OK);
    return c;
}

START_TEST(refresh_gives_a_new_pair_of_the_same_session)
{
    pair first = new_session("refresh");
    sptest_resp *r = refresh_with(first.refresh);
    ck_assert_msg(r->status == 200, "%ld %s", r->status, r->body);
    ck_assert_int_eq(count_members(r->json), 4);
    ck_assert_str_eq(sptest_jstr(r, "tokenType"), "Bearer");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(r->json, "expiresIn");
    ck_assert(cJSON_IsNumber(exp) && exp->valuedouble == 900);
    pair next = pair_of(r);
    sptest_resp_free(r);

    ck_assert_msg(matches(REFRESH_RE, next.refresh), "%s", next.refresh);
    ck_assert_str_ne(next.refresh, first.refresh);
    ck_assert_str_ne(next.access, first.access);
    spjwt_claims a = claims_of(first.access), b = claims_of(next.access);
    ck_assert_str_eq(b.sid, a.sid);
    ck_assert_str_ne(b.jti, a.jti);
    ck_assert_str_eq(b.sub, a.sub);
    ck_assert_str_eq(b.role, "app_user");

    /* the old access token lives on until it expires or the session is revoked */
    ck_assert_int_eq(me_status(first.access), 200);
    ck_assert_int_eq(me_status(next.access), 200);
    pair_free(&first);
    pair_free(&next);
}
END_TEST

START_TEST(refresh_reuse_revokes_the_whole_session)
{
    pair p1 = new_session("reuse");
    pair p2 = must_refresh(p1.refresh);
    pair p3 = must_refresh(p2.refresh); /* the new token works, once */

    sptest_resp *r = refresh_with(p1.refresh);
    assert_error(r, 401, "refresh_reused");
    sptest_resp_free(r);

    assert_me_revoked(p3.access);
    assert_me_revoked(p1.access);
    r = refresh_with(p3.refresh);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    pair_free(&p1);
    pair_free(&p2);
    pair_free(&p3);
}
END_TEST

START_TEST(refresh_token_used_twice_is_refused_the_second_time)
{
    pair p1 = new_session("twice");
    pair p2 = must_refresh(p1.refresh);
    pair p3 = must_refresh(p2.refresh);

    sptest_resp *r = refresh_with(p2.refresh);
    assert_error(r, 401, "refresh_reused");
    sptest_resp_free(r);
    pair_free(&p1);
    pair_free(&p2);
    pair_free(&p3);
}
END_TEST

START_TEST(logout_revokes_the_session)
{
    pair p = new_session("logout");
    ck_assert_int_eq(me_status(p.access), 200);

    sptest_resp *r = logout_with(p.refresh);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    ck_assert_int_eq((int)r->len, 0);
    sptest_resp_free(r);

    assert_me_revoked(p.access);
    r = refresh_with(p.refresh);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    pair_free(&p);
}
END_TEST

START_TEST(logout_leaves_other_sessions_alone)
{
    char email[128];
    sptest_unique_email(email, sizeof(email), "two");
    free(must_register("Two Sessions", email, "password-two"));
    sptest_resp *r = login(email, "password-two");
    pair a = pair_of(r);
    sptest_resp_free(r);
    r = login(email, "password-two");
    pair b = pair_of(r);
    sptest_resp_free(r);

    r = logout_with(a.refresh);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    assert_me_revoked(a.access);
    ck_assert_int_eq(me_status(b.access), 200);
    pair_free(&a);
    pair_free(&b);
}
END_TEST

/* Refresh tokens that are not "<22 base64url>.<43 base64url>", and one well formed but
 * unknown: each 401 invalid_token, for refresh and logout alike. */
static const char *const bad_refresh[] = {
    "",
    "no-dot-at-all",
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 65, no dot */
    "AAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 21.43 */
    "AAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* 23.42 */
    "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",   /* 22.42 */
    "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 22.44 */
    "AAAAAAAAAAAAAAAAAAAA+A.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* '+' */
    "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/A",  /* '/' */
    "AAAAAAAAAAAAAAAAAAAA==.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* padding */
    "AAAAAAAAAAAAAAAAAAAAAB.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* stray bits */
    "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",  /* stray bits */
    "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.", /* trailing dot */
    " AAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* space */
    "AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* well formed, unknown */
};

START_TEST(refresh_rejects_malformed_token_row)
{
    sptest_resp *r = refresh_with(bad_refresh[_i]);
    ck_assert_msg(r->status == 401, "row %d: %ld %s", _i, r->status, r->body);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    r = logout_with(bad_refresh[_i]);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
}
END_TEST

START_TEST(refresh_with_the_secret_of_another_token_is_invalid)
{
    pair a = new_session("mixa"), b = new_session("mixb");
    char forged[128];
    /* a's token id with b's secret */
    snprintf(forged, sizeof(forged), "%.22s%s", a.refresh, b.refresh + 22);
    sptest_resp *r = refresh_with(forged);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);
    /* and a's real token still works: a wrong secret is not a reuse */
    pair a2 = must_refresh(a.refresh);
    pair_free(&a);
    pair_free(&a2);
    pair_free(&b);
}
END_TEST

START_TEST(refresh_rejects_unknown_field_and_missing_token)
{
    pair p = new_session("field");
    char body[256];
    snprintf(body, sizeof(body), "{\"refreshToken\":\"%s\",\"sid\":\"x\"}", p.refresh);
    sptest_resp *r = post("/v1/auth/refresh", body);
    ck_assert_msg(r->status == 400, "%ld %s", r->status, r->body);
    sptest_resp_free(r);

    r = post("/v1/auth/refresh", "{}");
    assert_error(r, 400, "validation_failed");
    ck_assert_ptr_nonnull(sptest_jstr(r, "error.fields.refreshToken"));
    sptest_resp_free(r);

    /* the refused call used nothing up */
    pair next = must_refresh(p.refresh);
    pair_free(&p);
    pair_free(&next);
}
END_TEST

START_TEST(redis_down_refuses_tokens_and_revocations_survive_it)
{
    pair kept = new_session("rkept");
    pair gone = new_session("rgone");
    pair other = new_session("rother");
    ck_assert_int_eq(me_status(kept.access), 200);

    sptest_kill(&E->redis, SIGKILL);
    /* the gateway's copy of the revoked sessions goes stale within its 250 ms check */
    long down = me_status(kept.access);
    for (int i = 0; i < 40 && down == 200; i++) {
        usleep(50 * 1000);
        down = me_status(kept.access);
    }
    sptest_resp *r = sptest_json(E, "GET", "/v1/me", kept.access, NULL);
    assert_error(r, 503, "unavailable");
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Retry-After"));
    ck_assert_msg(r->seconds < 3.0, "took %.2f s", r->seconds);
    sptest_resp_free(r);

    char email[128];
    sptest_unique_email(email, sizeof(email), "rpublic");
    r = register_user("Public Route", email, "password-public");
    ck_assert_msg(r->status == 201, "%ld %s", r->status, r->body);
    sptest_resp_free(r);

    /* revoked in PostgreSQL, but not yet in Redis: the call says so */
    r = logout_with(gone.refresh);
    assert_error(r, 503, "unavailable");
    sptest_resp_free(r);
    r = refresh_with(gone.refresh);
    assert_error(r, 401, "invalid_token");
    sptest_resp_free(r);

    sptest_restart(E, &E->redis); /* empty: no persistence */
    /* the gateway refuses tokens (503) until auth's keeper has rewritten the revocations
     * to the new, empty Redis (every 500 ms), and a gateway thread reconnects at most once
     * per 200 ms (spredis): allow a few seconds on a loaded machine */
    long st = me_status(kept.access);
    for (int i = 0; i < 50 && st == 503; i++) {
        usleep(100 * 1000);
        st = me_status(kept.access);
    }
    ck_assert_int_eq(st, 200);
    /* no auth call since the restart: the session revoked during the outage is refused */
    assert_me_revoked(gone.access);
    r = logout_with(other.refresh);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    assert_me_revoked(gone.access);
    assert_me_revoked(other.access);
    ck_assert_int_eq(me_status(kept.access), 200);

    /* the logout that answered 503 can be retried */
    r = logout_with(gone.refresh);
    ck_assert_msg(r->status == 204, "%ld %s", r->status, r->body);
    sptest_resp_free(r);
    pair_free(&kept);
    pair_free(&gone);
    pair_free(&other);
}
END_TEST

static Suite *auth_flow_suite(void)
{
    Suite *s = suite_create("auth_flow");
    TCase *tc = tcase_create("http");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, register_returns_201_with_the_profile);
    tcase_add_test(tc, register_same_email_in_other_case_conflicts);
    tcase_add_test(tc, register_stores_the_email_lower_cased);
    tcase_add_loop_test(tc, register_rejects_invalid_row, 0,
                        (int)(sizeof(bad_rows) / sizeof(bad_rows[0])));
    tcase_add_test(tc, register_missing_fields_names_each);
    tcase_add_test(tc, register_accepts_120_multibyte_characters);
    tcase_add_test(tc, register_rejects_unknown_field_and_creates_nothing);
    tcase_add_test(tc, register_stores_sql_metacharacters_verbatim);
    tcase_add_loop_test(tc, register_refuses_look_alike_and_malformed_emails, 0,
                        (int)(sizeof(bad_emails) / sizeof(bad_emails[0])));
    tcase_add_loop_test(tc, register_accepts_addresses_mail_systems_take, 0,
                        (int)(sizeof(good_emails) / sizeof(good_emails[0])));
    tcase_add_test(tc, login_returns_a_token_pair);
    tcase_add_test(tc, login_failures_answer_the_same);
    tcase_add_test(tc, login_missing_password_is_400);
    tcase_add_test(tc, me_returns_the_profile);
    tcase_add_test(tc, me_without_a_token_is_401);
    tcase_add_test(tc, admin_from_spctl_logs_in_as_admin);
    tcase_add_test(tc, refresh_gives_a_new_pair_of_the_same_session);
    tcase_add_test(tc, refresh_reuse_revokes_the_whole_session);
    tcase_add_test(tc, refresh_token_used_twice_is_refused_the_second_time);
    tcase_add_test(tc, logout_revokes_the_session);
    tcase_add_test(tc, logout_leaves_other_sessions_alone);
    tcase_add_loop_test(tc, refresh_rejects_malformed_token_row, 0,
                        (int)(sizeof(bad_refresh) / sizeof(bad_refresh[0])));
    tcase_add_test(tc, refresh_with_the_secret_of_another_token_is_invalid);
    tcase_add_test(tc, refresh_rejects_unknown_field_and_missing_token);
    /* kills and restarts Redis */
    tcase_add_test(tc, redis_down_refuses_tokens_and_revocations_survive_it);
    /* last: these two kill and restart the auth service */
    tcase_add_test(tc, me_is_503_while_auth_is_down_and_recovers);
    tcase_add_test(tc, auth_stops_cleanly_on_sigterm);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    E = sptest_start("auth_flow", SPTEST_ALL);
    AUTH = sptest_start_service(E, "auth", NULL);
    sptest_start_service(E, "gateway", NULL);

    SRunner *sr = srunner_create(auth_flow_suite());
    srunner_run_all(sr, CK_ENV); /* CK_VERBOSITY=verbose lists each test */
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed > 0) sptest_mark_failed(E);
    sptest_stop(E);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
