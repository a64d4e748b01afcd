/* test_spcrypto.c -- unit tests of spcrypto against published vectors (NIST SHA-256,
 * RFC 4231 HMAC-SHA256, RFC 9562 UUIDv5, RFC 4648 base64) and its own contracts. */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spcrypto.h"

/* Hex of a 32-byte digest, for readable assertions. */
static void hex32(char out[65], const uint8_t d[32])
{
    spcrypto_hex(out, d, 32);
}

/* ---- SHA-256 (NIST FIPS 180-2 examples) ------------------------------------------------ */

START_TEST(sha256_abc)
{
    uint8_t d[32];
    char h[65];
    spcrypto_sha256(d, "abc", 3);
    hex32(h, d);
    ck_assert_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(sha256_empty)
{
    uint8_t d[32];
    char h[65];
    spcrypto_sha256(d, "", 0);
    hex32(h, d);
    ck_assert_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}
END_TEST

START_TEST(sha256_448_bit_message)
{
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    uint8_t d[32];
    char h[65];
    spcrypto_sha256(d, m, strlen(m));
    hex32(h, d);
    ck_assert_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
END_TEST

/* ---- HMAC-SHA256 (RFC 4231 test cases 1-4, 6, 7) -------------------------------------- */

static const char tc6_data[] = "Test Using Larger Than Block-Size Key - Hash Key First";
static const char tc7_data[] =
    "This is a test using a larger than block-size key and a larger than block-size data. "
    "The key needs to be hashed before being used by the HMAC algorithm.";

/* Fills key/data for RFC 4231 case 'tc' and returns the expected HMAC-SHA256 in hex. */
static const char *rfc4231_case(int tc, uint8_t *key, size_t *keylen, uint8_t *data,
                                size_t *datalen)
{
    switch (tc) {
    case 1:
        memset(key, 0x0b, *keylen = 20);
        memcpy(data, "Hi There", *datalen = 8);
        return "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
    case 2:
        memcpy(key, "Jefe", *keylen = 4);
        memcpy(data, "what do ya want for nothing?", *datalen = 28);
        return "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    case 3:
        memset(key, 0xaa, *keylen = 20);
        memset(data, 0xdd, *datalen = 50);
        return "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe";
    case 4:
        for (int i = 0; i < 25; i++)
            key[i] = (uint8_t)(i + 1);
        *keylen = 25;
        memset(data, 0xcd, *datalen = 50);
        return "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b";
    case 6:
        memset(key, 0xaa, *keylen = 131);
        memcpy(data, tc6_data, *datalen = strlen(tc6_data));
        return "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54";
    default: /* 7 */
        memset(key, 0xaa, *keylen = 131);
        memcpy(data, tc7_data, *datalen = strlen(tc7_data));
        return "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2";
    }
}

static const int rfc4231_cases[] = {1, 2, 3, 4, 6, 7};

/* Loop test: _i indexes rfc4231_cases, so each case passes or fails on its own. */
START_TEST(hmac_sha256_rfc4231)
{
    uint8_t key[131], data[200], mac[32];
    size_t keylen = 0, datalen = 0;
    char h[65];
    const char *want = rfc4231_case(rfc4231_cases[_i], key, &keylen, data, &datalen);

    spcrypto_hmac_sha256(mac, key, keylen, data, datalen);
    hex32(h, mac);
    ck_assert_msg(strcmp(h, want) == 0, "RFC 4231 case %d: got %s", rfc4231_cases[_i], h);
}
END_TEST

/* The per-thread keyed context must never carry one key's state into another call: keys
 * alternating on one thread, from several threads at once, and the uncached lengths (empty,
 * over 256 bytes) all give OpenSSL's one-shot HMAC(). */
static void *hmac_round(void *arg)
{
    (void)arg;
    uint8_t key[300], data[64], mac[32], want[32];
    unsigned int n = 0;
    static const size_t lens[] = {20, 4, 20, 0, 1, 256, 257, 300, 4, 32};
    for (int r = 0; r < 200; r++) {
        size_t kl = lens[r % (sizeof lens / sizeof lens[0])];
        for (size_t i = 0; i < kl; i++)
            key[i] = (uint8_t)(i * 7 + (size_t)r % 3);
        memset(data, r, sizeof data);
        spcrypto_hmac_sha256(mac, key, kl, data, (size_t)r % sizeof data);
        if (HMAC(EVP_sha256(), kl ? key : data, (int)kl, data, (size_t)r % sizeof data, want, &n) ==
                NULL ||
            n != 32 || memcmp(mac, want, 32) != 0)
            return (void *)1;
    }
    return NULL;
}

START_TEST(hmac_sha256_keys_alternate_and_threads_agree)
{
    ck_assert_ptr_null(hmac_round(NULL));
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hmac_round, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *rc = (void *)1;
        pthread_join(th[i], &rc);
        ck_assert_ptr_null(rc);
    }
}
END_TEST

/* ---- random and ct_equal --------------------------------------------------------------- */

START_TEST(random_fills_and_differs)
{
    uint8_t a[32], b[32], zero[32] = {0};
    spcrypto_random(a, sizeof a);
    spcrypto_random(b, sizeof b);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    ck_assert(memcmp(a, zero, sizeof a) != 0);
}
END_TEST

START_TEST(ct_equal_compares)
{
    uint8_t a[40], b[40];
    spcrypto_random(a, sizeof a);
    memcpy(b, a, sizeof a);
    ck_assert(spcrypto_ct_equal(a, b, sizeof a));
    b[39] ^= 0x01;
    ck_assert(!spcrypto_ct_equal(a, b, sizeof a));
    b[39] ^= 0x01;
    b[0] ^= 0x80;
    ck_assert(!spcrypto_ct_equal(a, b, sizeof a));
    ck_assert(spcrypto_ct_equal(a, b, 0));
    ck_assert(spcrypto_ct_equal(a + 1, b + 1, sizeof a - 1));
}
END_TEST

/* ---- UUIDs ----------------------------------------------------------------------------- */

#define NS_DNS "6ba7b810-9dad-11d1-80b4-00c04fd430c8"

START_TEST(uuid_v5_rfc9562_example)
{
    char u[SPCRYPTO_UUID_LEN];
    ck_assert_int_eq(spcrypto_uuid_v5(u, NS_DNS, "www.example.com", 15), SP_OK);
    ck_assert_str_eq(u, "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}
END_TEST

START_TEST(uuid_v5_namespace_case_does_not_matter)
{
    char u[SPCRYPTO_UUID_LEN];
    ck_assert_int_eq(
        spcrypto_uuid_v5(u, "6BA7B810-9DAD-11D1-80B4-00C04FD430C8", "www.example.com", 15), SP_OK);
    ck_assert_str_eq(u, "2ed6657d-e927-568b-95e1-2665a8aea6a2");
}
END_TEST

START_TEST(uuid_v5_differs_by_name_and_namespace)
{
    char a[SPCRYPTO_UUID_LEN], b[SPCRYPTO_UUID_LEN], c[SPCRYPTO_UUID_LEN];
    ck_assert_int_eq(spcrypto_uuid_v5(a, NS_DNS, "www.example.com", 15), SP_OK);
    ck_assert_int_eq(spcrypto_uuid_v5(b, NS_DNS, "www.example.org", 15), SP_OK);
    ck_assert_int_eq(
        spcrypto_uuid_v5(c, "6ba7b811-9dad-11d1-80b4-00c04fd430c8", "www.example.com", 15), SP_OK);
    ck_assert_str_ne(a, b);
    ck_assert_str_ne(a, c);
    ck_assert_int_eq(b[14], '5');
    ck_assert(strchr("89ab", b[19]) != NULL);
}
END_TEST

START_TEST(uuid_v5_rejects_bad_namespace)
{
    char u[SPCRYPTO_UUID_LEN];
    ck_assert_int_eq(spcrypto_uuid_v5(u, "not-a-uuid", "x", 1), SP_ERR_VALIDATION_FAILED);
    ck_assert_int_eq(spcrypto_uuid_v5(u, "{" NS_DNS "}", "x", 1), SP_ERR_VALIDATION_FAILED);
    ck_assert_int_eq(spcrypto_uuid_v5(u, NULL, "x", 1), SP_ERR_VALIDATION_FAILED);
}
END_TEST

START_TEST(uuid_v4_shape_version_variant)
{
    for (int n = 0; n < 200; n++) {
        char u[SPCRYPTO_UUID_LEN];
        spcrypto_uuid_v4(u);
        ck_assert_uint_eq(strlen(u), 36);
        ck_assert(spcrypto_uuid_valid(u));
        for (int i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                ck_assert_int_eq(u[i], '-');
            else
                ck_assert_msg(strchr("0123456789abcdef", u[i]) != NULL, "not lower hex: %s", u);
        }
        ck_assert_int_eq(u[14], '4');
        ck_assert_msg(strchr("89ab", u[19]) != NULL, "variant of %s", u);
    }
}
END_TEST

static int cmp_uuid(const void *a, const void *b)
{
    return strcmp(a, b);
}

START_TEST(uuid_v4_unique)
{
    enum { N = 2000 };
    char(*u)[SPCRYPTO_UUID_LEN] = malloc(N * sizeof *u);
    ck_assert_ptr_nonnull(u);
    for (int i = 0; i < N; i++)
        spcrypto_uuid_v4(u[i]);
    qsort(u, N, sizeof *u, cmp_uuid);
    for (int i = 1; i < N; i++)
        ck_assert_str_ne(u[i - 1], u[i]);
    free(u);
}
END_TEST

START_TEST(uuid_valid_accepts_canonical_either_case)
{
    ck_assert(spcrypto_uuid_valid(NS_DNS));
    ck_assert(spcrypto_uuid_valid("6BA7B810-9DAD-11D1-80B4-00C04FD430C8"));
    ck_assert(spcrypto_uuid_valid("00000000-0000-0000-0000-000000000000"));
}
END_TEST

START_TEST(uuid_valid_rejects_other_forms)
{
    ck_assert(!spcrypto_uuid_valid(NULL));
    ck_assert(!spcrypto_uuid_valid(""));
    ck_assert(!spcrypto_uuid_valid("6ba7b810-9dad-11d1-80b4-00c04fd430c"));   /* 35 */
    ck_assert(!spcrypto_uuid_valid("6ba7b810-9dad-11d1-80b4-00c04fd430c8a")); /* 37 */
    ck_assert(!spcrypto_uuid_valid("6ba7b8109dad11d180b400c04fd430c8"));      /* no dashes */
    ck_assert(!spcrypto_uuid_valid("{6ba7b810-9dad-11d1-80b4-00c04fd430c8}"));
    ck_assert(!spcrypto_uuid_valid("6ba7b810-9dad-11d1-80b4-00c04fd430cg"));
    ck_assert(!spcrypto_uuid_valid("6ba7b810-9dad-11d1-80b4_00c04fd430c8"));
    ck_assert(!spcrypto_uuid_valid(" 6ba7b810-9dad-11d1-80b4-00c04fd430c8"));
    ck_assert(!spcrypto_uuid_valid("6ba7b810-9dad-11d1-80b4-00c04fd430c8\n"));
}
END_TEST

/* ---- passwords ------------------------------------------------------------------------- */

START_TEST(password_hash_then_verify)
{
    char h[SPCRYPTO_HASH_LEN];
    const char *pw = "correct horse battery staple";
    ck_assert_int_eq(spcrypto_password_hash(h, sizeof h, pw, strlen(pw)), SP_OK);
    ck_assert(spcrypto_password_verify(h, pw, strlen(pw)));
    ck_assert(!spcrypto_password_verify(h, "correct horse battery stapler", 29));
    ck_assert(!spcrypto_password_verify(h, "Correct horse battery staple", strlen(pw)));
    ck_assert(!spcrypto_password_verify(h, "", 0));
}
END_TEST

START_TEST(password_hash_uses_owasp_parameters)
{
    char h[SPCRYPTO_HASH_LEN];
    ck_assert_int_eq(spcrypto_password_hash(h, sizeof h, "pw", 2), SP_OK);
    const char *prefix = "$argon2id$v=19$m=19456,t=2,p=1$";
    ck_assert_msg(strncmp(h, prefix, strlen(prefix)) == 0, "got %s", h);
    /* "$salt$hash": 16-byte salt is 22 base64 characters, 32-byte hash 43. */
    const char *salt = h + strlen(prefix);
    const char *dollar = strchr(salt, '$');
    ck_assert_ptr_nonnull(dollar);
    ck_assert_int_eq(dollar - salt, 22);
    ck_assert_uint_eq(strlen(dollar + 1), 43);
}
END_TEST

START_TEST(password_hash_salts_each_time)
{
    char a[SPCRYPTO_HASH_LEN], b[SPCRYPTO_HASH_LEN];
    ck_assert_int_eq(spcrypto_password_hash(a, sizeof a, "same", 4), SP_OK);
    ck_assert_int_eq(spcrypto_password_hash(b, sizeof b, "same", 4), SP_OK);
    ck_assert_str_ne(a, b);
    ck_assert(spcrypto_password_verify(a, "same", 4));
    ck_assert(spcrypto_password_verify(b, "same", 4));
}
END_TEST

START_TEST(password_hash_refuses_small_buffer)
{
    char h[40];
    ck_assert_int_ne(spcrypto_password_hash(h, sizeof h, "pw", 2), SP_OK);
    ck_assert_str_eq(h, "");
}
END_TEST

START_TEST(password_verify_rejects_malformed_hashes)
{
    char h[SPCRYPTO_HASH_LEN];
    ck_assert_int_eq(spcrypto_password_hash(h, sizeof h, "pw", 2), SP_OK);
    ck_assert(!spcrypto_password_verify(NULL, "pw", 2));
    ck_assert(!spcrypto_password_verify("", "pw", 2));
    ck_assert(!spcrypto_password_verify("pw", "pw", 2));
    /* The same string claiming to be argon2i is not accepted as argon2id. */
    char other[SPCRYPTO_HASH_LEN];
    snprintf(other, sizeof other, "$argon2i$%s", h + strlen("$argon2id$"));
    ck_assert(!spcrypto_password_verify(other, "pw", 2));
    /* Truncated hash. */
    h[strlen(h) - 5] = '\0';
    ck_assert(!spcrypto_password_verify(h, "pw", 2));
}
END_TEST

/* ---- base64url and hex ----------------------------------------------------------------- */

START_TEST(b64url_rfc4648_vectors)
{
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char e[16];
        uint8_t d[16];
        size_t n = spcrypto_b64url_encode(e, in[i], strlen(in[i]));
        ck_assert_str_eq(e, out[i]);
        ck_assert_uint_eq(n, strlen(out[i]));
        long m = spcrypto_b64url_decode(d, sizeof d, out[i], strlen(out[i]));
        ck_assert_int_eq(m, (long)strlen(in[i]));
        ck_assert(memcmp(d, in[i], (size_t)m) == 0);
    }
}
END_TEST

START_TEST(b64url_uses_url_alphabet)
{
    const uint8_t raw[] = {0xfb, 0xff, 0xbf};
    char e[8];
    uint8_t d[4];
    ck_assert_uint_eq(spcrypto_b64url_encode(e, raw, 3), 4);
    ck_assert_str_eq(e, "-_-_");
    ck_assert_uint_eq(spcrypto_b64url_encode(e, raw, 2), 3);
    ck_assert_str_eq(e, "-_8");
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "-_-_", 4), 3);
    ck_assert(memcmp(d, raw, 3) == 0);
}
END_TEST

