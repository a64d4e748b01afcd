/* test_spadmin.c -- metrics registry and exposition text; the admin listener over HTTP. */
#include <check.h>
#include <civetweb.h>
#include <pthread.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "spadmin.h"
#include "sptest.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* The value of the sample line that starts with 'prefix' ("name{labels} "), or -1. */
static double sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *l = text; l != NULL && *l != '\0';) {
        if (strncmp(l, prefix, n) == 0) return strtod(l + n, NULL);
        l = strchr(l, '\n');
        if (l != NULL) l++;
    }
    return -1;
}

/* Checks 'text' against the exposition format 0.0.4: every line a comment (# HELP / # TYPE
 * with a known type) or a sample "name{labels} value"; a family's TYPE once and before its
 * samples; ends with a newline. Returns the bad line (malloc'd) or NULL. */
static char *bad_line(const char *text)
{
    regex_t sample_re, type_re, help_re;
    ck_assert_int_eq(
        regcomp(&sample_re,
                "^[a-zA-Z_:][a-zA-Z0-9_:]*"
                "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\"(,[a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\")*\\})?"
                " (NaN|[+-]Inf|[-+]?[0-9.]+([eE][-+]?[0-9]+)?)$",
                REG_EXTENDED | REG_NOSUB),
        0);
    ck_assert_int_eq(
        regcomp(&type_re,
                "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|histogram|summary|untyped)$",
                REG_EXTENDED | REG_NOSUB),
        0);
    ck_assert_int_eq(
        regcomp(&help_re, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$", REG_EXTENDED | REG_NOSUB), 0);
    char *bad = NULL;
    char typed[64][128];
    int ntyped = 0;
    size_t len = strlen(text);
    if (len == 0 || text[len - 1] != '\n') bad = strdup("(no final newline)");
    for (const char *l = text; bad == NULL && *l != '\0';) {
        const char *e = strchr(l, '\n');
        char line[1024];
        snprintf(line, sizeof(line), "%.*s", (int)(e - l), l);
        if (strncmp(line, "# TYPE ", 7) == 0) {
            if (regexec(&type_re, line, 0, NULL, 0) != 0) bad = strdup(line);
            char name[128];
            sscanf(line + 7, "%127s", name);
            for (int i = 0; i < ntyped && bad == NULL; i++)
                if (strcmp(typed[i], name) == 0) bad = strdup(line); /* TYPE twice */
            if (ntyped < 64) snprintf(typed[ntyped++], sizeof(typed[0]), "%s", name);
        } else if (strncmp(line, "# HELP ", 7) == 0) {
            if (regexec(&help_re, line, 0, NULL, 0) != 0) bad = strdup(line);
        } else if (regexec(&sample_re, line, 0, NULL, 0) != 0) {
            bad = strdup(line);
        } else {
            /* its family (name, or name without _bucket/_sum/_count) was typed before */
            bool found = false;
            for (int i = 0; i < ntyped && !found; i++) {
                size_t n = strlen(typed[i]);
                found = strncmp(line, typed[i], n) == 0 &&
                        (strchr("{ ", line[n]) != NULL || strncmp(line + n, "_bucket{", 8) == 0 ||
                         strncmp(line + n, "_sum", 4) == 0 || strncmp(line + n, "_count", 6) == 0);
            }
            if (!found) bad = strdup(line);
        }
        l = e + 1;
    }
    regfree(&sample_re);
    regfree(&type_re);
    regfree(&help_re);
    return bad;
}

static void assert_valid(const char *text)
{
    char *bad = bad_line(text);
    if (bad != NULL) ck_abort_msg("bad exposition line: '%s'\n%s", bad, text);
}

/* ---- metrics ---------------------------------------------------------------------------- */

START_TEST(counter_is_rendered_with_help_and_type)
{
    spadmin_metric_help("sp_http_requests_total", "counter", "HTTP requests by route and status.");
    spadmin_counter_add("sp_http_requests_total", "route=\"/v1/me\",status=\"200\"", 1);
    spadmin_counter_add("sp_http_requests_total", "route=\"/v1/me\",status=\"200\"", 2);
    spadmin_counter_add("sp_http_requests_total", "route=\"/v1/me\",status=\"404\"", 1);
    spadmin_counter_add("sp_plain_total", NULL, 5);
    char *t = spadmin_metrics_render();
    ck_assert_ptr_nonnull(t);
    assert_valid(t);
    ck_assert_ptr_nonnull(
        strstr(t, "# HELP sp_http_requests_total HTTP requests by route and status.\n"
                  "# TYPE sp_http_requests_total counter\n"));
    ck_assert_double_eq(sample(t, "sp_http_requests_total{route=\"/v1/me\",status=\"200\"} "), 3);
    ck_assert_double_eq(sample(t, "sp_http_requests_total{route=\"/v1/me\",status=\"404\"} "), 1);
    ck_assert_double_eq(sample(t, "sp_plain_total "), 5);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE sp_plain_total counter\n"));
    free(t);
}
END_TEST

START_TEST(counter_never_goes_down)
{
    spadmin_counter_add("sp_c_total", NULL, 2);
    spadmin_counter_add("sp_c_total", NULL, -1);
    char *t = spadmin_metrics_render();
    ck_assert_double_eq(sample(t, "sp_c_total "), 2);
    free(t);
}
END_TEST

START_TEST(gauge_is_set)
{
    spadmin_gauge_set("sp_sse_open", "lot=\"a\"", 7);
    spadmin_gauge_set("sp_sse_open", "lot=\"a\"", 3);
    char *t = spadmin_metrics_render();
    assert_valid(t);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE sp_sse_open gauge\n"));
    ck_assert_double_eq(sample(t, "sp_sse_open{lot=\"a\"} "), 3);
    free(t);
}
END_TEST

START_TEST(histogram_buckets_are_cumulative)
{
    spadmin_metric_help("sp_bus_seconds", "histogram", "Bus request latency.");
    spadmin_observe("sp_bus_seconds", "method=\"Login\"", 0.003);
    spadmin_observe("sp_bus_seconds", "method=\"Login\"", 0.2);
    spadmin_observe("sp_bus_seconds", "method=\"Login\"", 20);
    spadmin_observe("sp_bus_seconds", "method=\"Login\"", 0.0005); /* on a bound: le includes it */
    spadmin_observe("sp_plain_seconds", NULL, 1);
    char *t = spadmin_metrics_render();
    assert_valid(t);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE sp_bus_seconds histogram\n"));
#define B(le) sample(t, "sp_bus_seconds_bucket{method=\"Login\",le=\"" le "\"} ")
    ck_assert_double_eq(B("0.0005"), 1);
    ck_assert_double_eq(B("0.0025"), 1);
    ck_assert_double_eq(B("0.005"), 2);
    ck_assert_double_eq(B("0.1"), 2);
    ck_assert_double_eq(B("0.25"), 3);
    ck_assert_double_eq(B("10"), 3);
    ck_assert_double_eq(B("+Inf"), 4);
#undef B
    ck_assert_double_eq_tol(sample(t, "sp_bus_seconds_sum{method=\"Login\"} "), 20.2035, 1e-9);
    ck_assert_double_eq(sample(t, "sp_bus_seconds_count{method=\"Login\"} "), 4);
    ck_assert_double_eq(sample(t, "sp_plain_seconds_bucket{le=\"1\"} "), 1);
    ck_assert_double_eq(sample(t, "sp_plain_seconds_count "), 1);
    free(t);
}
END_TEST

START_TEST(process_figures_are_rendered)
{
    char *t = spadmin_metrics_render();
    assert_valid(t);
    ck_assert_double_gt(sample(t, "process_resident_memory_bytes "), 1024 * 1024);
    ck_assert_double_ge(sample(t, "process_open_fds "), 3);
    double start = sample(t, "process_start_time_seconds ");
    ck_assert_double_gt(start, (double)sp_now_us() / 1e6 - 3600);
    ck_assert_double_le(start, (double)sp_now_us() / 1e6 + 1);
    free(t);
}
END_TEST

static void *bump(void *arg)
{
    (void)arg;
    for (int i = 0; i < 20000; i++) {
        spadmin_counter_add("sp_race_total", "k=\"v\"", 1);
        spadmin_observe("sp_race_seconds", NULL, 0.01);
        if (i % 1000 == 0) free(spadmin_metrics_render());
    }
    return NULL;
}

START_TEST(increments_from_threads_are_not_lost)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, bump, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *t = spadmin_metrics_render();
    assert_valid(t);
    ck_assert_double_eq(sample(t, "sp_race_total{k=\"v\"} "), 80000);
    ck_assert_double_eq(sample(t, "sp_race_seconds_count "), 80000);
    ck_assert_double_eq(sample(t, "sp_race_seconds_bucket{le=\"0.005\"} "), 0);
    ck_assert_double_eq(sample(t, "sp_race_seconds_bucket{le=\"0.01\"} "), 80000);
    free(t);
}
END_TEST

/* Threads creating many distinct series at once (the index grows under them) keep every
 * one, each with its own figure. */
static void *make_series(void *arg)
{
    long t = (long)arg;
    char labels[64];
    for (int i = 0; i < 300; i++) {
        snprintf(labels, sizeof labels, "t=\"%ld\",i=\"%d\"", t, i);
        spadmin_counter_add("sp_many_total", labels, (double)(i + 1));
    }
    return NULL;
}

START_TEST(series_created_from_threads_are_all_kept)
{
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, make_series, (void *)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *t = spadmin_metrics_render();
    assert_valid(t);
    size_t lines = 0;
    for (const char *p = t; (p = strstr(p, "\nsp_many_total{")) != NULL; p++)
        lines++;
    ck_assert_uint_eq(lines, 1200);
    ck_assert_double_eq(sample(t, "sp_many_total{t=\"3\",i=\"299\"} "), 300);
    ck_assert_double_eq(sample(t, "sp_many_total{t=\"0\",i=\"0\"} "), 1);
    free(t);
}
END_TEST

/* ---- listener --------------------------------------------------------------------------- */

typedef struct {
    bool ok;
    const char *why;
} readiness;

static bool ready_fn(void *user, char *why, size_t whylen)
{
    readiness *r = user;
    if (!r->ok) snprintf(why, whylen, "%s", r->why);
    return r->ok;
}

static spadmin *start_on(int port, readiness *r, char *base, size_t baselen)
{
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    snprintf(base, baselen, "http://%s", addr);
    spadmin *a = NULL;
    ck_assert_int_eq(spadmin_start(&a, addr, ready_fn, r), SP_OK);
    ck_assert_ptr_nonnull(a);
    return a;
}

static sptest_resp *get(const char *base, const char *path)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", base, path);
    sptest_resp *r = sptest_http("GET", url, NULL, NULL, 0);
    ck_assert_ptr_nonnull(r);
    return r;
}

