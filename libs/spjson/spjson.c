/* spjson.c -- strict JSON: a validating scanner in front of cJSON 1.7.15, then a walk. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spjson.h"

/* cJSON parses nesting recursively up to CJSON_NESTING_LIMIT (1000): never ask for more. */
#define SPJSON_MAX_DEPTH 1000
/* cJSON 1.7.15 copies at most 63 bytes of a number before strtod: longer ones misparse. */
#define SPJSON_MAX_NUMBER 63
/* How much of a key an error message quotes. */
#define SPJSON_KEY_QUOTE 40

/* ---- UTF-8 -------------------------------------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p[0..n) (Unicode table 3-7), or 0 with the
 * reason in *why. */
static size_t utf8_seq(const unsigned char *p, size_t n, const char **why)
{
    unsigned char c = p[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */

    if (c < 0x80) return 1;
    if (c < 0xC2) {
        *why = c < 0xC0 ? "invalid UTF-8 (stray continuation byte)" : "overlong UTF-8";
        return 0;
    }
    if (c < 0xE0) {
        need = 2;
    } else if (c < 0xF0) {
        need = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c < 0xF5) {
        need = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *why = c < 0xF8 ? "UTF-8 code point above U+10FFFF" : "invalid UTF-8 byte";
        return 0;
    }
    if (n < need) {
        *why = "truncated UTF-8 sequence";
        return 0;
    }
    if (p[1] < lo || p[1] > hi) {
        if (p[1] < 0x80 || p[1] > 0xBF)
            *why = "invalid UTF-8 (bad continuation byte)";
        else if (c == 0xED)
            *why = "surrogate encoded in UTF-8";
        else if (c == 0xF4)
            *why = "UTF-8 code point above U+10FFFF";
        else
            *why = "overlong UTF-8";
        return 0;
    }
    for (size_t i = 2; i < need; i++) {
        if (p[i] < 0x80 || p[i] > 0xBF) {
            *why = "invalid UTF-8 (bad continuation byte)";
            return 0;
        }
    }
    return need;
}

/* Offset of the first invalid sequence, or len when s[0..len) is valid. */
static size_t utf8_check(const char *s, size_t len, const char **why)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(p + i, len - i, why);
        if (k == 0) return i;
        i += k;
    }
    return len;
}

bool spjson_utf8_valid(const char *s, size_t len)
{
    const char *why = NULL;
    if (s == NULL) return len == 0;
    return utf8_check(s, len, &why) == len;
}

size_t spjson_utf8_len(const char *s)
{
    size_t n = 0;
    if (s == NULL) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xC0) != 0x80) n++;
    return n;
}

/* ---- the scanner: RFC 8259 grammar over the raw bytes ----------------------------------- */

typedef struct {
    const char *buf;
    size_t len, pos;
    int max_depth;
    char *err;
    size_t errlen;
    bool failed;
    size_t *keys; /* byte offset of every object key, in document order */
    size_t nkeys, capkeys;
} scanner;

static void __attribute__((format(printf, 3, 4)))
fail_at(scanner *sc, size_t at, const char *fmt, ...)
{
    if (sc->failed) return;
    sc->failed = true;
    if (sc->err == NULL || sc->errlen == 0) return;
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(sc->err, sc->errlen, "%s at byte %zu", what, at);
}

