/* sppb.c -- JSON <-> protobuf-c messages, driven by the message descriptors. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spcrypto.h"
#include "spjson.h"
#include "sppb.h"

/* JSON numbers are doubles: integers beyond 2^53 would silently change (pitfalls.md). */
#define SPPB_INT53 (INT64_C(1) << 53)
#define SPPB_PATH_MAX 256

/* ---- names and field layout ------------------------------------------------------------ */

void sppb_camel(char *out, size_t outlen, const char *snake)
{
    if (out == NULL || outlen == 0) return;
    size_t o = 0;
    bool up = false;
    for (const char *p = snake; p != NULL && *p != '\0' && o + 1 < outlen; p++) {
        if (*p == '_') {
            up = o > 0; /* a leading underscore does not capitalise the first letter */
            continue;
        }
        char ch = *p;
        if (up && ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
        up = false;
        out[o++] = ch;
    }
    out[o] = '\0';
}

/* int64 fields named at, from, to or *_at carry microseconds and are RFC 3339 strings in
 * JSON. */
static bool is_time_field(const ProtobufCFieldDescriptor *f)
{
    if (f->type != PROTOBUF_C_TYPE_INT64 && f->type != PROTOBUF_C_TYPE_SINT64 &&
        f->type != PROTOBUF_C_TYPE_SFIXED64)
        return false;
    size_t n = strlen(f->name);
    return (n >= 3 && strcmp(f->name + n - 3, "_at") == 0) || strcmp(f->name, "at") == 0 ||
           strcmp(f->name, "from") == 0 || strcmp(f->name, "to") == 0;
}

/* string fields named *_json hold a JSON text: written as that JSON value, named without
 * the suffix ("details_json" -> "details"); a text that is not JSON is written as a
 * string. */
static bool is_json_field(const ProtobufCFieldDescriptor *f)
{
    size_t n = strlen(f->name);
    return f->type == PROTOBUF_C_TYPE_STRING && f->label != PROTOBUF_C_LABEL_REPEATED && n > 5 &&
           strcmp(f->name + n - 5, "_json") == 0;
}

bool sppb_field_inline(const ProtobufCFieldDescriptor *f)
{
    size_t n = strlen(f->name);
    return f->type == PROTOBUF_C_TYPE_MESSAGE && (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           n > 7 && strcmp(f->name + n - 7, "_inline") == 0;
}

/* proto2 optional scalars, enums and bytes have a has_ flag; strings and messages are
 * present when their pointer is not NULL. */
static bool has_flag(const ProtobufCFieldDescriptor *f)
{
    return f->label == PROTOBUF_C_LABEL_OPTIONAL && !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
           f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE;
}

static size_t elem_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return 8;
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

#define AT(msg, off, type) ((type *)((char *)(msg) + (off)))

/* ---- base64url (spcrypto's; padding optional in, none out) --------------------------------- */

/* NUL-terminated encoding of data[0..n) in malloc'd memory; NULL on OOM. */
static char *b64url_encode(const uint8_t *data, size_t n)
{
    char *out = malloc((n + 2) / 3 * 4 + 1);
    if (out == NULL) return NULL;
    spcrypto_b64url_encode(out, data, n);
    return out;
}

/* Decodes s into arena memory; false when s is not canonical base64url (or on OOM, *oom). */
static bool b64url_decode(ProtobufCBinaryData *out, const char *s, sp_arena *a, bool *oom)
{
    size_t len = strlen(s);
    if (len % 4 == 0 && len > 0 && s[len - 1] == '=')
        len -= (len >= 2 && s[len - 2] == '=') ? 2 : 1;
    size_t cap = len / 4 * 3 + 3;
    uint8_t *buf = sp_arena_alloc(a, cap);
    if (buf == NULL) {
        *oom = true;
        return false;
    }
    long n = spcrypto_b64url_decode(buf, cap, s, len);
    if (n < 0) return false;
    out->data = buf;
    out->len = (size_t)n;
    return true;
}

/* ---- JSON -> message ------------------------------------------------------------------- */

typedef struct {
    unsigned flags;
    sp_arena *arena;
    sppb_errors *errs;
    bool failed, oom;
} ctx;

/* Cuts at a code point boundary so that paths quoting user keys stay valid UTF-8. */
static void copy_utf8(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);
    if (n >= dstlen) {
        n = dstlen - 1;
        /* src[n] is inside src: strlen(src) > n here */
        // NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult)
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void add_err(ctx *c, const char *path, const char *reason)
{
    c->failed = true;
    if (c->errs->n >= SPPB_MAX_ERRORS) return;
    copy_utf8(c->errs->e[c->errs->n].path, sizeof(c->errs->e[0].path), path);
    copy_utf8(c->errs->e[c->errs->n].reason, sizeof(c->errs->e[0].reason), reason);
    c->errs->n++;
}

/* Paths longer than SPPB_PATH_MAX are cut: they only name a field in an error. */
static void member_path(char *out, const char *parent, const char *name)
{
    size_t pl = strnlen(parent, SPPB_PATH_MAX - 1), nl = strlen(name);
    size_t used = pl;
    memcpy(out, parent, pl);
    if (pl > 0 && used < SPPB_PATH_MAX - 1) out[used++] = '.';
    if (nl > SPPB_PATH_MAX - 1 - used) nl = SPPB_PATH_MAX - 1 - used;
    memcpy(out + used, name, nl);
    out[used + nl] = '\0';
}

/* Query strings: "-?[0-9]+" only. NULL or the reason. */
static const char *parse_int_str(const char *s, int64_t min, int64_t max, int64_t *out)
{
    const char *p = s + (*s == '-');
    if (*p == '\0') return "must be an integer";
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return "must be an integer";
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE || v < min || v > max) return "out of range";
    *out = v;
    return NULL;
}

static const char *get_int(const ctx *c, const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
    if (cJSON_IsString(v) && (c->flags & SPPB_FROM_QUERY))
        return parse_int_str(v->valuestring, min, max, out);
    if (!cJSON_IsNumber(v)) return "must be an integer";
    double d = v->valuedouble;
    if (!isfinite(d) || d <= -9223372036854775808.0 || d >= 9223372036854775808.0)
        return "out of range";
    if ((double)(int64_t)d != d) return "must be an integer";
    if (!spjson_int_in(v, min, max, out)) return "out of range";
    return NULL;
}

static const char *get_double(const ctx *c, const cJSON *v, double *out)
{
    if (cJSON_IsString(v) && (c->flags & SPPB_FROM_QUERY)) {
        const char *s = v->valuestring;
        if (*s == '\0' || strspn(s, "+-0123456789.eE") != strlen(s)) return "must be a number";
        char *end = NULL;
        double d = strtod(s, &end);
        if (*end != '\0') return "must be a number";
        if (!isfinite(d)) return "out of range";
        *out = d;
        return NULL;
    }
    if (!cJSON_IsNumber(v)) return "must be a number";
    if (!isfinite(v->valuedouble)) return "out of range";
    *out = v->valuedouble;
    return NULL;
}

static const char *get_bool(const ctx *c, const cJSON *v, protobuf_c_boolean *out)
{
    if (cJSON_IsString(v) && (c->flags & SPPB_FROM_QUERY)) {
        if (strcmp(v->valuestring, "true") == 0)
            *out = 1;
        else if (strcmp(v->valuestring, "false") == 0)
            *out = 0;
        else
            return "must be true or false";
        return NULL;
    }
    if (!cJSON_IsBool(v)) return "must be a boolean";
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return NULL;
}

/* "must be one of A, B, C" in buf. */
static const char *enum_reason(char *buf, size_t len, const ProtobufCEnumDescriptor *ed)
{
    size_t o = (size_t)snprintf(buf, len, "must be one of");
    for (unsigned i = 0; i < ed->n_values && o < len; i++) {
        const char *name = ed->values[i].name;
        if (o + strlen(name) + 6 >= len) {
            snprintf(buf + o, len - o, ", ...");
            break;
        }
        o += (size_t)snprintf(buf + o, len - o, "%s %s", i == 0 ? "" : ",", name);
    }
    return buf;
}

static void from_object(ctx *c, const ProtobufCMessageDescriptor *desc, const cJSON *json,
                        const char *path, ProtobufCMessage **out);

/* Converts one JSON value 'v' (not null) into the storage of one element at 'dst'. */
static void set_value(ctx *c, const ProtobufCFieldDescriptor *f, const cJSON *v, void *dst,
                      const char *path)
{
    const char *why = NULL;
    int64_t i = 0;
    double d = 0;
    char buf[128];

    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        why = get_int(c, v, INT32_MIN, INT32_MAX, &i);
        if (why == NULL) *(int32_t *)dst = (int32_t)i;
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        why = get_int(c, v, 0, UINT32_MAX, &i);
        if (why == NULL) *(uint32_t *)dst = (uint32_t)i;
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (is_time_field(f)) {
            if (!cJSON_IsString(v) || sp_time_parse(&i, v->valuestring) != SP_OK)
                why = "must be an RFC 3339 time";
        } else {
            why = get_int(c, v, -SPPB_INT53, SPPB_INT53, &i);
        }
        if (why == NULL) *(int64_t *)dst = i;
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        why = get_int(c, v, 0, SPPB_INT53, &i);
        if (why == NULL) *(uint64_t *)dst = (uint64_t)i;
        break;
    case PROTOBUF_C_TYPE_FLOAT:
        why = get_double(c, v, &d);
        if (why == NULL && fabs(d) > FLT_MAX) why = "out of range";
        if (why == NULL) *(float *)dst = (float)d;
        break;
    case PROTOBUF_C_TYPE_DOUBLE:
        why = get_double(c, v, &d);
        if (why == NULL) *(double *)dst = d;
        break;
    case PROTOBUF_C_TYPE_BOOL:
        why = get_bool(c, v, (protobuf_c_boolean *)dst);
        break;
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumValue *ev = NULL;
        if (cJSON_IsString(v))
            ev = protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, v->valuestring);
        if (ev == NULL)
            why = enum_reason(buf, sizeof(buf), f->descriptor);
        else
            *(int32_t *)dst = ev->value;
        break;
    }
    case PROTOBUF_C_TYPE_STRING:
        if (is_json_field(f)) { /* any JSON value, kept as its text: the service reads it */
            char *text = cJSON_PrintUnformatted(v);
            char *s = text != NULL ? sp_arena_strdup(c->arena, text) : NULL;
            cJSON_free(text);
            if (s == NULL) c->oom = true;
            *(char **)dst = s;
        } else if (!cJSON_IsString(v)) {
            why = "must be a string";
        } else if (!spjson_utf8_valid(v->valuestring, strlen(v->valuestring))) {
            why = "must be valid UTF-8";
        } else {
            char *s = sp_arena_strdup(c->arena, v->valuestring);
            if (s == NULL) c->oom = true;
            *(char **)dst = s;
        }
        break;
    case PROTOBUF_C_TYPE_BYTES:
        if (!cJSON_IsString(v) || !b64url_decode(dst, v->valuestring, c->arena, &c->oom))
            why = "must be base64url";
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (!cJSON_IsObject(v))
            why = "must be an object";
        else
            from_object(c, f->descriptor, v, path, (ProtobufCMessage **)dst);
        break;
    }
    if (why != NULL && !c->oom) add_err(c, path, why);
}

