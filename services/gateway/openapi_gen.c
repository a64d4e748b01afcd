/* openapi_gen.c -- the OpenAPI document, built from the route table and the protobuf
 * descriptors (the ones the JSON conversion uses, through sppb's schema functions), so that
 * its schemas cannot drift from what the gateway accepts and answers. What data cannot say
 * comes from docs/openapi-notes.json:
 *   - the document's frame: openapi, info, servers, tags, the shared components
 *     (parameters, headers, responses, named schemas such as Uuid) and the paths that are
 *     not routes (probes, this document);
 *   - "operations": per "METHOD /pattern": operationId, tags, summary, description,
 *     "params" (descriptions of path and query parameters), "success" (the description of
 *     the success answer), "example" / "requestExample", "errors" (statuses beyond those
 *     the route implies);
 *   - "messages": per message full name ("sp.tenancy.v1.ClientReply"): "description",
 *     "fields" (JSON name -> schema keywords merged into the derived schema, or a "$ref"
 *     that replaces it), "set" (output: the fields never null), "required" (input),
 *     "open" (true: unknown fields are allowed, ignored by the service);
 * Each message becomes components.schemas.<Name> (its name in the .proto); one read as
 * input as well as written as output has a second one, <Name>Input. Who may call a route
 * and the errors its shape implies come from the table. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

#define REF_SCHEMAS "#/components/schemas/"
#define REF_RESPONSES "#/components/responses/"
#define MAX_COMPONENTS 256

typedef struct {
    const ProtobufCMessageDescriptor *desc;
    bool output;
    char name[96];
    char ref[128];
} component;

typedef struct {
    const cJSON *notes;
    cJSON *schemas; /* components.schemas of the document */
    component comps[MAX_COMPONENTS];
    size_t ncomps;
    bool failed;
    char *why;
    size_t whylen;
} gen;

static void fail(gen *g, const char *what, const char *name)
{
    if (!g->failed) snprintf(g->why, g->whylen, "%s: %s", what, name);
    g->failed = true;
}

static const cJSON *message_notes(gen *g, const ProtobufCMessageDescriptor *d)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(g->notes, "messages");
    return cJSON_GetObjectItemCaseSensitive(m, d->name);
}

static bool in_list(const cJSON *list, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, list)
    {
        if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0) return true;
    }
    return false;
}

static const char *schema_ref(const ProtobufCMessageDescriptor *d, bool output, void *user);

/* Merges the notes' keywords for one field into 'schema' (the element schema of a repeated
 * field, except minItems/maxItems); a "$ref" replaces it. Returns the schema to use. */
static cJSON *apply_field_notes(cJSON *schema, const cJSON *fnotes, bool repeated)
{
    if (fnotes == NULL) return schema;
    cJSON *target = schema;
    if (repeated) target = cJSON_GetObjectItemCaseSensitive(schema, "items");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(fnotes, "$ref");
    if (ref != NULL) {
        cJSON *r = cJSON_Duplicate(fnotes, true);
        if (!repeated) {
            cJSON_Delete(schema);
            return r;
        }
        cJSON_ReplaceItemInObjectCaseSensitive(schema, "items", r);
        return schema;
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, fnotes)
    {
        cJSON *into =
            (repeated && (strcmp(k->string, "minItems") == 0 || strcmp(k->string, "maxItems") == 0))
                ? schema
                : target;
        cJSON_DeleteItemFromObjectCaseSensitive(into, k->string);
        cJSON_AddItemToObject(into, k->string, cJSON_Duplicate(k, true));
    }
    return schema;
}

/* {"anyOf": [s, {"type": "null"}]} */
static cJSON *or_null(cJSON *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *any = cJSON_AddArrayToObject(o, "anyOf");
    cJSON_AddItemToArray(any, s);
    cJSON *null = cJSON_CreateObject();
    cJSON_AddStringToObject(null, "type", "null");
    cJSON_AddItemToArray(any, null);
    return o;
}

/* A reply written as one of its *_inline messages (sppb.h): {"oneOf": [their schemas]};
 * NULL when 'd' has no such field. */
