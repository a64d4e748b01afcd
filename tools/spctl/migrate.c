/* migrate.c -- "spctl migrate": applies migrations/<service>/NNNN_name.sql in order,
 * each once, recorded with its checksum in public.sp_migrations, gives each schema to its
 * service's own role (sp_<service>), then creates or updates the JetStream streams
 * (streams.c). */
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spcrypto.h"
#include "spctl.h"
#include "spdb.h"

#ifndef SP_SOURCE_DIR
#define SP_SOURCE_DIR "."
#endif

/* Taken for the whole run so that two migrators (replicas starting together) never
 * apply the same file twice. "SPMIGRAT" in ASCII. */
#define MIGRATE_LOCK_KEY "6003369753651864916"

/* Services whose schemas others may reference come first; the rest alphabetically. */
static const char *const fixed_order[] = {"auth", "tenancy", "catalog", "status"};
#define NFIXED (sizeof fixed_order / sizeof fixed_order[0])

typedef struct {
    long version;
    char *file; /* "0001_init.sql" */
    char *name; /* "init" */
} migration;

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static bool strlist_add(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, ncap * sizeof *nv);

        if (!nv) return false;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n] = strdup(s);
    return l->v[l->n++] != NULL;
}

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_mig(const void *a, const void *b)
{
    const migration *x = a, *y = b;

    return (x->version > y->version) - (x->version < y->version);
}

static void help(void)
{
    fputs("usage: spctl migrate [--no-streams]\n\n"
          "Applies migrations/<service>/NNNN_name.sql (services auth, tenancy, catalog,\n"
          "status, then the others alphabetically; files by number), each once, in one\n"
          "transaction per file, recorded in public.sp_migrations with its SHA-256. When\n"
          "SP_PG_<SERVICE>_PASSWORD is set, creates the role sp_<service> (login, no other\n"
          "right) or sets its password, and gives it the schema and everything in it. Then\n"
          "creates or updates the JetStream streams SP_EVENTS, SP_AUDIT, SP_SLOT_STATUS.\n\n"
          "environment:\n"
          "  SP_DATABASE_URL    PostgreSQL URL of a superuser (required)\n"
          "  SP_PG_<SERVICE>_PASSWORD   the password of the role sp_<service>\n"
          "  SP_MIGRATIONS_DIR  default " SP_SOURCE_DIR "/migrations\n"
          "  SP_NATS_URL        NATS URL; empty: no streams\n"
          "  SP_NATS_USER, SP_NATS_PASSWORD   NATS credentials (the spctl user)\n"
          "options:\n"
          "  --no-streams       only the database\n",
          stdout);
}

/* The service directories under 'dir': fixed ones first, then the rest by name. */
static sp_status list_services(strlist *out, const char *dir)
{
    DIR *d = opendir(dir);
    strlist others = {0};
    struct dirent *de;

    if (!d) return spctl_fail(SP_ERR_NOT_FOUND, "migrate: cannot open %s", dir);
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        char path[4096];

        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        DIR *sub = opendir(path);

        if (!sub) continue;
        closedir(sub);
        bool fixed = false;

        for (size_t i = 0; i < NFIXED; i++)
            fixed = fixed || strcmp(de->d_name, fixed_order[i]) == 0;
        if (!fixed && !strlist_add(&others, de->d_name)) {
            closedir(d);
            strlist_free(&others);
            return spctl_fail(SP_ERR_INTERNAL, "out of memory");
        }
    }
    closedir(d);
    if (others.n > 1) qsort(others.v, others.n, sizeof *others.v, cmp_str);
    for (size_t i = 0; i < NFIXED; i++) {
        char path[4096];

        snprintf(path, sizeof path, "%s/%s", dir, fixed_order[i]);
        DIR *sub = opendir(path);

        if (sub) {
            closedir(sub);
            strlist_add(out, fixed_order[i]);
        }
    }
    for (size_t i = 0; i < others.n; i++)
        strlist_add(out, others.v[i]);
    strlist_free(&others);
    return SP_OK;
}

static void free_migrations(migration *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(m[i].file);
        free(m[i].name);
    }
    free(m);
}

/* The NNNN_name.sql files of one service directory, by number; two files with the same
 * number are an error. Other files are ignored. */
