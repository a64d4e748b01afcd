/* ratelimit.c -- login rate limits of the auth service (api.md, "Auth and profile"):
 * failures only, counted per account (the lower-cased email, known or not) and per client
 * ip, in Redis. A password change checks the current password against the same counters
 * (the account's email and the caller's ip): a stolen access token is no better an oracle
 * for the password than the login form. Fixed windows: the first count of a window creates the
 * counter with the window as its TTL; the counter dies with it. While a counter is at its limit a
 * login is refused (429, Retry-After = what is left of the window) before any password check. While
 * Redis is down login answers 503: the limits are never silently off.
 *
 * Exact under concurrency: a login reserves its failure before the password is checked
 * (one atomic script: refuse at the limit, else count on both counters), so a burst of
 * logins in flight can never try more passwords than the limit. What happens to the
 * reservation once the outcome is known:
 *   - wrong password, or unknown account (the spec counts an account whether it exists or
 *     not): kept; it was the failure.
 *   - right password: a success. The account's counter is cleared and the ip's
 *     reservation given back (auth_ratelimit_success), whatever happens to the session
 *     afterwards: the password was right.
 *   - no verdict on the password (the database failed before or during the lookup, so
 *     nothing was compared): both reservations are given back (auth_ratelimit_release);
 *     it was not a failure, and keeping it would let an outage lock accounts out.
 *   - the request dies between the reservation and the verdict (crash, lost Redis
 *     connection while giving back): the reservation stays. That errs towards refusing,
 *     never towards an unlimited login.
 * A give-back decrements and never goes below 0; it cannot tell a new window from the
 * one it reserved in, so a login straddling a window's end may give one back to the next
 * window (at most one per such login, and only for a right password or a database
 * error, never for a wrong password). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "spadmin.h"

/* The account's key is SHA-256 of PostgreSQL's lower() of the email, the function the
 * login lookup and the unique index compare with: every spelling that reaches one account
 * shares one counter, and no email is ever written to Redis. */
static const char *sql_email_digest = "SELECT encode(sha256(convert_to(lower($1), 'UTF8')), 'hex')";

/* KEYS: account, ip. ARGV: limit of each, window of each. Returns the seconds left of the
 * longest window of a counter at its limit, counting nothing; or 0 when neither is, having
 * counted one failure in advance on both counters: the first count of a window sets its
 * TTL (EXPIRE NX: Redis 7). A counter without a TTL (cannot happen: every step is atomic)
 * gets its window, so nothing is refused forever. */
static const char *lua_reserve =
    "local wait = 0\n"
    "for i = 1, 2 do\n"
    "  local n = tonumber(redis.call('GET', KEYS[i]) or '0')\n"
    "  if n >= tonumber(ARGV[i]) then\n"
    "    local t = redis.call('TTL', KEYS[i])\n"
    "    if t < 0 then redis.call('EXPIRE', KEYS[i], ARGV[i + 2]); t = tonumber(ARGV[i + 2]) end\n"
    "    if t < 1 then t = 1 end\n"
    "    if t > wait then wait = t end\n"
    "  end\n"
    "end\n"
    "if wait > 0 then return wait end\n"
    "for i = 1, 2 do\n"
    "  redis.call('INCR', KEYS[i])\n"
    "  redis.call('EXPIRE', KEYS[i], ARGV[i + 2], 'NX')\n"
    "end\n"
    "return 0\n";

/* KEYS: account, ip. A success: clears the account's counter and gives the ip's
 * reservation back (never below 0; a counter already gone is not recreated). */
static const char *lua_success =
    "redis.call('DEL', KEYS[1])\n"
    "if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end\n"
    "return 1\n";

/* KEYS: account, ip. No verdict: gives both reservations back (never below 0; a counter
 * already gone is not recreated). */
static const char *lua_release =
    "for i = 1, 2 do\n"
    "  if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end\n"
    "end\n"
    "return 1\n";

/* Runs one EVAL; *out gets the integer it returned. SP_ERR_UNAVAILABLE when Redis does
 * not answer or answers anything but an integer. A connection that died with a restarted
 * server fails once: the second try reconnects (spredis waits 200 ms between tries). */
static sp_status eval_int(spbus_req *req, long long *out, const char *script, int nargs,
                          const char **args)
{
    const char *argv[9];
    redisReply *rep = NULL;
    spredis *r = spsvc_redis(req);

    *out = 0;
    if (r == NULL || nargs > 7) return SP_ERR_UNAVAILABLE;
    argv[0] = "EVAL";
    argv[1] = script;
    for (int i = 0; i < nargs; i++)
        argv[2 + i] = args[i];
    sp_status s = spredis_command(&rep, r, 2 + nargs, argv, NULL);
    if (s == SP_ERR_UNAVAILABLE) s = spredis_command(&rep, r, 2 + nargs, argv, NULL);
    if (s == SP_OK && (rep == NULL || rep->type != REDIS_REPLY_INTEGER)) {
        if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
            sp_log_error(spbus_req_id(req), "ratelimit_script_failed", "detail", rep->str);
        s = SP_ERR_UNAVAILABLE;
    }
    if (s == SP_OK) *out = rep->integer;
    if (rep != NULL) freeReplyObject(rep);
    return s;
}

