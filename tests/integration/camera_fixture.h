/* camera_fixture.h -- a camera's world for the suites of ingest and the projection: an
 * establishment with a lot of slots A1..A5 and an inactive A9, an API key and a camera bound
 * to both, made by the admin over HTTP; and posting events as that camera (both
 * authentication forms). After site_fixture.h. */
#ifndef CAMERA_FIXTURE_H
#define CAMERA_FIXTURE_H

#include <time.h>

#include "site_fixture.h"
#include "spcrypto.h"

#define NSLOTS 5 /* A1..A5 active, A9 inactive */

/* A camera's world: an establishment of t with a lot of slots A1..A5 and an inactive A9, a
 * key and a camera bound to both. */
typedef struct {
    char *est, *lot, *key, *cam;
    char key_id[80], secret[64], cam_code[48];
    char *slot[NSLOTS];
} site;

FIXTURE char *slot_path(const char *lot)
{
    static char p[160];
    snprintf(p, sizeof(p), "/v1/lots/%s/slots", lot);
    return p;
}

/* A site whose lot has the settings 'lot_extra' ("\"debounceMs\":600", or NULL). */
FIXTURE site new_site_with(const tenant *t, const char *lot_extra)
{
    site s;
    char name[64], code[24], body[512];
    memset(&s, 0, sizeof(s));
    fresh(name, sizeof(name), "Ingest Mall ", 40);
    fresh(code, sizeof(code), "IN", 20);
    fresh(s.cam_code, sizeof(s.cam_code), "CAM-", 40);
    s.est = new_establishment(t->id, name, "Campinas");
    s.lot = new_lot(s.est, code, lot_extra);
    for (int i = 0; i < NSLOTS; i++) {
        snprintf(code, sizeof(code), "A%d", i + 1);
        s.slot[i] = new_slot(s.lot, code);
    }
    char *inactive = new_slot(s.lot, "A9");
    char path[160];
    snprintf(path, sizeof(path), "/v1/slots/%s", inactive);
    sptest_resp_free(MUST("PATCH", path, ADMIN, "{\"active\":false}", 200));
    free(inactive);
    snprintf(body, sizeof(body), "{\"name\":\"Camera key\",\"clientId\":\"%s\"}", t->id);
    sptest_resp *r = MUST("POST", "/v1/api-keys", ADMIN, body, 201);
    s.key = strdup(sptest_jstr(r, "id"));
    const char *api_key = sptest_jstr(r, "apiKey");
    ck_assert_ptr_nonnull(api_key);
    const char *dot = strchr(api_key, '.');
    snprintf(s.key_id, sizeof(s.key_id), "%.*s", (int)(dot - api_key), api_key);
    snprintf(s.secret, sizeof(s.secret), "%s", dot + 1);
    sptest_resp_free(r);
    snprintf(body, sizeof(body),
             "{\"cameraCode\":\"%s\",\"clientId\":\"%s\",\"apiKeyId\":\"%s\",\"lotId\":\"%s\"}",
             s.cam_code, t->id, s.key, s.lot);
    s.cam = made_(__LINE__, "/v1/cameras", body);
    return s;
}

FIXTURE site new_site(const tenant *t)
{
    return new_site_with(t, NULL);
}

FIXTURE void site_free(site *s)
{
    free(s->est);
    free(s->lot);
    free(s->key);
    free(s->cam);
    for (int i = 0; i < NSLOTS; i++)
        free(s->slot[i]);
}

/* ---- posting as a camera -------------------------------------------------------------------- */

typedef enum { AUTH_KEY, AUTH_HMAC, AUTH_NONE } auth_form;

/* hex(HMAC-SHA256(secret, ts "\n" body)) */
FIXTURE void sign(char out[65], const char *secret, const char *ts, const char *body, size_t len)
{
    size_t tn = strlen(ts);
    char *msg = malloc(tn + 1 + len);
    memcpy(msg, ts, tn);
    msg[tn] = '\n';
    memcpy(msg + tn + 1, body, len);
    uint8_t mac[32];
    spcrypto_hmac_sha256(mac, secret, strlen(secret), msg, tn + 1 + len);
    free(msg);
    spcrypto_hex(out, mac, 32);
    out[64] = '\0';
}