START_TEST(listener_answers_the_three_paths)
{
    readiness rd = {.ok = true};
    char base[128];
    spadmin_counter_add("sp_seen_total", NULL, 1);
    spadmin *a = start_on(sptest_free_port(), &rd, base, sizeof(base));

    sptest_resp *r = get(base, "/healthz");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(sptest_jstr(r, "status"), "ok");
    ck_assert_str_eq(sptest_resp_header(r, "Cache-Control"), "no-store");
    ck_assert_ptr_null(sptest_resp_header(r, "Access-Control-Allow-Origin"));
    sptest_resp_free(r);

    r = get(base, "/readyz");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(sptest_jstr(r, "status"), "ready");
    sptest_resp_free(r);

    r = get(base, "/metrics");
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(
        strstr(sptest_resp_header(r, "Content-Type"), "text/plain; version=0.0.4"));
    ck_assert_int_eq(atol(sptest_resp_header(r, "Content-Length")), r->len);
    assert_valid(r->body);
    ck_assert_double_eq(sample(r->body, "sp_seen_total "), 1);
    sptest_resp_free(r);

    /* A query string does not change the path. */
    r = get(base, "/healthz?x=1");
    ck_assert_int_eq(r->status, 200);
    sptest_resp_free(r);
    spadmin_stop(a);
}
END_TEST

