/* test_spjwt.c -- unit tests of spjwt: HS256 round trips and every way a token must be
 * refused (algorithm confusion, none in any case, tampering, claims, sizes, keys). */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spcrypto.h"
#include "spjwt.h"

#define NOW 1757689804LL

static const uint8_t KEY[32] = "0123456789abcdef0123456789ABCDE"; /* 31 chars + NUL = 32 */
static const uint8_t OTHER_KEY[32] = "ZYXWVUTSRQPONMLKJIHGFEDCBA98765";

static spjwt_keys keys(void)
{
    spjwt_keys k = {KEY, sizeof KEY, "smartpark", "smartpark-api", 30};
    return k;
}

static spjwt_claims claims(void)
{
    spjwt_claims c;
    memset(&c, 0, sizeof c);
    strcpy(c.sub, "0b6c1f6e-2f7a-4c1e-9a57-3d9d1c7d2a11");
    strcpy(c.role, "client_admin");
    strcpy(c.client_id, "5d2f8a31-6b0e-4a57-8c3e-0f1e2d3c4b5a");
    strcpy(c.client_role, "client_manager");
    strcpy(c.jti, "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a");
    strcpy(c.sid, "1a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d");
    c.iat = NOW;
    c.exp = NOW + 900;
    return c;
}

static char *sign_ok(const spjwt_keys *k, const spjwt_claims *c)
{
    char *t = NULL;
    ck_assert_int_eq(spjwt_sign(&t, k, c), SP_OK);
    ck_assert_ptr_nonnull(t);
    return t;
}

static sp_status verify(const char *token)
{
    spjwt_keys k = keys();
    spjwt_claims got;
    return spjwt_verify(&got, &k, token, NOW);
}

/* A token made by hand: base64url(header).base64url(payload).signature, where the
 * signature is HMAC with 'md' over the first two segments, or empty when md is NULL. */
static char *craft(const char *header, const char *payload, const EVP_MD *md, const uint8_t *key,
                   size_t keylen)
{
    size_t hl = strlen(header), pl = strlen(payload);
    char *t = malloc(4 * (hl + pl) / 3 + 256);
    ck_assert_ptr_nonnull(t);
    size_t n = spcrypto_b64url_encode(t, header, hl);
    t[n++] = '.';
    n += spcrypto_b64url_encode(t + n, payload, pl);
    t[n++] = '.';
    t[n] = '\0';
    if (md != NULL) {
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        ck_assert_ptr_nonnull(HMAC(md, key, (int)keylen, (const uint8_t *)t, n - 1, mac, &ml));
        spcrypto_b64url_encode(t + n, mac, ml);
    }
    return t;
}

/* A payload holding every required claim, valid at NOW; 'drop' names one left out, and
 * 'extra' (may be "") is appended as more members. */
static void payload(char *out, size_t cap, const char *drop, const char *extra)
{
    static const char *members[] = {"\"iss\":\"smartpark\"",
                                    "\"aud\":\"smartpark-api\"",
                                    "\"sub\":\"0b6c1f6e-2f7a-4c1e-9a57-3d9d1c7d2a11\"",
                                    "\"role\":\"app_user\"",
                                    "\"jti\":\"j-1\"",
                                    "\"sid\":\"s-1\"",
                                    "\"iat\":1757689804",
                                    "\"exp\":1757690704"};
    size_t n = (size_t)snprintf(out, cap, "{");
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        char name[16];
        snprintf(name, sizeof name, "\"%s\"", drop ? drop : "");
        if (drop != NULL && strncmp(members[i], name, strlen(name)) == 0) continue;
        n += (size_t)snprintf(out + n, cap - n, "%s%s", n > 1 ? "," : "", members[i]);
    }
    snprintf(out + n, cap - n, "%s%s}", extra[0] ? "," : "", extra);
}

#define HS256_HEADER "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* verify() of a token crafted with HS256_HEADER, our key and payload(drop, extra). */
static sp_status verify_payload(const char *drop, const char *extra)
{
    char p[1024];
    payload(p, sizeof p, drop, extra);
    char *t = craft(HS256_HEADER, p, EVP_sha256(), KEY, sizeof KEY);
    sp_status s = verify(t);
    free(t);
    return s;
}

