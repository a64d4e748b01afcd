/* keys.c -- the API keys cameras authenticate with: CreateApiKey (the secret shown exactly
 * once), ListApiKeys (never a secret), RevokeApiKey (refused by every ingest replica from
 * the moment it returns: the key id is in Redis before the answer), and the keeper task that
 * rewrites the Redis set of revoked keys when Redis comes back without it. A secret is 32
 * random bytes (base64url); only its SHA-256 and a copy sealed with AES-256-GCM under
 * SP_MASTER_KEY (authenticated with the key id) are stored. Ends with keys_register(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "spcrypto.h"

#define KEY_ID_PREFIX "spk_"
#define KEY_ID_BYTES 12 /* KEY_ID_LEN base64url characters after the prefix */
#define KEY_ID_LEN 16
#define SECRET_BYTES 32 /* 43 base64url characters */
#define SECRET_LEN 43

#define KEY_COLS                                                                                   \
    "k.public_id::text, k.key_id, k.name, k.client_id::text, k.revoked_at IS NULL,"                \
    " " CAT_US("k.created_at") ", " CAT_US("k.revoked_at") ", k.id"
enum { K_ID, K_KEY_ID, K_NAME, K_CLIENT, K_ENABLED, K_CREATED, K_REVOKED, K_INTERNAL };

static const char *sql_insert =
    "INSERT INTO catalog.api_keys AS k (key_id, client_id, name, secret_sha256, secret_sealed)"
    " VALUES ($1, $2::uuid, $3, decode($4, 'hex'), decode($5, 'hex')) RETURNING " KEY_COLS;

static const char *sql_by_id = "SELECT " KEY_COLS " FROM catalog.api_keys k"
                               " WHERE k.public_id = $1::uuid FOR UPDATE";

static const char *sql_list =
    "SELECT " KEY_COLS " FROM catalog.api_keys k"
    " WHERE ($1::uuid IS NULL OR k.client_id = $1::uuid)"
    "   AND ($2::uuid IS NULL OR k.client_id = $2::uuid)"
    "   AND ($3::bigint IS NULL OR (k.created_at, k.id) >"
    "        ('epoch'::timestamptz + $3::bigint * interval '1 microsecond', $4::bigint))"
    " ORDER BY k.created_at, k.id LIMIT $5::int";

static const char *sql_revoke = "UPDATE catalog.api_keys SET revoked_at = now(), updated_at = now()"
                                " WHERE id = $1::bigint AND revoked_at IS NULL";

static const char *sql_revoked = "SELECT key_id FROM catalog.api_keys WHERE revoked_at IS NOT NULL";

static void from_row(ProtobufCMessage *m, PGresult *res, int row, spbus_req *req)
{
    Sp__Catalog__V1__ApiKeyReply *k = (Sp__Catalog__V1__ApiKeyReply *)m;
    (void)req;
    k->id = PQgetvalue(res, row, K_ID);
    k->key_id = PQgetvalue(res, row, K_KEY_ID);
    k->name = PQgetvalue(res, row, K_NAME);
    k->client_id = PQgetvalue(res, row, K_CLIENT);
    k->has_enabled = 1;
    k->enabled = strcmp(PQgetvalue(res, row, K_ENABLED), "t") == 0;
    k->has_created_at = 1;
    k->created_at = spsvc_pg_int64(PQgetvalue(res, row, K_CREATED));
    k->has_revoked_at = !PQgetisnull(res, row, K_REVOKED);
    k->revoked_at = spsvc_pg_int64(PQgetvalue(res, row, K_REVOKED));
}

/* CreateApiKey: {name, clientId?} -> the key with its secret, the only time it is shown.
 * Admins for any client (clientId required); a manager for its own client. */
