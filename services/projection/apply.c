/* apply.c -- the consumer of SP_EVENTS (bus.md, "Delivery guarantees"): the kit's durable
 * pull consumer, shared by every replica, hands over batches of up to PRJ_BATCH events;
 * each batch is applied in one transaction and acked after the commit:
 *  - the slots' rows locked in slot id order (two replicas never deadlock);
 *  - per slot, its events in (occurredAt, sequence, eventId) order: one newer than the
 *    event that set the current status moves it on (domain.md rule 4); a change of status
 *    is a history row and an outbox row (SlotStatusChanged, Nats-Msg-Id = eventId);
 *  - every event into the event log once ((occurred_at, event_id) is its key), applied or
 *    not;
 *  - the cameras heard from (events and heartbeats), in camera order.
 * A redelivered event is not newer than itself: it changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projection.h"
#include "spcrypto.h"

typedef struct {
    Sp__Ingest__V1__SlotEvent *ev;
    int previous;       /* the slot's status before it, when applied */
    int after, vehicle; /* the slot's status and vehicle after it */
    bool applied;       /* newer than what set the status: the slot's row takes it */
    bool change;        /* the status changes now (history, outbox) */
    bool pend;          /* a change that waits for the lot's debounce (status.pending) */
    bool cancel;        /* a contrary report: the slot's pending change goes */
    int debounce_ms;    /* the lot's, for a pending change */
} item;

/* The current state of one slot, as read and as the batch moves it on. */
typedef struct {
    const char *slot_id;
    bool usable; /* a live, active slot */
    bool has_key;
    int status, vehicle;
    int debounce_ms; /* the lot's */
    int pending;     /* the status of its pending change, 0: none */
    int64_t occ;
    uint64_t seq;
    char event_id[40];
} slot_state;

static int key_cmp(int64_t occ_a, uint64_t seq_a, const char *ev_a, int64_t occ_b, uint64_t seq_b,
                   const char *ev_b)
{
    if (occ_a != occ_b) return occ_a < occ_b ? -1 : 1;
    if (seq_a != seq_b) return seq_a < seq_b ? -1 : 1;
    return strcmp(ev_a, ev_b);
}

static int by_slot_then_key(const void *a, const void *b)
{
    const Sp__Ingest__V1__SlotEvent *x = ((const item *)a)->ev, *y = ((const item *)b)->ev;
    int c = strcmp(x->slot_id, y->slot_id);
    if (c != 0) return c;
    return key_cmp(x->occurred_at, x->sequence, x->event_id, y->occurred_at, y->sequence,
                   y->event_id);
}

static const char *sql_lock =
    "SELECT s.slot_id::text, s.active AND NOT s.deleted, s.status, COALESCE(s.vehicle, 0),"
    " (extract(epoch FROM s.occurred_at) * 1000000)::bigint, s.sequence, s.event_id::text,"
    " l.debounce_ms, COALESCE(p.status, 0)"
    " FROM status.slot_status s JOIN status.lots l ON l.lot_id = s.lot_id"
    " LEFT JOIN status.pending p ON p.slot_id = s.slot_id"
    " WHERE s.slot_id = ANY($1::uuid[]) ORDER BY s.slot_id FOR UPDATE OF s";

#define TS(x) "timestamptz 'epoch' + " x " * interval '1 microsecond'"
static const char *sql_events =
    "INSERT INTO status.slot_status_events (occurred_at, event_id, slot_id, lot_id, camera_id,"
    " sequence, previous, status, vehicle, confidence, applied, model_name, model_version,"
    " received_at)"
    " SELECT " TS("t.o") ", t.e, t.s, t.l, t.c, t.q, t.p, t.st, t.v, t.cf, t.ap, t.mn, t.mv, " TS(
        "t.r") " FROM unnest($1::bigint[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], "
               "$6::bigint[],"
               "  $7::smallint[], $8::smallint[], $9::smallint[], $10::real[], $11::bool[], "
               "$12::text[],"
               "  $13::text[], $14::bigint[]) AS t(o, e, s, l, c, q, p, st, v, cf, ap, mn, mv, r)"
               " ON CONFLICT DO NOTHING";
