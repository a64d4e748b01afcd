/* test_spjson.c -- unit tests of the strict JSON layer: every cJSON trap of pitfalls.md. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spjson.h"

static char err[256];

/* Parses s[0..len) with the given depth; the document is kept in 'doc' for the test. */
static cJSON *doc;

static sp_status parse_n(const char *s, size_t len, int depth)
{
    cJSON_Delete(doc);
    doc = NULL;
    err[0] = '\0';
    sp_status st = spjson_parse(&doc, s, len, depth, err, sizeof(err));
    if (st != SP_OK) ck_assert_ptr_null(doc);
    if (st == SP_OK) ck_assert_ptr_nonnull(doc);
    return st;
}

static sp_status parse(const char *s)
{
    return parse_n(s, strlen(s), SPJSON_DEFAULT_DEPTH);
}

static void teardown(void)
{
    cJSON_Delete(doc);
    doc = NULL;
}

#define ck_assert_rejected(json, needle)                                                           \
    do {                                                                                           \
        ck_assert_int_eq(parse(json), SP_ERR_MALFORMED_JSON);                                      \
        ck_assert_msg(strstr(err, needle) != NULL, "err '%s' lacks '%s'", err, needle);            \
    } while (0)

/* ---- trailing data ---- */

START_TEST(rejects_trailing_garbage)
{
    ck_assert_rejected("{\"a\":1}xyz", "at byte 7");
    ck_assert_rejected("{\"a\":1}xyz", "after the JSON value");
}
END_TEST

START_TEST(rejects_second_value)
{
    ck_assert_rejected("{\"a\":1} {\"b\":2}", "at byte 8");
    ck_assert_rejected("1 2", "at byte 2");
}
END_TEST

START_TEST(accepts_trailing_whitespace)
{
    ck_assert_int_eq(parse(" \t\r\n{\"a\":1} \r\n\t"), SP_OK);
    ck_assert_int_eq(spjson_get(doc, "a")->valueint, 1);
}
END_TEST

START_TEST(reads_only_len_bytes)
{
    /* A request body is not NUL-terminated: what follows len must be ignored. */
    const char body[] = "[1]]]]garbage";
    ck_assert_int_eq(parse_n(body, 3, 32), SP_OK);
    ck_assert(cJSON_IsArray(doc));
    ck_assert_int_eq(cJSON_GetArraySize(doc), 1);
    ck_assert_int_eq(parse_n("\"abc\"", 3, 32), SP_ERR_MALFORMED_JSON); /* "ab, cut */
    ck_assert_ptr_nonnull(strstr(err, "unterminated string"));
}
END_TEST

/* ---- UTF-8 ---- */

START_TEST(never_reads_past_len)
{
    /* Exact-size heap copies without a NUL: AddressSanitizer catches any read beyond. */
    const char *bodies[] = {"{\"a\":1}", "123",           "-1.5e3",   "\"x\"", "true",
                            "null",      "[\"\\u00e9\"]", "{\"a\":1", "12x",   "\"\\u12"};
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        size_t n = strlen(bodies[i]);
        char *b = malloc(n);
        memcpy(b, bodies[i], n);
        sp_status st = parse_n(b, n, 32);
        free(b);
        ck_assert_int_eq(st, i < 7 ? SP_OK : SP_ERR_MALFORMED_JSON);
    }
}
END_TEST

START_TEST(rejects_invalid_utf8_in_string)
{
    ck_assert_rejected("{\"name\":\"a\xff"
                       "b\"}",
                       "at byte 10");
    ck_assert_rejected("{\"name\":\"a\x80\"}", "UTF-8");
    ck_assert_rejected("[\"\xc3\"]", "UTF-8"); /* lead byte followed by a quote */
    ck_assert_rejected("[\"\xe2\x82\"]", "UTF-8");
}
END_TEST

START_TEST(rejects_invalid_utf8_outside_strings)
{
    ck_assert_rejected("{\"a\":1}\xff", "at byte 7");
    ck_assert_rejected("[1,\xc3\xa9]", "unexpected byte 0xC3");   /* valid UTF-8, not JSON */
    ck_assert_rejected("\xef\xbb\xbf{}", "unexpected byte 0xEF"); /* BOM is not JSON */
}
END_TEST

