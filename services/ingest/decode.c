/* decode.c -- what a camera sent, into the messages of ingest.proto: JSON (api.md's MVP
 * payload, through the gateway) read leniently (unknown fields ignored and counted; a
 * value of the wrong type in an item rejects that item only), or protobuf (a camera on
 * NATS). Which one: the SPBUS_H_* headers and Content-Type (ing_decode_*). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "ingest.h"
#include "spjson.h"

#define TEXT_MAX 64 /* hardwareCode, model name and version, firmware */
#define JSON_DEPTH 8

/* The body's form: JSON when the gateway forwarded it (Sp-Via: http; then it must say
 * application/json) or a NATS camera says application/json; protobuf otherwise. */
#define FORM_UNSUPPORTED (-1)

static bool is_type(const char *ct, const char *want)
{
    if (ct == NULL) return false;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, ";"), k = strlen(want);
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
        n--;
    return n == k && strncasecmp(ct, want, k) == 0;
}

static int form_of(spbus_req *req)
{
    const char *ct = spbus_req_header(req, "Content-Type");
    const char *via = spbus_req_header(req, ING_H_VIA);
    if (is_type(ct, "application/json")) return ING_FORM_JSON;
    if (via != NULL && strcmp(via, "http") == 0) return FORM_UNSUPPORTED;
    if (ct == NULL || is_type(ct, "application/protobuf") || is_type(ct, "application/x-protobuf"))
        return ING_FORM_PROTOBUF;
    return FORM_UNSUPPORTED;
}

static sp_status unsupported(spbus_req *req)
{
    return spsvc_fail(req, SP_ERR_UNSUPPORTED_MEDIA_TYPE,
                      "the body must be application/json (or protobuf over NATS)");
}

/* The body as a JSON object: SP_ERR_MALFORMED_JSON with the reason in why otherwise. */
static sp_status parse_json(cJSON **out, const char *body, size_t len, char *why, size_t whylen)
{
    *out = NULL;
    if (len == 0) {
        snprintf(why, whylen, "a JSON object body is required");
        return SP_ERR_MALFORMED_JSON;
    }
    if (spjson_parse(out, body, len, JSON_DEPTH, why, whylen) != SP_OK) {
        if (why[0] == '\0') snprintf(why, whylen, "malformed JSON");
        return SP_ERR_MALFORMED_JSON;
    }
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        snprintf(why, whylen, "the body must be a JSON object");
        return SP_ERR_MALFORMED_JSON;
    }
    return SP_OK;
}

/* A JSON string of at most max bytes copied into the arena, else NULL (*ok false when the
 * value is there but not such a string). */
static char *str_of(const cJSON *v, size_t max, bool *ok, sp_arena *a)
{
    *ok = true;
    if (v == NULL) return NULL;
    if (!cJSON_IsString(v) || strlen(v->valuestring) > max) {
        *ok = false;
        return NULL;
    }
    return sp_arena_strdup(a, v->valuestring);
}

/* ---- slot events -------------------------------------------------------------------------- */

