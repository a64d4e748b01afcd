/* test_spredis.c -- spredis against a real redis-server started by the harness: binary
 * safe values, error replies, AUTH and SELECT from the url, a server that goes down and
 * comes back, and bad urls. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spredis.h"
#include "sptest.h"

static sptest_env *env;

static spredis *create_ok(const char *url)
{
    spredis *r = NULL;
    ck_assert_int_eq(spredis_create(&r, url, 1000), SP_OK);
    ck_assert_ptr_nonnull(r);
    return r;
}

START_TEST(binary_values_with_spaces_and_nuls_round_trip)
{
    spredis *r = create_ok(env->redis_url);
    static const char key[] = "a key with spaces\0and a NUL";
    static const char val[] = "v a l\0ue\r\n\0 %s $1 *2\r\n";
    const char *set[] = {"SET", key, val};
    size_t setlen[] = {3, sizeof key - 1, sizeof val - 1};
    redisReply *rep = NULL;
    ck_assert_int_eq(spredis_command(&rep, r, 3, set, setlen), SP_OK);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);

    const char *get[] = {"GET", key};
    size_t getlen[] = {3, sizeof key - 1};
    ck_assert_int_eq(spredis_command(&rep, r, 2, get, getlen), SP_OK);
    ck_assert_int_eq(rep->type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(rep->len, sizeof val - 1);
    ck_assert(memcmp(rep->str, val, sizeof val - 1) == 0);
    freeReplyObject(rep);

    /* the key up to its NUL is another key */
    ck_assert_int_eq(spredis_cmd(&rep, r, "GET", "a key with spaces", NULL), SP_OK);
    ck_assert_int_eq(rep->type, REDIS_REPLY_NIL);
    freeReplyObject(rep);
    spredis_destroy(r);
}
END_TEST

START_TEST(string_arguments_are_never_a_format)
{
    spredis *r = create_ok(env->redis_url);
    redisReply *rep = NULL;
    ck_assert_int_eq(spredis_cmd(NULL, r, "SET", "fmt", "%s %b %d", NULL), SP_OK);
    ck_assert_int_eq(spredis_cmd(&rep, r, "GET", "fmt", NULL), SP_OK);
    ck_assert_str_eq(rep->str, "%s %b %d");
    freeReplyObject(rep);
    spredis_destroy(r);
}
END_TEST

START_TEST(error_reply_is_ok_with_error_type)
{
    spredis *r = create_ok(env->redis_url);
    redisReply *rep = NULL;
    ck_assert_int_eq(spredis_cmd(&rep, r, "NOSUCHCOMMAND", "x", NULL), SP_OK);
    ck_assert_int_eq(rep->type, REDIS_REPLY_ERROR);
    freeReplyObject(rep);
    /* the connection stays usable */
    ck_assert(spredis_ping(r));
    ck_assert_uint_eq(spredis_generation(r), 1);
    spredis_destroy(r);
}
END_TEST

START_TEST(exists_says_whether_a_key_is_there)
{
    spredis *r = create_ok(env->redis_url);
    redisReply *rep = NULL;
    ck_assert(!spredis_exists(r, "t:exists"));
    ck_assert_int_eq(spredis_cmd(&rep, r, "SET", "t:exists", "1", NULL), SP_OK);
    freeReplyObject(rep);
    ck_assert(spredis_exists(r, "t:exists"));
    spredis_destroy(r);
    /* nothing listens there: not "exists" */
    r = create_ok("redis://127.0.0.1:1");
    ck_assert(!spredis_exists(r, "t:exists"));
    spredis_destroy(r);
}
END_TEST

START_TEST(db_number_in_url_selects_the_database)
{
    char url[200];
    snprintf(url, sizeof url, "%s/3", env->redis_url);
    spredis *r3 = create_ok(url), *r0 = create_ok(env->redis_url);
    redisReply *rep = NULL;
    ck_assert_int_eq(spredis_cmd(NULL, r3, "SET", "in-db-3", "yes", NULL), SP_OK);
    ck_assert_int_eq(spredis_cmd(&rep, r0, "EXISTS", "in-db-3", NULL), SP_OK);
    ck_assert_int_eq(rep->integer, 0);
    freeReplyObject(rep);
    ck_assert_int_eq(spredis_cmd(&rep, r3, "EXISTS", "in-db-3", NULL), SP_OK);
    ck_assert_int_eq(rep->integer, 1);
    freeReplyObject(rep);
    spredis_destroy(r3);
    spredis_destroy(r0);
}
END_TEST

START_TEST(password_in_url_is_sent_with_auth)
{
    /* the harness's server requires a password (as make run's does): a wrong one fails
     * AUTH, so the client never gets a connection */
    char url[200];
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", env->redis_port);
    spredis *r = create_ok(url);
    ck_assert_int_eq(spredis_cmd(NULL, r, "PING", NULL), SP_ERR_UNAVAILABLE);
    ck_assert_uint_eq(spredis_generation(r), 0);
    spredis_destroy(r);

    /* none: every command is refused by the server */
    redisReply *rep = NULL;
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", env->redis_port);
    r = create_ok(url);
    ck_assert_int_eq(spredis_cmd(&rep, r, "GET", "anything", NULL), SP_OK);
    ck_assert_int_eq(rep->type, REDIS_REPLY_ERROR);
    ck_assert_ptr_nonnull(strstr(rep->str, "NOAUTH"));
    freeReplyObject(rep);
    spredis_destroy(r);

    /* the right one */
    r = create_ok(env->redis_url);
    ck_assert_int_eq(spredis_cmd(&rep, r, "PING", NULL), SP_OK);
    ck_assert_str_eq(rep->str, "PONG");
    freeReplyObject(rep);
    spredis_destroy(r);
}
END_TEST