static sp_status list_migrations(migration **out, size_t *nout, const char *dir,
                                 const char *service)
{
    DIR *d = opendir(dir);
    migration *m = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;

    *out = NULL;
    *nout = 0;
    if (!d) return spctl_fail(SP_ERR_NOT_FOUND, "migrate: cannot open %s", dir);
    while ((de = readdir(d)) != NULL) {
        const char *f = de->d_name;
        size_t len = strlen(f), digits = 0;

        while (isdigit((unsigned char)f[digits]))
            digits++;
        if (digits == 0 || digits > 9 || f[digits] != '_' || len < digits + 6 ||
            strcmp(f + len - 4, ".sql") != 0)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            migration *nm = realloc(m, ncap * sizeof *nm);

            if (!nm) {
                free_migrations(m, n);
                closedir(d);
                return spctl_fail(SP_ERR_INTERNAL, "out of memory");
            }
            m = nm;
            cap = ncap;
        }
        m[n].version = strtol(f, NULL, 10);
        m[n].file = strdup(f);
        m[n].name = strndup(f + digits + 1, len - digits - 5);
        n++;
    }
    closedir(d);
    if (n > 1) qsort(m, n, sizeof *m, cmp_mig);
    for (size_t i = 1; i < n; i++) {
        if (m[i].version == m[i - 1].version) {
            sp_status s = spctl_fail(SP_ERR_CONFLICT, "migrate: %s/%s and %s/%s share number %ld",
                                     service, m[i - 1].file, service, m[i].file, m[i].version);

            free_migrations(m, n);
            return s;
        }
    }
    *out = m;
    *nout = n;
    return SP_OK;
}

/* First line of a libpq error message, for a one-line report. */
static const char *one_line(char *buf, size_t len, const char *msg)
{
    size_t i = 0;

    for (; msg && msg[i] && msg[i] != '\n' && i + 1 < len; i++)
        buf[i] = msg[i];
    buf[i] = '\0';
    return buf;
}

/* Applies one file unless it is recorded; prints a line when it applied it. */
static sp_status apply_one(spdb *db, const char *dir, const char *service, const migration *m,
                           int *applied)
{
    char path[4096], hex[65], version[24], line[512];
    char *sql = NULL;
    size_t len = 0;
    uint8_t sum[32];
    PGresult *res = NULL;
    sp_status s;

    if (snprintf(path, sizeof path, "%s/%s", dir, m->file) >= (int)sizeof path)
        return SP_ERR_VALIDATION_FAILED;
    s = spctl_read_file(&sql, &len, path);
    if (s != SP_OK) return s;
    spcrypto_sha256(sum, sql, len);
    spcrypto_hex(hex, sum, sizeof sum);
    snprintf(version, sizeof version, "%ld", m->version);

    const char *key[] = {service, version};

    s = spdb_query(&res, db,
                   "SELECT sha256 FROM public.sp_migrations WHERE service = $1 AND version = $2", 2,
                   key);
    if (s != SP_OK) {
        free(sql);
        return spctl_fail(s, "migrate: cannot read public.sp_migrations");
    }
    if (PQntuples(res) > 0) {
        bool same = strcmp(PQgetvalue(res, 0, 0), hex) == 0;

        PQclear(res);
        free(sql);
        if (!same)
            return spctl_fail(SP_ERR_CONFLICT,
                              "migrate: %s/%s changed after it was applied (checksum differs)",
                              service, m->file);
        return SP_OK;
    }
    PQclear(res);

    s = spdb_begin(db);
    if (s != SP_OK) {
        free(sql);
        return spctl_fail(s, "migrate: cannot begin a transaction");
    }
    /* a file holds several statements: the simple query protocol runs them all */
    res = PQexec(spdb_conn(db), sql);
    free(sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        s = spctl_fail(SP_ERR_INTERNAL, "migrate: %s/%s failed: %s", service, m->file,
                       one_line(line, sizeof line, PQresultErrorMessage(res)));
        PQclear(res);
        spdb_rollback(db);
        return s;
    }
    PQclear(res);
    const char *row[] = {service, version, m->name, hex};

    s = spdb_exec(db,
                  "INSERT INTO public.sp_migrations (service, version, name, sha256) "
                  "VALUES ($1, $2, $3, $4)",
                  4, row);
    if (s == SP_OK) s = spdb_commit(db);
    if (s != SP_OK) {
        spdb_rollback(db);
        return spctl_fail(s, "migrate: cannot record %s/%s", service, m->file);
    }
    printf("applied %s/%s\n", service, m->file);
    fflush(stdout);
    (*applied)++;
    return SP_OK;
}

