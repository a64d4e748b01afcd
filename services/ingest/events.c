/* events.c -- SlotEvents and Heartbeat (api.md, "Ingest"): raw bus routes that take what
 * the gateway forwards (JSON) and what NATS cameras publish (protobuf), the credentials in
 * headers. The order of checks is api.md's: credentials (401) -> revoked or replayed
 * (401; 503 when Redis cannot tell) -> the body readable (415 / 400) -> the camera, enabled
 * and bound to this key (401) -> the lot (404) -> camera and lot of one client, the client
 * ACTIVE (403) -> the batch's size (400 / 413) -> each item. Accepted events go to
 * SP_EVENTS (Nats-Msg-Id = eventId) and the 202 leaves once every one of them is acked.
 * Ends with events_register(). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "spadmin.h"

#define M_EVENTS "sp_ingest_events_total"
#define M_UNKNOWN "sp_ingest_unknown_fields_total"
#define M_HEARTBEATS "sp_ingest_heartbeats_total"
#define MAX_SEQUENCE UINT64_C(9007199254740992) /* 2^53 */
#define REPLAY_TTL_S "600"                      /* twice the window: a signature never comes back */

/* ---- credentials (api.md: X-API-Key, or X-Key-Id / X-Timestamp / X-Signature) ------------ */

typedef struct {
    bool hmac;
    char key_id[ING_KEY_ID_LEN];
    const char *secret; /* X-API-Key form */
    size_t secret_len;
    const char *ts; /* HMAC form: the timestamp as sent, and the signature */
    int64_t ts_s;
    uint8_t sig[32];
    char sig_hex[65];
} cred;

static bool key_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return false;
    return true;
}

static bool key_id_ok(const char *s, size_t n)
{
    return n >= 16 && n < ING_KEY_ID_LEN && key_chars(s, n);
}

static sp_status unauthenticated(spbus_req *req, const char *message)
{
    return spsvc_fail(req, SP_ERR_UNAUTHENTICATED, message);
}

static sp_status credentials_or_reply(cred *c, spbus_req *req)
{
    memset(c, 0, sizeof(*c));
    const char *api_key = spbus_req_header(req, "X-API-Key");
    if (api_key != NULL) {
        const char *dot = strchr(api_key, '.');
        size_t n = dot != NULL ? (size_t)(dot - api_key) : 0;
        if (dot == NULL || !key_id_ok(api_key, n) || strlen(dot + 1) != 43 ||
            !key_chars(dot + 1, 43))
            return unauthenticated(req, "X-API-Key is not <keyId>.<secret>");
        memcpy(c->key_id, api_key, n);
        c->secret = dot + 1;
        c->secret_len = 43;
        return SP_OK;
    }
    const char *kid = spbus_req_header(req, "X-Key-Id");
    const char *ts = spbus_req_header(req, "X-Timestamp");
    const char *sig = spbus_req_header(req, "X-Signature");
    if (kid == NULL && ts == NULL && sig == NULL)
        return unauthenticated(req, "an API key (X-API-Key) or an HMAC signature is required");
    if (kid == NULL || ts == NULL || sig == NULL)
        return unauthenticated(req, "HMAC needs X-Key-Id, X-Timestamp and X-Signature");
    if (!key_id_ok(kid, strlen(kid))) return unauthenticated(req, "invalid X-Key-Id");
    size_t tn = strlen(ts);
    if (tn == 0 || tn > 12 || strspn(ts, "0123456789") != tn)
        return unauthenticated(req, "X-Timestamp is not unix seconds");
    if (strlen(sig) != 64 || spcrypto_hex_decode(c->sig, sizeof(c->sig), sig, 64) != 32)
        return unauthenticated(req, "X-Signature is not 64 hex digits");
    c->hmac = true;
    snprintf(c->key_id, sizeof(c->key_id), "%s", kid);
    c->ts = ts;
    c->ts_s = strtoll(ts, NULL, 10);
    spcrypto_hex(c->sig_hex, c->sig, 32);
    return SP_OK;
}

