/* spcrypto.c -- argon2id passwords, SHA-256/HMAC, random bytes, UUIDs, base64url and hex
 * over libargon2, OpenSSL libcrypto and libuuid. */
#include <argon2.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid.h>

#include "spcrypto.h"

/* OWASP's argon2id profile (pitfalls.md): 19 MiB, 2 passes, 1 lane. */
#define PW_T_COST 2
#define PW_M_COST 19456
#define PW_LANES 1
#define PW_SALT_LEN 16
#define PW_HASH_LEN 32

/* An address for zero-length inputs, so OpenSSL never sees NULL. */
static const uint8_t empty[1];

static void crypto_fail(const char *what)
{
    /* Without a working CSPRNG or digest nothing we hand out can be trusted: stop. */
    sp_log_error(NULL, "crypto_failure", "call", what);
    abort();
}

/* ---- passwords ------------------------------------------------------------------------- */

/* Writes the PHC string into out; SP_ERR_INTERNAL when out is too small or argon2 fails. */
sp_status spcrypto_password_hash(char *out, size_t outlen, const char *password, size_t len)
{
    uint8_t salt[PW_SALT_LEN];

    if (out == NULL || outlen == 0) return SP_ERR_INTERNAL;
    out[0] = '\0';
    if (password == NULL && len > 0) return SP_ERR_INTERNAL;
    if (len > UINT32_MAX) return SP_ERR_VALIDATION_FAILED;
    size_t need =
        argon2_encodedlen(PW_T_COST, PW_M_COST, PW_LANES, PW_SALT_LEN, PW_HASH_LEN, Argon2_id);
    if (outlen < need) return SP_ERR_INTERNAL;

    spcrypto_random(salt, sizeof salt);
    int rc = argon2id_hash_encoded(PW_T_COST, PW_M_COST, PW_LANES,
                                   password ? (const void *)password : (const void *)empty, len,
                                   salt, sizeof salt, PW_HASH_LEN, out, outlen);
    OPENSSL_cleanse(salt, sizeof salt);
    if (rc != ARGON2_OK) {
        sp_log_error(NULL, "argon2_hash_failed", "error", argon2_error_message(rc));
        out[0] = '\0';
        return SP_ERR_INTERNAL;
    }
    return SP_OK;
}

/* argon2id_verify recomputes with the parameters stored in 'encoded' and compares in
 * constant time; any other type ($argon2i$, ...) or a malformed string is a mismatch. */
bool spcrypto_password_verify(const char *encoded, const char *password, size_t len)
{
    if (encoded == NULL || (password == NULL && len > 0) || len > UINT32_MAX) return false;
    if (strncmp(encoded, "$argon2id$", 10) != 0) return false;
    return argon2id_verify(encoded, password ? (const void *)password : (const void *)empty, len) ==
           ARGON2_OK;
}

/* ---- digests and random ---------------------------------------------------------------- */

void spcrypto_sha256(uint8_t out[32], const void *data, size_t len)
{
    unsigned int n = 0;

    if (EVP_Digest(data ? data : empty, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
        crypto_fail("EVP_Digest");
}

/* HMAC-SHA256 keeps, per thread, an EVP_MAC context keyed with the last key it saw: the
 * one-shot HMAC() looks the digest and the MAC up in OpenSSL 3's provider store (locks,
 * allocations) on every call, and the gateway computes one for every token it verifies.
 * A context keyed once is only reset (EVP_MAC_init with no key keeps the key). Keys of up
 * to HMAC_CACHE_KEY bytes are kept; longer or empty ones take the one-shot path. */
#define HMAC_CACHE_KEY 256

typedef struct {
    EVP_MAC_CTX *ctx;
    size_t keylen; /* 0: no key set yet */
    uint8_t key[HMAC_CACHE_KEY];
} hmac_cache;

static EVP_MAC *g_hmac;
static pthread_key_t g_hmac_key;
static bool g_hmac_ok;
static pthread_once_t g_hmac_once = PTHREAD_ONCE_INIT;

static void hmac_cache_free(void *p)
{
    hmac_cache *c = p;
    EVP_MAC_CTX_free(c->ctx);
    OPENSSL_cleanse(c, sizeof *c);
    free(c);
}

static void hmac_init_once(void)
{
    g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    g_hmac_ok = g_hmac != NULL && pthread_key_create(&g_hmac_key, hmac_cache_free) == 0;
}

/* This thread's context, keyed with 'key' and ready for data; NULL when there is none to
 * have (the caller takes the one-shot path). */
static EVP_MAC_CTX *hmac_ctx(const void *key, size_t keylen)
{
    if (keylen == 0 || keylen > HMAC_CACHE_KEY) return NULL;
    pthread_once(&g_hmac_once, hmac_init_once);
    if (!g_hmac_ok) return NULL;
    hmac_cache *c = pthread_getspecific(g_hmac_key);
    if (c == NULL) {
        c = calloc(1, sizeof *c);
        if (c == NULL) return NULL;
        c->ctx = EVP_MAC_CTX_new(g_hmac);
        if (c->ctx == NULL || pthread_setspecific(g_hmac_key, c) != 0) {
            hmac_cache_free(c);
            return NULL;
        }
    }
    if (c->keylen == keylen && memcmp(c->key, key, keylen) == 0)
        return EVP_MAC_init(c->ctx, NULL, 0, NULL) == 1 ? c->ctx : NULL;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0),
                           OSSL_PARAM_construct_end()};
    c->keylen = 0;
    if (EVP_MAC_init(c->ctx, key, keylen, params) != 1) return NULL;
    memcpy(c->key, key, keylen);
    c->keylen = keylen;
    return c->ctx;
}

