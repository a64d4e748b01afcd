/* common.c -- what the handlers of the auth service share: the checks of names, emails
 * and passwords, the revocations in Redis and the revocation of a user's sessions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"

const char *auth_check_name(const char *s)
{
    return spsvc_check_text(s, AUTH_NAME_MAX);
}

/* RFC 5322 atext: what an unquoted local part may hold, besides '.' and UTF-8 (RFC 6531) */
static bool atext(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* A dot-atom local part of 1..64 bytes: atext and UTF-8, dots only between characters. */
static bool local_ok(const char *s, size_t len)
{
    if (len == 0 || len > 64 || s[0] == '.' || s[len - 1] == '.') return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.' && s[i + 1] == '.') return false;
        if (c < 0x80 && c != '.' && !atext(c)) return false;
    }
    return true;
}

/* A host name of at most 253 bytes and at least two labels; each label 1..63 bytes of
 * letters, digits, hyphens (not first or last) and UTF-8 (an IDN as typed); the last
 * label not all digits (no address literals). */
static bool domain_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 253) return false;
    int labels = 0;
    for (const char *l = s;; labels++) {
        size_t n = strcspn(l, ".");
        if (n == 0 || n > 63 || l[0] == '-' || l[n - 1] == '-') return false;
        bool digits = true;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)l[i];
            if (c < 0x80 && !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '-'))
                return false;
            if (c < '0' || c > '9') digits = false;
        }
        if (l[n] == '\0') return labels >= 1 && !digits;
        l += n + 1;
    }
}

/* An address as a mail system takes it: local@domain, one '@', no quoted local part or
 * address literal (accepted nowhere in practice), nothing invisible anywhere (a
 * zero-width space or soft hyphen would make a look-alike of another address). Beyond
 * that the only proof of an address is mail reaching it. */
static const char *email_shape_reason(const char *s)
{
    uint32_t cp;
    for (const char *p = s; *p != '\0';) {
        int k = spsvc_utf8_next(p, &cp);
        if (k <= 0) return "must be valid UTF-8";
        if (spsvc_invisible(cp)) return "must not contain spaces, control or invisible characters";
        p += k;
    }
    const char *at = strchr(s, '@');
    if (at == NULL || strchr(at + 1, '@') != NULL || !local_ok(s, (size_t)(at - s)) ||
        !domain_ok(at + 1))
        return "invalid email address";
    return NULL;
}

const char *auth_check_email(const char *s)
{
    if (s == NULL) return "required";
    long n = spsvc_utf8_len(s);
    if (n < 0) return "must be valid UTF-8";
    if (n == 0) return "must not be empty";
    if (n > AUTH_EMAIL_MAX) return "at most 254 characters";
    return email_shape_reason(s);
}

const char *auth_check_password(const char *s)
{
    if (s == NULL) return "required";
    long n = spsvc_utf8_len(s);
    if (n < 0) return "must be valid UTF-8";
    if (n < AUTH_PASSWORD_MIN) return "at least 8 characters";
    if (n > AUTH_PASSWORD_MAX) return "at most 128 characters";
    return NULL;
}

const char *auth_check_login_email(const char *s)
{
    if (s == NULL) return "required";
    long n = spsvc_utf8_len(s);
    if (n < 0) return "must be valid UTF-8";
    if (n == 0) return "must not be empty";
    if (n > AUTH_EMAIL_MAX) return "at most 254 characters";
    return NULL;
}

const char *auth_check_login_password(const char *s)
{
    if (s == NULL) return "required";
    long n = spsvc_utf8_len(s);
    if (n < 0) return "must be valid UTF-8";
    if (n == 0) return "must not be empty";
    if (n > AUTH_PASSWORD_MAX) return "at most 128 characters";
    return NULL;
}

const char *auth_role_of(bool is_admin, bool is_member)
{
    if (is_admin) return "admin";
    if (is_member) return "client_admin";
    return "app_user";
}

/* Sessions revoked within the access token lifetime, each with what is left of it. */
static const char *sql_recent_revocations =
    "SELECT public_id::text,"
    "       GREATEST(1, $1::bigint - extract(epoch FROM now() - revoked_at)::bigint)"
    " FROM auth.sessions"
    " WHERE revoked_at IS NOT NULL AND revoked_at > now() - $1::bigint * interval '1 second'";

/* SET sp:revoked:sid:<sid> 1 EX <ttl>: SP_ERR_UNAVAILABLE unless Redis answered OK. */
static sp_status set_revoked(spredis *r, const char *sid, const char *ttl)
{
    char key[128];
    redisReply *rep = NULL;

    snprintf(key, sizeof(key), "sp:revoked:sid:%s", sid);
    sp_status s = spredis_cmd(&rep, r, "SET", key, "1", "EX", ttl, NULL);
    if (s == SP_OK && (rep == NULL || rep->type != REDIS_REPLY_STATUS)) s = SP_ERR_UNAVAILABLE;
    if (rep != NULL) freeReplyObject(rep);
    return s;
}

