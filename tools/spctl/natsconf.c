/* natsconf.c -- "spctl nats-config": writes the nats-server 2.9 config of a stack:
 * listen address, JetStream limits, max_payload, the accounts with what they share, and
 * the users with their permissions (tables below), passwords taken from the environment
 * (gen-secrets). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spctl.h"

#define MAX_SUBJ 12

/* The accounts: the stack's own processes share SP (JetStream, every service subject);
 * integrators and cameras each live in an account of their own, which sees only what SP
 * exports to it. An outside user can thus never make the server deliver into SP's
 * subjects (it cannot create consumers there), touch SP's streams or consumers beyond the
 * reads exported, or read another account's replies (each account's _INBOX is its own). */
typedef enum { ACC_SP, ACC_INTEGRATORS, ACC_CAMERAS, ACC_COUNT } nats_account;
static const char *const account_names[ACC_COUNT] = {"SP", "INTEGRATORS", "CAMERAS"};

/* One NATS user: where its password comes from, its account and what it may publish and
 * subscribe there. Services that answer other accounts get allow_responses so they can
 * answer requests on any reply subject (the replies of imported services arrive on _R_
 * subjects); those that consume JetStream answer on _SP_INBOX.> instead: nats-server 2.9
 * records every message delivered with a reply subject to an allow_responses client (each
 * JetStream delivery's $JS.ACK subject, which an explicit publish permission then never
 * clears) for two minutes and walks that whole record on every delivery once it holds
 * 4,096 of them (client.pruneReplyPerms): the projection's consumer fell to a few hundred
 * events a second with nats-server on a full core (bench/results, the first ingest run). */
typedef struct {
    const char *user;     /* fixed name, or NULL: taken from user_env */
    const char *user_env; /* "SP_NATS_SUBSCRIBER_USER" */
    const char *user_def; /* default when user_env is unset */
    const char *pass_env; /* "SP_NATS_AUTH_PASSWORD" */
    const char *pass_def; /* NULL: required */
    nats_account account;
    bool allow_responses;
    const char *pub[MAX_SUBJ];
    const char *sub[MAX_SUBJ];
} nats_user;

/* The request subjects of every API, so that the services can call each other. */
#define REQUESTS "sp.*.v1.*"
#define SP_INBOX "_SP_INBOX.>"
/* A durable pull consumer of stream S (create, info, next message, ack): only the streams
 * a process consumes, never $JS.API.> (which deletes any stream). */
#define CONSUMES(S)                                                                                \
    "$JS.API.CONSUMER.*." S, "$JS.API.CONSUMER.*." S ".>",                                         \
        "$JS.API.CONSUMER.DURABLE.CREATE." S ".>", "$JS.API.CONSUMER.MSG.NEXT." S ".>",            \
        "$JS.ACK." S ".>"
/* What integrators may read of SP_SLOT_STATUS: its info and a message by sequence or by
 * last subject (replay), nothing that creates, lists or deletes a consumer. In their
 * account these are under the API prefix $JS.SP.API (cnats: jsOptions.Prefix), since a
 * JetStream API subject of their own would be answered by their own account. */
#define SLOT_STATUS_INFO "$JS.API.STREAM.INFO.SP_SLOT_STATUS"
#define SLOT_STATUS_GET "$JS.API.STREAM.MSG.GET.SP_SLOT_STATUS"
#define SP_API_INFO "$JS.SP.API.STREAM.INFO.SP_SLOT_STATUS"
#define SP_API_GET "$JS.SP.API.STREAM.MSG.GET.SP_SLOT_STATUS"