/* Runs each row of 'sql' (one column: a statement built by format() from the parameters,
 * so every name and literal in it is quoted by PostgreSQL) as a statement. */
static sp_status exec_built(spdb *db, const char *sql, int n, const char *const *params)
{
    PGresult *res = NULL;
    sp_status s = spdb_query(&res, db, sql, n, params);
    for (int i = 0; s == SP_OK && i < PQntuples(res); i++)
        s = spdb_exec(db, PQgetvalue(res, i, 0), 0, NULL);
    PQclear(res);
    return s;
}

/* The service's own role: sp_<service> may log in with SP_PG_<SERVICE>_PASSWORD (sent as a
 * SCRAM verifier: the password itself never reaches the server) and is no superuser. */
static sp_status ensure_role(spdb *db, const char *role, const char *password)
{
    char *verifier = PQencryptPasswordConn(spdb_conn(db), password, role, "scram-sha-256");
    if (verifier == NULL) return SP_ERR_INTERNAL;
    const char *p[] = {role, verifier};
    sp_status s = exec_built(
        db,
        "SELECT format(CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1::text)"
        " THEN 'ALTER ROLE %I' ELSE 'CREATE ROLE %I' END"
        " || ' LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',"
        " $1::text, $2::text)",
        2, p);
    PQfreemem(verifier);
    return s;
}

/* Gives the schema 'service' and everything in it (tables with their sequences, views,
 * other sequences, routines, types) to 'role', whoever created them: migrations run as
 * the migrator, the service runs as its role and owns its schema only. */
static const char *sql_give_schema =
    "WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = $1::text),"
    " r AS (SELECT oid FROM pg_roles WHERE rolname = $2::text)"
    " SELECT format('ALTER SCHEMA %I OWNER TO %I', $1::text, $2::text) FROM ns"
    " UNION ALL"
    " SELECT format('ALTER %s %I.%I OWNER TO %I', CASE c.relkind WHEN 'v' THEN 'VIEW'"
    "   WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'S' THEN 'SEQUENCE'"
    "   ELSE 'TABLE' END, $1::text, c.relname, $2::text)"
    " FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns)"
    "   AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.relowner <> (SELECT oid FROM r)"
    "   AND (c.relkind <> 'S' OR NOT EXISTS (SELECT 1 FROM pg_depend d"
    "        WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid"
    "        AND d.deptype IN ('a', 'i')))" /* a column's sequence goes with its table */
    " UNION ALL"
    " SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, $2::text) FROM pg_proc p"
    " WHERE p.pronamespace = (SELECT oid FROM ns) AND p.proowner <> (SELECT oid FROM r)"
    " UNION ALL"
    " SELECT format('ALTER TYPE %I.%I OWNER TO %I', $1::text, t.typname, $2::text) FROM pg_type t"
    " WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typowner <> (SELECT oid FROM r)"
    "   AND (t.typtype IN ('e', 'd', 'r')"
    "        OR (t.typtype = 'c' AND (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c'))";

/* A schema with partitioned tables, when pg_partman is installed, gets its owner the
 * right to maintain them (the projection's hourly partman.run_maintenance). */
static const char *sql_partman_grants =
    "SELECT format(g, $2::text) FROM unnest(ARRAY["
    "'GRANT USAGE ON SCHEMA partman TO %I',"
    " 'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA partman TO %I',"
    " 'GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO %I',"
    " 'GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO %I']) AS g"
    " WHERE to_regclass('partman.part_config') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c"
    "   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1::text"
    "   AND c.relkind = 'p')";

/* The process that owns a schema, when its name is not the schema's (bus.md: the
 * projection owns "status"). */
static const char *owner_of(const char *schema)
{
    return strcmp(schema, "status") == 0 ? "projection" : schema;
}

