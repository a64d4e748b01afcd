/* ingest_events.c -- cameras' events through the gateway and over NATS into ingest, the
 * SP_EVENTS stream and the projection, on real NATS, PostgreSQL and Redis (every service
 * running): api.md's ingest contract row by row (both authentication forms, replay, the
 * timestamp window, revoked keys, the order of checks, per-item codes, the batch limits,
 * unknown fields, the derived eventId, the 202's counts) and what the projection makes of
 * the events: the slot's status in the catalog's answers, history holding exactly the
 * applied changes whatever the order and repetition of the deliveries, SlotStatusChanged
 * on sp.slot-status.v1.>, heartbeats. */
#include <libpq-fe.h>
#include <nats/nats.h>
#include <time.h>

#include "camera_fixture.h"
#include "sp/ingest/v1/ingest.pb-c.h"
#include "sp/status/v1/status.pb-c.h"
#include "sp/v1/envelope.pb-c.h"
#include "tenancy_fixture.h"

#define EVENT_NS "5d0b7c1e-2f4a-4b8e-9c3d-6a1e0f2b4c59"

static tenant T, OTHER;
static sptest_proc *INGEST;

/* The status of slot 'code' as the catalog answers it, waiting up to 5 s for 'want'. */
static bool slot_becomes(const site *s, const char *code, const char *want, cJSON **out)
{
    for (int i = 0; i < 100; i++) {
        sptest_resp *r = MUST("GET", slot_path(s->lot), ADMIN, NULL, 200);
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r->json, "items"))
        {
            if (strcmp(item_str(it, "slotCode"), code) != 0) continue;
            if (strcmp(item_str(it, "status"), want) == 0) {
                if (out != NULL) *out = cJSON_Duplicate(it, true);
                sptest_resp_free(r);
                return true;
            }
        }
        sptest_resp_free(r);
        usleep(50 * 1000);
    }
    return false;
}

/* ---- PostgreSQL, as the operator ----------------------------------------------------------- */

static long db_count(const char *sql, const char *arg)
{
    PGconn *pg = PQconnectdb(E->db_url);
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    const char *p[] = {arg};
    PGresult *res = PQexecParams(pg, sql, 1, NULL, p, NULL, NULL, 0);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(pg));
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(pg);
    return n;
}

/* Waits until the projection logged 'want' events of slot 'slot' (up to 5 s). */
static void wait_events_logged(const char *slot, long want)
{
    long n = -1;
    for (int i = 0; i < 100 && n < want; i++) {
        n = db_count("SELECT count(*) FROM status.slot_status_events WHERE slot_id = $1::uuid",
                     slot);
        if (n < want) usleep(50 * 1000);
    }
    ck_assert_int_eq(n, want);
}

/* ---- tests -------------------------------------------------------------------------------------
 */

START_TEST(api_key_batch_is_stored_and_the_slot_shows_it)
{
    site s = new_site(&T);
    char at[40];
    iso_at(at, sizeof(at), -1000);
    char items[1024];
    snprintf(
        items, sizeof(items),
        "{\"slotCode\":\"A1\",\"status\":\"OCCUPIED\",\"vehicle\":\"car\",\"occurredAt\":\"%s\","
        "\"sequence\":7,\"confidence\":0.97},"
        "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"vehicle\":\"motorcycle\",\"occurredAt\":\"%"
        "s\"}",
        at, at);
    char *b = batch(&s, items);
    sptest_resp *r = post_events(&s, AUTH_KEY, b);
    EXPECT_COUNTS(r, 2, 0, 0);
    sptest_resp_free(r);
    cJSON *a1 = NULL, *a2 = NULL;
    ck_assert_msg(slot_becomes(&s, "A1", "OCCUPIED", &a1), "A1 never OCCUPIED");
    ck_assert_msg(slot_becomes(&s, "A2", "FREE", &a2), "A2 never FREE");
    ck_assert_str_eq(item_str(a1, "vehicle"), "car");
    ck_assert_str_eq(item_str(a1, "changedAt"), at);
    ck_assert_str_eq(item_str(a2, "vehicle"), "moto");
    ck_assert(slot_becomes(&s, "A3", "UNKNOWN", NULL)); /* never reported */
    cJSON_Delete(a1);
    cJSON_Delete(a2);
    free(b);
    site_free(&s);
}
END_TEST