sp_status auth_redis_sync(spbus_req *req, spdb *db, int patience_ms)
{
    auth_svc *svc = auth_of(req);
    int w = spbus_req_worker(req);
    spredis *r = spsvc_redis(req);

    if (r == NULL) return SP_ERR_UNAVAILABLE;
    /* A connection that died with its server is only noticed by a command: the first
     * PING drops it, the next makes a new connection (and a new generation). spredis
     * tries to connect at most once per 200 ms: a patient caller waits that long. */
    bool up = spredis_ping(r) || spredis_ping(r);
    for (int waited = 0; !up && waited < patience_ms; waited += AUTH_REDIS_RETRY_MS) {
        struct timespec ts = {0, AUTH_REDIS_RETRY_MS * 1000000L};
        nanosleep(&ts, NULL);
        up = spredis_ping(r);
    }
    if (!up) return SP_ERR_UNAVAILABLE;
    unsigned gen = spredis_generation(r);
    if (gen == svc->redis_gen[w]) return SP_OK;

    sp_status s = auth_revocations_rewrite(r, db, svc->access_ttl_s, spbus_req_id(req));
    if (s != SP_OK) return s;
    /* only now: a rewrite cut short by a failure is redone on the next connection */
    if (spredis_generation(r) == gen) svc->redis_gen[w] = gen;
    return SP_OK;
}

sp_status auth_revocations_rewrite(spredis *r, spdb *db, int64_t access_ttl_s, const char *rid)
{
    char ttl[24];
    PGresult *res = NULL;
    snprintf(ttl, sizeof(ttl), "%lld", (long long)access_ttl_s);
    const char *params[] = {ttl};
    sp_status s = spdb_query(&res, db, sql_recent_revocations, 1, params);
    if (s != SP_OK) return s;
    int n = PQntuples(res);
    for (int i = 0; i < n && s == SP_OK; i++)
        s = set_revoked(r, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
    PQclear(res);
    if (s != SP_OK) return s;
    /* the gateway accepts no token while this key is missing (an empty, restarted Redis) */
    redisReply *rep = NULL;
    s = spredis_cmd(&rep, r, "SET", AUTH_REVOCATIONS_LOADED_KEY, "1", NULL);
    if (s == SP_OK && (rep == NULL || rep->type != REDIS_REPLY_STATUS)) s = SP_ERR_UNAVAILABLE;
    if (rep != NULL) freeReplyObject(rep);
    if (s != SP_OK) return s;
    char count[16];
    snprintf(count, sizeof(count), "%d", n);
    sp_log_info(rid, "revocations_rewritten", "count", count);
    return SP_OK;
}

/* Publishes SessionsRevoked{sid} on AUTH_SESSIONS_REVOKED_SUBJECT (core: at most once). */
static void announce_revoked(spbus *bus, const char *sid)
{
    uint8_t buf[128];
    char *ids[] = {(char *)sid};
    Sp__Auth__V1__SessionsRevoked m = SP__AUTH__V1__SESSIONS_REVOKED__INIT;
    m.n_session_ids = 1;
    m.session_ids = ids;
    if (bus == NULL || strlen(sid) > 64) return;
    size_t len = sp__auth__v1__sessions_revoked__pack(&m, buf);
    sp_status s = spbus_publish(bus, AUTH_SESSIONS_REVOKED_SUBJECT, buf, len);
    if (s != SP_OK)
        sp_log_warn(NULL, "revocation_not_announced", "sid", sid, "code", sp_error_code(s));
}

sp_status auth_revoke_in_redis_or_reply(spbus_req *req, spdb *db, const char *sid)
{
    auth_svc *svc = auth_of(req);
    char ttl[24];

    sp_status s = auth_redis_sync(req, db, AUTH_REDIS_PATIENCE_MS);
    if (s == SP_OK) {
        snprintf(ttl, sizeof(ttl), "%lld", (long long)svc->access_ttl_s);
        s = set_revoked(spsvc_redis(req), sid, ttl);
    }
    if (s == SP_OK) {
        /* the calling gateway applies it before it answers (the reply carries it), every
         * other gateway within a message's time; a lost message heals when that gateway
         * next reloads the set from Redis */
        spbus_req_revoked(req, sid);
        announce_revoked(svc->bus, sid);
        return SP_OK;
    }
    sp_log_warn(spbus_req_id(req), "revocation_not_in_redis", "sid", sid, "code", sp_error_code(s));
    spbus_reply_error(req, SP_ERR_UNAVAILABLE, "revocation store unavailable", NULL);
    return SP_ERR_UNAVAILABLE;
}

static const char *sql_revoke_user_sessions =
    "UPDATE auth.sessions SET revoked_at = now(), revoked_reason = $2"
    " WHERE user_id = $1::bigint AND revoked_at IS NULL"
    "   AND ($3::uuid IS NULL OR public_id <> $3::uuid)"
    " RETURNING public_id::text";

sp_status auth_revoke_user_sessions_or_reply(spbus_req *req, spdb *db, const char *user_id,
                                             const char *keep_sid, const char *reason, char ***sids,
                                             size_t *n)
{
    sp_arena *a = spbus_req_arena(req);
    PGresult *res = NULL;

    *sids = NULL;
    *n = 0;
    if (keep_sid != NULL && !spcrypto_uuid_valid(keep_sid)) keep_sid = NULL;
    const char *params[] = {user_id, reason, keep_sid};
    sp_status s = spdb_query(&res, db, sql_revoke_user_sessions, 3, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "revoke_user_sessions");
    int rows = PQntuples(res);
    char **list = sp_arena_alloc(a, sizeof(char *) * (size_t)(rows > 0 ? rows : 1));
    for (int i = 0; list != NULL && i < rows; i++) {
        list[i] = sp_arena_strdup(a, PQgetvalue(res, i, 0));
        if (list[i] == NULL) list = NULL;
    }
    PQclear(res);
    if (list == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    *sids = list;
    *n = (size_t)rows;
    return SP_OK;
}

sp_status auth_revoke_all_in_redis_or_reply(spbus_req *req, spdb *db, char *const *sids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sp_status s = auth_revoke_in_redis_or_reply(req, db, sids[i]);
        if (s != SP_OK) return s;
    }
    return SP_OK;
}
