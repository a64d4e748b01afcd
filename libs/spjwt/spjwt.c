/* spjwt.c -- HS256 access tokens over libjwt 1.10, verified strictly: the header is checked
 * by us before libjwt sees the token (libjwt takes the algorithm from it, "none" in any
 * case included), the algorithm is pinned after decoding, and every claim is checked here
 * (libjwt 1.10 validates none). */
#include <cJSON.h>
#include <errno.h>
#include <jwt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "spcrypto.h"
#include "spjwt.h"

/* The key is usable: long enough (a zero-length key makes libjwt skip verification) and
 * with an issuer and an audience to put in or to compare against. */
static bool keys_ok(const spjwt_keys *k)
{
    return k != NULL && k->key != NULL && k->keylen >= SPJWT_MIN_KEY && k->keylen <= INT_MAX &&
           k->issuer != NULL && k->issuer[0] != '\0' && k->audience != NULL &&
           k->audience[0] != '\0';
}

/* A string field of spjwt_claims holds a NUL-terminated value that fits its buffer. */
static bool field_ok(const char *s, size_t cap, bool required)
{
    size_t n = strnlen(s, cap);
    return n < cap && (!required || n > 0);
}

/* ---- signing --------------------------------------------------------------------------- */

/* Signs HS256 with iss/aud from keys; *out malloc'd, caller frees. SP_ERR_INTERNAL for an
 * unusable key configuration, SP_ERR_VALIDATION_FAILED for claims that could never verify
 * (empty sub/role/jti/sid, unterminated buffers, exp not after iat). */
sp_status spjwt_sign(char **out, const spjwt_keys *k, const spjwt_claims *c)
{
    if (out == NULL) return SP_ERR_INTERNAL;
    *out = NULL;
    if (!keys_ok(k)) {
        sp_log_error(NULL, "jwt_key_unusable", "minKeyBytes", "32");
        return SP_ERR_INTERNAL;
    }
    if (c == NULL || !field_ok(c->sub, sizeof c->sub, true) ||
        !field_ok(c->role, sizeof c->role, true) ||
        !field_ok(c->client_id, sizeof c->client_id, false) ||
        !field_ok(c->client_role, sizeof c->client_role, false) ||
        !field_ok(c->jti, sizeof c->jti, true) || !field_ok(c->sid, sizeof c->sid, true) ||
        c->iat < 0 || c->nbf < 0 || c->exp <= c->iat)
        return SP_ERR_VALIDATION_FAILED;

    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0) return SP_ERR_INTERNAL;

    int rc = jwt_set_alg(jwt, JWT_ALG_HS256, k->key, (int)k->keylen);
    if (rc == 0) rc = jwt_add_grant(jwt, "iss", k->issuer);
    if (rc == 0) rc = jwt_add_grant(jwt, "aud", k->audience);
    if (rc == 0) rc = jwt_add_grant(jwt, "sub", c->sub);
    if (rc == 0) rc = jwt_add_grant(jwt, "role", c->role);
    if (rc == 0 && c->client_id[0] != '\0') rc = jwt_add_grant(jwt, "client_id", c->client_id);
    if (rc == 0 && c->client_role[0] != '\0')
        rc = jwt_add_grant(jwt, "client_role", c->client_role);
    if (rc == 0) rc = jwt_add_grant(jwt, "jti", c->jti);
    if (rc == 0) rc = jwt_add_grant(jwt, "sid", c->sid);
    if (rc == 0) rc = jwt_add_grant_int(jwt, "iat", (long)c->iat);
    if (rc == 0 && c->nbf != 0) rc = jwt_add_grant_int(jwt, "nbf", (long)c->nbf);
    if (rc == 0) rc = jwt_add_grant_int(jwt, "exp", (long)c->exp);

    char *tok = rc == 0 ? jwt_encode_str(jwt) : NULL;
    jwt_free(jwt);
    if (tok == NULL) return SP_ERR_INTERNAL;
    if (strlen(tok) > SPJWT_MAX_TOKEN) { /* would never verify */
        free(tok);
        return SP_ERR_VALIDATION_FAILED;
    }
    *out = tok; /* libjwt 1.10 allocates with malloc: free() releases it */
    return SP_OK;
}

/* ---- verification ---------------------------------------------------------------------- */

static sp_status reject(const char *reason)
{
    sp_log_debug(NULL, "jwt_rejected", "reason", reason);
    return SP_ERR_INVALID_TOKEN;
}

/* header.payload.signature: exactly two dots, three non-empty base64url segments. Sets
 * *hlen to the length of the header segment. */