START_TEST(hmac_signature_window_and_replay)
{
    site s = new_site(&T);
    char at[40];
    iso_at(at, sizeof(at), -500);
    char *it = item("A1", "OCCUPIED", at, NULL);
    char *b = batch(&s, it);
    sptest_resp *r = post_as(&s, "/v1/events/slot-status", AUTH_HMAC, 0, b, "application/json");
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    /* the very same request again: the signature was seen */
    char url[512], h1[256], h2[128], h3[128], ts[24], sig[65];
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    sign(sig, s.secret, ts, b, strlen(b));
    snprintf(url, sizeof(url), "%s/v1/events/slot-status", E->base_url);
    snprintf(h1, sizeof(h1), "X-Key-Id: %s", s.key_id);
    snprintf(h2, sizeof(h2), "X-Timestamp: %s", ts);
    snprintf(h3, sizeof(h3), "X-Signature: %s", sig);
    const char *h[] = {"Content-Type: application/json", h1, h2, h3, NULL};
    r = sptest_http("POST", url, h, b, strlen(b));
    if (r->status == 202) { /* the first second's signature may equal ours: sign once more */
        sptest_resp_free(r);
        r = sptest_http("POST", url, h, b, strlen(b));
    }
    assert_error(r, 401, "unauthenticated");
    ck_assert_msg(strstr(r->body, "replay") != NULL, "%s", r->body);
    sptest_resp_free(r);
    /* stale and future timestamps, a signature of another body, another key's secret */
    r = post_as(&s, "/v1/events/slot-status", AUTH_HMAC, -301, b, "application/json");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    r = post_as(&s, "/v1/events/slot-status", AUTH_HMAC, 301, b, "application/json");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    r = post_as(&s, "/v1/events/slot-status", AUTH_HMAC, -299, b, "application/json");
    ck_assert_msg(r->status == 202, "299 s old is inside the window: %ld %s", r->status, r->body);
    sptest_resp_free(r);
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    sign(sig, s.secret, ts, "{}", 2);
    snprintf(h2, sizeof(h2), "X-Timestamp: %s", ts);
    snprintf(h3, sizeof(h3), "X-Signature: %s", sig);
    r = sptest_http("POST", url, h, b, strlen(b));
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    free(it);
    free(b);
    site_free(&s);
}
END_TEST