/* A repeated field from an array (or, from a query, from one bare value). */
static void set_repeated(ctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                         const cJSON *v, const char *path)
{
    bool single = !cJSON_IsArray(v) && (c->flags & SPPB_FROM_QUERY);
    if (!cJSON_IsArray(v) && !single) {
        add_err(c, path, "must be an array");
        return;
    }
    size_t n = single ? 1 : (size_t)cJSON_GetArraySize(v);
    size_t es = elem_size(f->type);
    if (n == 0) return;
    char *arr = sp_arena_alloc(c->arena, n * es);
    if (arr == NULL) {
        c->oom = true;
        return;
    }
    memset(arr, 0, n * es);
    size_t k = 0;
    const cJSON *item = single ? v : v->child;
    for (; item != NULL && k < n && !c->oom; k++, item = single ? NULL : item->next) {
        char ipath[SPPB_PATH_MAX];
        if (snprintf(ipath, sizeof(ipath), "%s[%zu]", path, k) >= (int)sizeof(ipath))
            memcpy(ipath + sizeof(ipath) - 4, "...", 4); /* cut: it only names a field */
        if (cJSON_IsNull(item))
            add_err(c, ipath, "must not be null");
        else
            set_value(c, f, item, arr + k * es, ipath);
    }
    *AT(m, f->quantifier_offset, size_t) = n;
    *AT(m, f->offset, void *) = arr;
}

