/* model.c -- ingest's read model (bus.md): copies of the catalog's keys, cameras and lots
 * (with their slots) and of the clients' status, filled on demand from catalog and tenancy
 * and dropped by their change messages; every entry also expires (ING_TTL_US, or
 * ING_MISS_TTL_US for what does not exist), so that a lost message heals. A reconnect to
 * NATS (change messages may have been missed) drops everything. The hot path asks nobody:
 * a batch of a known camera costs no bus request. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "sp/catalog/v1/catalog.pb-c.h"
#include "sp/tenancy/v1/tenancy.pb-c.h"
#include "sp/v1/changed.pb-c.h"

typedef struct {
    int64_t loaded_us;
    ing_key key;
} key_entry;

typedef struct {
    int64_t loaded_us;
    ing_camera cam;
} camera_entry;

typedef struct {
    int64_t loaded_us;
    ing_lot *lot; /* NULL: does not exist */
} lot_entry;

typedef struct {
    int64_t loaded_us;
    char status[16];
} client_entry;

struct ing_model {
    spsvc *kit;
    uint8_t master_key[32];
    pthread_mutex_t mu;
    sp_map *keys, *cameras, *lots, *clients;
    uint64_t disconnects; /* spbus_disconnects when the maps were last known complete */
};

void ing_lot_release(ing_lot *lot)
{
    if (lot == NULL || atomic_fetch_sub(&lot->refs, 1) != 1) return;
    sp_map_destroy(lot->slots);
    free(lot);
}

static void free_lot_entry(void *v)
{
    lot_entry *e = v;
    if (e == NULL) return;
    ing_lot_release(e->lot);
    free(e);
}

static bool fresh(int64_t loaded_us, bool exists)
{
    return sp_monotonic_us() - loaded_us < (exists ? ING_TTL_US : ING_MISS_TTL_US);
}

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src != NULL ? src : "");
}

static bool drop_all(const char *k, void *v, void *u)
{
    (void)k, (void)v, (void)u;
    return true;
}

/* Drops everything after a reconnect (under mu). */
static void check_disconnects_locked(ing_model *m)
{
    uint64_t d = spbus_disconnects(spsvc_bus(m->kit));
    if (d == m->disconnects) return;
    m->disconnects = d;
    sp_map_filter(m->keys, drop_all, NULL);
    sp_map_filter(m->cameras, drop_all, NULL);
    sp_map_filter(m->lots, drop_all, NULL);
    sp_map_filter(m->clients, drop_all, NULL);
}

/* ---- change messages ---------------------------------------------------------------------- */

typedef struct {
    const char *client_id, *id;
} match;

static bool key_of_client(const char *k, void *v, void *u)
{
    (void)k;
    const match *mt = u;
    return strcmp(((key_entry *)v)->key.client_id, mt->client_id) == 0;
}

static bool camera_of_client(const char *k, void *v, void *u)
{
    (void)v;
    const match *mt = u;
    size_t n = strlen(mt->client_id);
    return strncmp(k, mt->client_id, n) == 0 && k[n] == '/';
}

static bool lot_of_establishment(const char *k, void *v, void *u)
{
    (void)k;
    const lot_entry *e = v;
    const match *mt = u;
    return e->lot != NULL && strcmp(e->lot->establishment_id, mt->id) == 0;
}

static void on_changed(void *user, const char *subject, const void *data, size_t len)
{
    ing_model *m = user;
    (void)subject;
    Sp__V1__Changed *c = sp__v1__changed__unpack(NULL, len, data);
    if (c == NULL) return;
    match mt = {c->client_id != NULL ? c->client_id : "", c->id != NULL ? c->id : ""};
    const char *kind = c->kind != NULL ? c->kind : "";
    pthread_mutex_lock(&m->mu);
    if (strcmp(kind, "api_key") == 0) {
        sp_map_filter(m->keys, key_of_client, &mt);
    } else if (strcmp(kind, "camera") == 0) {
        sp_map_filter(m->cameras, camera_of_client, &mt);
    } else if (strcmp(kind, "lot") == 0) {
        sp_map_del(m->lots, mt.id);
    } else if (strcmp(kind, "slot") == 0) {
        if (c->parent_id != NULL) sp_map_del(m->lots, c->parent_id);
    } else if (strcmp(kind, "establishment") == 0) {
        sp_map_filter(m->lots, lot_of_establishment, &mt);
    } else if (strcmp(kind, "client") == 0) {
        sp_map_del(m->clients, mt.id[0] ? mt.id : mt.client_id);
    }
    pthread_mutex_unlock(&m->mu);
    sp__v1__changed__free_unpacked(c, NULL);
}

