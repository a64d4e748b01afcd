/* spcore.h -- status codes, the error table, arenas, configuration, JSON-lines logging
 * and time helpers shared by every SmartPark process. Prefix: sp_. */
#ifndef SPCORE_H
#define SPCORE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- status and errors ---------------------------------------------------------------- */

/* SP_OK, then one SP_ERR_<NAME> per line of sp_errors.def. */
typedef enum {
    SP_OK = 0,
#define SP_ERROR(name, code, http) SP_ERR_##name,
#include "sp_errors.def"
#undef SP_ERROR
    SP_ERR__COUNT
} sp_status;

const char *sp_error_code(sp_status s);         /* "not_found"; "ok" for SP_OK */
int sp_error_http_status(sp_status s);          /* 404; 200 for SP_OK */
sp_status sp_error_from_code(const char *code); /* SP_ERR_INTERNAL when unknown */

/* ---- arena: bump allocator for one request; everything dies with sp_arena_destroy -------- */

typedef struct sp_arena sp_arena;
sp_arena *sp_arena_create(size_t first_block);
void sp_arena_destroy(sp_arena *a);
/* 16-byte aligned; NULL on OOM or when n is near PTRDIFF_MAX or above (never wraps). */
void *sp_arena_alloc(sp_arena *a, size_t n);
char *sp_arena_strdup(sp_arena *a, const char *s);
char *sp_arena_strndup(sp_arena *a, const char *s, size_t n);
char *sp_arena_printf(sp_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- configuration: one table, validated at start, --help printed from it -------------- */

typedef enum { SP_CFG_INT, SP_CFG_STR, SP_CFG_SECRET } sp_cfg_kind;

/* For SP_CFG_INT min/max bound the value; for strings and secrets they bound the length.
 * A NULL default makes the setting required. Secrets are never printed or logged. */
typedef struct {
    const char *name; /* "SP_HTTP_MAX_BODY" */
    sp_cfg_kind kind;
    const char *def;
    long long min, max;
    const char *help;
} sp_cfg_item;

typedef struct sp_config sp_config;

/* Reads every item from the environment (getenv), validates it against the table.
 * argv may hold --help (prints the table to stdout, *out stays NULL, returns SP_OK:
 * the caller exits 0). On a bad value writes the reason to err and returns
 * SP_ERR_VALIDATION_FAILED. */
sp_status sp_config_load(sp_config **out, const char *program, const sp_cfg_item *items, size_t n,
                         int argc, char **argv, char *err, size_t errlen);
void sp_config_destroy(sp_config *c);
long long sp_config_int(const sp_config *c, const char *name);   /* aborts on unknown name */
const char *sp_config_str(const sp_config *c, const char *name); /* "" when empty */
void sp_config_help(FILE *f, const char *program, const sp_cfg_item *items, size_t n);

/* ---- logging: one JSON line per event on stderr ----------------------------------------- */

typedef enum { SP_LOG_DEBUG, SP_LOG_INFO, SP_LOG_WARN, SP_LOG_ERROR } sp_log_level;

void sp_log_init(const char *service, sp_log_level min_level);
void sp_log_set_stream(FILE *f); /* tests */
/* Fields are key, value string pairs ending with NULL. A key naming a secret ("password",
 * "secret", "token", "authorization", "apiKey", ...) is written as "[redacted]", and the
 * user and password of a URL in any value as well (sp_url_redact). */
void sp_log(sp_log_level lvl, const char *request_id, const char *msg, ...);
void sp_logv(sp_log_level lvl, const char *request_id, const char *msg, va_list ap);
#define sp_log_debug(rid, ...) sp_log(SP_LOG_DEBUG, rid, __VA_ARGS__, NULL)
#define sp_log_info(rid, ...) sp_log(SP_LOG_INFO, rid, __VA_ARGS__, NULL)
#define sp_log_warn(rid, ...) sp_log(SP_LOG_WARN, rid, __VA_ARGS__, NULL)
#define sp_log_error(rid, ...) sp_log(SP_LOG_ERROR, rid, __VA_ARGS__, NULL)
bool sp_log_key_is_secret(const char *key);
/* Copies 'in' into out (n bytes, always terminated) with the user information of every URL
 * in it ("nats://u:p@h:4222,nats://h2" -> "nats://[redacted]@h:4222,nats://h2") replaced,
 * cut at n - 1 bytes; returns the length written. */
size_t sp_url_redact(char *out, size_t n, const char *in);

/* ---- time ------------------------------------------------------------------------------ */

int64_t sp_now_us(void); /* wall clock, microseconds since the epoch */
int64_t sp_monotonic_us(void);
/* "2025-09-12T15:10:04.120Z" (milliseconds, UTC); buf at least 32 bytes. */
void sp_time_format(char *buf, size_t len, int64_t us);
/* RFC 3339 with 'Z' or an offset and 0..6 fractional digits -> microseconds. */
sp_status sp_time_parse(int64_t *out, const char *s);

/* ---- periodic task: one thread running fn every period_ms, and at once when woken ------ */

typedef struct sp_task sp_task;
typedef void (*sp_task_fn)(void *user);
/* Starts the thread; the first run is one period from now (or at the first wake). */
sp_status sp_task_start(sp_task **out, int period_ms, sp_task_fn fn, void *user);
/* Runs fn as soon as the thread is free (a wake during a run runs it once more after). */
void sp_task_wake(sp_task *t);
/* Stops and joins the thread (waits for a run in progress), frees; NULL is a no-op. */
void sp_task_stop(sp_task *t);
/* Stops and joins the thread but keeps the task: a wake from another thread is then a
 * harmless no-op until sp_task_stop frees it (a service stops its tasks before the
 * threads of its own that wake them). Called from one thread only, at most once before
 * sp_task_stop. */
void sp_task_halt(sp_task *t);

/* ---- map: string keys to pointers (caches of the services), not thread-safe ---------- */

typedef struct sp_map sp_map;
/* 'free_value' (may be NULL) is called on a value when its entry is replaced, deleted or
 * the map destroyed. NULL on OOM. */
sp_map *sp_map_create(void (*free_value)(void *));
void sp_map_destroy(sp_map *m);
void *sp_map_get(const sp_map *m, const char *key);
/* Adds or replaces; the key is copied. SP_ERR_INTERNAL on OOM (the value is then freed). */
sp_status sp_map_put(sp_map *m, const char *key, void *value);
void sp_map_del(sp_map *m, const char *key);
/* Deletes every entry for which drop(key, value, user) is true. */
void sp_map_filter(sp_map *m, bool (*drop)(const char *key, void *value, void *user), void *user);
size_t sp_map_len(const sp_map *m);

#endif
