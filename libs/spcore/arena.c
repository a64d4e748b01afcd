/* arena.c -- bump allocator: one per request, freed in one call. */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spcore.h"

typedef struct block {
    struct block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} block;

struct sp_arena {
    block *head;
    size_t next_size;
};

/* The largest request: a block must stay an object whose size fits in ptrdiff_t (malloc
 * refuses more anyway), header and rounding included, so no size below can wrap. */
#define MAX_ALLOC ((size_t)PTRDIFF_MAX - sizeof(block) - 15)

static block *new_block(size_t cap)
{
    block *b = malloc(sizeof(block) + cap);
    if (b == NULL) return NULL;
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

sp_arena *sp_arena_create(size_t first_block)
{
    sp_arena *a = calloc(1, sizeof(*a));
    if (a == NULL) return NULL;
    a->next_size = first_block < 256 ? 256 : first_block;
    return a;
}

void sp_arena_destroy(sp_arena *a)
{
    if (a == NULL) return;
    for (block *b = a->head, *n; b != NULL; b = n) {
        n = b->next;
        free(b);
    }
    free(a);
}

void *sp_arena_alloc(sp_arena *a, size_t n)
{
    if (n > MAX_ALLOC) return NULL;
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    block *b = a->head;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = a->next_size;
        while (cap < n)
            cap = cap > MAX_ALLOC / 2 ? n : cap * 2;
        b = new_block(cap);
        if (b == NULL) return NULL;
        b->next = a->head;
        a->head = b;
        if (a->next_size < (1u << 20)) a->next_size *= 2;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

char *sp_arena_strndup(sp_arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX) return NULL; /* n + 1 would wrap */
    char *p = sp_arena_alloc(a, n + 1);
    if (p == NULL) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *sp_arena_strdup(sp_arena *a, const char *s)
{
    return sp_arena_strndup(a, s, strlen(s));
}

char *sp_arena_printf(sp_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *p = sp_arena_alloc(a, (size_t)n + 1);
    if (p == NULL) return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