static cJSON *inline_schema(gen *g, const ProtobufCMessageDescriptor *d)
{
    cJSON *one = NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!sppb_field_inline(f)) continue;
        if (one == NULL) one = cJSON_CreateArray();
        const char *r = schema_ref(f->descriptor, true, g);
        cJSON *e = cJSON_CreateObject();
        if (r != NULL) cJSON_AddStringToObject(e, "$ref", r);
        cJSON_AddItemToArray(one, e);
    }
    if (one == NULL) return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "oneOf", one);
    return o;
}

/* The object schema of 'd'. output: what sppb_to_json writes (every field there; null
 * unless "set"). Input: what the gateway reads: without the fields named in 'skip' (path
 * parameters, the query's, "cleared"), null only for 'clearable' fields. */
static cJSON *message_schema(gen *g, const ProtobufCMessageDescriptor *d, bool output,
                             const cJSON *skip, bool clearable)
{
    cJSON *one = output ? inline_schema(g, d) : NULL;
    if (one != NULL) return one;
    const cJSON *mn = message_notes(g, d);
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(mn, "fields");
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(mn, "set");
    const cJSON *required = cJSON_GetObjectItemCaseSensitive(mn, "required");
    const cJSON *description = cJSON_GetObjectItemCaseSensitive(mn, "description");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "object");
    if (cJSON_IsString(description))
        cJSON_AddStringToObject(o, "description", description->valuestring);
    cJSON *props = cJSON_AddObjectToObject(o, "properties");
    cJSON *req = cJSON_CreateArray();
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        char name[128];
        sppb_field_json_name(name, sizeof(name), f);
        if (in_list(skip, name)) continue;
        bool repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
        cJSON *s = sppb_field_schema(f, output, schema_ref, g);
        if (s == NULL) {
            fail(g, "out of memory", d->name);
            break;
        }
        s = apply_field_notes(s, cJSON_GetObjectItemCaseSensitive(fields, name), repeated);
        bool nullable =
            output ? sppb_field_nullable(f) && !in_list(set, name) : clearable && !repeated;
        if (nullable) s = or_null(s);
        cJSON_AddItemToObject(props, name, s);
        if (output ? sppb_field_always_written(f) : in_list(required, name))
            cJSON_AddItemToArray(req, cJSON_CreateString(name));
    }
    /* every name the notes give must be a field: a renamed field must not leave them behind */
    const cJSON *lists[] = {fields, set, required};
    for (size_t l = 0; l < 3; l++) {
        const cJSON *e;
        cJSON_ArrayForEach(e, lists[l])
        {
            const char *n = l == 0 ? e->string : (cJSON_IsString(e) ? e->valuestring : "");
            if (cJSON_GetObjectItemCaseSensitive(props, n) == NULL && !in_list(skip, n)) {
                char what[160];
                snprintf(what, sizeof(what), "openapi-notes names no field %s of", n);
                fail(g, what, d->name);
            }
        }
    }
    if (cJSON_GetArraySize(req) > 0)
        cJSON_AddItemToObject(o, "required", req);
    else
        cJSON_Delete(req);
    /* "open": a lenient payload (cameras'), whose unknown fields are ignored */
    cJSON_AddBoolToObject(o, "additionalProperties",
                          cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(mn, "open")));
    return o;
}

/* The component of 'd' (created, with its schema, the first time). */
static const char *schema_ref(const ProtobufCMessageDescriptor *d, bool output, void *user)
{
    gen *g = user;
    for (size_t i = 0; i < g->ncomps; i++)
        if (g->comps[i].desc == d && g->comps[i].output == output) return g->comps[i].ref;
    if (g->ncomps == MAX_COMPONENTS) {
        fail(g, "too many schemas", d->name);
        return NULL;
    }
    component *c = &g->comps[g->ncomps++];
    c->desc = d;
    c->output = output;
    /* the outputs are made first (gw_openapi_build): an input of the same message is
     * <Name>Input */
    snprintf(c->name, sizeof(c->name), "%s", d->short_name);
    if (!output && cJSON_GetObjectItemCaseSensitive(g->schemas, c->name) != NULL)
        snprintf(c->name, sizeof(c->name), "%sInput", d->short_name);
    memcpy(c->ref, REF_SCHEMAS, sizeof(REF_SCHEMAS) - 1);
    memcpy(c->ref + sizeof(REF_SCHEMAS) - 1, c->name, strlen(c->name) + 1); /* fits: 21 + 96 */
    if (cJSON_GetObjectItemCaseSensitive(g->schemas, c->name) != NULL) {
        fail(g, "two schemas of one name", c->name);
        return c->ref;
    }
    cJSON_AddItemToObject(g->schemas, c->name, cJSON_CreateObject()); /* taken, for recursion */
    cJSON *s = message_schema(g, d, output, NULL, false);
    cJSON_ReplaceItemInObjectCaseSensitive(g->schemas, c->name, s);
    return c->ref;
}