/* The secret (or the signature over timestamp + "\n" + the payload as received) against
 * the key; then, in one round trip to Redis, that the key is not revoked (the set catalog
 * writes before a revocation returns) and, for HMAC, that the signature is new. */
static const char REDIS_CHECK[] =
    "if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end "
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end "
    "if ARGV[2] ~= '' and not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[2]) then "
    "return 2 end return 0";

static sp_status verify_or_reply(spbus_req *req, const cred *c, const ing_key *k)
{
    if (!k->exists) return unauthenticated(req, "unknown API key");
    if (!c->hmac) {
        uint8_t h[32];
        spcrypto_sha256(h, c->secret, c->secret_len);
        if (!spcrypto_ct_equal(h, k->sha256, 32)) return unauthenticated(req, "invalid API key");
    } else {
        int64_t now = sp_now_us() / 1000000;
        if (c->ts_s > now + ING_WINDOW_S || c->ts_s < now - ING_WINDOW_S)
            return unauthenticated(req,
                                   "X-Timestamp is more than 300 s away from the server clock");
        size_t len = 0, tn = strlen(c->ts);
        const void *body = spbus_req_payload(req, &len);
        uint8_t *msg = sp_arena_alloc(spbus_req_arena(req), tn + 1 + len);
        if (msg == NULL) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
        memcpy(msg, c->ts, tn);
        msg[tn] = '\n';
        memcpy(msg + tn + 1, body, len);
        uint8_t mac[32];
        spcrypto_hmac_sha256(mac, k->secret, k->secret_len, msg, tn + 1 + len);
        if (!spcrypto_ct_equal(mac, c->sig, 32)) return unauthenticated(req, "invalid signature");
    }
    if (k->revoked) return unauthenticated(req, "API key revoked");

    spredis *r = spsvc_redis(req);
    char replay[ING_KEY_ID_LEN + 96];
    snprintf(replay, sizeof(replay), "sp:ingest:sig:%s:%s", c->key_id, c->sig_hex);
    const char *argv[] = {"EVAL",
                          REDIS_CHECK,
                          "3",
                          "sp:api-keys:revoked",
                          "sp:api-keys:revoked:loaded",
                          replay,
                          c->key_id,
                          c->hmac ? REPLAY_TTL_S : ""};
    size_t lens[8];
    for (int i = 0; i < 8; i++)
        lens[i] = strlen(argv[i]);
    redisReply *rr = NULL;
    sp_status s = r != NULL ? spredis_command(&rr, r, 8, argv, lens) : SP_ERR_UNAVAILABLE;
    long long v = s == SP_OK && rr->type == REDIS_REPLY_INTEGER ? rr->integer : -2;
    if (rr != NULL) freeReplyObject(rr);
    switch (v) {
    case 0:
        return SP_OK;
    case 1:
        return unauthenticated(req, "API key revoked");
    case 2:
        return unauthenticated(req, "signature already used (replay)");
    default: /* Redis down, or its set of revoked keys not known to be complete */
        sp_log_warn(spbus_req_id(req), "revocations_unknown", "keyId", c->key_id);
        spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE, "cannot check the key's revocation now",
                                1);
        return SP_ERR_UNAVAILABLE;
    }
}

/* After the key's checks and the body: the camera of the body's hardware code, known,
 * enabled and bound to this key (*cam), else 401 replied. */
static sp_status camera_or_reply(ing_key *key, ing_camera *cam, spbus_req *req, const cred *c,
                                 const char *hardware_code)
{
    ing_svc *g = ing_of(req);
    sp_status s = ing_model_device(g->model, req, c->key_id, hardware_code, key, cam);
    if (s != SP_OK) {
        spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE, "catalog did not answer", 1);
        return s;
    }
    if (!cam->exists || !cam->enabled || strcmp(cam->key_id, key->key_id) != 0)
        return unauthenticated(req, "no enabled camera of that hardwareCode uses this key");
    return SP_OK;
}

