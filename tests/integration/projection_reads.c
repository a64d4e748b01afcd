/* projection_reads.c -- what the projection answers on sp.status.v1.* beyond the slots'
 * statuses, and the snapshots it keeps in Redis for the public reads, on real NATS,
 * PostgreSQL and Redis with every service running: a lot's status with every active slot
 * (never-reported ones UNKNOWN), an establishment's counts over all its lots, both
 * following the cameras' events and the catalog's changes into Redis; a slot's history
 * newest first in pages, tenant-scoped; a lot's occupancy series against one computed by
 * hand. Called as the gateway and services call it (spctl's connection, the caller's role
 * in the request's context). */
#include <libpq-fe.h>
#include <math.h>

#include "bus_fixture.h"
#include "camera_fixture.h"
#include "sp/status/v1/status.pb-c.h"
#include "spredis.h"

static tenant T, OTHER;
static natsConnection *NC;
static spredis *RD;

typedef Sp__Status__V1__LotStatusReply lot_doc;
typedef Sp__Status__V1__EstablishmentStatusReply est_doc;

static bus_result status_call(const char *method, const char *role, const char *client,
                              const ProtobufCMessage *in, const ProtobufCMessageDescriptor *out)
{
    char subject[96];
    snprintf(subject, sizeof(subject), "sp.status.v1.%s", method);
    return bus_request(NC, subject, role, client, in, out);
}

static bus_result lot_status(const char *lot)
{
    Sp__Status__V1__GetLotStatusRequest in = SP__STATUS__V1__GET_LOT_STATUS_REQUEST__INIT;
    in.lot_id = (char *)lot;
    return status_call("GetLotStatus", NULL, NULL, &in.base,
                       &sp__status__v1__lot_status_reply__descriptor);
}

static bus_result est_status(const char *est)
{
    Sp__Status__V1__GetEstablishmentStatusRequest in =
        SP__STATUS__V1__GET_ESTABLISHMENT_STATUS_REQUEST__INIT;
    in.establishment_id = (char *)est;
    return status_call("GetEstablishmentStatus", NULL, NULL, &in.base,
                       &sp__status__v1__establishment_status_reply__descriptor);
}

/* The snapshot at 'key' unpacked with 'desc', or NULL when there is none. */
static ProtobufCMessage *snapshot(const char *prefix, const char *id,
                                  const ProtobufCMessageDescriptor *desc)
{
    char key[160];
    snprintf(key, sizeof(key), "%s%s", prefix, id);
    redisReply *rr = NULL;
    ck_assert_int_eq(spredis_cmd(&rr, RD, "GET", key, NULL), SP_OK);
    ProtobufCMessage *m = NULL;
    if (rr->type == REDIS_REPLY_STRING) {
        m = protobuf_c_message_unpack(desc, NULL, rr->len, (const uint8_t *)rr->str);
        ck_assert_ptr_nonnull(m);
    }
    freeReplyObject(rr);
    return m;
}

static bool counts_are(const Sp__Status__V1__Availability *a, int free_n, int occupied, int unknown)
{
    return a != NULL && a->free == free_n && a->occupied == occupied && a->unknown == unknown &&
           a->total == free_n + occupied + unknown;
}

/* Waits up to 5 s for the lot's snapshot in Redis to hold these counts. */
static void lot_snapshot_becomes_(int line, const char *lot, int free_n, int occupied, int unknown)
{
    bool ok = false;
    for (int i = 0; i < 100 && !ok; i++) {
        lot_doc *d = (lot_doc *)snapshot("sp:status:lot:", lot,
                                         &sp__status__v1__lot_status_reply__descriptor);
        ok = d != NULL && counts_are(d->availability, free_n, occupied, unknown);
        if (d != NULL) protobuf_c_message_free_unpacked(&d->base, NULL);
        if (!ok) usleep(50 * 1000);
    }
    ck_assert_msg(ok, "line %d: lot snapshot never held %d/%d/%d", line, free_n, occupied, unknown);
}
#define LOT_SNAPSHOT_BECOMES(l, f, o, u) lot_snapshot_becomes_(__LINE__, l, f, o, u)