static void skip_ws(scanner *sc)
{
    while (sc->pos < sc->len) {
        char c = sc->buf[sc->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        sc->pos++;
    }
}

static void unexpected(scanner *sc, const char *expected)
{
    if (sc->pos >= sc->len) {
        fail_at(sc, sc->pos, "unexpected end of input, expected %s", expected);
        return;
    }
    unsigned char c = (unsigned char)sc->buf[sc->pos];
    if (c >= 0x21 && c < 0x7F)
        fail_at(sc, sc->pos, "unexpected '%c', expected %s", c, expected);
    else
        fail_at(sc, sc->pos, "unexpected byte 0x%02X, expected %s", c, expected);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at buf[at..], or -1. */
static long hex4(const scanner *sc, size_t at)
{
    if (at > sc->len || sc->len - at < 4) return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(sc->buf[at + (size_t)i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* A string starting at the opening quote. UTF-8 was validated for the whole body before. */
static void scan_string(scanner *sc)
{
    size_t start = sc->pos;
    sc->pos++;
    while (sc->pos < sc->len) {
        unsigned char c = (unsigned char)sc->buf[sc->pos];
        if (c == '"') {
            sc->pos++;
            return;
        }
        if (c < 0x20) {
            fail_at(sc, sc->pos, "control character 0x%02X in string", c);
            return;
        }
        if (c != '\\') {
            sc->pos++;
            continue;
        }
        size_t esc = sc->pos;
        if (esc + 1 >= sc->len) break;
        char e = sc->buf[esc + 1];
        if (strchr("\"\\/bfnrt", e) != NULL && e != '\0') {
            sc->pos += 2;
            continue;
        }
        if (e != 'u') {
            fail_at(sc, esc, "invalid escape in string");
            return;
        }
        long u = hex4(sc, esc + 2);
        if (u < 0) {
            fail_at(sc, esc, "invalid \\u escape in string");
            return;
        }
        if (u == 0) {
            fail_at(sc, esc, "\\u0000 not allowed in string");
            return;
        }
        sc->pos = esc + 6;
        if (u >= 0xDC00 && u <= 0xDFFF) {
            fail_at(sc, esc, "lone low surrogate \\u%04lX in string", u);
            return;
        }
        if (u >= 0xD800 && u <= 0xDBFF) {
            long lo = -1;
            if (sc->pos + 1 < sc->len && sc->buf[sc->pos] == '\\' && sc->buf[sc->pos + 1] == 'u')
                lo = hex4(sc, sc->pos + 2);
            if (lo < 0xDC00 || lo > 0xDFFF) {
                fail_at(sc, esc, "lone high surrogate \\u%04lX in string", u);
                return;
            }
            sc->pos += 6;
        }
    }
    fail_at(sc, start, "unterminated string");
}

static void scan_number(scanner *sc)
{
    size_t start = sc->pos;
    const char *b = sc->buf;
    size_t p = sc->pos, n = sc->len;

    if (p < n && b[p] == '-') p++;
    if (p >= n || b[p] < '0' || b[p] > '9') {
        fail_at(sc, start, "invalid number");
        return;
    }
    if (b[p] == '0') {
        p++;
        if (p < n && b[p] >= '0' && b[p] <= '9') {
            fail_at(sc, start, "leading zero in number");
            return;
        }
    } else {
        while (p < n && b[p] >= '0' && b[p] <= '9')
            p++;
    }
    if (p < n && b[p] == '.') {
        p++;
        if (p >= n || b[p] < '0' || b[p] > '9') {
            fail_at(sc, start, "invalid number (digit expected after '.')");
            return;
        }
        while (p < n && b[p] >= '0' && b[p] <= '9')
            p++;
    }
    if (p < n && (b[p] == 'e' || b[p] == 'E')) {
        p++;
        if (p < n && (b[p] == '+' || b[p] == '-')) p++;
        if (p >= n || b[p] < '0' || b[p] > '9') {
            fail_at(sc, start, "invalid number (digit expected in exponent)");
            return;
        }
        while (p < n && b[p] >= '0' && b[p] <= '9')
            p++;
    }
    if (p - start > SPJSON_MAX_NUMBER) {
        fail_at(sc, start, "number longer than %d characters", SPJSON_MAX_NUMBER);
        return;
    }
    char tmp[SPJSON_MAX_NUMBER + 1];
    memcpy(tmp, b + start, p - start);
    tmp[p - start] = '\0';
    if (!isfinite(strtod(tmp, NULL))) {
        fail_at(sc, start, "number out of range");
        return;
    }
    sc->pos = p;
}

static void scan_literal(scanner *sc, const char *word)
{
    size_t n = strlen(word);
    if (sc->len - sc->pos < n || memcmp(sc->buf + sc->pos, word, n) != 0) {
        unexpected(sc, "a value");
        return;
    }
    sc->pos += n;
}

static bool add_key(scanner *sc, size_t at)
{
    if (sc->nkeys == sc->capkeys) {
        size_t cap = sc->capkeys ? sc->capkeys * 2 : 32;
        size_t *k = realloc(sc->keys, cap * sizeof(*k));
        if (k == NULL) return false;
        sc->keys = k;
        sc->capkeys = cap;
    }
    sc->keys[sc->nkeys++] = at;
    return true;
}

static void scan_value(scanner *sc, int depth);

static void scan_object(scanner *sc, int depth)
{
    sc->pos++; /* '{' */
    skip_ws(sc);
    if (sc->pos < sc->len && sc->buf[sc->pos] == '}') {
        sc->pos++;
        return;
    }
    for (;;) {
        skip_ws(sc);
        if (sc->pos >= sc->len || sc->buf[sc->pos] != '"') {
            unexpected(sc, "a string key");
            return;
        }
        if (!add_key(sc, sc->pos)) {
            fail_at(sc, sc->pos, "out of memory");
            return;
        }
        scan_string(sc);
        if (sc->failed) return;
        skip_ws(sc);
        if (sc->pos >= sc->len || sc->buf[sc->pos] != ':') {
            unexpected(sc, "':'");
            return;
        }
        sc->pos++;
        scan_value(sc, depth);
        if (sc->failed) return;
        skip_ws(sc);
        if (sc->pos < sc->len && sc->buf[sc->pos] == ',') {
            sc->pos++;
            continue;
        }
        if (sc->pos < sc->len && sc->buf[sc->pos] == '}') {
            sc->pos++;
            return;
        }
        unexpected(sc, "',' or '}'");
        return;
    }
}

static void scan_array(scanner *sc, int depth)
{
    sc->pos++; /* '[' */
    skip_ws(sc);
    if (sc->pos < sc->len && sc->buf[sc->pos] == ']') {
        sc->pos++;
        return;
    }
    for (;;) {
        scan_value(sc, depth);
        if (sc->failed) return;
        skip_ws(sc);
        if (sc->pos < sc->len && sc->buf[sc->pos] == ',') {
            sc->pos++;
            continue;
        }
        if (sc->pos < sc->len && sc->buf[sc->pos] == ']') {
            sc->pos++;
            return;
        }
        unexpected(sc, "',' or ']'");
        return;
    }
}

/* 'depth' is the number of containers around the value. */
static void scan_value(scanner *sc, int depth)
{
    skip_ws(sc);
    if (sc->pos >= sc->len) {
        unexpected(sc, "a value");
        return;
    }
    char c = sc->buf[sc->pos];
    if (c == '{' || c == '[') {
        if (depth + 1 > sc->max_depth) {
            fail_at(sc, sc->pos, "nesting deeper than %d", sc->max_depth);
            return;
        }
        if (c == '{')
            scan_object(sc, depth + 1);
        else
            scan_array(sc, depth + 1);
    } else if (c == '"') {
        scan_string(sc);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        scan_number(sc);
    } else if (c == 't') {
        scan_literal(sc, "true");
    } else if (c == 'f') {
        scan_literal(sc, "false");
    } else if (c == 'n') {
        scan_literal(sc, "null");
    } else {
        unexpected(sc, "a value");
    }
}

/* ---- the walk over cJSON's tree: duplicate keys, non-finite numbers ---------------------- */

typedef struct {
    const char *key;
    size_t idx; /* document order, indexes scanner.keys */
} keyref;

static int keyref_cmp(const void *a, const void *b)
{
    const keyref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c != 0) return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Copies at most SPJSON_KEY_QUOTE bytes of key, cut on a code point boundary. */
static void quote_key(char *out, size_t outlen, const char *key)
{
    size_t n = strlen(key);
    if (n > SPJSON_KEY_QUOTE) {
        n = SPJSON_KEY_QUOTE;
        while (n > 0 && ((unsigned char)key[n] & 0xC0) == 0x80)
            n--;
    }
    if (n >= outlen) n = outlen - 1;
    memcpy(out, key, n);
    out[n] = '\0';
}

/* Pre-order, the same order in which the scanner met the keys: *next is the key index. */
static void walk(scanner *sc, const cJSON *node, size_t *next)
{
    if (cJSON_IsNumber(node) && !isfinite(node->valuedouble)) {
        fail_at(sc, 0, "number out of range");
        return;
    }
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return;

    bool obj = cJSON_IsObject(node);
    size_t n = 0;
    for (const cJSON *c = node->child; c != NULL; c = c->next)
        n++;
    keyref *refs = NULL;
    if (obj && n > 1) {
        refs = malloc(n * sizeof(*refs));
        if (refs == NULL) {
            fail_at(sc, 0, "out of memory");
            return;
        }
    }
    size_t i = 0;
    for (const cJSON *c = node->child; c != NULL && !sc->failed; c = c->next, i++) {
        if (obj) {
            if (refs != NULL) refs[i] = (keyref){c->string, *next};
            (*next)++;
        }
        walk(sc, c, next);
    }
    if (refs != NULL && !sc->failed) {
        qsort(refs, n, sizeof(*refs), keyref_cmp);
        size_t dup = (size_t)-1;
        const char *dupkey = NULL;
        for (size_t k = 1; k < n; k++) {
            if (strcmp(refs[k - 1].key, refs[k].key) == 0 && refs[k].idx < dup) {
                dup = refs[k].idx;
                dupkey = refs[k].key;
            }
        }
        if (dupkey != NULL) {
            char q[SPJSON_KEY_QUOTE + 1];
            quote_key(q, sizeof(q), dupkey);
            fail_at(sc, dup < sc->nkeys ? sc->keys[dup] : 0, "duplicate key '%s'", q);
        }
    }
    free(refs);
}

sp_status spjson_parse(cJSON **out, const char *buf, size_t len, int max_depth, char *err,
                       size_t errlen)
{
    *out = NULL;
    if (err != NULL && errlen > 0) err[0] = '\0';
    if (max_depth <= 0) max_depth = SPJSON_DEFAULT_DEPTH;
    if (max_depth > SPJSON_MAX_DEPTH) max_depth = SPJSON_MAX_DEPTH;

    scanner sc = {.buf = buf,
                  .len = buf == NULL ? 0 : len,
                  .max_depth = max_depth,
                  .err = err,
                  .errlen = errlen};
    const char *why = NULL;
    size_t bad = utf8_check(buf, sc.len, &why);
    if (bad < sc.len) fail_at(&sc, bad, "%s", why);

    if (!sc.failed) {
        skip_ws(&sc);
        if (sc.pos >= sc.len) {
            if (err != NULL && errlen > 0)
                snprintf(err, errlen, "%s", sc.len == 0 ? "empty body" : "only whitespace");
            sc.failed = true;
        }
    }
    if (!sc.failed) scan_value(&sc, 0);
    if (!sc.failed) {
        skip_ws(&sc);
        if (sc.pos < sc.len) fail_at(&sc, sc.pos, "unexpected data after the JSON value");
    }

    cJSON *root = NULL;
    if (!sc.failed) {
        const char *end = NULL;
        root = cJSON_ParseWithLengthOpts(buf, sc.len, &end, false);
        if (root == NULL) fail_at(&sc, end != NULL ? (size_t)(end - buf) : 0, "cJSON rejected");
    }
    if (!sc.failed) {
        size_t next = 0;
        walk(&sc, root, &next);
    }
    free(sc.keys);
    if (sc.failed) {
        cJSON_Delete(root);
        return SP_ERR_MALFORMED_JSON;
    }
    *out = root;
    return SP_OK;
}

cJSON *spjson_get(const cJSON *obj, const char *key)
{
    if (!cJSON_IsObject(obj) || key == NULL) return NULL;
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

bool spjson_int_in(const cJSON *v, int64_t min, int64_t max, int64_t *out)
{
    if (out != NULL) *out = 0;
    if (!cJSON_IsNumber(v)) return false;
    double d = v->valuedouble;
    /* 2^63 is exact as a double; anything at or beyond it does not fit an int64_t. */
    if (!isfinite(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return false;
    int64_t i = (int64_t)d;
    if ((double)i != d) return false; /* not integral */
    if (i < min || i > max) return false;
    if (out != NULL) *out = i;
    return true;
}
