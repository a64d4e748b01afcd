/* errors.c -- the error table of sp_errors.def as lookups. */
#include <string.h>

#include "spcore.h"

static const struct {
    const char *code;
    int http;
} table[] = {
    {"ok", 200},
#define SP_ERROR(name, code, http) {code, http},
#include "sp_errors.def"
#undef SP_ERROR
};

const char *sp_error_code(sp_status s)
{
    if ((int)s < 0 || s >= SP_ERR__COUNT) return "internal";
    return table[s].code;
}

int sp_error_http_status(sp_status s)
{
    if ((int)s < 0 || s >= SP_ERR__COUNT) return 500;
    return table[s].http;
}

sp_status sp_error_from_code(const char *code)
{
    if (code == NULL) return SP_ERR_INTERNAL;
    for (int i = 1; i < SP_ERR__COUNT; i++)
        if (strcmp(table[i].code, code) == 0) return (sp_status)i;
    return SP_ERR_INTERNAL;
}