static void est_snapshot_becomes_(int line, const char *est, int free_n, int occupied, int unknown,
                                  size_t lots)
{
    bool ok = false;
    for (int i = 0; i < 100 && !ok; i++) {
        est_doc *d = (est_doc *)snapshot("sp:status:establishment:", est,
                                         &sp__status__v1__establishment_status_reply__descriptor);
        ok = d != NULL && d->n_lots == lots &&
             counts_are(d->availability, free_n, occupied, unknown);
        if (d != NULL) protobuf_c_message_free_unpacked(&d->base, NULL);
        if (!ok) usleep(50 * 1000);
    }
    ck_assert_msg(ok, "line %d: establishment snapshot never held %d/%d/%d in %zu lots", line,
                  free_n, occupied, unknown, lots);
}
#define EST_SNAPSHOT_BECOMES(e, f, o, u, n) est_snapshot_becomes_(__LINE__, e, f, o, u, n)

/* Posts one item as the site's camera at an absolute time (us since the epoch). */
static void post_at(const site *s, const char *slot, const char *status, int64_t at_us)
{
    char at[40], base[32];
    time_t sec = (time_t)(at_us / 1000000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(at, sizeof(at), "%s.%03dZ", base, (int)(at_us % 1000000 / 1000));
    char *it = item(slot, status, at, NULL);
    char *b = batch(s, it);
    sptest_resp *r = post_events(s, AUTH_KEY, b);
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    free(it);
    free(b);
}

static long history_rows(const char *slot)
{
    PGconn *pg = PQconnectdb(E->db_url);
    ck_assert_int_eq(PQstatus(pg), CONNECTION_OK);
    const char *p[] = {slot};
    PGresult *res =
        PQexecParams(pg, "SELECT count(*) FROM status.slot_status_history WHERE slot_id = $1::uuid",
                     1, NULL, p, NULL, NULL, 0);
    ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
    long n = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(pg);
    return n;
}

static void wait_history(const char *slot, long want)
{
    long n = -1;
    for (int i = 0; i < 100 && n != want; i++) {
        n = history_rows(slot);
        if (n != want) usleep(50 * 1000);
    }
    ck_assert_int_eq(n, want);
}

static void patch(const char *path, const char *body)
{
    sptest_resp_free(MUST("PATCH", path, ADMIN, body, 200));
}

/* ---- lot and establishment status --------------------------------------------------------- */

START_TEST(lot_status_lists_every_active_slot_and_redis_follows)
{
    site s = new_site(&T);
    bus_result r = lot_status(s.lot);
    ck_assert_str_eq(r.code, "");
    lot_doc *d = (lot_doc *)r.out;
    ck_assert_str_eq(d->lot_id, s.lot);
    ck_assert_str_eq(d->client_id, T.id);
    ck_assert_str_eq(d->establishment_id, s.est);
    ck_assert_ptr_nonnull(d->lot_code);
    ck_assert_uint_eq(d->n_slots, NSLOTS); /* A9 is inactive */
    for (size_t i = 0; i < d->n_slots; i++) {
        char code[24];
        snprintf(code, sizeof(code), "A%zu", i + 1);
        ck_assert_str_eq(d->slots[i]->slot_code, code);
        ck_assert_str_eq(d->slots[i]->slot_type, "regular");
        ck_assert_str_eq(d->slots[i]->status, "UNKNOWN");
        ck_assert(!d->slots[i]->has_changed_at);
        ck_assert_ptr_null(d->slots[i]->vehicle);
    }
    ck_assert(counts_are(d->availability, 0, 0, NSLOTS));
    bus_result_free(&r);
    LOT_SNAPSHOT_BECOMES(s.lot, 0, 0, NSLOTS); /* the read wrote it */

    char at[40];
    iso_at(at, sizeof(at), -200);
    char items[512];
    snprintf(
        items, sizeof(items),
        "{\"slotCode\":\"A1\",\"status\":\"OCCUPIED\",\"vehicle\":\"car\",\"occurredAt\":\"%s\"},"
        "{\"slotCode\":\"A2\",\"status\":\"FREE\",\"occurredAt\":\"%s\"}",
        at, at);
    char *b = batch(&s, items);
    sptest_resp *pr = post_events(&s, AUTH_KEY, b);
    EXPECT_COUNTS(pr, 2, 0, 0);
    sptest_resp_free(pr);
    free(b);
    LOT_SNAPSHOT_BECOMES(s.lot, 1, 1, NSLOTS - 2);
    r = lot_status(s.lot);
    d = (lot_doc *)r.out;
    ck_assert(counts_are(d->availability, 1, 1, NSLOTS - 2));
    ck_assert_str_eq(d->slots[0]->status, "OCCUPIED");
    ck_assert_str_eq(d->slots[0]->vehicle, "car");
    ck_assert(d->slots[0]->has_changed_at && d->slots[1]->has_changed_at);
    ck_assert_str_eq(d->slots[1]->status, "FREE");
    ck_assert(d->has_updated_at);
    bus_result_free(&r);

    /* a slot deactivated in the catalog leaves the counts */
    char path[160];
    snprintf(path, sizeof(path), "/v1/slots/%s", s.slot[4]);
    patch(path, "{\"active\":false}");
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) {
        r = lot_status(s.lot);
        gone = ((lot_doc *)r.out)->n_slots == NSLOTS - 1 &&
               counts_are(((lot_doc *)r.out)->availability, 1, 1, NSLOTS - 3);
        bus_result_free(&r);
        if (!gone) usleep(50 * 1000);
    }
    ck_assert_msg(gone, "the deactivated slot is still counted");
    LOT_SNAPSHOT_BECOMES(s.lot, 1, 1, NSLOTS - 3);

    r = lot_status("0b7e8c55-1d1e-4a57-9d6e-2f0a3c4b5d6e");
    ck_assert_str_eq(r.code, "not_found");
    r = lot_status("not-a-uuid");
    ck_assert_str_eq(r.code, "not_found");
    site_free(&s);
}
END_TEST

