/* camsim.c -- "spctl camsim": cameras reporting a lot as real ones would. Cars arrive and
 * leave (a slot's status flips, with a vehicle when it fills), each camera sends what it
 * saw every 200 ms as one batch (its eventIds derived by ingest, its own sequence), a
 * heartbeat every 10 s, alternately with its API key and with HMAC signatures, over HTTP
 * through the gateway or over NATS as the camera user; one progress line a second. The
 * cameras are made through catalog (each with a new key), or one given camera is driven
 * with its key from SP_CAMSIM_API_KEY (make run: the demo camera). */
#include <curl/curl.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sp/catalog/v1/catalog.pb-c.h"
#include "sp/ingest/v1/ingest.pb-c.h"
#include "spbus.h"
#include "spcrypto.h"
#include "spctl.h"

#define TICK_MS 200
#define HEARTBEAT_S 10
#define MAX_CAMERAS 64
#define MAX_BATCH 1000

typedef struct {
    char code[48];
    char api_key[160]; /* <keyId>.<secret> */
    char key_id[80];
    const char *secret;
    uint64_t sequence;
    unsigned batches;
    int64_t last_heartbeat_us;
    CURL *curl;
} cam;

typedef struct {
    char code[16];
    int cam;    /* the camera that sees it */
    bool taken; /* OCCUPIED */
} slot;

typedef struct {
    cam cams[MAX_CAMERAS];
    int ncams;
    slot *slots;
    int nslots;
    char lot[40];
    const char *url;    /* the gateway's base URL (HTTP) */
    natsConnection *nc; /* the camera user's connection (--nats) */
    unsigned long sent, accepted, duplicates, rejected, failed;
} sim;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static void iso_now(char *out, size_t len)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    struct tm tm;
    gmtime_r(&t.tv_sec, &tm);
    char base[24];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03dZ", base, (int)(t.tv_nsec / 1000000));
}

static const char *vehicle(void)
{
    int r = rand() % 100;
    return r < 80 ? "car" : r < 95 ? "moto" : "truck";
}

/* ---- sending ---------------------------------------------------------------------------- */

static size_t collect(char *data, size_t size, size_t n, void *user)
{
    FILE *f = user;
    return fwrite(data, size, n, f);
}

/* The counts of an IngestReply-shaped JSON answer (202), else one failure. */
static void count_json(sim *s, long status, const char *body, size_t nitems)
{
    if (status != 202) {
        s->failed += nitems;
        fprintf(stderr, "\ncamsim: %ld %s\n", status, body);
        return;
    }
    const char *a = strstr(body, "\"accepted\":"), *d = strstr(body, "\"duplicates\":");
    s->accepted += a != NULL ? strtoul(a + 11, NULL, 10) : 0;
    s->duplicates += d != NULL ? strtoul(d + 13, NULL, 10) : 0;
    for (const char *p = strstr(body, "\"index\""); p != NULL; p = strstr(p + 1, "\"index\""))
        s->rejected++;
}

/* Credentials of the batch: the API key, or every other batch an HMAC signature. */
static void auth_headers(const cam *c, bool hmac, const void *body, size_t len, char h[3][192])
{
    h[0][0] = h[1][0] = h[2][0] = '\0';
    if (!hmac) {
        snprintf(h[0], 192, "X-API-Key: %s", c->api_key);
        h[1][0] = h[2][0] = '\0';
        return;
    }
    char ts[24], sig[65];
    snprintf(ts, sizeof(ts), "%ld", (long)time(NULL));
    size_t tn = strlen(ts);
    char *msg = malloc(tn + 2 + len);
    if (msg == NULL) return;
    snprintf(msg, tn + 2, "%s\n", ts);
    memcpy(msg + tn + 1, body, len);
    uint8_t mac[32];
    spcrypto_hmac_sha256(mac, c->secret, strlen(c->secret), msg, tn + 1 + len);
    free(msg);
    spcrypto_hex(sig, mac, 32);
    sig[64] = '\0';
    snprintf(h[0], 192, "X-Key-Id: %s", c->key_id);
    snprintf(h[1], 192, "X-Timestamp: %s", ts);
    snprintf(h[2], 192, "X-Signature: %s", sig);
}

