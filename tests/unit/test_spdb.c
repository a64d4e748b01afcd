/* test_spdb.c -- spdb against a private PostgreSQL started by the harness: parameters are
 * stored verbatim, errors map to status codes, transactions, server-side timeouts,
 * prepared statements, and reconnect after the postmaster is killed and restarted without
 * ever running a write twice. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

static spdb *connect_with(int statement_ms, int lock_ms, int idle_ms)
{
    const spdb_opts o = {statement_ms, lock_ms, idle_ms};
    spdb *db = NULL;
    ck_assert_int_eq(spdb_connect_opts(&db, env->db_url, &o), SP_OK);
    ck_assert_ptr_nonnull(db);
    return db;
}

/* The value of a setting on db's session, in 'buf'. */
static const char *show(char *buf, size_t len, spdb *db, const char *setting)
{
    char sql[128];
    PGresult *res = NULL;
    snprintf(sql, sizeof sql, "SHOW %s", setting);
    ck_assert_int_eq(spdb_read(&res, db, sql, 0, NULL), SP_OK);
    snprintf(buf, len, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return buf;
}

static void restart_postgres(void)
{
    sptest_kill(&env->pg, SIGKILL);
    sptest_restart(env, &env->pg);
}

/* Makes 'killer' terminate the backend of 'victim' 'after_s' seconds from now, without
 * waiting: the victim's next statement loses its connection while in flight. */
static void terminate_later(spdb *killer, spdb *victim, const char *after_s)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", PQbackendPID(spdb_conn(victim)));
    const char *p[] = {pid, after_s};
    ck_assert_int_eq(
        PQsendQueryParams(spdb_conn(killer),
                          "SELECT pg_terminate_backend($1::int) FROM pg_sleep($2::float8)", 2,
                          NULL, p, NULL, NULL, 0),
        1);
}

static void wait_terminated(spdb *killer)
{
    PGresult *res;
    bool killed = false;
    while ((res = PQgetResult(spdb_conn(killer))) != NULL) {
        if (PQresultStatus(res) == PGRES_TUPLES_OK)
            killed = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
        PQclear(res);
    }
    ck_assert_msg(killed, "pg_terminate_backend did not hit the victim");
}

/* The log lines written while capturing. */
static char *log_buf;
static size_t log_len;
static FILE *log_f;

static void capture_log(void)
{
    log_f = open_memstream(&log_buf, &log_len);
    ck_assert_ptr_nonnull(log_f);
    sp_log_set_stream(log_f);
}

/* Stops capturing; true when a captured line contains 'a' and 'b' (b may be NULL). */
static bool logged(const char *a, const char *b)
{
    sp_log_set_stream(NULL);
    fclose(log_f);
    bool found = false;
    for (char *line = strtok(log_buf, "\n"); line && !found; line = strtok(NULL, "\n"))
        found = strstr(line, a) && (!b || strstr(line, b));
    free(log_buf);
    log_buf = NULL;
    return found;
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

START_TEST(statements_after_an_unnoticed_restart_are_sent_on_a_reset_connection)
{
    spdb *w = connect_ok(), *r = connect_ok(), *pw = connect_ok();
    ck_assert_int_eq(spdb_exec(w, "CREATE TABLE retried (v int)", 0, NULL), SP_OK);
    restart_postgres();
    /* the connections still look fine until used: each statement finds its connection
     * dead before sending (the socket shows the server's end), resets it and sends once */
    ck_assert_int_eq(PQstatus(spdb_conn(w)), CONNECTION_OK);
    ck_assert_int_eq(PQstatus(spdb_conn(pw)), CONNECTION_OK);
    capture_log();
    PGresult *res = NULL;
    ck_assert_int_eq(spdb_query(&res, w, "INSERT INTO retried VALUES (1) RETURNING v", 0, NULL),
                     SP_OK);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "1");
    PQclear(res);
    ck_assert_int_eq(spdb_read(&res, r, "SELECT count(*) FROM retried", 0, NULL), SP_OK);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "1");
    PQclear(res);
    const char *two[] = {"2"};
    ck_assert_int_eq(spdb_prepared(NULL, pw, "ins_retried", "INSERT INTO retried VALUES ($1)",
                                   1, two, false),
                     SP_OK);
    ck_assert(!logged("db_outcome_unknown", NULL));
    ck_assert_int_eq(count_rows(w, "retried"), 2);
    spdb_destroy(w);
    spdb_destroy(r);
    spdb_destroy(pw);
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