START_TEST(readyz_names_what_is_down)
{
    readiness rd = {.ok = false, .why = "nats down"};
    char base[128];
    spadmin *a = start_on(sptest_free_port(), &rd, base, sizeof(base));
    sptest_resp *r = get(base, "/readyz");
    ck_assert_int_eq(r->status, 503);
    ck_assert_str_eq(sptest_jstr(r, "status"), "not ready");
    ck_assert_str_eq(sptest_jstr(r, "reason"), "nats down");
    ck_assert_str_eq(sptest_resp_header(r, "Cache-Control"), "no-store");
    sptest_resp_free(r);
    /* Liveness does not depend on readiness. */
    r = get(base, "/healthz");
    ck_assert_int_eq(r->status, 200);
    sptest_resp_free(r);
    rd.ok = true;
    r = get(base, "/readyz");
    ck_assert_int_eq(r->status, 200);
    sptest_resp_free(r);
    spadmin_stop(a);
}
END_TEST

START_TEST(other_paths_are_404)
{
    readiness rd = {.ok = true};
    char base[128];
    spadmin *a = start_on(sptest_free_port(), &rd, base, sizeof(base));
    const char *paths[] = {"/", "/metricsx", "/healthz/x", "/v1/me", "/../etc/passwd"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        sptest_resp *r = get(base, paths[i]);
        ck_assert_msg(r->status == 404, "%s answered %ld", paths[i], r->status);
        sptest_resp_free(r);
    }
    char url[256];
    snprintf(url, sizeof(url), "%s/healthz", base);
    sptest_resp *r = sptest_http("POST", url, NULL, "x", 1);
    ck_assert_int_eq(r->status, 405);
    sptest_resp_free(r);
    spadmin_stop(a);
}
END_TEST