static void item_from_json(Sp__Ingest__V1__SlotEventItem *it, unsigned *bad, long *unknown,
                           const cJSON *o, sp_arena *a)
{
    sp__ingest__v1__slot_event_item__init(it);
    *bad = 0;
    if (!cJSON_IsObject(o)) {
        *bad = ING_F_NOT_OBJECT;
        return;
    }
    /* the text fields of an item: JSON name, field, the bit of a bad value */
    static const struct {
        const char *name;
        size_t off;
        unsigned bit;
    } texts[] = {
        {"slotCode", offsetof(Sp__Ingest__V1__SlotEventItem, slot_code), ING_F_SLOT_CODE},
        {"status", offsetof(Sp__Ingest__V1__SlotEventItem, status), ING_F_STATUS},
        {"vehicle", offsetof(Sp__Ingest__V1__SlotEventItem, vehicle), ING_F_VEHICLE},
        {"occurredAt", offsetof(Sp__Ingest__V1__SlotEventItem, occurred_at), ING_F_OCCURRED_AT},
        {"eventId", offsetof(Sp__Ingest__V1__SlotEventItem, event_id), ING_F_EVENT_ID},
    };
    const cJSON *v;
    cJSON_ArrayForEach(v, o)
    {
        bool ok = true;
        const char *k = v->string;
        size_t t = 0;
        while (t < sizeof(texts) / sizeof(texts[0]) && strcmp(k, texts[t].name) != 0)
            t++;
        if (t < sizeof(texts) / sizeof(texts[0])) {
            *(char **)((char *)it + texts[t].off) = str_of(v, 64, &ok, a);
            if (!ok) *bad |= texts[t].bit;
        } else if (strcmp(k, "sequence") == 0) {
            int64_t seq = 0;
            if (spjson_int_in(v, 0, INT64_C(9007199254740992), &seq)) {
                it->has_sequence = 1;
                it->sequence = (uint64_t)seq;
            } else {
                *bad |= ING_F_SEQUENCE;
            }
        } else if (strcmp(k, "confidence") == 0) {
            if (cJSON_IsNumber(v)) {
                it->has_confidence = 1;
                it->confidence = v->valuedouble;
            } else {
                *bad |= ING_F_CONFIDENCE;
            }
        } else {
            (*unknown)++;
        }
    }
}

/* Reads the top level of the JSON body; the field errors into f. */
static sp_status events_from_json(ing_events_in *out, spsvc_fields *f, const cJSON *root,
                                  sp_arena *a)
{
    Sp__Ingest__V1__SlotEventsRequest *b = out->batch;
    const cJSON *items = NULL, *v;
    bool ok;
    cJSON_ArrayForEach(v, root)
    {
        const char *k = v->string;
        if (strcmp(k, "hardwareCode") == 0) {
            b->hardware_code = str_of(v, TEXT_MAX, &ok, a);
            if (!ok) spsvc_fields_add(f, "hardwareCode", "must be a string of at most 64 bytes");
        } else if (strcmp(k, "lotId") == 0) {
            b->lot_id = str_of(v, TEXT_MAX, &ok, a);
            if (!ok) spsvc_fields_add(f, "lotId", "must be a UUID");
        } else if (strcmp(k, "items") == 0) {
            items = v;
            if (!cJSON_IsArray(v)) spsvc_fields_add(f, "items", "must be an array");
        } else if (strcmp(k, "model") == 0) {
            if (!cJSON_IsObject(v)) {
                spsvc_fields_add(f, "model", "must be an object");
                continue;
            }
            Sp__Ingest__V1__Model *m = sp_arena_alloc(a, sizeof(*m));
            if (m == NULL) return SP_ERR_INTERNAL;
            sp__ingest__v1__model__init(m);
            const cJSON *mv;
            cJSON_ArrayForEach(mv, v)
            {
                if (strcmp(mv->string, "name") == 0) {
                    m->name = str_of(mv, TEXT_MAX, &ok, a);
                    if (!ok)
                        spsvc_fields_add(f, "model.name", "must be a string of at most 64 bytes");
                } else if (strcmp(mv->string, "version") == 0) {
                    m->version = str_of(mv, TEXT_MAX, &ok, a);
                    if (!ok)
                        spsvc_fields_add(f, "model.version",
                                         "must be a string of at most 64 bytes");
                } else {
                    out->unknown_fields++;
                }
            }
            b->model = m;
        } else {
            out->unknown_fields++;
        }
    }
    if (!cJSON_IsArray(items)) return SP_OK;
    int n = cJSON_GetArraySize(items);
    if (n > ING_MAX_ITEMS) { /* not read: 413 after the camera and lot checks */
        b->n_items = (size_t)n;
        return SP_OK;
    }
    b->items = sp_arena_alloc(a, (size_t)(n ? n : 1) * sizeof(Sp__Ingest__V1__SlotEventItem *));
    Sp__Ingest__V1__SlotEventItem *all = sp_arena_alloc(a, (size_t)(n ? n : 1) * sizeof(*all));
    out->bad = sp_arena_alloc(a, (size_t)(n ? n : 1) * sizeof(*out->bad));
    if (b->items == NULL || all == NULL || out->bad == NULL) return SP_ERR_INTERNAL;
    int i = 0;
    cJSON_ArrayForEach(v, items)
    {
        item_from_json(&all[i], &out->bad[i], &out->unknown_fields, v, a);
        b->items[i] = &all[i];
        i++;
    }
    b->n_items = (size_t)n;
    return SP_OK;
}