/* The client ip as the gateway believed it, for a key: at most 64 characters of what an
 * IPv4 or IPv6 address is made of, else one shared bucket. */
static const char *key_ip(const Sp__V1__RequestContext *ctx)
{
    const char *ip = ctx != NULL ? ctx->ip : NULL;
    if (ip == NULL || ip[0] == '\0') return "unknown";
    size_t n = strnlen(ip, 65);
    if (n > 64 || strspn(ip, "0123456789abcdefABCDEF.:") != n) return "invalid";
    return ip;
}

sp_status auth_ratelimit_reserve_or_reply(spbus_req *req, spdb *db, const char *email, auth_rl *rl,
                                          auth_rl_use use)
{
    auth_svc *svc = auth_of(req);
    PGresult *res = NULL;
    const char *params[] = {email};

    memset(rl, 0, sizeof(*rl));
    sp_status s = spdb_query(&res, db, sql_email_digest, 1, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "email_digest");
    bool ok = PQntuples(res) == 1 && strlen(PQgetvalue(res, 0, 0)) == 64;
    if (ok)
        snprintf(rl->acct_key, sizeof(rl->acct_key), "sp:login:fail:acct:%s",
                 PQgetvalue(res, 0, 0));
    PQclear(res);
    if (!ok) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return SP_ERR_INTERNAL;
    }
    snprintf(rl->ip_key, sizeof(rl->ip_key), "sp:login:fail:ip:%s", key_ip(spbus_req_ctx(req)));
    snprintf(rl->acct_window, sizeof(rl->acct_window), "%d", svc->rl_account_window_s);
    snprintf(rl->ip_window, sizeof(rl->ip_window), "%d", svc->rl_ip_window_s);

    char acct_max[16], ip_max[16];
    snprintf(acct_max, sizeof(acct_max), "%d", svc->rl_fails_per_account);
    snprintf(ip_max, sizeof(ip_max), "%d", svc->rl_fails_per_ip);
    const char *args[] = {"2",    rl->acct_key,    rl->ip_key,   acct_max,
                          ip_max, rl->acct_window, rl->ip_window};
    long long wait = 0;
    s = eval_int(req, &wait, lua_reserve, 7, args);
    if (s != SP_OK) {
        sp_log_warn(spbus_req_id(req), "ratelimit_store_down", "code", sp_error_code(s));
        spbus_reply_error(req, SP_ERR_UNAVAILABLE, "rate-limit store unavailable", NULL);
        return SP_ERR_UNAVAILABLE;
    }
    if (wait <= 0) {
        rl->reserved = true;
        return SP_OK;
    }
    char secs[24];
    snprintf(secs, sizeof(secs), "%lld", wait);
    bool login = use == AUTH_RL_LOGIN;
    sp_log_info(spbus_req_id(req), login ? "login_rate_limited" : "password_check_rate_limited",
                "retryAfterS", secs);
    if (login) spadmin_counter_add("sp_auth_logins_total", "result=\"rate_limited\"", 1);
    spbus_reply_error_retry(req, SP_ERR_RATE_LIMITED,
                            login ? "too many failed logins, retry later"
                                  : "too many failed password checks, retry later",
                            wait > 86400 ? 86400 : (int)wait);
    return SP_ERR_RATE_LIMITED;
}

/* Runs 'script' on the two counters of a reserved login; best effort: a failure is
 * logged as 'event' and the reservation stays (the next login's reservation fails the same
 * way and answers 503: nothing goes unlimited). */
static void settle(spbus_req *req, const auth_rl *rl, const char *script, const char *event)
{
    long long one = 0;

    if (!rl->reserved) return;
    const char *args[] = {"2", rl->acct_key, rl->ip_key};
    sp_status s = eval_int(req, &one, script, 3, args);
    if (s != SP_OK) sp_log_warn(spbus_req_id(req), event, "code", sp_error_code(s));
}

void auth_ratelimit_success(spbus_req *req, const auth_rl *rl)
{
    settle(req, rl, lua_success, "ratelimit_not_cleared");
}

void auth_ratelimit_release(spbus_req *req, const auth_rl *rl)
{
    settle(req, rl, lua_release, "ratelimit_not_released");
}