static sp_status key_or_reply(ing_key *key, spbus_req *req, const cred *c)
{
    ing_camera none;
    sp_status s = ing_model_device(ing_of(req)->model, req, c->key_id, NULL, key, &none);
    if (s != SP_OK) {
        spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE, "catalog did not answer", 1);
        return s;
    }
    return verify_or_reply(req, c, key);
}

/* The client of the camera must be ACTIVE (403 client_suspended otherwise). */
static sp_status client_active_or_reply(spbus_req *req, const char *client_id)
{
    char status[16];
    if (ing_model_client(ing_of(req)->model, req, client_id, status) != SP_OK) {
        spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE, "tenancy did not answer", 1);
        return SP_ERR_UNAVAILABLE;
    }
    if (strcmp(status, "ACTIVE") == 0) return SP_OK;
    return spsvc_fail(req, SP_ERR_CLIENT_SUSPENDED, "the camera's client is not active");
}

/* ---- items -------------------------------------------------------------------------------- */

static int vehicle_of(const char *v)
{
    if (v == NULL || strcmp(v, "none") == 0) return 0;
    if (strcmp(v, "car") == 0) return 1;
    if (strcmp(v, "moto") == 0 || strcmp(v, "motorcycle") == 0) return 2;
    if (strcmp(v, "truck") == 0) return 3;
    return -1;
}

/* The rejection code of an item (api.md's order), or NULL with *ev filled. */
static const char *check_item(Sp__Ingest__V1__SlotEvent *ev,
                              const Sp__Ingest__V1__SlotEventItem *it, unsigned bad,
                              const ing_lot *lot, const ing_camera *cam, int64_t now_us,
                              sp_arena *a)
{
    const ing_slot *slot = NULL;
    if ((bad & (ING_F_NOT_OBJECT | ING_F_SLOT_CODE)) || it->slot_code == NULL ||
        (slot = sp_map_get(lot->slots, it->slot_code)) == NULL)
        return "unknown_slot";
    if (!slot->active) return "inactive_slot";
    int status = 0;
    if (!(bad & ING_F_STATUS) && it->status != NULL)
        status = strcmp(it->status, "FREE") == 0 ? 1 : strcmp(it->status, "OCCUPIED") == 0 ? 2 : 0;
    if (status == 0) return "invalid_status";
    int vehicle = (bad & ING_F_VEHICLE) ? -1 : vehicle_of(it->vehicle);
    if (vehicle < 0) return "invalid_vehicle";
    int64_t occ = 0;
    if ((bad & ING_F_OCCURRED_AT) || it->occurred_at == NULL ||
        sp_time_parse(&occ, it->occurred_at) != SP_OK)
        return "invalid_timestamp";
    if (occ > now_us + (int64_t)ING_WINDOW_S * 1000000) return "future_timestamp";
    if ((bad & ING_F_EVENT_ID) || (it->event_id != NULL && !spcrypto_uuid_valid(it->event_id)))
        return "invalid_event_id";
    if ((bad & ING_F_SEQUENCE) || (it->has_sequence && it->sequence > MAX_SEQUENCE))
        return "invalid_sequence";
    if ((bad & ING_F_CONFIDENCE) ||
        (it->has_confidence &&
         (!isfinite(it->confidence) || it->confidence < 0 || it->confidence > 1)))
        return "invalid_confidence";

    char *id = sp_arena_alloc(a, SPCRYPTO_UUID_LEN);
    if (id == NULL) return "unknown_slot"; /* out of memory: refused, never half made */
    if (it->event_id != NULL) {
        for (int i = 0; i < 36; i++)
            id[i] = (char)tolower((unsigned char)it->event_id[i]);
        id[36] = '\0';
    } else {
        char *name = sp_arena_printf(a, "%s|%s|%s|%s|%s", cam->id, lot->id, it->slot_code,
                                     it->occurred_at, it->status);
        if (name == NULL || spcrypto_uuid_v5(id, ING_EVENT_NS, name, strlen(name)) != SP_OK)
            return "unknown_slot";
    }
    ev->event_id = id;
    ev->client_id = (char *)lot->client_id;
    ev->establishment_id = (char *)lot->establishment_id;
    ev->lot_id = (char *)lot->id;
    ev->slot_id = (char *)slot->id;
    ev->slot_code = it->slot_code;
    ev->camera_id = (char *)cam->id;
    ev->has_status = ev->has_vehicle = ev->has_occurred_at = ev->has_sequence = 1;
    ev->has_received_at = 1;
    ev->status = status;
    ev->vehicle = vehicle;
    ev->occurred_at = occ;
    ev->sequence = it->has_sequence ? it->sequence : 0;
    ev->received_at = now_us;
    ev->has_confidence = it->has_confidence;
    ev->confidence = it->confidence;
    return NULL;
}