static long unknown_of(const ProtobufCMessage *m)
{
    return m != NULL ? (long)m->n_unknown_fields : 0;
}

sp_status ing_events_decode(ing_events_in *out, spsvc_fields *f, ing_form form, const void *body,
                            size_t len, sp_arena *a, char *why, size_t whylen)
{
    memset(out, 0, sizeof(*out));
    why[0] = '\0';
    if (form == ING_FORM_PROTOBUF) {
        ProtobufCAllocator al = spbus_arena_allocator(a);
        out->batch = sp__ingest__v1__slot_events_request__unpack(&al, len, body);
        if (out->batch == NULL) {
            snprintf(why, whylen, "malformed SlotEventsRequest");
            return SP_ERR_BAD_REQUEST;
        }
        out->unknown_fields = unknown_of(&out->batch->base);
        if (out->batch->model != NULL) out->unknown_fields += unknown_of(&out->batch->model->base);
        if (out->batch->n_items <= ING_MAX_ITEMS) {
            out->bad = sp_arena_alloc(a, (out->batch->n_items + 1) * sizeof(*out->bad));
            if (out->bad == NULL) return SP_ERR_INTERNAL;
            for (size_t i = 0; i < out->batch->n_items; i++) {
                out->bad[i] = 0;
                out->unknown_fields += unknown_of(&out->batch->items[i]->base);
            }
        }
        if (out->batch->hardware_code != NULL && strlen(out->batch->hardware_code) > TEXT_MAX)
            spsvc_fields_add(f, "hardwareCode", "must be a string of at most 64 bytes");
    } else {
        out->json = true;
        cJSON *root = NULL;
        sp_status s = parse_json(&root, body, len, why, whylen);
        if (s != SP_OK) return s;
        out->batch = sp_arena_alloc(a, sizeof(*out->batch));
        if (out->batch == NULL) {
            cJSON_Delete(root);
            return SP_ERR_INTERNAL;
        }
        sp__ingest__v1__slot_events_request__init(out->batch);
        s = events_from_json(out, f, root, a);
        cJSON_Delete(root);
        if (s != SP_OK) return s;
    }
    if (out->batch->hardware_code == NULL) spsvc_fields_add(f, "hardwareCode", "required");
    if (out->batch->lot_id == NULL) spsvc_fields_add(f, "lotId", "required");
    return SP_OK;
}

sp_status ing_decode_events_or_reply(ing_events_in *out, spbus_req *req)
{
    int form = form_of(req);
    if (form == FORM_UNSUPPORTED) return unsupported(req);
    spsvc_fields f;
    spsvc_fields_init(&f);
    size_t len = 0;
    const void *body = spbus_req_payload(req, &len);
    char why[160];
    sp_status s = ing_events_decode(out, &f, (ing_form)form, body, len, spbus_req_arena(req), why,
                                    sizeof(why));
    if (s != SP_OK) return spsvc_fail(req, s, why[0] ? why : "internal error");
    return spsvc_fields_or_reply(req, &f);
}

/* ---- heartbeats ---------------------------------------------------------------------------- */