static bool shape_ok(const char *t, size_t n, size_t *hlen)
{
    size_t dots[2] = {0, 0}, nd = 0;

    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (ch == '.') {
            if (nd == 2) return false;
            dots[nd++] = i;
        } else if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= '0' && ch <= '9') || ch == '-' || ch == '_')) {
            return false;
        }
    }
    if (nd != 2 || dots[0] == 0 || dots[1] == dots[0] + 1 || dots[1] == n - 1) return false;
    *hlen = dots[0];
    return true;
}

/* The header must be exactly {"alg":"HS256"} plus, optionally, "typ":"JWT": no other
 * member (no "kid", "jku", "crit", ...), no duplicate, case-sensitive names and values,
 * nothing after the object. */
static bool header_ok(const char *seg, size_t len)
{
    char json[SPJWT_MAX_TOKEN];
    long n = spcrypto_b64url_decode((uint8_t *)json, sizeof json - 1, seg, len);
    if (n <= 0) return false;
    json[n] = '\0';
    if (strlen(json) != (size_t)n) return false; /* embedded NUL */

    const char *end = NULL;
    cJSON *h = cJSON_ParseWithLengthOpts(json, (size_t)n, &end, false);
    bool ok = h != NULL && cJSON_IsObject(h);
    if (ok) {
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        ok = end == json + n;
    }
    int seen_alg = 0, seen_typ = 0;
    for (const cJSON *m = ok ? h->child : NULL; m != NULL && ok; m = m->next) {
        if (m->string != NULL && strcmp(m->string, "alg") == 0) {
            seen_alg++;
            ok = cJSON_IsString(m) && strcmp(m->valuestring, "HS256") == 0;
        } else if (m->string != NULL && strcmp(m->string, "typ") == 0) {
            seen_typ++;
            ok = cJSON_IsString(m) && strcmp(m->valuestring, "JWT") == 0;
        } else {
            ok = false;
        }
    }
    ok = ok && seen_alg == 1 && seen_typ <= 1;
    cJSON_Delete(h);
    return ok;
}

/* Copies string claim 'name' into dst (cap bytes). Returns 1 when copied, 0 when the
 * claim is absent, -1 when it is present but not a string, too long or empty. */
static int grant_str(jwt_t *jwt, const char *name, char *dst, size_t cap)
{
    errno = 0;
    const char *v = jwt_get_grant(jwt, name);
    if (v == NULL) {
        /* jwt_get_grant answers NULL for a number, an array, ... as for an absent claim. */
        char *js = jwt_get_grants_json(jwt, name);
        bool present = js != NULL;
        free(js);
        return present ? -1 : 0;
    }
    size_t n = strlen(v);
    if (n == 0 || n >= cap) return -1;
    memcpy(dst, v, n + 1);
    return 1;
}

/* Integer claim 'name': 1 when read, 0 when absent, -1 when present but not an integer.
 * jwt_get_grant_int answers 0 with errno 0 for a string, an array or a real, so the
 * claim's JSON text is checked to be an integer first. */
