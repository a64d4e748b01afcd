/* test_spcore.c -- the error table, arenas, configuration, JSON-lines logging and time. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spcore.h"

START_TEST(error_table_maps_codes_and_statuses)
{
    ck_assert_str_eq(sp_error_code(SP_ERR_NOT_FOUND), "not_found");
    ck_assert_int_eq(sp_error_http_status(SP_ERR_NOT_FOUND), 404);
    ck_assert_int_eq(sp_error_http_status(SP_ERR_UNAVAILABLE), 503);
    ck_assert_int_eq(sp_error_http_status(SP_ERR_PAYLOAD_TOO_LARGE), 413);
    ck_assert_int_eq(sp_error_from_code("refresh_reused"), SP_ERR_REFRESH_REUSED);
    ck_assert_int_eq(sp_error_from_code("no_such_code"), SP_ERR_INTERNAL);
    ck_assert_int_eq(sp_error_from_code(NULL), SP_ERR_INTERNAL);
    ck_assert_int_eq(sp_error_http_status(SP_OK), 200);
    for (int s = 1; s < SP_ERR__COUNT; s++) {
        ck_assert_int_eq(sp_error_from_code(sp_error_code((sp_status)s)), s);
        ck_assert_int_ge(sp_error_http_status((sp_status)s), 400);
    }
}
END_TEST

START_TEST(arena_allocates_aligned_and_large_blocks)
{
    sp_arena *a = sp_arena_create(64);
    for (int i = 0; i < 1000; i++) {
        void *p = sp_arena_alloc(a, (size_t)i + 1);
        ck_assert_ptr_nonnull(p);
        ck_assert_uint_eq((uintptr_t)p % 16, 0);
        memset(p, 0xab, (size_t)i + 1);
    }
    char *big = sp_arena_alloc(a, 5u << 20);
    ck_assert_ptr_nonnull(big);
    memset(big, 1, 5u << 20);
    ck_assert_str_eq(sp_arena_strdup(a, "hello"), "hello");
    ck_assert_str_eq(sp_arena_strndup(a, "hello", 3), "hel");
    ck_assert_str_eq(sp_arena_printf(a, "%d-%s", 42, "x"), "42-x");
    sp_arena_destroy(a);
    sp_arena_destroy(NULL);
}
END_TEST

START_TEST(arena_refuses_sizes_that_would_wrap)
{
    sp_arena *a = sp_arena_create(64);
    ck_assert_ptr_nonnull(sp_arena_alloc(a, 100));
    ck_assert_ptr_null(sp_arena_alloc(a, SIZE_MAX));
    ck_assert_ptr_null(sp_arena_alloc(a, SIZE_MAX - 8));
    ck_assert_ptr_null(sp_arena_alloc(a, SIZE_MAX - 15));
    ck_assert_ptr_null(sp_arena_alloc(a, SIZE_MAX / 2 + 1));
    ck_assert_ptr_null(sp_arena_alloc(a, (size_t)PTRDIFF_MAX));
    ck_assert_ptr_null(sp_arena_strndup(a, "x", SIZE_MAX));
    ck_assert_ptr_null(sp_arena_strndup(a, "x", SIZE_MAX - 1));
    /* the arena is unharmed: small and block-sized allocations still work */
    unsigned char *p = sp_arena_alloc(a, 48);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq((uintptr_t)p % 16, 0);
    memset(p, 0xcd, 48);
    unsigned char *q = sp_arena_alloc(a, 4096);
    ck_assert_ptr_nonnull(q);
    memset(q, 0xef, 4096);
    ck_assert_uint_eq(p[47], 0xcd);
    ck_assert_str_eq(sp_arena_printf(a, "%s", "after"), "after");
    sp_arena_destroy(a);
}
END_TEST

static const sp_cfg_item items[] = {
    {"SPT_MAX_BODY", SP_CFG_INT, "1048576", 1024, 16777216, "largest body"},
    {"SPT_ADDR", SP_CFG_STR, "127.0.0.1:8080", 1, 64, "listen address"},
    {"SPT_SECRET", SP_CFG_SECRET, NULL, 32, 256, "signing key"},
};
#define NITEMS (sizeof(items) / sizeof(items[0]))

static void clear_env(void)
{
    unsetenv("SPT_MAX_BODY");
    unsetenv("SPT_ADDR");
    unsetenv("SPT_SECRET");
}