START_TEST(timeouts_are_set_by_default_by_option_and_after_a_reset)
{
    char v[64];
    spdb *def = connect_ok();
    ck_assert_str_eq(show(v, sizeof v, def, "statement_timeout"), "5s");
    ck_assert_str_eq(show(v, sizeof v, def, "lock_timeout"), "2s");
    ck_assert_str_eq(show(v, sizeof v, def, "idle_in_transaction_session_timeout"), "10s");

    spdb *custom = connect_with(200, 300, 3000), *none = NULL;
    ck_assert_str_eq(show(v, sizeof v, custom, "statement_timeout"), "200ms");
    ck_assert_str_eq(show(v, sizeof v, custom, "lock_timeout"), "300ms");
    ck_assert_str_eq(show(v, sizeof v, custom, "idle_in_transaction_session_timeout"), "3s");
    const spdb_opts off = {SPDB_TIMEOUT_NONE, 0, 0};
    ck_assert_int_eq(spdb_connect_opts(&none, env->db_url, &off), SP_OK);
    ck_assert_str_eq(show(v, sizeof v, none, "statement_timeout"), "0");
    ck_assert_str_eq(show(v, sizeof v, none, "lock_timeout"), "2s");
    const spdb_opts bad = {-5, 0, 0};
    spdb *rejected = (spdb *)1;
    ck_assert_int_eq(spdb_connect_opts(&rejected, env->db_url, &bad), SP_ERR_VALIDATION_FAILED);
    ck_assert_ptr_null(rejected);

    /* options already in the URL are kept, ours are added */
    char url[512];
    snprintf(url, sizeof url, "%s?options=-c%%20work_mem%%3D8MB", env->db_url);
    spdb *merged = NULL;
    ck_assert_int_eq(spdb_connect(&merged, url), SP_OK);
    ck_assert_str_eq(show(v, sizeof v, merged, "work_mem"), "8MB");
    ck_assert_str_eq(show(v, sizeof v, merged, "statement_timeout"), "5s");

    /* PQreset connects with the same options */
    restart_postgres();
    ck_assert_str_eq(show(v, sizeof v, custom, "statement_timeout"), "200ms");
    ck_assert_str_eq(show(v, sizeof v, custom, "lock_timeout"), "300ms");
    ck_assert_str_eq(show(v, sizeof v, custom, "idle_in_transaction_session_timeout"), "3s");
    ck_assert_str_eq(show(v, sizeof v, def, "statement_timeout"), "5s");
    ck_assert_str_eq(show(v, sizeof v, merged, "work_mem"), "8MB");
    spdb_destroy(def);
    spdb_destroy(custom);
    spdb_destroy(none);
    spdb_destroy(merged);
}
END_TEST

START_TEST(statement_timeout_is_unavailable_and_the_connection_stays_usable)
{
    spdb *db = connect_with(200, 0, 0);
    int pid = PQbackendPID(spdb_conn(db));
    capture_log();
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(spdb_exec(db, "SELECT pg_sleep(10)", 0, NULL), SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 2 * 1000000);
    ck_assert_str_eq(spdb_last_sqlstate(db), "57014");
    ck_assert(logged("\"warn\"", "57014"));
    ck_assert_int_eq(spdb_exec(db, "SELECT 1", 0, NULL), SP_OK);
    ck_assert_int_eq(PQbackendPID(spdb_conn(db)), pid); /* same session, no reset */
    /* inside a transaction too; the transaction is then failed, not committed */
    ck_assert_int_eq(spdb_begin(db), SP_OK);
    ck_assert_int_eq(spdb_read(NULL, db, "SELECT pg_sleep(10)", 0, NULL), SP_ERR_UNAVAILABLE);
    ck_assert_int_ne(spdb_commit(db), SP_OK);
    ck_assert_int_eq(spdb_exec(db, "SELECT 1", 0, NULL), SP_OK);
    spdb_destroy(db);
}
END_TEST

START_TEST(lock_timeout_is_unavailable)
{
    spdb *holder = connect_ok(), *waiter = connect_with(0, 200, 0);
    ck_assert_int_eq(spdb_exec(holder, "CREATE TABLE locked (id int PRIMARY KEY, v int)", 0, NULL),
                     SP_OK);
    ck_assert_int_eq(spdb_exec(holder, "INSERT INTO locked VALUES (1, 0)", 0, NULL), SP_OK);
    ck_assert_int_eq(spdb_begin(holder), SP_OK);
    ck_assert_int_eq(spdb_exec(holder, "UPDATE locked SET v = 1 WHERE id = 1", 0, NULL), SP_OK);
    capture_log();
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(spdb_exec(waiter, "UPDATE locked SET v = 2 WHERE id = 1", 0, NULL),
                     SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 2 * 1000000);
    ck_assert_str_eq(spdb_last_sqlstate(waiter), "55P03");
    ck_assert(logged("\"warn\"", "55P03"));
    spdb_rollback(holder);
    ck_assert_int_eq(spdb_exec(waiter, "UPDATE locked SET v = 2 WHERE id = 1", 0, NULL), SP_OK);
    spdb_destroy(holder);
    spdb_destroy(waiter);
}
END_TEST