static void post_http(sim *s, cam *c, const char *path, const char *body, size_t nitems)
{
    char url[512], h[3][192];
    snprintf(url, sizeof(url), "%s%s", s->url, path);
    auth_headers(c, c->batches++ % 2 == 1, body, strlen(body), h);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    for (int i = 0; i < 3; i++)
        if (h[i][0]) hl = curl_slist_append(hl, h[i]);
    char *resp = NULL;
    size_t rlen = 0;
    FILE *f = open_memstream(&resp, &rlen);
    if (c->curl == NULL) c->curl = curl_easy_init();
    curl_easy_reset(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, f);
    CURLcode rc = curl_easy_perform(c->curl);
    fclose(f);
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (nitems > 0) count_json(s, rc == CURLE_OK ? status : 0, resp != NULL ? resp : "", nitems);
    free(resp);
    curl_slist_free_all(hl);
}

/* Over NATS: the same content as protobuf, the credentials as headers. */
static void post_nats(sim *s, cam *c, const char *subject, const uint8_t *buf, size_t len,
                      size_t nitems)
{
    char h[3][192];
    auth_headers(c, c->batches++ % 2 == 1, buf, len, h);
    natsMsg *m = NULL, *reply = NULL;
    natsStatus ns = natsMsg_Create(&m, subject, NULL, (const char *)buf, (int)len);
    for (int i = 0; ns == NATS_OK && i < 3 && h[i][0]; i++) {
        char *colon = strchr(h[i], ':');
        *colon = '\0';
        ns = natsMsgHeader_Set(m, h[i], colon + 2);
    }
    if (ns == NATS_OK) ns = natsConnection_RequestMsg(&reply, s->nc, m, 10000);
    Sp__V1__Reply *rep = ns == NATS_OK
                             ? sp__v1__reply__unpack(NULL, (size_t)natsMsg_GetDataLength(reply),
                                                     (const uint8_t *)natsMsg_GetData(reply))
                             : NULL;
    if (rep != NULL && rep->result_case == SP__V1__REPLY__RESULT_PAYLOAD) {
        Sp__Ingest__V1__IngestReply *ir =
            sp__ingest__v1__ingest_reply__unpack(NULL, rep->payload.len, rep->payload.data);
        if (ir != NULL && nitems > 0) {
            s->accepted += (unsigned long)ir->accepted;
            s->duplicates += (unsigned long)ir->duplicates;
            s->rejected += ir->n_rejected;
        }
        sp__ingest__v1__ingest_reply__free_unpacked(ir, NULL);
    } else if (nitems > 0) {
        s->failed += nitems;
        fprintf(stderr, "\ncamsim: %s\n",
                rep != NULL && rep->error != NULL ? rep->error->code : natsStatus_GetText(ns));
    }
    if (rep != NULL) sp__v1__reply__free_unpacked(rep, NULL);
    natsMsg_Destroy(m);
    natsMsg_Destroy(reply);
}

/* One camera's batch: the slots that changed, in the order seen. */
static void send_batch(sim *s, cam *c, const int *idx, size_t n)
{
    char at[40];
    iso_now(at, sizeof(at));
    Sp__Ingest__V1__SlotEventItem *items = calloc(n, sizeof(*items));
    Sp__Ingest__V1__SlotEventItem **ptrs = calloc(n, sizeof(Sp__Ingest__V1__SlotEventItem *));
    char *json = NULL;
    size_t jlen = 0;
    FILE *f = open_memstream(&json, &jlen);
    if (items == NULL || ptrs == NULL || f == NULL) goto out;
    fprintf(f,
            "{\"hardwareCode\":\"%s\",\"lotId\":\"%s\",\"model\":{\"name\":\"camsim\","
            "\"version\":\"1\"},\"items\":[",
            c->code, s->lot);
    for (size_t i = 0; i < n; i++) {
        const slot *sl = &s->slots[idx[i]];
        sp__ingest__v1__slot_event_item__init(&items[i]);
        items[i].slot_code = (char *)sl->code;
        items[i].status = sl->taken ? "OCCUPIED" : "FREE";
        items[i].vehicle = sl->taken ? (char *)vehicle() : "none";
        items[i].occurred_at = at;
        items[i].has_sequence = items[i].has_confidence = 1;
        items[i].sequence = ++c->sequence;
        items[i].confidence = 0.8 + (rand() % 20) / 100.0;
        ptrs[i] = &items[i];
        fprintf(f,
                "%s{\"slotCode\":\"%s\",\"status\":\"%s\",\"vehicle\":\"%s\",\"occurredAt\":\"%s\","
                "\"sequence\":%llu,\"confidence\":%.2f}",
                i ? "," : "", sl->code, items[i].status, items[i].vehicle, at,
                (unsigned long long)items[i].sequence, items[i].confidence);
    }
    fputs("]}", f);
    fclose(f);
    f = NULL;
    s->sent += n;
    if (s->nc == NULL) {
        post_http(s, c, "/v1/events/slot-status", json, n);
    } else {
        Sp__Ingest__V1__SlotEventsRequest b = SP__INGEST__V1__SLOT_EVENTS_REQUEST__INIT;
        b.hardware_code = c->code;
        b.lot_id = s->lot;
        b.n_items = n;
        b.items = ptrs;
        size_t len = sp__ingest__v1__slot_events_request__get_packed_size(&b);
        uint8_t *buf = malloc(len ? len : 1);
        if (buf != NULL) {
            sp__ingest__v1__slot_events_request__pack(&b, buf);
            post_nats(s, c, "sp.ingest.v1.SlotEvents", buf, len, n);
        }
        free(buf);
    }
out:
    if (f != NULL) fclose(f);
    free(json);
    free(items);
    free(ptrs);
}