START_TEST(config_defaults_and_overrides)
{
    clear_env();
    setenv("SPT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    setenv("SPT_MAX_BODY", "2048", 1);
    sp_config *c = NULL;
    char err[256] = "";
    char *argv[] = {"prog", NULL};
    ck_assert_int_eq(sp_config_load(&c, "prog", items, NITEMS, 1, argv, err, sizeof(err)), SP_OK);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(sp_config_int(c, "SPT_MAX_BODY"), 2048);
    ck_assert_str_eq(sp_config_str(c, "SPT_ADDR"), "127.0.0.1:8080");
    sp_config_destroy(c);
}
END_TEST

START_TEST(config_rejects_out_of_range_and_missing)
{
    clear_env();
    sp_config *c = NULL;
    char err[256] = "";
    char *argv[] = {"prog", NULL};
    ck_assert_int_eq(sp_config_load(&c, "prog", items, NITEMS, 1, argv, err, sizeof(err)),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err, "SPT_SECRET is required"));

    setenv("SPT_SECRET", "short", 1);
    ck_assert_int_eq(sp_config_load(&c, "prog", items, NITEMS, 1, argv, err, sizeof(err)),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_nonnull(strstr(err, "SPT_SECRET"));
    ck_assert_ptr_null(strstr(err, "short")); /* a secret's value never shows */

    setenv("SPT_SECRET", "0123456789abcdef0123456789abcdef", 1);
    setenv("SPT_MAX_BODY", "16777217", 1);
    ck_assert_int_eq(sp_config_load(&c, "prog", items, NITEMS, 1, argv, err, sizeof(err)),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_nonnull(strstr(err, "SPT_MAX_BODY must be in 1024..16777216"));

    setenv("SPT_MAX_BODY", "12k", 1);
    ck_assert_int_eq(sp_config_load(&c, "prog", items, NITEMS, 1, argv, err, sizeof(err)),
                     SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_nonnull(strstr(err, "not an integer"));

    char *argv2[] = {"prog", "--bogus", NULL};
    unsetenv("SPT_MAX_BODY");
    ck_assert_int_eq(sp_config_load(&c, "prog", items, NITEMS, 2, argv2, err, sizeof(err)),
                     SP_ERR_VALIDATION_FAILED);
    clear_env();
}
END_TEST

START_TEST(config_help_lists_every_setting)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sp_config_help(f, "prog", items, NITEMS);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "SPT_MAX_BODY"));
    ck_assert_ptr_nonnull(strstr(buf, "range 1024..16777216"));
    ck_assert_ptr_nonnull(strstr(buf, "SPT_SECRET"));
    ck_assert_ptr_nonnull(strstr(buf, "required"));
    free(buf);
}
END_TEST

/* A URL's user and password never reach a log line, in any field, one URL or a list. */
START_TEST(url_credentials_are_redacted)
{
    static const char *cases[][2] = {
        {"nats://sp:hunter2@127.0.0.1:4222", "nats://[redacted]@127.0.0.1:4222"},
        {"nats://a:b@h1:1,nats://h2:2,tls://u@h3",
         "nats://[redacted]@h1:1,nats://h2:2,tls://[redacted]@h3"},
        {"postgresql://sp:p%40ss@db:5432/sp?sslmode=disable",
         "postgresql://[redacted]@db:5432/sp?sslmode=disable"},
        {"redis://:s3cret@127.0.0.1:6379/0", "redis://[redacted]@127.0.0.1:6379/0"},
        {"redis://127.0.0.1:6379/0?x=a@b", "redis://127.0.0.1:6379/0?x=a@b"},
        {"host=db user=sp", "host=db user=sp"},
        {"x://", "x://"},
    };
    char out[128];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sp_url_redact(out, sizeof(out), cases[i][0]);
        ck_assert_str_eq(out, cases[i][1]);
    }
    char tiny[8];
    ck_assert_uint_eq(sp_url_redact(tiny, sizeof(tiny), "nats://u:p@h"), 7);
    ck_assert_str_eq(tiny, "nats://");

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sp_log_init("unit", SP_LOG_DEBUG);
    sp_log_set_stream(f);
    sp_log_info(NULL, "nats_connected", "url", "nats://svc:hunter2@127.0.0.1:4222");
    sp_log_set_stream(NULL);
    fclose(f);
    ck_assert_ptr_null(strstr(buf, "hunter2"));
    ck_assert_ptr_nonnull(strstr(buf, "\"url\":\"nats://[redacted]@127.0.0.1:4222\""));
    free(buf);
}
END_TEST