static int grant_int(jwt_t *jwt, const char *name, int64_t *dst)
{
    char *js = jwt_get_grants_json(jwt, name);
    if (js == NULL) return 0;
    const char *p = js + (js[0] == '-');
    bool integral = *p != '\0' && strspn(p, "0123456789") == strlen(p) && strlen(p) <= 18;
    free(js);
    if (!integral) return -1;
    errno = 0;
    long v = jwt_get_grant_int(jwt, name);
    if (errno != 0) return -1;
    *dst = (int64_t)v;
    return 1;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* nbf, iat and exp of verified claims at 'now', with the keys' leeway. */
static sp_status check_times(const spjwt_claims *c, const spjwt_keys *k, int64_t now)
{
    int64_t leeway = k->leeway_s > 0 ? k->leeway_s : 0;
    int64_t late = sat_add(now, leeway), early = sat_add(now, -leeway);
    if (c->nbf != 0 && c->nbf > late) return reject("nbf in the future");
    if (c->iat > late) return reject("iat in the future");
    if (c->exp <= early) return SP_ERR_TOKEN_EXPIRED;
    return SP_OK;
}

/* Signature and claims of an already-decoded token (see spjwt_verify). */
static sp_status check_claims(spjwt_claims *c, const spjwt_keys *k, jwt_t *jwt, int64_t now)
{
    char iss[256], aud[256];

    if (jwt_get_alg(jwt) != JWT_ALG_HS256) return reject("alg");
    if (grant_str(jwt, "iss", iss, sizeof iss) != 1 || strcmp(iss, k->issuer) != 0)
        return reject("iss");
    /* "aud" must be our audience as a string; an array (even one holding ours) is refused:
     * we never issue one, and accepting it would let a token meant for several services
     * in. */
    if (grant_str(jwt, "aud", aud, sizeof aud) != 1 || strcmp(aud, k->audience) != 0)
        return reject("aud");
    if (grant_str(jwt, "sub", c->sub, sizeof c->sub) != 1) return reject("sub");
    if (grant_str(jwt, "role", c->role, sizeof c->role) != 1) return reject("role");
    if (grant_str(jwt, "jti", c->jti, sizeof c->jti) != 1) return reject("jti");
    if (grant_str(jwt, "sid", c->sid, sizeof c->sid) != 1) return reject("sid");
    if (grant_str(jwt, "client_id", c->client_id, sizeof c->client_id) < 0)
        return reject("client_id");
    if (grant_str(jwt, "client_role", c->client_role, sizeof c->client_role) < 0)
        return reject("client_role");
    if (grant_int(jwt, "iat", &c->iat) != 1) return reject("iat");
    if (grant_int(jwt, "exp", &c->exp) != 1) return reject("exp");
    if (grant_int(jwt, "nbf", &c->nbf) < 0) return reject("nbf");
    return check_times(c, k, now);
}

/* The last token this thread verified, with the keys it was verified with: a client sends
 * the same access token for its whole lifetime, and checking the signature again (libjwt:
 * base64, two JSON parses, an HMAC) for the same bytes under the same keys can only give
 * the same answer. The times are checked again on every call. */
#define CACHE_MAX_KEY 256
static __thread struct {
    bool valid;
    size_t keylen, n;
    uint8_t key[CACHE_MAX_KEY];
    char issuer[256], audience[256];
    int leeway_s;
    char token[SPJWT_MAX_TOKEN + 1];
    spjwt_claims c;
} tl_last;

static bool remembered(const spjwt_keys *k, const char *token, size_t n)
{
    return tl_last.valid && tl_last.n == n && tl_last.keylen == k->keylen &&
           tl_last.leeway_s == k->leeway_s && memcmp(tl_last.token, token, n) == 0 &&
           memcmp(tl_last.key, k->key, k->keylen) == 0 && strcmp(tl_last.issuer, k->issuer) == 0 &&
           strcmp(tl_last.audience, k->audience) == 0;
}

static void remember(const spjwt_keys *k, const char *token, size_t n, const spjwt_claims *c)
{
    tl_last.valid = false;
    if (k->keylen > CACHE_MAX_KEY || strlen(k->issuer) >= sizeof tl_last.issuer ||
        strlen(k->audience) >= sizeof tl_last.audience)
        return;
    tl_last.keylen = k->keylen;
    memcpy(tl_last.key, k->key, k->keylen);
    memcpy(tl_last.issuer, k->issuer, strlen(k->issuer) + 1); /* lengths checked above */
    memcpy(tl_last.audience, k->audience, strlen(k->audience) + 1);
    tl_last.leeway_s = k->leeway_s;
    memcpy(tl_last.token, token, n);
    tl_last.token[n] = '\0';
    tl_last.n = n;
    tl_last.c = *c;
    tl_last.valid = true;
}

/* Verifies 'token' at 'now'. On anything but SP_OK *c is zeroed (an expired token's claims
 * are not handed out either). */
sp_status spjwt_verify(spjwt_claims *c, const spjwt_keys *k, const char *token, int64_t now)
{
    spjwt_claims got;
    size_t hlen = 0;
    jwt_t *jwt = NULL;

    memset(&got, 0, sizeof got);
    if (c == NULL) return SP_ERR_INTERNAL;
    memset(c, 0, sizeof *c);
    if (!keys_ok(k)) return reject("key unusable");
    if (token == NULL) return reject("no token");
    size_t n = strnlen(token, SPJWT_MAX_TOKEN + 1);
    if (n > SPJWT_MAX_TOKEN) return reject("exceeds SPJWT_MAX_TOKEN (4096)");
    if (remembered(k, token, n)) {
        sp_status s = check_times(&tl_last.c, k, now);
        if (s == SP_OK) *c = tl_last.c;
        return s;
    }
    if (!shape_ok(token, n, &hlen)) return reject("shape");
    if (!header_ok(token, hlen)) return reject("header");

    /* Only now does libjwt see the token: HS256 with our key checks the signature. */
    if (jwt_decode(&jwt, token, k->key, (int)k->keylen) != 0 || jwt == NULL) {
        jwt_free(jwt);
        return reject("signature");
    }
    sp_status s = check_claims(&got, k, jwt, now);
    jwt_free(jwt);
    if (s == SP_OK) {
        *c = got;
        remember(k, token, n, &got);
    }
    return s;
}
