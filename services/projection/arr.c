/* arr.c -- PostgreSQL array literals for the batched statements (unnest($1::uuid[]), ...):
 * every value quoted and escaped, so that no value can end the literal early. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projection.h"

static void put(prj_arr *a, const char *s, size_t n)
{
    if (a->oom) return;
    if (a->n + n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        while (a->n + n + 2 > cap)
            cap *= 2;
        char *g = realloc(a->s, cap);
        if (g == NULL) {
            a->oom = true;
            return;
        }
        a->s = g;
        a->cap = cap;
    }
    memcpy(a->s + a->n, s, n);
    a->n += n;
    a->s[a->n] = '\0';
}

static void sep(prj_arr *a)
{
    if (a->n > 1) put(a, ",", 1);
}

void prj_arr_start(prj_arr *a)
{
    memset(a, 0, sizeof(*a));
    put(a, "{", 1);
}

void prj_arr_str(prj_arr *a, const char *v)
{
    sep(a);
    if (v == NULL) {
        put(a, "NULL", 4);
        return;
    }
    put(a, "\"", 1);
    for (const char *c = v; *c; c++) {
        if (*c == '"' || *c == '\\') put(a, "\\", 1);
        put(a, c, 1);
    }
    put(a, "\"", 1);
}

void prj_arr_i64(prj_arr *a, int64_t v)
{
    char b[24];
    sep(a);
    put(a, b, (size_t)snprintf(b, sizeof(b), "%" PRId64, v));
}

void prj_arr_f64(prj_arr *a, double v, bool present)
{
    char b[40];
    sep(a);
    if (!present) {
        put(a, "NULL", 4);
        return;
    }
    put(a, b, (size_t)snprintf(b, sizeof(b), "%.9g", v));
}

void prj_arr_bool(prj_arr *a, bool v)
{
    sep(a);
    put(a, v ? "t" : "f", 1);
}

const char *prj_arr_end(prj_arr *a)
{
    put(a, "}", 1);
    return a->oom ? NULL : a->s;
}

void prj_arr_free(prj_arr *a)
{
    free(a->s);
    memset(a, 0, sizeof(*a));
}

const char *prj_status_name(int status)
{
    return status == 1 ? "FREE" : status == 2 ? "OCCUPIED" : "UNKNOWN";
}

const char *prj_vehicle_name(int vehicle)
{
    static const char *const names[] = {"none", "car", "moto", "truck"};
    return vehicle >= 0 && vehicle <= 3 ? names[vehicle] : "none";
}
