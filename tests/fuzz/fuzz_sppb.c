/* fuzz_sppb.c -- libFuzzer target: spjson_parse, then sppb_from_json into a flat message
 * (sp.auth.v1.RegisterRequest) and a nested repeated one (sp.v1.Error), strict and in
 * query mode, each with a fresh arena. A message built must convert back with
 * sppb_to_json, print with cJSON_Print, and read back strictly. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sp/auth/v1/auth.pb-c.h"
#include "sp/v1/envelope.pb-c.h"
#include "spjson.h"
#include "sppb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Parses 'text' and converts it strictly into a 'desc' message; must succeed. */
static void must_read_back(const ProtobufCMessageDescriptor *desc, const char *text)
{
    char err[256];
    cJSON *doc = NULL;
    if (spjson_parse(&doc, text, strlen(text), SPJSON_DEFAULT_DEPTH, err, sizeof err) !=
        SP_OK) {
        fprintf(stderr, "sppb_to_json output refused by spjson: %s\n%s\n", err, text);
        abort();
    }
    sp_arena *arena = sp_arena_create(0);
    if (arena == NULL) abort();
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    sp_status s = sppb_from_json(&m, desc, doc, SPPB_STRICT, arena, &errs);
    if (s != SP_OK || m == NULL) {
        fprintf(stderr, "%s: round trip refused (%s: %s %s)\n%s\n", desc->name,
                sp_error_code(s), errs.n > 0 ? errs.e[0].path : "",
                errs.n > 0 ? errs.e[0].reason : "", text);
        abort();
    }
    sp_arena_destroy(arena);
    cJSON_Delete(doc);
}

static void one(const ProtobufCMessageDescriptor *desc, const cJSON *doc, unsigned flags)
{
    sp_arena *arena = sp_arena_create(0);
    if (arena == NULL) abort();
    ProtobufCMessage *m = NULL;
    sppb_errors errs;
    sp_status s = sppb_from_json(&m, desc, doc, flags, arena, &errs);

    if (s == SP_OK) {
        if (m == NULL || m->descriptor != desc) abort();
        cJSON *back = sppb_to_json(m);
        if (back == NULL) abort();
        char *text = cJSON_Print(back);
        if (text == NULL) abort();
        must_read_back(desc, text);
        free(text);
        cJSON_Delete(back);
    } else {
        if (m != NULL) abort();
        if (errs.n > SPPB_MAX_ERRORS) abort();
        for (size_t i = 0; i < errs.n; i++) /* each entry NUL-terminated */
            if (strnlen(errs.e[i].path, sizeof errs.e[i].path) == sizeof errs.e[i].path ||
                strnlen(errs.e[i].reason, sizeof errs.e[i].reason) ==
                    sizeof errs.e[i].reason)
                abort();
    }
    sp_arena_destroy(arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    cJSON *doc = NULL;
    char *buf = malloc(size > 0 ? size : 1);
    if (buf == NULL) return 0;
    if (size > 0) memcpy(buf, data, size);

    if (spjson_parse(&doc, buf, size, SPJSON_DEFAULT_DEPTH, err, sizeof err) == SP_OK) {
        static const ProtobufCMessageDescriptor *const descs[] = {
            &sp__auth__v1__register_request__descriptor,
            &sp__v1__error__descriptor,
        };
        for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++) {
            one(descs[i], doc, SPPB_STRICT);
            one(descs[i], doc, SPPB_FROM_QUERY);
        }
    }
    cJSON_Delete(doc);
    free(buf);
    return 0;
}