void spcrypto_hmac_sha256(uint8_t out[32], const void *key, size_t keylen, const void *data,
                          size_t len)
{
    EVP_MAC_CTX *ctx = hmac_ctx(key, keylen);
    if (ctx != NULL) {
        size_t n = 0;
        if (EVP_MAC_update(ctx, data ? data : empty, len) != 1 ||
            EVP_MAC_final(ctx, out, &n, 32) != 1 || n != 32)
            crypto_fail("EVP_MAC");
        return;
    }
    unsigned int n = 0;
    if (keylen > INT_MAX) crypto_fail("HMAC key length");
    if (HMAC(EVP_sha256(), key ? key : empty, (int)keylen, data ? data : empty, len, out, &n) ==
            NULL ||
        n != 32)
        crypto_fail("HMAC");
}

void spcrypto_random(void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        int n = len > INT_MAX ? INT_MAX : (int)len;
        if (RAND_bytes(p, n) != 1) crypto_fail("RAND_bytes");
        p += n;
        len -= (size_t)n;
    }
}

bool spcrypto_ct_equal(const void *a, const void *b, size_t len)
{
    if (len == 0) return true;
    if (a == NULL || b == NULL) return false;
    return CRYPTO_memcmp(a, b, len) == 0;
}

/* ---- UUIDs ----------------------------------------------------------------------------- */

/* Stamps the version nibble and the RFC 9562 variant (10xx) into 16 raw bytes. */
static void uuid_stamp(uint8_t b[16], unsigned version)
{
    b[6] = (uint8_t)((b[6] & 0x0f) | (version << 4));
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
}

void spcrypto_uuid_v4(char out[SPCRYPTO_UUID_LEN])
{
    uuid_t b = {0};

    spcrypto_random(b, sizeof b);
    uuid_stamp(b, 4);
    uuid_unparse_lower(b, out);
}

sp_status spcrypto_uuid_v5(char out[SPCRYPTO_UUID_LEN], const char *ns, const void *name,
                           size_t len)
{
    uuid_t nsb;
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;

    out[0] = '\0';
    if (!spcrypto_uuid_valid(ns) || uuid_parse(ns, nsb) != 0) return SP_ERR_VALIDATION_FAILED;
    if (name == NULL && len > 0) return SP_ERR_VALIDATION_FAILED;

    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (md == NULL) crypto_fail("EVP_MD_CTX_new");
    if (EVP_DigestInit_ex(md, EVP_sha1(), NULL) != 1 ||
        EVP_DigestUpdate(md, nsb, sizeof nsb) != 1 ||
        EVP_DigestUpdate(md, name ? name : empty, len) != 1 ||
        EVP_DigestFinal_ex(md, digest, &n) != 1 || n != 20)
        crypto_fail("SHA-1");
    EVP_MD_CTX_free(md);

    uuid_stamp(digest, 5);
    uuid_unparse_lower(digest, out);
    return SP_OK;
}

/* Exactly 8-4-4-4-12 hex digits; no braces, no "urn:uuid:", no surrounding space. */
bool spcrypto_uuid_valid(const char *s)
{
    if (s == NULL) return false;
    for (int i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-') return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return false; /* also stops at an early NUL */
        }
    }
    return s[36] == '\0';
}

/* ---- base64url and hex ----------------------------------------------------------------- */

/* Input is encoded in chunks so EVP_EncodeBlock's int length never overflows; a chunk is
 * a multiple of 3 bytes, so only the last one can carry padding. */
#define B64_CHUNK ((size_t)3 * 256 * 1024)