START_TEST(start_on_a_taken_port_fails)
{
    readiness rd = {.ok = true};
    char base[128], addr[64];
    int port = sptest_free_port();
    spadmin *a = start_on(port, &rd, base, sizeof(base));
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    spadmin *b = (spadmin *)&rd;
    ck_assert_int_ne(spadmin_start(&b, addr, ready_fn, &rd), SP_OK);
    ck_assert_ptr_null(b);
    ck_assert_int_ne(spadmin_start(&b, "no-port", ready_fn, &rd), SP_OK);
    ck_assert_int_ne(spadmin_start(&b, "[::1]:9100", ready_fn, &rd), SP_OK);
    spadmin_stop(a);
    spadmin_stop(NULL);
}
END_TEST

/* A server of its own, as the gateway has: spadmin_handle answers the three paths only. */
static int other_begin(struct mg_connection *conn)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    if (spadmin_handle(conn, ri->local_uri, NULL, NULL, "X-Test: 1\r\n")) return 200;
    mg_printf(conn, "HTTP/1.1 418 Teapot\r\nContent-Length: 0\r\n\r\n");
    return 418;
}

START_TEST(handle_serves_the_three_paths_on_another_server)
{
    char port[16], base[64];
    snprintf(port, sizeof(port), "127.0.0.1:%d", sptest_free_port());
    snprintf(base, sizeof(base), "http://%s", port);
    const char *opts[] = {"listening_ports", port, "num_threads", "2", NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.begin_request = other_begin;
    mg_init_library(0);
    struct mg_context *ctx = mg_start(&cb, NULL, opts);
    ck_assert_ptr_nonnull(ctx);
    sptest_resp *r = get(base, "/healthz");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(sptest_resp_header(r, "X-Test"), "1"); /* the caller's headers go along */
    sptest_resp_free(r);
    r = get(base, "/readyz");
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(sptest_resp_header(r, "X-Test"), "1");
    sptest_resp_free(r);
    r = get(base, "/metrics");
    ck_assert_int_eq(r->status, 200);
    sptest_resp_free(r);
    r = get(base, "/v1/other");
    ck_assert_int_eq(r->status, 418);
    sptest_resp_free(r);
    mg_stop(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spadmin");
    TCase *m = tcase_create("metrics");
    tcase_add_test(m, counter_is_rendered_with_help_and_type);
    tcase_add_test(m, counter_never_goes_down);
    tcase_add_test(m, gauge_is_set);
    tcase_add_test(m, histogram_buckets_are_cumulative);
    tcase_add_test(m, process_figures_are_rendered);
    tcase_add_test(m, increments_from_threads_are_not_lost);
    tcase_add_test(m, series_created_from_threads_are_all_kept);
    tcase_set_timeout(m, 60);
    suite_add_tcase(s, m);
    TCase *l = tcase_create("listener");
    tcase_add_test(l, listener_answers_the_three_paths);
    tcase_add_test(l, readyz_names_what_is_down);
    tcase_add_test(l, other_paths_are_404);
    tcase_add_test(l, start_on_a_taken_port_fails);
    tcase_add_test(l, handle_serves_the_three_paths_on_another_server);
    tcase_set_timeout(l, 60);
    suite_add_tcase(s, l);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