START_TEST(establishment_status_counts_every_live_lot)
{
    site s = new_site(&T);
    char code[24];
    fresh(code, sizeof(code), "EB", 20);
    char *lot2 = new_lot(s.est, code, "\"name\":\"Roof\"");
    free(new_slot(lot2, "B1"));
    free(new_slot(lot2, "B2"));

    bus_result r = est_status(s.est);
    ck_assert_str_eq(r.code, "");
    est_doc *d = (est_doc *)r.out;
    ck_assert_str_eq(d->establishment_id, s.est);
    ck_assert_str_eq(d->client_id, T.id);
    ck_assert_uint_eq(d->n_lots, 2); /* the roof never reported: counted all the same */
    ck_assert(counts_are(d->availability, 0, 0, NSLOTS + 2));
    for (size_t i = 0; i < d->n_lots; i++) {
        bool roof = strcmp(d->lots[i]->lot_id, lot2) == 0;
        ck_assert(roof || strcmp(d->lots[i]->lot_id, s.lot) == 0);
        ck_assert(counts_are(d->lots[i]->availability, 0, 0, roof ? 2 : NSLOTS));
        if (roof) ck_assert_str_eq(d->lots[i]->name, "Roof");
        if (roof) ck_assert_str_eq(d->lots[i]->lot_code, code);
    }
    bus_result_free(&r);

    post_one(&s, "A3", "OCCUPIED", -100);
    EST_SNAPSHOT_BECOMES(s.est, 0, 1, NSLOTS + 1, 2);

    char path[160];
    snprintf(path, sizeof(path), "/v1/lots/%s", lot2);
    sptest_resp_free(MUST("DELETE", path, ADMIN, NULL, 204));
    bool gone = false;
    for (int i = 0; i < 100 && !gone; i++) {
        r = est_status(s.est);
        gone = ((est_doc *)r.out)->n_lots == 1 &&
               counts_are(((est_doc *)r.out)->availability, 0, 1, NSLOTS - 1);
        bus_result_free(&r);
        if (!gone) usleep(50 * 1000);
    }
    ck_assert_msg(gone, "the deleted lot is still counted");
    EST_SNAPSHOT_BECOMES(s.est, 0, 1, NSLOTS - 1, 1);

    r = est_status("0b7e8c55-1d1e-4a57-9d6e-2f0a3c4b5d6e");
    ck_assert_str_eq(r.code, "not_found");
    free(lot2);
    site_free(&s);
}
END_TEST

