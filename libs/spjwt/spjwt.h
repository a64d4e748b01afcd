/* spjwt.h -- access tokens: HS256 signing and strict verification over libjwt 1.10
 * (algorithm pinned, key of at least 32 bytes, exp/nbf/iat/iss/aud checked). Prefix: spjwt_. */
#ifndef SPJWT_H
#define SPJWT_H

#include <stddef.h>
#include <stdint.h>

#include "spcore.h"

#define SPJWT_MIN_KEY 32
#define SPJWT_MAX_TOKEN 4096

typedef struct {
    char sub[64];         /* user public id */
    char role[24];        /* admin | client_admin | app_user */
    char client_id[64];   /* "" when none */
    char client_role[24]; /* "" when none */
    char jti[64];
    char sid[64];         /* session id */
    int64_t iat, nbf, exp; /* seconds since the epoch; nbf 0 = absent */
} spjwt_claims;

typedef struct {
    const uint8_t *key;
    size_t keylen;        /* >= SPJWT_MIN_KEY, else every call fails */
    const char *issuer;   /* "smartpark" */
    const char *audience; /* "smartpark-api" */
    int leeway_s;         /* clock skew allowed on exp/nbf/iat */
} spjwt_keys;

/* Signs HS256 with iss/aud from keys; *out malloc'd, caller frees. */
sp_status spjwt_sign(char **out, const spjwt_keys *k, const spjwt_claims *c);
/* Verifies 'token' at time 'now' (seconds). Returns SP_OK with *c filled, SP_ERR_TOKEN_EXPIRED
 * for a valid but expired token, SP_ERR_INVALID_TOKEN for anything else (bad signature,
 * other algorithm including none in any case, missing or wrong claim, oversize). */
sp_status spjwt_verify(spjwt_claims *c, const spjwt_keys *k, const char *token, int64_t now);

#endif
