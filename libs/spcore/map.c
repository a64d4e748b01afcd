/* map.c -- sp_map: string keys to pointers, chained hashing (FNV-1a), doubling at load 1. */
#include <stdlib.h>
#include <string.h>

#include "spcore.h"

typedef struct entry {
    struct entry *next;
    uint64_t hash;
    void *value;
    char key[]; /* NUL-terminated */
} entry;

struct sp_map {
    entry **b;
    size_t nb, n;
    void (*free_value)(void *);
};

static uint64_t hash_of(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return h;
}

sp_map *sp_map_create(void (*free_value)(void *))
{
    sp_map *m = calloc(1, sizeof(*m));
    if (m == NULL) return NULL;
    m->nb = 64;
    m->b = calloc(m->nb, sizeof(entry *));
    if (m->b == NULL) {
        free(m);
        return NULL;
    }
    m->free_value = free_value;
    return m;
}

static void drop_entry(sp_map *m, entry *e)
{
    if (m->free_value != NULL) m->free_value(e->value);
    free(e);
}

void sp_map_destroy(sp_map *m)
{
    if (m == NULL) return;
    for (size_t i = 0; i < m->nb; i++)
        for (entry *e = m->b[i], *next; e != NULL; e = next) {
            next = e->next;
            drop_entry(m, e);
        }
    free(m->b);
    free(m);
}

static entry **slot_of(const sp_map *m, const char *key, uint64_t h)
{
    entry **p = &m->b[h & (m->nb - 1)];
    while (*p != NULL && ((*p)->hash != h || strcmp((*p)->key, key) != 0))
        p = &(*p)->next;
    return p;
}

void *sp_map_get(const sp_map *m, const char *key)
{
    entry *e = *slot_of(m, key, hash_of(key));
    return e != NULL ? e->value : NULL;
}

static void grow(sp_map *m)
{
    size_t nb = m->nb * 2;
    entry **b = calloc(nb, sizeof(entry *));
    if (b == NULL) return; /* stays at this size: longer chains, still correct */
    for (size_t i = 0; i < m->nb; i++)
        for (entry *e = m->b[i], *next; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(m->b);
    m->b = b;
    m->nb = nb;
}

sp_status sp_map_put(sp_map *m, const char *key, void *value)
{
    uint64_t h = hash_of(key);
    entry **p = slot_of(m, key, h);
    if (*p != NULL) {
        if (m->free_value != NULL && (*p)->value != value) m->free_value((*p)->value);
        (*p)->value = value;
        return SP_OK;
    }
    size_t klen = strlen(key);
    entry *e = malloc(sizeof(*e) + klen + 1);
    if (e == NULL) {
        if (m->free_value != NULL) m->free_value(value);
        return SP_ERR_INTERNAL;
    }
    memcpy(e->key, key, klen + 1);
    e->hash = h;
    e->value = value;
    e->next = NULL;
    *p = e;
    if (++m->n > m->nb) grow(m);
    return SP_OK;
}

void sp_map_del(sp_map *m, const char *key)
{
    entry **p = slot_of(m, key, hash_of(key));
    if (*p == NULL) return;
    entry *e = *p;
    *p = e->next;
    m->n--;
    drop_entry(m, e);
}

void sp_map_filter(sp_map *m, bool (*drop)(const char *key, void *value, void *user), void *user)
{
    for (size_t i = 0; i < m->nb; i++)
        for (entry **p = &m->b[i]; *p != NULL;) {
            entry *e = *p;
            if (drop(e->key, e->value, user)) {
                *p = e->next;
                m->n--;
                drop_entry(m, e);
            } else {
                p = &e->next;
            }
        }
}

size_t sp_map_len(const sp_map *m)
{
    return m->n;
}