static void heartbeat(sim *s, cam *c, long uptime_s)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"hardwareCode\":\"%s\",\"uptimeS\":%ld,\"fps\":%.1f,\"temperatureC\":%.1f,"
             "\"firmware\":\"camsim-1\"}",
             c->code, uptime_s, 10 + (rand() % 50) / 10.0, 35 + (rand() % 100) / 10.0);
    if (s->nc == NULL) {
        post_http(s, c, "/v1/events/heartbeat", body, 0);
        return;
    }
    Sp__Ingest__V1__HeartbeatRequest h = SP__INGEST__V1__HEARTBEAT_REQUEST__INIT;
    h.hardware_code = c->code;
    h.has_uptime_s = 1;
    h.uptime_s = uptime_s;
    h.firmware = "camsim-1";
    uint8_t buf[256];
    size_t len = sp__ingest__v1__heartbeat_request__get_packed_size(&h);
    if (len > sizeof(buf)) return;
    sp__ingest__v1__heartbeat_request__pack(&h, buf);
    post_nats(s, c, "sp.ingest.v1.Heartbeat", buf, len, 0);
}

/* ---- set-up ----------------------------------------------------------------------------- */

static bool split_key(cam *c, const char *api_key)
{
    const char *dot = api_key != NULL ? strchr(api_key, '.') : NULL;
    if (dot == NULL || (size_t)(dot - api_key) >= sizeof(c->key_id) ||
        strlen(api_key) >= sizeof(c->api_key))
        return false;
    snprintf(c->api_key, sizeof(c->api_key), "%s", api_key);
    snprintf(c->key_id, sizeof(c->key_id), "%.*s", (int)(dot - api_key), api_key);
    c->secret = strchr(c->api_key, '.') + 1;
    return true;
}

/* The lot's live, active slots and the cameras: given (one), or made through catalog. */
static sp_status set_up(sim *s, spbus *bus, sp_arena *a, const char *camera, int ncams)
{
    Sp__Catalog__V1__GetLotLayoutRequest in = SP__CATALOG__V1__GET_LOT_LAYOUT_REQUEST__INIT;
    in.lot_id = s->lot;
    ProtobufCMessage *out = NULL;
    sp_status st = spctl_call(&out, bus, "camsim", NULL, "catalog", "GetLotLayout", &in.base,
                              &sp__catalog__v1__lot_layout_reply__descriptor, NULL, a);
    if (st != SP_OK) return st;
    const Sp__Catalog__V1__LotLayoutReply *l = (const void *)out;
    s->slots = calloc(l->n_slots ? l->n_slots : 1, sizeof(slot));
    if (s->slots == NULL) return spctl_fail(SP_ERR_INTERNAL, "camsim: out of memory");
    for (size_t i = 0; i < l->n_slots; i++) {
        if (!l->slots[i]->active) continue;
        slot *sl = &s->slots[s->nslots];
        snprintf(sl->code, sizeof(sl->code), "%s", l->slots[i]->slot_code);
        sl->cam = s->nslots % ncams;
        sl->taken = rand() % 2 == 0;
        s->nslots++;
    }
    if (s->nslots == 0)
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "camsim: the lot has no active slot");
    s->ncams = ncams;
    if (camera != NULL) {
        snprintf(s->cams[0].code, sizeof(s->cams[0].code), "%s", camera);
        if (!split_key(&s->cams[0], spctl_env("SP_CAMSIM_API_KEY")))
            return spctl_fail(
                SP_ERR_VALIDATION_FAILED,
                "camsim: --camera needs its key in SP_CAMSIM_API_KEY (<keyId>.<secret>)");
        return SP_OK;
    }
    for (int i = 0; i < ncams; i++) {
        char code[48], idem[96];
        snprintf(code, sizeof(code), "SIM-%.8s-%d", s->lot, i + 1);
        snprintf(idem, sizeof(idem), "camsim:%s:%d", s->lot, i + 1);
        Sp__Catalog__V1__CameraReply *c = NULL;
        Sp__Catalog__V1__CreateApiKeyReply *k = NULL;
        st = spctl_fresh_camera(&c, &k, bus, a, "camsim", l->client_id, code, s->lot, idem);
        if (st != SP_OK) return st;
        snprintf(s->cams[i].code, sizeof(s->cams[i].code), "%s", code);
        if (!split_key(&s->cams[i], k->api_key))
            return spctl_fail(SP_ERR_INTERNAL, "camsim: catalog answered a key without a secret");
    }
    return SP_OK;
}

