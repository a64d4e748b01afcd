/* timers.c -- what changes a slot's status without an event arriving, on a task of every
 * replica (rows taken FOR UPDATE SKIP LOCKED, so that two replicas never do one twice and
 * never wait for each other or for the consumer):
 *  - debounce (domain.md rule 5): a pending change whose lot's debounceMs has passed since
 *    the event that started it, with no contrary report since, is applied (its event's id,
 *    time and sequence);
 *  - a camera silent (no event, no heartbeat) for longer than its lot's unknownAfterS
 *    (0: never) turns the slots it reported UNKNOWN; its next report sets them again;
 *  - and, hourly, pg_partman's maintenance of the day partitions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projection.h"
#include "spcrypto.h"

#define TIMER_BATCH "500"
#define UNKNOWN_EVERY 5 /* ticks: the silent cameras are looked for once a second */
/* the namespace of the ids of UNKNOWN changes: UUIDv5(ns, "unknown|" slot | the event it
 * replaces), the same after a retry */
#define UNKNOWN_NS "0e6b3c7a-5d1f-4f0e-9a2b-7c4d8e1f3a65"

#define TS(x) "timestamptz 'epoch' + " x " * interval '1 microsecond'"
static const char *sql_due =
    "SELECT p.slot_id::text, p.status, COALESCE(p.vehicle, 0), p.confidence, p.event_id::text,"
    " (extract(epoch FROM p.occurred_at) * 1000000)::bigint, p.sequence, p.client_id::text,"
    " p.establishment_id::text, p.lot_id::text, p.slot_code, s.status,"
    " s.active AND NOT s.deleted, p.camera_id::text"
    " FROM status.pending p JOIN status.slot_status s ON s.slot_id = p.slot_id"
    " WHERE p.due_at <= now() ORDER BY p.slot_id LIMIT " TIMER_BATCH
    " FOR UPDATE OF p, s SKIP LOCKED";
static const char *sql_held =
    "UPDATE status.slot_status s SET status = t.st, vehicle = t.v, confidence = t.cf,"
    " changed_at = " TS(
        "t.o") ", updated_at = now()"
               " FROM unnest($1::uuid[], $2::smallint[], $3::smallint[], $4::real[], $5::bigint[])"
               "  AS t(id, st, v, cf, o) WHERE s.slot_id = t.id";
static const char *sql_unpend = "DELETE FROM status.pending WHERE slot_id = ANY($1::uuid[])";
static const char *sql_silent =
    "SELECT s.slot_id::text, s.lot_id::text, l.client_id::text, l.establishment_id::text,"
    " s.slot_code, s.status, s.event_id::text, s.sequence"
    " FROM status.camera_heartbeats h"
    " JOIN status.slot_status s ON s.camera_id = h.camera_id"
    " JOIN status.lots l ON l.lot_id = s.lot_id"
    " WHERE s.status <> 0 AND s.active AND NOT s.deleted AND l.unknown_after_s > 0"
    "   AND h.last_seen_at < now() - l.unknown_after_s * interval '1 second'"
    " ORDER BY s.slot_id LIMIT " TIMER_BATCH " FOR UPDATE OF s SKIP LOCKED";
static const char *sql_unknown =
    "UPDATE status.slot_status SET status = 0, vehicle = NULL, confidence = NULL,"
    " changed_at = now(), updated_at = now() WHERE slot_id = ANY($1::uuid[])";

static const char *val(PGresult *r, int row, int col)
{
    return PQgetvalue(r, row, col);
}

/* The lots of the changes a timer made, for their snapshots after the commit. */
static void snapshot_changes(prj_svc *p, const prj_change *ch, size_t n)
{
    const char **lots = malloc((n ? n : 1) * sizeof(*lots));
    if (lots == NULL) return;
    for (size_t i = 0; i < n; i++)
        lots[i] = ch[i].lot_id;
    prj_snapshot_later(p, lots, n);
    free(lots);
}