/* POST 'path' as the site's camera; ts_offset moves the HMAC timestamp off the clock. */
FIXTURE sptest_resp *post_as(const site *s, const char *path, auth_form form, long ts_offset,
                             const char *body, const char *ctype)
{
    char url[512], h1[256], h2[128], h3[128], h4[160], ts[24], sig[65];
    const char *h[6];
    int n = 0;
    snprintf(url, sizeof(url), "%s%s", E->base_url, path);
    if (ctype != NULL) {
        snprintf(h4, sizeof(h4), "Content-Type: %s", ctype);
        h[n++] = h4;
    }
    if (form == AUTH_KEY) {
        snprintf(h1, sizeof(h1), "X-API-Key: %s.%s", s->key_id, s->secret);
        h[n++] = h1;
    } else if (form == AUTH_HMAC) {
        snprintf(ts, sizeof(ts), "%ld", (long)time(NULL) + ts_offset);
        sign(sig, s->secret, ts, body, strlen(body));
        snprintf(h1, sizeof(h1), "X-Key-Id: %s", s->key_id);
        snprintf(h2, sizeof(h2), "X-Timestamp: %s", ts);
        snprintf(h3, sizeof(h3), "X-Signature: %s", sig);
        h[n++] = h1;
        h[n++] = h2;
        h[n++] = h3;
    }
    h[n] = NULL;
    return sptest_http("POST", url, h, body, strlen(body));
}

FIXTURE sptest_resp *post_events(const site *s, auth_form form, const char *body)
{
    return post_as(s, "/v1/events/slot-status", form, 0, body, "application/json");
}

/* An RFC 3339 time 'offset_ms' from now, with milliseconds. */
FIXTURE void iso_at(char *out, size_t len, long long offset_ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long long ms = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000 + offset_ms;
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03lldZ", base, ms % 1000);
}

/* {"hardwareCode":..,"lotId":..,"items":[<items>]} of the site */
FIXTURE char *batch(const site *s, const char *items)
{
    size_t n = strlen(items) + 512;
    char *b = malloc(n);
    snprintf(b, n, "{\"hardwareCode\":\"%s\",\"lotId\":\"%s\",\"items\":[%s]}", s->cam_code, s->lot,
             items);
    return b;
}

/* One item: slot, status, time; eventId when not NULL. */
FIXTURE char *item(const char *slot, const char *status, const char *at, const char *event_id)
{
    char *o = malloc(512);
    if (event_id != NULL)
        snprintf(o, 512,
                 "{\"slotCode\":\"%s\",\"status\":\"%s\",\"occurredAt\":\"%s\",\"eventId\":\"%s\"}",
                 slot, status, at, event_id);
    else
        snprintf(o, 512, "{\"slotCode\":\"%s\",\"status\":\"%s\",\"occurredAt\":\"%s\"}", slot,
                 status, at);
    return o;
}

FIXTURE long jint(const sptest_resp *r, const char *key)
{
    const cJSON *v = r->json != NULL ? cJSON_GetObjectItemCaseSensitive(r->json, key) : NULL;
    return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

/* The 202 with these counts. */
FIXTURE void expect_counts_(int line, sptest_resp *r, long accepted, long dups, long rejected)
{
    ck_assert_msg(r->status == 202, "line %d: %ld %s", line, r->status, r->body);
    const cJSON *rej = cJSON_GetObjectItemCaseSensitive(r->json, "rejected");
    ck_assert_msg(jint(r, "accepted") == accepted && jint(r, "duplicates") == dups &&
                      cJSON_GetArraySize(rej) == rejected,
                  "line %d: want %ld/%ld/%ld: %s", line, accepted, dups, rejected, r->body);
}
#define EXPECT_COUNTS(r, a, d, j) expect_counts_(__LINE__, r, a, d, j)

FIXTURE void post_one(const site *s, const char *slot, const char *status, long long offset_ms)
{
    char at[40];
    iso_at(at, sizeof(at), offset_ms);
    char *it = item(slot, status, at, NULL);
    char *b = batch(s, it);
    sptest_resp *r = post_events(s, AUTH_KEY, b);
    EXPECT_COUNTS(r, 1, 0, 0);
    sptest_resp_free(r);
    free(it);
    free(b);
}

#endif