/* The message of a per-item rejection code. */
static const char *reason_of(const char *code)
{
    static const char *const reasons[][2] = {
        {"unknown_slot", "no live slot of this slotCode in the lot"},
        {"inactive_slot", "the slot is inactive"},
        {"invalid_status", "status must be FREE or OCCUPIED"},
        {"invalid_vehicle", "vehicle must be none, car, moto or truck"},
        {"invalid_timestamp", "occurredAt must be an RFC 3339 time"},
        {"future_timestamp", "occurredAt is more than 300 s ahead of the server clock"},
        {"invalid_event_id", "eventId must be a UUID"},
        {"invalid_sequence", "sequence must be a whole number 0..2^53"},
        {"invalid_confidence", "confidence must be a number 0..1"},
    };
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(reasons[i][0], code) == 0) return reasons[i][1];
    return code;
}

/* Publishes msgs[0..n) to SP_EVENTS on this worker's batch context: SP_OK once every one is
 * acked (*dups: repeats the stream recognised), else 503 replied. */
static sp_status publish_or_reply(spbus_req *req, spbus_js_msg_out *msgs, size_t n, size_t *dups)
{
    ing_svc *g = ing_of(req);
    int w = spbus_req_worker(req);
    *dups = 0;
    if (g->js[w] == NULL &&
        spbus_js_batch_create(&g->js[w], spsvc_bus(spsvc_of(req)), w) != SP_OK) {
        spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE, "the event stream is not reachable", 1);
        return SP_ERR_UNAVAILABLE;
    }
    int64_t left_ms =
        spbus_req_remaining_us(req) / 1000 - 100; /* answer before the caller gives up */
    int wait_ms = left_ms < ING_PUBLISH_MS ? (int)left_ms : ING_PUBLISH_MS;
    sp_status s =
        wait_ms > 0 ? spbus_js_publish_all(g->js[w], msgs, n, dups, wait_ms) : SP_ERR_UNAVAILABLE;
    if (s == SP_OK) return SP_OK;
    spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE,
                            "the event stream did not store the batch: retry it as it is", 1);
    return SP_ERR_UNAVAILABLE;
}

/* Every item refused: 400 naming each (api.md). */
static sp_status all_rejected_reply(spbus_req *req, Sp__Ingest__V1__Rejected **rej, size_t n)
{
    sp_arena *a = spbus_req_arena(req);
    Sp__V1__FieldError **fields = sp_arena_alloc(a, n * sizeof(Sp__V1__FieldError *));
    Sp__V1__FieldError *fe = sp_arena_alloc(a, n * sizeof(*fe));
    if (fields == NULL || fe == NULL) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    for (size_t i = 0; i < n; i++) {
        sp__v1__field_error__init(&fe[i]);
        fe[i].path = sp_arena_printf(a, "items[%d]", rej[i]->index);
        fe[i].reason = rej[i]->code;
        fields[i] = &fe[i];
    }
    spbus_reply_error_fields(req, SP_ERR_VALIDATION_FAILED, "every item was rejected", fields, n);
    return SP_ERR_VALIDATION_FAILED;
}

static void count_unknown(long n)
{
    if (n > 0) spadmin_counter_add(M_UNKNOWN, NULL, (double)n);
}