static cJSON *ref_to(const char *prefix, const char *name)
{
    char ref[160];
    snprintf(ref, sizeof(ref), "%s%s", prefix, name);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "$ref", ref);
    return o;
}

static const struct {
    int status;
    const char *name;
} error_responses[] = {
    {400, "BadRequest"},
    {401, "Unauthenticated"},
    {403, "Forbidden"},
    {404, "NotFound"},
    {409, "Conflict"},
    {413, "PayloadTooLarge"},
    {415, "UnsupportedMediaType"},
    {429, "RateLimited"},
    {503, "Unavailable"},
};

/* The parameters of route 'r': X-Request-Id, the path's, the query's. 'skip' gets their
 * JSON names (they are not body fields). */
static cJSON *parameters(gen *g, const gw_route *r, const cJSON *onotes, cJSON *skip)
{
    const cJSON *descs = cJSON_GetObjectItemCaseSensitive(onotes, "params");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(message_notes(g, r->req_desc), "fields");
    cJSON *ps = cJSON_CreateArray();
    cJSON_AddItemToArray(ps, ref_to("#/components/parameters/", "XRequestId"));
    for (const char *p = strchr(r->pattern, '{'); p != NULL; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)(end - p - 1), p + 1);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddStringToObject(o, "in", "path");
        cJSON_AddBoolToObject(o, "required", true);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(descs, name);
        if (cJSON_IsString(d)) cJSON_AddStringToObject(o, "description", d->valuestring);
        cJSON_AddItemToObject(o, "schema", ref_to(REF_SCHEMAS, "Uuid")); /* router: a UUID */
        cJSON_AddItemToArray(ps, o);
        cJSON_AddItemToArray(skip, cJSON_CreateString(name));
    }
    char q[256];
    snprintf(q, sizeof(q), "%s", r->query != NULL ? r->query : "");
    for (char *save = NULL, *name = strtok_r(q, ",", &save); name != NULL;
         name = strtok_r(NULL, ",", &save)) {
        cJSON_AddItemToArray(skip, cJSON_CreateString(name));
        if (strcmp(name, "limit") == 0 || strcmp(name, "cursor") == 0) {
            cJSON_AddItemToArray(ps, ref_to("#/components/parameters/",
                                            strcmp(name, "limit") == 0 ? "Limit" : "Cursor"));
            continue;
        }
        const ProtobufCFieldDescriptor *f = gw_field_by_json(r->req_desc, name, strlen(name));
        if (f == NULL) { /* gw_routes_check refuses it first */
            fail(g, "query parameter without a field", name);
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddStringToObject(o, "in", "query");
        cJSON_AddBoolToObject(o, "required", false);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(descs, name);
        if (cJSON_IsString(d)) cJSON_AddStringToObject(o, "description", d->valuestring);
        cJSON *s = sppb_field_schema(f, false, schema_ref, g);
        s = apply_field_notes(s, cJSON_GetObjectItemCaseSensitive(fields, name),
                              f->label == PROTOBUF_C_LABEL_REPEATED);
        cJSON_AddItemToObject(o, "schema", s);
        cJSON_AddItemToArray(ps, o);
    }
    if (gw_cleared_field(r->req_desc) != NULL)
        cJSON_AddItemToArray(skip, cJSON_CreateString(GW_CLEARED_FIELD));
    return ps;
}

static const char *roles_text(unsigned roles, char *out, size_t len)
{
    out[0] = '\0';
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{GW_ROLE_ADMIN, "admin"},
                 {GW_ROLE_CLIENT_ADMIN, "client_admin"},
                 {GW_ROLE_APP_USER, "app_user"}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (roles & names[i].bit) {
            size_t used = strlen(out);
            snprintf(out + used, len - used, "%s`%s`", used ? ", " : "", names[i].name);
        }
    return out;
}

