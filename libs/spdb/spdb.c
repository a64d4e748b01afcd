/* spdb.c -- PostgreSQL over libpq: parameterised queries, prepared statements, transactions,
 * server-side timeouts, reconnect after a server restart. */
#include "spdb.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 63 /* NAMEDATALEN - 1: PostgreSQL cuts longer names */
#define STR_(x) #x
#define STR(x) STR_(x)

typedef struct {
    char name[NAME_MAX_LEN + 1];
    char *sql;
} prepared;

struct spdb {
    PGconn *conn;
    bool in_tx;
    bool tx_dead; /* the connection was lost inside the transaction */
    char sqlstate[6];
    /* the names prepared on this connection, forgotten when it is reset */
    prepared prep[SPDB_MAX_PREPARED];
    int nprep;
};

/* One statement as the callers asked for it. */
typedef struct {
    const char *name; /* prepared statement, or NULL for PQexecParams */
    const char *sql;
    int nparams;
    const char *const *params;
    bool read_only; /* may run twice: re-run after a loss in flight */
    bool commit;    /* COMMIT: a loss in flight leaves the transaction's outcome unknown */
} stmt;

/* Where a statement met a dead connection. */
typedef enum {
    LOST_NOT,       /* it did not: the result or error is the server's */
    LOST_UNSENT,    /* before the statement itself was sent (while preparing it) */
    LOST_IN_FLIGHT, /* after: it may have run, committed even */
} lost_at;

static bool timeout_ok(int ms)
{
    return ms >= 0 || ms == SPDB_TIMEOUT_NONE;
}

/* PostgreSQL's value for one of our settings: 0 takes 'def', SPDB_TIMEOUT_NONE is 0. */
static int timeout_value(int ms, int def)
{
    if (ms == 0) return def;
    return ms < 0 ? 0 : ms;
}

/* The 'options' keyword: those of 'url' (if any) followed by our -c settings, which win.
 * false when they do not fit in 'buf'. */
static bool build_options(char *buf, size_t len, const char *url, const spdb_opts *o)
{
    const char *theirs = "";
    char *err = NULL;
    PQconninfoOption *info = PQconninfoParse(url, &err);
    for (PQconninfoOption *i = info; i && i->keyword; i++)
        if (strcmp(i->keyword, "options") == 0 && i->val) theirs = i->val;
    int n = snprintf(buf, len,
                     "%s%s-c statement_timeout=%d -c lock_timeout=%d"
                     " -c idle_in_transaction_session_timeout=%d",
                     theirs, theirs[0] ? " " : "",
                     timeout_value(o->statement_timeout_ms, SPDB_DEFAULT_STATEMENT_TIMEOUT_MS),
                     timeout_value(o->lock_timeout_ms, SPDB_DEFAULT_LOCK_TIMEOUT_MS),
                     timeout_value(o->idle_in_tx_timeout_ms, SPDB_DEFAULT_IDLE_IN_TX_TIMEOUT_MS));
    PQconninfoFree(info);
    PQfreemem(err);
    return n >= 0 && (size_t)n < len;
}

sp_status spdb_connect_opts(spdb **out, const char *url, const spdb_opts *opts)
{
    static const spdb_opts defaults = {0};
    *out = NULL;
    if (!url) return SP_ERR_VALIDATION_FAILED;
    if (!opts) opts = &defaults;
    if (!timeout_ok(opts->statement_timeout_ms) || !timeout_ok(opts->lock_timeout_ms) ||
        !timeout_ok(opts->idle_in_tx_timeout_ms))
        return SP_ERR_VALIDATION_FAILED;
    char options[1024];
    if (!build_options(options, sizeof options, url, opts)) {
        sp_log_error(NULL, "db_options_too_long", "limit", "1023 bytes");
        return SP_ERR_VALIDATION_FAILED;
    }
    /* expand_dbname: 'url' may be a URI or a key=value string; the keywords after it win.
     * PQreset connects again with the same keywords: the timeouts survive a reset. */
    const char *const keys[] = {"dbname",
                                "connect_timeout",
                                "keepalives",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                "options",
                                NULL};
    const char *const vals[] = {url, "5", "1", "10", "5", "3", options, NULL};
    PGconn *conn = PQconnectdbParams(keys, vals, 1);
    if (!conn) return SP_ERR_INTERNAL;
    if (PQstatus(conn) != CONNECTION_OK) {
        /* libpq's message names host and port, never the password */
        sp_log_warn(NULL, "db_connect_failed", "error", PQerrorMessage(conn));
        PQfinish(conn);
        return SP_ERR_UNAVAILABLE;
    }
    spdb *db = calloc(1, sizeof *db);
    if (!db) {
        PQfinish(conn);
        return SP_ERR_INTERNAL;
    }
    db->conn = conn;
    *out = db;
    return SP_OK;
}