START_TEST(b64url_round_trips_random_data)
{
    uint8_t raw[3000], back[3000];
    char enc[4 * 1000 + 1];
    for (size_t len = 0; len <= 70; len++) {
        spcrypto_random(raw, len);
        size_t n = spcrypto_b64url_encode(enc, raw, len);
        ck_assert_uint_eq(n, (len * 4 + 2) / 3);
        ck_assert_int_eq(spcrypto_b64url_decode(back, len, enc, n), (long)len);
        ck_assert(memcmp(raw, back, len) == 0);
    }
    /* Longer than one internal decode block. */
    spcrypto_random(raw, sizeof raw);
    size_t n = spcrypto_b64url_encode(enc, raw, sizeof raw);
    ck_assert_uint_eq(n, 4000);
    ck_assert_int_eq(spcrypto_b64url_decode(back, sizeof back, enc, n), (long)sizeof raw);
    ck_assert(memcmp(raw, back, sizeof raw) == 0);
}
END_TEST

START_TEST(b64url_decode_rejects_bad_input)
{
    uint8_t d[32];
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zg==", 4), -1); /* padding */
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zm9+", 4), -1); /* '+' */
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zm9/", 4), -1); /* '/' */
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zm 9v", 5), -1);
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zm9v\n", 5), -1);
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zm9vY", 5), -1); /* len % 4 == 1 */
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zh", 2), -1);    /* stray bits */
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zm9", 3), -1);
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zm\0v", 4), -1);
    ck_assert_int_eq(spcrypto_b64url_decode(d, sizeof d, "Zm8", 3), 2); /* canonical */
}
END_TEST