static sp_status connect_camera_user(sim *s)
{
    const char *url = spctl_env("SP_NATS_URL"), *user = spctl_env("SP_NATS_CAMERA_USER"),
               *pw = spctl_env("SP_NATS_CAMERA_PASSWORD");
    natsOptions *o = NULL;
    natsStatus ns = natsOptions_Create(&o);
    if (ns == NATS_OK) ns = natsOptions_SetURL(o, url != NULL ? url : "nats://127.0.0.1:4222");
    if (ns == NATS_OK)
        ns = natsOptions_SetUserInfo(o, user != NULL ? user : "camera", pw != NULL ? pw : "camera");
    if (ns == NATS_OK) ns = natsConnection_Connect(&s->nc, o);
    natsOptions_Destroy(o);
    if (ns != NATS_OK)
        return spctl_fail(SP_ERR_UNAVAILABLE,
                          "camsim: cannot connect to NATS as the camera user: %s",
                          natsStatus_GetText(ns));
    return SP_OK;
}

/* ---- the run -------------------------------------------------------------------------------- */

static void progress(const sim *s, long elapsed_s, bool tty)
{
    fprintf(stderr,
            "%scamsim: %lds %d camera(s) %lu events sent, %lu accepted, %lu duplicates, %lu "
            "rejected, %lu failed%s",
            tty ? "\r" : "", elapsed_s, s->ncams, s->sent, s->accepted, s->duplicates, s->rejected,
            s->failed, tty ? "   " : "\n");
}

static void run(sim *s, double rate, long duration_s)
{
    bool tty = isatty(STDERR_FILENO);
    int64_t t0 = sp_monotonic_us(), last_progress = t0;
    double owed = 0;
    int *idx = malloc(sizeof(int) * MAX_BATCH);
    int *n = calloc((size_t)s->ncams, sizeof(int));
    int(*per)[MAX_BATCH] = calloc((size_t)s->ncams, sizeof(*per));
    if (idx == NULL || n == NULL || per == NULL) goto out;
    while (!g_stop) {
        int64_t now = sp_monotonic_us();
        long elapsed = (long)((now - t0) / 1000000);
        if (duration_s > 0 && elapsed >= duration_s) break;
        for (int i = 0; i < s->ncams; i++) {
            cam *c = &s->cams[i];
            if (now - c->last_heartbeat_us >= (int64_t)HEARTBEAT_S * 1000000) {
                heartbeat(s, c, elapsed);
                c->last_heartbeat_us = now;
            }
        }
        /* cars arriving and leaving: rate changes a second, spread over the ticks */
        owed += rate * TICK_MS / 1000.0;
        memset(n, 0, sizeof(int) * (size_t)s->ncams);
        while (owed >= 1) {
            owed -= 1;
            int k = rand() % s->nslots;
            slot *sl = &s->slots[k];
            int ci = sl->cam;
            bool seen = false; /* one report per slot and batch: a camera sees a state */
            for (int j = 0; j < n[ci] && !seen; j++)
                seen = per[ci][j] == k;
            if (seen || n[ci] == MAX_BATCH) continue;
            sl->taken = !sl->taken;
            per[ci][n[ci]++] = k;
        }
        for (int i = 0; i < s->ncams; i++)
            if (n[i] > 0) send_batch(s, &s->cams[i], per[i], (size_t)n[i]);
        if (now - last_progress >= 1000000) {
            progress(s, elapsed, tty);
            last_progress = now;
        }
        int64_t left = (int64_t)TICK_MS * 1000 - (sp_monotonic_us() - now);
        if (left > 0) usleep((useconds_t)left);
    }
    progress(s, (long)((sp_monotonic_us() - t0) / 1000000), false);
out:
    free(idx);
    free(n);
    free(per);
}