sp_status ing_model_start(ing_model **out, spsvc *kit, const uint8_t master_key[32])
{
    ing_model *m = calloc(1, sizeof(*m));
    *out = m;
    if (m == NULL) return SP_ERR_INTERNAL;
    pthread_mutex_init(&m->mu, NULL);
    m->kit = kit;
    memcpy(m->master_key, master_key, 32);
    m->keys = sp_map_create(free);
    m->cameras = sp_map_create(free);
    m->lots = sp_map_create(free_lot_entry);
    m->clients = sp_map_create(free);
    if (m->keys == NULL || m->cameras == NULL || m->lots == NULL || m->clients == NULL)
        return SP_ERR_INTERNAL;
    m->disconnects = spbus_disconnects(spsvc_bus(kit));
    sp_status s = spbus_subscribe(spsvc_bus(kit), "sp.catalog.changed.>", on_changed, m);
    if (s == SP_OK) s = spbus_subscribe(spsvc_bus(kit), "sp.tenancy.changed.>", on_changed, m);
    return s;
}

void ing_model_free(ing_model *m)
{
    if (m == NULL) return;
    sp_map_destroy(m->keys);
    sp_map_destroy(m->cameras);
    sp_map_destroy(m->lots);
    sp_map_destroy(m->clients);
    pthread_mutex_destroy(&m->mu);
    memset(m->master_key, 0, sizeof(m->master_key));
    free(m);
}

/* ---- keys and cameras ------------------------------------------------------------------- */

/* The key of the catalog's answer: the secret opened with SP_MASTER_KEY (the key id is the
 * associated data). A secret that does not open leaves the key unusable (logged). */
static void key_from(ing_model *m, ing_key *k, const Sp__Catalog__V1__DeviceKey *dk)
{
    memset(k, 0, sizeof(*k));
    if (dk == NULL) return;
    k->exists = true;
    copy(k->id, sizeof(k->id), dk->id);
    copy(k->key_id, sizeof(k->key_id), dk->key_id);
    copy(k->client_id, sizeof(k->client_id), dk->client_id);
    k->revoked = dk->revoked;
    if (dk->secret_sha256.len == 32) memcpy(k->sha256, dk->secret_sha256.data, 32);
    size_t n = dk->secret_sealed.len;
    if (n > SPCRYPTO_SEAL_OVERHEAD && n - SPCRYPTO_SEAL_OVERHEAD < sizeof(k->secret) &&
        spcrypto_open((uint8_t *)k->secret, m->master_key, dk->secret_sealed.data, n, k->key_id,
                      strlen(k->key_id)) == SP_OK) {
        k->secret_len = n - SPCRYPTO_SEAL_OVERHEAD;
    } else {
        k->revoked = true; /* cannot be checked: refused */
        sp_log_error(NULL, "api_key_unsealable", "keyId", k->key_id);
    }
}

sp_status ing_model_device(ing_model *m, spbus_req *req, const char *key_id,
                           const char *camera_code, ing_key *key, ing_camera *cam)
{
    char ckey[ING_ID_LEN + 64];
    memset(key, 0, sizeof(*key));
    memset(cam, 0, sizeof(*cam));
    pthread_mutex_lock(&m->mu);
    check_disconnects_locked(m);
    key_entry *ke = sp_map_get(m->keys, key_id);
    bool have_key = ke != NULL && fresh(ke->loaded_us, ke->key.exists);
    bool have_cam = camera_code == NULL;
    if (have_key) {
        *key = ke->key;
        if (!key->exists) have_cam = true; /* no key, no camera to look for */
        if (!have_cam) {
            snprintf(ckey, sizeof(ckey), "%s/%s", key->client_id, camera_code);
            camera_entry *ce = sp_map_get(m->cameras, ckey);
            if (ce != NULL && fresh(ce->loaded_us, ce->cam.exists)) {
                *cam = ce->cam;
                have_cam = true;
            }
        }
    }
    pthread_mutex_unlock(&m->mu);
    if (have_key && have_cam) return SP_OK;

    Sp__Catalog__V1__GetDeviceRequest in = SP__CATALOG__V1__GET_DEVICE_REQUEST__INIT;
    in.key_id = (char *)key_id;
    in.camera_code = (char *)camera_code;
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s =
        spsvc_call(&out, &err, spsvc_bus(m->kit), req, "catalog", "GetDevice", &in.base,
                   &sp__catalog__v1__device_reply__descriptor, ING_CALL_MS, spbus_req_arena(req));
    if (s != SP_OK) return SP_ERR_UNAVAILABLE;
    const Sp__Catalog__V1__DeviceReply *d = (const void *)out;
    key_from(m, key, d->key);
    if (key->exists && camera_code != NULL && d->camera != NULL) {
        cam->exists = true;
        copy(cam->id, sizeof(cam->id), d->camera->id);
        copy(cam->client_id, sizeof(cam->client_id), d->camera->client_id);
        copy(cam->lot_id, sizeof(cam->lot_id), d->camera->lot_id);
        copy(cam->key_id, sizeof(cam->key_id), d->camera->key_id);
        cam->enabled = d->camera->enabled;
    }
    int64_t now = sp_monotonic_us();
    key_entry *nk = malloc(sizeof(*nk));
    camera_entry *nc = camera_code != NULL && key->exists ? malloc(sizeof(*nc)) : NULL;
    pthread_mutex_lock(&m->mu);
    if (nk != NULL) {
        nk->loaded_us = now;
        nk->key = *key;
        sp_map_put(m->keys, key_id, nk);
    }
    if (nc != NULL) {
        nc->loaded_us = now;
        nc->cam = *cam;
        snprintf(ckey, sizeof(ckey), "%s/%s", key->client_id, camera_code);
        sp_map_put(m->cameras, ckey, nc);
    }
    pthread_mutex_unlock(&m->mu);
    return SP_OK;
}

