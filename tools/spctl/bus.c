/* bus.c -- the operator's calls to the services on the bus: one connection, one call helper
 * that prints what a service refused. */
#include <stdio.h>
#include <time.h>

#include "spbus.h"
#include "spctl.h"

#define CONNECT_WAIT_MS 5000
#define CALL_TIMEOUT_MS 10000

sp_status spctl_bus_connect(spbus **out, const char *cmd)
{
    const char *user = spctl_env("SP_NATS_USER"), *url = spctl_env("SP_NATS_URL");
    spbus_opts bo = {.url = url != NULL ? url : "nats://127.0.0.1:4222",
                     .user = user != NULL ? user : "spctl",
                     .password = spctl_env("SP_NATS_PASSWORD"),
                     .name = "spctl",
                     .connections = 1};
    *out = NULL;
    sp_status s = spbus_connect(out, &bo);
    for (int waited = 0; s == SP_OK && !spbus_connected(*out) && waited < CONNECT_WAIT_MS;
         waited += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (s != SP_OK || !spbus_connected(*out)) {
        spbus_destroy(*out);
        *out = NULL;
        return spctl_fail(SP_ERR_UNAVAILABLE, "%s: cannot connect to NATS", cmd);
    }
    return SP_OK;
}

sp_status spctl_call(ProtobufCMessage **out, spbus *bus, const char *cmd, const char *rid,
                     const char *api, const char *method, const ProtobufCMessage *in,
                     const ProtobufCMessageDescriptor *reply_desc, const char *key, sp_arena *a)
{
    Sp__V1__RequestContext ctx = SP__V1__REQUEST_CONTEXT__INIT;
    Sp__V1__Error *err = NULL;
    char subject[96];
    ctx.request_id = (char *)rid;
    ctx.role = "service";
    ctx.idempotency_key = (char *)key;
    snprintf(subject, sizeof(subject), "sp.%s.v1.%s", api, method);
    sp_status s = spbus_request(out, &err, bus, subject, &ctx, in, reply_desc, CALL_TIMEOUT_MS, a);
    if (s == SP_OK && *out == NULL) s = SP_ERR_INTERNAL;
    if (s == SP_OK) return SP_OK;
    if (err == NULL)
        return spctl_fail(s, "%s: %s: %s", cmd, method,
                          s == SP_ERR_UNAVAILABLE ? "no answer in time" : sp_error_code(s));
    for (size_t i = 0; i < err->n_fields; i++)
        fprintf(stderr, "spctl: %s: %s\n", err->fields[i]->path, err->fields[i]->reason);
    return spctl_fail(s, "%s: %s: %s (%s)", cmd, method, err->message != NULL ? err->message : "",
                      err->code);
}
