/* pg_ceiling.c -- the PostgreSQL ceiling of `make bench`'s ingest figures (bench/ingest.sh):
 * the projection's write set, batch after batch on one connection as its consumer does,
 * with nothing else around it (no bus, no decoding, no decisions): per batch of BATCH
 * events over distinct slots, in one transaction, the slots' rows locked in id order, the
 * event log rows, the slots' new status, the history rows, the outbox rows and the
 * cameras' last-seen rows; then the outbox rows deleted as the publisher does once they
 * are acked. Into tables made LIKE the projection's (schema bench_ceiling, dropped at the
 * end; not partitioned, which only makes the ceiling higher), for SECONDS. Prints
 * {"events_per_s":..,"events":..,"seconds":..}.
 *
 * usage: bench_pg DATABASE_URL LOTS SLOTS_PER_LOT BATCH SECONDS */
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static PGconn *g_pg;

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_pg: %s: %s\n", what, PQerrorMessage(g_pg));
    exit(1);
}

static void exec(const char *sql, int n, const char *const *p)
{
    PGresult *r = PQexecParams(g_pg, sql, n, NULL, p, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) die(sql);
    PQclear(r);
}

/* a growing "{a,b,...}" */
typedef struct {
    char *s;
    size_t n, cap;
} arr;

static void add(arr *a, const char *v)
{
    size_t len = strlen(v);
    if (a->n + len + 3 > a->cap) {
        a->cap = (a->cap + len + 3) * 2;
        a->s = realloc(a->s, a->cap);
        if (a->s == NULL) exit(1);
    }
    char sep = a->n == 0 ? '{' : ',';
    a->s[a->n++] = sep;
    memcpy(a->s + a->n, v, len);
    a->n += len;
    a->s[a->n] = '\0';
}

static const char *end(arr *a)
{
    if (a->n == 0) add(a, "");
    a->s[a->n] = '}';
    a->s[a->n + 1] = '\0';
    return a->s;
}

static void reset(arr *a)
{
    a->n = 0;
}

#define TS(x) "timestamptz 'epoch' + " x " * interval '1 microsecond'"
static const char *sql_lock =
    "SELECT s.slot_id, s.status, s.occurred_at, s.sequence, s.event_id, l.debounce_ms"
    " FROM bench_ceiling.slot_status s JOIN bench_ceiling.lots l ON l.lot_id = s.lot_id"
    " WHERE s.slot_id = ANY($1::uuid[]) ORDER BY s.slot_id FOR UPDATE OF s";
static const char *sql_events =
    "INSERT INTO bench_ceiling.slot_status_events (occurred_at, event_id, slot_id, lot_id,"
    " camera_id, sequence, previous, status, vehicle, confidence, applied, received_at)"
    " SELECT " TS("t.o") ", t.e, t.s, t.l, t.c, 0, t.p, t.st, 1, 0.9, true, " TS("t.o")
    " FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::smallint[],"
    "  $7::smallint[]) AS t(o, e, s, l, c, p, st) ON CONFLICT DO NOTHING";
static const char *sql_status =
    "UPDATE bench_ceiling.slot_status s SET status = t.st, vehicle = 1, confidence = 0.9,"
    " camera_id = t.c, occurred_at = " TS("t.o") ", sequence = 0, event_id = t.e,"
    " changed_at = " TS("t.o") ", updated_at = now()"
    " FROM unnest($1::uuid[], $2::smallint[], $3::uuid[], $4::bigint[], $5::uuid[])"
    "  AS t(id, st, c, o, e) WHERE s.slot_id = t.id";
static const char *sql_history =
    "INSERT INTO bench_ceiling.slot_status_history (slot_id, lot_id, previous, status, vehicle,"
    " confidence, event_id, occurred_at, sequence, camera_id)"
    " SELECT t.s, t.l, t.p, t.st, 1, 0.9, t.e, " TS("t.o") ", 0, t.c"
    " FROM unnest($1::uuid[], $2::uuid[], $3::smallint[], $4::smallint[], $5::uuid[],"
    "  $6::bigint[], $7::uuid[]) AS t(s, l, p, st, e, o, c)";