START_TEST(idle_in_transaction_timeout_ends_the_transaction)
{
    char v[64];
    spdb *db = connect_with(0, 0, 300);
    ck_assert_str_eq(show(v, sizeof v, db, "idle_in_transaction_session_timeout"), "300ms");
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE idle (v int)", 0, NULL), SP_OK);
    ck_assert_int_eq(spdb_begin(db), SP_OK);
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO idle VALUES (1)", 0, NULL), SP_OK);
    usleep(1000 * 1000);
    /* the server closed the session: the transaction is gone, never redone */
    ck_assert_int_eq(spdb_exec(db, "INSERT INTO idle VALUES (2)", 0, NULL), SP_ERR_UNAVAILABLE);
    ck_assert_int_eq(spdb_commit(db), SP_ERR_UNAVAILABLE);
    ck_assert_int_eq(count_rows(db, "idle"), 0);
    spdb_destroy(db);
}
END_TEST

START_TEST(write_lost_in_flight_is_unknown_and_not_rerun)
{
    spdb *db = connect_ok(), *killer = connect_ok();
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE once (v int)", 0, NULL), SP_OK);
    /* commits its row, then keeps the statement running: the reply is lost after the
     * commit, exactly the case where a blind re-run would write twice */
    ck_assert_int_eq(spdb_exec(db,
                               "CREATE PROCEDURE insert_then_wait() LANGUAGE plpgsql AS $$"
                               " BEGIN INSERT INTO once VALUES (1); COMMIT;"
                               " PERFORM pg_sleep(2); END $$",
                               0, NULL),
                     SP_OK);
    terminate_later(killer, db, "0.5");
    capture_log();
    int64_t t0 = sp_monotonic_us();
    ck_assert_int_eq(spdb_exec(db, "CALL insert_then_wait()", 0, NULL), SP_ERR_UNAVAILABLE);
    ck_assert_int_lt(sp_monotonic_us() - t0, 2200000); /* not run again (2 s more) */
    ck_assert(logged("db_outcome_unknown", NULL));
    wait_terminated(killer);
    ck_assert_int_eq(count_rows(killer, "once"), 1);

    /* the connection is reset on its next use */
    ck_assert_int_eq(spdb_exec(db, "SELECT 1", 0, NULL), SP_OK);

    /* the same through spdb_query, before its commit: nothing written, nothing re-run */
    terminate_later(killer, db, "0.3");
    PGresult *res = (PGresult *)1;
    ck_assert_int_eq(
        spdb_query(&res, db, "INSERT INTO once SELECT 2 FROM pg_sleep(1) RETURNING v", 0, NULL),
        SP_ERR_UNAVAILABLE);
    ck_assert_ptr_null(res);
    wait_terminated(killer);
    ck_assert_int_eq(count_rows(killer, "once"), 1);
    ck_assert_int_eq(spdb_exec(db, "SELECT 1", 0, NULL), SP_OK);
    spdb_destroy(db);
    spdb_destroy(killer);
}
END_TEST

START_TEST(read_lost_in_flight_is_rerun_on_a_new_connection)
{
    spdb *db = connect_ok(), *killer = connect_ok();
    int pid = PQbackendPID(spdb_conn(db));
    terminate_later(killer, db, "0.3");
    PGresult *res = NULL;
    ck_assert_int_eq(spdb_read(&res, db, "SELECT 42 FROM pg_sleep(1)", 0, NULL), SP_OK);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "42");
    PQclear(res);
    wait_terminated(killer);
    ck_assert_int_ne(PQbackendPID(spdb_conn(db)), pid);

    /* a server restart while idle: the read is sent on a reset connection */
    restart_postgres();
    ck_assert_int_eq(spdb_read(&res, db, "SELECT 43", 0, NULL), SP_OK);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "43");
    PQclear(res);
    spdb_destroy(db);
    spdb_destroy(killer);
}
END_TEST