/* ---- history --------------------------------------------------------------------------------- */

static bus_result history(const char *role, const char *client, const char *slot, int limit,
                          const char *cursor, int64_t from, int64_t to)
{
    Sp__Status__V1__GetSlotHistoryRequest in = SP__STATUS__V1__GET_SLOT_HISTORY_REQUEST__INIT;
    in.slot_id = (char *)slot;
    in.has_limit = limit > 0;
    in.limit = limit;
    in.cursor = (char *)cursor;
    in.has_from = from > 0;
    in.from = from;
    in.has_to = to > 0;
    in.to = to;
    return status_call("GetSlotHistory", role, client, &in.base,
                       &sp__status__v1__list_slot_history_reply__descriptor);
}

START_TEST(slot_history_pages_newest_first_in_the_callers_scope)
{
    site s = new_site(&T);
    int64_t now = sp_now_us(), at[5];
    static const char *const st[] = {"OCCUPIED", "FREE", "OCCUPIED", "FREE", "OCCUPIED"};
    for (int i = 0; i < 5; i++) {
        at[i] = now - (int64_t)(5 - i) * 1000000;
        post_at(&s, "A1", st[i], at[i]);
    }
    wait_history(s.slot[0], 5);

    /* an admin pages through it, newest first */
    Sp__Status__V1__SlotHistoryItem *seen[5];
    size_t n = 0;
    char *cursor = NULL;
    bus_result pages[3];
    for (int p = 0; p < 3; p++) {
        pages[p] = history("admin", NULL, s.slot[0], 2, cursor, 0, 0);
        ck_assert_str_eq(pages[p].code, "");
        const Sp__Status__V1__ListSlotHistoryReply *h = (const void *)pages[p].out;
        ck_assert_uint_eq(h->n_items, p < 2 ? 2 : 1);
        for (size_t i = 0; i < h->n_items; i++)
            seen[n++] = h->items[i];
        cursor = h->next_cursor;
        ck_assert(p < 2 ? cursor != NULL : cursor == NULL || cursor[0] == '\0');
    }
    ck_assert_uint_eq(n, 5);
    for (size_t i = 0; i < 5; i++) {
        const Sp__Status__V1__SlotHistoryItem *it = seen[i];
        ck_assert_str_eq(it->status, st[4 - i]);
        ck_assert_str_eq(it->previous_status, i == 4 ? "UNKNOWN" : st[3 - i]);
        ck_assert_int_eq(it->occurred_at, at[4 - i] / 1000 * 1000);
        ck_assert_str_eq(it->camera_id, s.cam);
        ck_assert_ptr_nonnull(it->event_id);
        ck_assert(it->recorded_at >= it->occurred_at);
    }
    for (int p = 0; p < 3; p++)
        bus_result_free(&pages[p]);

    /* from (inclusive) and to (exclusive): the 2nd and 3rd changes */
    bus_result r =
        history("admin", NULL, s.slot[0], 0, NULL, at[1] / 1000 * 1000, at[3] / 1000 * 1000);
    ck_assert_str_eq(r.code, "");
    const Sp__Status__V1__ListSlotHistoryReply *h = (const void *)r.out;
    ck_assert_uint_eq(h->n_items, 2);
    ck_assert_str_eq(h->items[0]->status, st[2]);
    ck_assert_str_eq(h->items[1]->status, st[1]);
    bus_result_free(&r);

    /* its own client_admin sees it; another tenant's gets 404, an app user 403 */
    r = history("client_admin", T.id, s.slot[0], 1, NULL, 0, 0);
    ck_assert_str_eq(r.code, "");
    bus_result_free(&r);
    r = history("client_admin", OTHER.id, s.slot[0], 1, NULL, 0, 0);
    ck_assert_str_eq(r.code, "not_found");
    r = history("app_user", NULL, s.slot[0], 1, NULL, 0, 0);
    ck_assert_str_eq(r.code, "forbidden");
    r = history(NULL, NULL, s.slot[0], 1, NULL, 0, 0);
    ck_assert_str_eq(r.code, "unauthenticated");
    r = history("admin", NULL, s.slot[0], 1, "bogus", 0, 0);
    ck_assert_str_eq(r.code, "validation_failed");
    r = history("admin", NULL, s.slot[0], 1, NULL, at[3], at[1]);
    ck_assert_str_eq(r.code, "validation_failed");
    ck_assert_ptr_nonnull(strstr(r.fields, "from="));
    r = history("admin", NULL, "0b7e8c55-1d1e-4a57-9d6e-2f0a3c4b5d6e", 1, NULL, 0, 0);
    ck_assert_str_eq(r.code, "not_found");

    /* a slot of a lot no event ever came to: loaded on demand, no history */
    site quiet = new_site(&T);
    r = history("admin", NULL, quiet.slot[0], 0, NULL, 0, 0);
    ck_assert_str_eq(r.code, "");
    ck_assert_uint_eq(((const Sp__Status__V1__ListSlotHistoryReply *)r.out)->n_items, 0);
    bus_result_free(&r);
    r = history("client_admin", OTHER.id, quiet.slot[0], 0, NULL, 0, 0);
    ck_assert_str_eq(r.code, "not_found");
    site_free(&quiet);
    site_free(&s);
}
END_TEST