size_t spcrypto_b64url_encode(char *out, const void *data, size_t len)
{
    const uint8_t *in = data;
    size_t o = 0;

    out[0] = '\0';
    while (len > 0) {
        size_t n = len > B64_CHUNK ? B64_CHUNK : len;
        int w = EVP_EncodeBlock((unsigned char *)out + o, in, (int)n);
        if (w < 0) crypto_fail("EVP_EncodeBlock");
        o += (size_t)w;
        in += n;
        len -= n;
    }
    while (o > 0 && out[o - 1] == '=')
        o--;
    for (size_t i = 0; i < o; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    out[o] = '\0';
    return o;
}

/* Value of one base64url character, -1 for anything else (including '=', '+', '/'). */
static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

/* Strict: only the 64 URL-safe characters, no padding, no whitespace, and the unused low
 * bits of the last character must be zero, so each byte string has exactly one encoding. */
long spcrypto_b64url_decode(uint8_t *out, size_t outcap, const char *in, size_t len)
{
    if (len == 0) return 0;
    if (in == NULL || len % 4 == 1 || len / 4 > (size_t)LONG_MAX / 3) return -1;
    for (size_t i = 0; i < len; i++)
        if (b64url_value(in[i]) < 0) return -1;
    size_t rem = len % 4;
    size_t need = len / 4 * 3 + (rem == 2 ? 1 : rem == 3 ? 2 : 0);
    if (need > outcap || out == NULL) return -1;
    int last = b64url_value(in[len - 1]);
    if ((rem == 2 && (last & 0x0f) != 0) || (rem == 3 && (last & 0x03) != 0)) return -1;

    /* Translate to standard base64 a block of groups at a time and let OpenSSL decode;
     * the final partial group is padded with '='. */
    unsigned char std[1024 + 4];
    unsigned char raw[(1024 + 4) / 4 * 3];
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = len - i > 1024 ? 1024 : len - i;
        for (size_t j = 0; j < n; j++) {
            char c = in[i + j];
            std[j] = (unsigned char)(c == '-' ? '+' : c == '_' ? '/' : c);
        }
        size_t padded = n;
        while (padded % 4 != 0)
            std[padded++] = '=';
        int w = EVP_DecodeBlock(raw, std, (int)padded);
        if (w < 0 || (size_t)w != padded / 4 * 3) return -1;
        /* EVP_DecodeBlock counts padding as zero bytes: keep only the real ones. */
        size_t real = n / 4 * 3 + (n % 4 == 2 ? 1 : n % 4 == 3 ? 2 : 0);
        memcpy(out + o, raw, real);
        o += real;
        i += n;
    }
    OPENSSL_cleanse(raw, sizeof raw);
    return (long)o;
}

void spcrypto_hex(char *out, const void *data, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *p = data;

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * len] = '\0';
}

/* ---- AES-256-GCM ------------------------------------------------------------------------ */

#define GCM_NONCE 12
#define GCM_TAG 16

/* One GCM pass (enc: seal, else open) over in[0..len) into out; tag read or written. */
static sp_status gcm(bool enc, uint8_t *out, const uint8_t *key, const uint8_t *nonce,
                     const uint8_t *in, size_t len, const void *aad, size_t aadlen, uint8_t *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    bool ok = c != NULL && len <= INT_MAX && aadlen <= INT_MAX &&
              EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc ? 1 : 0) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, GCM_NONCE, NULL) == 1 &&
              EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc ? 1 : 0) == 1 &&
              (aadlen == 0 || EVP_CipherUpdate(c, NULL, &n, aad, (int)aadlen) == 1) &&
              (len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)len) == 1) &&
              (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, GCM_TAG, tag) == 1);
    ok = ok && EVP_CipherFinal_ex(c, out + (len == 0 ? 0 : n), &fin) == 1;
    ok = ok && (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, GCM_TAG, tag) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok ? SP_OK : (enc ? SP_ERR_INTERNAL : SP_ERR_VALIDATION_FAILED);
}

sp_status spcrypto_seal(uint8_t *out, const uint8_t key[SPCRYPTO_SEAL_KEY_LEN], const void *plain,
                        size_t len, const void *aad, size_t aadlen)
{
    spcrypto_random(out, GCM_NONCE);
    return gcm(true, out + GCM_NONCE, key, out, plain, len, aad, aadlen, out + GCM_NONCE + len);
}

sp_status spcrypto_open(uint8_t *out, const uint8_t key[SPCRYPTO_SEAL_KEY_LEN],
                        const uint8_t *sealed, size_t len, const void *aad, size_t aadlen)
{
    if (len < SPCRYPTO_SEAL_OVERHEAD) return SP_ERR_VALIDATION_FAILED;
    size_t n = len - SPCRYPTO_SEAL_OVERHEAD;
    uint8_t tag[GCM_TAG];
    memcpy(tag, sealed + GCM_NONCE + n, GCM_TAG);
    sp_status s = gcm(false, out, key, sealed, sealed + GCM_NONCE, n, aad, aadlen, tag);
    if (s != SP_OK) memset(out, 0, n);
    return s;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long spcrypto_hex_decode(uint8_t *out, size_t outcap, const char *in, size_t len)
{
    if (len % 2 != 0 || len / 2 > outcap) return -1;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return (long)(len / 2);
}