START_TEST(bad_or_revoked_credentials_are_401)
{
    site s = new_site(&T);
    char at[40];
    iso_at(at, sizeof(at), 0);
    char *it = item("A1", "FREE", at, NULL);
    char *b = batch(&s, it);
    char url[512];
    snprintf(url, sizeof(url), "%s/v1/events/slot-status", E->base_url);
    char wrong[256], unknown[256];
    snprintf(wrong, sizeof(wrong), "X-API-Key: %s.%.42sx", s.key_id, s.secret);
    snprintf(unknown, sizeof(unknown), "X-API-Key: spk_AAAAAAAAAAAAAAAA.%s", s.secret);
    const char *cases[][3] = {
        {"Content-Type: application/json", NULL, NULL},
        {"Content-Type: application/json", "X-API-Key: nodot", NULL},
        {"Content-Type: application/json", wrong, NULL},
        {"Content-Type: application/json", unknown, NULL},
        {"Content-Type: application/json", "X-Key-Id: spk_AAAAAAAAAAAAAAAA", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sptest_resp *r = sptest_http("POST", url, cases[i], b, strlen(b));
        ck_assert_msg(r->status == 401, "case %zu: %ld %s", i, r->status, r->body);
        assert_error(r, 401, "unauthenticated");
        sptest_resp_free(r);
    }
    /* a 401 comes before anything about the body */
    sptest_resp *r = sptest_http("POST", url, cases[0], "not json", 8);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    /* revoked: refused from the moment the revoking call returned */
    r = post_events(&s, AUTH_KEY, b);
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    char path[160];
    snprintf(path, sizeof(path), "/v1/api-keys/%s/revoke", s.key);
    sptest_resp_free(MUST("POST", path, ADMIN, NULL, 204));
    r = post_events(&s, AUTH_KEY, b);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    r = post_events(&s, AUTH_HMAC, b);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    free(it);
    free(b);
    site_free(&s);
}
END_TEST

START_TEST(camera_lot_and_client_checks_in_order)
{
    site s = new_site(&T);
    site o = new_site(&OTHER);
    char at[40], body[1024];
    iso_at(at, sizeof(at), 0);
    char *it = item("A1", "FREE", at, NULL);
    /* unknown hardware code: 401 */
    snprintf(body, sizeof(body), "{\"hardwareCode\":\"NOPE\",\"lotId\":\"%s\",\"items\":[%s]}",
             s.lot, it);
    sptest_resp *r = post_events(&s, AUTH_KEY, body);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    /* the other tenant's camera with this tenant's key: 401 (the key proves the client) */
    snprintf(body, sizeof(body), "{\"hardwareCode\":\"%s\",\"lotId\":\"%s\",\"items\":[%s]}",
             o.cam_code, s.lot, it);
    r = post_events(&s, AUTH_KEY, body);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    /* unknown lot, a lot id that is no UUID: 404 */
    snprintf(body, sizeof(body),
             "{\"hardwareCode\":\"%s\",\"lotId\":\"6d25a62a-54ce-43d8-9865-50e87bf88000\","
             "\"items\":[%s]}",
             s.cam_code, it);
    r = post_events(&s, AUTH_KEY, body);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    snprintf(body, sizeof(body), "{\"hardwareCode\":\"%s\",\"lotId\":\"lot-1\",\"items\":[%s]}",
             s.cam_code, it);
    r = post_events(&s, AUTH_KEY, body);
    assert_error(r, 404, "not_found");
    sptest_resp_free(r);
    /* another client's lot: 403, even with a bad body after it */
    snprintf(body, sizeof(body), "{\"hardwareCode\":\"%s\",\"lotId\":\"%s\",\"items\":[]}",
             s.cam_code, o.lot);
    r = post_events(&s, AUTH_KEY, body);
    assert_error(r, 403, "forbidden");
    sptest_resp_free(r);
    /* a disabled camera: 401 */
    char path[160];
    snprintf(path, sizeof(path), "/v1/cameras/%s", o.cam);
    sptest_resp_free(MUST("PATCH", path, ADMIN, "{\"enabled\":false}", 200));
    char *ob = batch(&o, it);
    r = post_events(&o, AUTH_KEY, ob);
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    sptest_resp_free(MUST("PATCH", path, ADMIN, "{\"enabled\":true}", 200));
    r = post_events(&o, AUTH_KEY, ob);
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    /* a suspended client's camera: 403 client_suspended; reactivated: accepted again */
    must_action(OTHER.id, "suspend", "SUSPENDED");
    r = post_events(&o, AUTH_KEY, ob);
    assert_error(r, 403, "client_suspended");
    sptest_resp_free(r);
    must_action(OTHER.id, "reactivate", "ACTIVE");
    char at2[40];
    iso_at(at2, sizeof(at2), 10);
    char *it2 = item("A1", "OCCUPIED", at2, NULL);
    char *ob2 = batch(&o, it2);
    r = post_events(&o, AUTH_KEY, ob2);
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    free(it);
    free(it2);
    free(ob);
    free(ob2);
    site_free(&s);
    site_free(&o);
}
END_TEST

START_TEST(bodies_and_batch_sizes)
{
    site s = new_site(&T);
    char body[512];
    sptest_resp *r = post_as(&s, "/v1/events/slot-status", AUTH_KEY, 0, "{}", "text/plain");
    assert_error(r, 415, "unsupported_media_type");
    sptest_resp_free(r);
    r = post_as(&s, "/v1/events/slot-status", AUTH_KEY, 0, "{}", NULL);
    assert_error(r, 415, "unsupported_media_type");
    sptest_resp_free(r);
    r = post_events(&s, AUTH_KEY, "{\"hardwareCode\":");
    assert_error(r, 400, "malformed_json");
    sptest_resp_free(r);
    r = post_events(&s, AUTH_KEY, "{\"items\":[]}");
    assert_error(r, 400, "validation_failed");
    ck_assert(names_field(r, "hardwareCode") && names_field(r, "lotId"));
    sptest_resp_free(r);
    snprintf(body, sizeof(body), "{\"hardwareCode\":\"%s\",\"lotId\":\"%s\",\"items\":[]}",
             s.cam_code, s.lot);
    r = post_events(&s, AUTH_KEY, body);
    assert_error(r, 400, "validation_failed");
    ck_assert(names_field(r, "items"));
    sptest_resp_free(r);
    /* 1,000 items: accepted; 1,001: 413 and nothing stored */
    for (int n = 1000; n <= 1001; n++) {
        size_t cap = (size_t)n * 96 + 16;
        char *items = malloc(cap), at[40];
        size_t len = 0;
        for (int i = 0; i < n; i++) {
            iso_at(at, sizeof(at), -(long long)(n - i) * 1000 - (n == 1001 ? 5000000 : 0));
            len +=
                (size_t)snprintf(items + len, cap - len,
                                 "%s{\"slotCode\":\"A%d\",\"status\":\"%s\",\"occurredAt\":\"%s\"}",
                                 i ? "," : "", i % NSLOTS + 1, i % 2 ? "FREE" : "OCCUPIED", at);
        }
        char *b = batch(&s, items);
        r = post_events(&s, AUTH_KEY, b);
        if (n == 1000) {
            EXPECT_COUNTS(r, 1000, 0, 0);
        } else {
            assert_error(r, 413, "payload_too_large");
        }
        sptest_resp_free(r);
        free(items);
        free(b);
    }
    wait_events_logged(s.slot[0], 200);
    site_free(&s);
}
END_TEST

START_TEST(each_item_is_judged_alone)
{
    site s = new_site(&T);
    char at[40], future[40], items[4096];
    iso_at(at, sizeof(at), -100);
    iso_at(future, sizeof(future), 301 * 1000);
    snprintf(items, sizeof(items),
             "{\"slotCode\":\"A1\",\"status\":\"OCCUPIED\",\"occurredAt\":\"%s\",\"firmwareX\":1},"
             "{\"slotCode\":\"ZZ\",\"status\":\"FREE\",\"occurredAt\":\"%s\"},"
             "{\"slotCode\":\"A9\",\"status\":\"FREE\",\"occurredAt\":\"%s\"},"
             "{\"slotCode\":\"A2\",\"status\":\"PARKED\",\"occurredAt\":\"%s\"},"
             "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"vehicle\":\"bus\",\"occurredAt\":\"%s\"},"
             "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"occurredAt\":\"yesterday\"},"
             "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"occurredAt\":\"%s\"},"
             "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"occurredAt\":\"%s\",\"eventId\":\"x\"},"
             "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"occurredAt\":\"%s\",\"sequence\":-1},"
             "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"occurredAt\":\"%s\",\"confidence\":1.5},"
             "{\"slotCode\":\"A2\",\"status\":5,\"occurredAt\":\"%s\"},"
             "\"A3\","
             "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"occurredAt\":\"%s\",\"sequence\":\"7\"}",
             at, at, at, at, at, future, at, at, at, at, at);
    char *b = batch(&s, items);
    /* an unknown field at the top as well: ignored */
    char *withx = malloc(strlen(b) + 32);
    sprintf(withx, "{\"fw\":{\"v\":2},%s", b + 1);
    sptest_resp *r = post_events(&s, AUTH_KEY, withx);
    EXPECT_COUNTS(r, 1, 0, 12);
    static const char *const want[] = {
        "unknown_slot",       "inactive_slot",    "invalid_status",   "invalid_vehicle",
        "invalid_timestamp",  "future_timestamp", "invalid_event_id", "invalid_sequence",
        "invalid_confidence", "invalid_status",   "unknown_slot",     "invalid_sequence"};
    const cJSON *rej = cJSON_GetObjectItemCaseSensitive(r->json, "rejected");
    for (int i = 0; i < 12; i++) {
        const cJSON *x = cJSON_GetArrayItem(rej, i);
        ck_assert_int_eq((int)cJSON_GetObjectItemCaseSensitive(x, "index")->valuedouble, i + 1);
        ck_assert_msg(strcmp(item_str(x, "code"), want[i]) == 0, "item %d: %s", i + 1,
                      item_str(x, "code"));
        ck_assert(item_str(x, "message")[0] != '\0');
    }
    sptest_resp_free(r);
    /* every item bad: 400 naming each */
    char bad[512];
    snprintf(bad, sizeof(bad),
             "{\"slotCode\":\"ZZ\",\"status\":\"FREE\",\"occurredAt\":\"%s\"},"
             "{\"slotCode\":\"A1\",\"status\":\"FREE\",\"occurredAt\":\"%s\"}",
             at, future);
    char *bb = batch(&s, bad);
    r = post_events(&s, AUTH_KEY, bb);
    assert_error(r, 400, "validation_failed");
    ck_assert(names_field(r, "items[0]") && names_field(r, "items[1]"));
    sptest_resp_free(r);
    /* the unknown fields were counted */
    char metrics[128];
    snprintf(metrics, sizeof(metrics), "http://127.0.0.1:%d/metrics", INGEST->admin_port);
    r = sptest_http("GET", metrics, NULL, NULL, 0);
    ck_assert_msg(strstr(r->body, "sp_ingest_unknown_fields_total ") != NULL, "%s", r->body);
    sptest_resp_free(r);
    free(b);
    free(withx);
    free(bb);
    site_free(&s);
}
END_TEST

START_TEST(event_id_is_derived_and_repeats_are_duplicates)
{
    site s = new_site(&T);
    char at[40], name[512], id[SPCRYPTO_UUID_LEN];
    iso_at(at, sizeof(at), -2000);
    char *it = item("A3", "OCCUPIED", at, NULL);
    char *b = batch(&s, it);
    sptest_resp *r = post_events(&s, AUTH_KEY, b);
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    r = post_events(&s, AUTH_KEY, b);
    EXPECT_COUNTS(r, 0, 1, 0);
    sptest_resp_free(r);
    /* api.md's formula, computed here: the same event named by its id is the same event */
    snprintf(name, sizeof(name), "%s|%s|A3|%s|OCCUPIED", s.cam, s.lot, at);
    ck_assert_int_eq(spcrypto_uuid_v5(id, EVENT_NS, name, strlen(name)), SP_OK);
    char *it2 = item("A3", "OCCUPIED", at, id);
    char *b2 = batch(&s, it2);
    r = post_events(&s, AUTH_KEY, b2);
    EXPECT_COUNTS(r, 0, 1, 0);
    sptest_resp_free(r);
    ck_assert(slot_becomes(&s, "A3", "OCCUPIED", NULL));
    wait_events_logged(s.slot[2], 1);
    free(it);
    free(b);
    free(it2);
    free(b2);
    site_free(&s);
}
END_TEST

/* Three events of a slot (OCCUPIED, FREE, OCCUPIED at t1 < t2 < t3), delivered in order to
 * one slot and newest first to another, every batch three times: both end OCCUPIED at t3;
 * history holds the changes each delivery applied, the event log each event once. */
START_TEST(repeats_and_shuffles_end_in_the_ordered_state)
{
    site s = new_site(&T);
    char t[3][40], ids[6][SPCRYPTO_UUID_LEN];
    const char *st[3] = {"OCCUPIED", "FREE", "OCCUPIED"};
    for (int i = 0; i < 3; i++)
        iso_at(t[i], sizeof(t[i]), -3000 + i * 1000);
    for (int i = 0; i < 6; i++)
        spcrypto_uuid_v4(ids[i]);
    /* A4 in order: [e1], [e2], [e3]; A5 shuffled: [e3], [e1, e2] */
    for (int i = 0; i < 3; i++) {
        char *it = item("A4", st[i], t[i], ids[i]);
        char *b = batch(&s, it);
        for (int k = 0; k < 3; k++) {
            sptest_resp *r = post_events(&s, AUTH_KEY, b);
            EXPECT_COUNTS(r, k == 0 ? 1 : 0, k == 0 ? 0 : 1, 0);
            sptest_resp_free(r);
        }
        free(it);
        free(b);
    }
    char *e3 = item("A5", st[2], t[2], ids[5]);
    char *e1 = item("A5", st[0], t[0], ids[3]);
    char *e2 = item("A5", st[1], t[1], ids[4]);
    char both[1200];
    snprintf(both, sizeof(both), "%s,%s", e2, e1);
    char *b3 = batch(&s, e3), *b12 = batch(&s, both);
    for (int k = 0; k < 3; k++) {
        sptest_resp *r = post_events(&s, AUTH_KEY, b3);
        sptest_resp_free(r);
    }
    wait_events_logged(s.slot[4], 1);
    for (int k = 0; k < 3; k++) {
        sptest_resp *r = post_events(&s, AUTH_KEY, b12);
        EXPECT_COUNTS(r, k == 0 ? 2 : 0, k == 0 ? 0 : 2, 0);
        sptest_resp_free(r);
    }
    wait_events_logged(s.slot[3], 3);
    wait_events_logged(s.slot[4], 3);
    cJSON *a4 = NULL, *a5 = NULL;
    ck_assert(slot_becomes(&s, "A4", "OCCUPIED", &a4));
    ck_assert(slot_becomes(&s, "A5", "OCCUPIED", &a5));
    ck_assert_str_eq(item_str(a4, "changedAt"), t[2]);
    ck_assert_str_eq(item_str(a5, "changedAt"), t[2]);
    static const char *hist =
        "SELECT count(*) FROM status.slot_status_history WHERE slot_id = $1::uuid";
    ck_assert_int_eq(db_count(hist, s.slot[3]), 3); /* UNKNOWN->OCC->FREE->OCC */
    ck_assert_int_eq(db_count(hist, s.slot[4]), 1); /* UNKNOWN->OCC; e1, e2 older: log only */
    ck_assert_int_eq(db_count("SELECT count(*) FROM status.slot_status_events WHERE slot_id ="
                              " $1::uuid AND NOT applied",
                              s.slot[4]),
                     2);
    cJSON_Delete(a4);
    cJSON_Delete(a5);
    free(e1);
    free(e2);
    free(e3);
    free(b3);
    free(b12);
    site_free(&s);
}
END_TEST

/* ---- NATS: a camera that speaks it, and an integrator that listens ------------------------ */

static natsConnection *connect_as(const char *user, const char *password)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
    ck_assert_int_eq(natsOptions_SetURL(o, E->nats_url), NATS_OK);
    ck_assert_int_eq(natsOptions_SetUserInfo(o, user, password), NATS_OK);
    ck_assert_int_eq(natsConnection_Connect(&nc, o), NATS_OK);
    natsOptions_Destroy(o);
    return nc;
}