/* ---- lots ------------------------------------------------------------------------------- */

static ing_lot *lot_from(const Sp__Catalog__V1__LotLayoutReply *r)
{
    ing_lot *l = calloc(1, sizeof(*l));
    if (l == NULL) return NULL;
    atomic_init(&l->refs, 1);
    copy(l->id, sizeof(l->id), r->id);
    copy(l->client_id, sizeof(l->client_id), r->client_id);
    copy(l->establishment_id, sizeof(l->establishment_id), r->establishment_id);
    l->slots = sp_map_create(free);
    if (l->slots == NULL) {
        free(l);
        return NULL;
    }
    for (size_t i = 0; i < r->n_slots; i++) {
        const Sp__Catalog__V1__LayoutSlot *s = r->slots[i];
        if (s->slot_code == NULL) continue;
        ing_slot *is = malloc(sizeof(*is));
        if (is == NULL) {
            ing_lot_release(l);
            return NULL;
        }
        copy(is->id, sizeof(is->id), s->id);
        is->active = s->active;
        if (sp_map_put(l->slots, s->slot_code, is) != SP_OK) { /* 'is' freed by the map */
            ing_lot_release(l);
            return NULL;
        }
    }
    return l;
}

sp_status ing_model_lot(ing_model *m, spbus_req *req, const char *lot_id, ing_lot **lot)
{
    *lot = NULL;
    pthread_mutex_lock(&m->mu);
    check_disconnects_locked(m);
    lot_entry *e = sp_map_get(m->lots, lot_id);
    if (e != NULL && fresh(e->loaded_us, e->lot != NULL)) {
        if (e->lot != NULL) atomic_fetch_add(&e->lot->refs, 1);
        *lot = e->lot;
        pthread_mutex_unlock(&m->mu);
        return SP_OK;
    }
    pthread_mutex_unlock(&m->mu);

    Sp__Catalog__V1__GetLotLayoutRequest in = SP__CATALOG__V1__GET_LOT_LAYOUT_REQUEST__INIT;
    in.lot_id = (char *)lot_id;
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s = spsvc_call(&out, &err, spsvc_bus(m->kit), req, "catalog", "GetLotLayout",
                             &in.base, &sp__catalog__v1__lot_layout_reply__descriptor, ING_CALL_MS,
                             spbus_req_arena(req));
    if (s != SP_OK && s != SP_ERR_NOT_FOUND) return SP_ERR_UNAVAILABLE;
    ing_lot *l = NULL;
    if (s == SP_OK && (l = lot_from((const void *)out)) == NULL) return SP_ERR_INTERNAL;
    lot_entry *ne = malloc(sizeof(*ne));
    if (ne == NULL) {
        ing_lot_release(l);
        return SP_ERR_INTERNAL;
    }
    ne->loaded_us = sp_monotonic_us();
    ne->lot = l;
    if (l != NULL) atomic_fetch_add(&l->refs, 1); /* one for the map, one for the caller */
    pthread_mutex_lock(&m->mu);
    sp_map_put(m->lots, lot_id, ne);
    pthread_mutex_unlock(&m->mu);
    *lot = l;
    return SP_OK;
}

/* ---- clients ------------------------------------------------------------------------------ */

sp_status ing_model_client(ing_model *m, spbus_req *req, const char *client_id, char status[16])
{
    status[0] = '\0';
    pthread_mutex_lock(&m->mu);
    check_disconnects_locked(m);
    client_entry *e = sp_map_get(m->clients, client_id);
    if (e != NULL && fresh(e->loaded_us, e->status[0] != '\0')) {
        memcpy(status, e->status, 16);
        pthread_mutex_unlock(&m->mu);
        return SP_OK;
    }
    pthread_mutex_unlock(&m->mu);

    Sp__Tenancy__V1__GetClientRequest in = SP__TENANCY__V1__GET_CLIENT_REQUEST__INIT;
    in.id = (char *)client_id;
    ProtobufCMessage *out = NULL;
    Sp__V1__Error *err = NULL;
    sp_status s =
        spsvc_call(&out, &err, spsvc_bus(m->kit), req, "tenancy", "GetClient", &in.base,
                   &sp__tenancy__v1__client_reply__descriptor, ING_CALL_MS, spbus_req_arena(req));
    if (s != SP_OK && s != SP_ERR_NOT_FOUND) return SP_ERR_UNAVAILABLE;
    if (s == SP_OK) copy(status, 16, ((const Sp__Tenancy__V1__ClientReply *)out)->status);
    client_entry *ne = malloc(sizeof(*ne));
    if (ne == NULL) return SP_OK;
    ne->loaded_us = sp_monotonic_us();
    memcpy(ne->status, status, 16);
    pthread_mutex_lock(&m->mu);
    sp_map_put(m->clients, client_id, ne);
    pthread_mutex_unlock(&m->mu);
    return SP_OK;
}
