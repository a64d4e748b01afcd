/* fields.c -- field errors, the shared input checks, list limits and cursors. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spcrypto.h"
#include "spsvc_internal.h"

void spsvc_fields_init(spsvc_fields *f)
{
    memset(f, 0, sizeof(*f));
}

void spsvc_fields_add(spsvc_fields *f, const char *path, const char *reason)
{
    if (reason == NULL || f->n >= SPSVC_MAX_FIELDS) return;
    Sp__V1__FieldError *e = &f->items[f->n];
    sp__v1__field_error__init(e);
    e->path = (char *)path;
    e->reason = (char *)reason;
    f->ptrs[f->n] = e;
    f->n++;
}

sp_status spsvc_fields_or_reply(spbus_req *req, const spsvc_fields *f)
{
    if (f->n == 0) return SP_OK;
    spbus_reply_error_fields(req, SP_ERR_VALIDATION_FAILED, "invalid input",
                             (Sp__V1__FieldError **)f->ptrs, f->n);
    return SP_ERR_VALIDATION_FAILED;
}

sp_status spsvc_fail(spbus_req *req, sp_status code, const char *message)
{
    spbus_reply_error(req, code, message, NULL);
    return code;
}

sp_status spsvc_forward_error_reply(spbus_req *req, sp_status s, const Sp__V1__Error *err)
{
    if (err == NULL) {
        spbus_reply_error(
            req, s == SP_OK ? SP_ERR_INTERNAL : s,
            s == SP_ERR_UNAVAILABLE ? "a service did not answer in time" : "internal error", NULL);
        return s;
    }
    if (err->has_retry_after_s && err->retry_after_s > 0)
        spbus_reply_error_retry(req, s, err->message, err->retry_after_s);
    else
        spbus_reply_error_fields(req, s, err->message, err->fields, err->n_fields);
    return s;
}

int spsvc_utf8_next(const char *s, uint32_t *cp)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned c = p[0];
    int more;
    uint32_t v;
    if (c < 0x80) {
        *cp = c;
        return c == 0 ? 0 : 1;
    } else if ((c & 0xE0) == 0xC0) {
        more = 1;
        v = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        more = 2;
        v = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        more = 3;
        v = c & 0x07;
    } else {
        return -1;
    }
    for (int i = 1; i <= more; i++) {
        if ((p[i] & 0xC0) != 0x80) return -1; /* the terminating NUL included */
        v = (v << 6) | (p[i] & 0x3F);
    }
    /* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
    if ((more == 1 && v < 0x80) || (more == 2 && v < 0x800) || (more == 3 && v < 0x10000) ||
        (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF)
        return -1;
    *cp = v;
    return more + 1;
}

long spsvc_utf8_len(const char *s)
{
    long n = 0;
    uint32_t cp;
    for (int k; (k = spsvc_utf8_next(s, &cp)) != 0; s += k, n++)
        if (k < 0) return -1;
    return n;
}

bool spsvc_invisible(uint32_t cp)
{
    static const uint32_t ranges[][2] = {
        {0x0000, 0x0020},   {0x007F, 0x00A0},   {0x00AD, 0x00AD},   {0x034F, 0x034F},
        {0x061C, 0x061C},   {0x115F, 0x1160},   {0x1680, 0x1680},   {0x17B4, 0x17B5},
        {0x180B, 0x180F},   {0x2000, 0x200F},   {0x2028, 0x202F},   {0x205F, 0x206F},
        {0x2800, 0x2800},   {0x3000, 0x3000},   {0x3164, 0x3164},   {0xE000, 0xF8FF},
        {0xFE00, 0xFE0F},   {0xFEFF, 0xFEFF},   {0xFFA0, 0xFFA0},   {0xFFF0, 0xFFFF},
        {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0000, 0xE0FFF}, {0xF0000, 0x10FFFF},
    };
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
        if (cp >= ranges[i][0] && cp <= ranges[i][1]) return true;
    return false;
}

static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p < 0x20 || *p == 0x7F) return true;
    return false;
}

/* The reason for a text over 'max': a literal, since reasons outlive the check. */
static const char *too_long(long max)
{
    switch (max) {
    case 20:
        return "at most 20 characters";
    case 32:
        return "at most 32 characters";
    case 40:
        return "at most 40 characters";
    case 80:
        return "at most 80 characters";
    case 120:
        return "at most 120 characters";
    case 200:
        return "at most 200 characters";
    case 254:
        return "at most 254 characters";
    default:
        return "too long";
    }
}