/* ---- what must verify ------------------------------------------------------------------ */

START_TEST(round_trip_all_claims)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    c.nbf = NOW - 5;
    char *t = sign_ok(&k, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_OK);
    ck_assert_str_eq(got.sub, c.sub);
    ck_assert_str_eq(got.role, c.role);
    ck_assert_str_eq(got.client_id, c.client_id);
    ck_assert_str_eq(got.client_role, c.client_role);
    ck_assert_str_eq(got.jti, c.jti);
    ck_assert_str_eq(got.sid, c.sid);
    ck_assert_int_eq(got.iat, c.iat);
    ck_assert_int_eq(got.nbf, c.nbf);
    ck_assert_int_eq(got.exp, c.exp);
    free(t);
}
END_TEST

START_TEST(round_trip_without_client_claims)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    c.client_id[0] = '\0';
    c.client_role[0] = '\0';
    strcpy(c.role, "app_user");
    char *t = sign_ok(&k, &c);
    /* The claims are left out of the payload rather than sent empty. */
    char body[1024];
    const char *p = strchr(t, '.') + 1;
    long n =
        spcrypto_b64url_decode((uint8_t *)body, sizeof body - 1, p, (size_t)(strchr(p, '.') - p));
    ck_assert_int_gt(n, 0);
    body[n] = '\0';
    ck_assert_ptr_null(strstr(body, "client_"));
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_OK);
    ck_assert_str_eq(got.client_id, "");
    ck_assert_str_eq(got.client_role, "");
    ck_assert_str_eq(got.role, "app_user");
    ck_assert_int_eq(got.nbf, 0);
    free(t);
}
END_TEST

/* The hand-made tokens below differ from this one only in what each test breaks. */
START_TEST(crafted_hs256_token_verifies)
{
    char p[512];
    payload(p, sizeof p, NULL, "");
    char *t = craft(HS256_HEADER, p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_OK);
    free(t);
    t = craft("{\"alg\":\"HS256\"}", p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_OK);
    free(t);
}
END_TEST

START_TEST(leeway_accepts_recently_expired)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    c.iat = NOW - 910;
    c.exp = NOW - 10; /* within the 30 s leeway */
    char *t = sign_ok(&k, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_OK);
    free(t);
}
END_TEST

/* ---- time claims ----------------------------------------------------------------------- */

START_TEST(expired_is_token_expired)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    c.iat = NOW - 1000;
    c.exp = NOW - 100;
    char *t = sign_ok(&k, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_TOKEN_EXPIRED);
    ck_assert_str_eq(got.sub, "");
    k.leeway_s = 0;
    ck_assert_int_eq(spjwt_verify(&got, &k, t, c.exp), SP_ERR_TOKEN_EXPIRED);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, c.exp - 1), SP_OK);
    free(t);
}
END_TEST

START_TEST(expired_with_bad_signature_is_invalid)
{
    spjwt_keys k = keys(), other = keys();
    other.key = OTHER_KEY;
    spjwt_claims c = claims(), got;
    c.iat = NOW - 1000;
    c.exp = NOW - 100;
    char *t = sign_ok(&other, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(nbf_in_future_refused)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    c.nbf = NOW + 120;
    c.exp = NOW + 1000;
    char *t = sign_ok(&k, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW + 100), SP_OK); /* within leeway */
    free(t);
}
END_TEST

START_TEST(iat_in_future_refused)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    c.iat = NOW + 120;
    c.exp = NOW + 1000;
    char *t = sign_ok(&k, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW + 90), SP_OK); /* within leeway */
    free(t);
}
END_TEST