static cJSON *json_content(cJSON *schema, const cJSON *example)
{
    cJSON *content = cJSON_CreateObject();
    cJSON *mt = cJSON_AddObjectToObject(content, "application/json");
    cJSON_AddItemToObject(mt, "schema", schema);
    if (example != NULL) cJSON_AddItemToObject(mt, "example", cJSON_Duplicate(example, true));
    return content;
}

static void add_operation(gen *g, cJSON *paths, const gw_route *r)
{
    char key[256];
    snprintf(key, sizeof(key), "%s %s", r->method, r->pattern);
    const cJSON *onotes = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(g->notes, "operations"), key);
    if (onotes == NULL) {
        fail(g, "openapi-notes has no operation", key);
        return;
    }
    cJSON *item = cJSON_GetObjectItemCaseSensitive(paths, r->pattern);
    if (item == NULL) item = cJSON_AddObjectToObject(paths, r->pattern);
    char method[8];
    size_t i = 0;
    for (; r->method[i] != '\0' && i + 1 < sizeof(method); i++)
        method[i] = (char)(r->method[i] | 0x20); /* "POST" -> "post" */
    method[i] = '\0';
    cJSON *op = cJSON_AddObjectToObject(item, method);

    static const char *copied[] = {"tags", "summary", "operationId"};
    for (size_t k = 0; k < sizeof(copied) / sizeof(copied[0]); k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(onotes, copied[k]);
        if (v == NULL) {
            fail(g, "openapi-notes: no tags, summary or operationId for", key);
            return;
        }
        cJSON_AddItemToObject(op, copied[k], cJSON_Duplicate(v, true));
    }
    /* who may call it comes from the table, not from prose that could drift */
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(onotes, "description");
    char roles[96], text[4096];
    if (r->roles == 0)
        snprintf(text, sizeof(text), "%s\n\nPublic: no token.",
                 cJSON_IsString(desc) ? desc->valuestring : "");
    else
        snprintf(text, sizeof(text), "%s\n\nRoles: %s.",
                 cJSON_IsString(desc) ? desc->valuestring : "",
                 roles_text(r->roles, roles, sizeof(roles)));
    cJSON_AddStringToObject(op, "description", text[0] == '\n' ? text + 2 : text);
    cJSON *sec = cJSON_AddArrayToObject(op, "security");
    if (r->roles != 0) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddArrayToObject(b, "bearer");
        cJSON_AddItemToArray(sec, b);
    }

    cJSON *skip = cJSON_CreateArray();
    cJSON_AddItemToObject(op, "parameters", parameters(g, r, onotes, skip));
    if (r->flags & GW_BODY) {
        cJSON *rb = cJSON_AddObjectToObject(op, "requestBody");
        cJSON_AddBoolToObject(rb, "required", !(r->flags & GW_BODY_OPTIONAL));
        /* the request message, read as input, less what the path and query give */
        char name[96];
        snprintf(name, sizeof(name), "%s", r->req_desc->short_name);
        if (cJSON_GetObjectItemCaseSensitive(g->schemas, name) != NULL) {
            fail(g, "two schemas of one name", name);
        } else {
            cJSON_AddItemToObject(g->schemas, name,
                                  message_schema(g, r->req_desc, false, skip,
                                                 (gw_cleared_field(r->req_desc) != NULL)));
        }
        cJSON_AddItemToObject(
            rb, "content",
            json_content(ref_to(REF_SCHEMAS, name),
                         cJSON_GetObjectItemCaseSensitive(onotes, "requestExample")));
    }
    cJSON_Delete(skip);

    cJSON *rs = cJSON_AddObjectToObject(op, "responses");
    char code[8];
    snprintf(code, sizeof(code), "%d", r->status);
    cJSON *ok = cJSON_AddObjectToObject(rs, code);
    const cJSON *success = cJSON_GetObjectItemCaseSensitive(onotes, "success");
    cJSON_AddStringToObject(ok, "description",
                            cJSON_IsString(success) ? success->valuestring : "OK");
    cJSON *h = cJSON_AddObjectToObject(ok, "headers");
    cJSON_AddItemToObject(h, "X-Request-Id", ref_to("#/components/headers/", "XRequestId"));
    if (r->status != 204) {
        const char *ref = schema_ref(r->reply_desc, true, g);
        if (ref != NULL) {
            cJSON *s = cJSON_CreateObject();
            cJSON_AddStringToObject(s, "$ref", ref);
            cJSON_AddItemToObject(
                ok, "content",
                json_content(s, cJSON_GetObjectItemCaseSensitive(onotes, "example")));
        }
    }
    /* the errors the route's shape implies, and those the notes add */
    bool body = (r->flags & GW_BODY) != 0, params = strchr(r->pattern, '{') != NULL;
    bool query = r->query != NULL && r->query[0] != '\0';
    const cJSON *extra = cJSON_GetObjectItemCaseSensitive(onotes, "errors");
    for (size_t k = 0; k < sizeof(error_responses) / sizeof(error_responses[0]); k++) {
        int st = error_responses[k].status;
        bool on = st == 503 || (st == 400 && (body || params || query)) ||
                  (st == 401 && r->roles != 0) ||
                  (st == 403 && r->roles != 0 && r->roles != GW_ROLES_USER) ||
                  (st == 404 && params) || ((st == 413 || st == 415) && body);
        const cJSON *e;
        cJSON_ArrayForEach(e, extra)
        {
            if (cJSON_IsNumber(e) && e->valueint == st) on = true;
        }
        if (!on) continue;
        snprintf(code, sizeof(code), "%d", st);
        cJSON_AddItemToObject(rs, code, ref_to(REF_RESPONSES, error_responses[k].name));
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, extra)
    {
        bool known = false;
        for (size_t k = 0; k < sizeof(error_responses) / sizeof(error_responses[0]); k++)
            known = known || (cJSON_IsNumber(e) && e->valueint == error_responses[k].status);
        if (!known) fail(g, "openapi-notes: an error status without a response", key);
    }
}

