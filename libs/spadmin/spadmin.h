/* spadmin.h -- the admin HTTP listener of every process (/healthz, /readyz, /metrics on
 * SP_ADMIN_ADDR) and the process's metrics registry, rendered as Prometheus text.
 * Prefix: spadmin_. */
#ifndef SPADMIN_H
#define SPADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "spcore.h"

/* ---- metrics (thread-safe, process-wide) ------------------------------------------------ */

/* 'labels' is the Prometheus label text without braces, e.g. "route=\"/v1/me\",status=\"200\"",
 * or NULL. A series is created on first use. */
void spadmin_counter_add(const char *name, const char *labels, double v);
void spadmin_gauge_set(const char *name, const char *labels, double v);
/* Latency histogram in seconds, fixed buckets 0.5 ms .. 10 s. */
void spadmin_observe(const char *name, const char *labels, double seconds);
/* Help text for a metric family (optional). */
void spadmin_metric_help(const char *name, const char *type, const char *help);
/* The whole registry plus process figures (process_resident_memory_bytes,
 * process_open_fds), malloc'd; caller frees. */
char *spadmin_metrics_render(void);

/* ---- listener --------------------------------------------------------------------------- */

/* Fills 'why' (e.g. "nats down") and returns false when not ready. */
typedef bool (*spadmin_ready_fn)(void *user, char *why, size_t whylen);

typedef struct spadmin spadmin;

/* Listens on addr ("127.0.0.1:9101"; "host:port" only, no IPv6). */
sp_status spadmin_start(spadmin **out, const char *addr, spadmin_ready_fn ready, void *user);
void spadmin_stop(spadmin *a);

/* Renders the three endpoints for any CivetWeb server (the gateway also serves them on
 * its public port). 'conn' is a struct mg_connection *. extra_headers ("Name: value\r\n"
 * lines, e.g. the gateway's X-Request-Id) go into every answer; may be NULL.
 * Returns 1 if it answered. */
int spadmin_handle(void *conn, const char *path, spadmin_ready_fn ready, void *user,
                   const char *extra_headers);

#endif