static sp_status create_api_key(spbus_req *req)
{
    const Sp__Catalog__V1__CreateApiKeyRequest *in = (const void *)spbus_req_input(req);
    const char *client = NULL;
    PGresult *res = NULL;
    spdb *db = NULL;

    sp_status s = cat_owner_or_reply(&client, req, in->client_id);
    if (s == SP_OK) {
        spsvc_fields f;
        spsvc_fields_init(&f);
        spsvc_fields_add(&f, "name", spsvc_check_text(in->name, CAT_NAME_MAX));
        s = spsvc_fields_or_reply(req, &f);
    }
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;

    uint8_t id_bytes[KEY_ID_BYTES], secret_bytes[SECRET_BYTES], digest[32];
    uint8_t sealed[SECRET_LEN + SPCRYPTO_SEAL_OVERHEAD];
    char key_id[sizeof(KEY_ID_PREFIX) + KEY_ID_LEN], secret[SECRET_LEN + 1];
    char digest_hex[65], sealed_hex[2 * sizeof(sealed) + 1];
    spcrypto_random(id_bytes, sizeof(id_bytes));
    spcrypto_random(secret_bytes, sizeof(secret_bytes));
    memcpy(key_id, KEY_ID_PREFIX, sizeof(KEY_ID_PREFIX) - 1);
    spcrypto_b64url_encode(key_id + sizeof(KEY_ID_PREFIX) - 1, id_bytes, sizeof(id_bytes));
    spcrypto_b64url_encode(secret, secret_bytes, sizeof(secret_bytes));
    spcrypto_sha256(digest, secret, SECRET_LEN);
    spcrypto_hex(digest_hex, digest, sizeof(digest));
    s = spcrypto_seal(sealed, cat_of(req)->master_key, secret, SECRET_LEN, key_id, strlen(key_id));
    spcrypto_hex(sealed_hex, sealed, sizeof(sealed));
    if (s != SP_OK) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");

    s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) {
        const char *params[] = {key_id, client, in->name, digest_hex, sealed_hex};
        s = spdb_query(&res, db, sql_insert, 5, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "insert_api_key");
    }
    if (s == SP_OK)
        s = spsvc_audit_or_reply(req, db, client, "api_key.created", "api_key",
                                 PQgetvalue(res, 0, K_ID), NULL);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        spsvc_changed(req, client, "api_key", PQgetvalue(res, 0, K_ID), "created", NULL);
        sp_log_info(spbus_req_id(req), "api_key_created", "apiKeyId", PQgetvalue(res, 0, K_ID),
                    "keyId", key_id);
        Sp__Catalog__V1__CreateApiKeyReply out = SP__CATALOG__V1__CREATE_API_KEY_REPLY__INIT;
        out.id = PQgetvalue(res, 0, K_ID);
        out.key_id = key_id;
        out.name = PQgetvalue(res, 0, K_NAME);
        out.client_id = PQgetvalue(res, 0, K_CLIENT);
        out.has_enabled = out.enabled = 1;
        out.has_created_at = 1;
        out.created_at = spsvc_pg_int64(PQgetvalue(res, 0, K_CREATED));
        out.secret = secret;
        out.api_key = sp_arena_printf(spbus_req_arena(req), "%s.%s", key_id, secret);
        if (out.api_key != NULL)
            spbus_reply(req, &out.base);
        else
            spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    }
    /* the secret leaves this process only in the answer */
    spcrypto_random(secret, SECRET_LEN);
    spcrypto_random(secret_bytes, sizeof(secret_bytes));
    PQclear(res);
    return SP_OK;
}

/* ListApiKeys: an admin's of every client (?clientId=), a client_admin's of its own. */
static sp_status list_api_keys(spbus_req *req)
{
    const Sp__Catalog__V1__ListApiKeysRequest *in = (const void *)spbus_req_input(req);
    const char *scope = NULL;
    spsvc_fields f;
    spsvc_page pg;
    PGresult *res = NULL;
    spdb *db = NULL;

    sp_status s = cat_list_or_reply(&scope, &pg, &f, req, in->has_limit, in->limit, in->cursor,
                                    in->client_id);
    if (s == SP_OK) s = spsvc_fields_or_reply(req, &f);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s != SP_OK) return SP_OK;
    const char *params[] = {in->client_id, scope, spsvc_page_after(&pg), pg.id_s, pg.fetch_s};
    s = spdb_query(&res, db, sql_list, 5, params);
    if (s != SP_OK) return spsvc_db_error_reply(req, s, "list_api_keys");
    spsvc_reply_page(req, &pg, res, K_CREATED, K_INTERNAL,
                     &sp__catalog__v1__list_api_keys_reply__descriptor, from_row);
    PQclear(res);
    return SP_OK;
}

/* RevokeApiKey: an admin, or the client's manager; 204, also for a key revoked before. The
 * key id goes into Redis first: when Redis does not answer, nothing is revoked and the
 * answer is 503, so that a 204 always means ingest refuses the key. */