START_TEST(log_writes_one_json_line_without_secrets)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sp_log_init("unit", SP_LOG_DEBUG);
    sp_log_set_stream(f);
    sp_log_info("req-1", "login_failed", "email", "a\"b@x.io", "password", "hunter2",
                "refreshToken", "abc.def", "line", "x\ny");
    sp_log_debug(NULL, "plain");
    sp_log_set_stream(NULL);
    fclose(f);
    char *nl = strchr(buf, '\n');
    ck_assert_ptr_nonnull(nl);
    *nl = '\0';
    cJSON *j = cJSON_Parse(buf);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "service")->valuestring, "unit");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "level")->valuestring, "info");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "requestId")->valuestring, "req-1");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "msg")->valuestring, "login_failed");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "email")->valuestring, "a\"b@x.io");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "password")->valuestring, "[redacted]");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "refreshToken")->valuestring,
                     "[redacted]");
    ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "line")->valuestring, "x\ny");
    ck_assert_ptr_nonnull(cJSON_GetObjectItemCaseSensitive(j, "time"));
    ck_assert_ptr_null(strstr(nl + 1, "hunter2"));
    cJSON_Delete(j);
    j = cJSON_Parse(nl + 1);
    ck_assert_ptr_nonnull(j);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(j, "requestId"));
    cJSON_Delete(j);
    free(buf);
}
END_TEST

START_TEST(time_formats_milliseconds_utc)
{
    char buf[40];
    sp_time_format(buf, sizeof(buf), 1757689804120999LL);
    ck_assert_str_eq(buf, "2025-09-12T15:10:04.120Z");
    sp_time_format(buf, sizeof(buf), 0);
    ck_assert_str_eq(buf, "1970-01-01T00:00:00.000Z");
}
END_TEST