START_TEST(rejects_truncated_utf8_at_end)
{
    const char body[] = "[\"\xe2\x82";
    ck_assert_int_eq(parse_n(body, sizeof(body) - 1, 32), SP_ERR_MALFORMED_JSON);
    ck_assert_ptr_nonnull(strstr(err, "truncated UTF-8"));
}
END_TEST

START_TEST(rejects_overlong_utf8)
{
    ck_assert_rejected("[\"\xc0\xaf\"]", "overlong"); /* '/' in two bytes */
    ck_assert_rejected("[\"\xc1\xbf\"]", "overlong");
    ck_assert_rejected("[\"\xe0\x80\xaf\"]", "overlong");     /* '/' in three bytes */
    ck_assert_rejected("[\"\xf0\x80\x80\xaf\"]", "overlong"); /* '/' in four bytes */
}
END_TEST

START_TEST(rejects_utf8_encoded_surrogates)
{
    ck_assert_rejected("[\"\xed\xa0\x80\"]", "surrogate");
    ck_assert_rejected("[\"\xed\xbf\xbf\"]", "surrogate");
}
END_TEST

START_TEST(rejects_code_points_above_10ffff)
{
    ck_assert_rejected("[\"\xf4\x90\x80\x80\"]", "U+10FFFF");
    ck_assert_rejected("[\"\xf5\x80\x80\x80\"]", "U+10FFFF");
}
END_TEST

START_TEST(accepts_valid_multibyte_utf8)
{
    ck_assert_int_eq(
        parse("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf\"]"), SP_OK);
    ck_assert_str_eq(cJSON_GetArrayItem(doc, 0)->valuestring,
                     "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf");
}
END_TEST

/* ---- escapes ---- */

START_TEST(rejects_escaped_nul)
{
    ck_assert_rejected("{\"a\":\"ab\\u0000cd\"}", "\\u0000");
    ck_assert_rejected("{\"a\":\"ab\\u0000cd\"}", "at byte 8");
}
END_TEST

START_TEST(accepts_escaped_backslash_before_u0000)
{
    ck_assert_int_eq(parse("{\"a\":\"\\\\u0000\"}"), SP_OK);
    ck_assert_str_eq(spjson_get(doc, "a")->valuestring, "\\u0000");
}
END_TEST

START_TEST(rejects_lone_high_surrogate)
{
    ck_assert_rejected("[\"\\ud800\"]", "lone high surrogate");
    ck_assert_rejected("[\"\\uD83D\\u0041\"]", "lone high surrogate");
    ck_assert_rejected("[\"\\uD83Dx\"]", "lone high surrogate");
}
END_TEST

START_TEST(rejects_lone_low_surrogate)
{
    ck_assert_rejected("[\"\\udc00\"]", "lone low surrogate");
    ck_assert_rejected("[\"\\ude00\\ud83d\"]", "lone low surrogate"); /* reversed pair */
}
END_TEST

START_TEST(decodes_surrogate_pair)
{
    ck_assert_int_eq(parse("[\"\\ud83d\\ude00\"]"), SP_OK);
    ck_assert_str_eq(cJSON_GetArrayItem(doc, 0)->valuestring, "\xf0\x9f\x98\x80");
}
END_TEST

START_TEST(decodes_simple_escapes)
{
    ck_assert_int_eq(parse("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\"]"), SP_OK);
    ck_assert_str_eq(cJSON_GetArrayItem(doc, 0)->valuestring, "\"\\/\b\f\n\r\t\xc3\xa9");
}
END_TEST

START_TEST(rejects_bad_escapes)
{
    ck_assert_rejected("[\"\\x41\"]", "invalid escape");
    ck_assert_rejected("[\"\\u12\"]", "invalid \\u escape");
    ck_assert_rejected("[\"\\u12g4\"]", "invalid \\u escape");
    ck_assert_rejected("[\"\\'\"]", "invalid escape");
}
END_TEST

START_TEST(rejects_raw_control_characters_in_strings)
{
    ck_assert_rejected("[\"a\nb\"]", "control character 0x0A");
    ck_assert_rejected("[\"a\tb\"]", "control character 0x09");
    const char nul[] = "[\"a\0b\"]";
    ck_assert_int_eq(parse_n(nul, sizeof(nul) - 1, 32), SP_ERR_MALFORMED_JSON);
    ck_assert_ptr_nonnull(strstr(err, "control character 0x00"));
}
END_TEST

/* ---- numbers ---- */