START_TEST(b64url_decode_rejects_small_buffer)
{
    uint8_t d[8];
    ck_assert_int_eq(spcrypto_b64url_decode(d, 5, "Zm9vYmFy", 8), -1);
    ck_assert_int_eq(spcrypto_b64url_decode(d, 6, "Zm9vYmFy", 8), 6);
    ck_assert_int_eq(spcrypto_b64url_decode(d, 1, "Zm8", 3), -1);
}
END_TEST

START_TEST(hex_lower_case)
{
    const uint8_t raw[] = {0x00, 0x01, 0xab, 0xcd, 0xef, 0xff};
    char h[13];
    spcrypto_hex(h, raw, sizeof raw);
    ck_assert_str_eq(h, "0001abcdefff");
    spcrypto_hex(h, raw, 0);
    ck_assert_str_eq(h, "");
}
END_TEST

/* ---- AES-256-GCM ---------------------------------------------------------------------------- */

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test case 14: K = 0^256,
 * IV = 0^96, P = 0^128; and test case 13 (P empty): sealed as nonce || C || T. */
START_TEST(open_reads_the_gcm_spec_vectors)
{
    uint8_t key[32] = {0}, sealed[12 + 16 + 16], out[16];
    memset(sealed, 0, 12);
    ck_assert_int_eq(spcrypto_hex_decode(sealed + 12, 32,
                                         "cea7403d4d606b6e074ec5d3baf39d18"
                                         "d0d1c8a799996bf0265b98b5d48ab919",
                                         64),
                     32);
    ck_assert_int_eq(spcrypto_open(out, key, sealed, sizeof(sealed), NULL, 0), SP_OK);
    static const uint8_t zero[16] = {0};
    ck_assert_mem_eq(out, zero, 16);
    uint8_t empty[28] = {0};
    ck_assert_int_eq(spcrypto_hex_decode(empty + 12, 16, "530f8afbc74536b9a963b4f1c4cb738b", 32),
                     16);
    ck_assert_int_eq(spcrypto_open(out, key, empty, sizeof(empty), NULL, 0), SP_OK);
}
END_TEST