static const char *sql_outbox =
    "INSERT INTO bench_ceiling.outbox (event_id, subject, payload)"
    " SELECT t.e, t.s, decode($3, 'hex') FROM unnest($1::uuid[], $2::text[]) AS t(e, s)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING id";
static const char *sql_seen =
    "INSERT INTO bench_ceiling.camera_heartbeats (camera_id, client_id, lot_id, last_seen_at)"
    " SELECT t.c, t.c, t.l, now() FROM unnest($1::uuid[], $2::uuid[]) AS t(c, l) ORDER BY t.c"
    " ON CONFLICT (camera_id) DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at";
static const char *sql_unbox = "DELETE FROM bench_ceiling.outbox WHERE id = ANY($1::bigint[])";

static void uuid_of(char out[37], unsigned kind, unsigned long long n)
{
    snprintf(out, 37, "%08x-0000-4000-8000-%012llx", kind, n & 0xffffffffffffULL);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: bench_pg DATABASE_URL LOTS SLOTS_PER_LOT BATCH SECONDS\n");
        return 2;
    }
    int lots = atoi(argv[2]), per = atoi(argv[3]), batch = atoi(argv[4]), seconds = atoi(argv[5]);
    int nslots = lots * per;
    if (lots < 1 || per < 1 || batch < 1 || batch > nslots || seconds < 1) return 2;
    g_pg = PQconnectdb(argv[1]);
    if (PQstatus(g_pg) != CONNECTION_OK) die("connect");
    exec("DROP SCHEMA IF EXISTS bench_ceiling CASCADE", 0, NULL);
    exec("CREATE SCHEMA bench_ceiling", 0, NULL);
    static const char *const tables[] = {"lots", "slot_status", "slot_status_events",
                                         "slot_status_history", "outbox", "camera_heartbeats"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        char sql[256];
        snprintf(sql, sizeof(sql),
                 "CREATE TABLE bench_ceiling.%s (LIKE status.%s INCLUDING DEFAULTS"
                 " INCLUDING INDEXES INCLUDING CONSTRAINTS)",
                 tables[i], tables[i]);
        exec(sql, 0, NULL);
    }
    char lp[32], pp[32];
    snprintf(lp, sizeof(lp), "%d", lots);
    snprintf(pp, sizeof(pp), "%d", per);
    const char *seed[] = {lp, pp};
    exec("INSERT INTO bench_ceiling.lots (lot_id, client_id, establishment_id)"
         " SELECT ('00000001-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,"
         " gen_random_uuid(), gen_random_uuid() FROM generate_series(0, $1::int - 1) g",
         1, seed);
    exec("INSERT INTO bench_ceiling.slot_status (slot_id, lot_id, slot_code, slot_type)"
         " SELECT ('00000002-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,"
         " ('00000001-0000-4000-8000-' || lpad(to_hex(g / $2::int), 12, '0'))::uuid,"
         " 'S' || (g % $2::int), 'regular' FROM generate_series(0, $1::int * $2::int - 1) g",
         2, seed);
    exec("ANALYZE bench_ceiling.slot_status", 0, NULL);
    /* a SlotStatusChanged of the usual size (its bytes do not matter to PostgreSQL) */
    char payload[2 * 260 + 1];
    for (size_t i = 0; i < sizeof(payload) - 1; i++)
        payload[i] = "0123456789abcdef"[i % 16];
    payload[sizeof(payload) - 1] = '\0';

    arr a[8] = {{0}}, ob = {0};
    char *status = calloc((size_t)nslots, 1);
    long events = 0;
    unsigned long long ev = 0;
    int cursor = 0;
    int64_t start = now_us(), stop = start + (int64_t)seconds * 1000000;
    while (now_us() < stop) {
        /* the batch: 'batch' consecutive slots (so in id order), each flipping */
        int first = cursor;
        cursor = (cursor + batch) % nslots;
        for (int i = 0; i < 8; i++)
            reset(&a[i]);
        int64_t at = now_us();
        char o[24];
        snprintf(o, sizeof(o), "%lld", (long long)at);
        int ids[1000];
        int nb = 0;
        for (int k = 0; k < batch; k++)
            ids[nb++] = (first + k) % nslots;
        /* sorted: a wrapped batch starts again at 0 */
        for (int i = 1; i < nb; i++)
            for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
                int t = ids[j];
                ids[j] = ids[j - 1];
                ids[j - 1] = t;
            }
        for (int i = 0; i < nb; i++) {
            int sl = ids[i];
            char slot[37], lot[37], cam[37], eid[37], st[8], pv[8];
            uuid_of(slot, 2, (unsigned long long)sl);
            uuid_of(lot, 1, (unsigned long long)(sl / per));
            uuid_of(cam, 3, (unsigned long long)(sl / per));
            uuid_of(eid, 4, ++ev);
            snprintf(pv, sizeof(pv), "%d", status[sl]);
            status[sl] = status[sl] == 2 ? 1 : 2;
            snprintf(st, sizeof(st), "%d", status[sl]);
            add(&a[0], slot);
            add(&a[1], lot);
            add(&a[2], cam);
            add(&a[3], eid);
            add(&a[4], st);
            add(&a[5], pv);
            add(&a[6], o);
            char subject[200];
            snprintf(subject, sizeof(subject), "sp.slot-status.v1.%s.%s.%s.S%d", lot, lot, lot,
                     sl % per);
            add(&a[7], subject);
        }
        /* the cameras of the batch: one per lot touched */
        arr cams = {0}, clots = {0};
        for (int l = 0; l < lots; l++) {
            bool touched = false;
            for (int i = 0; i < nb && !touched; i++)
                touched = ids[i] / per == l;
            if (!touched) continue;
            char cam[37], lot[37];
            uuid_of(cam, 3, (unsigned long long)l);
            uuid_of(lot, 1, (unsigned long long)l);
            add(&cams, cam);
            add(&clots, lot);
        }
        const char *slots = end(&a[0]), *lotsv = end(&a[1]), *camsv = end(&a[2]),
                   *eids = end(&a[3]), *sts = end(&a[4]), *pvs = end(&a[5]), *os = end(&a[6]),
                   *subs = end(&a[7]);
        exec("BEGIN", 0, NULL);
        const char *p1[] = {slots};
        exec(sql_lock, 1, p1);
        const char *p2[] = {os, eids, slots, lotsv, camsv, pvs, sts};
        exec(sql_events, 7, p2);
        const char *p3[] = {slots, sts, camsv, os, eids};
        exec(sql_status, 5, p3);
        const char *p4[] = {slots, lotsv, pvs, sts, eids, os, camsv};
        exec(sql_history, 7, p4);
        const char *p5[] = {eids, subs, payload};
        PGresult *r = PQexecParams(g_pg, sql_outbox, 3, NULL, p5, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) die("outbox");
        reset(&ob);
        for (int i = 0; i < PQntuples(r); i++)
            add(&ob, PQgetvalue(r, i, 0));
        PQclear(r);
        const char *p6[] = {end(&cams), end(&clots)};
        exec(sql_seen, 2, p6);
        exec("COMMIT", 0, NULL);
        /* the publisher, once the stream acked them */
        const char *p7[] = {end(&ob)};
        exec(sql_unbox, 1, p7);
        free(cams.s);
        free(clots.s);
        events += nb;
    }
    double took = (double)(now_us() - start) / 1e6;
    exec("DROP SCHEMA bench_ceiling CASCADE", 0, NULL);
    printf("{\"events_per_s\":%.0f,\"events\":%ld,\"batch\":%d,\"seconds\":%.2f}\n",
           (double)events / took, events, batch, took);
    for (int i = 0; i < 8; i++)
        free(a[i].s);
    free(ob.s);
    free(status);
    PQfinish(g_pg);
    return 0;
}