START_TEST(rejects_positive_infinity)
{
    ck_assert_rejected("{\"n\":1e400}", "number out of range");
    ck_assert_rejected("{\"n\":1e400}", "at byte 5");
}
END_TEST

START_TEST(rejects_negative_infinity)
{
    ck_assert_rejected("[-1e400]", "number out of range");
}
END_TEST

START_TEST(rejects_leading_zeros)
{
    ck_assert_rejected("[012]", "leading zero");
    ck_assert_rejected("[-012]", "leading zero");
    ck_assert_rejected("00", "leading zero");
}
END_TEST

START_TEST(rejects_malformed_numbers)
{
    ck_assert_rejected("[1.]", "invalid number");
    ck_assert_rejected("[.5]", "unexpected '.'");
    ck_assert_rejected("[+1]", "unexpected '+'");
    ck_assert_rejected("[1e]", "invalid number");
    ck_assert_rejected("[-]", "invalid number");
    ck_assert_rejected("[NaN]", "unexpected 'N'");
    ck_assert_rejected("[Infinity]", "unexpected 'I'");
    ck_assert_rejected("[0x10]", "unexpected 'x'");
}
END_TEST

START_TEST(accepts_number_forms)
{
    ck_assert_int_eq(parse("[0,-0,0.5,-12.25e2,1E+2,2e-2,1e-400]"), SP_OK);
    ck_assert(cJSON_GetArrayItem(doc, 2)->valuedouble == 0.5);
    ck_assert(cJSON_GetArrayItem(doc, 3)->valuedouble == -1225.0);
    ck_assert(cJSON_GetArrayItem(doc, 4)->valuedouble == 100.0);
    ck_assert(cJSON_GetArrayItem(doc, 6)->valuedouble == 0.0); /* underflow is finite */
}
END_TEST

START_TEST(rejects_numbers_cjson_would_truncate)
{
    char body[80];
    memset(body, '1', 70);
    body[70] = '\0';
    ck_assert_rejected(body, "number longer than 63");
}
END_TEST

/* ---- depth ---- */

static char *nested(int depth, char open, char close)
{
    char *s = malloc((size_t)depth * 2 + 1);
    for (int i = 0; i < depth; i++) {
        s[i] = open;
        s[depth * 2 - 1 - i] = close;
    }
    s[depth * 2] = '\0';
    return s;
}

START_TEST(accepts_depth_32)
{
    char *s = nested(32, '[', ']');
    ck_assert_int_eq(parse(s), SP_OK);
    free(s);
}
END_TEST

START_TEST(rejects_depth_33)
{
    char *s = nested(33, '[', ']');
    ck_assert_rejected(s, "nesting deeper than 32");
    ck_assert_rejected(s, "at byte 32");
    free(s);
}
END_TEST

START_TEST(depth_counts_objects_and_arrays)
{
    /* {"a":[{"a":[ ... ]}]} with 4 containers: allowed at 4, not at 3 */
    const char *s = "{\"a\":[{\"a\":[]}]}";
    ck_assert_int_eq(parse_n(s, strlen(s), 4), SP_OK);
    ck_assert_int_eq(parse_n(s, strlen(s), 3), SP_ERR_MALFORMED_JSON);
    ck_assert_ptr_nonnull(strstr(err, "nesting deeper than 3"));
}
END_TEST

START_TEST(rejects_deep_nesting_far_below_cjson_limit)
{
    char *s = nested(900, '[', ']');
    ck_assert_rejected(s, "nesting deeper than 32");
    free(s);
}
END_TEST

/* ---- duplicate keys ---- */

START_TEST(rejects_duplicate_top_level_key)
{
    ck_assert_rejected("{\"email\":\"a@x.io\",\"name\":\"A\",\"email\":\"b@x.io\"}",
                       "duplicate key 'email' at byte 29");
}
END_TEST

START_TEST(rejects_duplicate_nested_key)
{
    ck_assert_rejected("{\"a\":{\"x\":1},\"b\":[{\"y\":1,\"y\":2}]}",
                       "duplicate key 'y' at byte 25");
}
END_TEST

START_TEST(rejects_duplicate_key_spelled_with_escape)
{
    ck_assert_rejected("{\"ab\":1,\"\\u0061b\":2}", "duplicate key 'ab' at byte 8");
}
END_TEST