/* clang-format off */
static const nats_user users[] = {
    /* The gateway calls every API and reads the change and slot-status subjects for its
     * caches and SSE streams; JetStream for the SSE replay of SP_SLOT_STATUS. */
    {"gateway", NULL, NULL, "SP_NATS_GATEWAY_PASSWORD", NULL, ACC_SP, false,
     {REQUESTS, CONSUMES("SP_SLOT_STATUS"), SLOT_STATUS_INFO, SLOT_STATUS_GET, "$JS.FC.>"},
     {SP_INBOX, "sp.catalog.changed.>", "sp.tenancy.changed.>", "sp.auth.changed.>",
      "sp.slot-status.v1.>"}},
    /* each service: serves its API, calls the others, writes its audit outbox (a publish
     * acknowledged by JetStream: no API needed) and its change notifications, consumes
     * its own streams only, answers on any reply subject (those that consume a stream: on
     * _SP_INBOX.>, see above) */
    {"auth", NULL, NULL, "SP_NATS_AUTH_PASSWORD", NULL, ACC_SP, true,
     {REQUESTS, "sp.audit.>", "sp.auth.changed.>"},
     {"sp.auth.v1.*", SP_INBOX}},
    {"tenancy", NULL, NULL, "SP_NATS_TENANCY_PASSWORD", NULL, ACC_SP, false,
     {REQUESTS, SP_INBOX, "sp.audit.>", "sp.tenancy.changed.>", CONSUMES("SP_AUDIT")},
     {"sp.tenancy.v1.*", SP_INBOX}},
    {"catalog", NULL, NULL, "SP_NATS_CATALOG_PASSWORD", NULL, ACC_SP, true,
     {REQUESTS, "sp.audit.>", "sp.catalog.changed.>"},
     {"sp.catalog.v1.*", SP_INBOX, "sp.tenancy.changed.>"}},
    {"ingest", NULL, NULL, "SP_NATS_INGEST_PASSWORD", NULL, ACC_SP, true,
     {REQUESTS, "sp.audit.>", "sp.events.>", "$JS.API.STREAM.INFO.SP_EVENTS"},
     {"sp.ingest.v1.*", SP_INBOX, "sp.catalog.changed.>", "sp.tenancy.changed.>"}},
    {"projection", NULL, NULL, "SP_NATS_PROJECTION_PASSWORD", NULL, ACC_SP, false,
     {REQUESTS, SP_INBOX, "sp.audit.>", "sp.slot-status.v1.>", CONSUMES("SP_EVENTS")},
     {"sp.status.v1.*", SP_INBOX, "sp.catalog.changed.>", "sp.tenancy.changed.>"}},
    /* the operator: migrations, streams, camsim, diagnostics */
    {"spctl", NULL, NULL, "SP_NATS_SPCTL_PASSWORD", NULL, ACC_SP, false, {">"}, {">"}},
    /* integrations: the public slot-status subjects, and reading SP_SLOT_STATUS */
    {NULL, "SP_NATS_SUBSCRIBER_USER", "subscriber", "SP_NATS_SUBSCRIBER_PASSWORD", "subscriber",
     ACC_INTEGRATORS, false,
     {SP_API_INFO, SP_API_GET},
     {"sp.slot-status.v1.>", "_INBOX.>"}},
    /* cameras that speak NATS: the two ingest subjects, replies on their own inboxes */
    {NULL, "SP_NATS_CAMERA_USER", "camera", "SP_NATS_CAMERA_PASSWORD", "camera", ACC_CAMERAS,
     false,
     {"sp.ingest.v1.SlotEvents", "sp.ingest.v1.Heartbeat"},
     {"_INBOX.>"}},
};

/* What SP lends the other accounts: "stream" (SP's messages seen there) or "service"
 * (requests from there answered in SP, the replies routed back). */
static const struct {
    const char *kind;
    const char *subject;
    nats_account to;
    const char *local; /* the subject in the importing account; NULL: the same */
} shares[] = {
    {"stream", "sp.slot-status.v1.>", ACC_INTEGRATORS, NULL},
    {"service", SLOT_STATUS_INFO, ACC_INTEGRATORS, SP_API_INFO},
    {"service", SLOT_STATUS_GET, ACC_INTEGRATORS, SP_API_GET},
    {"service", "sp.ingest.v1.SlotEvents", ACC_CAMERAS, NULL},
    {"service", "sp.ingest.v1.Heartbeat", ACC_CAMERAS, NULL},
};
/* clang-format on */

static void help(void)
{
    fputs("usage: spctl nats-config --listen HOST:PORT --store DIR --out FILE [--http-port N]\n\n"
          "Writes a nats-server config (mode 0600) with JetStream (store DIR, 256MB memory,\n"
          "4GB file), max_payload 8MB and the users of the stack. Passwords come from the\n"
          "environment (spctl gen-secrets):\n",
          stdout);
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
        const nats_user *u = &users[i];

        if (u->user)
            printf("  %-12s password $%s\n", u->user, u->pass_env);
        else
            printf("  $%s (default %s), password $%s (default %s)\n", u->user_env, u->user_def,
                   u->pass_env, u->pass_def);
    }
}

/* A value we write inside double quotes: printable ASCII without '"', '\\' or '$'. */
static bool quotable(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c < 0x20 || c > 0x7e || c == '"' || c == '\\') return false;
    }
    return true;
}

static void write_list(FILE *f, const char *const *subj)
{
    fputc('[', f);
    for (size_t i = 0; i < MAX_SUBJ && subj[i]; i++)
        fprintf(f, "%s\"%s\"", i ? ", " : "", subj[i]);
    fputc(']', f);
}

