/* gateway_openapi.c -- the gateway's GET /v1/openapi.json and GET /docs: the document it
 * builds at start is the committed docs/openapi.json (make openapi), OpenAPI 3.1.0, and lists
 * exactly the gateway's routes (the table of services/gateway/routes.c, compiled into this test)
 * plus its own five paths. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "sptest.h"

static sptest_env *env; /* started once in main() */

/* The paths the gateway answers itself, outside the route table. */
static const char *const own_paths[] = {"/healthz", "/readyz", "/metrics", "/v1/openapi.json",
                                        "/docs"};
#define NOWN (sizeof(own_paths) / sizeof(own_paths[0]))

static sptest_resp *get(const char *path, const char *const *headers)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", env->base_url, path);
    sptest_resp *r = sptest_http("GET", url, headers, NULL, 0);
    ck_assert_ptr_nonnull(r);
    return r;
}

/* Lower-cases an HTTP method into 'out' ("POST" -> "post"), the key of an OpenAPI path item. */
static void lower(char *out, size_t cap, const char *m)
{
    size_t i = 0;
    for (; m[i] != '\0' && i + 1 < cap; i++)
        out[i] = (char)(m[i] >= 'A' && m[i] <= 'Z' ? m[i] + 32 : m[i]);
    out[i] = '\0';
}

static bool is_method_key(const char *k)
{
    static const char *const methods[] = {"get",     "put",  "post",  "delete",
                                          "options", "head", "patch", "trace"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(k, methods[i]) == 0) return true;
    return false;
}

/* Whether (method, path) is in the gateway's route table or is one of its own GETs. */
static bool routed(const char *method_key, const char *path)
{
    size_t n = 0;
    const gw_route *routes = gw_routes(&n);
    char m[16];
    for (size_t i = 0; i < n; i++) {
        lower(m, sizeof(m), routes[i].method);
        if (strcmp(m, method_key) == 0 && strcmp(routes[i].pattern, path) == 0) return true;
    }
    for (size_t i = 0; i < NOWN; i++)
        if (strcmp(method_key, "get") == 0 && strcmp(own_paths[i], path) == 0) return true;
    return false;
}

static bool documented(const cJSON *doc, const char *method, const char *path)
{
    char m[16];
    lower(m, sizeof(m), method);
    const cJSON *item =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "paths"), path);
    return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(item, m));
}

START_TEST(openapi_json_is_openapi_3_1_0_with_headers)
{
    const char *const h[] = {"X-Request-Id: oa-test.1", NULL};
    sptest_resp *r = get("/v1/openapi.json", h);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(r->json);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r->json, "openapi");
    ck_assert(cJSON_IsString(v));
    ck_assert_str_eq(v->valuestring, "3.1.0");
    ck_assert_str_eq(sptest_resp_header(r, "Content-Type"), "application/json; charset=utf-8");
    ck_assert_str_eq(sptest_resp_header(r, "X-Request-Id"), "oa-test.1");
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Cache-Control"));
    sptest_resp_free(r);
}
END_TEST