START_TEST(rejects_duplicates_in_large_object)
{
    /* Sorting path: many keys, the duplicate far from its first occurrence. */
    char body[8192];
    size_t n = 0;
    n += (size_t)snprintf(body + n, sizeof(body) - n, "{");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(body + n, sizeof(body) - n, "\"k%d\":%d,", i, i);
    n += (size_t)snprintf(body + n, sizeof(body) - n, "\"k7\":0}");
    ck_assert_rejected(body, "duplicate key 'k7'");
}
END_TEST

START_TEST(accepts_same_key_in_different_objects)
{
    ck_assert_int_eq(parse("{\"a\":{\"a\":1},\"b\":{\"a\":2},\"A\":3}"), SP_OK);
}
END_TEST

/* ---- lookup ---- */

START_TEST(lookup_is_case_sensitive)
{
    ck_assert_int_eq(parse("{\"Email\":\"x\"}"), SP_OK);
    ck_assert_ptr_nonnull(cJSON_GetObjectItem(doc, "email")); /* the cJSON trap */
    ck_assert_ptr_null(spjson_get(doc, "email"));
    ck_assert_ptr_nonnull(spjson_get(doc, "Email"));
    ck_assert_str_eq(spjson_get(doc, "Email")->valuestring, "x");
}
END_TEST

START_TEST(lookup_on_non_object_is_null)
{
    ck_assert_int_eq(parse("[1,2]"), SP_OK);
    ck_assert_ptr_null(spjson_get(doc, "a"));
    ck_assert_ptr_null(spjson_get(NULL, "a"));
}
END_TEST

/* ---- empty input, grammar ---- */

START_TEST(rejects_empty_body)
{
    ck_assert_int_eq(parse_n("", 0, 32), SP_ERR_MALFORMED_JSON);
    ck_assert_str_eq(err, "empty body");
    ck_assert_int_eq(parse_n(NULL, 0, 32), SP_ERR_MALFORMED_JSON);
}
END_TEST

START_TEST(rejects_whitespace_only)
{
    ck_assert_rejected(" \r\n\t ", "only whitespace");
}
END_TEST

START_TEST(rejects_grammar_errors)
{
    ck_assert_rejected("[1,]", "unexpected ']'");
    ck_assert_rejected("{\"a\":1,}", "unexpected '}', expected a string key");
    ck_assert_rejected("{'a':1}", "unexpected '''");
    ck_assert_rejected("{a:1}", "expected a string key");
    ck_assert_rejected("{\"a\" 1}", "expected ':'");
    ck_assert_rejected("[1 2]", "expected ',' or ']'");
    ck_assert_rejected("[1 // c\n]", "unexpected '/'");
    ck_assert_rejected("{\"a\":1", "unexpected end of input");
    ck_assert_rejected("[tru]", "expected a value");
    ck_assert_rejected("[True]", "unexpected 'T'");
    ck_assert_rejected("\v[]", "unexpected byte 0x0B");
}
END_TEST

START_TEST(accepts_every_value_type)
{
    ck_assert_int_eq(parse("{\"s\":\"x\",\"n\":-1.5,\"t\":true,\"f\":false,\"z\":null,"
                           "\"a\":[1,\"2\",[],{}],\"o\":{\"k\":{}}}"),
                     SP_OK);
    ck_assert(cJSON_IsString(spjson_get(doc, "s")));
    ck_assert(spjson_get(doc, "n")->valuedouble == -1.5);
    ck_assert(cJSON_IsTrue(spjson_get(doc, "t")));
    ck_assert(cJSON_IsFalse(spjson_get(doc, "f")));
    ck_assert(cJSON_IsNull(spjson_get(doc, "z")));
    ck_assert_int_eq(cJSON_GetArraySize(spjson_get(doc, "a")), 4);
    ck_assert(cJSON_IsObject(spjson_get(spjson_get(doc, "o"), "k")));
}
END_TEST

START_TEST(accepts_scalar_documents)
{
    ck_assert_int_eq(parse("\"x\""), SP_OK);
    ck_assert(cJSON_IsString(doc));
    ck_assert_int_eq(parse("42"), SP_OK);
    ck_assert(cJSON_IsNumber(doc));
    ck_assert_int_eq(parse("true"), SP_OK);
    ck_assert(cJSON_IsTrue(doc));
    ck_assert_int_eq(parse("false"), SP_OK);
    ck_assert(cJSON_IsFalse(doc));
    ck_assert_int_eq(parse("null"), SP_OK);
    ck_assert(cJSON_IsNull(doc));
    ck_assert_int_eq(parse("{}"), SP_OK);
    ck_assert_int_eq(parse("[]"), SP_OK);
}
END_TEST

