/* site_fixture.h -- establishments, lots and slots made by the admin over HTTP, and fresh
 * names and codes: what the suites of the catalog and of ingest build their sites from.
 * After tenancy_fixture.h. */
#ifndef SITE_FIXTURE_H
#define SITE_FIXTURE_H

#include "tenancy_fixture.h"

/* The id of what a call made (201 asserted), malloc'd. */
FIXTURE char *made_(int line, const char *path, const char *body)
{
    sptest_resp *r = must_(line, "POST", path, ADMIN, body, 201);
    const char *id = sptest_jstr(r, "id");
    ck_assert_msg(id != NULL, "line %d: no id: %s", line, r->body);
    char *out = strdup(id);
    sptest_resp_free(r);
    return out;
}
#define MADE(p, b) made_(__LINE__, p, b)

FIXTURE char *new_establishment(const char *client, const char *name, const char *city)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"clientId\":\"%s\",\"name\":\"%s\",\"city\":\"%s\"}", client,
             name, city);
    return MADE("/v1/establishments", body);
}

FIXTURE char *new_lot(const char *est, const char *code, const char *extra)
{
    char path[160], body[4096];
    snprintf(path, sizeof(path), "/v1/establishments/%s/lots", est);
    snprintf(body, sizeof(body), "{\"lotCode\":\"%s\"%s%s}", code, extra ? "," : "",
             extra ? extra : "");
    return MADE(path, body);
}

FIXTURE char *new_slot(const char *lot, const char *code)
{
    char path[160], body[256];
    snprintf(path, sizeof(path), "/v1/lots/%s/slots", lot);
    snprintf(body, sizeof(body), "{\"slotCode\":\"%s\",\"slotType\":\"regular\"}", code);
    return MADE(path, body);
}

/* A fresh name or code: unique across tests and runs, at most 'max' characters of
 * [A-Za-z0-9_-] after 'tag'. */
FIXTURE void fresh(char *out, size_t len, const char *tag, size_t max)
{
    static unsigned n;
    char buf[64];
    snprintf(buf, sizeof(buf), "%s%x%x", tag, (unsigned)getpid() & 0xfff, ++n);
    if (strlen(buf) > max) memmove(buf, buf + strlen(buf) - max, max + 1);
    snprintf(out, len, "%s", buf);
}

/* The harness with every service, the gateway last, as the suites of ingest and the
 * projection run it: sets E; *ingest and *projection (either may be NULL) get those two,
 * for a suite that stops or watches one. */
FIXTURE void start_every_service(const char *suite, sptest_proc **ingest, sptest_proc **projection)
{
    E = sptest_start(suite, SPTEST_ALL);
    sptest_start_service(E, "auth", NULL);
    sptest_start_service(E, "tenancy", NULL);
    sptest_start_service(E, "catalog", NULL);
    sptest_proc *in = sptest_start_service(E, "ingest", NULL);
    sptest_proc *pr = sptest_start_service(E, "projection", NULL);
    static const char *const gw_env[] = {"SP_BUS_TIMEOUT_MS=15000", NULL};
    sptest_start_service(E, "gateway", gw_env);
    if (ingest != NULL) *ingest = in;
    if (projection != NULL) *projection = pr;
}

#endif