/* Applies the pending changes that have held. Returns how many rows it took (-1: failed). */
static int apply_held(prj_svc *p, spdb *db)
{
    PGresult *r = NULL;
    sp_status s = spdb_begin(db);
    if (s == SP_OK) s = spdb_prepared(&r, db, "prj_t_due", sql_due, 0, NULL, false);
    int n = s == SP_OK ? PQntuples(r) : 0;
    prj_change *ch = calloc((size_t)(n ? n : 1), sizeof(prj_change));
    enum { U_ID, U_ST, U_V, U_CF, U_O, U_N };
    prj_arr u[U_N], all;
    for (int i = 0; i < U_N; i++)
        prj_arr_start(&u[i]);
    prj_arr_start(&all);
    size_t nc = 0;
    for (int i = 0; s == SP_OK && ch != NULL && i < n; i++) {
        prj_arr_str(&all, val(r, i, 0));
        int status = atoi(val(r, i, 1)), current = atoi(val(r, i, 11));
        if (val(r, i, 12)[0] != 't' || status == current) continue; /* gone, or moot */
        bool has_cf = !PQgetisnull(r, i, 3);
        double cf = has_cf ? strtod(val(r, i, 3), NULL) : 0;
        int64_t occ = spsvc_pg_int64(val(r, i, 5));
        prj_arr_str(&u[U_ID], val(r, i, 0));
        prj_arr_i64(&u[U_ST], status);
        prj_arr_i64(&u[U_V], atoi(val(r, i, 2)));
        prj_arr_f64(&u[U_CF], cf, has_cf);
        prj_arr_i64(&u[U_O], occ);
        ch[nc++] = (prj_change){.slot_id = val(r, i, 0),
                                .lot_id = val(r, i, 9),
                                .client_id = val(r, i, 7),
                                .establishment_id = val(r, i, 8),
                                .slot_code = val(r, i, 10),
                                .event_id = val(r, i, 4),
                                .camera_id = PQgetisnull(r, i, 13) ? NULL : val(r, i, 13),
                                .previous = current,
                                .status = status,
                                .vehicle = atoi(val(r, i, 2)),
                                .has_confidence = has_cf,
                                .confidence = cf,
                                .occurred_at = occ,
                                .sequence = (uint64_t)spsvc_pg_int64(val(r, i, 6))};
    }
    const char *pu[U_N], *pa[1];
    bool oom = ch == NULL || (pa[0] = prj_arr_end(&all)) == NULL;
    for (int i = 0; i < U_N; i++)
        oom = (pu[i] = prj_arr_end(&u[i])) == NULL || oom;
    if (s == SP_OK && oom) s = SP_ERR_INTERNAL;
    if (s == SP_OK && nc > 0) s = spdb_prepared(NULL, db, "prj_t_held", sql_held, U_N, pu, false);
    if (s == SP_OK && n > 0) s = spdb_prepared(NULL, db, "prj_t_unpend", sql_unpend, 1, pa, false);
    if (s == SP_OK) s = prj_write_changes(db, ch, nc);
    if (s == SP_OK) s = spdb_commit(db);
    spdb_rollback(db);
    if (s == SP_OK && nc > 0) snapshot_changes(p, ch, nc);
    for (int i = 0; i < U_N; i++)
        prj_arr_free(&u[i]);
    prj_arr_free(&all);
    free(ch);
    PQclear(r);
    if (s != SP_OK) sp_log_warn(NULL, "pending_not_applied", "code", sp_error_code(s));
    return s == SP_OK ? (int)nc : -1;
}