sp_status spdb_connect(spdb **out, const char *url)
{
    return spdb_connect_opts(out, url, NULL);
}

static void forget_prepared(spdb *db)
{
    for (int i = 0; i < db->nprep; i++)
        free(db->prep[i].sql);
    db->nprep = 0;
}

void spdb_destroy(spdb *db)
{
    if (!db) return;
    forget_prepared(db);
    PQfinish(db->conn);
    free(db);
}

/* true unless the connection is known dead before anything is sent on it: libpq saw it
 * fail, or its socket is readable (EOF, an error, the server's FATAL goodbye) and reading
 * it leaves libpq with a dead connection. poll() with no wait: costs one system call. */
static bool alive(spdb *db)
{
    /* A FATAL message and the EOF behind it may take two reads; notifications one each. */
    for (int round = 0; round < 4; round++) {
        if (PQstatus(db->conn) != CONNECTION_OK) return false;
        int fd = PQsocket(db->conn);
        if (fd < 0) return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return true; /* nothing pending (or poll failed: let libpq find out) */
        if (p.revents & POLLNVAL) return false;
        if (!PQconsumeInput(db->conn)) return false;
    }
    return PQstatus(db->conn) == CONNECTION_OK;
}

/* Connects again after the server went away; false when it still is. The statements
 * prepared on the old connection are gone with it. */
static bool reset(spdb *db)
{
    forget_prepared(db);
    PQreset(db->conn);
    if (PQstatus(db->conn) == CONNECTION_OK) {
        sp_log_info(NULL, "db_reconnected");
        return true;
    }
    snprintf(db->sqlstate, sizeof db->sqlstate, "08006");
    return false;
}

static sp_status status_of_error(spdb *db, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(db->sqlstate, sizeof db->sqlstate, "%s", state ? state : "");
    if (strcmp(db->sqlstate, "23505") == 0) return SP_ERR_CONFLICT;
    /* connection exceptions (08), shutdown and cannot-connect-now (57P0x) */
    if (strncmp(db->sqlstate, "08", 2) == 0 || strncmp(db->sqlstate, "57P0", 4) == 0)
        return SP_ERR_UNAVAILABLE;
    /* Stopped by statement_timeout (or a cancel) or lock_timeout: nothing was written (the
     * statement, or its transaction, is rolled back), and a later try may pass. */
    if (strcmp(db->sqlstate, "57014") == 0 || strcmp(db->sqlstate, "55P03") == 0) {
        bool lock = strcmp(db->sqlstate, "55P03") == 0;
        sp_log_warn(NULL, "db_statement_stopped", "sqlstate", db->sqlstate, "reason",
                    lock ? "lock_timeout" : "statement_timeout");
        return SP_ERR_UNAVAILABLE;
    }
    /* The message text may quote a parameter: log only what names the failure. */
    const char *table = res ? PQresultErrorField(res, PG_DIAG_TABLE_NAME) : NULL;
    const char *constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    sp_log_error(NULL, "db_query_failed", "sqlstate", db->sqlstate, "table", table ? table : "",
                 "constraint", constraint ? constraint : "");
    return SP_ERR_INTERNAL;
}

/* The result of one round trip: SP_OK hands 'res' to *out (or frees it); otherwise *lost
 * tells whether the connection died on the way ('where' names which way). */