sp_status spctl_camsim(int argc, char **argv)
{
    const char *lot = NULL, *cameras = NULL, *rate_s = NULL, *duration = NULL, *camera = NULL,
               *url = NULL;
    bool help = false, nats = false;
    size_t npos = 0;
    const spctl_opt opts[] = {
        {"--lot", true, &lot, NULL},       {"--cameras", true, &cameras, NULL},
        {"--rate", true, &rate_s, NULL},   {"--duration", true, &duration, NULL},
        {"--camera", true, &camera, NULL}, {"--url", true, &url, NULL},
        {"--nats", false, NULL, &nats}};
    sp_status st =
        spctl_parse(argc, argv, opts, sizeof(opts) / sizeof(opts[0]), NULL, 0, &npos, &help);
    if (st != SP_OK) return st;
    if (help) {
        fputs("usage: spctl camsim --lot ID [--cameras N] [--rate R] [--duration S] [--nats]\n"
              "                    [--camera CODE] [--url BASE]\n\n"
              "Simulates N cameras (default 1, at most 64) watching lot ID: R slot changes a\n"
              "second in all (default 2; cars arriving and leaving), sent by each camera every\n"
              "200 ms as one batch, a heartbeat every 10 s, alternately with its API key and\n"
              "an HMAC signature; over HTTP to BASE (default SP_CAMSIM_URL or\n"
              "http://127.0.0.1:8080), or with --nats as protobuf on sp.ingest.v1.* as the\n"
              "camera user (SP_NATS_URL, SP_NATS_CAMERA_USER / _PASSWORD, default camera).\n"
              "The cameras SIM-<lot>-<i> are made through catalog with new keys (as the\n"
              "operator: SP_NATS_USER / SP_NATS_PASSWORD), or --camera CODE drives one given\n"
              "camera with its key from SP_CAMSIM_API_KEY. Runs S seconds (default: until\n"
              "SIGINT or SIGTERM) and prints one progress line a second.\n",
              stdout);
        return SP_OK;
    }
    long ncams = cameras != NULL ? strtol(cameras, NULL, 10) : 1;
    double rate = rate_s != NULL ? strtod(rate_s, NULL) : 2;
    long dur = duration != NULL ? strtol(duration, NULL, 10) : 0;
    if (lot == NULL || !spcrypto_uuid_valid(lot))
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "camsim: --lot must be a lot's id");
    if (ncams < 1 || ncams > MAX_CAMERAS || (camera != NULL && ncams != 1))
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "camsim: --cameras is 1..64 (1 with --camera)");
    if (!(rate > 0 && rate <= 100000) || dur < 0)
        return spctl_fail(SP_ERR_VALIDATION_FAILED, "camsim: --rate is 0..100000, --duration >= 0");

    sim s;
    memset(&s, 0, sizeof(s));
    snprintf(s.lot, sizeof(s.lot), "%s", lot);
    s.url = url != NULL ? url : spctl_env("SP_CAMSIM_URL");
    if (s.url == NULL) s.url = "http://127.0.0.1:8080";
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    spbus *bus = NULL;
    sp_arena *a = sp_arena_create(1 << 16);
    if (a == NULL) return spctl_fail(SP_ERR_INTERNAL, "camsim: out of memory");
    st = spctl_bus_connect(&bus, "camsim");
    if (st == SP_OK) st = set_up(&s, bus, a, camera, (int)ncams);
    spbus_destroy(bus);
    if (st == SP_OK && nats) st = connect_camera_user(&s);
    if (st == SP_OK) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        curl_global_init(CURL_GLOBAL_DEFAULT);
        run(&s, rate, dur);
        for (int i = 0; i < s.ncams; i++)
            if (s.cams[i].curl != NULL) curl_easy_cleanup(s.cams[i].curl);
        curl_global_cleanup();
    }
    natsConnection_Destroy(s.nc);
    nats_Close();
    free(s.slots);
    sp_arena_destroy(a);
    if (st == SP_OK && s.sent > 0 && s.accepted + s.duplicates == 0)
        return spctl_fail(SP_ERR_UNAVAILABLE, "camsim: no event was accepted");
    return st;
}
