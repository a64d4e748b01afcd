/* test_sppb.c -- unit tests of JSON <-> protobuf-c conversion over our generated messages. */
#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp/auth/v1/auth.pb-c.h"
#include "sp/tenancy/v1/tenancy.pb-c.h"
#include "sp/v1/envelope.pb-c.h"
#include "spjson.h"
#include "sppb.h"

/* 2025-09-12T15:10:04Z in microseconds since the epoch. */
#define T0 INT64_C(1757689804000000)

static sp_arena *arena;
static sppb_errors errs;
static cJSON *in, *out;
static char *text; /* the last output of to() */

static void setup(void)
{
    arena = sp_arena_create(1024);
    memset(&errs, 0, sizeof(errs));
    in = out = NULL;
}

static void teardown(void)
{
    cJSON_Delete(in);
    cJSON_Delete(out);
    free(text);
    text = NULL;
    sp_arena_destroy(arena);
}

/* Strict-parses 'json' (as the gateway does) and converts it to a message of 'desc'. */
static sp_status from(const char *json, const ProtobufCMessageDescriptor *desc, unsigned flags,
                      void *msg_out)
{
    char err[128];
    cJSON_Delete(in);
    in = NULL;
    ck_assert_int_eq(spjson_parse(&in, json, strlen(json), 32, err, sizeof(err)), SP_OK);
    ProtobufCMessage *m = (ProtobufCMessage *)0x1;
    sp_status s = sppb_from_json(&m, desc, in, flags, arena, &errs);
    if (s != SP_OK) {
        ck_assert_ptr_null(m);
        ck_assert_uint_gt(errs.n, 0);
    } else {
        ck_assert_ptr_nonnull(m);
        ck_assert_ptr_eq(m->descriptor, desc);
        ck_assert_uint_eq(errs.n, 0);
    }
    *(ProtobufCMessage **)msg_out = m;
    return s;
}

/* The JSON text of a message, kept in 'out' for the test. */
static const char *to(const void *msg)
{
    cJSON_Delete(out);
    out = sppb_to_json(msg);
    ck_assert_ptr_nonnull(out);
    free(text);
    text = cJSON_PrintUnformatted(out);
    ck_assert_ptr_nonnull(text);
    return text;
}

static bool has_error(const char *path, const char *reason)
{
    for (size_t i = 0; i < errs.n; i++)
        if (strcmp(errs.e[i].path, path) == 0 && strcmp(errs.e[i].reason, reason) == 0) return true;
    return false;
}

#define ck_assert_error(p_, r_)                                                                    \
    ck_assert_msg(has_error(p_, r_), "no error '%s': '%s' (n=%zu, first '%s': '%s')", p_, r_,      \
                  errs.n, errs.e[0].path, errs.e[0].reason)

/* ---- a hand-written descriptor for the types our .proto files do not use yet ------------- */

typedef struct {
    ProtobufCMessage base;
    protobuf_c_boolean has_flag, flag;
    protobuf_c_boolean has_count;
    int32_t count;
    protobuf_c_boolean has_size;
    uint32_t size;
    protobuf_c_boolean has_ratio;
    double ratio;
    protobuf_c_boolean has_kind;
    int kind;
    size_t n_tags;
    char **tags;
    size_t n_nums;
    int64_t *nums;
    protobuf_c_boolean has_blob;
    ProtobufCBinaryData blob;
    protobuf_c_boolean has_big;
    uint64_t big;
    protobuf_c_boolean has_score;
    float score;
    size_t n_seen_at;
    int64_t *seen_at;
} Probe;

static const ProtobufCEnumValue kind_values[] = {{"KIND_A", "KIND_A", 0}, {"KIND_B", "KIND_B", 1}};
static const ProtobufCEnumValueIndex kind_by_name[] = {{"KIND_A", 0}, {"KIND_B", 1}};
static const ProtobufCIntRange kind_ranges[] = {{0, 0}, {0, 2}};
static const ProtobufCEnumDescriptor kind_desc = {PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC,
                                                  "test.Kind",
                                                  "Kind",
                                                  "Kind",
                                                  "test",
                                                  2,
                                                  kind_values,
                                                  2,
                                                  kind_by_name,
                                                  1,
                                                  kind_ranges,
                                                  NULL,
                                                  NULL,
                                                  NULL,
                                                  NULL};

