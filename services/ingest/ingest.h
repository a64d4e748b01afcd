/* ingest.h -- the ingest service (api.md, "Ingest"; bus.md): cameras' slot events and
 * heartbeats, over HTTP through the gateway or straight over NATS, authenticated,
 * checked against an in-memory copy of the catalog and written to SP_EVENTS. Internal to
 * services/ingest/. Prefix: ing_. */
#ifndef SP_INGEST_H
#define SP_INGEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sp/ingest/v1/events.pb-c.h"
#include "sp/ingest/v1/ingest.pb-c.h"
#include "spcrypto.h"
#include "spsvc.h"

#define ING_MAX_ITEMS 1000               /* items in one batch (api.md) */
#define ING_WINDOW_S 300                 /* HMAC timestamps and future occurredAt (api.md) */
#define ING_TTL_US INT64_C(60000000)     /* a copy of the catalog expires (bus.md) */
#define ING_MISS_TTL_US INT64_C(5000000) /* what does not exist is asked again after this */
#define ING_CALL_MS 2000                 /* a call to catalog or tenancy */
#define ING_PUBLISH_MS 3000              /* every ack of a batch, below the gateway's 5 s */
#define ING_ID_LEN 40
/* Set by the gateway on what it forwards ("http"): such a body must say application/json. */
#define ING_H_VIA "Sp-Via"
#define ING_KEY_ID_LEN 72

/* The event id namespace of api.md: eventId = UUIDv5(ns,
 * cameraId|lotId|slotCode|occurredAt|status). */
#define ING_EVENT_NS "5d0b7c1e-2f4a-4b8e-9c3d-6a1e0f2b4c59"

/* ---- the read model (model.c) ---------------------------------------------------------- */

typedef struct {
    bool exists;
    char id[ING_ID_LEN], key_id[ING_KEY_ID_LEN], client_id[ING_ID_LEN];
    uint8_t sha256[32];
    char secret[64]; /* the secret's characters, opened with SP_MASTER_KEY */
    size_t secret_len;
    bool revoked;
} ing_key;

typedef struct {
    bool exists;
    char id[ING_ID_LEN], client_id[ING_ID_LEN], lot_id[ING_ID_LEN], key_id[ING_KEY_ID_LEN];
    bool enabled;
} ing_camera;

typedef struct {
    char id[ING_ID_LEN];
    bool active;
} ing_slot;

/* A lot and its slots, shared by the requests using it (reference counted). */
typedef struct {
    atomic_int refs;
    char id[ING_ID_LEN], client_id[ING_ID_LEN], establishment_id[ING_ID_LEN];
    sp_map *slots; /* slot code -> ing_slot */
} ing_lot;

typedef struct ing_model ing_model;

/* Subscribes to the change subjects of catalog and tenancy (bus.md), which drop entries. */
sp_status ing_model_start(ing_model **out, spsvc *kit, const uint8_t master_key[32]);
void ing_model_free(ing_model *m);
/* Each answers from memory or asks catalog (tenancy) once and remembers the answer, found or
 * not; SP_ERR_UNAVAILABLE when they do not answer in time. */
/* Key 'key_id' and, when camera_code is not NULL, that camera of the key's client. */
sp_status ing_model_device(ing_model *m, spbus_req *req, const char *key_id,
                           const char *camera_code, ing_key *key, ing_camera *cam);
/* *lot NULL when the lot does not exist; else release it with ing_lot_release. */
sp_status ing_model_lot(ing_model *m, spbus_req *req, const char *lot_id, ing_lot **lot);
void ing_lot_release(ing_lot *lot);
/* The client's status ("ACTIVE", ...; "" when it does not exist) into status[16]. */
sp_status ing_model_client(ing_model *m, spbus_req *req, const char *client_id, char status[16]);

/* ---- what a camera sent (decode.c) ---------------------------------------------------- */

/* The fields of an item, as bits of ing_events_in.bad: a JSON value of the wrong type. */
enum {
    ING_F_SLOT_CODE = 1u << 0,
    ING_F_STATUS = 1u << 1,
    ING_F_VEHICLE = 1u << 2,
    ING_F_OCCURRED_AT = 1u << 3,
    ING_F_EVENT_ID = 1u << 4,
    ING_F_SEQUENCE = 1u << 5,
    ING_F_CONFIDENCE = 1u << 6,
    ING_F_NOT_OBJECT = 1u << 7, /* the item itself is no object */
};

typedef struct {
    Sp__Ingest__V1__SlotEventsRequest *batch; /* in the request's arena */
    unsigned *bad;                            /* per item: ING_F_* of the fields that were bad */
    long unknown_fields;                      /* ignored and counted (api.md) */
    bool json;                                /* came as JSON (else protobuf) */
} ing_events_in;

/* The pure decoders (no request; tests/fuzz/fuzz_ingest.c): the body in 'form', in arena
 * 'a'. SP_OK with *out and the top-level field errors in f (for the caller to reply);
 * SP_ERR_MALFORMED_JSON or SP_ERR_BAD_REQUEST with the reason in why; SP_ERR_INTERNAL on
 * OOM. */
typedef enum { ING_FORM_JSON, ING_FORM_PROTOBUF } ing_form;
sp_status ing_events_decode(ing_events_in *out, spsvc_fields *f, ing_form form, const void *body,
                            size_t len, sp_arena *a, char *why, size_t whylen);
sp_status ing_heartbeat_decode(Sp__Ingest__V1__HeartbeatRequest **out, long *unknown_fields,
                               spsvc_fields *f, ing_form form, const void *body, size_t len,
                               sp_arena *a, char *why, size_t whylen);
/* Decodes the payload of a request by its Content-Type: JSON (the gateway's, api.md's MVP
 * payload, unknown fields ignored) or protobuf (a NATS camera, no Content-Type). Replies
 * 415, 400 malformed_json / bad_request or validation_failed (top-level fields) and
 * returns their status. */
sp_status ing_decode_events_or_reply(ing_events_in *out, spbus_req *req);
sp_status ing_decode_heartbeat_or_reply(Sp__Ingest__V1__HeartbeatRequest **out, spbus_req *req,
                                        long *unknown_fields);

/* ---- the process ------------------------------------------------------------------------- */

typedef struct {
    uint8_t master_key[32];
    ing_model *model;
    spbus_js_batch **js; /* per worker, made on first use */
} ing_svc;

static inline ing_svc *ing_of(const spbus_req *req)
{
    return spsvc_req_user(req);
}

/* events.c */
void events_register(spsvc *kit);

#endif
