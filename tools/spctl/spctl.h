/* spctl.h -- shared declarations of the operator CLI: one entry point per subcommand
 * group, and the small helpers they share (errors, options, files). */
#ifndef SPCTL_H
#define SPCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "spcore.h"

/* A subcommand: argv[0] is its name. Prints its own errors (spctl_fail) and returns
 * SP_OK on success; main turns that into the exit status. */
typedef sp_status (*spctl_cmd_fn)(int argc, char **argv);

sp_status spctl_gen_secrets(int argc, char **argv);
sp_status spctl_nats_config(int argc, char **argv);
sp_status spctl_edge_config(int argc, char **argv);
sp_status spctl_migrate(int argc, char **argv);
sp_status spctl_create_admin(int argc, char **argv);
sp_status spctl_create_client(int argc, char **argv);
sp_status spctl_create_api_key(int argc, char **argv);
sp_status spctl_create_camera(int argc, char **argv);
sp_status spctl_demo_seed(int argc, char **argv);
sp_status spctl_camsim(int argc, char **argv);

/* Creates or updates the JetStream streams of bus.md (streams.c); prints a line per
 * stream it created. user/password may be NULL. */
sp_status spctl_streams(const char *url, const char *user, const char *password);

/* Prints "spctl: <message>" as one line on stderr; returns 'status' for the caller to
 * hand back. Never pass a secret. */
sp_status spctl_fail(sp_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One option of a subcommand: "--name VALUE" or "--name=VALUE" (has_value), or a flag. */
typedef struct {
    const char *name; /* "--listen" */
    bool has_value;
    const char **value; /* set for options with a value */
    bool *flag;         /* set for flags */
} spctl_opt;

/* Parses argv[1..] against 'opts'; positional arguments go to pos (at most npos, *npos_out
 * says how many). "--help"/"-h" sets *help. Unknown options and missing values are an
 * error (printed). */
sp_status spctl_parse(int argc, char **argv, const spctl_opt *opts, size_t nopts, const char **pos,
                      size_t npos, size_t *npos_out, bool *help);

typedef struct spdb spdb;
/* spdb_connect without statement and lock timeouts (migrations, advisory locks), with the
 * reason of a failure (libpq's first line) in the printed error. */
sp_status spctl_db_connect(spdb **out, const char *url, const char *cmd);

/* ---- the bus (bus.c) -------------------------------------------------------------------- */

struct spbus;
struct ProtobufCMessage;
struct ProtobufCMessageDescriptor;
struct Sp__V1__Error;

/* Connects to NATS as the operator (SP_NATS_URL, SP_NATS_USER default spctl,
 * SP_NATS_PASSWORD) and waits up to 5 s for the connection; prints the failure as 'cmd'. */
sp_status spctl_bus_connect(struct spbus **out, const char *cmd);
/* Calls sp.<api>.v1.<method> as the operator (ctx.role "service", request id 'rid',
 * idempotency key 'key' when not NULL). On failure prints the callee's error (its fields
 * too) as 'cmd' and returns its status. */
sp_status spctl_call(struct ProtobufCMessage **out, struct spbus *bus, const char *cmd,
                     const char *rid, const char *api, const char *method,
                     const struct ProtobufCMessage *in,
                     const struct ProtobufCMessageDescriptor *reply_desc, const char *key,
                     sp_arena *a);

struct Sp__Catalog__V1__CameraReply;
struct Sp__Catalog__V1__CreateApiKeyReply;
/* Camera 'code' of 'client' on 'lot' with a new API key (*key holds its secret, once):
 * created under the idempotency key 'idem', or found and given the new key when it was
 * made before (catalog.c). */
sp_status spctl_fresh_camera(struct Sp__Catalog__V1__CameraReply **cam,
                             struct Sp__Catalog__V1__CreateApiKeyReply **key, struct spbus *bus,
                             sp_arena *a, const char *cmd, const char *client, const char *code,
                             const char *lot, const char *idem);

/* getenv, with NULL for an unset or empty variable. */
const char *spctl_env(const char *name);

/* Reads a whole file into a malloc'd NUL-terminated buffer (*out; caller frees). */
sp_status spctl_read_file(char **out, size_t *len, const char *path);

/* Writes 'out' whole or not at all: write(f, ud) fills a temporary file next to it (mode
 * 'mode'), which is synced and renamed over 'out'. Prints its own errors. */
sp_status spctl_write_atomic(const char *out, unsigned mode,
                             sp_status (*write)(FILE *f, const void *ud), const void *ud);

/* Number of UTF-8 characters in s (bytes that are not continuation bytes). */
size_t spctl_utf8_len(const char *s);

#endif
