/* metrics.c -- the process's metrics registry, rendered as Prometheus text format 0.0.4. */
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spadmin.h"

typedef enum { KIND_UNTYPED, KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM } kind;

static const char *const kind_name[] = {"untyped", "counter", "gauge", "histogram"};

/* Upper bounds in seconds; "+Inf" is the count. */
static const double k_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const char *const k_bound_text[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                           "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                           "1",      "2.5",   "5",      "10"};
#define NBOUNDS (sizeof(k_bounds) / sizeof(k_bounds[0]))

/* A series never moves once created (the index and its family point at it), and its
 * figures are atomics: an observation takes the registry's read lock only to find it, and
 * threads observing at once never wait on one another. Doubles are kept as their bits. */
typedef struct {
    char *labels; /* "" when none */
    kind k;
    _Atomic uint64_t value;            /* counter, gauge: a double's bits */
    _Atomic uint64_t buckets[NBOUNDS]; /* histogram: per bucket, not cumulative */
    _Atomic uint64_t count;
    _Atomic uint64_t sum; /* a double's bits */
    uint64_t hash;        /* of name and labels, for the index */
    const char *name;     /* its family's */
} series;

typedef struct {
    char *name;
    char *help; /* NULL when not given */
    kind k;
    series **s; /* in creation order, for rendering */
    size_t n, cap;
} family;

/* g_mu guards the families, their series lists and the index; the figures of a series are
 * not under it. Writers (a new family or series, help text) are rare: the first use. */
static pthread_rwlock_t g_mu = PTHREAD_RWLOCK_INITIALIZER;
static family *g_fam;
static size_t g_nfam, g_capfam;
/* The index: open addressing, linear probing, cap a power of two kept at most half full. */
static series **g_idx;
static size_t g_idx_cap, g_idx_n;

/* FNV-1a over name, a NUL and labels. */
static uint64_t key_hash(const char *name, const char *labels)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = name; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xffu) * 1099511628211ULL;
    for (const char *p = labels; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h;
}

static series *index_find_locked(const char *name, const char *labels, uint64_t h)
{
    if (g_idx_cap == 0) return NULL;
    for (size_t i = h & (g_idx_cap - 1);; i = (i + 1) & (g_idx_cap - 1)) {
        series *s = g_idx[i];
        if (s == NULL) return NULL;
        if (s->hash == h && strcmp(s->name, name) == 0 && strcmp(s->labels, labels) == 0) return s;
    }
}

static void index_put_locked(series **idx, size_t cap, series *s)
{
    size_t i = s->hash & (cap - 1);
    while (idx[i] != NULL)
        i = (i + 1) & (cap - 1);
    idx[i] = s;
}

static bool index_add_locked(series *s)
{
    if ((g_idx_n + 1) * 2 > g_idx_cap) {
        size_t cap = g_idx_cap ? g_idx_cap * 2 : 64;
        series **idx = calloc(cap, sizeof(series *));
        if (idx == NULL) return false;
        for (size_t i = 0; i < g_idx_cap; i++)
            if (g_idx[i] != NULL) index_put_locked(idx, cap, g_idx[i]);
        free(g_idx);
        g_idx = idx;
        g_idx_cap = cap;
    }
    index_put_locked(g_idx, g_idx_cap, s);
    g_idx_n++;
    return true;
}

static family *family_locked(const char *name, kind k)
{
    for (size_t i = 0; i < g_nfam; i++)
        if (strcmp(g_fam[i].name, name) == 0) {
            if (g_fam[i].k == KIND_UNTYPED) g_fam[i].k = k; /* declared by help before use */
            return g_fam[i].k == k || k == KIND_UNTYPED ? &g_fam[i] : NULL;
        }
    if (g_nfam == g_capfam) {
        size_t cap = g_capfam ? g_capfam * 2 : 32;
        family *f = realloc(g_fam, cap * sizeof(*f));
        if (f == NULL) return NULL;
        g_fam = f;
        g_capfam = cap;
    }
    family *f = &g_fam[g_nfam];
    memset(f, 0, sizeof(*f));
    f->name = strdup(name);
    if (f->name == NULL) return NULL;
    f->k = k;
    g_nfam++;
    return f;
}

