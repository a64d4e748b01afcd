/* spjson.h -- strict JSON over cJSON 1.7.15: everything cJSON lets through and an API must
 * refuse (pitfalls.md): trailing garbage, invalid UTF-8, \u0000, non-finite and out-of-range
 * numbers, leading zeros, duplicate keys, excessive depth. Prefix: spjson_. */
#ifndef SPJSON_H
#define SPJSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spcore.h"

#define SPJSON_DEFAULT_DEPTH 32

/* Parses buf[0..len) (need not be NUL-terminated) strictly: RFC 8259 grammar, valid UTF-8
 * (no overlongs, no surrogates encoded in UTF-8, no lone \uD800-\uDFFF escapes), no
 * \u0000, numbers finite and without leading zeros, nesting at most max_depth, no
 * duplicate key in any object, nothing after the value but whitespace.
 * SP_OK with *out (caller frees with cJSON_Delete); else SP_ERR_MALFORMED_JSON with a
 * one-line reason in err ("duplicate key 'email' at byte 31"). */
sp_status spjson_parse(cJSON **out, const char *buf, size_t len, int max_depth, char *err,
                       size_t errlen);

/* Case-sensitive member lookup (cJSON_GetObjectItem ignores case). */
cJSON *spjson_get(const cJSON *obj, const char *key);

/* An integral number in [min, max] (checked on valuedouble, not the saturated valueint). */
bool spjson_int_in(const cJSON *v, int64_t min, int64_t max, int64_t *out);

/* Number of Unicode code points of a valid UTF-8 string. */
size_t spjson_utf8_len(const char *s);
bool spjson_utf8_valid(const char *s, size_t len);

#endif
