/* test_spdb.c -- spdb against a private PostgreSQL started by the harness: parameters are
 * stored verbatim, errors map to status codes, transactions, and reconnect after the
 * postmaster is killed and restarted. */
#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "spdb.h"
#include "sptest.h"

static sptest_env *env;

static spdb *connect_ok(void)
{
    spdb *db = NULL;
    ck_assert_int_eq(spdb_connect(&db, env->db_url), SP_OK);
    ck_assert_ptr_nonnull(db);
    return db;
}

static long count_rows(spdb *db, const char *table)
{
    char sql[128];
    PGresult *res = NULL;
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    ck_assert_int_eq(spdb_query(&res, db, sql, 0, NULL), SP_OK);
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

START_TEST(params_with_null_and_sql_metacharacters_are_stored_verbatim)
{
    spdb *db = connect_ok();
    const char *evil = "Robert'); DROP TABLE verbatim; -- \\ $1 \"x\" %s";
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE verbatim (id int, a text, b text)", 0, NULL),
                     SP_OK);
    const char *params[] = {"1", evil, NULL};
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO verbatim VALUES ($1, $2, $3)", 3, params), SP_OK);
    PGresult *res = NULL;
    const char *id[] = {"1"};
    ck_assert_int_eq(spdb_query(&res, db, "SELECT a, b FROM verbatim WHERE id = $1", 1, id), SP_OK);
    ck_assert_int_eq(PQntuples(res), 1);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), evil);
    ck_assert(PQgetisnull(res, 0, 1));
    PQclear(res);
    spdb_destroy(db);
}
END_TEST

START_TEST(unique_violation_is_conflict)
{
    spdb *db = connect_ok();
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE uniq (email text PRIMARY KEY)", 0, NULL), SP_OK);
    const char *p[] = {"a@example.com"};
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO uniq VALUES ($1)", 1, p), SP_OK);
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO uniq VALUES ($1)", 1, p), SP_ERR_CONFLICT);
    ck_assert_str_eq(spdb_last_sqlstate(db), "23505");
    spdb_destroy(db);
}
END_TEST

START_TEST(other_errors_are_internal_with_sqlstate)
{
    spdb *db = connect_ok();
    PGresult *res = (PGresult *)1;
    ck_assert_int_eq(spdb_query(&res, db, "SELEC 1", 0, NULL), SP_ERR_INTERNAL);
    ck_assert_ptr_null(res);
    ck_assert_str_eq(spdb_last_sqlstate(db), "42601");
    ck_assert_int_eq(spdb_exec(db, "SELECT 1", 0, NULL), SP_OK);
    ck_assert_str_eq(spdb_last_sqlstate(db), "");
    spdb_destroy(db);
}
END_TEST

START_TEST(committed_transaction_is_visible_to_others)
{
    spdb *db = connect_ok(), *other = connect_ok();
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE committed (v int)", 0, NULL), SP_OK);
    ck_assert_int_eq(spdb_begin(db), SP_OK);
    ck_assert(spdb_in_tx(db));
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO committed VALUES (1), (2)", 0, NULL), SP_OK);
    ck_assert_int_eq(count_rows(other, "committed"), 0);
    ck_assert_int_eq(spdb_commit(db), SP_OK);
    ck_assert(!spdb_in_tx(db));
    ck_assert_int_eq(count_rows(other, "committed"), 2);
    spdb_destroy(db);
    spdb_destroy(other);
}
END_TEST

START_TEST(rolled_back_transaction_leaves_nothing)
{
    spdb *db = connect_ok();
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE rolled (v int)", 0, NULL), SP_OK);
    ck_assert_int_eq(spdb_begin(db), SP_OK);
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO rolled VALUES (1)", 0, NULL), SP_OK);
    spdb_rollback(db);
    ck_assert(!spdb_in_tx(db));
    ck_assert_int_eq(count_rows(db, "rolled"), 0);
    spdb_rollback(db); /* no-op outside a transaction */
    ck_assert_int_eq(count_rows(db, "rolled"), 0);
    spdb_destroy(db);
}
END_TEST

