/* test_spsvc.c -- the service kit's pure parts: input checks, list cursors, and the
 * periodic task (spcore's sp_task) it runs its outbox and keepers on. The kit's request
 * steps (scope, roles, outbox) are exercised through the services' integration suites. */
#include <check.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "spsvc.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

START_TEST(text_checks_name_each_problem)
{
    ck_assert_ptr_null(spsvc_check_text("Demo Parking", 120));
    ck_assert_ptr_null(spsvc_check_text("São Paulo", 9)); /* code points, not bytes */
    ck_assert_str_eq(spsvc_check_text("São Paulo", 8), "too long");
    ck_assert_str_eq(spsvc_check_text(NULL, 120), "required");
    ck_assert_str_eq(spsvc_check_text("", 120), "must not be empty");
    ck_assert_str_eq(spsvc_check_text("   ", 120), "must not be blank");
    ck_assert_str_eq(spsvc_check_text("a\tb\nc", 120), "must not contain control characters");
    ck_assert_str_eq(spsvc_check_text("\xc3\x28", 120), "must be valid UTF-8");
    ck_assert_str_eq(spsvc_check_text("\xed\xa0\x80", 120), "must be valid UTF-8"); /* surrogate */
    ck_assert_str_eq(spsvc_check_text("\xc0\xaf", 120), "must be valid UTF-8");     /* overlong */
    char big[122];
    memset(big, 'x', 121);
    big[121] = '\0';
    ck_assert_str_eq(spsvc_check_text(big, 120), "at most 120 characters");
    ck_assert_ptr_null(spsvc_check_opt_text(NULL, 32));
    ck_assert_str_eq(spsvc_check_opt_text("", 32), "must not be empty");
    ck_assert_int_eq(spsvc_utf8_len("\xf0\x9f\x9a\x97 P1"), 4);
}
END_TEST

START_TEST(utf8_decoder_and_invisible_characters)
{
    uint32_t cp = 0;
    ck_assert_int_eq(spsvc_utf8_next("\xe2\x80\x8b!", &cp), 3);
    ck_assert_uint_eq(cp, 0x200B);
    ck_assert_int_eq(spsvc_utf8_next("", &cp), 0);
    ck_assert_int_eq(spsvc_utf8_next("\xe2\x80", &cp), -1);         /* cut at the end */
    ck_assert_int_eq(spsvc_utf8_next("\xf4\x90\x80\x80", &cp), -1); /* past U+10FFFF */
    /* what shows nothing: zero-width and format characters, spaces, controls, BOM, tags */
    const uint32_t hidden[] = {0x200B, 0x200D, 0x00AD, 0x2060,  0xFEFF, 0x202E, 0x00A0,
                               0x3000, 0x0009, 0x0085, 0xE0041, 0xFE0F, 0x3164};
    for (size_t i = 0; i < sizeof(hidden) / sizeof(hidden[0]); i++)
        ck_assert_msg(spsvc_invisible(hidden[i]), "U+%04X", (unsigned)hidden[i]);
    const uint32_t shown[] = {'a', '@', 0x00E9, 0x00E4, 0x4E2D, 0x1F697, 0x05D0};
    for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
        ck_assert_msg(!spsvc_invisible(shown[i]), "U+%04X", (unsigned)shown[i]);
}
END_TEST

START_TEST(uuid_check_wants_the_canonical_form)
{
    ck_assert_ptr_null(spsvc_check_uuid("2b0c3f0e-8a4c-4c55-9a51-3f1f0f4b6d11"));
    ck_assert_str_eq(spsvc_check_uuid(NULL), "required");
    ck_assert_str_eq(spsvc_check_uuid("2b0c3f0e8a4c4c559a513f1f0f4b6d11"), "must be a UUID");
    ck_assert_str_eq(spsvc_check_uuid("2b0c3f0e-8a4c-4c55-9a51-3f1f0f4b6d1"), "must be a UUID");
    ck_assert_str_eq(spsvc_check_uuid("' OR 1=1 --"), "must be a UUID");
}
END_TEST

START_TEST(cursor_round_trips_and_refuses_anything_else)
{
    char c[SPSVC_CURSOR_MAX + 1];
    int64_t at = 0, id = 0;

    spsvc_cursor_encode(c, 1764650000123456LL, 42);
    ck_assert(spsvc_cursor_decode(&at, &id, c));
    ck_assert_int_eq(at, 1764650000123456LL);
    ck_assert_int_eq(id, 42);
    spsvc_cursor_encode(c, 0, 0);
    ck_assert(spsvc_cursor_decode(&at, &id, c));
    ck_assert_int_eq(at, 0);

    const char *bad[] = {"x",          "!!!!", "YzEuMS4y=", /* padded */
                         "YzIuMS4y",                        /* "c2.1.2": another version */
                         "YzEuLTEuMg",                      /* "c1.-1.2": negative */
                         "YzEuMS4yeA",                      /* "c1.1.2x": trailing */
                         "YzEuMS4",                         /* "c1.1.": cut short */
                         "YzEuMDEuMg",                      /* "c1.01.2": not canonical */
                         "' OR 1=1 --"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(!spsvc_cursor_decode(&at, &id, bad[i]), "accepted %s", bad[i]);
        ck_assert_int_eq(at, -1);
    }
    char huge[200];
    memset(huge, 'A', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    ck_assert(!spsvc_cursor_decode(&at, &id, huge));
}
END_TEST

static void count_run(void *user)
{
    atomic_fetch_add((atomic_int *)user, 1);
}

START_TEST(task_runs_every_period_and_when_woken)
{
    atomic_int runs = 0;
    sp_task *t = NULL;

    ck_assert_int_eq(sp_task_start(&t, 60000, count_run, &runs), SP_OK);
    sleep_ms(100);
    ck_assert_int_eq(atomic_load(&runs), 0); /* the first period has not passed */
    sp_task_wake(t);
    for (int i = 0; i < 200 && atomic_load(&runs) == 0; i++)
        sleep_ms(5);
    ck_assert_int_eq(atomic_load(&runs), 1);
    sp_task_stop(t); /* a long period does not delay the stop */

    atomic_store(&runs, 0);
    ck_assert_int_eq(sp_task_start(&t, 20, count_run, &runs), SP_OK);
    sleep_ms(300);
    sp_task_stop(t);
    int n = atomic_load(&runs);
    ck_assert_int_ge(n, 3);
    sleep_ms(60);
    ck_assert_int_eq(atomic_load(&runs), n); /* nothing runs after the stop */
    sp_task_stop(NULL);
    ck_assert_int_ne(sp_task_start(&t, 0, count_run, &runs), SP_OK);
    ck_assert_ptr_null(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spsvc");
    TCase *tc = tcase_create("kit");
    tcase_add_test(tc, text_checks_name_each_problem);
    tcase_add_test(tc, utf8_decoder_and_invisible_characters);
    tcase_add_test(tc, uuid_check_wants_the_canonical_form);
    tcase_add_test(tc, cursor_round_trips_and_refuses_anything_else);
    tcase_add_test(tc, task_runs_every_period_and_when_woken);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