static sp_status take_result(PGresult **out, spdb *db, PGresult *res, lost_at where, lost_at *lost)
{
    ExecStatusType st = PQresultStatus(res);
    if (res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)) {
        db->sqlstate[0] = '\0';
        if (out)
            *out = res;
        else
            PQclear(res);
        return SP_OK;
    }
    if (PQstatus(db->conn) == CONNECTION_BAD) {
        PQclear(res);
        snprintf(db->sqlstate, sizeof db->sqlstate, "08006");
        *lost = where;
        return SP_ERR_UNAVAILABLE;
    }
    sp_status s = status_of_error(db, res);
    PQclear(res);
    return s;
}

static prepared *find_prepared(spdb *db, const char *name)
{
    for (int i = 0; i < db->nprep; i++)
        if (strcmp(db->prep[i].name, name) == 0) return &db->prep[i];
    return NULL;
}

static void drop_prepared(spdb *db, prepared *p)
{
    free(p->sql);
    *p = db->prep[--db->nprep];
}

/* Prepares st->name on this connection unless it already is. */
static sp_status ensure_prepared(spdb *db, const stmt *st, lost_at *lost)
{
    prepared *p = find_prepared(db, st->name);
    if (p) {
        if (strcmp(p->sql, st->sql) == 0) return SP_OK;
        sp_log_error(NULL, "db_prepared_sql_mismatch", "name", st->name);
        return SP_ERR_INTERNAL;
    }
    if (db->nprep == SPDB_MAX_PREPARED) {
        sp_log_error(NULL, "db_too_many_prepared", "name", st->name, "limit",
                     "SPDB_MAX_PREPARED (" STR(SPDB_MAX_PREPARED) ")");
        return SP_ERR_INTERNAL;
    }
    char *sql = strdup(st->sql);
    if (!sql) return SP_ERR_INTERNAL;
    PGresult *res = PQprepare(db->conn, st->name, st->sql, st->nparams, NULL);
    sp_status s = take_result(NULL, db, res, LOST_UNSENT, lost);
    if (s != SP_OK) {
        free(sql);
        return s;
    }
    p = &db->prep[db->nprep++];
    snprintf(p->name, sizeof p->name, "%s", st->name);
    p->sql = sql;
    return SP_OK;
}

/* One attempt on the connection as it is. */
static sp_status run_once(PGresult **out, spdb *db, const stmt *st, lost_at *lost)
{
    *lost = LOST_NOT;
    if (!st->name) {
        PGresult *res =
            PQexecParams(db->conn, st->sql, st->nparams, NULL, st->params, NULL, NULL, 0);
        return take_result(out, db, res, LOST_IN_FLIGHT, lost);
    }
    sp_status s = ensure_prepared(db, st, lost);
    if (s != SP_OK) return s;
    PGresult *res = PQexecPrepared(db->conn, st->name, st->nparams, st->params, NULL, NULL, 0);
    s = take_result(out, db, res, LOST_IN_FLIGHT, lost);
    if (s != SP_OK && strcmp(db->sqlstate, "26000") == 0) {
        /* gone behind our back (DEALLOCATE, DISCARD ALL): it did not run; prepare it again
         * next time (now, outside a transaction: run() retries LOST_UNSENT) */
        prepared *p = find_prepared(db, st->name);
        if (p) drop_prepared(db, p);
        if (!db->in_tx) *lost = LOST_UNSENT;
    }
    return s;
}

