/* catalog_lookups.c -- the seeded lookups through the gateway and the catalog service on
 * real NATS, PostgreSQL and Redis: public, the codes domain.md names, paged like every
 * list, bad paging refused, and 503 while catalog is down. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sptest.h"

static sptest_env *E;
static sptest_proc *CATALOG;

static const struct {
    const char *path;
    const char *codes[5]; /* codes domain.md names, NULL-ended */
    int at_least;
} lookups[] = {
    {"/v1/store-types", {"shopping", "supermarket", "hospital", NULL}, 3},
    {"/v1/slot-types", {"regular", "moto", "accessible", "ev", NULL}, 4},
    {"/v1/vehicle-types", {"none", "car", "moto", "truck", NULL}, 4},
};

/* The items of a list answer; asserts the list shape. */
static cJSON *items_of(sptest_resp *r, const char *what)
{
    ck_assert_msg(r->status == 200, "%s: %ld %s", what, r->status, r->body);
    ck_assert_ptr_nonnull(r->json);
    cJSON *items = cJSON_GetObjectItemCaseSensitive(r->json, "items");
    ck_assert_msg(cJSON_IsArray(items), "%s: no items: %s", what, r->body);
    ck_assert_msg(cJSON_HasObjectItem(r->json, "nextCursor"), "%s: no nextCursor: %s", what,
                  r->body);
    return items;
}

START_TEST(lookups_are_public_and_hold_the_seeded_codes)
{
    sptest_resp *r = sptest_json(E, "GET", lookups[_i].path, NULL, NULL);
    cJSON *items = items_of(r, lookups[_i].path);
    ck_assert_int_ge(cJSON_GetArraySize(items), lookups[_i].at_least);
    ck_assert_msg(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(r->json, "nextCursor")),
                  "one page holds them all: %s", r->body);
    for (int k = 0; lookups[_i].codes[k]; k++) {
        bool found = false;
        const cJSON *it;
        cJSON_ArrayForEach(it, items)
        {
            const cJSON *code = cJSON_GetObjectItemCaseSensitive(it, "code");
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
            ck_assert_msg(cJSON_IsString(code) && cJSON_IsString(name) && name->valuestring[0],
                          "item without code or name: %s", r->body);
            ck_assert_int_eq(cJSON_GetArraySize(it), 2);
            found = found || strcmp(code->valuestring, lookups[_i].codes[k]) == 0;
        }
        ck_assert_msg(found, "%s lacks %s: %s", lookups[_i].path, lookups[_i].codes[k], r->body);
    }
    sptest_resp_free(r);
}
END_TEST

/* limit=2 pages through the same list, in the same order, each item once. */
START_TEST(lookups_page_through_the_same_list)
{
    sptest_resp *all = sptest_json(E, "GET", lookups[_i].path, NULL, NULL);
    cJSON *want = items_of(all, lookups[_i].path);
    int n = cJSON_GetArraySize(want), seen = 0, pages = 0;
    char path[1024];
    snprintf(path, sizeof(path), "%s?limit=2", lookups[_i].path);
    for (;;) {
        sptest_resp *r = sptest_json(E, "GET", path, NULL, NULL);
        cJSON *items = items_of(r, path);
        ck_assert_int_le(cJSON_GetArraySize(items), 2);
        const cJSON *it;
        cJSON_ArrayForEach(it, items)
        {
            ck_assert_int_lt(seen, n);
            ck_assert_str_eq(
                cJSON_GetObjectItemCaseSensitive(it, "code")->valuestring,
                cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(want, seen), "code")
                    ->valuestring);
            seen++;
        }
        pages++;
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(r->json, "nextCursor");
        if (cJSON_IsNull(next)) {
            sptest_resp_free(r);
            break;
        }
        ck_assert(cJSON_IsString(next));
        snprintf(path, sizeof(path), "%s?limit=2&cursor=%s", lookups[_i].path, next->valuestring);
        sptest_resp_free(r);
        ck_assert_int_le(pages, n);
    }
    ck_assert_int_eq(seen, n);
    ck_assert_int_ge(pages, (n + 1) / 2); /* the last page may be empty */
    sptest_resp_free(all);
}
END_TEST

static const struct {
    const char *query;
    const char *field;
} bad_paging[] = {
    {"?limit=0", "limit"},      {"?limit=501", "limit"}, {"?limit=x", "limit"},
    {"?cursor=AAAA", "cursor"}, {"?cursor=", "cursor"},  {"?colour=red", "colour"},
};

START_TEST(bad_paging_is_400_naming_the_parameter)
{
    for (size_t k = 0; k < sizeof(bad_paging) / sizeof(bad_paging[0]); k++) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/slot-types%s", bad_paging[k].query);
        sptest_resp *r = sptest_json(E, "GET", path, NULL, NULL);
        ck_assert_msg(r->status == 400, "%s: %ld %s", path, r->status, r->body);
        ck_assert_str_eq(sptest_jstr(r, "error.code"), "validation_failed");
        char f[64];
        snprintf(f, sizeof(f), "error.fields.%s", bad_paging[k].field);
        ck_assert_msg(sptest_jstr(r, f) != NULL, "%s: %s not named: %s", path, f, r->body);
        sptest_resp_free(r);
    }
}
END_TEST

/* Last: the catalog started again lives only as long as this test's process. */
START_TEST(lookups_are_503_while_catalog_is_down_and_recover)
{
    sptest_kill(CATALOG, SIGKILL);
    sptest_resp *r = sptest_json(E, "GET", "/v1/store-types", NULL, NULL);
    ck_assert_msg(r->status == 503, "%ld %s", r->status, r->body);
    ck_assert_str_eq(sptest_jstr(r, "error.code"), "unavailable");
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Retry-After"));
    sptest_resp_free(r);
    sptest_restart(E, CATALOG);
    r = sptest_json(E, "GET", "/v1/store-types", NULL, NULL);
    items_of(r, "after the restart");
    sptest_resp_free(r);
}
END_TEST

int main(void)
{
    E = sptest_start("catalog_lookups", SPTEST_ALL);
    CATALOG = sptest_start_service(E, "catalog", NULL);
    sptest_start_service(E, "gateway", NULL);

    Suite *s = suite_create("catalog_lookups");
    TCase *tc = tcase_create("lookups");
    tcase_set_timeout(tc, 60);
    int n = (int)(sizeof(lookups) / sizeof(lookups[0]));
    tcase_add_loop_test(tc, lookups_are_public_and_hold_the_seeded_codes, 0, n);
    tcase_add_loop_test(tc, lookups_page_through_the_same_list, 0, n);
    tcase_add_test(tc, bad_paging_is_400_naming_the_parameter);
    tcase_add_test(tc, lookups_are_503_while_catalog_is_down_and_recover); /* last */
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed) sptest_mark_failed(E);
    sptest_stop(E);
    return failed ? 1 : 0;
}