START_TEST(exp_as_string_refused)
{
    char p[512];
    payload(p, sizeof p, "exp", "\"exp\":\"9999999999\"");
    char *t = craft(HS256_HEADER, p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

/* ---- signatures ------------------------------------------------------------------------ */

START_TEST(wrong_key_refused)
{
    spjwt_keys k = keys(), other = keys();
    other.key = OTHER_KEY;
    spjwt_claims c = claims(), got;
    char *t = sign_ok(&other, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

/* ---- the thread's last verified token --------------------------------------------------- */

/* once accepted, the same bytes are still refused under another key, issuer or audience */
START_TEST(remembered_token_is_checked_against_the_keys_again)
{
    spjwt_keys k = keys(), other = keys();
    spjwt_claims c = claims(), got;
    char *t = sign_ok(&k, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_OK);
    other.key = OTHER_KEY;
    ck_assert_int_eq(spjwt_verify(&got, &other, t, NOW), SP_ERR_INVALID_TOKEN);
    ck_assert_str_eq(got.sub, "");
    other = keys();
    other.issuer = "someone-else";
    ck_assert_int_eq(spjwt_verify(&got, &other, t, NOW), SP_ERR_INVALID_TOKEN);
    other = keys();
    other.audience = "another-api";
    ck_assert_int_eq(spjwt_verify(&got, &other, t, NOW), SP_ERR_INVALID_TOKEN);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_OK);
    ck_assert_str_eq(got.sid, c.sid);
    free(t);
}
END_TEST

/* a token accepted a moment ago expires all the same, and one byte changed is a new token */
START_TEST(remembered_token_still_expires_and_differs_by_a_byte)
{
    spjwt_keys k = keys();
    k.leeway_s = 0;
    spjwt_claims c = claims(), got;
    char *t = sign_ok(&k, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_OK);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, c.exp), SP_ERR_TOKEN_EXPIRED);
    ck_assert_str_eq(got.sub, "");
    ck_assert_int_eq(spjwt_verify(&got, &k, t, c.iat - 1), SP_ERR_INVALID_TOKEN); /* iat ahead */
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_OK);
    size_t n = strlen(t);
    t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A'; /* the signature's last-but-one character */
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(tampered_payload_refused)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    strcpy(c.role, "app_user");
    char *t = sign_ok(&k, &c);
    strcpy(c.role, "admin");
    char *t2 = sign_ok(&k, &c);
    /* Splice the admin payload between the app_user header and signature. */
    const char *p2 = strchr(t2, '.') + 1;
    size_t p2len = (size_t)(strchr(p2, '.') - p2);
    const char *p1 = strchr(t, '.') + 1;
    const char *sig1 = strchr(p1, '.');
    char forged[SPJWT_MAX_TOKEN];
    snprintf(forged, sizeof forged, "%.*s%.*s%s", (int)(p1 - t), t, (int)p2len, p2, sig1);
    ck_assert_int_eq(spjwt_verify(&got, &k, forged, NOW), SP_ERR_INVALID_TOKEN);
    ck_assert_str_eq(got.role, "");
    free(t);
    free(t2);
}
END_TEST

START_TEST(tampered_signature_refused)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    char *t = sign_ok(&k, &c);
    char *sig = strrchr(t, '.') + 1;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    sig[0] = '\0'; /* no signature at all */
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

/* The signature segment must be the canonical encoding of the MAC: the same 32 bytes
 * spelled with other trailing bits (base64url's last character of 43 carries 2 spare
 * bits) are another token and refused, as is a MAC cut short or made longer. */
START_TEST(noncanonical_or_resized_signature_refused)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    char *t = sign_ok(&k, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_OK);
    char *sig = strrchr(t, '.') + 1;
    ck_assert_uint_eq(strlen(sig), 43);
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char last = sig[42];
    int v = (int)(strchr(alphabet, last) - alphabet);
    sig[42] = alphabet[v ^ 1]; /* a spare bit set: decodes to the same 32 bytes */
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    sig[42] = last;
    char longer[SPJWT_MAX_TOKEN];
    snprintf(longer, sizeof longer, "%sAA", t);
    ck_assert_int_eq(spjwt_verify(&got, &k, longer, NOW), SP_ERR_INVALID_TOKEN);
    sig[40] = '\0';
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

/* ---- algorithm confusion --------------------------------------------------------------- */