/* When SP_PG_<SERVICE>_PASSWORD is set: the role sp_<service> and its schema. Without it
 * the schema stays the migrator's (an external database whose roles are managed there). */
static sp_status own_schema(spdb *db, const char *schema)
{
    const char *service = owner_of(schema);
    char var[96], role[96];
    size_t n = strlen(service);
    if (n == 0 || n > 40 || strspn(service, "abcdefghijklmnopqrstuvwxyz0123456789_") != n)
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "migrate: %s is not a service name", service);
    snprintf(var, sizeof var, "SP_PG_%s_PASSWORD", service);
    for (char *c = var; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    const char *password = spctl_env(var);
    if (password == NULL || password[0] == '\0') return SP_OK;
    snprintf(role, sizeof role, "sp_%s", service);

    const char *p[] = {schema, role};
    sp_status s = spdb_begin(db);
    if (s == SP_OK) s = ensure_role(db, role, password);
    if (s == SP_OK) s = exec_built(db, sql_give_schema, 2, p);
    if (s == SP_OK) s = exec_built(db, sql_partman_grants, 2, p);
    if (s == SP_OK) s = spdb_commit(db);
    if (s != SP_OK) {
        spdb_rollback(db);
        return spctl_fail(s, "migrate: cannot give schema %s to role %s", schema, role);
    }
    return SP_OK;
}

static sp_status migrate_db(const char *url, const char *dir)
{
    spdb *db = NULL;
    strlist services = {0};
    int applied = 0;
    sp_status s = spctl_db_connect(&db, url, "migrate");

    if (s != SP_OK) return s;
    /* no NOTICE lines ("already exists, skipping") on the operator's terminal */
    s = spdb_exec(db, "SET client_min_messages TO warning", 0, NULL);
    if (s == SP_OK) s = spdb_exec(db, "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")", 0, NULL);
    if (s == SP_OK)
        s = spdb_exec(db,
                      "CREATE TABLE IF NOT EXISTS public.sp_migrations ("
                      " service text NOT NULL, version integer NOT NULL, name text NOT NULL,"
                      " sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
                      " PRIMARY KEY (service, version))",
                      0, NULL);
    if (s != SP_OK) {
        spdb_destroy(db);
        return spctl_fail(s, "migrate: cannot lock or create public.sp_migrations");
    }
    s = list_services(&services, dir);
    for (size_t i = 0; s == SP_OK && i < services.n; i++) {
        char sdir[4096];
        migration *m = NULL;
        size_t n = 0;

        snprintf(sdir, sizeof sdir, "%s/%s", dir, services.v[i]);
        s = list_migrations(&m, &n, sdir, services.v[i]);
        for (size_t j = 0; s == SP_OK && j < n; j++)
            s = apply_one(db, sdir, services.v[i], &m[j], &applied);
        if (s == SP_OK) s = own_schema(db, services.v[i]);
        free_migrations(m, n);
    }
    strlist_free(&services);
    spdb_exec(db, "SELECT pg_advisory_unlock(" MIGRATE_LOCK_KEY ")", 0, NULL);
    spdb_destroy(db);
    return s;
}

sp_status spctl_migrate(int argc, char **argv)
{
    bool no_streams = false, want_help = false;
    const spctl_opt opts[] = {{"--no-streams", false, NULL, &no_streams}};
    sp_status s = spctl_parse(argc, argv, opts, 1, NULL, 0, NULL, &want_help);

    if (s != SP_OK) return s;
    if (want_help) {
        help();
        return SP_OK;
    }
    const char *url = spctl_env("SP_DATABASE_URL");
    const char *dir = spctl_env("SP_MIGRATIONS_DIR");

    if (!url) return spctl_fail(SP_ERR_VALIDATION_FAILED, "migrate: SP_DATABASE_URL is not set");
    if (!dir) dir = SP_SOURCE_DIR "/migrations";
    s = migrate_db(url, dir);
    if (s == SP_OK && !no_streams && spctl_env("SP_NATS_URL"))
        s = spctl_streams(spctl_env("SP_NATS_URL"), spctl_env("SP_NATS_USER"),
                          spctl_env("SP_NATS_PASSWORD"));
    return s;
}