static const char *sql_status =
    "UPDATE status.slot_status s SET status = t.st, vehicle = t.v, confidence = t.cf,"
    " camera_id = t.c, occurred_at = " TS(
        "t.o") ", sequence = t.q, event_id = t.e,"
               " changed_at = COALESCE(" TS(
                   "t.ca") ", s.changed_at), updated_at = now()"
                           " FROM unnest($1::uuid[], $2::smallint[], $3::smallint[], $4::real[], "
                           "$5::uuid[],"
                           "  $6::bigint[], $7::bigint[], $8::uuid[], $9::bigint[]) AS t(id, st, "
                           "v, cf, c, o, q, e, ca)"
                           " WHERE s.slot_id = t.id";
static const char *sql_pending =
    "INSERT INTO status.pending (slot_id, status, vehicle, confidence, camera_id, event_id,"
    " occurred_at, sequence, client_id, establishment_id, lot_id, slot_code, due_at)"
    " SELECT t.s, t.st, t.v, t.cf, t.c, t.e, " TS(
        "t.o") ", t.q, t.cl, t.es, t.l, t.code,"
               " now() + t.d * interval '1 millisecond'"
               " FROM unnest($1::uuid[], $2::smallint[], $3::smallint[], $4::real[], $5::uuid[],"
               "  $6::uuid[], $7::bigint[], $8::bigint[], $9::uuid[], $10::uuid[], $11::uuid[],"
               "  $12::text[], $13::int[]) AS t(s, st, v, cf, c, e, o, q, cl, es, l, code, d) "
               "ORDER BY t.s"
               " ON CONFLICT (slot_id) DO UPDATE SET status = EXCLUDED.status, vehicle = "
               "EXCLUDED.vehicle,"
               " confidence = EXCLUDED.confidence, camera_id = EXCLUDED.camera_id,"
               " event_id = EXCLUDED.event_id, occurred_at = EXCLUDED.occurred_at,"
               " sequence = EXCLUDED.sequence, due_at = EXCLUDED.due_at";
static const char *sql_unpend = "DELETE FROM status.pending WHERE slot_id = ANY($1::uuid[])";
/* the cameras heard from (events and heartbeats), one row each in camera order, so that
 * two replicas never take their rows in opposite orders: their slots stay known (the
 * UNKNOWN timer, timers.c); what a heartbeat tells replaces what the last one told */
static const char *sql_seen =
    "INSERT INTO status.camera_heartbeats (camera_id, client_id, lot_id, last_seen_at, uptime_s,"
    " fps, temperature_c, firmware)"
    " SELECT t.c, t.cl, t.l, " TS(
        "t.r") ", t.up, t.fps, t.temp, t.fw"
               " FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::bigint[], "
               "$6::real[],"
               "  $7::real[], $8::text[]) AS t(c, cl, l, r, up, fps, temp, fw) ORDER BY t.c"
               " ON CONFLICT (camera_id) DO UPDATE SET client_id = EXCLUDED.client_id,"
               " lot_id = EXCLUDED.lot_id,"
               " last_seen_at = GREATEST(camera_heartbeats.last_seen_at, EXCLUDED.last_seen_at),"
               " uptime_s = COALESCE(EXCLUDED.uptime_s, camera_heartbeats.uptime_s),"
               " fps = COALESCE(EXCLUDED.fps, camera_heartbeats.fps),"
               " temperature_c = COALESCE(EXCLUDED.temperature_c, camera_heartbeats.temperature_c),"
               " firmware = COALESCE(EXCLUDED.firmware, camera_heartbeats.firmware)";