static sp_status slot_events(spbus_req *req)
{
    sp_arena *a = spbus_req_arena(req);
    cred c;
    ing_key key;
    ing_camera cam;
    ing_events_in in;
    ing_lot *lot = NULL;
    if (credentials_or_reply(&c, req) != SP_OK || key_or_reply(&key, req, &c) != SP_OK ||
        ing_decode_events_or_reply(&in, req) != SP_OK ||
        camera_or_reply(&key, &cam, req, &c, in.batch->hardware_code) != SP_OK)
        return SP_OK;
    count_unknown(in.unknown_fields);
    const Sp__Ingest__V1__SlotEventsRequest *b = in.batch;
    if (!spcrypto_uuid_valid(b->lot_id)) return spsvc_fail(req, SP_ERR_NOT_FOUND, "lot not found");
    if (ing_model_lot(ing_of(req)->model, req, b->lot_id, &lot) != SP_OK) {
        spbus_reply_error_retry(req, SP_ERR_UNAVAILABLE, "catalog did not answer", 1);
        return SP_OK;
    }
    if (lot == NULL) return spsvc_fail(req, SP_ERR_NOT_FOUND, "lot not found");
    sp_status s = SP_OK;
    if (strcmp(lot->client_id, cam.client_id) != 0) {
        s = spsvc_fail(req, SP_ERR_FORBIDDEN, "the lot is not of the camera's client");
    } else if (client_active_or_reply(req, cam.client_id) != SP_OK) {
        s = SP_ERR_FORBIDDEN;
    } else if (b->n_items == 0) {
        spbus_reply_error(req, SP_ERR_VALIDATION_FAILED, "invalid request body", "items",
                          "1..1000 items required", NULL);
        s = SP_ERR_VALIDATION_FAILED;
    } else if (b->n_items > ING_MAX_ITEMS) {
        s = spsvc_fail(req, SP_ERR_PAYLOAD_TOO_LARGE, "a batch holds at most 1,000 items");
    }
    if (s != SP_OK) {
        ing_lot_release(lot);
        return SP_OK;
    }

    size_t n = b->n_items, nok = 0, nrej = 0;
    Sp__Ingest__V1__SlotEvent *evs = sp_arena_alloc(a, n * sizeof(*evs));
    spbus_js_msg_out *msgs = sp_arena_alloc(a, n * sizeof(*msgs));
    Sp__Ingest__V1__Rejected **rej = sp_arena_alloc(a, n * sizeof(Sp__Ingest__V1__Rejected *));
    Sp__Ingest__V1__Rejected *rejs = sp_arena_alloc(a, n * sizeof(*rejs));
    char *subject = sp_arena_printf(a, "sp.events.slot.%s.%s", lot->client_id, lot->id);
    if (evs == NULL || msgs == NULL || rej == NULL || rejs == NULL || subject == NULL) {
        ing_lot_release(lot);
        return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    }
    int64_t now = sp_now_us();
    for (size_t i = 0; i < n; i++) {
        Sp__Ingest__V1__SlotEvent *ev = &evs[nok];
        sp__ingest__v1__slot_event__init(ev);
        const char *code = check_item(ev, b->items[i], in.bad[i], lot, &cam, now, a);
        if (code != NULL) {
            sp__ingest__v1__rejected__init(&rejs[nrej]);
            rejs[nrej].has_index = 1;
            rejs[nrej].index = (int32_t)i;
            rejs[nrej].code = (char *)code;
            rejs[nrej].message = (char *)reason_of(code);
            rej[nrej] = &rejs[nrej];
            nrej++;
            continue;
        }
        if (b->model != NULL) {
            ev->model_name = b->model->name;
            ev->model_version = b->model->version;
        }
        size_t len = sp__ingest__v1__slot_event__get_packed_size(ev);
        uint8_t *buf = sp_arena_alloc(a, len ? len : 1);
        if (buf == NULL) {
            ing_lot_release(lot);
            return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
        }
        sp__ingest__v1__slot_event__pack(ev, buf);
        msgs[nok] = (spbus_js_msg_out){subject, buf, len, ev->event_id};
        nok++;
    }
    ing_lot_release(lot);
    if (nok == 0) {
        spadmin_counter_add(M_EVENTS, "result=\"rejected\"", (double)nrej);
        return all_rejected_reply(req, rej, nrej);
    }
    size_t dups = 0;
    if (publish_or_reply(req, msgs, nok, &dups) != SP_OK) return SP_OK;
    spadmin_counter_add(M_EVENTS, "result=\"accepted\"", (double)(nok - dups));
    if (dups > 0) spadmin_counter_add(M_EVENTS, "result=\"duplicate\"", (double)dups);
    if (nrej > 0) spadmin_counter_add(M_EVENTS, "result=\"rejected\"", (double)nrej);

    Sp__Ingest__V1__IngestReply out = SP__INGEST__V1__INGEST_REPLY__INIT;
    out.has_accepted = out.has_duplicates = 1;
    out.accepted = (int32_t)(nok - dups);
    out.duplicates = (int32_t)dups;
    out.n_rejected = nrej;
    out.rejected = rej;
    return spbus_reply(req, &out.base);
}

