/* streams.c -- the JetStream streams of bus.md, created or updated by "spctl migrate"
 * with their limits (plain cnats: spbus has no JetStream helpers). */
#include <nats/nats.h>
#include <stdio.h>
#include <string.h>

#include "spctl.h"

#define NS_PER_S INT64_C(1000000000)
#define DAY_S INT64_C(86400)

typedef struct {
    const char *name;
    const char *subject;
    int64_t max_bytes; /* -1: unlimited (the server's max_file_store still bounds it) */
    int64_t max_age_s;
    jsDiscardPolicy discard;
} stream_def;

static const stream_def streams[] = {
    /* discard new: a full stream refuses, and ingest answers 503 instead of losing */
    {"SP_EVENTS", "sp.events.>", INT64_C(1) << 30, 7 * DAY_S, js_DiscardNew},
    {"SP_AUDIT", "sp.audit.>", -1, 365 * DAY_S, js_DiscardOld},
    {"SP_SLOT_STATUS", "sp.slot-status.v1.>", -1, 7 * DAY_S, js_DiscardOld},
};

static sp_status js_fail(const char *what, const char *stream, natsStatus ns, jsErrCode jerr)
{
    const char *detail = nats_GetLastError(NULL);

    return spctl_fail(SP_ERR_UNAVAILABLE, "migrate: %s %s failed: %s (jetstream error %d)%s%s",
                      what, stream, natsStatus_GetText(ns), (int)jerr, detail ? ": " : "",
                      detail ? detail : "");
}

/* Adds the stream, or updates it when it exists already (its limits may have changed). */
static sp_status ensure_stream(jsCtx *js, const stream_def *d)
{
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    const char *subjects[] = {d->subject};
    natsStatus ns;

    jsStreamConfig_Init(&cfg);
    cfg.Name = d->name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.Duplicates = 120 * NS_PER_S;
    cfg.MaxBytes = d->max_bytes;
    cfg.MaxAge = d->max_age_s * NS_PER_S;
    cfg.Discard = d->discard;

    ns = js_GetStreamInfo(&si, js, d->name, NULL, &jerr);
    if (ns == NATS_OK) {
        jsStreamInfo_Destroy(si);
        si = NULL;
        ns = js_UpdateStream(&si, js, &cfg, NULL, &jerr);
        jsStreamInfo_Destroy(si);
        return ns == NATS_OK ? SP_OK : js_fail("updating stream", d->name, ns, jerr);
    }
    if (ns != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
        return js_fail("looking up stream", d->name, ns, jerr);
    jerr = 0;
    ns = js_AddStream(&si, js, &cfg, NULL, &jerr);
    if (ns != NATS_OK && jerr == JSStreamNameExistErr) {
        /* created by someone else in between */
        jerr = 0;
        ns = js_UpdateStream(&si, js, &cfg, NULL, &jerr);
        jsStreamInfo_Destroy(si);
        return ns == NATS_OK ? SP_OK : js_fail("updating stream", d->name, ns, jerr);
    }
    jsStreamInfo_Destroy(si);
    if (ns != NATS_OK) return js_fail("creating stream", d->name, ns, jerr);
    printf("created stream %s\n", d->name);
    fflush(stdout);
    return SP_OK;
}

sp_status spctl_streams(const char *url, const char *user, const char *password)
{
    natsOptions *opts = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    sp_status s = SP_OK;
    natsStatus ns = natsOptions_Create(&opts);

    if (ns == NATS_OK) ns = natsOptions_SetURL(opts, url);
    if (ns == NATS_OK) ns = natsOptions_SetName(opts, "spctl");
    if (ns == NATS_OK) ns = natsOptions_SetTimeout(opts, 5000);
    if (ns == NATS_OK && user) ns = natsOptions_SetUserInfo(opts, user, password ? password : "");
    if (ns == NATS_OK) ns = natsConnection_Connect(&nc, opts);
    if (ns != NATS_OK) {
        s = spctl_fail(SP_ERR_UNAVAILABLE, "migrate: cannot connect to NATS at SP_NATS_URL: %s",
                       natsStatus_GetText(ns));
        goto out;
    }
    ns = natsConnection_JetStream(&js, nc, NULL);
    if (ns != NATS_OK) {
        s = spctl_fail(SP_ERR_UNAVAILABLE, "migrate: no JetStream context: %s",
                       natsStatus_GetText(ns));
        goto out;
    }
    for (size_t i = 0; s == SP_OK && i < sizeof streams / sizeof streams[0]; i++)
        s = ensure_stream(js, &streams[i]);
out:
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    /* cnats keeps library threads until nats_Close: release them so LeakSanitizer and
     * valgrind see a clean exit */
    nats_Close();
    return s;
}