/* Reads the locked rows of the batch's slots into st (sorted like the items). */
static sp_status lock_slots(slot_state **out, size_t *nout, spdb *db, const item *items, size_t n)
{
    prj_arr ids;
    prj_arr_start(&ids);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(items[i].ev->slot_id, items[i - 1].ev->slot_id) != 0)
            prj_arr_str(&ids, items[i].ev->slot_id);
    const char *p[] = {prj_arr_end(&ids)};
    PGresult *res = NULL;
    sp_status s =
        p[0] != NULL ? spdb_prepared(&res, db, "prj_lock", sql_lock, 1, p, false) : SP_ERR_INTERNAL;
    prj_arr_free(&ids);
    if (s != SP_OK) return s;
    size_t rows = (size_t)PQntuples(res);
    slot_state *st = calloc(rows ? rows : 1, sizeof(*st));
    char **keep = calloc(rows ? rows : 1, sizeof(*keep));
    if (st == NULL || keep == NULL) {
        free(st);
        free(keep);
        PQclear(res);
        return SP_ERR_INTERNAL;
    }
    for (size_t r = 0; r < rows; r++) {
        keep[r] = strdup(PQgetvalue(res, (int)r, 0));
        st[r].slot_id = keep[r];
        st[r].usable = PQgetvalue(res, (int)r, 1)[0] == 't';
        st[r].status = atoi(PQgetvalue(res, (int)r, 2));
        st[r].vehicle = atoi(PQgetvalue(res, (int)r, 3));
        st[r].has_key = !PQgetisnull(res, (int)r, 4);
        if (st[r].has_key) {
            st[r].occ = spsvc_pg_int64(PQgetvalue(res, (int)r, 4));
            st[r].seq = (uint64_t)spsvc_pg_int64(PQgetvalue(res, (int)r, 5));
            snprintf(st[r].event_id, sizeof(st[r].event_id), "%s", PQgetvalue(res, (int)r, 6));
        }
        st[r].debounce_ms = atoi(PQgetvalue(res, (int)r, 7));
        st[r].pending = atoi(PQgetvalue(res, (int)r, 8));
    }
    free(keep); /* the strings live on in st (freed by free_states) */
    PQclear(res);
    *out = st;
    *nout = rows;
    return SP_OK;
}

static void free_states(slot_state *st, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free((char *)st[i].slot_id);
    free(st);
}

/* Decides, per slot in order, which events apply and what each does: a change of status
 * now, or with the lot's debounce a pending change (a report of the status already pending
 * keeps the first, which started the wait), or the cancellation of a pending change by a
 * report of the current status. */
static void decide(item *items, size_t n, slot_state *st, size_t nst)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        Sp__Ingest__V1__SlotEvent *ev = it->ev;
        while (k < nst && strcmp(st[k].slot_id, ev->slot_id) < 0)
            k++;
        slot_state *s = k < nst && strcmp(st[k].slot_id, ev->slot_id) == 0 ? &st[k] : NULL;
        if (s == NULL || !s->usable) continue; /* not a live slot: the log only */
        if (s->has_key &&
            key_cmp(ev->occurred_at, ev->sequence, ev->event_id, s->occ, s->seq, s->event_id) <= 0)
            continue; /* older than what set the status, or itself again */
        it->applied = true;
        it->previous = s->status;
        if (ev->status == s->status) {
            it->cancel = s->pending != 0;
            s->pending = 0;
            s->vehicle = ev->vehicle;
        } else if (s->debounce_ms > 0) {
            it->pend = s->pending != ev->status;
            it->debounce_ms = s->debounce_ms;
            s->pending = ev->status;
        } else {
            it->change = true;
            it->cancel = s->pending != 0; /* the lot's debounce was turned off meanwhile */
            s->pending = 0;
            s->status = ev->status;
            s->vehicle = ev->vehicle;
        }
        it->after = s->status;
        it->vehicle = s->vehicle;
        s->has_key = true;
        s->occ = ev->occurred_at;
        s->seq = ev->sequence;
        snprintf(s->event_id, sizeof(s->event_id), "%s", ev->event_id);
    }
}