static const char *none_spellings[] = {"none", "None", "NONE", "nOnE"};

START_TEST(alg_none_any_case_refused)
{
    char h[64], p[512];
    snprintf(h, sizeof h, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", none_spellings[_i]);
    payload(p, sizeof p, NULL, "");
    char *t = craft(h, p, NULL, NULL, 0); /* "header.payload." */
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
    /* Nor with a signature made with our key attached. */
    t = craft(h, p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(hs512_same_key_refused)
{
    char p[512];
    payload(p, sizeof p, NULL, "");
    char *t = craft("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", p, EVP_sha512(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(hs384_same_key_refused)
{
    char p[512];
    payload(p, sizeof p, NULL, "");
    char *t = craft("{\"alg\":\"HS384\",\"typ\":\"JWT\"}", p, EVP_sha384(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(rs256_header_with_hmac_refused)
{
    char p[512];
    payload(p, sizeof p, NULL, "");
    char *t = craft("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(header_variants_refused)
{
    static const char *headers[] = {
        "{\"alg\":\"hs256\",\"typ\":\"JWT\"}",       /* case of the algorithm */
        "{\"alg\":\"HS256\",\"typ\":\"jwt\"}",       /* typ other than JWT */
        "{\"alg\":\"HS256\",\"kid\":\"../../key\"}", /* member we do not know */
        "{\"alg\":\"HS256\",\"alg\":\"none\"}",      /* duplicate */
        "{\"typ\":\"JWT\"}",                         /* no alg */
        "{\"alg\":\"HS256\"}x",                      /* trailing garbage */
        "[\"HS256\"]",
    };
    char p[512];
    payload(p, sizeof p, NULL, "");
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *t = craft(headers[i], p, EVP_sha256(), KEY, sizeof KEY);
        ck_assert_msg(verify(t) == SP_ERR_INVALID_TOKEN, "accepted header %s", headers[i]);
        free(t);
    }
}
END_TEST

/* ---- issuer, audience, required claims ------------------------------------------------- */

START_TEST(wrong_iss_refused)
{
    spjwt_keys k = keys(), other = keys();
    other.issuer = "someone-else";
    spjwt_claims c = claims(), got;
    char *t = sign_ok(&other, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(wrong_aud_refused)
{
    spjwt_keys k = keys(), other = keys();
    other.audience = "smartpark-admin";
    spjwt_claims c = claims(), got;
    char *t = sign_ok(&other, &c);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

/* Documented choice: "aud" must be a string; an array is refused even when it holds ours. */
START_TEST(aud_array_refused)
{
    ck_assert_int_eq(verify_payload("aud", "\"aud\":[\"smartpark-api\"]"), SP_ERR_INVALID_TOKEN);
}
END_TEST

START_TEST(missing_exp_refused)
{
    char p[512];
    payload(p, sizeof p, "exp", "");
    ck_assert_ptr_null(strstr(p, "exp"));
    char *t = craft(HS256_HEADER, p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(missing_sid_refused)
{
    char p[512];
    payload(p, sizeof p, "sid", "");
    ck_assert_ptr_null(strstr(p, "sid"));
    char *t = craft(HS256_HEADER, p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

/* Loop over every other required claim: each one missing is a rejection. */
static const char *required[] = {"iss", "aud", "sub", "role", "jti", "iat"};

START_TEST(missing_required_claim_refused)
{
    ck_assert_msg(verify_payload(required[_i], "") == SP_ERR_INVALID_TOKEN, "accepted without %s",
                  required[_i]);
}
END_TEST

/* A claim we read given twice is refused, whichever copy would win. */
static const char *duplicated[] = {
    "\"sub\":\"0b6c1f6e-2f7a-4c1e-9a57-3d9d1c7d2a12\"", "\"role\":\"admin\"", "\"exp\":1757690705",
    "\"iss\":\"smartpark\"", "\"client_id\":\"a\",\"client_id\":\"b\""};

START_TEST(duplicate_claim_refused)
{
    ck_assert_int_eq(verify_payload(NULL, duplicated[_i]), SP_ERR_INVALID_TOKEN);
}
END_TEST

/* Times are whole seconds as JSON numbers: a fraction, a value beyond 10^15, a boolean or
 * null is refused; a claim we do not read is ignored. */
static const char *bad_time[] = {"\"nbf\":1.5",  "\"nbf\":1e300", "\"nbf\":true",
                                 "\"nbf\":null", "\"nbf\":-1e16", "\"nbf\":[1]"};

START_TEST(non_integer_time_refused)
{
    ck_assert_int_eq(verify_payload(NULL, bad_time[_i]), SP_ERR_INVALID_TOKEN);
    ck_assert_int_eq(verify_payload(NULL, "\"nbf\":1757689000,\"scope\":[1,2],\"x\":{\"y\":null}"),
                     SP_OK);
}
END_TEST

/* The payload must be one JSON object: an array, trailing bytes or bad JSON under a valid
 * signature are refused. */
START_TEST(payload_not_one_object_refused)
{
    static const char *bodies[] = {"[1]", "{\"iss\":\"smartpark\"} x", "{\"iss\":", "\"s\""};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char *t = craft(HS256_HEADER, bodies[i], EVP_sha256(), KEY, sizeof KEY);
        ck_assert_msg(verify(t) == SP_ERR_INVALID_TOKEN, "payload %s", bodies[i]);
        free(t);
    }
}
END_TEST

START_TEST(oversize_claim_refused)
{
    char p[512], extra[128];
    /* 64 characters do not fit client_id[64] with its NUL. */
    snprintf(extra, sizeof extra, "\"client_id\":\"%064d\"", 7);
    payload(p, sizeof p, NULL, extra);
    char *t = craft(HS256_HEADER, p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

/* ---- keys ------------------------------------------------------------------------------ */

START_TEST(short_key_refused_on_sign)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims();
    char *t = (char *)"sentinel";
    k.keylen = SPJWT_MIN_KEY - 1;
    ck_assert_int_ne(spjwt_sign(&t, &k, &c), SP_OK);
    ck_assert_ptr_null(t);
    k.keylen = 0;
    ck_assert_int_ne(spjwt_sign(&t, &k, &c), SP_OK);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(short_key_refused_on_verify)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims(), got;
    /* A token genuinely signed with the 31-byte key still does not verify with it. */
    char p[512];
    payload(p, sizeof p, NULL, "");
    char *t = craft(HS256_HEADER, p, EVP_sha256(), KEY, SPJWT_MIN_KEY - 1);
    k.keylen = SPJWT_MIN_KEY - 1;
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
    /* A zero-length key must not turn verification off. */
    k.keylen = 0;
    t = craft(HS256_HEADER, p, EVP_sha256(), KEY, 0);
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
    k = keys();
    t = sign_ok(&k, &c);
    k.keylen = 0;
    ck_assert_int_eq(spjwt_verify(&got, &k, t, NOW), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

/* ---- malformed input ------------------------------------------------------------------- */

START_TEST(garbage_refused)
{
    static const char *bad[] = {"",        "garbage",
                                "a.b",     "..",
                                "a..c",    ".b.c",
                                "a.b.",    "eyJhbGciOiJIUzI1NiJ9.e30.!!!",
                                "a b.c.d", "eyJhbGciOiJIUzI1NiJ9.eyJ.xyz"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(verify(bad[i]) == SP_ERR_INVALID_TOKEN, "accepted '%s'", bad[i]);
    ck_assert_int_eq(verify(NULL), SP_ERR_INVALID_TOKEN);
}
END_TEST

START_TEST(three_dots_refused)
{
    spjwt_keys k = keys();
    spjwt_claims c = claims();
    char *t = sign_ok(&k, &c);
    char buf[SPJWT_MAX_TOKEN + 8];
    snprintf(buf, sizeof buf, "%s.", t);
    ck_assert_int_eq(verify(buf), SP_ERR_INVALID_TOKEN);
    snprintf(buf, sizeof buf, "%s.AAAA", t);
    ck_assert_int_eq(verify(buf), SP_ERR_INVALID_TOKEN);
    ck_assert_int_eq(verify("a.b.c.d"), SP_ERR_INVALID_TOKEN);
    free(t);
}
END_TEST

START_TEST(oversize_token_refused)
{
    /* Correctly signed, valid claims, but longer than SPJWT_MAX_TOKEN. */
    char p[4096], extra[3300];
    memcpy(extra, "\"pad\":\"", 7);
    memset(extra + 7, 'x', 3200);
    strcpy(extra + 3207, "\"");
    payload(p, sizeof p, NULL, extra);
    char *t = craft(HS256_HEADER, p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_uint_gt(strlen(t), SPJWT_MAX_TOKEN);
    ck_assert_int_eq(verify(t), SP_ERR_INVALID_TOKEN);
    free(t);
    /* The same kind of token below the limit verifies. */
    extra[7 + 2000] = '\0';
    strcat(extra, "\"");
    payload(p, sizeof p, NULL, extra);
    t = craft(HS256_HEADER, p, EVP_sha256(), KEY, sizeof KEY);
    ck_assert_uint_le(strlen(t), SPJWT_MAX_TOKEN);
    ck_assert_int_eq(verify(t), SP_OK);
    free(t);
}
END_TEST

static Suite *spjwt_suite(void)
{
    Suite *s = suite_create("spjwt");
    TCase *t = tcase_create("valid");
    tcase_add_test(t, round_trip_all_claims);
    tcase_add_test(t, round_trip_without_client_claims);
    tcase_add_test(t, crafted_hs256_token_verifies);
    tcase_add_test(t, leeway_accepts_recently_expired);
    suite_add_tcase(s, t);

    t = tcase_create("time");
    tcase_add_test(t, expired_is_token_expired);
    tcase_add_test(t, expired_with_bad_signature_is_invalid);
    tcase_add_test(t, nbf_in_future_refused);
    tcase_add_test(t, iat_in_future_refused);
    tcase_add_test(t, exp_as_string_refused);
    suite_add_tcase(s, t);

    t = tcase_create("signature");
    tcase_add_test(t, wrong_key_refused);
    tcase_add_test(t, remembered_token_is_checked_against_the_keys_again);
    tcase_add_test(t, remembered_token_still_expires_and_differs_by_a_byte);
    tcase_add_test(t, tampered_payload_refused);
    tcase_add_test(t, tampered_signature_refused);
    tcase_add_test(t, noncanonical_or_resized_signature_refused);
    tcase_add_loop_test(t, alg_none_any_case_refused, 0,
                        (int)(sizeof none_spellings / sizeof none_spellings[0]));
    tcase_add_test(t, hs512_same_key_refused);
    tcase_add_test(t, hs384_same_key_refused);
    tcase_add_test(t, rs256_header_with_hmac_refused);
    tcase_add_test(t, header_variants_refused);
    suite_add_tcase(s, t);

    t = tcase_create("claims");
    tcase_add_test(t, wrong_iss_refused);
    tcase_add_test(t, wrong_aud_refused);
    tcase_add_test(t, aud_array_refused);
    tcase_add_test(t, missing_exp_refused);
    tcase_add_test(t, missing_sid_refused);
    tcase_add_loop_test(t, missing_required_claim_refused, 0,
                        (int)(sizeof required / sizeof required[0]));
    tcase_add_test(t, oversize_claim_refused);
    tcase_add_loop_test(t, duplicate_claim_refused, 0,
                        (int)(sizeof duplicated / sizeof duplicated[0]));
    tcase_add_loop_test(t, non_integer_time_refused, 0,
                        (int)(sizeof bad_time / sizeof bad_time[0]));
    tcase_add_test(t, payload_not_one_object_refused);
    suite_add_tcase(s, t);

    t = tcase_create("keys_and_input");
    tcase_add_test(t, short_key_refused_on_sign);
    tcase_add_test(t, short_key_refused_on_verify);
    tcase_add_test(t, garbage_refused);
    tcase_add_test(t, three_dots_refused);
    tcase_add_test(t, oversize_token_refused);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(spjwt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