cJSON *gw_openapi_build(const gw_route *routes, size_t n, const char *notes_text, size_t notes_len,
                        char *why, size_t whylen)
{
    gen g = {.why = why, .whylen = whylen};
    cJSON *notes = cJSON_ParseWithLength(notes_text, notes_len);
    if (!cJSON_IsObject(notes)) {
        snprintf(why, whylen, "docs/openapi-notes.json is not a JSON object");
        cJSON_Delete(notes);
        return NULL;
    }
    g.notes = notes;
    /* the frame: everything but the notes' own sections */
    cJSON *doc = cJSON_Duplicate(notes, true);
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "operations");
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "messages");
    cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
    if (paths == NULL) paths = cJSON_AddObjectToObject(doc, "paths");
    cJSON *components = cJSON_GetObjectItemCaseSensitive(doc, "components");
    if (components == NULL) components = cJSON_AddObjectToObject(doc, "components");
    g.schemas = cJSON_GetObjectItemCaseSensitive(components, "schemas");
    if (g.schemas == NULL) g.schemas = cJSON_AddObjectToObject(components, "schemas");

    for (size_t i = 0; i < n && !g.failed; i++)
        if (routes[i].status != 204) (void)schema_ref(routes[i].reply_desc, true, &g);
    for (size_t i = 0; i < n && !g.failed; i++)
        add_operation(&g, paths, &routes[i]);
    /* every operation the notes describe must be a route */
    const cJSON *op;
    cJSON_ArrayForEach(op, cJSON_GetObjectItemCaseSensitive(notes, "operations"))
    {
        bool found = false;
        for (size_t i = 0; i < n && !found; i++) {
            char key[256];
            snprintf(key, sizeof(key), "%s %s", routes[i].method, routes[i].pattern);
            found = strcmp(key, op->string) == 0;
        }
        if (!found) fail(&g, "openapi-notes describes an operation that is not routed", op->string);
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(notes, "messages"))
    {
        bool found = false;
        for (size_t i = 0; i < g.ncomps && !found; i++)
            found = strcmp(g.comps[i].desc->name, m->string) == 0;
        for (size_t i = 0; i < n && !found; i++)
            found = strcmp(routes[i].req_desc->name, m->string) == 0;
        if (!found) fail(&g, "openapi-notes describes a message no route uses", m->string);
    }
    cJSON_Delete(notes);
    if (g.failed) {
        cJSON_Delete(doc);
        return NULL;
    }
    return doc;
}