/* Sends 'payload' as the camera user with the headers (name, value, ..., NULL) and
 * unpacks the sp.v1.Reply. */
static Sp__V1__Reply *camera_request(natsConnection *nc, const char *subject,
                                     const uint8_t *payload, size_t len, const char *const *headers)
{
    natsMsg *m = NULL, *reply = NULL;
    ck_assert_int_eq(natsMsg_Create(&m, subject, NULL, (const char *)payload, (int)len), NATS_OK);
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2)
        ck_assert_int_eq(natsMsgHeader_Set(m, headers[i], headers[i + 1]), NATS_OK);
    ck_assert_int_eq(natsConnection_RequestMsg(&reply, nc, m, 5000), NATS_OK);
    Sp__V1__Reply *rep = sp__v1__reply__unpack(NULL, (size_t)natsMsg_GetDataLength(reply),
                                               (const uint8_t *)natsMsg_GetData(reply));
    ck_assert_ptr_nonnull(rep);
    natsMsg_Destroy(m);
    natsMsg_Destroy(reply);
    return rep;
}

START_TEST(nats_camera_and_subscriber)
{
    site s = new_site(&T);
    natsConnection *cam = connect_as("camera", "camera");
    natsConnection *sub_nc = connect_as("subscriber", "subscriber");
    natsSubscription *sub = NULL;
    char subject[256];
    snprintf(subject, sizeof(subject), "sp.slot-status.v1.%s.>", T.id);
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, sub_nc, subject), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(sub_nc), NATS_OK);

    char at[40];
    iso_at(at, sizeof(at), -700);
    Sp__Ingest__V1__SlotEventItem it = SP__INGEST__V1__SLOT_EVENT_ITEM__INIT;
    it.slot_code = "A2";
    it.status = "OCCUPIED";
    it.vehicle = "truck";
    it.occurred_at = at;
    it.has_sequence = 1;
    it.sequence = 42;
    Sp__Ingest__V1__SlotEventItem *items[] = {&it};
    Sp__Ingest__V1__SlotEventsRequest b = SP__INGEST__V1__SLOT_EVENTS_REQUEST__INIT;
    b.hardware_code = s.cam_code;
    b.lot_id = s.lot;
    b.n_items = 1;
    b.items = items;
    size_t len = sp__ingest__v1__slot_events_request__get_packed_size(&b);
    uint8_t *buf = malloc(len);
    sp__ingest__v1__slot_events_request__pack(&b, buf);

    /* no credentials: the error reply */
    Sp__V1__Reply *rep = camera_request(cam, "sp.ingest.v1.SlotEvents", buf, len, NULL);
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_ERROR);
    ck_assert_str_eq(rep->error->code, "unauthenticated");
    sp__v1__reply__free_unpacked(rep, NULL);
    /* HMAC over the protobuf payload */
    char ts[24], sig[65];
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    sign(sig, s.secret, ts, (const char *)buf, len);
    const char *hh[] = {"X-Key-Id", s.key_id, "X-Timestamp", ts, "X-Signature", sig, NULL};
    rep = camera_request(cam, "sp.ingest.v1.SlotEvents", buf, len, hh);
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_PAYLOAD);
    Sp__Ingest__V1__IngestReply *ir =
        sp__ingest__v1__ingest_reply__unpack(NULL, rep->payload.len, rep->payload.data);
    ck_assert_int_eq(ir->accepted, 1);
    sp__ingest__v1__ingest_reply__free_unpacked(ir, NULL);
    sp__v1__reply__free_unpacked(rep, NULL);
    /* the API key form: the same event again, a duplicate */
    char api_key[160];
    snprintf(api_key, sizeof(api_key), "%s.%s", s.key_id, s.secret);
    const char *hk[] = {"X-API-Key", api_key, NULL};
    rep = camera_request(cam, "sp.ingest.v1.SlotEvents", buf, len, hk);
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_PAYLOAD);
    ir = sp__ingest__v1__ingest_reply__unpack(NULL, rep->payload.len, rep->payload.data);
    ck_assert_int_eq(ir->duplicates, 1);
    sp__ingest__v1__ingest_reply__free_unpacked(ir, NULL);
    sp__v1__reply__free_unpacked(rep, NULL);
    /* a heartbeat over NATS */
    Sp__Ingest__V1__HeartbeatRequest hb = SP__INGEST__V1__HEARTBEAT_REQUEST__INIT;
    hb.hardware_code = s.cam_code;
    hb.firmware = "9.9";
    size_t hlen = sp__ingest__v1__heartbeat_request__get_packed_size(&hb);
    uint8_t *hbuf = malloc(hlen);
    sp__ingest__v1__heartbeat_request__pack(&hb, hbuf);
    rep = camera_request(cam, "sp.ingest.v1.Heartbeat", hbuf, hlen, hk);
    ck_assert_int_eq(rep->result_case, SP__V1__REPLY__RESULT_PAYLOAD);
    sp__v1__reply__free_unpacked(rep, NULL);

    /* the integrator sees the change once, with its ids */
    natsMsg *m = NULL;
    ck_assert_int_eq(natsSubscription_NextMsg(&m, sub, 5000), NATS_OK);
    char want[256];
    snprintf(want, sizeof(want), "sp.slot-status.v1.%s.%s.%s.A2", T.id, s.est, s.lot);
    ck_assert_str_eq(natsMsg_GetSubject(m), want);
    Sp__Status__V1__SlotStatusChanged *c = sp__status__v1__slot_status_changed__unpack(
        NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(c->previous_status, "UNKNOWN");
    ck_assert_str_eq(c->status, "OCCUPIED");
    ck_assert_str_eq(c->vehicle, "truck");
    ck_assert_str_eq(c->slot_id, s.slot[1]);
    ck_assert_int_eq((long long)c->sequence, 42);
    ck_assert(c->event_id != NULL && spcrypto_uuid_valid(c->event_id));
    sp__status__v1__slot_status_changed__free_unpacked(c, NULL);
    natsMsg_Destroy(m);
    ck_assert_int_eq(natsSubscription_NextMsg(&m, sub, 500), NATS_TIMEOUT);

    for (int i = 0; i < 100 && db_count("SELECT count(*) FROM status.camera_heartbeats WHERE"
                                        " camera_id = $1::uuid AND firmware = '9.9'",
                                        s.cam) == 0;
         i++)
        usleep(50 * 1000);
    ck_assert_int_eq(db_count("SELECT count(*) FROM status.camera_heartbeats WHERE camera_id ="
                              " $1::uuid AND firmware = '9.9'",
                              s.cam),
                     1);
    free(buf);
    free(hbuf);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(cam);
    natsConnection_Destroy(sub_nc);
    site_free(&s);
}
END_TEST

