/* harness_selftest.c -- the harness itself: servers answer, redis survives a kill -9 and a
 * restart, ports are never handed out twice, and the directory is removed at the end. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sptest.h"

static sptest_env *env;

/* Sends 'req' to 127.0.0.1:port and returns what came back within a second (static). */
static const char *tcp_exchange(int port, const char *req)
{
    static char buf[4096];
    size_t len = 0;
    buf[0] = '\0';
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        write(fd, req, strlen(req)) == (ssize_t)strlen(req)) {
        ssize_t n;
        while (len < 200 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
            len += (size_t)n;
    }
    if (fd >= 0) close(fd);
    buf[len] = '\0';
    return buf;
}

/* PING after AUTH with the stack's Redis password: what came back. */
static const char *redis_ping(void)
{
    char req[256];
    snprintf(req, sizeof req, "AUTH %s\r\nPING\r\nQUIT\r\n", env->redis_password);
    return tcp_exchange(env->redis_port, req);
}

/* The first line psql prints for 'sql' run through 'url' (never prompting). */
static const char *psql_at(const char *url, const char *sql)
{
    static char buf[256];
    char cmd[768];
    snprintf(cmd, sizeof cmd, "psql '%s' -w -tAc \"%s\" 2>&1", url, sql);
    FILE *f = popen(cmd, "r");
    size_t n = 0;
    if (f) {
        n = fread(buf, 1, sizeof buf - 1, f);
        pclose(f);
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return buf;
}

static const char *psql_select(const char *sql)
{
    return psql_at(env->db_url, sql);
}

/* Neither server takes a connection without its password (make run's are set up the same
 * way by tools/dev/stack.sh): no local user is a database superuser by merely connecting. */
START_TEST(postgres_and_redis_refuse_connections_without_the_password)
{
    char url[256];
    snprintf(url, sizeof url, "postgresql://sp@127.0.0.1:%d/smartpark", env->pg_port);
    ck_assert_ptr_nonnull(strstr(psql_at(url, "SELECT 1"), "no password supplied"));
    snprintf(url, sizeof url, "postgresql://sp:wrong@127.0.0.1:%d/smartpark", env->pg_port);
    ck_assert_ptr_nonnull(strstr(psql_at(url, "SELECT 1"), "password authentication failed"));
    ck_assert_ptr_nonnull(strstr(tcp_exchange(env->redis_port, "PING\r\nQUIT\r\n"), "-NOAUTH"));
    ck_assert_ptr_nonnull(
        strstr(tcp_exchange(env->redis_port, "AUTH wrong\r\nPING\r\nQUIT\r\n"), "-WRONGPASS"));
    ck_assert_ptr_nonnull(strstr(redis_ping(), "+PONG"));
}
END_TEST

START_TEST(nats_sends_info)
{
    ck_assert_int_gt(env->nats_port, 0);
    ck_assert_ptr_nonnull(strstr(tcp_exchange(env->nats_port, ""), "INFO {"));
}
END_TEST

START_TEST(postgres_has_database_smartpark)
{
    ck_assert_str_eq(psql_select("SELECT current_database()"), "smartpark");
}
END_TEST

START_TEST(redis_answers_ping)
{
    ck_assert_ptr_nonnull(strstr(redis_ping(), "+PONG"));
}
END_TEST

START_TEST(redis_comes_back_after_kill_9)
{
    sptest_kill(&env->redis, SIGKILL);
    ck_assert_int_eq(env->redis.pid, 0);
    ck_assert(!sptest_wait_tcp(env->redis_port, 200));
    sptest_restart(env, &env->redis);
    ck_assert_int_gt(env->redis.pid, 0);
    ck_assert_ptr_nonnull(strstr(redis_ping(), "+PONG"));
}
END_TEST

/* Runs after the restart above (in another forked test): the restarted server outlived
 * the test that restarted it. */
START_TEST(redis_restarted_by_a_test_stays_up)
{
    ck_assert_ptr_nonnull(strstr(redis_ping(), "+PONG"));
}
END_TEST

START_TEST(postgres_comes_back_after_kill_9)
{
    sptest_kill(&env->pg, SIGKILL);
    ck_assert(!sptest_wait_tcp(env->pg_port, 200));
    sptest_restart(env, &env->pg);
    ck_assert_int_gt(env->pg.pid, 0);
    ck_assert_str_eq(psql_select("SELECT 1"), "1");
}
END_TEST

START_TEST(free_ports_are_never_repeated)
{
    int seen[64];
    for (int i = 0; i < 64; i++) {
        seen[i] = sptest_free_port();
        ck_assert_int_gt(seen[i], 0);
        ck_assert_int_ne(seen[i], env->nats_port);
        ck_assert_int_ne(seen[i], env->pg_port);
        ck_assert_int_ne(seen[i], env->redis_port);
        for (int j = 0; j < i; j++)
            ck_assert_int_ne(seen[i], seen[j]);
    }
}
END_TEST

START_TEST(http_to_closed_port_is_status_0)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", sptest_free_port());
    sptest_resp *r = sptest_http("GET", url, NULL, NULL, 0);
    ck_assert_int_eq(r->status, 0);
    ck_assert_ptr_null(r->json);
    ck_assert_ptr_null(sptest_jstr(r, "error.code"));
    sptest_resp_free(r);
    ck_assert(!sptest_wait_http(url, 200, 300));
}
END_TEST

int main(void)
{
    env = sptest_start("harness_selftest", SPTEST_NATS_NOAUTH | SPTEST_PG | SPTEST_REDIS);
    char dir[sizeof env->dir];
    snprintf(dir, sizeof dir, "%s", env->dir);

    Suite *s = suite_create("harness_selftest");
    TCase *tc = tcase_create("servers");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, nats_sends_info);
    tcase_add_test(tc, postgres_has_database_smartpark);
    tcase_add_test(tc, redis_answers_ping);
    tcase_add_test(tc, postgres_and_redis_refuse_connections_without_the_password);
    tcase_add_test(tc, redis_comes_back_after_kill_9);
    tcase_add_test(tc, redis_restarted_by_a_test_stays_up);
    tcase_add_test(tc, postgres_comes_back_after_kill_9);
    tcase_add_test(tc, free_ports_are_never_repeated);
    tcase_add_test(tc, http_to_closed_port_is_status_0);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);

    if (failed) sptest_mark_failed(env);
    sptest_stop(env);
    if (!failed && access(dir, F_OK) == 0) {
        fprintf(stderr, "harness_selftest: %s still exists after sptest_stop\n", dir);
        failed = 1;
    }
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