START_TEST(commit_after_a_failed_statement_is_not_ok)
{
    spdb *db = connect_ok();
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE failedtx (v int PRIMARY KEY)", 0, NULL), SP_OK);
    ck_assert_int_eq(spdb_begin(db), SP_OK);
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO failedtx VALUES (1), (1)", 0, NULL),
                     SP_ERR_CONFLICT);
    ck_assert_int_ne(spdb_commit(db), SP_OK);
    ck_assert(!spdb_in_tx(db));
    ck_assert_int_eq(count_rows(db, "failedtx"), 0);
    spdb_destroy(db);
}
END_TEST

START_TEST(same_object_works_after_postmaster_kill_9_and_restart)
{
    spdb *db = connect_ok();
    ck_assert(spdb_ping(db));
    sptest_kill(&env->pg, SIGKILL);
    ck_assert_int_eq(spdb_exec(db, "SELECT 1", 0, NULL), SP_ERR_UNAVAILABLE);
    ck_assert(!spdb_ping(db));
    sptest_restart(env, &env->pg);
    ck_assert_int_eq(spdb_exec(db, "SELECT 1", 0, NULL), SP_OK);
    ck_assert(spdb_ping(db));
    spdb_destroy(db);
}
END_TEST

START_TEST(statement_after_an_unnoticed_restart_is_retried_once)
{
    spdb *db = connect_ok();
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE retried (v int)", 0, NULL), SP_OK);
    sptest_kill(&env->pg, SIGKILL);
    sptest_restart(env, &env->pg);
    /* the connection still looks fine until used: the first statement finds it dead */
    ck_assert_int_eq(PQstatus(spdb_conn(db)), CONNECTION_OK);
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO retried VALUES (1)", 0, NULL), SP_OK);
    ck_assert_int_eq(count_rows(db, "retried"), 1);
    spdb_destroy(db);
}
END_TEST

START_TEST(restart_inside_a_transaction_is_unavailable_then_recovers)
{
    spdb *db = connect_ok();
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE lost (v int)", 0, NULL), SP_OK);
    ck_assert_int_eq(spdb_begin(db), SP_OK);
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO lost VALUES (1)", 0, NULL), SP_OK);
    sptest_kill(&env->pg, SIGKILL);
    sptest_restart(env, &env->pg);
    /* the transaction died with its connection: never silently redone on a new one */
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO lost VALUES (2)", 0, NULL), SP_ERR_UNAVAILABLE);
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO lost VALUES (3)", 0, NULL), SP_ERR_UNAVAILABLE);
    ck_assert_int_eq(spdb_commit(db), SP_ERR_UNAVAILABLE);
    ck_assert(!spdb_in_tx(db));
    ck_assert_int_eq(count_rows(db, "lost"), 0);
    spdb_destroy(db);
}
END_TEST

START_TEST(unreachable_server_is_unavailable_within_seconds)
{
    char url[128];
    snprintf(url, sizeof url, "postgresql://sp@127.0.0.1:%d/smartpark", sptest_free_port());
    spdb *db = (spdb *)1;
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(spdb_connect(&db, url), SP_ERR_UNAVAILABLE);
    ck_assert_ptr_null(db);
    ck_assert_int_lt(sp_monotonic_us() - t0, 6 * 1000000);
    spdb_destroy(NULL);
}
END_TEST

int main(void)
{
    sp_log_init("test_spdb", SP_LOG_WARN);
    env = sptest_start("spdb", SPTEST_PG);
    Suite *s = suite_create("spdb");
    TCase *tc = tcase_create("postgres");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, params_with_null_and_sql_metacharacters_are_stored_verbatim);
    tcase_add_test(tc, unique_violation_is_conflict);
    tcase_add_test(tc, other_errors_are_internal_with_sqlstate);
    tcase_add_test(tc, committed_transaction_is_visible_to_others);
    tcase_add_test(tc, rolled_back_transaction_leaves_nothing);
    tcase_add_test(tc, commit_after_a_failed_statement_is_not_ok);
    tcase_add_test(tc, same_object_works_after_postmaster_kill_9_and_restart);
    tcase_add_test(tc, statement_after_an_unnoticed_restart_is_retried_once);
    tcase_add_test(tc, restart_inside_a_transaction_is_unavailable_then_recovers);
    tcase_add_test(tc, unreachable_server_is_unavailable_within_seconds);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed) sptest_mark_failed(env);
    sptest_stop(env);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