START_TEST(seal_then_open_round_trips_and_refuses_any_change)
{
    uint8_t key[32], other[32], plain[43], sealed[43 + SPCRYPTO_SEAL_OVERHEAD], out[43];
    spcrypto_random(key, sizeof(key));
    spcrypto_random(other, sizeof(other));
    spcrypto_random(plain, sizeof(plain));
    ck_assert_int_eq(spcrypto_seal(sealed, key, plain, sizeof(plain), "row-1", 5), SP_OK);
    ck_assert_int_eq(spcrypto_open(out, key, sealed, sizeof(sealed), "row-1", 5), SP_OK);
    ck_assert_mem_eq(out, plain, sizeof(plain));
    /* the ciphertext does not hold the plaintext */
    ck_assert(memmem(sealed, sizeof(sealed), plain, 8) == NULL);
    ck_assert_int_eq(spcrypto_open(out, other, sealed, sizeof(sealed), "row-1", 5),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_int_eq(spcrypto_open(out, key, sealed, sizeof(sealed), "row-2", 5),
                     SP_ERR_VALIDATION_FAILED);
    for (size_t i = 0; i < sizeof(sealed); i++) {
        sealed[i] ^= 0x01;
        ck_assert_int_eq(spcrypto_open(out, key, sealed, sizeof(sealed), "row-1", 5),
                         SP_ERR_VALIDATION_FAILED);
        sealed[i] ^= 0x01;
    }
    ck_assert_int_eq(spcrypto_open(out, key, sealed, SPCRYPTO_SEAL_OVERHEAD - 1, NULL, 0),
                     SP_ERR_VALIDATION_FAILED);
    /* a fresh nonce each time */
    uint8_t again[sizeof(sealed)];
    ck_assert_int_eq(spcrypto_seal(again, key, plain, sizeof(plain), "row-1", 5), SP_OK);
    ck_assert(memcmp(again, sealed, sizeof(sealed)) != 0);
}
END_TEST

START_TEST(hex_decode_round_trips_and_rejects_bad_input)
{
    uint8_t b[4];
    char h[9];
    ck_assert_int_eq(spcrypto_hex_decode(b, sizeof(b), "00fFa9", 6), 3);
    spcrypto_hex(h, b, 3);
    ck_assert_str_eq(h, "00ffa9");
    ck_assert_int_eq(spcrypto_hex_decode(b, sizeof(b), "abc", 3), -1);
    ck_assert_int_eq(spcrypto_hex_decode(b, sizeof(b), "zz", 2), -1);
    ck_assert_int_eq(spcrypto_hex_decode(b, 2, "001122", 6), -1);
}
END_TEST

static Suite *spcrypto_suite(void)
{
    Suite *s = suite_create("spcrypto");
    TCase *t = tcase_create("digests");
    tcase_add_test(t, sha256_abc);
    tcase_add_test(t, sha256_empty);
    tcase_add_test(t, sha256_448_bit_message);
    tcase_add_loop_test(t, hmac_sha256_rfc4231, 0,
                        (int)(sizeof rfc4231_cases / sizeof rfc4231_cases[0]));
    tcase_add_test(t, hmac_sha256_keys_alternate_and_threads_agree);
    tcase_add_test(t, random_fills_and_differs);
    tcase_add_test(t, ct_equal_compares);
    suite_add_tcase(s, t);

    t = tcase_create("uuid");
    tcase_add_test(t, uuid_v5_rfc9562_example);
    tcase_add_test(t, uuid_v5_namespace_case_does_not_matter);
    tcase_add_test(t, uuid_v5_differs_by_name_and_namespace);
    tcase_add_test(t, uuid_v5_rejects_bad_namespace);
    tcase_add_test(t, uuid_v4_shape_version_variant);
    tcase_add_test(t, uuid_v4_unique);
    tcase_add_test(t, uuid_valid_accepts_canonical_either_case);
    tcase_add_test(t, uuid_valid_rejects_other_forms);
    suite_add_tcase(s, t);

    t = tcase_create("password");
    tcase_set_timeout(t, 60); /* argon2id at 19 MiB under the sanitizers */
    tcase_add_test(t, password_hash_then_verify);
    tcase_add_test(t, password_hash_uses_owasp_parameters);
    tcase_add_test(t, password_hash_salts_each_time);
    tcase_add_test(t, password_hash_refuses_small_buffer);
    tcase_add_test(t, password_verify_rejects_malformed_hashes);
    suite_add_tcase(s, t);

    t = tcase_create("encoding");
    tcase_add_test(t, b64url_rfc4648_vectors);
    tcase_add_test(t, b64url_uses_url_alphabet);
    tcase_add_test(t, b64url_round_trips_random_data);
    tcase_add_test(t, b64url_decode_rejects_bad_input);
    tcase_add_test(t, b64url_decode_rejects_small_buffer);
    tcase_add_test(t, hex_lower_case);
    tcase_add_test(t, hex_decode_round_trips_and_rejects_bad_input);
    suite_add_tcase(s, t);

    t = tcase_create("seal");
    tcase_add_test(t, open_reads_the_gcm_spec_vectors);
    tcase_add_test(t, seal_then_open_round_trips_and_refuses_any_change);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(spcrypto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