const char *spsvc_check_text(const char *s, long max)
{
    if (s == NULL) return "required";
    long n = spsvc_utf8_len(s);
    if (n < 0) return "must be valid UTF-8";
    if (n == 0) return "must not be empty";
    if (n > max) return too_long(max);
    if (has_control(s)) return "must not contain control characters";
    if (strspn(s, " \t") == strlen(s)) return "must not be blank";
    return NULL;
}

const char *spsvc_check_opt_text(const char *s, long max)
{
    return s == NULL ? NULL : spsvc_check_text(s, max);
}

const char *spsvc_check_uuid(const char *s)
{
    if (s == NULL) return "required";
    return spcrypto_uuid_valid(s) ? NULL : "must be a UUID";
}

static sp_status limit_or_reply(int *out, spbus_req *req, bool has, int64_t value)
{
    *out = SPSVC_LIST_DEFAULT;
    if (!has) return SP_OK;
    if (value < 1 || value > SPSVC_LIST_MAX) {
        spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "invalid input", "limit", "must be 1..500",
                          NULL);
        return SP_ERR_VALIDATION_FAILED;
    }
    *out = (int)value;
    return SP_OK;
}

/* The cursor is "c1.<at>.<id>" in base64url: a version tag, then the keyset. */
bool spsvc_cursor_decode(int64_t *at, int64_t *id, const char *cursor)
{
    uint8_t raw[64];
    char text[65], tail;
    long long a = 0, i = 0;

    *at = *id = -1;
    size_t len = strlen(cursor);
    long n = len <= SPSVC_CURSOR_MAX ? spcrypto_b64url_decode(raw, sizeof(raw), cursor, len) : -1;
    if (n <= 0) return false;
    memcpy(text, raw, (size_t)n);
    text[n] = '\0';
    if (sscanf(text, "c1.%lld.%lld%c", &a, &i, &tail) != 2 || a < 0 || i < 0) return false;
    /* canonical only: one cursor per position */
    char again[SPSVC_CURSOR_MAX + 1];
    spsvc_cursor_encode(again, a, i);
    if (strcmp(again, cursor) != 0) return false;
    *at = a;
    *id = i;
    return true;
}

void spsvc_cursor_encode(char out[SPSVC_CURSOR_MAX + 1], int64_t at, int64_t id)
{
    char text[64];
    int n = snprintf(text, sizeof(text), "c1.%" PRId64 ".%" PRId64, at, id);
    spcrypto_b64url_encode(out, text, n > 0 ? (size_t)n : 0);
}

static sp_status cursor_or_reply(int64_t *at, int64_t *id, spbus_req *req, const char *cursor)
{
    *at = *id = -1;
    if (cursor == NULL || cursor[0] == '\0' || spsvc_cursor_decode(at, id, cursor)) return SP_OK;
    spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "invalid input", "cursor", "invalid cursor",
                      NULL);
    return SP_ERR_VALIDATION_FAILED;
}

char *spsvc_cursor(spbus_req *req, int64_t at, int64_t id)
{
    char *out = sp_arena_alloc(spbus_req_arena(req), SPSVC_CURSOR_MAX + 1);
    if (out != NULL) spsvc_cursor_encode(out, at, id);
    return out;
}

