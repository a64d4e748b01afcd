/* catalog.c -- the operator's catalog commands, through the services on the bus:
 * "spctl create-api-key" (prints the key once), "spctl create-camera", and "spctl
 * demo-seed", the demo data of `make run` (api.md, "Local stack defaults"): client "Demo
 * Parking" ACTIVE, establishment "Demo Mall" in São Paulo, lot P1 with 40 slots, camera
 * CAM-DEMO-01 and its key, written to a file for the camera simulator. Every creation but
 * the key's is idempotent (fixed request id and idempotency keys), so a second seed finds
 * the first one's data. */
#include <stdio.h>
#include <string.h>

#include "sp/catalog/v1/catalog.pb-c.h"
#include "sp/tenancy/v1/tenancy.pb-c.h"
#include "spbus.h"
#include "spcrypto.h"
#include "spctl.h"

#define DEMO_SLOTS 40
#define DEMO_ROW 10 /* A1..A10, B1..B10, ... */

/* One process, one connection, one arena: what each command holds. */
typedef struct {
    spbus *bus;
    sp_arena *a;
    char rid[SPCRYPTO_UUID_LEN];
} session;

static sp_status open_session(session *s, const char *cmd)
{
    memset(s, 0, sizeof(*s));
    spcrypto_uuid_v4(s->rid);
    s->a = sp_arena_create(1 << 16);
    if (s->a == NULL) return spctl_fail(SP_ERR_INTERNAL, "%s: out of memory", cmd);
    sp_status st = spctl_bus_connect(&s->bus, cmd);
    if (st != SP_OK) sp_arena_destroy(s->a);
    return st;
}

static void close_session(session *s)
{
    spbus_destroy(s->bus);
    sp_arena_destroy(s->a);
}

/* CreateApiKey for 'client'; *out the answer (the secret in it). */
static sp_status new_key(Sp__Catalog__V1__CreateApiKeyReply **out, session *s, const char *cmd,
                         const char *client, const char *name)
{
    Sp__Catalog__V1__CreateApiKeyRequest in = SP__CATALOG__V1__CREATE_API_KEY_REQUEST__INIT;
    in.client_id = (char *)client;
    in.name = (char *)name;
    return spctl_call((ProtobufCMessage **)out, s->bus, cmd, s->rid, "catalog", "CreateApiKey",
                      &in.base, &sp__catalog__v1__create_api_key_reply__descriptor, NULL, s->a);
}

/* CreateCamera (idempotent by 'key' when not NULL). */
static sp_status new_camera(Sp__Catalog__V1__CameraReply **out, session *s, const char *cmd,
                            const char *client, const char *code, const char *api_key_id,
                            const char *lot, const char *key)
{
    Sp__Catalog__V1__CreateCameraRequest in = SP__CATALOG__V1__CREATE_CAMERA_REQUEST__INIT;
    in.client_id = (char *)client;
    in.camera_code = (char *)code;
    in.api_key_id = (char *)api_key_id;
    in.lot_id = (char *)lot;
    return spctl_call((ProtobufCMessage **)out, s->bus, cmd, s->rid, "catalog", "CreateCamera",
                      &in.base, &sp__catalog__v1__camera_reply__descriptor, key, s->a);
}

sp_status spctl_fresh_camera(Sp__Catalog__V1__CameraReply **cam,
                             Sp__Catalog__V1__CreateApiKeyReply **key, spbus *bus, sp_arena *a,
                             const char *cmd, const char *client, const char *code, const char *lot,
                             const char *idem)
{
    session s = {.bus = bus, .a = a};
    spcrypto_uuid_v4(s.rid);
    sp_status st = new_key(key, &s, cmd, client, code);
    if (st == SP_OK) st = new_camera(cam, &s, cmd, client, code, (*key)->id, lot, idem);
    if (st == SP_OK && strcmp((*cam)->api_key_id, (*key)->id) != 0) {
        /* made before: the camera keeps its id and takes the new key */
        Sp__Catalog__V1__UpdateCameraRequest up = SP__CATALOG__V1__UPDATE_CAMERA_REQUEST__INIT;
        up.id = (*cam)->id;
        up.api_key_id = (*key)->id;
        st = spctl_call((ProtobufCMessage **)cam, s.bus, cmd, s.rid, "catalog", "UpdateCamera",
                        &up.base, &sp__catalog__v1__camera_reply__descriptor, NULL, s.a);
    }
    return st;
}

