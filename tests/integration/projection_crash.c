/* projection_crash.c -- quality.md's crash bar on real servers: the projection is killed
 * with SIGKILL in the middle of a 50,000-event ingest (cameras keep posting: ingest and
 * JetStream hold the events) and started again; then every slot is at its newest event,
 * the event log holds each event once (none lost, none twice), history exactly the
 * applied changes, and SP_SLOT_STATUS each change once. */
#include <libpq-fe.h>
#include <nats/nats.h>
#include <time.h>

#include "site_fixture.h"
#include "tenancy_fixture.h"

#define NSLOT 100
#define PER_BATCH 100
#define NEVENTS 50000

static sptest_proc *PROJECTION;

static long db_long(PGconn *pg, const char *sql)
{
    PGresult *res = PQexec(pg, sql);
    ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(pg));
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return n;
}

/* The messages in stream SP_SLOT_STATUS (this suite's stack holds only this test's), as
 * the operator. */
static long stream_count(void)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsOptions jo;
    ck_assert_int_eq(natsOptions_Create(&o), NATS_OK);
    ck_assert_int_eq(natsOptions_SetURL(o, E->nats_url), NATS_OK);
    ck_assert_int_eq(
        natsOptions_SetUserInfo(o, "spctl", sptest_secret(E, "SP_NATS_SPCTL_PASSWORD")), NATS_OK);
    ck_assert_int_eq(natsConnection_Connect(&nc, o), NATS_OK);
    jsOptions_Init(&jo);
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, &jo), NATS_OK);
    ck_assert_int_eq(js_GetStreamInfo(&si, js, "SP_SLOT_STATUS", NULL, NULL), NATS_OK);
    long n = (long)si->State.Msgs;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    return n;
}