/* Creates the series under the write lock (another thread may have created it meanwhile). */
static series *series_create(const char *name, const char *labels, kind k, uint64_t h)
{
    pthread_rwlock_wrlock(&g_mu);
    series *s = index_find_locked(name, labels, h);
    if (s != NULL) goto out;
    family *f = family_locked(name, k);
    if (f == NULL) goto out;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        series **l = realloc(f->s, cap * sizeof(series *));
        if (l == NULL) goto out;
        f->s = l;
        f->cap = cap;
    }
    s = calloc(1, sizeof(*s));
    if (s != NULL) {
        s->labels = strdup(labels);
        s->k = f->k;
        s->hash = h;
        s->name = f->name;
    }
    if (s == NULL || s->labels == NULL || !index_add_locked(s)) {
        if (s != NULL) free(s->labels);
        free(s);
        s = NULL;
        goto out;
    }
    f->s[f->n++] = s;
out:
    pthread_rwlock_unlock(&g_mu);
    return s;
}

/* The series of 'name' with 'labels', created on first use; NULL when 'name' is already a
 * family of another kind (a programming error: the call is ignored) or on OOM. */
static series *series_get(const char *name, const char *labels, kind k)
{
    if (name == NULL || name[0] == '\0') return NULL;
    if (labels == NULL) labels = "";
    uint64_t h = key_hash(name, labels);
    pthread_rwlock_rdlock(&g_mu);
    series *s = index_find_locked(name, labels, h);
    pthread_rwlock_unlock(&g_mu);
    if (s == NULL) s = series_create(name, labels, k, h);
    return s != NULL && s->k == k ? s : NULL;
}