START_TEST(works_without_error_buffer)
{
    cJSON *d = NULL;
    ck_assert_int_eq(spjson_parse(&d, "{}x", 3, 32, NULL, 0), SP_ERR_MALFORMED_JSON);
    ck_assert_ptr_null(d);
    char tiny[8];
    ck_assert_int_eq(spjson_parse(&d, "{}x", 3, 32, tiny, sizeof(tiny)), SP_ERR_MALFORMED_JSON);
    ck_assert_uint_eq(strlen(tiny), sizeof(tiny) - 1);
}
END_TEST

/* ---- integers ---- */

START_TEST(int_in_checks_range_on_valuedouble)
{
    int64_t v = -1;
    /* 2^31 saturates cJSON's valueint at INT_MAX; the check must still see it. */
    ck_assert_int_eq(parse("[2147483648, 9007199254740992, -9007199254740992, 1e20, "
                           "-9223372036854775808, 9223372036854775807]"),
                     SP_OK);
    const cJSON *big = cJSON_GetArrayItem(doc, 0);
    ck_assert_int_eq(big->valueint, INT32_MAX);
    ck_assert(!spjson_int_in(big, INT32_MIN, INT32_MAX, &v));
    ck_assert(spjson_int_in(big, 0, INT64_MAX, &v));
    ck_assert_int_eq(v, 2147483648LL);

    ck_assert(spjson_int_in(cJSON_GetArrayItem(doc, 1), -(1LL << 53), 1LL << 53, &v));
    ck_assert_int_eq(v, 9007199254740992LL);
    ck_assert(spjson_int_in(cJSON_GetArrayItem(doc, 2), -(1LL << 53), 1LL << 53, &v));
    ck_assert_int_eq(v, -9007199254740992LL);
    ck_assert(!spjson_int_in(cJSON_GetArrayItem(doc, 1), -(1LL << 53), (1LL << 53) - 1, &v));
    ck_assert(!spjson_int_in(cJSON_GetArrayItem(doc, 3), INT64_MIN, INT64_MAX, &v));
    ck_assert(spjson_int_in(cJSON_GetArrayItem(doc, 4), INT64_MIN, INT64_MAX, &v));
    ck_assert(v == INT64_MIN);
    /* 2^63 - 1 is not representable: it rounds to 2^63, beyond int64. */
    ck_assert(!spjson_int_in(cJSON_GetArrayItem(doc, 5), INT64_MIN, INT64_MAX, &v));
}
END_TEST

START_TEST(int_in_rejects_fractions_and_non_numbers)
{
    int64_t v = 7;
    ck_assert_int_eq(parse("[1.5, \"3\", true, null, -0, 3.0]"), SP_OK);
    ck_assert(!spjson_int_in(cJSON_GetArrayItem(doc, 0), INT64_MIN, INT64_MAX, &v));
    ck_assert_int_eq(v, 0);
    ck_assert(!spjson_int_in(cJSON_GetArrayItem(doc, 1), INT64_MIN, INT64_MAX, &v));
    ck_assert(!spjson_int_in(cJSON_GetArrayItem(doc, 2), INT64_MIN, INT64_MAX, &v));
    ck_assert(!spjson_int_in(cJSON_GetArrayItem(doc, 3), INT64_MIN, INT64_MAX, &v));
    ck_assert(!spjson_int_in(NULL, INT64_MIN, INT64_MAX, &v));
    ck_assert(spjson_int_in(cJSON_GetArrayItem(doc, 4), 0, 0, &v));
    ck_assert(spjson_int_in(cJSON_GetArrayItem(doc, 5), 3, 3, &v));
    ck_assert_int_eq(v, 3);
    ck_assert(!spjson_int_in(cJSON_GetArrayItem(doc, 5), 4, 10, &v));
}
END_TEST

/* ---- UTF-8 helpers ---- */

START_TEST(utf8_len_counts_code_points)
{
    ck_assert_uint_eq(spjson_utf8_len(""), 0);
    ck_assert_uint_eq(spjson_utf8_len("abc"), 3);
    ck_assert_uint_eq(spjson_utf8_len("h\xc3\xa9llo\xf0\x9f\x98\x80"), 6);
    ck_assert_uint_eq(spjson_utf8_len("\xe2\x82\xac"), 1);
}
END_TEST