/* How many statements named 'name' are prepared on db's session. */
static long prepared_count(spdb *db, const char *name)
{
    PGresult *res = NULL;
    const char *p[] = {name};
    ck_assert_int_eq(
        spdb_read(&res, db, "SELECT count(*) FROM pg_prepared_statements WHERE name = $1", 1, p),
        SP_OK);
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

START_TEST(prepared_statement_is_prepared_once_and_again_after_a_restart)
{
    spdb *db = connect_ok();
    const char *sql = "SELECT $1::int + 1";
    for (int i = 0; i < 3; i++) {
        PGresult *res = NULL;
        const char *p[] = {"41"};
        ck_assert_int_eq(spdb_prepared(&res, db, "plus_one", sql, 1, p, true), SP_OK);
        ck_assert_str_eq(PQgetvalue(res, 0, 0), "42");
        PQclear(res);
        ck_assert_int_eq(prepared_count(db, "plus_one"), 1);
    }
    restart_postgres();
    PGresult *res = NULL;
    const char *p[] = {"1"};
    ck_assert_int_eq(spdb_prepared(&res, db, "plus_one", sql, 1, p, true), SP_OK);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "2");
    PQclear(res);
    ck_assert_int_eq(prepared_count(db, "plus_one"), 1);
    /* dropped behind the library's back: prepared again, not an error */
    ck_assert_int_eq(spdb_exec(db, "DEALLOCATE ALL", 0, NULL), SP_OK);
    ck_assert_int_eq(spdb_prepared(&res, db, "plus_one", sql, 1, p, true), SP_OK);
    ck_assert_str_eq(PQgetvalue(res, 0, 0), "2");
    PQclear(res);
    /* a name means one statement */
    ck_assert_int_eq(spdb_prepared(NULL, db, "plus_one", "SELECT 2", 0, NULL, true),
                     SP_ERR_INTERNAL);
    spdb_destroy(db);
}
END_TEST

START_TEST(prepared_names_are_bounded)
{
    spdb *db = connect_ok();
    char name[32];
    for (int i = 0; i < SPDB_MAX_PREPARED; i++) {
        snprintf(name, sizeof name, "bounded_%d", i);
        ck_assert_int_eq(spdb_prepared(NULL, db, name, "SELECT 1", 0, NULL, true), SP_OK);
    }
    ck_assert_int_eq(spdb_prepared(NULL, db, "one_too_many", "SELECT 1", 0, NULL, true),
                     SP_ERR_INTERNAL);
    ck_assert_int_eq(spdb_prepared(NULL, db, "bounded_0", "SELECT 1", 0, NULL, true), SP_OK);
    char longname[80];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    ck_assert_int_eq(spdb_prepared(NULL, db, longname, "SELECT 1", 0, NULL, true),
                     SP_ERR_INTERNAL);
    spdb_destroy(db);
}
END_TEST

START_TEST(prepared_write_lost_in_flight_is_not_rerun)
{
    spdb *db = connect_ok(), *killer = connect_ok();
    ck_assert_int_eq(spdb_exec(db, "CREATE TABLE prep_once (v int)", 0, NULL), SP_OK);
    const char *sql = "INSERT INTO prep_once SELECT $1::int FROM pg_sleep($2::float8)";
    const char *fast[] = {"1", "0"};
    ck_assert_int_eq(spdb_prepared(NULL, db, "ins_prep", sql, 2, fast, false), SP_OK);
    terminate_later(killer, db, "0.3");
    const char *slow[] = {"2", "1"};
    capture_log();
    ck_assert_int_eq(spdb_prepared(NULL, db, "ins_prep", sql, 2, slow, false),
                     SP_ERR_UNAVAILABLE);
    ck_assert(logged("db_outcome_unknown", NULL));
    wait_terminated(killer);
    ck_assert_int_eq(count_rows(killer, "prep_once"), 1);
    /* the reset connection prepares it again */
    const char *three[] = {"3", "0"};
    ck_assert_int_eq(spdb_prepared(NULL, db, "ins_prep", sql, 2, three, false), SP_OK);
    ck_assert_int_eq(count_rows(killer, "prep_once"), 2);
    spdb_destroy(db);
    spdb_destroy(killer);
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
    tcase_add_test(tc, statements_after_an_unnoticed_restart_are_sent_on_a_reset_connection);
    tcase_add_test(tc, restart_inside_a_transaction_is_unavailable_then_recovers);
    tcase_add_test(tc, unreachable_server_is_unavailable_within_seconds);
    tcase_add_test(tc, timeouts_are_set_by_default_by_option_and_after_a_reset);
    tcase_add_test(tc, statement_timeout_is_unavailable_and_the_connection_stays_usable);
    tcase_add_test(tc, lock_timeout_is_unavailable);
    tcase_add_test(tc, idle_in_transaction_timeout_ends_the_transaction);
    tcase_add_test(tc, write_lost_in_flight_is_unknown_and_not_rerun);
    tcase_add_test(tc, read_lost_in_flight_is_rerun_on_a_new_connection);
    tcase_add_test(tc, prepared_statement_is_prepared_once_and_again_after_a_restart);
    tcase_add_test(tc, prepared_names_are_bounded);
    tcase_add_test(tc, prepared_write_lost_in_flight_is_not_rerun);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed) sptest_mark_failed(env);
    sptest_stop(env);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
