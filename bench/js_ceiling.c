/* js_ceiling.c -- the JetStream ceiling of `make bench`'s ingest figures (bench/ingest.sh):
 * the events ingest publishes (SlotEvent protobufs of the same fields and sizes, a
 * Nats-Msg-Id each) published by THREADS threads in batches of BATCH through spbus's batch
 * of async publishes, each batch waiting for all its acks as ingest's 202 does, for
 * SECONDS, into a stream of SP_EVENTS' configuration (file storage, 2 min dedup window,
 * discard new) of its own, BENCH_EVENTS on bench.events.>, deleted at the end. Prints
 * {"events_per_s":..,"events":..,"seconds":..}.
 *
 * usage: bench_js NATS_URL USER PASSWORD THREADS BATCH SECONDS */
#include <nats/nats.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sp/ingest/v1/events.pb-c.h"
#include "spbus.h"
#include "spcrypto.h"

#define STREAM "BENCH_EVENTS"

static spbus *g_bus;
static int g_batch;
static int64_t g_stop_us;

typedef struct {
    int index;
    long events, failed;
} worker;

static void *publish(void *arg)
{
    worker *w = arg;
    spbus_js_batch *jb = NULL;
    if (spbus_js_batch_create(&jb, g_bus, w->index) != SP_OK) return NULL;
    spbus_js_msg_out *msgs = calloc((size_t)g_batch, sizeof(*msgs));
    uint8_t(*bufs)[512] = calloc((size_t)g_batch, 512);
    char(*ids)[SPCRYPTO_UUID_LEN] = calloc((size_t)g_batch, SPCRYPTO_UUID_LEN);
    char client[SPCRYPTO_UUID_LEN], est[SPCRYPTO_UUID_LEN], lot[SPCRYPTO_UUID_LEN],
        cam[SPCRYPTO_UUID_LEN], subject[160];
    spcrypto_uuid_v4(client);
    spcrypto_uuid_v4(est);
    spcrypto_uuid_v4(lot);
    spcrypto_uuid_v4(cam);
    snprintf(subject, sizeof(subject), "bench.events.slot.%s.%s", client, lot);
    char (*slots)[SPCRYPTO_UUID_LEN] = calloc((size_t)g_batch, SPCRYPTO_UUID_LEN);
    for (int k = 0; k < g_batch && slots != NULL; k++)
        spcrypto_uuid_v4(slots[k]);
    while (msgs != NULL && bufs != NULL && ids != NULL && slots != NULL &&
           sp_monotonic_us() < g_stop_us) {
        int64_t now = sp_now_us();
        for (int k = 0; k < g_batch; k++) {
            char code[16];
            snprintf(code, sizeof(code), "S%d", k);
            spcrypto_uuid_v4(ids[k]);
            Sp__Ingest__V1__SlotEvent ev = SP__INGEST__V1__SLOT_EVENT__INIT;
            ev.event_id = ids[k];
            ev.client_id = client;
            ev.establishment_id = est;
            ev.lot_id = lot;
            ev.slot_id = slots[k];
            ev.slot_code = code;
            ev.camera_id = cam;
            ev.has_status = ev.has_vehicle = ev.has_occurred_at = ev.has_received_at = 1;
            ev.status = 1 + (int)(w->events & 1);
            ev.vehicle = 1;
            ev.occurred_at = now;
            ev.received_at = now;
            size_t len = sp__ingest__v1__slot_event__get_packed_size(&ev);
            if (len > sizeof(bufs[k])) return NULL;
            sp__ingest__v1__slot_event__pack(&ev, bufs[k]);
            msgs[k] = (spbus_js_msg_out){subject, bufs[k], len, ids[k]};
        }
        size_t dups = 0;
        if (spbus_js_publish_all(jb, msgs, (size_t)g_batch, &dups, 5000) == SP_OK)
            w->events += g_batch;
        else
            w->failed++;
    }
    free(msgs);
    free(bufs);
    free(ids);
    free(slots);
    spbus_js_batch_destroy(jb);
    return NULL;
}

/* Creates (add) or deletes the bench stream, over a plain cnats connection. */
static int stream(const char *url, const char *user, const char *pw, bool add)
{
    natsConnection *nc = NULL;
    natsOptions *o = NULL;
    jsCtx *js = NULL;
    jsErrCode jerr = 0;
    natsStatus ns = natsOptions_Create(&o);
    if (ns == NATS_OK) ns = natsOptions_SetURL(o, url);
    if (ns == NATS_OK) ns = natsOptions_SetUserInfo(o, user, pw);
    if (ns == NATS_OK) ns = natsConnection_Connect(&nc, o);
    if (ns == NATS_OK) ns = natsConnection_JetStream(&js, nc, NULL);
    if (ns == NATS_OK && add) {
        jsStreamConfig cfg;
        const char *subjects[] = {"bench.events.>"};
        jsStreamConfig_Init(&cfg);
        cfg.Name = STREAM;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = js_FileStorage;
        cfg.Retention = js_LimitsPolicy;
        cfg.Duplicates = INT64_C(120) * 1000000000;
        cfg.MaxBytes = INT64_C(1) << 30;
        cfg.Discard = js_DiscardNew;
        jsStreamInfo *si = NULL;
        (void)js_DeleteStream(js, STREAM, NULL, &jerr); /* a run that died before */
        ns = js_AddStream(&si, js, &cfg, NULL, &jerr);
        jsStreamInfo_Destroy(si);
    } else if (ns == NATS_OK) {
        ns = js_DeleteStream(js, STREAM, NULL, &jerr);
    }
    if (ns != NATS_OK)
        fprintf(stderr, "bench_js: stream %s: %s (%d)\n", add ? "add" : "delete",
                natsStatus_GetText(ns), (int)jerr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(o);
    return ns == NATS_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: bench_js NATS_URL USER PASSWORD THREADS BATCH SECONDS\n");
        return 2;
    }
    int threads = atoi(argv[4]), seconds = atoi(argv[6]);
    g_batch = atoi(argv[5]);
    if (threads < 1 || threads > 64 || g_batch < 1 || g_batch > 1000 || seconds < 1) return 2;
    if (stream(argv[1], argv[2], argv[3], true) != 0) return 1;
    spbus_opts o = {.url = argv[1], .user = argv[2], .password = argv[3], .name = "bench_js",
                    .connections = 1}; /* as a service of the kit */
    if (spbus_connect(&g_bus, &o) != SP_OK) return 1;
    for (int i = 0; i < 100 && !spbus_connected(g_bus); i++)
        usleep(50 * 1000);
    worker w[64];
    pthread_t t[64];
    int64_t start = sp_monotonic_us();
    g_stop_us = start + (int64_t)seconds * 1000000;
    for (int i = 0; i < threads; i++) {
        w[i] = (worker){.index = i};
        pthread_create(&t[i], NULL, publish, &w[i]);
    }
    long events = 0, failed = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        events += w[i].events;
        failed += w[i].failed;
    }
    double took = (double)(sp_monotonic_us() - start) / 1e6;
    spbus_destroy(g_bus);
    int rc = stream(argv[1], argv[2], argv[3], false);
    printf("{\"events_per_s\":%.0f,\"events\":%ld,\"failed_batches\":%ld,\"seconds\":%.2f}\n",
           (double)events / took, events, failed, took);
    nats_Close();
    return rc;
}