START_TEST(time_parses_rfc3339_variants)
{
    int64_t us = 0;
    ck_assert_int_eq(sp_time_parse(&us, "2025-09-12T15:10:04Z"), SP_OK);
    ck_assert_int_eq(us, 1757689804000000LL);
    ck_assert_int_eq(sp_time_parse(&us, "2025-09-12T15:10:04.250Z"), SP_OK);
    ck_assert_int_eq(us, 1757689804250000LL);
    ck_assert_int_eq(sp_time_parse(&us, "2025-09-12T15:10:04.123456Z"), SP_OK);
    ck_assert_int_eq(us, 1757689804123456LL);
    ck_assert_int_eq(sp_time_parse(&us, "2025-09-12T17:10:04+02:00"), SP_OK);
    ck_assert_int_eq(us, 1757689804000000LL);
    const char *bad[] = {"2025-09-12",
                         "2025-09-12T15:10:04",
                         "2025-02-30T00:00:00Z",
                         "2025-09-12T24:00:00Z",
                         "2025-09-12T15:10:04.1234567Z",
                         "2025-09-12T15:10:04.Z",
                         "2025-09-12T15:10:04Zjunk",
                         "2025-13-01T00:00:00Z",
                         "x025-09-12T15:10:04Z",
                         ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(sp_time_parse(&us, bad[i]) == SP_ERR_VALIDATION_FAILED, "%s", bad[i]);
    ck_assert_int_eq(sp_time_parse(&us, NULL), SP_ERR_VALIDATION_FAILED);
}
END_TEST

/* The calendar arithmetic agrees with glibc's gmtime_r across leap days, century years
 * (2100 is not a leap year, 2000 and 2400 are) and before 1970, and parsing what was
 * formatted gives the same instant back (to the millisecond). */
START_TEST(time_agrees_with_gmtime_and_round_trips)
{
    char buf[40], want[96];
    int64_t step = 86400LL * 37 + 3661; /* walks through every month and time of day */
    for (int64_t sec = -86400LL * 365; sec < 86400LL * 365 * 430; sec += step) {
        int64_t us = sec * 1000000 + 123000;
        sp_time_format(buf, sizeof buf, us);
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.123Z", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        ck_assert_str_eq(buf, want);
        int64_t back = 0;
        if (sec >= 0) {
            ck_assert_int_eq(sp_time_parse(&back, buf), SP_OK);
            ck_assert_int_eq(back, us);
        }
    }
    static const struct {
        const char *text;
        int64_t sec;
    } fixed[] = {{"2000-02-29T00:00:00.000Z", 951782400},
                 {"2100-03-01T00:00:00.000Z", 4107542400},
                 {"2400-02-29T23:59:59.000Z", 13574649599},
                 {"1969-12-31T23:59:59.000Z", -1}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        sp_time_format(buf, sizeof buf, fixed[i].sec * 1000000);
        ck_assert_str_eq(buf, fixed[i].text);
    }
    int64_t us = 0;
    ck_assert_int_eq(sp_time_parse(&us, "2100-02-29T00:00:00Z"), SP_ERR_VALIDATION_FAILED);
    ck_assert_int_eq(sp_time_parse(&us, "2400-02-29T23:59:59Z"), SP_OK);
    ck_assert_int_eq(us, 13574649599LL * 1000000);
}
END_TEST

/* ---- sp_map ------------------------------------------------------------------------------ */

static int g_freed;
static void count_free(void *v)
{
    g_freed++;
    free(v);
}

static bool drop_odd(const char *key, void *value, void *user)
{
    (void)key;
    (void)user;
    return *(int *)value % 2 != 0;
}

START_TEST(map_puts_gets_replaces_deletes_and_filters)
{
    g_freed = 0;
    sp_map *m = sp_map_create(count_free);
    ck_assert_ptr_nonnull(m);
    char key[32];
    for (int i = 0; i < 10000; i++) { /* grows past its first buckets many times */
        int *v = malloc(sizeof(*v));
        *v = i;
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(sp_map_put(m, key, v), SP_OK);
    }
    ck_assert_uint_eq(sp_map_len(m), 10000);
    for (int i = 0; i < 10000; i += 997) {
        snprintf(key, sizeof(key), "k%d", i);
        ck_assert_int_eq(*(int *)sp_map_get(m, key), i);
    }
    ck_assert_ptr_null(sp_map_get(m, "k10000"));
    ck_assert_ptr_null(sp_map_get(m, ""));
    int *v = malloc(sizeof(*v));
    *v = -1;
    ck_assert_int_eq(sp_map_put(m, "k5", v), SP_OK); /* replaced: the old value freed */
    ck_assert_int_eq(g_freed, 1);
    ck_assert_int_eq(*(int *)sp_map_get(m, "k5"), -1);
    ck_assert_uint_eq(sp_map_len(m), 10000);
    sp_map_del(m, "k6");
    sp_map_del(m, "k6"); /* twice: no-op */
    ck_assert_ptr_null(sp_map_get(m, "k6"));
    ck_assert_int_eq(g_freed, 2);
    sp_map_filter(m, drop_odd, NULL); /* the odd values go; k5 is -1: odd too */
    ck_assert_uint_eq(sp_map_len(m), 4999);
    ck_assert_ptr_null(sp_map_get(m, "k7"));
    ck_assert_ptr_null(sp_map_get(m, "k5"));
    ck_assert_int_eq(*(int *)sp_map_get(m, "k8"), 8);
    sp_map_destroy(m);
    ck_assert_int_eq(g_freed, 10001); /* every value given, the replaced one too */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spcore");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, error_table_maps_codes_and_statuses);
    tcase_add_test(tc, arena_allocates_aligned_and_large_blocks);
    tcase_add_test(tc, arena_refuses_sizes_that_would_wrap);
    tcase_add_test(tc, config_defaults_and_overrides);
    tcase_add_test(tc, config_rejects_out_of_range_and_missing);
    tcase_add_test(tc, config_help_lists_every_setting);
    tcase_add_test(tc, log_writes_one_json_line_without_secrets);
    tcase_add_test(tc, url_credentials_are_redacted);
    tcase_add_test(tc, time_formats_milliseconds_utc);
    tcase_add_test(tc, time_parses_rfc3339_variants);
    tcase_add_test(tc, time_agrees_with_gmtime_and_round_trips);
    tcase_add_test(tc, map_puts_gets_replaces_deletes_and_filters);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