START_TEST(projection_killed_mid_ingest_loses_and_repeats_nothing)
{
    tenant t = new_tenant("crash", true, false);
    char name[64], code[24], body[8192];
    fresh(name, sizeof(name), "Crash Mall ", 40);
    fresh(code, sizeof(code), "CR", 20);
    char *est = new_establishment(t.id, name, "Campinas");
    size_t len = (size_t)snprintf(body, sizeof(body), "\"slots\":[");
    for (int i = 0; i < NSLOT; i++)
        len +=
            (size_t)snprintf(body + len, sizeof(body) - len,
                             "%s{\"slotCode\":\"S%d\",\"slotType\":\"regular\"}", i ? "," : "", i);
    snprintf(body + len, sizeof(body) - len, "]");
    char *lot = new_lot(est, code, body);
    snprintf(body, sizeof(body), "{\"name\":\"Crash key\",\"clientId\":\"%s\"}", t.id);
    sptest_resp *r = MUST("POST", "/v1/api-keys", ADMIN, body, 201);
    char api_key[160], key[48], hdr[200];
    snprintf(api_key, sizeof(api_key), "%s", sptest_jstr(r, "apiKey"));
    snprintf(key, sizeof(key), "%s", sptest_jstr(r, "id"));
    sptest_resp_free(r);
    snprintf(
        body, sizeof(body),
        "{\"cameraCode\":\"CAM-CRASH\",\"clientId\":\"%s\",\"apiKeyId\":\"%s\",\"lotId\":\"%s\"}",
        t.id, key, lot);
    free(made_(__LINE__, "/v1/cameras", body));

    char url[256];
    snprintf(url, sizeof(url), "%s/v1/events/slot-status", E->base_url);
    snprintf(hdr, sizeof(hdr), "X-API-Key: %s", api_key);
    const char *h[] = {"Content-Type: application/json", hdr, NULL};
    /* event k: slot k % NSLOT, OCCUPIED and FREE in turn, one millisecond apart */
    time_t base = time(NULL) - 3600;
    char *batch = malloc(PER_BATCH * 200 + 256);
    for (int b = 0; b < NEVENTS / PER_BATCH; b++) {
        size_t n = (size_t)sprintf(
            batch, "{\"hardwareCode\":\"CAM-CRASH\",\"lotId\":\"%s\",\"items\":[", lot);
        for (int i = 0; i < PER_BATCH; i++) {
            int k = b * PER_BATCH + i;
            long long ms = (long long)base * 1000 + k;
            time_t sec = (time_t)(ms / 1000);
            struct tm tm;
            gmtime_r(&sec, &tm);
            char at[40];
            strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S", &tm);
            n += (size_t)sprintf(
                batch + n,
                "%s{\"slotCode\":\"S%d\",\"status\":\"%s\",\"occurredAt\":\"%s.%03lldZ\","
                "\"sequence\":%d}",
                i ? "," : "", k % NSLOT, (k / NSLOT) % 2 ? "FREE" : "OCCUPIED", at, ms % 1000, k);
        }
        strcpy(batch + n, "]}");
        for (int attempt = 0;; attempt++) { /* a camera retries until its 202 */
            r = sptest_http("POST", url, h, batch, strlen(batch));
            long st = r->status;
            sptest_resp_free(r);
            if (st == 202) break;
            ck_assert_msg(attempt < 20, "batch %d: %ld", b, st);
            usleep(200 * 1000);
        }
        if (b == NEVENTS / PER_BATCH / 2) sptest_kill(PROJECTION, SIGKILL); /* mid-way */
        if (b == NEVENTS / PER_BATCH * 3 / 4) sptest_restart(E, PROJECTION);
    }
    free(batch);

    PGconn *pg = PQconnectdb(E->db_url);
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    char q[512];
    snprintf(q, sizeof(q), "SELECT count(*) FROM status.slot_status_events WHERE lot_id = '%s'",
             lot);
    long logged = 0;
    for (int i = 0; i < 1200 && logged < NEVENTS; i++) { /* up to 2 minutes */
        logged = db_long(pg, q);
        if (logged < NEVENTS) usleep(100 * 1000);
    }
    ck_assert_int_eq(logged, NEVENTS);
    /* none twice: the log's key is the event; history holds exactly the applied changes
     * (the batch the killed process held comes back after AckWait, older than what was
     * applied since: log only, rule 4) */
    snprintf(q, sizeof(q),
             "SELECT count(DISTINCT event_id) FROM status.slot_status_events WHERE lot_id = '%s'",
             lot);
    ck_assert_int_eq(db_long(pg, q), NEVENTS);
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM status.slot_status_events WHERE lot_id = '%s' AND applied", lot);
    long applied = db_long(pg, q);
    ck_assert_int_ge(applied, NEVENTS - 4 * 256); /* at most a few batches late */
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM status.slot_status_events WHERE lot_id = '%s' AND applied"
             " AND previous <> status",
             lot);
    long changes = db_long(pg, q);
    snprintf(q, sizeof(q), "SELECT count(*) FROM status.slot_status_history WHERE lot_id = '%s'",
             lot);
    ck_assert_int_eq(db_long(pg, q), changes);
    /* each slot at its newest event: the last round (NEVENTS / NSLOT - 1) is odd: FREE */
    snprintf(q, sizeof(q),
             "SELECT count(*) FROM status.slot_status WHERE lot_id = '%s' AND status = 1"
             " AND sequence >= %d",
             lot, NEVENTS - NSLOT);
    ck_assert_int_eq(db_long(pg, q), NSLOT);
    /* the outbox drains: each change in SP_SLOT_STATUS once */
    snprintf(q, sizeof(q), "SELECT count(*) FROM status.outbox");
    for (int i = 0; i < 600 && db_long(pg, q) > 0; i++)
        usleep(100 * 1000);
    ck_assert_int_eq(db_long(pg, q), 0);
    PQfinish(pg);
    ck_assert_int_eq(stream_count(), changes); /* each change once */
    free(est);
    free(lot);
    tenant_free(&t);
}
END_TEST

static Suite *crash_suite(void)
{
    Suite *s = suite_create("projection_crash");
    TCase *tc = tcase_create("crash");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, projection_killed_mid_ingest_loses_and_repeats_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    start_every_service("projection_crash", NULL, &PROJECTION);
    return run_suite_as_admin(crash_suite(), NULL);
}
