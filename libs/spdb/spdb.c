/* spdb.c -- PostgreSQL over libpq: parameterised queries, transactions, reconnect after a
 * server restart. */
#include "spdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct spdb {
    PGconn *conn;
    bool in_tx;
    bool tx_dead; /* the connection was lost inside the transaction */
    char sqlstate[6];
};

sp_status spdb_connect(spdb **out, const char *url)
{
    *out = NULL;
    if (!url) return SP_ERR_VALIDATION_FAILED;
    /* expand_dbname: 'url' may be a URI or a key=value string; the keywords after it win. */
    const char *const keys[] = {"dbname",
                                "connect_timeout",
                                "keepalives",
                                "keepalives_idle",
                                "keepalives_interval",
                                "keepalives_count",
                                NULL};
    const char *const vals[] = {url, "5", "1", "10", "5", "3", NULL};
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

void spdb_destroy(spdb *db)
{
    if (!db) return;
    PQfinish(db->conn);
    free(db);
}

/* Makes the connection usable again after the server went away; false when it still is. */
static bool reconnect(spdb *db)
{
    if (PQstatus(db->conn) == CONNECTION_OK) return true;
    PQreset(db->conn);
    if (PQstatus(db->conn) == CONNECTION_OK) {
        sp_log_info(NULL, "db_reconnected");
        return true;
    }
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
    /* The message text may quote a parameter: log only what names the failure. */
    const char *table = res ? PQresultErrorField(res, PG_DIAG_TABLE_NAME) : NULL;
    const char *constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    sp_log_error(NULL, "db_query_failed", "sqlstate", db->sqlstate, "table", table ? table : "",
                 "constraint", constraint ? constraint : "");
    return SP_ERR_INTERNAL;
}

/* One attempt; *lost tells whether the connection died on the way. */
static sp_status run_once(PGresult **out, spdb *db, const char *sql, int nparams,
                          const char *const *params, bool *lost)
{
    *lost = false;
    PGresult *res = PQexecParams(db->conn, sql, nparams, NULL, params, NULL, NULL, 0);
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
        *lost = true;
        return SP_ERR_UNAVAILABLE;
    }
    sp_status s = status_of_error(db, res);
    PQclear(res);
    return s;
}

sp_status spdb_query(PGresult **out, spdb *db, const char *sql, int nparams,
                     const char *const *params)
{
    if (out) *out = NULL;
    if (db->in_tx) {
        /* A transaction does not survive its connection: only the caller can redo it. */
        if (db->tx_dead || PQstatus(db->conn) == CONNECTION_BAD) {
            db->tx_dead = true;
            return SP_ERR_UNAVAILABLE;
        }
        bool lost;
        sp_status s = run_once(out, db, sql, nparams, params, &lost);
        if (lost) {
            db->tx_dead = true;
            sp_log_warn(NULL, "db_connection_lost_in_transaction");
        }
        return s;
    }
    if (!reconnect(db)) return SP_ERR_UNAVAILABLE;
    bool lost;
    sp_status s = run_once(out, db, sql, nparams, params, &lost);
    if (lost) {
        sp_log_warn(NULL, "db_connection_lost", "action", "retry");
        if (!reconnect(db)) return SP_ERR_UNAVAILABLE;
        s = run_once(out, db, sql, nparams, params, &lost);
    }
    return s;
}

sp_status spdb_exec(spdb *db, const char *sql, int nparams, const char *const *params)
{
    return spdb_query(NULL, db, sql, nparams, params);
}

sp_status spdb_begin(spdb *db)
{
    if (db->in_tx) return SP_ERR_INTERNAL;
    sp_status s = spdb_exec(db, "BEGIN", 0, NULL);
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
    sp_status s = spdb_query(&res, db, "COMMIT", 0, NULL);
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
    if (db->in_tx) return !db->tx_dead && PQstatus(db->conn) == CONNECTION_OK;
    return spdb_exec(db, "SELECT 1", 0, NULL) == SP_OK;
}

PGconn *spdb_conn(spdb *db)
{
    return db->conn;
}

const char *spdb_last_sqlstate(const spdb *db)
{
    return db->sqlstate;
}