#define OPT(nm, id, ty, member, d)                                                                 \
    {                                                                                              \
        nm, id, PROTOBUF_C_LABEL_OPTIONAL, ty, offsetof(Probe, has_##member),                      \
            offsetof(Probe, member), d, NULL, 0, 0, NULL, NULL                                     \
    }
#define REP(nm, id, ty, member)                                                                    \
    {                                                                                              \
        nm, id, PROTOBUF_C_LABEL_REPEATED, ty, offsetof(Probe, n_##member),                        \
            offsetof(Probe, member), NULL, NULL, 0, 0, NULL, NULL                                  \
    }

static const ProtobufCFieldDescriptor probe_fields[] = {
    OPT("flag", 1, PROTOBUF_C_TYPE_BOOL, flag, NULL),
    OPT("count", 2, PROTOBUF_C_TYPE_INT32, count, NULL),
    OPT("size", 3, PROTOBUF_C_TYPE_UINT32, size, NULL),
    OPT("ratio", 4, PROTOBUF_C_TYPE_DOUBLE, ratio, NULL),
    OPT("kind", 5, PROTOBUF_C_TYPE_ENUM, kind, &kind_desc),
    REP("tags", 6, PROTOBUF_C_TYPE_STRING, tags),
    REP("nums", 7, PROTOBUF_C_TYPE_INT64, nums),
    OPT("blob", 8, PROTOBUF_C_TYPE_BYTES, blob, NULL),
    OPT("big", 9, PROTOBUF_C_TYPE_UINT64, big, NULL),
    OPT("score", 10, PROTOBUF_C_TYPE_FLOAT, score, NULL),
    REP("seen_at", 11, PROTOBUF_C_TYPE_INT64, seen_at),
};
static const unsigned probe_by_name[] = {8, 7, 1, 0, 4, 6, 3, 9, 10, 2, 5};
static const ProtobufCIntRange probe_ranges[] = {{1, 0}, {0, 11}};
static void probe_init(ProtobufCMessage *m);
static const ProtobufCMessageDescriptor probe_desc = {PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
                                                      "test.Probe",
                                                      "Probe",
                                                      "Probe",
                                                      "test",
                                                      sizeof(Probe),
                                                      11,
                                                      probe_fields,
                                                      probe_by_name,
                                                      1,
                                                      probe_ranges,
                                                      probe_init,
                                                      NULL,
                                                      NULL,
                                                      NULL};

static void probe_init(ProtobufCMessage *m)
{
    memset(m, 0, sizeof(Probe));
    m->descriptor = &probe_desc;
}

/* ---- names ---- */

START_TEST(camel_case_names)
{
    char b[32];
    sppb_camel(b, sizeof(b), "created_at");
    ck_assert_str_eq(b, "createdAt");
    sppb_camel(b, sizeof(b), "client_role");
    ck_assert_str_eq(b, "clientRole");
    sppb_camel(b, sizeof(b), "id");
    ck_assert_str_eq(b, "id");
    sppb_camel(b, sizeof(b), "line_2_name");
    ck_assert_str_eq(b, "line2Name");
    sppb_camel(b, 6, "access_token"); /* truncated, still terminated */
    ck_assert_str_eq(b, "acces");
}
END_TEST

/* ---- JSON -> message ---- */

START_TEST(builds_register_request)
{
    Sp__Auth__V1__RegisterRequest *r;
    ck_assert_int_eq(
        from("{\"name\":\"Ann \xc3\x89\",\"email\":\"ann@x.io\",\"password\":\"pw12\"}",
             &sp__auth__v1__register_request__descriptor, SPPB_STRICT, &r),
        SP_OK);
    ck_assert_str_eq(r->name, "Ann \xc3\x89");
    ck_assert_str_eq(r->email, "ann@x.io");
    ck_assert_str_eq(r->password, "pw12");
    /* The message does not depend on the JSON: strings were copied into the arena. */
    cJSON_Delete(in);
    in = NULL;
    ck_assert_str_eq(r->email, "ann@x.io");
}
END_TEST

START_TEST(built_message_packs_and_unpacks)
{
    Sp__V1__Error *e;
    ck_assert_int_eq(
        from("{\"code\":\"conflict\",\"fields\":[{\"path\":\"email\",\"reason\":\"taken\"}]}",
             &sp__v1__error__descriptor, SPPB_STRICT, &e),
        SP_OK);
    uint8_t buf[256];
    size_t n = sp__v1__error__pack(e, buf);
    Sp__V1__Error *u = sp__v1__error__unpack(NULL, n, buf);
    ck_assert_ptr_nonnull(u);
    ck_assert_str_eq(u->code, "conflict");
    ck_assert_ptr_null(u->message);
    ck_assert_uint_eq(u->n_fields, 1);
    ck_assert_str_eq(u->fields[0]->reason, "taken");
    sp__v1__error__free_unpacked(u, NULL);
}
END_TEST

START_TEST(rejects_unknown_field_with_path)
{
    Sp__Auth__V1__RegisterRequest *r;
    ck_assert_int_eq(from("{\"name\":\"A\",\"nmae\":\"B\"}",
                          &sp__auth__v1__register_request__descriptor, SPPB_STRICT, &r),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_error("nmae", "unknown field");
}
END_TEST

START_TEST(json_names_are_camel_case_and_case_sensitive)
{
    Sp__Auth__V1__GetMeReply *m;
    ck_assert_int_eq(from("{\"client_id\":\"c1\",\"Email\":\"x\"}",
                          &sp__auth__v1__get_me_reply__descriptor, SPPB_STRICT, &m),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_uint_eq(errs.n, 2);
    ck_assert_error("client_id", "unknown field");
    ck_assert_error("Email", "unknown field");
    ck_assert_int_eq(from("{\"clientId\":\"c1\",\"clientRole\":\"client_manager\"}",
                          &sp__auth__v1__get_me_reply__descriptor, SPPB_STRICT, &m),
                     SP_OK);
    ck_assert_str_eq(m->client_id, "c1");
    ck_assert_str_eq(m->client_role, "client_manager");
}
END_TEST

START_TEST(rejects_wrong_types_one_error_per_field)
{
    Sp__Auth__V1__RegisterRequest *r;
    ck_assert_int_eq(from("{\"name\":1,\"email\":true,\"password\":[\"x\"]}",
                          &sp__auth__v1__register_request__descriptor, SPPB_STRICT, &r),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_uint_eq(errs.n, 3);
    ck_assert_error("name", "must be a string");
    ck_assert_error("email", "must be a string");
    ck_assert_error("password", "must be a string");
}
END_TEST

START_TEST(null_leaves_fields_unset)
{
    Sp__Auth__V1__GetMeReply *m;
    ck_assert_int_eq(from("{\"name\":null,\"createdAt\":null,\"clientId\":null}",
                          &sp__auth__v1__get_me_reply__descriptor, SPPB_STRICT, &m),
                     SP_OK);
    ck_assert_ptr_null(m->name);
    ck_assert_ptr_null(m->client_id);
    ck_assert(!m->has_created_at);
}
END_TEST

START_TEST(no_null_flag_refuses_null_per_field)
{
    Sp__Auth__V1__RegisterRequest *m;
    ck_assert_int_eq(from("{\"name\":null,\"email\":\"a@b.io\",\"password\":null}",
                          &sp__auth__v1__register_request__descriptor, SPPB_STRICT | SPPB_NO_NULL,
                          &m),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_uint_eq(errs.n, 2);
    ck_assert_error("name", "must not be null");
    ck_assert_error("password", "must not be null");
}
END_TEST

START_TEST(rejects_non_object)
{
    ProtobufCMessage *m = (ProtobufCMessage *)0x1;
    in = cJSON_CreateArray();
    ck_assert_int_eq(sppb_from_json(&m, &sp__auth__v1__register_request__descriptor, in,
                                    SPPB_STRICT, arena, &errs),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_null(m);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_error("", "must be an object");
}
END_TEST

START_TEST(rejects_invalid_utf8_not_checked_by_spjson)
{
    /* A cJSON built elsewhere is not guaranteed valid: the type check includes UTF-8. */
    ProtobufCMessage *m;
    in = cJSON_CreateObject();
    cJSON_AddStringToObject(in, "name", "a\xc0\xaf");
    ck_assert_int_eq(sppb_from_json(&m, &sp__auth__v1__register_request__descriptor, in,
                                    SPPB_STRICT, arena, &errs),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_error("name", "must be valid UTF-8");
}
END_TEST

START_TEST(caps_errors_at_max)
{
    char body[1024];
    size_t n = (size_t)snprintf(body, sizeof(body), "{");
    for (int i = 0; i < SPPB_MAX_ERRORS + 5; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s\"x%d\":1", i ? "," : "", i);
    snprintf(body + n, sizeof(body) - n, "}");
    ProtobufCMessage *m;
    ck_assert_int_eq(from(body, &sp__auth__v1__register_request__descriptor, SPPB_STRICT, &m),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_uint_eq(errs.n, SPPB_MAX_ERRORS);
    ck_assert_error("x0", "unknown field");
}
END_TEST

/* ---- times ---- */

START_TEST(formats_created_at_as_rfc3339_millis)
{
    Sp__Auth__V1__GetMeReply m = SP__AUTH__V1__GET_ME_REPLY__INIT;
    m.id = "u1";
    m.has_created_at = 1;
    m.created_at = T0 + 120999; /* microseconds are cut to milliseconds */
    to(&m);
    ck_assert_str_eq(spjson_get(out, "createdAt")->valuestring, "2025-09-12T15:10:04.120Z");
}
END_TEST

START_TEST(parses_created_at_with_micros_and_offsets)
{
    Sp__Auth__V1__GetMeReply *m;
    ck_assert_int_eq(from("{\"createdAt\":\"2025-09-12T15:10:04.123456Z\"}",
                          &sp__auth__v1__get_me_reply__descriptor, SPPB_STRICT, &m),
                     SP_OK);
    ck_assert(m->has_created_at);
    ck_assert_int_eq(m->created_at, T0 + 123456);
    ck_assert_int_eq(from("{\"createdAt\":\"2025-09-12T17:10:04.5+02:00\"}",
                          &sp__auth__v1__get_me_reply__descriptor, SPPB_STRICT, &m),
                     SP_OK);
    ck_assert_int_eq(m->created_at, T0 + 500000);
    ck_assert_int_eq(from("{\"createdAt\":\"2025-09-12T14:40:04-00:30\"}",
                          &sp__auth__v1__get_me_reply__descriptor, SPPB_STRICT, &m),
                     SP_OK);
    ck_assert_int_eq(m->created_at, T0);
}
END_TEST

START_TEST(rejects_bad_times)
{
    Sp__Auth__V1__GetMeReply *m;
    const char *bad[] = {"{\"createdAt\":\"yesterday\"}", "{\"createdAt\":1757689804000000}",
                         "{\"createdAt\":\"2025-09-12 15:10:04Z\"}",
                         "{\"createdAt\":\"2025-02-30T15:10:04Z\"}",
                         "{\"createdAt\":\"2025-09-12T15:10:04\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(from(bad[i], &sp__auth__v1__get_me_reply__descriptor, SPPB_STRICT, &m),
                         SP_ERR_VALIDATION_FAILED);
        ck_assert_error("createdAt", "must be an RFC 3339 time");
    }
}
END_TEST

/* ---- message -> JSON ---- */

START_TEST(writes_unset_optionals_as_null)
{
    Sp__Auth__V1__GetMeReply m = SP__AUTH__V1__GET_ME_REPLY__INIT;
    m.id = "u1";
    m.role = "app_user";
    ck_assert_str_eq(to(&m), "{\"id\":\"u1\",\"name\":null,\"email\":null,\"role\":\"app_user\","
                             "\"clientId\":null,\"clientRole\":null,\"createdAt\":null}");
}
END_TEST

START_TEST(round_trips_get_me_reply)
{
    Sp__Auth__V1__GetMeReply m = SP__AUTH__V1__GET_ME_REPLY__INIT, *back;
    m.id = "u1";
    m.name = "Zo\xc3\xab";
    m.email = "zoe@x.io";
    m.role = "client_admin";
    m.client_id = "c9";
    m.client_role = "client_operator";
    m.has_created_at = 1;
    m.created_at = T0 + 120000;
    const char *text = to(&m);
    ck_assert_int_eq(from(text, &sp__auth__v1__get_me_reply__descriptor, SPPB_STRICT, &back),
                     SP_OK);
    ck_assert_str_eq(back->id, m.id);
    ck_assert_str_eq(back->name, m.name);
    ck_assert_str_eq(back->email, m.email);
    ck_assert_str_eq(back->role, m.role);
    ck_assert_str_eq(back->client_id, m.client_id);
    ck_assert_str_eq(back->client_role, m.client_role);
    ck_assert(back->has_created_at);
    ck_assert_int_eq(back->created_at, m.created_at);
}
END_TEST

START_TEST(round_trips_error_with_nested_repeated)
{
    Sp__V1__FieldError f1 = SP__V1__FIELD_ERROR__INIT, f2 = SP__V1__FIELD_ERROR__INIT;
    f1.path = "email";
    f1.reason = "already registered";
    f2.path = "items[3].status";
    f2.reason = "must be a string";
    Sp__V1__FieldError *fs[] = {&f1, &f2};
    Sp__V1__Error e = SP__V1__ERROR__INIT, *back;
    e.code = "validation_failed";
    e.n_fields = 2;
    e.fields = fs;
    const char *text = to(&e);
    ck_assert_str_eq(text, "{\"code\":\"validation_failed\",\"message\":null,\"fields\":["
                           "{\"path\":\"email\",\"reason\":\"already registered\"},"
                           "{\"path\":\"items[3].status\",\"reason\":\"must be a string\"}],"
                           "\"retryAfterS\":null}");
    ck_assert_int_eq(from(text, &sp__v1__error__descriptor, SPPB_STRICT, &back), SP_OK);
    ck_assert_uint_eq(back->n_fields, 2);
    ck_assert_str_eq(back->fields[1]->path, "items[3].status");
    ck_assert_ptr_null(back->message);
}
END_TEST

START_TEST(writes_empty_repeated_as_empty_array)
{
    Sp__V1__Error e = SP__V1__ERROR__INIT;
    e.code = "internal";
    e.message = "boom";
    ck_assert_str_eq(
        to(&e), "{\"code\":\"internal\",\"message\":\"boom\",\"fields\":[],\"retryAfterS\":null}");
}
END_TEST

START_TEST(reports_nested_repeated_paths)
{
    Sp__V1__Error *e;
    ck_assert_int_eq(
        from("{\"code\":\"x\",\"fields\":[{\"path\":\"a\",\"reason\":\"b\"},"
             "{\"path\":1,\"reason\":\"c\"},{\"path\":\"p\",\"reason\":\"r\",\"extra\":1},"
             "{\"path\":\"q\"},null,7]}",
             &sp__v1__error__descriptor, SPPB_STRICT, &e),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_uint_eq(errs.n, 5);
    ck_assert_error("fields[1].path", "must be a string");
    ck_assert_error("fields[2].extra", "unknown field");
    ck_assert_error("fields[3].reason", "is required");
    ck_assert_error("fields[4]", "must not be null");
    ck_assert_error("fields[5]", "must be an object");
}
END_TEST

START_TEST(requires_required_fields)
{
    Sp__V1__Error *e;
    ck_assert_int_eq(from("{\"message\":\"m\"}", &sp__v1__error__descriptor, SPPB_STRICT, &e),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_error("code", "is required");
    ck_assert_int_eq(from("{\"code\":null}", &sp__v1__error__descriptor, SPPB_STRICT, &e),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_error("code", "is required");
    ck_assert_int_eq(
        from("{\"code\":\"x\",\"fields\":{}}", &sp__v1__error__descriptor, SPPB_STRICT, &e),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_error("fields", "must be an array");
}
END_TEST

/* ---- oneof ---- */

START_TEST(oneof_writes_only_the_chosen_member)
{
    /* (revokedSessions, a repeated field next to the oneof, is always written) */
    Sp__V1__Reply r = SP__V1__REPLY__INIT;
    ck_assert_str_eq(to(&r), "{\"revokedSessions\":[]}");
    Sp__V1__Error e = SP__V1__ERROR__INIT;
    e.code = "not_found";
    r.result_case = SP__V1__REPLY__RESULT_ERROR;
    r.error = &e;
    ck_assert_str_eq(to(&r), "{\"error\":{\"code\":\"not_found\",\"message\":null,\"fields\":[],"
                             "\"retryAfterS\":null},\"revokedSessions\":[]}");
    r.result_case = SP__V1__REPLY__RESULT_PAYLOAD;
    r.payload.data = (uint8_t *)"\xfb\xff";
    r.payload.len = 2;
    ck_assert_str_eq(to(&r), "{\"payload\":\"-_8\",\"revokedSessions\":[]}");
}
END_TEST

START_TEST(oneof_reads_one_member)
{
    Sp__V1__Reply *r;
    ck_assert_int_eq(from("{\"payload\":\"-_8\"}", &sp__v1__reply__descriptor, SPPB_STRICT, &r),
                     SP_OK);
    ck_assert_int_eq(r->result_case, SP__V1__REPLY__RESULT_PAYLOAD);
    ck_assert_uint_eq(r->payload.len, 2);
    ck_assert_mem_eq(r->payload.data, "\xfb\xff", 2);
    ck_assert_int_eq(
        from("{\"error\":{\"code\":\"conflict\"}}", &sp__v1__reply__descriptor, SPPB_STRICT, &r),
        SP_OK);
    ck_assert_int_eq(r->result_case, SP__V1__REPLY__RESULT_ERROR);
    ck_assert_str_eq(r->error->code, "conflict");
    ck_assert_int_eq(from("{\"error\":null}", &sp__v1__reply__descriptor, SPPB_STRICT, &r), SP_OK);
    ck_assert_int_eq(r->result_case, SP__V1__REPLY__RESULT__NOT_SET);
}
END_TEST

START_TEST(oneof_rejects_two_members)
{
    Sp__V1__Reply *r;
    ck_assert_int_eq(from("{\"payload\":\"aGk\",\"error\":{\"code\":\"x\"}}",
                          &sp__v1__reply__descriptor, SPPB_STRICT, &r),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_error("error", "cannot be set together with 'payload'");
}
END_TEST

START_TEST(bytes_are_base64url)
{
    Sp__V1__Request *q;
    ck_assert_int_eq(
        from("{\"ctx\":{},\"payload\":\"aGk=\"}", &sp__v1__request__descriptor, SPPB_STRICT, &q),
        SP_OK);
    ck_assert(q->has_payload);
    ck_assert_uint_eq(q->payload.len, 2);
    ck_assert_mem_eq(q->payload.data, "hi", 2);
    ck_assert_int_eq(
        from("{\"ctx\":{},\"payload\":\"+/8\"}", &sp__v1__request__descriptor, SPPB_STRICT, &q),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_error("payload", "must be base64url");
    ck_assert_int_eq(
        from("{\"ctx\":{},\"payload\":\"a\"}", &sp__v1__request__descriptor, SPPB_STRICT, &q),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_error("payload", "must be base64url");
}
END_TEST

/* ---- 64-bit integers and query strings ---- */

START_TEST(int64_limited_to_2_pow_53)
{
    Sp__V1__RequestContext *c;
    ck_assert_int_eq(from("{\"timeoutUs\":9007199254740992}", &sp__v1__request_context__descriptor,
                          SPPB_STRICT, &c),
                     SP_OK);
    ck_assert(c->has_timeout_us);
    ck_assert_int_eq(c->timeout_us, INT64_C(9007199254740992));
    ck_assert_int_eq(from("{\"timeoutUs\":9007199254740994}", &sp__v1__request_context__descriptor,
                          SPPB_STRICT, &c),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_error("timeoutUs", "out of range");
    ck_assert_int_eq(
        from("{\"timeoutUs\":1.5}", &sp__v1__request_context__descriptor, SPPB_STRICT, &c),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_error("timeoutUs", "must be an integer");
    ck_assert_int_eq(
        from("{\"timeoutUs\":\"12\"}", &sp__v1__request_context__descriptor, SPPB_STRICT, &c),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_error("timeoutUs", "must be an integer");
}
END_TEST

START_TEST(writes_large_int64_exactly)
{
    /* cJSON alone would print 9.00719925474099e+15, which reads back as ...990. */
    Sp__V1__RequestContext c = SP__V1__REQUEST_CONTEXT__INIT, *back;
    c.has_timeout_us = 1;
    c.timeout_us = INT64_C(9007199254740991);
    const char *text = to(&c);
    ck_assert_ptr_nonnull(strstr(text, "\"timeoutUs\":9007199254740991,"));
    ck_assert_int_eq(from(text, &sp__v1__request_context__descriptor, SPPB_STRICT, &back), SP_OK);
    ck_assert_int_eq(back->timeout_us, INT64_C(9007199254740991));
    c.timeout_us = -INT64_C(123456789012345);
    ck_assert_ptr_nonnull(strstr(to(&c), "\"timeoutUs\":-123456789012345,"));
}
END_TEST

START_TEST(at_from_and_to_are_times)
{
    Sp__Tenancy__V1__ListAuditRequest *q;
    ck_assert_int_eq(from("{\"from\":\"2025-09-12T15:10:04Z\",\"to\":\"2025-09-12T15:10:04.5Z\"}",
                          &sp__tenancy__v1__list_audit_request__descriptor, SPPB_FROM_QUERY, &q),
                     SP_OK);
    ck_assert_int_eq(q->from, T0);
    ck_assert_int_eq(q->to, T0 + 500000);
    ck_assert_int_eq(from("{\"from\":\"1757689804\"}",
                          &sp__tenancy__v1__list_audit_request__descriptor, SPPB_FROM_QUERY, &q),
                     SP_ERR_VALIDATION_FAILED);
    Sp__Tenancy__V1__AuditEntry e = SP__TENANCY__V1__AUDIT_ENTRY__INIT;
    e.has_at = 1;
    e.at = T0 + 120000;
    to(&e);
    ck_assert_str_eq(spjson_get(out, "at")->valuestring, "2025-09-12T15:10:04.120Z");
}
END_TEST

START_TEST(json_text_fields_are_written_as_json)
{
    Sp__Tenancy__V1__AuditEntry e = SP__TENANCY__V1__AUDIT_ENTRY__INIT;
    e.details_json = "{\"clientRole\":\"client_manager\",\"n\":[1,2]}";
    to(&e);
    ck_assert_ptr_null(spjson_get(out, "detailsJson"));
    cJSON *d = spjson_get(out, "details");
    ck_assert(cJSON_IsObject(d));
    ck_assert_str_eq(spjson_get(d, "clientRole")->valuestring, "client_manager");
    e.details_json = NULL;
    to(&e);
    ck_assert(cJSON_IsNull(spjson_get(out, "details")));
    e.details_json = "not json";
    to(&e);
    ck_assert_str_eq(spjson_get(out, "details")->valuestring, "not json");
}
END_TEST

START_TEST(from_query_converts_strings)
{
    Sp__Auth__V1__LoginReply *l;
    ck_assert_int_eq(from("{\"expiresIn\":\"900\",\"tokenType\":\"Bearer\"}",
                          &sp__auth__v1__login_reply__descriptor, SPPB_FROM_QUERY, &l),
                     SP_OK);
    ck_assert(l->has_expires_in);
    ck_assert_int_eq(l->expires_in, 900);
    ck_assert_str_eq(l->token_type, "Bearer");
    ck_assert_int_eq(from("{\"expiresIn\":\"-9007199254740993\"}",
                          &sp__auth__v1__login_reply__descriptor, SPPB_FROM_QUERY, &l),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_error("expiresIn", "out of range");
    const char *bad[] = {"{\"expiresIn\":\"9x\"}", "{\"expiresIn\":\"\"}", "{\"expiresIn\":\" 9\"}",
                         "{\"expiresIn\":\"1.0\"}", "{\"expiresIn\":\"-\"}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_int_eq(from(bad[i], &sp__auth__v1__login_reply__descriptor, SPPB_FROM_QUERY, &l),
                         SP_ERR_VALIDATION_FAILED);
        ck_assert_error("expiresIn", "must be an integer");
    }
}
END_TEST

START_TEST(from_query_still_rejects_unknown_fields)
{
    Sp__Auth__V1__LoginReply *l;
    ck_assert_int_eq(
        from("{\"limit\":\"10\"}", &sp__auth__v1__login_reply__descriptor, SPPB_FROM_QUERY, &l),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_error("limit", "unknown field");
}
END_TEST

START_TEST(from_query_converts_bools_floats_and_lists)
{
    Probe *p;
    ck_assert_int_eq(
        from("{\"flag\":\"true\",\"count\":\"-5\",\"size\":\"4294967295\",\"ratio\":\"0.25\","
             "\"score\":\"1e3\",\"nums\":[\"1\",\"2\"],\"tags\":\"solo\",\"kind\":\"KIND_B\"}",
             &probe_desc, SPPB_FROM_QUERY, &p),
        SP_OK);
    ck_assert(p->has_flag && p->flag);
    ck_assert_int_eq(p->count, -5);
    ck_assert_uint_eq(p->size, 4294967295u);
    ck_assert(p->ratio == 0.25);
    ck_assert(p->score == 1000.0f);
    ck_assert_uint_eq(p->n_nums, 2);
    ck_assert_int_eq(p->nums[1], 2);
    ck_assert_uint_eq(p->n_tags, 1);
    ck_assert_str_eq(p->tags[0], "solo");
    ck_assert_int_eq(p->kind, 1);
    ck_assert_int_eq(from("{\"flag\":\"false\"}", &probe_desc, SPPB_FROM_QUERY, &p), SP_OK);
    ck_assert(p->has_flag && !p->flag);
    ck_assert_int_eq(
        from("{\"flag\":\"yes\",\"ratio\":\"nan\",\"size\":\"-1\",\"nums\":[\"1\",\"x\"]}",
             &probe_desc, SPPB_FROM_QUERY, &p),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_error("flag", "must be true or false");
    ck_assert_error("ratio", "must be a number");
    ck_assert_error("size", "out of range");
    ck_assert_error("nums[1]", "must be an integer");
}
END_TEST

START_TEST(strict_mode_does_not_convert_strings)
{
    Probe *p;
    ck_assert_int_eq(from("{\"flag\":\"true\",\"count\":\"1\",\"ratio\":\"1\",\"tags\":\"solo\"}",
                          &probe_desc, SPPB_STRICT, &p),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_error("flag", "must be a boolean");
    ck_assert_error("count", "must be an integer");
    ck_assert_error("ratio", "must be a number");
    ck_assert_error("tags", "must be an array");
}
END_TEST

START_TEST(checks_ranges_of_every_width)
{
    Probe *p;
    ck_assert_int_eq(
        from("{\"count\":2147483648,\"size\":-1,\"big\":9007199254740994,\"score\":1e39}",
             &probe_desc, SPPB_STRICT, &p),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_uint_eq(errs.n, 4);
    ck_assert_error("count", "out of range");
    ck_assert_error("size", "out of range");
    ck_assert_error("big", "out of range");
    ck_assert_error("score", "out of range");
    ck_assert_int_eq(from("{\"count\":-2147483648,\"size\":4294967295,\"big\":9007199254740992}",
                          &probe_desc, SPPB_STRICT, &p),
                     SP_OK);
    ck_assert_int_eq(p->count, INT32_MIN);
    ck_assert_uint_eq(p->big, UINT64_C(9007199254740992));
}
END_TEST

START_TEST(enums_are_names)
{
    Probe *p;
    ck_assert_int_eq(from("{\"kind\":\"KIND_B\"}", &probe_desc, SPPB_STRICT, &p), SP_OK);
    ck_assert(p->has_kind);
    ck_assert_int_eq(p->kind, 1);
    ck_assert_str_eq(
        to(p), "{\"flag\":null,\"count\":null,\"size\":null,\"ratio\":null,\"kind\":\"KIND_B\","
               "\"tags\":[],\"nums\":[],\"blob\":null,\"big\":null,\"score\":null,\"seenAt\":[]}");
    ck_assert_int_eq(from("{\"kind\":\"kind_b\"}", &probe_desc, SPPB_STRICT, &p),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_error("kind", "must be one of KIND_A, KIND_B");
    ck_assert_int_eq(from("{\"kind\":1}", &probe_desc, SPPB_STRICT, &p), SP_ERR_VALIDATION_FAILED);
    ck_assert_error("kind", "must be one of KIND_A, KIND_B");
}
END_TEST

START_TEST(round_trips_every_type)
{
    Probe *p, *back;
    const char *json =
        "{\"flag\":true,\"count\":-7,\"size\":7,\"ratio\":0.5,\"kind\":\"KIND_A\","
        "\"tags\":[\"a\",\"\xc3\xa9\"],\"nums\":[-9007199254740992,0,3],\"blob\":\"AAEC_w\","
        "\"big\":12,\"score\":2.5,\"seenAt\":[\"2025-09-12T15:10:04.120Z\",\"1970-01-01T00:00:00."
        "000Z\"]}";
    ck_assert_int_eq(from(json, &probe_desc, SPPB_STRICT, &p), SP_OK);
    ck_assert_uint_eq(p->n_seen_at, 2);
    ck_assert_int_eq(p->seen_at[0], T0 + 120000);
    ck_assert_uint_eq(p->blob.len, 4);
    ck_assert_mem_eq(p->blob.data, "\x00\x01\x02\xff", 4);
    ck_assert_str_eq(to(p), json);
    ck_assert_int_eq(from(to(p), &probe_desc, SPPB_STRICT, &back), SP_OK);
    ck_assert_int_eq(back->nums[0], -INT64_C(9007199254740992));
}
END_TEST

START_TEST(repeated_times_report_element_paths)
{
    Probe *p;
    ck_assert_int_eq(
        from("{\"seenAt\":[\"2025-09-12T15:10:04Z\",\"later\"]}", &probe_desc, SPPB_STRICT, &p),
        SP_ERR_VALIDATION_FAILED);
    ck_assert_uint_eq(errs.n, 1);
    ck_assert_error("seenAt[1]", "must be an RFC 3339 time");
}
END_TEST

static Suite *sppb_suite(void)
{
    Suite *s = suite_create("sppb");
    TCase *t = tcase_create("convert");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, camel_case_names);
    tcase_add_test(t, builds_register_request);
    tcase_add_test(t, built_message_packs_and_unpacks);
    tcase_add_test(t, rejects_unknown_field_with_path);
    tcase_add_test(t, json_names_are_camel_case_and_case_sensitive);
    tcase_add_test(t, rejects_wrong_types_one_error_per_field);
    tcase_add_test(t, null_leaves_fields_unset);
    tcase_add_test(t, no_null_flag_refuses_null_per_field);
    tcase_add_test(t, rejects_non_object);
    tcase_add_test(t, rejects_invalid_utf8_not_checked_by_spjson);
    tcase_add_test(t, caps_errors_at_max);
    tcase_add_test(t, formats_created_at_as_rfc3339_millis);
    tcase_add_test(t, parses_created_at_with_micros_and_offsets);
    tcase_add_test(t, rejects_bad_times);
    tcase_add_test(t, writes_unset_optionals_as_null);
    tcase_add_test(t, round_trips_get_me_reply);
    tcase_add_test(t, round_trips_error_with_nested_repeated);
    tcase_add_test(t, writes_empty_repeated_as_empty_array);
    tcase_add_test(t, reports_nested_repeated_paths);
    tcase_add_test(t, requires_required_fields);
    tcase_add_test(t, oneof_writes_only_the_chosen_member);
    tcase_add_test(t, oneof_reads_one_member);
    tcase_add_test(t, oneof_rejects_two_members);
    tcase_add_test(t, bytes_are_base64url);
    tcase_add_test(t, int64_limited_to_2_pow_53);
    tcase_add_test(t, writes_large_int64_exactly);
    tcase_add_test(t, from_query_converts_strings);
    tcase_add_test(t, from_query_still_rejects_unknown_fields);
    tcase_add_test(t, from_query_converts_bools_floats_and_lists);
    tcase_add_test(t, strict_mode_does_not_convert_strings);
    tcase_add_test(t, checks_ranges_of_every_width);
    tcase_add_test(t, enums_are_names);
    tcase_add_test(t, round_trips_every_type);
    tcase_add_test(t, repeated_times_report_element_paths);
    tcase_add_test(t, at_from_and_to_are_times);
    tcase_add_test(t, json_text_fields_are_written_as_json);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sppb_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