sp_status spctl_create_api_key(int argc, char **argv)
{
    const char *client = NULL, *name = NULL;
    bool help = false;
    size_t npos = 0;
    const spctl_opt opts[] = {{"--client", true, &client, NULL}, {"--name", true, &name, NULL}};
    sp_status st = spctl_parse(argc, argv, opts, 2, NULL, 0, &npos, &help);
    if (st != SP_OK) return st;
    if (help) {
        fputs("usage: spctl create-api-key --client ID --name NAME\n\n"
              "Creates an API key of client ID through catalog and prints it once:\n"
              "its id, its keyId and apiKey (<keyId>.<secret>, what X-API-Key carries).\n",
              stdout);
        return SP_OK;
    }
    if (client == NULL || name == NULL)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "create-api-key: --client and --name are required");
    session s;
    st = open_session(&s, "create-api-key");
    if (st != SP_OK) return st;
    Sp__Catalog__V1__CreateApiKeyReply *k = NULL;
    st = new_key(&k, &s, "create-api-key", client, name);
    if (st == SP_OK) printf("api key %s\nkeyId %s\napiKey %s\n", k->id, k->key_id, k->api_key);
    close_session(&s);
    return st;
}

sp_status spctl_create_camera(int argc, char **argv)
{
    const char *client = NULL, *code = NULL, *key = NULL, *lot = NULL;
    bool help = false;
    size_t npos = 0;
    const spctl_opt opts[] = {{"--client", true, &client, NULL},
                              {"--code", true, &code, NULL},
                              {"--api-key-id", true, &key, NULL},
                              {"--lot", true, &lot, NULL}};
    sp_status st = spctl_parse(argc, argv, opts, 4, NULL, 0, &npos, &help);
    if (st != SP_OK) return st;
    if (help) {
        fputs("usage: spctl create-camera --client ID --code CODE --api-key-id ID [--lot ID]\n\n"
              "Creates a camera of client ID through catalog, bound to the key (its id) and,\n"
              "with --lot, assigned to that lot of the same client.\n",
              stdout);
        return SP_OK;
    }
    if (client == NULL || code == NULL || key == NULL)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "create-camera: --client, --code and --api-key-id are required");
    session s;
    st = open_session(&s, "create-camera");
    if (st != SP_OK) return st;
    Sp__Catalog__V1__CameraReply *c = NULL;
    st = new_camera(&c, &s, "create-camera", client, code, key, lot, NULL);
    if (st == SP_OK)
        printf("camera %s %s %s%s%s\n", c->id, c->camera_code, c->state,
               c->lot_id != NULL ? " lot " : "", c->lot_id != NULL ? c->lot_id : "");
    close_session(&s);
    return st;
}

/* ---- demo-seed ------------------------------------------------------------------------------ */

typedef struct {
    const char *client, *establishment, *lot, *camera, *key_id, *api_key;
} demo;

static sp_status write_demo(FILE *f, const void *ud)
{
    const demo *d = ud;
    fprintf(f,
            "# the demo data of make run (spctl demo-seed); SP_DEMO_API_KEY is the camera's\n"
            "SP_DEMO_CLIENT_ID=%s\nSP_DEMO_ESTABLISHMENT_ID=%s\nSP_DEMO_LOT_ID=%s\n"
            "SP_DEMO_CAMERA_ID=%s\nSP_DEMO_API_KEY_ID=%s\nSP_DEMO_API_KEY=%s\n",
            d->client, d->establishment, d->lot, d->camera, d->key_id, d->api_key);
    return ferror(f) ? SP_ERR_INTERNAL : SP_OK;
}

/* The demo client, ACTIVE: created under a fixed request id, so a second seed finds it. */
static sp_status demo_client(Sp__Tenancy__V1__ClientReply **c, session *s)
{
    Sp__Tenancy__V1__CreateClientRequest in = SP__TENANCY__V1__CREATE_CLIENT_REQUEST__INIT;
    in.name = "Demo Parking";
    sp_status st = spctl_call((ProtobufCMessage **)c, s->bus, "demo-seed", "spctl-demo-seed",
                              "tenancy", "CreateClient", &in.base,
                              &sp__tenancy__v1__client_reply__descriptor, NULL, s->a);
    if (st == SP_OK && strcmp((*c)->status, "PENDING") == 0) {
        Sp__Tenancy__V1__ApproveClientRequest ap = SP__TENANCY__V1__APPROVE_CLIENT_REQUEST__INIT;
        ap.id = (*c)->id;
        st = spctl_call((ProtobufCMessage **)c, s->bus, "demo-seed", s->rid, "tenancy",
                        "ApproveClient", &ap.base, &sp__tenancy__v1__client_reply__descriptor, NULL,
                        s->a);
    }
    return st;
}