START_TEST(heartbeats_over_http)
{
    site s = new_site(&T);
    char body[256];
    snprintf(body, sizeof(body),
             "{\"hardwareCode\":\"%s\",\"uptimeS\":60,\"fps\":12.5,\"temperatureC\":41,\"x\":1}",
             s.cam_code);
    sptest_resp *r = post_as(&s, "/v1/events/heartbeat", AUTH_HMAC, 0, body, "application/json");
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    snprintf(body, sizeof(body), "{\"hardwareCode\":\"%s\",\"fps\":\"fast\"}", s.cam_code);
    r = post_as(&s, "/v1/events/heartbeat", AUTH_KEY, 0, body, "application/json");
    assert_error(r, 400, "validation_failed");
    ck_assert(names_field(r, "fps"));
    sptest_resp_free(r);
    r = post_as(&s, "/v1/events/heartbeat", AUTH_KEY, 0, "{\"hardwareCode\":\"NOPE\"}",
                "application/json");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    r = post_as(&s, "/v1/events/heartbeat", AUTH_NONE, 0, body, "application/json");
    assert_error(r, 401, "unauthenticated");
    sptest_resp_free(r);
    site_free(&s);
}
END_TEST

/* Two tenants per test (checks run inside a test only). */
static void setup(void)
{
    T = new_tenant("ingestT", true, false);
    OTHER = new_tenant("ingestO", true, false);
}