static void set_field(ctx *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f,
                      const cJSON *v, const char *path)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        set_repeated(c, m, f, v, path);
        return;
    }
    if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *which = AT(m, f->quantifier_offset, uint32_t);
        if (*which != 0 && *which != f->id) {
            const ProtobufCFieldDescriptor *other =
                protobuf_c_message_descriptor_get_field(m->descriptor, *which);
            char name[96], why[128];
            sppb_camel(name, sizeof(name), other != NULL ? other->name : "?");
            snprintf(why, sizeof(why), "cannot be set together with '%s'", name);
            add_err(c, path, why);
            return;
        }
        bool failed = c->failed;
        c->failed = false;
        set_value(c, f, v, AT(m, f->offset, void), path);
        if (!c->failed && !c->oom) *which = f->id;
        c->failed = c->failed || failed;
        return;
    }
    bool failed = c->failed;
    c->failed = false;
    set_value(c, f, v, AT(m, f->offset, void), path);
    if (!c->failed && !c->oom && has_flag(f)) *AT(m, f->quantifier_offset, protobuf_c_boolean) = 1;
    c->failed = c->failed || failed;
}

static const ProtobufCFieldDescriptor *field_by_json_name(const ProtobufCMessageDescriptor *d,
                                                          const char *key)
{
    char name[SPPB_PATH_MAX];
    for (unsigned i = 0; i < d->n_fields; i++) {
        sppb_field_json_name(name, sizeof(name), &d->fields[i]);
        if (strcmp(name, key) == 0) return &d->fields[i];
    }
    return NULL;
}