/* The fields of a heartbeat's JSON object into h; bad values into f. */
static void heartbeat_from_json(Sp__Ingest__V1__HeartbeatRequest *h, long *unknown_fields,
                                spsvc_fields *f, const cJSON *root, sp_arena *a)
{
    const cJSON *v;
    bool ok;
    cJSON_ArrayForEach(v, root)
    {
        const char *k = v->string;
        int64_t n = 0;
        if (strcmp(k, "hardwareCode") == 0) {
            h->hardware_code = str_of(v, TEXT_MAX, &ok, a);
            if (!ok) spsvc_fields_add(f, "hardwareCode", "must be a string of at most 64 bytes");
        } else if (strcmp(k, "firmware") == 0) {
            h->firmware = str_of(v, TEXT_MAX, &ok, a);
            if (!ok) spsvc_fields_add(f, "firmware", "must be a string of at most 64 bytes");
        } else if (strcmp(k, "uptimeS") == 0) {
            if (spjson_int_in(v, 0, INT64_C(9007199254740992), &n)) {
                h->has_uptime_s = 1;
                h->uptime_s = n;
            } else {
                spsvc_fields_add(f, "uptimeS", "must be a whole number >= 0");
            }
        } else if (strcmp(k, "fps") == 0 || strcmp(k, "temperatureC") == 0) {
            bool fps = k[0] == 'f';
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) {
                spsvc_fields_add(f, fps ? "fps" : "temperatureC", "must be a number");
            } else if (fps) {
                h->has_fps = 1;
                h->fps = v->valuedouble;
            } else {
                h->has_temperature_c = 1;
                h->temperature_c = v->valuedouble;
            }
        } else {
            (*unknown_fields)++;
        }
    }
}

sp_status ing_heartbeat_decode(Sp__Ingest__V1__HeartbeatRequest **out, long *unknown_fields,
                               spsvc_fields *f, ing_form form, const void *body, size_t len,
                               sp_arena *a, char *why, size_t whylen)
{
    *out = NULL;
    *unknown_fields = 0;
    why[0] = '\0';
    Sp__Ingest__V1__HeartbeatRequest *h = NULL;
    if (form == ING_FORM_PROTOBUF) {
        ProtobufCAllocator al = spbus_arena_allocator(a);
        h = sp__ingest__v1__heartbeat_request__unpack(&al, len, body);
        if (h == NULL) {
            snprintf(why, whylen, "malformed HeartbeatRequest");
            return SP_ERR_BAD_REQUEST;
        }
        *unknown_fields = unknown_of(&h->base);
        if (h->firmware != NULL && strlen(h->firmware) > TEXT_MAX)
            spsvc_fields_add(f, "firmware", "must be a string of at most 64 bytes");
    } else {
        cJSON *root = NULL;
        sp_status s = parse_json(&root, body, len, why, whylen);
        if (s != SP_OK) return s;
        h = sp_arena_alloc(a, sizeof(*h));
        if (h == NULL) {
            cJSON_Delete(root);
            return SP_ERR_INTERNAL;
        }
        sp__ingest__v1__heartbeat_request__init(h);
        heartbeat_from_json(h, unknown_fields, f, root, a);
        cJSON_Delete(root);
    }
    if (h->hardware_code == NULL) spsvc_fields_add(f, "hardwareCode", "required");
    if (h->has_fps && (h->fps < 0 || h->fps > 1000)) spsvc_fields_add(f, "fps", "must be 0..1000");
    if (h->has_temperature_c && (h->temperature_c < -100 || h->temperature_c > 200))
        spsvc_fields_add(f, "temperatureC", "must be -100..200");
    *out = h;
    return SP_OK;
}

sp_status ing_decode_heartbeat_or_reply(Sp__Ingest__V1__HeartbeatRequest **out, spbus_req *req,
                                        long *unknown_fields)
{
    *out = NULL;
    *unknown_fields = 0;
    int form = form_of(req);
    if (form == FORM_UNSUPPORTED) return unsupported(req);
    spsvc_fields f;
    spsvc_fields_init(&f);
    size_t len = 0;
    const void *body = spbus_req_payload(req, &len);
    char why[160];
    Sp__Ingest__V1__HeartbeatRequest *h = NULL;
    sp_status s = ing_heartbeat_decode(&h, unknown_fields, &f, (ing_form)form, body, len,
                                       spbus_req_arena(req), why, sizeof(why));
    if (s != SP_OK) return spsvc_fail(req, s, why[0] ? why : "internal error");
    s = spsvc_fields_or_reply(req, &f);
    if (s == SP_OK) *out = h;
    return s;
}