/* ---- occupancy ------------------------------------------------------------------------------- */

static bus_result occupancy(const char *role, const char *client, const char *lot, int64_t from,
                            int64_t to, const char *bucket)
{
    Sp__Status__V1__GetOccupancyRequest in = SP__STATUS__V1__GET_OCCUPANCY_REQUEST__INIT;
    in.lot_id = (char *)lot;
    in.has_from = from > 0;
    in.from = from;
    in.has_to = to > 0;
    in.to = to;
    in.bucket = (char *)bucket;
    return status_call("GetOccupancy", role, client, &in.base,
                       &sp__status__v1__occupancy_reply__descriptor);
}

#define S_US INT64_C(1000000)

START_TEST(occupancy_series_matches_the_hand_computed_one)
{
    site s = new_site(&T);
    /* t0: a 5-minute boundary half an hour ago; A3 FREE before it, A1 occupied from +60 s
     * to +240 s, A2 from +120 s on, A4 and A5 never reported */
    int64_t t0 = (sp_now_us() / (300 * S_US) - 6) * 300 * S_US;
    post_at(&s, "A3", "FREE", t0 - 600 * S_US);
    post_at(&s, "A1", "OCCUPIED", t0 + 60 * S_US);
    post_at(&s, "A2", "OCCUPIED", t0 + 120 * S_US);
    post_at(&s, "A1", "FREE", t0 + 240 * S_US);
    wait_history(s.slot[0], 2);
    wait_history(s.slot[1], 1);
    wait_history(s.slot[2], 1);

    /* from 10 s after t0: the buckets still start on the boundary */
    bus_result r = occupancy("admin", NULL, s.lot, t0 + 10 * S_US, t0 + 900 * S_US, "5m");
    ck_assert_str_eq(r.code, "");
    const Sp__Status__V1__OccupancyReply *o = (const void *)r.out;
    ck_assert_str_eq(o->bucket, "5m");
    ck_assert_uint_eq(o->n_points, 3);
    /* occupied slot-seconds over 5 slots x 300 s: (180 + 180) / 1500, then 300 / 1500 */
    static const double want[] = {0.24, 0.2, 0.2};
    for (size_t i = 0; i < 3; i++) {
        const Sp__Status__V1__OccupancyPoint *p = o->points[i];
        ck_assert_int_eq(p->at, t0 + (int64_t)i * 300 * S_US);
        ck_assert_msg(fabs(p->occupancy - want[i]) < 1e-6, "bucket %zu: %f, not %f", i,
                      p->occupancy, want[i]);
        ck_assert_int_eq(p->occupied, 1);
        ck_assert_int_eq(p->free, 2);
        ck_assert_int_eq(p->unknown, 2);
    }
    bus_result_free(&r);

    /* its own client_admin may ask; another tenant's gets 404 */
    r = occupancy("client_admin", T.id, s.lot, t0, t0 + 900 * S_US, "1h");
    ck_assert_str_eq(r.code, "");
    o = (const void *)r.out;
    ck_assert_uint_le(o->n_points, 2);
    bus_result_free(&r);

    r = occupancy("client_admin", OTHER.id, s.lot, t0, t0 + 900 * S_US, "5m");
    ck_assert_str_eq(r.code, "not_found");
    r = occupancy("admin", NULL, s.lot, t0, t0 + 900 * S_US, "2h");
    ck_assert_str_eq(r.code, "validation_failed");
    ck_assert_ptr_nonnull(strstr(r.fields, "bucket="));
    r = occupancy("admin", NULL, s.lot, t0 - 30 * 86400 * S_US, t0, "5m");
    ck_assert_str_eq(r.code, "validation_failed");
    r = occupancy("admin", NULL, s.lot, t0, t0 - S_US, "5m");
    ck_assert_str_eq(r.code, "validation_failed");
    /* the default: the last 24 h in hours */
    r = occupancy("admin", NULL, s.lot, 0, 0, NULL);
    ck_assert_str_eq(r.code, "");
    o = (const void *)r.out;
    ck_assert_str_eq(o->bucket, "1h");
    ck_assert_uint_ge(o->n_points, 24);
    ck_assert_uint_le(o->n_points, 25);
    bus_result_free(&r);
    site_free(&s);
}
END_TEST

static void setup(void)
{
    T = new_tenant("readsT", true, false);
    OTHER = new_tenant("readsO", true, false);
    NC = bus_connect_as(E, "spctl", "SP_NATS_SPCTL_PASSWORD");
    ck_assert_int_eq(spredis_create(&RD, E->redis_url, 2000), SP_OK);
}

static void teardown(void)
{
    spredis_destroy(RD);
    RD = NULL;
    natsConnection_Destroy(NC);
    NC = NULL;
    tenant_free(&T);
    tenant_free(&OTHER);
}

static Suite *reads_suite(void)
{
    Suite *s = suite_create("projection_reads");
    TCase *tc = tcase_create("reads");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, lot_status_lists_every_active_slot_and_redis_follows);
    tcase_add_test(tc, establishment_status_counts_every_live_lot);
    tcase_add_test(tc, slot_history_pages_newest_first_in_the_callers_scope);
    tcase_add_test(tc, occupancy_series_matches_the_hand_computed_one);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    start_every_service("projection_reads", NULL, NULL);
    return run_suite_as_admin(reads_suite(), NULL);
}