static void teardown(void)
{
    tenant_free(&T);
    tenant_free(&OTHER);
}

/* The status of slot 'code' now, as the catalog answers it (malloc'd). */
static char *slot_status_now(const site *s, const char *code)
{
    char *out = NULL;
    sptest_resp *r = MUST("GET", slot_path(s->lot), ADMIN, NULL, 200);
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(r->json, "items"))
    {
        if (strcmp(item_str(it, "slotCode"), code) == 0) out = strdup(item_str(it, "status"));
    }
    sptest_resp_free(r);
    ck_assert_ptr_nonnull(out);
    return out;
}

static void assert_status_(int line, const site *s, const char *code, const char *want)
{
    char *now = slot_status_now(s, code);
    ck_assert_msg(strcmp(now, want) == 0, "line %d: %s is %s, not %s", line, code, now, want);
    free(now);
}
#define ASSERT_STATUS(s, c, w) assert_status_(__LINE__, s, c, w)

/* debounceMs 700: a change shows only once it held that long; a contrary report in
 * between cancels it, and history holds only what was applied. */
START_TEST(debounce_holds_changes_and_contrary_reports_cancel_them)
{
    site s = new_site_with(&T, "\"debounceMs\":700");
    post_one(&s, "A1", "OCCUPIED", -50);
    usleep(300 * 1000);
    ASSERT_STATUS(&s, "A1", "UNKNOWN"); /* pending */
    ck_assert(slot_becomes(&s, "A1", "OCCUPIED", NULL));
    post_one(&s, "A1", "FREE", -20);     /* pending FREE */
    post_one(&s, "A1", "OCCUPIED", -10); /* back: cancels it */
    usleep(1500 * 1000);
    ASSERT_STATUS(&s, "A1", "OCCUPIED");
    static const char *hist =
        "SELECT count(*) FROM status.slot_status_history WHERE slot_id = $1::uuid";
    ck_assert_int_eq(db_count(hist, s.slot[0]), 1);
    wait_events_logged(s.slot[0], 3);
    ck_assert_int_eq(
        db_count("SELECT count(*) FROM status.pending WHERE slot_id = $1::uuid", s.slot[0]), 0);
    site_free(&s);
}
END_TEST

