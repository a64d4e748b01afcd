/* spredis.h -- Redis over hiredis with timeouts and reconnect. One spredis per thread:
 * a hiredis context is not thread-safe and is dead after an error. Prefix: spredis_. */
#ifndef SPREDIS_H
#define SPREDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>

#include "spcore.h"

typedef struct spredis spredis;

/* url: "redis://[:password@]host:port[/db]". Connect and command timeout in ms. Returns
 * SP_OK even if the server is down (commands then answer SP_ERR_UNAVAILABLE until it
 * is back); SP_ERR_VALIDATION_FAILED for a bad url.
 * hiredis writes with write(2): a command sent to a server that just died raises SIGPIPE,
 * which kills a program that has not set it to SIG_IGN (the service kit and the gateway
 * do at start). spredis leaves the process's signal handling as it found it. */
sp_status spredis_create(spredis **out, const char *url, int timeout_ms);
void spredis_destroy(spredis *r);

/* Runs one command given as argv (binary safe, never a format string built from input).
 * Reconnects first when the context is dead (at most once per 200 ms) or the server closed
 * it while idle (a restart of Redis: at once, so the command still runs). *out is the reply
 * (caller frees with freeReplyObject; out may be NULL). A Redis error reply is returned in
 * *out with SP_OK: check reply->type. Connection failure or timeout: SP_ERR_UNAVAILABLE. */
sp_status spredis_command(redisReply **out, spredis *r, int argc, const char **argv,
                          const size_t *argvlen);
/* Convenience: NULL-terminated string arguments. */
sp_status spredis_cmd(redisReply **out, spredis *r, const char *arg0, ...);

bool spredis_ping(spredis *r);
/* true when Redis answers that 'key' exists; false when it does not or Redis does not
 * answer. */
bool spredis_exists(spredis *r, const char *key);
/* Increments each time a new connection is made (lets a caller redo work after a reconnect,
 * such as rewriting revocations). */
unsigned spredis_generation(const spredis *r);

#endif
