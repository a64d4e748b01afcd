/* spjwt.c -- HS256 access tokens: signed with libjwt 1.10, verified here, strictly: the
 * header must be exactly {"alg":"HS256"} (libjwt would take the algorithm from it, "none"
 * in any case included), the signature is OpenSSL's HMAC-SHA256 compared in constant
 * time, and every claim is checked (libjwt 1.10 validates none). Verifying ourselves also
 * spares every request that is not a cache hit libjwt's decoding (two jansson parses, a
 * JSON dump per claim read, a digest lookup per HMAC): about 8.5 us became ~2 us. */
#include <cJSON.h>
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
 * *hlen to the length of the header segment and *slen to that of the signed part
 * ("header.payload"). */
static bool shape_ok(const char *t, size_t n, size_t *hlen, size_t *slen)
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
    *slen = dots[1];
    return true;
}

/* A base64url segment holding one JSON object and nothing after it (whitespace aside), no
 * NUL inside; NULL otherwise. The caller frees it with cJSON_Delete. */
static cJSON *segment_object(const char *seg, size_t len)
{
    char json[SPJWT_MAX_TOKEN];
    long n = spcrypto_b64url_decode((uint8_t *)json, sizeof json - 1, seg, len);
    if (n <= 0) return NULL;
    json[n] = '\0';
    if (strlen(json) != (size_t)n) return NULL; /* embedded NUL */

    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(json, (size_t)n, &end, false);
    bool ok = o != NULL && cJSON_IsObject(o);
    if (ok) {
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        ok = end == json + n;
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The header must be exactly {"alg":"HS256"} plus, optionally, "typ":"JWT": no other
 * member (no "kid", "jku", "crit", ...), no duplicate, case-sensitive names and values. */
static bool header_ok(const char *seg, size_t len)
{
    cJSON *h = segment_object(seg, len);
    bool ok = h != NULL;
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

/* The third segment is the canonical base64url of HMAC-SHA256(key, "header.payload"). */
static bool signature_ok(const spjwt_keys *k, const char *token, size_t slen, size_t n)
{
    uint8_t sig[32 + 3], mac[32];
    if (spcrypto_b64url_decode(sig, sizeof sig, token + slen + 1, n - slen - 1) != 32) return false;
    spcrypto_hmac_sha256(mac, k->key, k->keylen, token, slen);
    return spcrypto_ct_equal(mac, sig, sizeof mac);
}

/* A string claim: copied into dst (cap bytes) when it is a non-empty string that fits. */
static bool claim_str(const cJSON *m, char *dst, size_t cap)
{
    if (!cJSON_IsString(m) || m->valuestring == NULL) return false;
    size_t n = strlen(m->valuestring);
    if (n == 0 || n >= cap) return false;
    memcpy(dst, m->valuestring, n + 1);
    return true;
}

/* An integer claim (NumericDate in whole seconds): a JSON number with no fraction, within
 * +-10^15 (cJSON holds numbers as doubles, exact far beyond that). */
static bool claim_int(const cJSON *m, int64_t *dst)
{
    if (!cJSON_IsNumber(m)) return false;
    double v = m->valuedouble;
    if (!(v >= -1e15 && v <= 1e15) || v != (double)(int64_t)v) return false;
    *dst = (int64_t)v;
    return true;
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

/* The claims we read, each at most once; any other claim is ignored (RFC 7519 4.3). */
enum {
    C_ISS,
    C_AUD,
    C_SUB,
    C_ROLE,
    C_JTI,
    C_SID,
    C_CLIENT_ID,
    C_CLIENT_ROLE,
    C_IAT,
    C_EXP,
    C_NBF,
    C_COUNT
};
static const char *const k_claim[C_COUNT] = {
    "iss", "aud", "sub", "role", "jti", "sid", "client_id", "client_role", "iat", "exp", "nbf"};

/* The claims of a token whose signature was verified (see spjwt_verify). */
static sp_status check_claims(spjwt_claims *c, const spjwt_keys *k, const cJSON *o, int64_t now)
{
    char iss[256] = "", aud[256] = "";
    char *const dst[C_IAT] = {iss,    aud,    c->sub,       c->role,
                              c->jti, c->sid, c->client_id, c->client_role};
    const size_t cap[C_IAT] = {sizeof iss,          sizeof aud,           sizeof c->sub,
                               sizeof c->role,      sizeof c->jti,        sizeof c->sid,
                               sizeof c->client_id, sizeof c->client_role};
    int64_t *const num[C_COUNT - C_IAT] = {&c->iat, &c->exp, &c->nbf};
    bool seen[C_COUNT] = {false};

    for (const cJSON *m = o->child; m != NULL; m = m->next) {
        int i = 0;
        while (i < C_COUNT && (m->string == NULL || strcmp(m->string, k_claim[i]) != 0))
            i++;
        if (i == C_COUNT) continue;
        if (seen[i]) return reject(k_claim[i]); /* a duplicate: which one counts is moot */
        seen[i] = true;
        /* "aud" must be our audience as a string; an array (even one holding ours) is
         * refused: we never issue one, and accepting it would let a token meant for several
         * services in. */
        bool ok = i < C_IAT ? claim_str(m, dst[i], cap[i]) : claim_int(m, num[i - C_IAT]);
        if (!ok) return reject(k_claim[i]);
    }
    for (int i = 0; i < C_COUNT; i++)
        if (!seen[i] && i != C_CLIENT_ID && i != C_CLIENT_ROLE && i != C_NBF)
            return reject(k_claim[i]);
    if (strcmp(iss, k->issuer) != 0) return reject("iss");
    if (strcmp(aud, k->audience) != 0) return reject("aud");
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
           tl_last.leeway_s == k->leeway_s && spcrypto_ct_equal(tl_last.token, token, n) &&
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
    size_t hlen = 0, slen = 0;

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
    if (!shape_ok(token, n, &hlen, &slen)) return reject("shape");
    if (!header_ok(token, hlen)) return reject("header");
    if (!signature_ok(k, token, slen, n)) return reject("signature");

    cJSON *payload = segment_object(token + hlen + 1, slen - hlen - 1);
    if (payload == NULL) return reject("payload");
    sp_status s = check_claims(&got, k, payload, now);
    cJSON_Delete(payload);
    if (s == SP_OK) {
        *c = got;
        remember(k, token, n, &got);
    }
    return s;
}
