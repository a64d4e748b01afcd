/* fuzz_spjwt.c -- libFuzzer target: spjwt_verify must never crash, whatever the token.
 * The first input byte chooses how the rest becomes a token, so that the fuzzer also gets
 * past the header check and the signature:
 *   0: the rest is the token as is;
 *   1: a valid header segment ("." included) followed by the rest;
 *   2: the rest is the payload JSON, under a valid header, correctly signed (HS256 with
 *      the test key): exercises the claim checks;
 *   3: the rest is the header JSON, over a valid payload, correctly signed: exercises the
 *      header check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spcrypto.h"
#include "spjwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char key[] = "fuzz-key-0123456789abcdef0123456789abcdef";
static const char valid_header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
static const char valid_payload[] =
    "{\"iss\":\"smartpark\",\"aud\":\"smartpark-api\",\"sub\":\"u1\",\"role\":\"app_user\","
    "\"jti\":\"j1\",\"sid\":\"s1\",\"iat\":1760000000,\"exp\":1760000900}";
#define NOW INT64_C(1760000100)

/* base64url(header) "." base64url(payload) "." base64url(HMAC-SHA256), malloc'd. */
static char *signed_token(const void *hdr, size_t hlen, const void *pl, size_t plen)
{
    size_t cap = 4 * ((hlen + 2) / 3) + 4 * ((plen + 2) / 3) + 4 * ((32 + 2) / 3) + 4;
    char *t = malloc(cap);
    if (t == NULL) return NULL;
    size_t n = spcrypto_b64url_encode(t, hdr, hlen);
    t[n++] = '.';
    n += spcrypto_b64url_encode(t + n, pl, plen);
    uint8_t mac[32];
    spcrypto_hmac_sha256(mac, key, sizeof key - 1, t, n);
    t[n++] = '.';
    n += spcrypto_b64url_encode(t + n, mac, sizeof mac);
    t[n] = '\0';
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    unsigned mode = data[0] % 4;
    const uint8_t *rest = data + 1;
    size_t rlen = size - 1;
    char *token = NULL;

    if (mode == 2) {
        token = signed_token(valid_header, sizeof valid_header - 1, rest, rlen);
    } else if (mode == 3) {
        token = signed_token(rest, rlen, valid_payload, sizeof valid_payload - 1);
    } else {
        char prefix[64] = "";
        if (mode == 1) {
            size_t n = spcrypto_b64url_encode(prefix, valid_header, sizeof valid_header - 1);
            prefix[n++] = '.';
            prefix[n] = '\0';
        }
        size_t plen = strlen(prefix);
        token = malloc(plen + rlen + 1);
        if (token != NULL) {
            memcpy(token, prefix, plen);
            memcpy(token + plen, rest, rlen);
            token[plen + rlen] = '\0';
        }
    }
    if (token == NULL) return 0;

    spjwt_keys keys = {.key = (const uint8_t *)key,
                       .keylen = sizeof key - 1,
                       .issuer = "smartpark",
                       .audience = "smartpark-api",
                       .leeway_s = 30};
    spjwt_claims c;
    sp_status s = spjwt_verify(&c, &keys, token, NOW);
    if (s == SP_OK) {
        /* Claims handed out are NUL-terminated and the required ones present. */
        if (c.sub[0] == '\0' || c.role[0] == '\0' || c.jti[0] == '\0' || c.sid[0] == '\0' ||
            strnlen(c.sub, sizeof c.sub) == sizeof c.sub ||
            strnlen(c.role, sizeof c.role) == sizeof c.role ||
            strnlen(c.client_id, sizeof c.client_id) == sizeof c.client_id ||
            strnlen(c.client_role, sizeof c.client_role) == sizeof c.client_role ||
            strnlen(c.jti, sizeof c.jti) == sizeof c.jti ||
            strnlen(c.sid, sizeof c.sid) == sizeof c.sid || c.exp <= NOW - keys.leeway_s)
            abort();
    } else if (s != SP_ERR_INVALID_TOKEN && s != SP_ERR_TOKEN_EXPIRED) {
        abort();
    }
    free(token);
    return 0;
}