/* One entry of an account's users: name, password, permissions. */
static sp_status write_user(FILE *f, const nats_user *u)
{
    const char *name = u->user;
    const char *pass = spctl_env(u->pass_env);

    if (!name) {
        name = spctl_env(u->user_env);
        if (!name) name = u->user_def;
    }
    if (!pass) pass = u->pass_def;
    if (!pass)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "nats-config: %s is not set (source the secrets file)", u->pass_env);
    if (!quotable(name) || !*name)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "nats-config: user name of %s must be printable ASCII without quotes",
                          u->user ? u->user : u->user_env);
    if (!quotable(pass))
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "nats-config: %s must be printable ASCII without quotes", u->pass_env);
    fprintf(f, "      {\n        user: \"%s\"\n        password: \"%s\"\n", name, pass);
    fputs("        permissions: {\n          publish: { allow: ", f);
    write_list(f, u->pub);
    fputs(" }\n          subscribe: { allow: ", f);
    write_list(f, u->sub);
    fputs(" }\n", f);
    if (u->allow_responses) fputs("          allow_responses: true\n", f);
    fputs("        }\n      }\n", f);
    return SP_OK;
}

typedef struct {
    const char *listen, *store, *host;
    long http_port;
} nats_args;

static sp_status write_config(FILE *f, const void *ud)
{
    const nats_args *a = ud;
    const char *listen = a->listen, *store = a->store, *host = a->host;
    long http_port = a->http_port;
    fputs("# nats.conf -- generated by spctl nats-config; edit the table in\n"
          "# tools/spctl/natsconf.c instead. Holds passwords: mode 0600.\n",
          f);
    fprintf(f, "listen: \"%s\"\n", listen);
    if (http_port > 0) fprintf(f, "http: \"%s:%ld\"\n", host, http_port);
    fputs("max_payload: 8388608\n", f);
    fprintf(f,
            "jetstream {\n  store_dir: \"%s\"\n  max_memory_store: 268435456\n"
            "  max_file_store: 4294967296\n}\n",
            store);
    fputs("accounts {\n", f);
    for (int a = 0; a < ACC_COUNT; a++) {
        fprintf(f, "  %s {\n", account_names[a]);
        if (a == ACC_SP) fputs("    jetstream: enabled\n", f);
        fputs("    users: [\n", f);
        for (size_t i = 0; i < sizeof users / sizeof users[0]; i++) {
            const nats_user *u = &users[i];
            if ((int)u->account != a) continue;
            sp_status s = write_user(f, u);
            if (s != SP_OK) return s;
        }
        fputs("    ]\n", f);
        for (int pass = 0; pass < 2; pass++) { /* exports of SP, imports of the others */
            bool any = false;
            for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++) {
                bool mine = pass == 0 ? a == ACC_SP : (int)shares[i].to == a;
                if (!mine) continue;
                if (!any) fprintf(f, "    %s: [\n", pass == 0 ? "exports" : "imports");
                any = true;
                if (pass == 0)
                    fprintf(f, "      { %s: \"%s\", accounts: [\"%s\"] }\n", shares[i].kind,
                            shares[i].subject, account_names[shares[i].to]);
                else if (shares[i].local != NULL)
                    fprintf(f, "      { %s: { account: \"SP\", subject: \"%s\" }, to: \"%s\" }\n",
                            shares[i].kind, shares[i].subject, shares[i].local);
                else
                    fprintf(f, "      { %s: { account: \"SP\", subject: \"%s\" } }\n",
                            shares[i].kind, shares[i].subject);
            }
            if (any) fputs("    ]\n", f);
        }
        fputs("  }\n", f);
    }
    fputs("}\n", f);
    return SP_OK;
}

sp_status spctl_nats_config(int argc, char **argv)
{
    const char *listen = NULL, *store = NULL, *out = NULL, *http = NULL;
    bool want_help = false;
    const spctl_opt opts[] = {
        {"--listen", true, &listen, NULL},
        {"--store", true, &store, NULL},
        {"--out", true, &out, NULL},
        {"--http-port", true, &http, NULL},
    };
    sp_status s = spctl_parse(argc, argv, opts, 4, NULL, 0, NULL, &want_help);
    long http_port = 0;
    char host[256] = "";

    if (s != SP_OK) return s;
    if (want_help) {
        help();
        return SP_OK;
    }
    if (!listen || !store || !out)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "nats-config: --listen, --store and --out are required (see --help)");
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;

    if (!colon || colon == listen || !end || *end || port < 1 || port > 65535 ||
        (size_t)(colon - listen) >= sizeof host || !quotable(listen))
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "nats-config: --listen must be HOST:PORT, got '%s'", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (http) {
        http_port = strtol(http, &end, 10);
        if (!*http || *end || http_port < 1 || http_port > 65535)
            return spctl_fail(SP_ERR_VALIDATION_FAILED,
                              "nats-config: --http-port must be 1..65535, got '%s'", http);
    }
    if (!quotable(store) || !*store)
        return spctl_fail(SP_ERR_VALIDATION_FAILED,
                          "nats-config: --store must be a path without quotes or backslashes");

    const nats_args a = {listen, store, host, http_port};
    return spctl_write_atomic(out, 0600, write_config, &a);
}