static void from_object(ctx *c, const ProtobufCMessageDescriptor *desc, const cJSON *json,
                        const char *path, ProtobufCMessage **out)
{
    *out = NULL;
    ProtobufCMessage *m = sp_arena_alloc(c->arena, desc->sizeof_message);
    bool *seen = sp_arena_alloc(c->arena, desc->n_fields + 1);
    if (m == NULL || seen == NULL) {
        c->oom = true;
        return;
    }
    protobuf_c_message_init(desc, m);
    memset(seen, 0, desc->n_fields + 1);
    *out = m;

    for (const cJSON *v = json->child; v != NULL && !c->oom; v = v->next) {
        char mpath[SPPB_PATH_MAX];
        member_path(mpath, path, v->string != NULL ? v->string : "");
        const ProtobufCFieldDescriptor *f = field_by_json_name(desc, v->string ? v->string : "");
        if (f == NULL) {
            add_err(c, mpath, "unknown field");
            continue;
        }
        if (cJSON_IsNull(v)) {
            if (c->flags & SPPB_NO_NULL) add_err(c, mpath, "must not be null");
            continue; /* otherwise null leaves the field unset */
        }
        seen[f - desc->fields] = true;
        set_field(c, m, f, v, mpath);
    }
    for (unsigned i = 0; i < desc->n_fields && !c->oom; i++) {
        if (desc->fields[i].label == PROTOBUF_C_LABEL_REQUIRED && !seen[i]) {
            char name[SPPB_PATH_MAX], mpath[SPPB_PATH_MAX];
            sppb_camel(name, sizeof(name), desc->fields[i].name);
            member_path(mpath, path, name);
            add_err(c, mpath, "is required");
        }
    }
}

sp_status sppb_from_json(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
                         const cJSON *json, unsigned flags, sp_arena *arena, sppb_errors *errs)
{
    sppb_errors scratch;
    *out = NULL;
    if (errs == NULL) errs = &scratch;
    errs->n = 0;
    if (desc == NULL || arena == NULL) return SP_ERR_INTERNAL;

    ctx c = {.flags = flags, .arena = arena, .errs = errs};
    if (!cJSON_IsObject(json)) {
        add_err(&c, "", "must be an object");
        return SP_ERR_VALIDATION_FAILED;
    }
    ProtobufCMessage *m = NULL;
    from_object(&c, desc, json, "", &m);
    if (c.oom) return SP_ERR_INTERNAL;
    if (c.failed) return SP_ERR_VALIDATION_FAILED;
    *out = m;
    return SP_OK;
}

