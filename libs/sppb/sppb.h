/* sppb.h -- JSON <-> protobuf-c messages, driven by the message descriptors, written once
 * for every route (pitfalls.md). JSON names are the lowerCamelCase of the snake_case
 * field names. Conventions of our .proto files:
 *  - int64 fields named at, from, to or *_at are times in microseconds: RFC 3339 strings
 *    in JSON ("2025-09-12T15:10:04.120Z" out; up to microseconds and offsets in);
 *  - string fields named *_json hold JSON text, written as that value without the suffix
 *    ("details_json": "{...}" -> "details": {...}); in input, any JSON value under the
 *    name without the suffix is kept as its compact text, for the service to check;
 *  - a message field named *_inline inside a oneof is written as the fields of the chosen
 *    message, in place (an answer that is one of two shapes: a slot or {"items":[...]});
 *    output only;
 *  - other int64/uint64 are JSON numbers (integral, within +-2^53);
 *  - proto2 'optional' fields not set are written as null; null in input leaves unset;
 *  - repeated -> arrays, nested messages -> objects, enums -> their names, bytes ->
 *    base64url strings, bool -> true/false.
 * Prefix: sppb_. */
#ifndef SPPB_H
#define SPPB_H

#include <cjson/cJSON.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "spcore.h"

#define SPPB_MAX_ERRORS 16

typedef struct {
    size_t n;
    struct {
        char path[128];   /* "email", "items[3].status" */
        char reason[128]; /* "unknown field", "must be a string", "out of range" */
    } e[SPPB_MAX_ERRORS];
} sppb_errors;

enum {
    SPPB_STRICT = 0,           /* unknown fields are errors */
    SPPB_FROM_QUERY = 1u << 0, /* values are strings (query parameters): numbers and bools
                                  are parsed from them */
    SPPB_NO_NULL = 1u << 1     /* null for a field is an error ("must not be null") instead
                                  of leaving it unset: for bodies where no field may be
                                  cleared, so that {"name":null} is not taken for {} */
};

/* Builds a message of 'desc' from a JSON object. Every allocation is in 'arena'
 * (the message dies with it). Type mismatches, unknown fields, out-of-range numbers:
 * SP_ERR_VALIDATION_FAILED with one entry per bad field in errs. 'json' must be an
 * object (else SP_ERR_VALIDATION_FAILED with path ""). */
sp_status sppb_from_json(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
                         const cJSON *json, unsigned flags, sp_arena *arena, sppb_errors *errs);

/* The JSON object of a message; caller frees with cJSON_Delete. NULL only on OOM. */
cJSON *sppb_to_json(const ProtobufCMessage *msg);

/* "created_at" -> "createdAt"; out at least strlen(in)+1. */
void sppb_camel(char *out, size_t outlen, const char *snake);

/* ---- JSON Schema (2020-12) of the same conversion, for the OpenAPI document ---------- */

/* The $ref of a nested message's schema ("#/components/schemas/Client"), or NULL when
 * there is none (the schema is then a bare {"type":"object"}). 'output': for what
 * sppb_to_json writes (else for what sppb_from_json reads). */
typedef const char *(*sppb_schema_ref_fn)(const ProtobufCMessageDescriptor *desc, bool output,
                                          void *user);

/* The JSON name of field 'f' as sppb writes it ("details_json" -> "details") into out. */
void sppb_field_json_name(char *out, size_t outlen, const ProtobufCFieldDescriptor *f);

/* The schema of one field's JSON value, never null (an array for a repeated field; nested
 * messages through 'ref'); NULL only on OOM. Times are RFC 3339 date-times, *_json
 * fields any JSON value, enums their names, bytes base64url, int32 and uint32 their range. */
cJSON *sppb_field_schema(const ProtobufCFieldDescriptor *f, bool output, sppb_schema_ref_fn ref,
                         void *user);

/* Whether sppb_to_json can write null for 'f' (an optional field not set). */
bool sppb_field_nullable(const ProtobufCFieldDescriptor *f);

/* Whether 'f' is a oneof member written in place (*_inline). */
bool sppb_field_inline(const ProtobufCFieldDescriptor *f);

/* Whether sppb_to_json always writes 'f' (every field but the unchosen members of a oneof). */
bool sppb_field_always_written(const ProtobufCFieldDescriptor *f);

#endif
