/* spcrypto.h -- argon2id, SHA-256, HMAC-SHA256, secure random, UUID v4/v5, constant-time
 * compare, base64url and hex. Prefix: spcrypto_. */
#ifndef SPCRYPTO_H
#define SPCRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spcore.h"

#define SPCRYPTO_HASH_LEN 128 /* room for an encoded argon2id hash */
#define SPCRYPTO_UUID_LEN 37  /* 36 characters and NUL */

/* argon2id, m = 19 MiB, t = 2, p = 1, 16-byte random salt; writes the PHC-encoded hash
 * ("$argon2id$v=19$m=19456,t=2,p=1$...") into out (SPCRYPTO_HASH_LEN). */
sp_status spcrypto_password_hash(char *out, size_t outlen, const char *password, size_t len);
/* true when password matches the encoded hash. */
bool spcrypto_password_verify(const char *encoded, const char *password, size_t len);

void spcrypto_sha256(uint8_t out[32], const void *data, size_t len);
void spcrypto_hmac_sha256(uint8_t out[32], const void *key, size_t keylen, const void *data,
                          size_t len);
/* Cryptographically secure random bytes (OpenSSL RAND_bytes); aborts if it fails. */
void spcrypto_random(void *buf, size_t len);
bool spcrypto_ct_equal(const void *a, const void *b, size_t len);

/* Lower-case canonical form "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx". */
void spcrypto_uuid_v4(char out[SPCRYPTO_UUID_LEN]);
/* RFC 9562 UUIDv5 of 'name' in namespace 'ns' (canonical text). SP_ERR_VALIDATION_FAILED
 * when ns is not a UUID. */
sp_status spcrypto_uuid_v5(char out[SPCRYPTO_UUID_LEN], const char *ns, const void *name,
                           size_t len);
/* Accepts canonical 36-character UUIDs, either letter case. */
bool spcrypto_uuid_valid(const char *s);

/* base64url without padding; out needs 4*ceil(len/3)+1 bytes. Returns the length. */
size_t spcrypto_b64url_encode(char *out, const void *data, size_t len);
/* Decodes unpadded base64url; returns the length or -1 on bad input / too small out. */
long spcrypto_b64url_decode(uint8_t *out, size_t outcap, const char *in, size_t len);
/* AES-256-GCM with a random 96-bit nonce: sealed = nonce (12) || ciphertext || tag (16),
 * SPCRYPTO_SEAL_OVERHEAD bytes longer than the plaintext. 'aad' (may be NULL) is
 * authenticated, not stored: open must be given the same (a row's own id, so that a sealed
 * value cannot be moved to another row). */
#define SPCRYPTO_SEAL_KEY_LEN 32
#define SPCRYPTO_SEAL_OVERHEAD 28
sp_status spcrypto_seal(uint8_t *out, const uint8_t key[SPCRYPTO_SEAL_KEY_LEN], const void *plain,
                        size_t len, const void *aad, size_t aadlen);
/* Opens what spcrypto_seal made into out (len - SPCRYPTO_SEAL_OVERHEAD bytes):
 * SP_ERR_VALIDATION_FAILED when the key, the aad or a byte of 'sealed' differs. */
sp_status spcrypto_open(uint8_t *out, const uint8_t key[SPCRYPTO_SEAL_KEY_LEN],
                        const uint8_t *sealed, size_t len, const void *aad, size_t aadlen);
/* Decodes hex (either case) into out; the length, or -1 on bad input / too small out. */
long spcrypto_hex_decode(uint8_t *out, size_t outcap, const char *in, size_t len);

/* Lower-case hex; out needs 2*len+1 bytes. */
void spcrypto_hex(char *out, const void *data, size_t len);

#endif