sp_status spsvc_page_or_reply(spsvc_page *p, spbus_req *req, bool has_limit, int64_t limit,
                              const char *cursor)
{
    memset(p, 0, sizeof(*p));
    sp_status s = limit_or_reply(&p->limit, req, has_limit, limit);
    if (s == SP_OK) s = cursor_or_reply(&p->at, &p->id, req, cursor);
    snprintf(p->at_s, sizeof(p->at_s), "%" PRId64, p->at);
    snprintf(p->id_s, sizeof(p->id_s), "%" PRId64, p->id);
    snprintf(p->fetch_s, sizeof(p->fetch_s), "%d", p->limit + 1);
    return s;
}

const char *spsvc_page_after(const spsvc_page *p)
{
    return p->at >= 0 ? p->at_s : NULL;
}

int spsvc_page_rows(char **next, spbus_req *req, const spsvc_page *p, PGresult *res, int at_col,
                    int id_col)
{
    int rows = PQntuples(res), n = rows > p->limit ? p->limit : rows;
    *next = NULL;
    if (rows > p->limit && n > 0)
        *next = spsvc_cursor(req, spsvc_pg_int64(PQgetvalue(res, n - 1, at_col)),
                             spsvc_pg_int64(PQgetvalue(res, n - 1, id_col)));
    return n;
}

ProtobufCMessage **spsvc_items_or_reply(spbus_req *req, const ProtobufCMessageDescriptor *desc,
                                        size_t n)
{
    sp_arena *a = spbus_req_arena(req);
    size_t cap = n > 0 ? n : 1;
    char *items = cap <= SIZE_MAX / desc->sizeof_message
                      ? sp_arena_alloc(a, desc->sizeof_message * cap)
                      : NULL;
    ProtobufCMessage **ptrs = cap <= SIZE_MAX / sizeof(ProtobufCMessage *)
                                  ? sp_arena_alloc(a, sizeof(ProtobufCMessage *) * cap)
                                  : NULL;
    if (items == NULL || ptrs == NULL) {
        spbus_reply_error(req, SP_ERR_INTERNAL, "internal error", NULL);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        ptrs[i] = (ProtobufCMessage *)(void *)(items + i * desc->sizeof_message);
        protobuf_c_message_init(desc, ptrs[i]);
    }
    return ptrs;
}

sp_status spsvc_reply_page(spbus_req *req, const spsvc_page *pg, PGresult *res, int at_col,
                           int id_col, const ProtobufCMessageDescriptor *desc, spsvc_fill_fn fill)
{
    const ProtobufCFieldDescriptor *fi = protobuf_c_message_descriptor_get_field(desc, 1);
    const ProtobufCFieldDescriptor *fn = protobuf_c_message_descriptor_get_field(desc, 2);
    if (fi == NULL || fi->label != PROTOBUF_C_LABEL_REPEATED ||
        fi->type != PROTOBUF_C_TYPE_MESSAGE || fn == NULL || fn->type != PROTOBUF_C_TYPE_STRING)
        return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    char *out = sp_arena_alloc(spbus_req_arena(req), desc->sizeof_message);
    if (out == NULL) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    protobuf_c_message_init(desc, out);
    char *next = NULL;
    int n = spsvc_page_rows(&next, req, pg, res, at_col, id_col);
    ProtobufCMessage **items = spsvc_items_or_reply(req, fi->descriptor, (size_t)n);
    if (items == NULL) return SP_OK;
    for (int i = 0; i < n; i++)
        fill(items[i], res, i, req);
    memcpy(out + fi->quantifier_offset, &(size_t){(size_t)n}, sizeof(size_t));
    memcpy(out + fi->offset, &items, sizeof(items));
    memcpy(out + fn->offset, &next, sizeof(next));
    spbus_reply(req, (ProtobufCMessage *)(void *)out);
    return SP_OK;
}

int64_t spsvc_pg_int64(const char *v)
{
    return v == NULL ? 0 : strtoll(v, NULL, 10);
}

char *spsvc_nonempty(const char *s)
{
    return s != NULL && s[0] != '\0' ? (char *)s : NULL;
}