/* unknownAfterS 1: heartbeats keep the camera ONLINE and its slots known; once it falls
 * silent its slots turn UNKNOWN and it is OFFLINE; its next report sets them again. */
START_TEST(silent_cameras_slots_turn_unknown_and_come_back)
{
    site s = new_site_with(&T, "\"unknownAfterS\":1");
    char cam[160], body[160];
    snprintf(cam, sizeof(cam), "/v1/cameras/%s", s.cam);
    sptest_resp *r = MUST("GET", cam, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "state"), "ASSIGNED"); /* never reported */
    sptest_resp_free(r);
    post_one(&s, "A2", "OCCUPIED", -10);
    ck_assert(slot_becomes(&s, "A2", "OCCUPIED", NULL));
    snprintf(body, sizeof(body), "{\"hardwareCode\":\"%s\"}", s.cam_code);
    for (int i = 0; i < 6; i++) { /* 2.4 s of heartbeats */
        r = post_as(&s, "/v1/events/heartbeat", AUTH_KEY, 0, body, "application/json");
        EXPECT_COUNTS(r, 1, 0, 0);
        sptest_resp_free(r);
        usleep(400 * 1000);
    }
    ASSERT_STATUS(&s, "A2", "OCCUPIED");
    r = MUST("GET", cam, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "state"), "ONLINE");
    ck_assert(matches(RFC3339_MS, sptest_jstr(r, "lastSeenAt")));
    sptest_resp_free(r);
    ck_assert_msg(slot_becomes(&s, "A2", "UNKNOWN", NULL), "A2 stayed known");
    r = MUST("GET", cam, ADMIN, NULL, 200);
    ck_assert_str_eq(sptest_jstr(r, "state"), "OFFLINE");
    sptest_resp_free(r);
    ASSERT_STATUS(&s, "A1", "UNKNOWN"); /* never reported: untouched */
    post_one(&s, "A2", "OCCUPIED", 0);
    ck_assert(slot_becomes(&s, "A2", "OCCUPIED", NULL));
    static const char *hist =
        "SELECT count(*) FROM status.slot_status_history WHERE slot_id = $1::uuid";
    ck_assert_int_eq(db_count(hist, s.slot[1]), 3); /* OCC, UNKNOWN, OCC */
    site_free(&s);
}
END_TEST

/* spctl camsim makes its cameras through catalog and drives them over HTTP and NATS: the
 * lot's slots get reported, and the cameras are ONLINE. */
START_TEST(camsim_drives_cameras_over_http_and_nats)
{
    site s = new_site(&T);
    char url[160];
    snprintf(url, sizeof(url), "--url=%s", E->base_url);
    const char *http[] = {"camsim", "--lot",      s.lot, "--cameras", "2", "--rate",
                          "20",     "--duration", "3",   url,         NULL};
    ck_assert_int_eq(run_spctl(http), 0);
    const char *nats[] = {"camsim", "--lot",      s.lot, "--cameras", "2", "--rate",
                          "20",     "--duration", "2",   "--nats",    NULL};
    ck_assert_int_eq(run_spctl(nats), 0); /* the same cameras again, with new keys */
    char path[200];
    snprintf(path, sizeof(path), "/v1/cameras?clientId=%s&lotId=%s", T.id, s.lot);
    int online = 0;
    for (int i = 0; i < 50 && online < 2; i++) {
        sptest_resp *r = MUST("GET", path, ADMIN, NULL, 200);
        online = count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "state", "ONLINE");
        sptest_resp_free(r);
        if (online < 2) usleep(100 * 1000);
    }
    ck_assert_int_eq(online, 2); /* SIM-...-1 and -2; the site's own camera never reported */
    sptest_resp *r = MUST("GET", slot_path(s.lot), ADMIN, NULL, 200);
    int unknown =
        count_where(cJSON_GetObjectItemCaseSensitive(r->json, "items"), "status", "UNKNOWN");
    sptest_resp_free(r);
    ck_assert_msg(unknown < NSLOTS + 1, "no slot was reported");
    ck_assert_int_gt(db_count("SELECT count(*) FROM status.slot_status_events WHERE lot_id ="
                              " $1::uuid AND model_name = 'camsim'",
                              s.lot),
                     20);
    site_free(&s);
}
END_TEST

