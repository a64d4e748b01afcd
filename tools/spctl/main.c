/* main.c -- spctl, the SmartPark operator CLI: dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "spctl.h"

typedef struct {
    const char *name;
    spctl_cmd_fn fn;
    const char *summary;
} spctl_cmd;

static const spctl_cmd cmds[] = {
    {"gen-secrets", spctl_gen_secrets, "create or complete a secrets.env file (0600)"},
    {"nats-config", spctl_nats_config, "write the nats-server config with the users"},
    {"edge-config", spctl_edge_config, "write the nginx config of the public listener"},
    {"migrate", spctl_migrate, "apply database migrations and create the JetStream streams"},
    {"create-admin", spctl_create_admin, "create the first platform admin"},
    {"create-client", spctl_create_client, "create a client (tenant) with its first manager"},
    {"create-api-key", spctl_create_api_key, "create an API key of a client (printed once)"},
    {"create-camera", spctl_create_camera, "create a camera of a client, bound to a key"},
    {"demo-seed", spctl_demo_seed, "seed the demo client, site, lot, camera and key"},
    {"camsim", spctl_camsim, "simulate cameras reporting a lot's slots and heartbeats"},
};

static void usage(FILE *f)
{
    fputs("usage: spctl <command> [options]   (spctl <command> --help for details)\n\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-14s %s\n", cmds[i].name, cmds[i].summary);
}

int main(int argc, char **argv)
{
    /* the libraries' warnings (JSON lines) would double our one-line errors */
    sp_log_init("spctl", SP_LOG_ERROR);
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1) == SP_OK ? 0 : 1;
    }
    spctl_fail(SP_ERR_NOT_FOUND, "unknown command '%s' (see spctl --help)", argv[1]);
    return 1;
}