static sp_status demo_site(Sp__Catalog__V1__EstablishmentReply **e, Sp__Catalog__V1__LotReply **l,
                           session *s, const char *client)
{
    Sp__Catalog__V1__CreateEstablishmentRequest ein =
        SP__CATALOG__V1__CREATE_ESTABLISHMENT_REQUEST__INIT;
    ein.client_id = (char *)client;
    ein.name = "Demo Mall";
    ein.store_type = "shopping";
    ein.address = "Av. Paulista, 1578";
    ein.city = "São Paulo";
    ein.state = "SP";
    ein.has_lat = ein.has_lng = 1;
    ein.lat = -23.5614;
    ein.lng = -46.6559;
    sp_status st = spctl_call((ProtobufCMessage **)e, s->bus, "demo-seed", s->rid, "catalog",
                              "CreateEstablishment", &ein.base,
                              &sp__catalog__v1__establishment_reply__descriptor,
                              "spctl-demo-seed:establishment", s->a);
    if (st != SP_OK) return st;
    static Sp__Catalog__V1__NewSlot slots[DEMO_SLOTS];
    static Sp__Catalog__V1__NewSlot *ptrs[DEMO_SLOTS];
    static char codes[DEMO_SLOTS][8];
    for (int i = 0; i < DEMO_SLOTS; i++) {
        sp__catalog__v1__new_slot__init(&slots[i]);
        snprintf(codes[i], sizeof(codes[i]), "%c%d", 'A' + i / DEMO_ROW, i % DEMO_ROW + 1);
        slots[i].slot_code = codes[i];
        /* the row's first two: accessible, its last: EV charging */
        slots[i].slot_type = i % DEMO_ROW < 2 ? "accessible" : i % DEMO_ROW == 9 ? "ev" : "regular";
        ptrs[i] = &slots[i];
    }
    Sp__Catalog__V1__CreateLotRequest lin = SP__CATALOG__V1__CREATE_LOT_REQUEST__INIT;
    lin.id = (*e)->id;
    lin.lot_code = "P1";
    lin.name = "Ground floor";
    lin.n_slots = DEMO_SLOTS;
    lin.slots = ptrs;
    return spctl_call((ProtobufCMessage **)l, s->bus, "demo-seed", s->rid, "catalog", "CreateLot",
                      &lin.base, &sp__catalog__v1__lot_reply__descriptor, "spctl-demo-seed:lot",
                      s->a);
}

sp_status spctl_demo_seed(int argc, char **argv)
{
    const char *out = NULL;
    bool help = false;
    size_t npos = 0;
    const spctl_opt opts[] = {{"--out", true, &out, NULL}};
    sp_status st = spctl_parse(argc, argv, opts, 1, NULL, 0, &npos, &help);
    if (st != SP_OK) return st;
    if (help) {
        fputs("usage: spctl demo-seed --out FILE\n\n"
              "Seeds the demo data through tenancy and catalog: client \"Demo Parking\"\n"
              "(ACTIVE), establishment \"Demo Mall\" in São Paulo, lot P1 with 40 slots,\n"
              "camera CAM-DEMO-01 with a new API key; writes their ids and the camera's key\n"
              "to FILE (0600). Seeding again finds the same data and gives the camera a new\n"
              "key.\n",
              stdout);
        return SP_OK;
    }
    if (out == NULL) return spctl_fail(SP_ERR_VALIDATION_FAILED, "demo-seed: --out is required");
    session s;
    st = open_session(&s, "demo-seed");
    if (st != SP_OK) return st;
    Sp__Tenancy__V1__ClientReply *c = NULL;
    Sp__Catalog__V1__EstablishmentReply *e = NULL;
    Sp__Catalog__V1__LotReply *l = NULL;
    Sp__Catalog__V1__CreateApiKeyReply *k = NULL;
    Sp__Catalog__V1__CameraReply *cam = NULL;
    st = demo_client(&c, &s);
    if (st == SP_OK) st = demo_site(&e, &l, &s, c->id);
    if (st == SP_OK)
        st = spctl_fresh_camera(&cam, &k, s.bus, s.a, "demo-seed", c->id, "CAM-DEMO-01", l->id,
                                "spctl-demo-seed:camera");
    if (st == SP_OK) {
        const demo d = {c->id, e->id, l->id, cam->id, k->id, k->api_key};
        st = spctl_write_atomic(out, 0600, write_demo, &d);
    }
    if (st == SP_OK)
        printf("demo: client %s \"Demo Parking\"; lot %s (P1, %d slots) of \"Demo Mall\";"
               " camera CAM-DEMO-01 %s\n",
               c->id, l->id, (int)l->slot_count, cam->id);
    close_session(&s);
    return st;
}