static sp_status revoke_api_key(spbus_req *req)
{
    const Sp__Catalog__V1__RevokeApiKeyRequest *in = (const void *)spbus_req_input(req);
    PGresult *res = NULL;
    spdb *db = NULL;
    bool newly = false;

    sp_status s = cat_require_reader_or_reply(req);
    if (s == SP_OK) s = spsvc_db_or_reply(&db, req);
    if (s == SP_OK) s = spsvc_begin_or_reply(req, db);
    if (s == SP_OK) s = spsvc_row_or_reply(&res, req, db, sql_by_id, in->id, K_CLIENT, "api key");
    if (s == SP_OK) s = spsvc_require_writer_or_reply(req);
    if (s == SP_OK) {
        redisReply *rr = NULL;
        spredis *r = spsvc_redis(req);
        s = r != NULL
                ? spredis_cmd(&rr, r, "SADD", CAT_REVOKED_KEYS, PQgetvalue(res, 0, K_KEY_ID), NULL)
                : SP_ERR_UNAVAILABLE;
        if (s == SP_OK && rr->type == REDIS_REPLY_ERROR) s = SP_ERR_UNAVAILABLE;
        if (rr != NULL) freeReplyObject(rr);
        if (s != SP_OK) spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE, "redis did not answer", 1);
    }
    if (s == SP_OK) {
        newly = PQgetisnull(res, 0, K_REVOKED);
        const char *params[] = {PQgetvalue(res, 0, K_INTERNAL)};
        s = spdb_exec(db, sql_revoke, 1, params);
        if (s != SP_OK) spsvc_db_error_reply(req, s, "revoke_api_key");
    }
    if (s == SP_OK && newly)
        s = spsvc_audit_or_reply(req, db, PQgetvalue(res, 0, K_CLIENT), "api_key.revoked",
                                 "api_key", PQgetvalue(res, 0, K_ID), NULL);
    if (s == SP_OK) s = spsvc_commit_or_reply(req, db);
    spsvc_rollback(db);
    if (s == SP_OK) {
        if (newly) {
            spsvc_changed(req, PQgetvalue(res, 0, K_CLIENT), "api_key", PQgetvalue(res, 0, K_ID),
                          "revoked", NULL);
            sp_log_info(spbus_req_id(req), "api_key_revoked", "apiKeyId", PQgetvalue(res, 0, K_ID));
        }
        Sp__Catalog__V1__RevokeApiKeyReply out = SP__CATALOG__V1__REVOKE_API_KEY_REPLY__INIT;
        spbus_reply(req, &out.base);
    }
    PQclear(res);
    return SP_OK;
}

/* ---- the keeper ------------------------------------------------------------------------ */

struct cat_keeper {
    char *db_url, *redis_url;
    spredis *r; /* its own connections, made on first use */
    spdb *db;
};
static struct cat_keeper g_keeper;

/* Redis answers without CAT_REVOKED_LOADED (restarted empty, or a first start): the set
 * is rewritten from PostgreSQL, then marked complete. */
static void keep(void *arg)
{
    struct cat_keeper *k = arg;
    PGresult *res = NULL;
    if (k->r == NULL && spredis_create(&k->r, k->redis_url, 1000) != SP_OK) return;
    if (spredis_exists(k->r, CAT_REVOKED_LOADED)) return;
    if (k->db == NULL && spdb_connect(&k->db, k->db_url) != SP_OK) return;
    sp_status s = spdb_query(&res, k->db, sql_revoked, 0, NULL);
    for (int i = 0; s == SP_OK && i < PQntuples(res); i++)
        s = spredis_cmd(NULL, k->r, "SADD", CAT_REVOKED_KEYS, PQgetvalue(res, i, 0), NULL);
    if (s == SP_OK) s = spredis_cmd(NULL, k->r, "SET", CAT_REVOKED_LOADED, "1", NULL);
    if (s == SP_OK)
        sp_log_info(NULL, "revoked_keys_loaded", "count", res != NULL ? PQcmdTuples(res) : "0");
    else
        sp_log_debug(NULL, "revoked_keys_load_failed", "code", sp_error_code(s));
    PQclear(res);
}

sp_status cat_keeper_start(spsvc *kit, const char *db_url, const char *redis_url)
{
    struct cat_keeper *k = &g_keeper;
    k->db_url = strdup(db_url);
    k->redis_url = strdup(redis_url);
    if (k->db_url == NULL || k->redis_url == NULL) return SP_ERR_INTERNAL;
    keep(k);
    return spsvc_every(kit, NULL, CAT_KEEPER_MS, keep, k);
}

void cat_keeper_free(void)
{
    struct cat_keeper *k = &g_keeper;
    spredis_destroy(k->r);
    spdb_destroy(k->db);
    free(k->db_url);
    free(k->redis_url);
    memset(k, 0, sizeof(*k));
}

static const spbus_route routes[] = {
    {"CreateApiKey", create_api_key, &sp__catalog__v1__create_api_key_request__descriptor, NULL},
    {"ListApiKeys", list_api_keys, &sp__catalog__v1__list_api_keys_request__descriptor, NULL},
    {"RevokeApiKey", revoke_api_key, &sp__catalog__v1__revoke_api_key_request__descriptor, NULL},
};

void keys_register(spsvc *kit)
{
    SPSVC_ROUTES(kit, routes);
}