START_TEST(openapi_json_is_the_committed_document)
{
    FILE *f = fopen(SP_SOURCE_DIR "/docs/openapi.json", "rb");
    ck_assert_ptr_nonnull(f);
    static char want[1 << 20];
    size_t n = fread(want, 1, sizeof(want), f);
    fclose(f);
    ck_assert_uint_lt(n, sizeof(want));

    want[n] = '\0';
    cJSON *committed = cJSON_Parse(want);
    ck_assert_ptr_nonnull(committed);

    sptest_resp *r = get("/v1/openapi.json", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(r->json);
    ck_assert_msg(cJSON_Compare(r->json, committed, true),
                  "served document (built from the route table and docs/openapi-notes.json) "
                  "differs from docs/openapi.json: run make openapi");
    cJSON_Delete(committed);
    sptest_resp_free(r);
}
END_TEST

/* Every route of routes.c and every gateway-own path is documented... */
START_TEST(every_gateway_route_is_documented)
{
    sptest_resp *r = get("/v1/openapi.json", NULL);
    ck_assert_ptr_nonnull(r->json);
    size_t n = 0;
    const gw_route *routes = gw_routes(&n);
    ck_assert_uint_gt(n, 0);
    char missing[2048] = "";
    for (size_t i = 0; i < n; i++)
        if (!documented(r->json, routes[i].method, routes[i].pattern)) {
            size_t u = strlen(missing);
            snprintf(missing + u, sizeof(missing) - u, " %s %s;", routes[i].method,
                     routes[i].pattern);
        }
    for (size_t i = 0; i < NOWN; i++)
        if (!documented(r->json, "GET", own_paths[i])) {
            size_t u = strlen(missing);
            snprintf(missing + u, sizeof(missing) - u, " GET %s;", own_paths[i]);
        }
    ck_assert_msg(missing[0] == '\0', "routes missing from docs/openapi.json:%s", missing);
    sptest_resp_free(r);
}
END_TEST

/* ...and the document lists nothing the gateway does not route. */
START_TEST(document_lists_only_gateway_routes)
{
    sptest_resp *r = get("/v1/openapi.json", NULL);
    ck_assert_ptr_nonnull(r->json);
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(r->json, "paths");
    ck_assert(cJSON_IsObject(paths));
    char extra[2048] = "";
    int nops = 0;
    const cJSON *item = NULL;
    cJSON_ArrayForEach(item, paths)
    {
        const cJSON *op = NULL;
        cJSON_ArrayForEach(op, item)
        {
            if (!is_method_key(op->string)) continue;
            nops++;
            if (!routed(op->string, item->string)) {
                size_t u = strlen(extra);
                snprintf(extra + u, sizeof(extra) - u, " %s %s;", op->string, item->string);
            }
        }
    }
    ck_assert_int_gt(nops, 0);
    ck_assert_msg(extra[0] == '\0', "documented but not routed by the gateway:%s", extra);
    sptest_resp_free(r);
}
END_TEST

START_TEST(docs_page_is_html_that_loads_the_document)
{
    sptest_resp *r = get("/docs", NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(sptest_resp_header(r, "Content-Type"), "text/html; charset=utf-8");
    ck_assert_ptr_nonnull(sptest_resp_header(r, "X-Request-Id"));
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Cache-Control"));
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Content-Security-Policy"));
    ck_assert_ptr_nonnull(strstr(r->body, "sp-api-docs"));
    ck_assert_ptr_nonnull(strstr(r->body, "/v1/openapi.json"));
    /* nothing from elsewhere: no CDN, no external script or stylesheet */
    ck_assert_ptr_null(strstr(r->body, "http://"));
    ck_assert_ptr_null(strstr(r->body, "https://"));
    sptest_resp_free(r);
}
END_TEST

START_TEST(post_to_openapi_json_is_405_with_error_shape)
{
    char url[512];
    snprintf(url, sizeof(url), "%s/v1/openapi.json", env->base_url);
    const char *const h[] = {"Content-Type: application/json", NULL};
    sptest_resp *r = sptest_http("POST", url, h, "{}", 2);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 405);
    ck_assert_str_eq(sptest_resp_header(r, "Allow"), "GET, HEAD");
    ck_assert_str_eq(sptest_jstr(r, "error.code"), "method_not_allowed");
    const char *rid = sptest_resp_header(r, "X-Request-Id");
    ck_assert_ptr_nonnull(rid);
    ck_assert_str_eq(sptest_jstr(r, "error.requestId"), rid);
    sptest_resp_free(r);
}
END_TEST

int main(void)
{
    env = sptest_start("openapi", SPTEST_NATS | SPTEST_REDIS);
    sptest_start_service(env, "gateway", NULL);

    Suite *s = suite_create("gateway_openapi");
    TCase *tc = tcase_create("openapi");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, openapi_json_is_openapi_3_1_0_with_headers);
    tcase_add_test(tc, openapi_json_is_the_committed_document);
    tcase_add_test(tc, every_gateway_route_is_documented);
    tcase_add_test(tc, document_lists_only_gateway_routes);
    tcase_add_test(tc, docs_page_is_html_that_loads_the_document);
    tcase_add_test(tc, post_to_openapi_json_is_405_with_error_shape);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed > 0) sptest_mark_failed(env);
    sptest_stop(env);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