/* The statements of one batch of slot events, inside the caller's transaction. */
static sp_status write_events(spdb *db, item *items, size_t n)
{
    enum { E_O, E_E, E_S, E_L, E_C, E_Q, E_P, E_ST, E_V, E_CF, E_AP, E_MN, E_MV, E_R, E_N };
    enum { U_ID, U_ST, U_V, U_CF, U_C, U_O, U_Q, U_E, U_CA, U_N };
    prj_arr e[E_N], u[U_N];
    for (int i = 0; i < E_N; i++)
        prj_arr_start(&e[i]);
    for (int i = 0; i < U_N; i++)
        prj_arr_start(&u[i]);
    prj_change *ch = calloc(n, sizeof(prj_change));
    size_t nu = 0, nh = 0;
    for (size_t i = 0; i < n; i++) {
        const item *it = &items[i];
        const Sp__Ingest__V1__SlotEvent *ev = it->ev;
        prj_arr_i64(&e[E_O], ev->occurred_at);
        prj_arr_str(&e[E_E], ev->event_id);
        prj_arr_str(&e[E_S], ev->slot_id);
        prj_arr_str(&e[E_L], ev->lot_id);
        prj_arr_str(&e[E_C], ev->camera_id);
        prj_arr_i64(&e[E_Q], (int64_t)ev->sequence);
        if (it->applied)
            prj_arr_i64(&e[E_P], it->previous);
        else
            prj_arr_str(&e[E_P], NULL);
        prj_arr_i64(&e[E_ST], ev->status);
        prj_arr_i64(&e[E_V], ev->vehicle);
        prj_arr_f64(&e[E_CF], ev->confidence, ev->has_confidence);
        prj_arr_bool(&e[E_AP], it->applied);
        prj_arr_str(&e[E_MN], ev->model_name);
        prj_arr_str(&e[E_MV], ev->model_version);
        prj_arr_i64(&e[E_R], ev->received_at);
        /* the slot's row takes the last applied event of the slot (items are in order) */
        bool last = it->applied;
        for (size_t j = i + 1; last && j < n && strcmp(items[j].ev->slot_id, ev->slot_id) == 0; j++)
            if (items[j].applied) last = false;
        if (last) {
            const item *changed = NULL; /* the slot's last change in the batch */
            for (size_t j = i + 1;
                 changed == NULL && j-- > 0 && strcmp(items[j].ev->slot_id, ev->slot_id) == 0;)
                if (items[j].change) changed = &items[j];
            prj_arr_str(&u[U_ID], ev->slot_id);
            prj_arr_i64(&u[U_ST], it->after);
            prj_arr_i64(&u[U_V], it->vehicle);
            prj_arr_f64(&u[U_CF], ev->confidence, ev->has_confidence);
            prj_arr_str(&u[U_C], ev->camera_id);
            prj_arr_i64(&u[U_O], ev->occurred_at);
            prj_arr_i64(&u[U_Q], (int64_t)ev->sequence);
            prj_arr_str(&u[U_E], ev->event_id);
            if (changed != NULL)
                prj_arr_i64(&u[U_CA], changed->ev->occurred_at);
            else
                prj_arr_str(&u[U_CA], NULL);
            nu++;
        }
        if (it->change && ch != NULL)
            ch[nh++] = (prj_change){.slot_id = ev->slot_id,
                                    .lot_id = ev->lot_id,
                                    .client_id = ev->client_id,
                                    .establishment_id = ev->establishment_id,
                                    .slot_code = ev->slot_code,
                                    .event_id = ev->event_id,
                                    .camera_id = ev->camera_id,
                                    .previous = it->previous,
                                    .status = ev->status,
                                    .vehicle = ev->vehicle,
                                    .has_confidence = ev->has_confidence,
                                    .confidence = ev->confidence,
                                    .occurred_at = ev->occurred_at,
                                    .sequence = ev->sequence};
    }
    const char *pe[E_N], *pu[U_N];
    bool oom = ch == NULL;
    for (int i = 0; i < E_N; i++)
        oom = oom || (pe[i] = prj_arr_end(&e[i])) == NULL;
    for (int i = 0; i < U_N; i++)
        oom = oom || (pu[i] = prj_arr_end(&u[i])) == NULL;
    sp_status s =
        oom ? SP_ERR_INTERNAL : spdb_prepared(NULL, db, "prj_events", sql_events, E_N, pe, false);
    if (s == SP_OK && nu > 0) s = spdb_prepared(NULL, db, "prj_status", sql_status, U_N, pu, false);
    if (s == SP_OK) s = prj_write_changes(db, ch, nh);
    free(ch);
    for (int i = 0; i < E_N; i++)
        prj_arr_free(&e[i]);
    for (int i = 0; i < U_N; i++)
        prj_arr_free(&u[i]);
    return s;
}