START_TEST(server_down_is_unavailable_fast_and_restart_reconnects)
{
    spredis *r = create_ok(env->redis_url);
    ck_assert(spredis_ping(r));
    unsigned gen = spredis_generation(r);
    ck_assert_uint_eq(gen, 1);

    sptest_kill(&env->redis, SIGKILL);
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(spredis_cmd(NULL, r, "PING", NULL), SP_ERR_UNAVAILABLE);
    ck_assert_int_eq(spredis_cmd(NULL, r, "PING", NULL), SP_ERR_UNAVAILABLE);
    ck_assert(!spredis_ping(r));
    ck_assert_int_lt(sp_monotonic_us() - t0, 1000000);

    sptest_restart(env, &env->redis);
    bool back = false;
    for (int i = 0; i < 50 && !back; i++) {
        back = spredis_ping(r);
        if (!back) usleep(100000);
    }
    ck_assert(back);
    ck_assert_uint_eq(spredis_generation(r), gen + 1);
    spredis_destroy(r);
}
END_TEST

START_TEST(first_command_after_a_restart_succeeds)
{
    spredis *r = create_ok(env->redis_url);
    ck_assert(spredis_ping(r));
    sptest_kill(&env->redis, SIGKILL);
    sptest_restart(env, &env->redis);
    /* the idle connection died with the old server: found before sending, replaced at
     * once, and the command runs on the new one */
    ck_assert_int_eq(spredis_cmd(NULL, r, "PING", NULL), SP_OK);
    ck_assert_uint_eq(spredis_generation(r), 2);
    spredis_destroy(r);
}
END_TEST

START_TEST(created_while_server_down_is_ok_and_unavailable)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", sptest_free_port());
    spredis *r = create_ok(url);
    redisReply *rep = (redisReply *)1;
    ck_assert_int_eq(spredis_cmd(&rep, r, "GET", "k", NULL), SP_ERR_UNAVAILABLE);
    ck_assert_ptr_null(rep);
    ck_assert_uint_eq(spredis_generation(r), 0);
    spredis_destroy(r);
    spredis_destroy(NULL);
}
END_TEST

START_TEST(bad_urls_are_validation_failed)
{
    static const char *bad[] = {
        "http://127.0.0.1:6379",  "redis://",       "redis://:6379",       "redis://host:port",
        "redis://host:70000",     "redis://host:0", "redis://host:6379/x", "redis://host:6379/1/2",
        "redis://user@host:6379", "127.0.0.1:6379"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        spredis *r = (spredis *)1;
        ck_assert_msg(spredis_create(&r, bad[i], 1000) == SP_ERR_VALIDATION_FAILED, "%s", bad[i]);
        ck_assert_ptr_null(r);
    }
    spredis *r = (spredis *)1;
    ck_assert_int_eq(spredis_create(&r, NULL, 1000), SP_ERR_VALIDATION_FAILED);
    ck_assert_int_eq(spredis_create(&r, env->redis_url, 0), SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_null(r);
}
END_TEST

/* The program owns its signal handling: creating a client changes none of it. */
START_TEST(create_leaves_the_signal_handling_alone)
{
    signal(SIGPIPE, SIG_DFL); /* this test runs in a forked child: main's choice is intact */
    spredis *r = NULL;
    ck_assert_int_eq(spredis_create(&r, env->redis_url, 1000), SP_OK);
    struct sigaction sa;
    ck_assert_int_eq(sigaction(SIGPIPE, NULL, &sa), 0);
    ck_assert(sa.sa_handler == SIG_DFL);
    spredis_destroy(r);
}
END_TEST

int main(void)
{
    /* as the service kit does: Redis killed under a command must not kill the program */
    signal(SIGPIPE, SIG_IGN);
    sp_log_init("test_spredis", SP_LOG_ERROR);
    env = sptest_start("spredis", SPTEST_REDIS);
    Suite *s = suite_create("spredis");
    TCase *tc = tcase_create("redis");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, binary_values_with_spaces_and_nuls_round_trip);
    tcase_add_test(tc, create_leaves_the_signal_handling_alone);
    tcase_add_test(tc, string_arguments_are_never_a_format);
    tcase_add_test(tc, error_reply_is_ok_with_error_type);
    tcase_add_test(tc, exists_says_whether_a_key_is_there);
    tcase_add_test(tc, db_number_in_url_selects_the_database);
    tcase_add_test(tc, password_in_url_is_sent_with_auth);
    tcase_add_test(tc, server_down_is_unavailable_fast_and_restart_reconnects);
    tcase_add_test(tc, first_command_after_a_restart_succeeds);
    tcase_add_test(tc, created_while_server_down_is_ok_and_unavailable);
    tcase_add_test(tc, bad_urls_are_validation_failed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed) sptest_mark_failed(env);
    sptest_stop(env);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