/* ---- message -> JSON ------------------------------------------------------------------- */

static cJSON *msg_to_json(const ProtobufCMessage *m);

/* cJSON 1.7.15 prints numbers with "%1.15g" and accepts the result when it reads back
 * within DBL_EPSILON: 9007199254740991 comes out as 9.00719925474099e+15. Integers of more
 * than 15 digits are therefore emitted as raw digits, exactly. */
static cJSON *int64_json(int64_t x)
{
    if (x > -INT64_C(1000000000000000) && x < INT64_C(1000000000000000))
        return cJSON_CreateNumber((double)x);
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)x);
    return cJSON_CreateRaw(buf);
}

/* One element at p; NULL only on OOM. */
static cJSON *value_to_json(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return cJSON_CreateNumber(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return cJSON_CreateNumber(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (is_time_field(f)) {
            char buf[40];
            sp_time_format(buf, sizeof(buf), *(const int64_t *)p);
            return cJSON_CreateString(buf);
        }
        return int64_json(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64: {
        uint64_t x = *(const uint64_t *)p;
        return int64_json(x > INT64_MAX ? INT64_MAX : (int64_t)x);
    }
    case PROTOBUF_C_TYPE_FLOAT: {
        float x = *(const float *)p;
        return isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull();
    }
    case PROTOBUF_C_TYPE_DOUBLE: {
        double x = *(const double *)p;
        return isfinite(x) ? cJSON_CreateNumber(x) : cJSON_CreateNull();
    }
    case PROTOBUF_C_TYPE_BOOL:
        return cJSON_CreateBool(*(const protobuf_c_boolean *)p != 0);
    case PROTOBUF_C_TYPE_ENUM: {
        int32_t x = *(const int32_t *)p;
        const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(f->descriptor, x);
        return ev != NULL ? cJSON_CreateString(ev->name) : cJSON_CreateNumber(x);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return s != NULL ? cJSON_CreateString(s) : cJSON_CreateNull();
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        char *enc = b64url_encode(b->data, b->data != NULL ? b->len : 0);
        if (enc == NULL) return NULL;
        cJSON *j = cJSON_CreateString(enc);
        free(enc);
        return j;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        return sub != NULL ? msg_to_json(sub) : cJSON_CreateNull();
    }
    }
    return cJSON_CreateNull();
}

static cJSON *field_to_json(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *AT(m, f->quantifier_offset, const size_t);
        const char *arr = *AT(m, f->offset, char *const);
        size_t es = elem_size(f->type);
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; a != NULL && arr != NULL && i < n; i++) {
            cJSON *item = value_to_json(f, arr + i * es);
            if (item == NULL || !cJSON_AddItemToArray(a, item)) {
                cJSON_Delete(item);
                cJSON_Delete(a);
                return NULL;
            }
        }
        return a;
    }
    if (has_flag(f) && !*AT(m, f->quantifier_offset, const protobuf_c_boolean))
        return cJSON_CreateNull();
    return value_to_json(f, AT(m, f->offset, const void));
}