/* The slots' pending changes as the batch leaves them: the last pending change of a slot
 * waits (from now), a slot whose last word was a contrary report has none. */
static sp_status write_pending(spdb *db, const item *items, size_t n)
{
    enum { P_S, P_ST, P_V, P_CF, P_C, P_E, P_O, P_Q, P_CL, P_ES, P_L, P_CODE, P_D, P_N };
    prj_arr p[P_N], del;
    for (int i = 0; i < P_N; i++)
        prj_arr_start(&p[i]);
    prj_arr_start(&del);
    size_t np = 0, nd = 0;
    for (size_t i = 0; i < n; i++) {
        const item *it = &items[i];
        if (!it->pend && !it->cancel) continue;
        bool last = true; /* no later pend or cancel of the same slot */
        for (size_t j = i + 1; last && j < n && strcmp(items[j].ev->slot_id, it->ev->slot_id) == 0;
             j++)
            last = !items[j].pend && !items[j].cancel;
        if (!last) continue;
        const Sp__Ingest__V1__SlotEvent *ev = it->ev;
        if (it->cancel) {
            prj_arr_str(&del, ev->slot_id);
            nd++;
            continue;
        }
        prj_arr_str(&p[P_S], ev->slot_id);
        prj_arr_i64(&p[P_ST], ev->status);
        prj_arr_i64(&p[P_V], ev->vehicle);
        prj_arr_f64(&p[P_CF], ev->confidence, ev->has_confidence);
        prj_arr_str(&p[P_C], ev->camera_id);
        prj_arr_str(&p[P_E], ev->event_id);
        prj_arr_i64(&p[P_O], ev->occurred_at);
        prj_arr_i64(&p[P_Q], (int64_t)ev->sequence);
        prj_arr_str(&p[P_CL], ev->client_id);
        prj_arr_str(&p[P_ES], ev->establishment_id);
        prj_arr_str(&p[P_L], ev->lot_id);
        prj_arr_str(&p[P_CODE], ev->slot_code);
        prj_arr_i64(&p[P_D], it->debounce_ms);
        np++;
    }
    const char *pp[P_N], *pd[1];
    bool oom = (pd[0] = prj_arr_end(&del)) == NULL;
    for (int i = 0; i < P_N; i++)
        oom = (pp[i] = prj_arr_end(&p[i])) == NULL || oom;
    sp_status s = oom ? SP_ERR_INTERNAL : SP_OK;
    if (s == SP_OK && nd > 0) s = spdb_prepared(NULL, db, "prj_unpend", sql_unpend, 1, pd, false);
    if (s == SP_OK && np > 0)
        s = spdb_prepared(NULL, db, "prj_pending", sql_pending, P_N, pp, false);
    for (int i = 0; i < P_N; i++)
        prj_arr_free(&p[i]);
    prj_arr_free(&del);
    return s;
}

/* One camera of a batch: when it was last heard from, the lot and client of its latest
 * message and its latest heartbeat. */
typedef struct {
    const char *camera_id, *client_id, *lot_id;
    int64_t received_at, lot_at;
    const Sp__Ingest__V1__CameraHeartbeat *hb;
} camera_seen;

static camera_seen *seen_of(camera_seen *cams, size_t *nc, const char *camera_id)
{
    for (size_t j = 0; j < *nc; j++)
        if (strcmp(cams[j].camera_id, camera_id) == 0) return &cams[j];
    camera_seen *c = &cams[(*nc)++];
    *c = (camera_seen){.camera_id = camera_id, .received_at = INT64_MIN, .lot_at = INT64_MIN};
    return c;
}

static void heard(camera_seen *c, const char *client_id, const char *lot_id, int64_t at)
{
    if (at > c->received_at) c->received_at = at;
    if (at >= c->lot_at) {
        c->lot_at = at;
        c->client_id = client_id;
        c->lot_id = lot_id;
    }
}