static uint64_t dbits(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static double bitsd(uint64_t u)
{
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbits(bitsd(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

void spadmin_counter_add(const char *name, const char *labels, double v)
{
    if (!(v >= 0)) return; /* counters never go down; NaN is refused too */
    series *s = series_get(name, labels, KIND_COUNTER);
    if (s != NULL) atomic_add_double(&s->value, v);
}

void spadmin_gauge_set(const char *name, const char *labels, double v)
{
    series *s = series_get(name, labels, KIND_GAUGE);
    if (s != NULL) atomic_store_explicit(&s->value, dbits(v), memory_order_relaxed);
}

void spadmin_observe(const char *name, const char *labels, double seconds)
{
    if (isnan(seconds)) return;
    size_t b = 0;
    while (b < NBOUNDS && seconds > k_bounds[b])
        b++;
    series *s = series_get(name, labels, KIND_HISTOGRAM);
    if (s == NULL) return;
    if (b < NBOUNDS) atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
    atomic_add_double(&s->sum, seconds);
}

void spadmin_metric_help(const char *name, const char *type, const char *help)
{
    kind k = KIND_UNTYPED;
    for (int i = 1; type != NULL && i < 4; i++)
        if (strcmp(type, kind_name[i]) == 0) k = (kind)i;
    if (name == NULL || name[0] == '\0') return;
    pthread_rwlock_wrlock(&g_mu);
    family *f = family_locked(name, k);
    if (f != NULL && help != NULL) {
        char *h = strdup(help);
        if (h != NULL) {
            free(f->help);
            f->help = h;
        }
    }
    pthread_rwlock_unlock(&g_mu);
}

/* ---- rendering ------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
    bool oom;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* A sample value as the exposition format spells it. */
static void put_value(buf *b, double v)
{
    if (isnan(v))
        put(b, "NaN");
    else if (isinf(v))
        put(b, v > 0 ? "+Inf" : "-Inf");
    else
        put(b, "%.15g", v);
}

/* HELP text escapes backslash and newline. */
static void put_help(buf *b, const char *name, const char *help)
{
    put(b, "# HELP %s ", name);
    for (const char *c = help; *c != '\0'; c++) {
        if (*c == '\\')
            put(b, "\\\\");
        else if (*c == '\n')
            put(b, "\\n");
        else
            put(b, "%c", *c);
    }
    put(b, "\n");
}

static void render_family_locked(buf *b, const family *f)
{
    if (f->n == 0) return;
    if (f->help != NULL) put_help(b, f->name, f->help);
    put(b, "# TYPE %s %s\n", f->name, kind_name[f->k]);
    for (size_t i = 0; i < f->n; i++) {
        const series *s = f->s[i];
        bool lab = s->labels[0] != '\0';
        if (f->k != KIND_HISTOGRAM) {
            put(b, lab ? "%s{%s} " : "%s%s ", f->name, s->labels);
            put_value(b, bitsd(atomic_load_explicit(&s->value, memory_order_relaxed)));
            put(b, "\n");
            continue;
        }
        /* The buckets are read one by one while others observe: the count written is
         * their sum, so that "+Inf" never falls below the last bucket. */
        uint64_t cum = 0;
        for (size_t k = 0; k < NBOUNDS; k++) {
            cum += atomic_load_explicit(&s->buckets[k], memory_order_relaxed);
            put(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, s->labels, lab ? "," : "",
                k_bound_text[k], (unsigned long long)cum);
        }
        uint64_t count = atomic_load_explicit(&s->count, memory_order_relaxed);
        if (count < cum) count = cum;
        put(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, s->labels, lab ? "," : "",
            (unsigned long long)count);
        put(b, lab ? "%s_sum{%s} " : "%s_sum%s ", f->name, s->labels);
        put_value(b, bitsd(atomic_load_explicit(&s->sum, memory_order_relaxed)));
        put(b, lab ? "\n%s_count{%s} %llu\n" : "\n%s_count%s %llu\n", f->name, s->labels,
            (unsigned long long)count);
    }
}

static long long resident_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, rss = 0;
    if (f == NULL) return 0;
    if (fscanf(f, "%lld %lld", &size, &rss) != 2) rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL) return 0;
    long n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n > 0 ? n - 1 : 0; /* the directory's own descriptor */
}

/* Seconds since the epoch when this process started: its start in clock ticks after boot
 * (/proc/self/stat field 22) plus the boot time (/proc/stat btime). */
static double g_start_time;
static pthread_once_t g_start_once = PTHREAD_ONCE_INIT;

static void read_start_time(void)
{
    char line[1024];
    unsigned long long ticks = 0, btime = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    if (f == NULL) return;
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')'); /* the command name may hold spaces */
    if (p == NULL) return;
    /* After ')': field 3 (state) .. field 22 (starttime). */
    int field = 2;
    for (; *p != '\0' && field < 22; p++)
        if (*p == ' ') field++;
    ticks = strtoull(p, NULL, 10);
    f = fopen("/proc/stat", "r");
    if (f == NULL) return;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "btime %llu", &btime) == 1) break;
    fclose(f);
    long hz = sysconf(_SC_CLK_TCK);
    g_start_time = (double)btime + (double)ticks / (double)(hz > 0 ? hz : 100);
}

static double start_time(void)
{
    pthread_once(&g_start_once, read_start_time);
    return g_start_time;
}

char *spadmin_metrics_render(void)
{
    buf b = {.cap = 4096};
    b.p = malloc(b.cap);
    if (b.p == NULL) return NULL;
    b.p[0] = '\0';
    pthread_rwlock_rdlock(&g_mu);
    for (size_t i = 0; i < g_nfam; i++)
        render_family_locked(&b, &g_fam[i]);
    pthread_rwlock_unlock(&g_mu);
    put(&b,
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes %lld\n",
        resident_bytes());
    put(&b,
        "# HELP process_open_fds Number of open file descriptors.\n"
        "# TYPE process_open_fds gauge\n"
        "process_open_fds %ld\n",
        open_fds());
    put(&b,
        "# HELP process_start_time_seconds Start time of the process since unix epoch in "
        "seconds.\n"
        "# TYPE process_start_time_seconds gauge\n"
        "process_start_time_seconds %.2f\n",
        start_time());
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
