/* sppb.h -- JSON <-> protobuf-c messages, driven by the message descriptors, written once
 * for every route (pitfalls.md). JSON names are the lowerCamelCase of the snake_case
 * field names. Conventions of our .proto files:
 *  - int64 fields named at, from, to or *_at are times in microseconds: RFC 3339 strings
 *    in JSON ("2025-09-12T15:10:04.120Z" out; up to microseconds and offsets in);
 *  - string fields named *_json hold JSON text, written as that value without the suffix
 *    ("details_json": "{...}" -> "details": {...}) (output only);
 *  - other int64/uint64 are JSON numbers (integral, within +-2^53);
 *  - proto2 'optional' fields not set are written as null; null in input leaves unset;
 *  - repeated -> arrays, nested messages -> objects, enums -> their names, bytes ->
 *    base64url strings, bool -> true/false.
 * Prefix: sppb_. */
#ifndef SPPB_H
#define SPPB_H

#include <cjson/cJSON.h>
#include <protobuf-c/protobuf-c.h>

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
    SPPB_STRICT = 0,        /* unknown fields are errors */
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

#endif