static cJSON *msg_to_json(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    cJSON *o = cJSON_CreateObject();
    for (unsigned i = 0; o != NULL && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        /* Only the chosen member of a oneof is written. */
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *AT(m, f->quantifier_offset, const uint32_t) != f->id)
            continue;
        char name[SPPB_PATH_MAX];
        sppb_camel(name, sizeof(name), f->name);
        cJSON *v = NULL;
        if (sppb_field_inline(f)) { /* the chosen message's fields, in place */
            const ProtobufCMessage *sub = *AT(m, f->offset, const ProtobufCMessage *const);
            cJSON *so = sub != NULL ? msg_to_json(sub) : cJSON_CreateObject();
            if (so == NULL) {
                cJSON_Delete(o);
                return NULL;
            }
            for (cJSON *e = so->child; e != NULL; e = so->child) {
                cJSON_DetachItemViaPointer(so, e);
                cJSON_AddItemToObject(o, e->string, e); /* takes e, key copied */
            }
            cJSON_Delete(so);
            continue;
        }
        if (is_json_field(f)) {
            const char *text = *AT(m, f->offset, char *const);
            name[strlen(name) - 4] = '\0'; /* "detailsJson" -> "details" */
            v = text != NULL ? cJSON_Parse(text) : cJSON_CreateNull();
            if (v == NULL && text != NULL) v = cJSON_CreateString(text);
        } else {
            v = field_to_json(m, f);
        }
        if (v == NULL || !cJSON_AddItemToObject(o, name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

cJSON *sppb_to_json(const ProtobufCMessage *msg)
{
    if (msg == NULL || msg->descriptor == NULL) return NULL;
    return msg_to_json(msg);
}

/* ---- JSON Schema ------------------------------------------------------------------------ */

void sppb_field_json_name(char *out, size_t outlen, const ProtobufCFieldDescriptor *f)
{
    sppb_camel(out, outlen, f->name);
    if (is_json_field(f) && strlen(out) > 4) out[strlen(out) - 4] = '\0';
}

bool sppb_field_nullable(const ProtobufCFieldDescriptor *f)
{
    if (f->label == PROTOBUF_C_LABEL_REPEATED) return false;
    if (f->type == PROTOBUF_C_TYPE_FLOAT || f->type == PROTOBUF_C_TYPE_DOUBLE) return true;
    if (f->label == PROTOBUF_C_LABEL_OPTIONAL) return true;
    /* a required string or message can still be NULL in memory; a required scalar cannot */
    return f->type == PROTOBUF_C_TYPE_STRING || f->type == PROTOBUF_C_TYPE_MESSAGE;
}

bool sppb_field_always_written(const ProtobufCFieldDescriptor *f)
{
    return !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF);
}

/* {"type": type} (type NULL: no type) plus one more keyword 'key' (NULL: none), which
 * takes 'value'; NULL on OOM. */
static cJSON *typed(const char *type, const char *key, cJSON *value)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || (type != NULL && cJSON_AddStringToObject(o, "type", type) == NULL)) {
        cJSON_Delete(o);
        cJSON_Delete(value);
        return NULL;
    }
    if (key == NULL) return o;
    if (value == NULL || !cJSON_AddItemToObject(o, key, value)) {
        cJSON_Delete(value);
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static cJSON *ranged(double min, double max)
{
    cJSON *o = typed("integer", "minimum", cJSON_CreateNumber(min));
    if (o != NULL && cJSON_AddNumberToObject(o, "maximum", max) == NULL) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The schema of one element of 'f'. */
static cJSON *element_schema(const ProtobufCFieldDescriptor *f, bool output, sppb_schema_ref_fn ref,
                             void *user)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return ranged(-2147483648.0, 2147483647.0);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return ranged(0, 4294967295.0);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        if (is_time_field(f)) return typed("string", "format", cJSON_CreateString("date-time"));
        return ranged(-9007199254740991.0, 9007199254740991.0);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return ranged(0, 9007199254740991.0);
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        return typed("number", NULL, NULL);
    case PROTOBUF_C_TYPE_BOOL:
        return typed("boolean", NULL, NULL);
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        cJSON *names = cJSON_CreateArray();
        for (unsigned i = 0; names != NULL && ed != NULL && i < ed->n_values; i++)
            if (!cJSON_AddItemToArray(names, cJSON_CreateString(ed->values[i].name))) {
                cJSON_Delete(names);
                names = NULL;
            }
        return typed("string", "enum", names);
    }
    case PROTOBUF_C_TYPE_STRING:
        if (is_json_field(f)) return cJSON_CreateObject(); /* any JSON value */
        return typed("string", NULL, NULL);
    case PROTOBUF_C_TYPE_BYTES:
        return typed("string", "pattern", cJSON_CreateString("^[A-Za-z0-9_-]*$"));
    case PROTOBUF_C_TYPE_MESSAGE: {
        const char *r = ref != NULL ? ref(f->descriptor, output, user) : NULL;
        if (r == NULL) return typed("object", NULL, NULL);
        return typed(NULL, "$ref", cJSON_CreateString(r));
    }
    }
    return cJSON_CreateObject();
}

cJSON *sppb_field_schema(const ProtobufCFieldDescriptor *f, bool output, sppb_schema_ref_fn ref,
                         void *user)
{
    cJSON *e = element_schema(f, output, ref, user);
    if (e == NULL || f->label != PROTOBUF_C_LABEL_REPEATED) return e;
    return typed("array", "items", e);
}