static int by_camera(const void *a, const void *b)
{
    return strcmp(((const camera_seen *)a)->camera_id, ((const camera_seen *)b)->camera_id);
}

/* Each camera of the batch (events and heartbeats) was heard from at its latest message's
 * arrival: one upsert, its rows in camera order. */
static sp_status write_seen(spdb *db, const item *items, size_t n,
                            const Sp__Ingest__V1__CameraHeartbeat *const *hbs, size_t nh)
{
    camera_seen *cams = calloc(n + nh + 1, sizeof(*cams));
    if (cams == NULL) return SP_ERR_INTERNAL;
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        const Sp__Ingest__V1__SlotEvent *ev = items[i].ev;
        if (ev->camera_id == NULL) continue;
        heard(seen_of(cams, &nc, ev->camera_id), ev->client_id, ev->lot_id, ev->received_at);
    }
    for (size_t i = 0; i < nh; i++) {
        camera_seen *c = seen_of(cams, &nc, hbs[i]->camera_id);
        heard(c, hbs[i]->client_id, hbs[i]->lot_id, hbs[i]->received_at);
        if (c->hb == NULL || hbs[i]->received_at >= c->hb->received_at) c->hb = hbs[i];
    }
    qsort(cams, nc, sizeof(*cams), by_camera);
    enum { C_ID, C_CL, C_L, C_R, C_UP, C_FPS, C_TEMP, C_FW, C_N };
    prj_arr a[C_N];
    for (int i = 0; i < C_N; i++)
        prj_arr_start(&a[i]);
    for (size_t j = 0; j < nc; j++) {
        const Sp__Ingest__V1__CameraHeartbeat *hb = cams[j].hb;
        prj_arr_str(&a[C_ID], cams[j].camera_id);
        prj_arr_str(&a[C_CL], cams[j].client_id);
        prj_arr_str(&a[C_L], cams[j].lot_id);
        prj_arr_i64(&a[C_R], cams[j].received_at);
        if (hb != NULL && hb->has_uptime_s)
            prj_arr_i64(&a[C_UP], hb->uptime_s);
        else
            prj_arr_str(&a[C_UP], NULL);
        prj_arr_f64(&a[C_FPS], hb != NULL ? hb->fps : 0, hb != NULL && hb->has_fps);
        prj_arr_f64(&a[C_TEMP], hb != NULL ? hb->temperature_c : 0,
                    hb != NULL && hb->has_temperature_c);
        prj_arr_str(&a[C_FW], hb != NULL ? hb->firmware : NULL);
    }
    const char *p[C_N];
    bool oom = false;
    for (int i = 0; i < C_N; i++)
        oom = (p[i] = prj_arr_end(&a[i])) == NULL || oom;
    sp_status s = oom      ? SP_ERR_INTERNAL
                  : nc > 0 ? spdb_prepared(NULL, db, "prj_seen", sql_seen, C_N, p, false)
                           : SP_OK;
    for (int i = 0; i < C_N; i++)
        prj_arr_free(&a[i]);
    free(cams);
    return s;
}

static bool is_subject(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Makes sure the lots of the events are loaded: false when catalog cannot tell (the batch
 * waits for its redelivery). Events of a lot that is gone stay for the log only. */
static bool lots_loaded(prj_svc *p, item *items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(items[j].ev->lot_id, items[i].ev->lot_id) == 0;
        if (!seen && prj_lot_ensure(p, p->db, items[i].ev->lot_id, false) == PRJ_LOT_UNAVAILABLE)
            return false;
    }
    return true;
}

/* The snapshots of the lots whose slots took an event of the batch, once it committed. */
static void snapshot_lots(prj_svc *p, const item *items, size_t n)
{
    const char **lots = malloc((n ? n : 1) * sizeof(*lots));
    if (lots == NULL) return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].applied) lots[k++] = items[i].ev->lot_id;
    prj_snapshot_later(p, lots, k);
    free(lots);
}

