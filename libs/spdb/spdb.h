/* spdb.h -- PostgreSQL over libpq: parameterised queries, prepared statements, transactions,
 * server-side timeouts, reconnect after a server restart. One spdb per thread. Prefix: spdb_. */
#ifndef SPDB_H
#define SPDB_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "spcore.h"

typedef struct spdb spdb;

/* Server-side limits set on every connection (and kept across a reset), in milliseconds.
 * 0 takes the default; SPDB_TIMEOUT_NONE lifts the limit (PostgreSQL's 0). A statement
 * stopped by statement_timeout (SQLSTATE 57014) or lock_timeout (55P03) is
 * SP_ERR_UNAVAILABLE; a session idle inside a transaction for longer than
 * idle_in_tx_timeout_ms is closed by the server (the transaction is lost: the next statement
 * in it is SP_ERR_UNAVAILABLE). */
#define SPDB_TIMEOUT_NONE (-1)
#define SPDB_DEFAULT_STATEMENT_TIMEOUT_MS 5000
#define SPDB_DEFAULT_LOCK_TIMEOUT_MS 2000
#define SPDB_DEFAULT_IDLE_IN_TX_TIMEOUT_MS 10000
typedef struct {
    int statement_timeout_ms;  /* statement_timeout */
    int lock_timeout_ms;       /* lock_timeout */
    int idle_in_tx_timeout_ms; /* idle_in_transaction_session_timeout */
} spdb_opts;

/* 'url' is a libpq connection string or URI; connect_timeout (5 s), TCP keepalives and the
 * timeouts of 'opts' (NULL: the defaults) are added, the latter to the 'options' of 'url'.
 * Returns SP_ERR_UNAVAILABLE when the server cannot be reached, SP_ERR_VALIDATION_FAILED for
 * a NULL url, a negative timeout other than SPDB_TIMEOUT_NONE or 'options' in 'url' that
 * leave no room for ours (1023 bytes in all); *out stays NULL. */
sp_status spdb_connect_opts(spdb **out, const char *url, const spdb_opts *opts);
/* spdb_connect_opts with the default timeouts. */
sp_status spdb_connect(spdb **out, const char *url);
void spdb_destroy(spdb *db);

/* Statements and lost connections, for spdb_query, spdb_exec, spdb_read and spdb_prepared:
 * - A connection found dead BEFORE the statement is sent (libpq saw it fail, or its socket
 *   already shows the server's end: the server restarted while it was idle) is reset and
 *   the statement sent on the new one: it never reached the server. Inside a transaction
 *   nothing is reset (the transaction died with its connection): SP_ERR_UNAVAILABLE.
 * - A connection lost AFTER the statement was sent leaves its outcome unknown (it may have
 *   committed). Only statements declared read-only (spdb_read, spdb_prepared with
 *   read_only) are then run once more on a reset connection; any other returns
 *   SP_ERR_UNAVAILABLE at once (logged at warn as "db_outcome_unknown"), and the caller
 *   must find out or make the write idempotent. Inside a transaction nothing is re-run.
 * Errors: unique violation -> SP_ERR_CONFLICT; statement_timeout or lock_timeout (57014,
 * 55P03; logged at warn with the SQLSTATE) and server unreachable or lost ->
 * SP_ERR_UNAVAILABLE, which the caller may retry; anything else -> SP_ERR_INTERNAL (logged
 * with the SQLSTATE, never the parameters). */

/* Runs 'sql' with text parameters $1..$n (NULL entries are SQL NULL). On success *out is the
 * PGresult (caller frees it with PQclear; may be NULL when out is NULL). Never re-run after
 * the connection was lost with the statement in flight (see above). */
sp_status spdb_query(PGresult **out, spdb *db, const char *sql, int nparams,
                     const char *const *params);
/* spdb_query for statements whose result is not needed. */
sp_status spdb_exec(spdb *db, const char *sql, int nparams, const char *const *params);
/* spdb_query for a statement that writes nothing, so that running it twice is harmless: it
 * is re-run once on a reset connection when the connection is lost while it runs (outside
 * a transaction). */
sp_status spdb_read(PGresult **out, spdb *db, const char *sql, int nparams,
                    const char *const *params);

/* At most this many statement names are prepared on one connection. */
#define SPDB_MAX_PREPARED 64
/* Runs 'sql' as the prepared statement 'name' (at most 63 bytes): prepared on this
 * connection on first use, again after a reset. Same results, errors and retry rules as
 * spdb_query, or spdb_read when 'read_only'. SP_ERR_INTERNAL (logged) when 'name' is a new
 * name beyond SPDB_MAX_PREPARED, is too long, or was prepared with another 'sql'. */
sp_status spdb_prepared(PGresult **out, spdb *db, const char *name, const char *sql, int nparams,
                        const char *const *params, bool read_only);

sp_status spdb_begin(spdb *db);
sp_status spdb_commit(spdb *db);  /* a lost COMMIT reply is SP_ERR_UNAVAILABLE (unknown) */
void spdb_rollback(spdb *db);     /* no-op outside a transaction */
bool spdb_in_tx(const spdb *db);

/* SELECT 1, reconnecting if needed: for /readyz. */
bool spdb_ping(spdb *db);
PGconn *spdb_conn(spdb *db);       /* escape hatch, e.g. for COPY */
const char *spdb_last_sqlstate(const spdb *db); /* "23505"; "" if none */

#endif