START_TEST(utf8_valid_checks_every_rule)
{
    ck_assert(spjson_utf8_valid("", 0));
    ck_assert(spjson_utf8_valid("h\xc3\xa9\xf0\x9f\x98\x80", 7));
    ck_assert(spjson_utf8_valid("\xf4\x8f\xbf\xbf", 4));
    ck_assert(!spjson_utf8_valid("\xc0\xaf", 2));
    ck_assert(!spjson_utf8_valid("\xe0\x9f\xbf", 3));
    ck_assert(!spjson_utf8_valid("\xed\xa0\x80", 3));
    ck_assert(!spjson_utf8_valid("\xf4\x90\x80\x80", 4));
    ck_assert(!spjson_utf8_valid("\xff", 1));
    ck_assert(!spjson_utf8_valid("\x80", 1));
    ck_assert(!spjson_utf8_valid("\xc3\xa9", 1)); /* cut by len */
    ck_assert(!spjson_utf8_valid("\xe2\x28\xa1", 3));
}
END_TEST

static Suite *spjson_suite(void)
{
    Suite *s = suite_create("spjson");
    TCase *t = tcase_create("strict");
    tcase_add_checked_fixture(t, NULL, teardown);
    tcase_add_test(t, rejects_trailing_garbage);
    tcase_add_test(t, rejects_second_value);
    tcase_add_test(t, accepts_trailing_whitespace);
    tcase_add_test(t, reads_only_len_bytes);
    tcase_add_test(t, never_reads_past_len);
    tcase_add_test(t, rejects_invalid_utf8_in_string);
    tcase_add_test(t, rejects_invalid_utf8_outside_strings);
    tcase_add_test(t, rejects_truncated_utf8_at_end);
    tcase_add_test(t, rejects_overlong_utf8);
    tcase_add_test(t, rejects_utf8_encoded_surrogates);
    tcase_add_test(t, rejects_code_points_above_10ffff);
    tcase_add_test(t, accepts_valid_multibyte_utf8);
    tcase_add_test(t, rejects_escaped_nul);
    tcase_add_test(t, accepts_escaped_backslash_before_u0000);
    tcase_add_test(t, rejects_lone_high_surrogate);
    tcase_add_test(t, rejects_lone_low_surrogate);
    tcase_add_test(t, decodes_surrogate_pair);
    tcase_add_test(t, decodes_simple_escapes);
    tcase_add_test(t, rejects_bad_escapes);
    tcase_add_test(t, rejects_raw_control_characters_in_strings);
    tcase_add_test(t, rejects_positive_infinity);
    tcase_add_test(t, rejects_negative_infinity);
    tcase_add_test(t, rejects_leading_zeros);
    tcase_add_test(t, rejects_malformed_numbers);
    tcase_add_test(t, accepts_number_forms);
    tcase_add_test(t, rejects_numbers_cjson_would_truncate);
    tcase_add_test(t, accepts_depth_32);
    tcase_add_test(t, rejects_depth_33);
    tcase_add_test(t, depth_counts_objects_and_arrays);
    tcase_add_test(t, rejects_deep_nesting_far_below_cjson_limit);
    tcase_add_test(t, rejects_duplicate_top_level_key);
    tcase_add_test(t, rejects_duplicate_nested_key);
    tcase_add_test(t, rejects_duplicate_key_spelled_with_escape);
    tcase_add_test(t, rejects_duplicates_in_large_object);
    tcase_add_test(t, accepts_same_key_in_different_objects);
    tcase_add_test(t, lookup_is_case_sensitive);
    tcase_add_test(t, lookup_on_non_object_is_null);
    tcase_add_test(t, rejects_empty_body);
    tcase_add_test(t, rejects_whitespace_only);
    tcase_add_test(t, rejects_grammar_errors);
    tcase_add_test(t, accepts_every_value_type);
    tcase_add_test(t, accepts_scalar_documents);
    tcase_add_test(t, works_without_error_buffer);
    tcase_add_test(t, int_in_checks_range_on_valuedouble);
    tcase_add_test(t, int_in_rejects_fractions_and_non_numbers);
    tcase_add_test(t, utf8_len_counts_code_points);
    tcase_add_test(t, utf8_valid_checks_every_rule);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(spjson_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