/* Turns the slots of silent cameras UNKNOWN. Returns how many (-1: failed). */
static int mark_unknown(prj_svc *p, spdb *db)
{
    PGresult *r = NULL;
    sp_status s = spdb_begin(db);
    if (s == SP_OK) s = spdb_prepared(&r, db, "prj_t_silent", sql_silent, 0, NULL, false);
    int n = s == SP_OK ? PQntuples(r) : 0;
    prj_change *ch = calloc((size_t)(n ? n : 1), sizeof(prj_change));
    char(*ids)[SPCRYPTO_UUID_LEN] = calloc((size_t)(n ? n : 1), SPCRYPTO_UUID_LEN);
    prj_arr all;
    prj_arr_start(&all);
    int64_t now = sp_now_us();
    for (int i = 0; s == SP_OK && ch != NULL && ids != NULL && i < n; i++) {
        char name[128];
        snprintf(name, sizeof(name), "unknown|%s|%s", val(r, i, 0), val(r, i, 6));
        if (spcrypto_uuid_v5(ids[i], UNKNOWN_NS, name, strlen(name)) != SP_OK) {
            s = SP_ERR_INTERNAL;
            break;
        }
        prj_arr_str(&all, val(r, i, 0));
        ch[i] = (prj_change){.slot_id = val(r, i, 0),
                             .lot_id = val(r, i, 1),
                             .client_id = val(r, i, 2),
                             .establishment_id = val(r, i, 3),
                             .slot_code = val(r, i, 4),
                             .event_id = ids[i],
                             .previous = atoi(val(r, i, 5)),
                             .status = 0,
                             .occurred_at = now,
                             .sequence = (uint64_t)spsvc_pg_int64(val(r, i, 7))};
    }
    const char *pa[] = {prj_arr_end(&all)};
    if (s == SP_OK && (ch == NULL || ids == NULL || pa[0] == NULL)) s = SP_ERR_INTERNAL;
    if (s == SP_OK && n > 0)
        s = spdb_prepared(NULL, db, "prj_t_unknown", sql_unknown, 1, pa, false);
    if (s == SP_OK && n > 0) s = spdb_prepared(NULL, db, "prj_t_unpend", sql_unpend, 1, pa, false);
    if (s == SP_OK) s = prj_write_changes(db, ch, (size_t)n);
    if (s == SP_OK) s = spdb_commit(db);
    spdb_rollback(db);
    if (s == SP_OK && n > 0) snapshot_changes(p, ch, (size_t)n);
    prj_arr_free(&all);
    free(ch);
    free(ids);
    PQclear(r);
    if (s != SP_OK) sp_log_warn(NULL, "unknown_not_marked", "code", sp_error_code(s));
    return s == SP_OK ? n : -1;
}

static void tick(void *user)
{
    prj_svc *p = user;
    static unsigned ticks;
    if (p->timer_db == NULL && spdb_connect(&p->timer_db, p->db_url) != SP_OK) return;
    int changed = apply_held(p, p->timer_db);
    /* silence is judged only once the consumer has applied what waited in the stream: after
     * an outage of the projection, cameras' reports are still on their way */
    if (++ticks % UNKNOWN_EVERY == 0 && spbus_consumer_caught_up(p->consumer)) {
        int u = mark_unknown(p, p->timer_db);
        if (u > 0) changed += u;
    }
    if (changed > 0) spsvc_outbox_wake(p->kit);
}

/* pg_partman's maintenance of the day partitions (a week ahead), on its own connection;
 * every replica runs it, partman locks against itself. */
static void maintain(void *user)
{
    prj_svc *p = user;
    spdb *db = NULL;
    if (spdb_connect(&db, p->db_url) != SP_OK) return;
    static const char *const tables[] = {"status.slot_status_history", "status.slot_status_events"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        const char *params[] = {tables[i]};
        sp_status s = spdb_exec(db,
                                "SELECT partman.run_maintenance(p_parent_table => $1::text,"
                                " p_jobmon => false, p_analyze => false)",
                                1, params);
        if (s != SP_OK) sp_log_warn(NULL, "partition_maintenance_failed", "table", tables[i]);
    }
    spdb_destroy(db);
}

sp_status prj_timers_start(prj_svc *p)
{
    sp_task *m = NULL;
    sp_status s = spsvc_every(p->kit, &m, PRJ_MAINTENANCE_MS, maintain, p);
    if (s == SP_OK) sp_task_wake(m); /* once at start, then hourly */
    if (s == SP_OK) s = spsvc_every(p->kit, &p->timer, PRJ_TIMER_MS, tick, p);
    return s;
}

void prj_timers_stop(prj_svc *p)
{
    /* the kit stops the task before stop() runs: only the connection is left */
    spdb_destroy(p->timer_db);
    p->timer_db = NULL;
}