static sp_status run(PGresult **out, spdb *db, const stmt *st)
{
    if (out) *out = NULL;
    if (st->name && strlen(st->name) > NAME_MAX_LEN) {
        sp_log_error(NULL, "db_prepared_name_too_long", "name", st->name);
        return SP_ERR_INTERNAL;
    }
    lost_at lost;
    sp_status s;
    if (db->in_tx) {
        /* A transaction does not survive its connection: only the caller can redo it. */
        if (db->tx_dead || !alive(db)) {
            db->tx_dead = true;
            snprintf(db->sqlstate, sizeof db->sqlstate, "08006");
            return SP_ERR_UNAVAILABLE;
        }
        s = run_once(out, db, st, &lost);
        if (lost == LOST_NOT) return s;
        db->tx_dead = true;
        if (st->commit && lost == LOST_IN_FLIGHT)
            sp_log_warn(NULL, "db_outcome_unknown", "statement", "COMMIT");
        else
            sp_log_warn(NULL, "db_connection_lost_in_transaction");
        return s;
    }
    /* Dead before anything is sent: the statement cannot have reached the server. */
    if (!alive(db) && !reset(db)) return SP_ERR_UNAVAILABLE;
    s = run_once(out, db, st, &lost);
    if (lost == LOST_NOT) return s;
    if (lost == LOST_IN_FLIGHT && !st->read_only) {
        sp_log_warn(NULL, "db_outcome_unknown", "statement", st->name ? st->name : "query");
        return SP_ERR_UNAVAILABLE;
    }
    if (PQstatus(db->conn) != CONNECTION_OK) {
        sp_log_warn(NULL, "db_connection_lost", "action", "retry");
        if (!reset(db)) return SP_ERR_UNAVAILABLE;
    }
    s = run_once(out, db, st, &lost);
    if (lost == LOST_IN_FLIGHT && !st->read_only)
        sp_log_warn(NULL, "db_outcome_unknown", "statement", st->name ? st->name : "query");
    return s;
}

sp_status spdb_query(PGresult **out, spdb *db, const char *sql, int nparams,
                     const char *const *params)
{
    const stmt st = {.sql = sql, .nparams = nparams, .params = params};
    return run(out, db, &st);
}

sp_status spdb_exec(spdb *db, const char *sql, int nparams, const char *const *params)
{
    return spdb_query(NULL, db, sql, nparams, params);
}

sp_status spdb_read(PGresult **out, spdb *db, const char *sql, int nparams,
                    const char *const *params)
{
    const stmt st = {.sql = sql, .nparams = nparams, .params = params, .read_only = true};
    return run(out, db, &st);
}

sp_status spdb_prepared(PGresult **out, spdb *db, const char *name, const char *sql, int nparams,
                        const char *const *params, bool read_only)
{
    if (out) *out = NULL;
    if (!name || !sql) return SP_ERR_INTERNAL;
    const stmt st = {
        .name = name, .sql = sql, .nparams = nparams, .params = params, .read_only = read_only};
    return run(out, db, &st);
}

sp_status spdb_begin(spdb *db)
{
    if (db->in_tx) return SP_ERR_INTERNAL;
    /* BEGIN writes nothing: if its connection is lost, beginning on a new one is safe. */
    const stmt st = {.sql = "BEGIN", .read_only = true};
    sp_status s = run(NULL, db, &st);
    if (s == SP_OK) {
        db->in_tx = true;
        db->tx_dead = false;
    }
    return s;
}

sp_status spdb_commit(spdb *db)
{
    if (!db->in_tx) return SP_ERR_INTERNAL;
    PGresult *res = NULL;
    const stmt st = {.sql = "COMMIT", .commit = true};
    sp_status s = run(&res, db, &st);
    /* COMMIT of a transaction that already failed answers ROLLBACK: nothing was written. */
    if (s == SP_OK && strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
        sp_log_error(NULL, "db_commit_rolled_back");
        s = SP_ERR_INTERNAL;
    }
    PQclear(res);
    db->in_tx = false;
    db->tx_dead = false;
    return s;
}

void spdb_rollback(spdb *db)
{
    if (!db || !db->in_tx) return;
    if (!db->tx_dead && PQstatus(db->conn) == CONNECTION_OK) {
        PGresult *res = PQexec(db->conn, "ROLLBACK");
        PQclear(res);
    }
    db->in_tx = false;
    db->tx_dead = false;
}

bool spdb_in_tx(const spdb *db)
{
    return db->in_tx;
}

bool spdb_ping(spdb *db)
{
    if (db->in_tx) return !db->tx_dead && alive(db);
    return spdb_read(NULL, db, "SELECT 1", 0, NULL) == SP_OK;
}

PGconn *spdb_conn(spdb *db)
{
    return db->conn;
}

const char *spdb_last_sqlstate(const spdb *db)
{
    return db->sqlstate;
}
