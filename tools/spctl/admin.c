/* admin.c -- "spctl create-admin": creates the first platform admin (person, user with
 * an argon2id hash, 'admin' role) in the auth schema, once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spcrypto.h"
#include "spctl.h"
#include "spdb.h"

static void help(void)
{
    fputs("usage: spctl create-admin --email EMAIL [--name NAME]\n\n"
          "Creates a platform admin in the auth schema. The password comes from\n"
          "SP_ADMIN_PASSWORD (8..128 characters); the database from SP_DATABASE_URL.\n"
          "When a live account with EMAIL exists already, says so and changes nothing.\n"
          "NAME defaults to \"Administrator\".\n",
          stdout);
}

/* A sensible address: at most 254 characters, one '@' with text on both sides, a dot
 * in the domain, no spaces or control characters. */
static bool email_ok(const char *e)
{
    const char *at = strchr(e, '@');
    size_t len = strlen(e);

    if (len < 3 || len > 254 || !at || at == e || strchr(at + 1, '@') || !at[1]) return false;
    if (!strchr(at + 1, '.') || at[strlen(at) - 1] == '.') return false;
    for (const char *p = e; *p; p++) {
        if ((unsigned char)*p <= 0x20 || *p == 0x7f) return false;
    }
    return true;
}

static sp_status person_exists(bool *exists, spdb *db, const char *email)
{
    PGresult *res = NULL;
    const char *p[] = {email};
    sp_status s = spdb_query(&res, db,
                             "SELECT 1 FROM auth.people"
                             " WHERE lower(email) = $1 AND deleted_at IS NULL",
                             1, p);

    *exists = false;
    if (s == SP_OK) *exists = PQntuples(res) > 0;
    PQclear(res);
    return s;
}

/* Inserts person, user and role in one transaction. SP_ERR_CONFLICT when the email was
 * taken in between (unique index people_email_live). */
static sp_status insert_admin(spdb *db, const char *email, const char *name, const char *hash)
{
    char person_uuid[SPCRYPTO_UUID_LEN], user_uuid[SPCRYPTO_UUID_LEN];
    const char *p[] = {person_uuid, name, email, user_uuid, hash};
    sp_status s;

    spcrypto_uuid_v4(person_uuid);
    spcrypto_uuid_v4(user_uuid);
    s = spdb_begin(db);
    if (s == SP_OK)
        s = spdb_exec(db,
                      "WITH person AS ("
                      "  INSERT INTO auth.people (public_id, name, email)"
                      "  VALUES ($1::uuid, $2, $3) RETURNING id),"
                      " usr AS ("
                      "  INSERT INTO auth.users (public_id, person_id, password_hash)"
                      "  SELECT $4::uuid, id, $5 FROM person RETURNING id)"
                      " INSERT INTO auth.user_roles (user_id, role_id)"
                      " SELECT usr.id, r.id FROM usr, auth.roles r WHERE r.code = 'admin'",
                      5, p);
    if (s == SP_OK) s = spdb_commit(db);
    if (s != SP_OK) spdb_rollback(db);
    return s;
}

sp_status spctl_create_admin(int argc, char **argv)
{
    const char *email_in = NULL, *name = NULL;
    bool want_help = false;
    const spctl_opt opts[] = {
        {"--email", true, &email_in, NULL},
        {"--name", true, &name, NULL},
    };
    sp_status s = spctl_parse(argc, argv, opts, 2, NULL, 0, NULL, &want_help);
    char email[256];
    char hash[SPCRYPTO_HASH_LEN];
    spdb *db = NULL;
    bool exists = false;

    if (s != SP_OK) return s;
    if (want_help) {
        help();
        return SP_OK;
    }
    if (!email_in) return spctl_fail(SP_ERR_VALIDATION_FAILED, "create-admin: --email is required");
    if (!email_ok(email_in))
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "create-admin: '%s' is not a valid email",
                          email_in);
    for (size_t i = 0;; i++) {
        email[i] =
            (char)((email_in[i] >= 'A' && email_in[i] <= 'Z') ? email_in[i] + 32 : email_in[i]);
        if (!email_in[i]) break;
    }
    if (!name) name = "Administrator";
    size_t nlen = spctl_utf8_len(name);

    if (nlen < 1 || nlen > 120)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "create-admin: --name must be 1..120 characters");
    const char *password = spctl_env("SP_ADMIN_PASSWORD");

    if (!password)
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "create-admin: SP_ADMIN_PASSWORD is not set");
    size_t plen = spctl_utf8_len(password);

    if (plen < 8 || plen > 128)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "create-admin: SP_ADMIN_PASSWORD must be 8..128 characters");
    const char *url = spctl_env("SP_DATABASE_URL");

    if (!url)
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "create-admin: SP_DATABASE_URL is not set");

    s = spctl_db_connect(&db, url, "create-admin");
    if (s != SP_OK) return s;
    s = person_exists(&exists, db, email);
    if (s != SP_OK) {
        spdb_destroy(db);
        return spctl_fail(s, "create-admin: cannot read auth.people (run spctl migrate first)");
    }
    if (!exists) {
        s = spcrypto_password_hash(hash, sizeof hash, password, strlen(password));
        if (s != SP_OK) {
            spdb_destroy(db);
            return spctl_fail(s, "create-admin: cannot hash the password");
        }
        s = insert_admin(db, email, name, hash);
        explicit_bzero(hash, sizeof hash);
        if (s == SP_ERR_CONFLICT) {
            exists = true;
            s = SP_OK;
        }
    }
    spdb_destroy(db);
    if (s != SP_OK) return spctl_fail(s, "create-admin: cannot create %s", email);
    if (exists)
        printf("admin %s already exists\n", email);
    else
        printf("created admin %s\n", email);
    return SP_OK;
}
