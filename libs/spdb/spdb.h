/* spdb.h -- PostgreSQL over libpq: parameterised queries, transactions, reconnect after a
 * server restart. One spdb per thread. Prefix: spdb_. */
#ifndef SPDB_H
#define SPDB_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "spcore.h"

typedef struct spdb spdb;

/* 'url' is a libpq connection string or URI; connect_timeout (5 s) and TCP keepalives are
 * added. Returns SP_ERR_UNAVAILABLE when the server cannot be reached (*out stays NULL). */
sp_status spdb_connect(spdb **out, const char *url);
void spdb_destroy(spdb *db);

/* Runs 'sql' with text parameters $1..$n (NULL entries are SQL NULL). On success *out is the
 * PGresult (caller frees it with PQclear; may be NULL when out is NULL).
 * A dead connection (server restarted) is reset and, outside a transaction, the statement
 * is retried once. Errors: unique violation -> SP_ERR_CONFLICT; server unreachable ->
 * SP_ERR_UNAVAILABLE; anything else -> SP_ERR_INTERNAL (logged with the SQLSTATE, never
 * the parameters). */
sp_status spdb_query(PGresult **out, spdb *db, const char *sql, int nparams,
                     const char *const *params);
/* spdb_query for statements whose result is not needed. */
sp_status spdb_exec(spdb *db, const char *sql, int nparams, const char *const *params);

sp_status spdb_begin(spdb *db);
sp_status spdb_commit(spdb *db);  /* a lost COMMIT reply is SP_ERR_UNAVAILABLE (unknown) */
void spdb_rollback(spdb *db);     /* no-op outside a transaction */
bool spdb_in_tx(const spdb *db);

/* SELECT 1, reconnecting if needed: for /readyz. */
bool spdb_ping(spdb *db);
PGconn *spdb_conn(spdb *db);       /* escape hatch, e.g. for COPY */
const char *spdb_last_sqlstate(const spdb *db); /* "23505"; "" if none */

#endif