static void on_batch(void *user, spbus_js_msg *msgs, size_t n)
{
    prj_svc *p = user;
    if (p->db == NULL && spdb_connect(&p->db, p->db_url) != SP_OK) return;
    sp_arena *a = sp_arena_create(16384);
    item *items = calloc(n, sizeof(*items));
    const Sp__Ingest__V1__CameraHeartbeat **hbs =
        calloc(n, sizeof(Sp__Ingest__V1__CameraHeartbeat *));
    if (a == NULL || items == NULL || hbs == NULL) goto out;
    ProtobufCAllocator al = spbus_arena_allocator(a);
    size_t ni = 0, nh = 0;
    for (size_t i = 0; i < n; i++) {
        const char *subj = msgs[i].subject;
        Sp__Ingest__V1__SlotEvent *ev = NULL;
        if (is_subject(subj, "sp.events.slot.")) {
            ev = sp__ingest__v1__slot_event__unpack(&al, msgs[i].len, msgs[i].data);
            if (ev != NULL && ev->event_id != NULL && ev->slot_id != NULL && ev->lot_id != NULL &&
                ev->client_id != NULL && ev->establishment_id != NULL && ev->slot_code != NULL &&
                (ev->status == 1 || ev->status == 2)) {
                items[ni++].ev = ev;
                continue;
            }
        } else if (is_subject(subj, "sp.events.heartbeat.")) {
            Sp__Ingest__V1__CameraHeartbeat *hb =
                sp__ingest__v1__camera_heartbeat__unpack(&al, msgs[i].len, msgs[i].data);
            if (hb != NULL && hb->camera_id != NULL && hb->client_id != NULL) {
                hbs[nh++] = hb;
                continue;
            }
        }
        sp_log_error(NULL, "event_unreadable", "subject", subj); /* acked below: never readable */
    }
    if (ni > 0 && !lots_loaded(p, items, ni)) goto out;
    qsort(items, ni, sizeof(*items), by_slot_then_key);

    slot_state *st = NULL;
    size_t nst = 0;
    sp_status s = spdb_begin(p->db);
    if (s == SP_OK && ni > 0) s = lock_slots(&st, &nst, p->db, items, ni);
    if (s == SP_OK) {
        decide(items, ni, st, nst);
        if (ni > 0) s = write_events(p->db, items, ni);
        if (s == SP_OK && ni > 0) s = write_pending(p->db, items, ni);
        if (s == SP_OK) s = write_seen(p->db, items, ni, hbs, nh);
    }
    if (s == SP_OK) s = spdb_commit(p->db);
    spdb_rollback(p->db);
    free_states(st, nst);
    if (s != SP_OK) {
        sp_log_warn(NULL, "batch_not_applied", "code", sp_error_code(s));
        goto out; /* redelivered after AckWait */
    }
    for (size_t i = 0; i < n; i++)
        msgs[i].ack = true;
    spsvc_outbox_wake(p->kit);
    snapshot_lots(p, items, ni);
out:
    free(items);
    free(hbs);
    sp_arena_destroy(a);
}

sp_status prj_apply_start(prj_svc *p)
{
    /* No filter subject: SP_EVENTS holds only sp.events.>, and nats-server 2.9.10 (Debian's)
     * counts a wildcard-filtered consumer's pending messages by walking the stream (fixed in
     * 2.9.15, nats-server#3877): with a backlog it delivered a few hundred events a second
     * and burnt a core (bench/results, the first ingest run). */
    spbus_consumer_opts o = {.stream = "SP_EVENTS",
                             .durable = "projection",
                             .filter_subject = NULL,
                             .batch = PRJ_BATCH,
                             .ack_wait_ms = PRJ_ACK_WAIT_MS,
                             .max_ack_pending = PRJ_MAX_ACK_PENDING,
                             .max_deliver = -1,
                             .fetch_wait_ms = 500};
    return spbus_consume(&p->consumer, spsvc_bus(p->kit), &o, on_batch, p);
}

void prj_apply_stop(prj_svc *p)
{
    spbus_consumer_destroy(p->consumer);
    p->consumer = NULL;
    spdb_destroy(p->db);
    p->db = NULL;
}

bool prj_apply_ready(prj_svc *p)
{
    return p->consumer != NULL && spbus_consumer_ready(p->consumer);
}