/* The history and the log in day partitions that pg_partman made (a week ahead, kept up by
 * the projection's maintenance), not in the default one. */
START_TEST(events_land_in_day_partitions)
{
    site s = new_site(&T);
    post_one(&s, "A3", "OCCUPIED", -5);
    wait_events_logged(s.slot[2], 1);
    ck_assert_int_eq(
        db_count("SELECT count(*) FROM partman.part_config WHERE parent_table ="
                 " ANY(ARRAY['status.slot_status_history','status.slot_status_events'])"
                 " AND $1::text IS NOT NULL",
                 "x"),
        2);
    ck_assert_int_ge(db_count("SELECT count(*) FROM pg_inherits WHERE inhparent ="
                              " 'status.slot_status_events'::regclass AND $1::text IS NOT NULL",
                              "x"),
                     8); /* today, a week ahead (and the default) */
    ck_assert_int_eq(db_count("SELECT count(*) FROM status.slot_status_events e WHERE slot_id ="
                              " $1::uuid AND e.tableoid::regclass::text LIKE"
                              " 'status.slot_status_events_p20%'",
                              s.slot[2]),
                     1);
    ck_assert_int_eq(db_count("SELECT count(*) FROM status.slot_status_history h WHERE slot_id ="
                              " $1::uuid AND h.tableoid::regclass::text LIKE"
                              " 'status.slot_status_history_p20%'",
                              s.slot[2]),
                     1);
    site_free(&s);
}
END_TEST

static long ingest_ready(void)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/readyz", INGEST->admin_port);
    sptest_resp *r = sptest_http("GET", url, NULL, NULL, 0);
    long st = r->status;
    sptest_resp_free(r);
    return st;
}

/* Without SP_EVENTS ingest is not ready and a batch is 503 with Retry-After, nothing
 * accepted; spctl migrate makes the stream again and the same batch goes in. Last: it takes
 * the stream away from the other tests. */
START_TEST(without_the_stream_batches_are_503_and_ingest_not_ready)
{
    site s = new_site(&T);
    ck_assert_int_eq(ingest_ready(), 200);
    natsConnection *nc = connect_as("spctl", sptest_secret(E, "SP_NATS_SPCTL_PASSWORD"));
    jsCtx *js = NULL;
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    ck_assert_int_eq(js_DeleteStream(js, "SP_EVENTS", NULL, NULL), NATS_OK);
    long st = 200;
    for (int i = 0; i < 80 && st == 200; i++) { /* asked at most every 5 s */
        st = ingest_ready();
        if (st == 200) usleep(100 * 1000);
    }
    ck_assert_int_eq(st, 503);
    char at[40];
    iso_at(at, sizeof(at), -5);
    char *it = item("A1", "FREE", at, NULL);
    char *b = batch(&s, it);
    sptest_resp *r = post_events(&s, AUTH_KEY, b);
    assert_error(r, 503, "unavailable");
    ck_assert_ptr_nonnull(sptest_resp_header(r, "Retry-After"));
    sptest_resp_free(r);
    const char *migrate[] = {"migrate", NULL};
    ck_assert_int_eq(run_spctl(migrate), 0);
    r = post_events(&s, AUTH_KEY, b);
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    ck_assert(slot_becomes(&s, "A1", "FREE", NULL));
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    free(it);
    free(b);
    site_free(&s);
}
END_TEST

static Suite *ingest_suite(void)
{
    Suite *s = suite_create("ingest_events");
    TCase *tc = tcase_create("ingest");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, api_key_batch_is_stored_and_the_slot_shows_it);
    tcase_add_test(tc, hmac_signature_window_and_replay);
    tcase_add_test(tc, bad_or_revoked_credentials_are_401);
    tcase_add_test(tc, camera_lot_and_client_checks_in_order);
    tcase_add_test(tc, bodies_and_batch_sizes);
    tcase_add_test(tc, each_item_is_judged_alone);
    tcase_add_test(tc, event_id_is_derived_and_repeats_are_duplicates);
    tcase_add_test(tc, repeats_and_shuffles_end_in_the_ordered_state);
    tcase_add_test(tc, nats_camera_and_subscriber);
    tcase_add_test(tc, heartbeats_over_http);
    tcase_add_test(tc, debounce_holds_changes_and_contrary_reports_cancel_them);
    tcase_add_test(tc, silent_cameras_slots_turn_unknown_and_come_back);
    tcase_add_test(tc, camsim_drives_cameras_over_http_and_nats);
    tcase_add_test(tc, events_land_in_day_partitions);
    tcase_add_test(tc, without_the_stream_batches_are_503_and_ingest_not_ready);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    start_every_service("ingest_events", &INGEST, NULL);
    return run_suite_as_admin(ingest_suite(), NULL);
}