static sp_status heartbeat(spbus_req *req)
{
    sp_arena *a = spbus_req_arena(req);
    cred c;
    ing_key key;
    ing_camera cam;
    Sp__Ingest__V1__HeartbeatRequest *h = NULL;
    long unknown = 0;
    if (credentials_or_reply(&c, req) != SP_OK || key_or_reply(&key, req, &c) != SP_OK ||
        ing_decode_heartbeat_or_reply(&h, req, &unknown) != SP_OK ||
        camera_or_reply(&key, &cam, req, &c, h->hardware_code) != SP_OK ||
        client_active_or_reply(req, cam.client_id) != SP_OK)
        return SP_OK;
    count_unknown(unknown);
    Sp__Ingest__V1__CameraHeartbeat hb = SP__INGEST__V1__CAMERA_HEARTBEAT__INIT;
    hb.camera_id = cam.id;
    hb.client_id = cam.client_id;
    hb.lot_id = cam.lot_id[0] ? cam.lot_id : NULL;
    hb.has_received_at = 1;
    hb.received_at = sp_now_us();
    hb.has_uptime_s = h->has_uptime_s;
    hb.uptime_s = h->uptime_s;
    hb.has_fps = h->has_fps;
    hb.fps = h->fps;
    hb.has_temperature_c = h->has_temperature_c;
    hb.temperature_c = h->temperature_c;
    hb.firmware = h->firmware;
    size_t len = sp__ingest__v1__camera_heartbeat__get_packed_size(&hb);
    uint8_t *buf = sp_arena_alloc(a, len ? len : 1);
    char *subject = sp_arena_printf(a, "sp.events.heartbeat.%s.%s", cam.client_id, cam.id);
    char id[SPCRYPTO_UUID_LEN];
    if (buf == NULL || subject == NULL) return spsvc_fail(req, SP_ERR_INTERNAL, "internal error");
    sp__ingest__v1__camera_heartbeat__pack(&hb, buf);
    spcrypto_uuid_v4(id);
    spbus_js_msg_out msg = {subject, buf, len, id};
    size_t dups = 0;
    if (publish_or_reply(req, &msg, 1, &dups) != SP_OK) return SP_OK;
    spadmin_counter_add(M_HEARTBEATS, NULL, 1);
    Sp__Ingest__V1__IngestReply out = SP__INGEST__V1__INGEST_REPLY__INIT;
    out.has_accepted = out.has_duplicates = 1;
    out.accepted = 1;
    return spbus_reply(req, &out.base);
}

/* Raw routes (in_desc NULL): the payload is the camera's, not an envelope. */
static const spbus_route routes[] = {
    {"SlotEvents", slot_events, NULL, NULL},
    {"Heartbeat", heartbeat, NULL, NULL},
};

void events_register(spsvc *kit)
{
    spadmin_metric_help(M_EVENTS, "counter",
                        "Camera events by result (accepted, duplicate, rejected)");
    spadmin_metric_help(M_UNKNOWN, "counter", "Unknown fields in camera payloads, ignored");
    spadmin_metric_help(M_HEARTBEATS, "counter", "Camera heartbeats accepted");
    SPSVC_ROUTES(kit, routes);
}
