/* routes.c -- the gateway's routing table (one line per route) and the path matcher. */
#include <stdio.h>
#include <string.h>

#include "gateway.h"
#include "sp/auth/v1/auth.pb-c.h"
#include "spcrypto.h"

/* One line per route: method, path pattern, bus subject, request and reply messages,
 * flags, success status. A {name} segment matches a UUID and fills the request field
 * 'name'. Keep in step with the OpenAPI document. */
static const gw_route routes[] = {
    {"POST", "/v1/auth/register", "sp.auth.v1.Register", &sp__auth__v1__register_request__descriptor,
     &sp__auth__v1__register_reply__descriptor, GW_BODY, 201},
    {"POST", "/v1/auth/login", "sp.auth.v1.Login", &sp__auth__v1__login_request__descriptor,
     &sp__auth__v1__login_reply__descriptor, GW_BODY, 200},
    {"POST", "/v1/auth/refresh", "sp.auth.v1.Refresh", &sp__auth__v1__refresh_request__descriptor,
     &sp__auth__v1__refresh_reply__descriptor, GW_BODY, 200},
    {"POST", "/v1/auth/logout", "sp.auth.v1.Logout", &sp__auth__v1__logout_request__descriptor,
     &sp__auth__v1__logout_reply__descriptor, GW_BODY, 204},
    {"GET", "/v1/me", "sp.auth.v1.GetMe", &sp__auth__v1__get_me_request__descriptor,
     &sp__auth__v1__get_me_reply__descriptor, GW_AUTH, 200},
    {"PATCH", "/v1/me", "sp.auth.v1.UpdateMe", &sp__auth__v1__update_me_request__descriptor,
     &sp__auth__v1__get_me_reply__descriptor, GW_AUTH | GW_BODY, 200},
    {"POST", "/v1/me/password", "sp.auth.v1.ChangePassword",
     &sp__auth__v1__change_password_request__descriptor,
     &sp__auth__v1__change_password_reply__descriptor, GW_AUTH | GW_BODY, 204},
    {"DELETE", "/v1/me", "sp.auth.v1.DeleteMe", &sp__auth__v1__delete_me_request__descriptor,
     &sp__auth__v1__delete_me_reply__descriptor, GW_AUTH, 204},
};

const gw_route *gw_routes(size_t *n)
{
    *n = sizeof(routes) / sizeof(routes[0]);
    return routes;
}

/* Compares one pattern with a path, segment by segment. Returns 1 on a match (params
 * filled), 0 otherwise, including a {param} segment whose value is not a UUID. */
static int match_path(const char *pattern, const char *path, gw_param *params, size_t *np)
{
    size_t n = 0;
    const char *p = pattern, *s = path;

    while (*p != '\0' && *s != '\0') {
        if (*p != '/' || *s != '/') return 0;
        p++;
        s++;
        size_t plen = strcspn(p, "/"), slen = strcspn(s, "/");
        if (plen > 2 && p[0] == '{' && p[plen - 1] == '}') {
            if (n == GW_MAX_PARAMS || slen != SPCRYPTO_UUID_LEN - 1) return 0;
            char v[SPCRYPTO_UUID_LEN];
            memcpy(v, s, slen);
            v[slen] = '\0';
            if (!spcrypto_uuid_valid(v)) return 0;
            size_t nlen = plen - 2 < sizeof(params[n].name) - 1 ? plen - 2
                                                                 : sizeof(params[n].name) - 1;
            memcpy(params[n].name, p + 1, nlen);
            params[n].name[nlen] = '\0';
            memcpy(params[n].value, v, slen + 1);
            n++;
        } else if (plen != slen || memcmp(p, s, plen) != 0) {
            return 0;
        }
        p += plen;
        s += slen;
    }
    if (*p != '\0' || *s != '\0') return 0;
    *np = n;
    return 1;
}

/* The path is checked for shape first (length, segments) so that the matcher stays
 * bounded whatever a client sends. */
gw_match gw_route_match(const gw_route **route, gw_param *params, size_t *nparams,
                        const char *method, const char *path, char *allow, size_t allowlen)
{
    *route = NULL;
    *nparams = 0;
    if (allowlen > 0) allow[0] = '\0';
    if (path == NULL || path[0] != '/' || strlen(path) > GW_MAX_PATH) return GW_MATCH_NOT_FOUND;
    size_t segs = 0;
    for (const char *c = path; *c != '\0'; c++)
        if (*c == '/' && ++segs > GW_MAX_SEGMENTS) return GW_MATCH_NOT_FOUND;

    bool path_known = false;
    size_t used = 0;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        gw_param tmp[GW_MAX_PARAMS];
        size_t nt = 0;
        if (!match_path(routes[i].pattern, path, tmp, &nt)) continue;
        if (strcmp(routes[i].method, method) == 0) {
            *route = &routes[i];
            memcpy(params, tmp, nt * sizeof(tmp[0]));
            *nparams = nt;
            return GW_MATCH_OK;
        }
        path_known = true;
        if (allowlen > 0 && strstr(allow, routes[i].method) == NULL) {
            int w = snprintf(allow + used, allowlen - used, "%s%s", used ? ", " : "",
                             routes[i].method);
            if (w > 0 && (size_t)w < allowlen - used) used += (size_t)w;
        }
    }
    return path_known ? GW_MATCH_METHOD : GW_MATCH_NOT_FOUND;
}
