/* apply.c -- the consumer of SP_EVENTS (bus.md, "Delivery guarantees"): the kit's durable
 * pull consumer, shared by every replica, hands over batches of up to PRJ_BATCH events;
 * each batch is applied in one transaction and acked after the commit:
 *  - the slots' rows locked in slot id order (two replicas never deadlock);
 *  - per slot, its events in (occurredAt, sequence, eventId) order: one newer than the
 *    event that set the current status moves it on (domain.md rule 4); a change of status
 *    is a history row and an outbox row (SlotStatusChanged, Nats-Msg-Id = eventId);
 *  - every event into the event log once ((occurred_at, event_id) is its key), applied or
 *    not;
 *  - heartbeats: the camera's last one.
 * A redelivered event is not newer than itself: it changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "projection.h"
#include "spcrypto.h"

typedef struct {
    Sp__Ingest__V1__SlotEvent *ev;
    int previous; /* the slot's status before it, when applied */
    bool applied, change;
} item;

/* The current state of one slot, as read and as the batch moves it on. */
typedef struct {
    const char *slot_id;
    bool usable; /* a live, active slot */
    bool has_key;
    int status, vehicle;
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
    "SELECT slot_id::text, active AND NOT deleted, status, COALESCE(vehicle, 0),"
    " (extract(epoch FROM occurred_at) * 1000000)::bigint, sequence, event_id::text"
    " FROM status.slot_status WHERE slot_id = ANY($1::uuid[]) ORDER BY slot_id FOR UPDATE";

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
static const char *sql_history =
    "INSERT INTO status.slot_status_history (slot_id, lot_id, previous, status, vehicle,"
    " confidence, event_id, occurred_at, sequence)"
    " SELECT t.s, t.l, t.p, t.st, t.v, t.cf, t.e, " TS(
        "t.o") ", t.q"
               " FROM unnest($1::uuid[], $2::uuid[], $3::smallint[], $4::smallint[], "
               "$5::smallint[],"
               "  $6::real[], $7::uuid[], $8::bigint[], $9::bigint[]) AS t(s, l, p, st, v, cf, e, "
               "o, q)";
static const char *sql_outbox =
    "INSERT INTO status.outbox (event_id, subject, payload)"
    " SELECT t.e, t.s, decode(t.p, 'hex') FROM unnest($1::uuid[], $2::text[], $3::text[])"
    "  AS t(e, s, p) ON CONFLICT (event_id) DO NOTHING";
static const char *sql_heartbeat =
    "INSERT INTO status.camera_heartbeats (camera_id, client_id, lot_id, last_seen_at, uptime_s,"
    " fps, temperature_c, firmware)"
    " VALUES ($1::uuid, $2::uuid, $3::uuid, " TS(
        "$4::bigint") ", $5::bigint, $6::real, $7::real, $8)"
                      " ON CONFLICT (camera_id) DO UPDATE SET client_id = EXCLUDED.client_id,"
                      " lot_id = EXCLUDED.lot_id, last_seen_at = "
                      "GREATEST(camera_heartbeats.last_seen_at,"
                      " EXCLUDED.last_seen_at), uptime_s = EXCLUDED.uptime_s, fps = EXCLUDED.fps,"
                      " temperature_c = EXCLUDED.temperature_c, firmware = EXCLUDED.firmware";

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
    sp_status s = p[0] != NULL ? spdb_query(&res, db, sql_lock, 1, p) : SP_ERR_INTERNAL;
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

/* Decides, per slot in order, which events apply and which change the status. */
static void decide(item *items, size_t n, slot_state *st, size_t nst)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        Sp__Ingest__V1__SlotEvent *ev = items[i].ev;
        while (k < nst && strcmp(st[k].slot_id, ev->slot_id) < 0)
            k++;
        slot_state *s = k < nst && strcmp(st[k].slot_id, ev->slot_id) == 0 ? &st[k] : NULL;
        if (s == NULL || !s->usable) continue; /* not a live slot: the log only */
        if (s->has_key &&
            key_cmp(ev->occurred_at, ev->sequence, ev->event_id, s->occ, s->seq, s->event_id) <= 0)
            continue; /* older than what set the status, or itself again */
        items[i].applied = true;
        items[i].previous = s->status;
        items[i].change = ev->status != s->status;
        s->has_key = true;
        s->status = ev->status;
        s->vehicle = ev->vehicle;
        s->occ = ev->occurred_at;
        s->seq = ev->sequence;
        snprintf(s->event_id, sizeof(s->event_id), "%s", ev->event_id);
    }
}

/* The SlotStatusChanged of an applied change, as hex for the outbox insert. */
static char *change_hex(const item *it, int64_t now)
{
    const Sp__Ingest__V1__SlotEvent *ev = it->ev;
    Sp__Status__V1__SlotStatusChanged c = SP__STATUS__V1__SLOT_STATUS_CHANGED__INIT;
    c.client_id = ev->client_id;
    c.establishment_id = ev->establishment_id;
    c.lot_id = ev->lot_id;
    c.slot_id = ev->slot_id;
    c.slot_code = ev->slot_code;
    c.previous_status = (char *)prj_status_name(it->previous);
    c.status = (char *)prj_status_name(ev->status);
    c.vehicle = (char *)prj_vehicle_name(ev->vehicle);
    c.has_confidence = ev->has_confidence;
    c.confidence = ev->confidence;
    c.has_occurred_at = c.has_recorded_at = c.has_sequence = 1;
    c.occurred_at = ev->occurred_at;
    c.recorded_at = now;
    c.event_id = ev->event_id;
    c.sequence = ev->sequence;
    size_t len = sp__status__v1__slot_status_changed__get_packed_size(&c);
    uint8_t *buf = malloc(len ? len : 1);
    char *hex = malloc(len * 2 + 1);
    if (buf == NULL || hex == NULL) {
        free(buf);
        free(hex);
        return NULL;
    }
    sp__status__v1__slot_status_changed__pack(&c, buf);
    spcrypto_hex(hex, buf, len);
    hex[len * 2] = '\0';
    free(buf);
    return hex;
}

/* The statements of one batch of slot events, inside the caller's transaction. */
static sp_status write_events(spdb *db, item *items, size_t n)
{
    enum { E_O, E_E, E_S, E_L, E_C, E_Q, E_P, E_ST, E_V, E_CF, E_AP, E_MN, E_MV, E_R, E_N };
    enum { U_ID, U_ST, U_V, U_CF, U_C, U_O, U_Q, U_E, U_CA, U_N };
    enum { H_S, H_L, H_P, H_ST, H_V, H_CF, H_E, H_O, H_Q, H_N };
    enum { X_E, X_S, X_P, X_N };
    prj_arr e[E_N], u[U_N], h[H_N], x[X_N];
    for (int i = 0; i < E_N; i++)
        prj_arr_start(&e[i]);
    for (int i = 0; i < U_N; i++)
        prj_arr_start(&u[i]);
    for (int i = 0; i < H_N; i++)
        prj_arr_start(&h[i]);
    for (int i = 0; i < X_N; i++)
        prj_arr_start(&x[i]);
    int64_t now = sp_now_us();
    size_t nu = 0, nh = 0;
    bool oom = false;
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
            prj_arr_i64(&u[U_ST], ev->status);
            prj_arr_i64(&u[U_V], ev->vehicle);
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
        if (it->change) {
            prj_arr_str(&h[H_S], ev->slot_id);
            prj_arr_str(&h[H_L], ev->lot_id);
            prj_arr_i64(&h[H_P], it->previous);
            prj_arr_i64(&h[H_ST], ev->status);
            prj_arr_i64(&h[H_V], ev->vehicle);
            prj_arr_f64(&h[H_CF], ev->confidence, ev->has_confidence);
            prj_arr_str(&h[H_E], ev->event_id);
            prj_arr_i64(&h[H_O], ev->occurred_at);
            prj_arr_i64(&h[H_Q], (int64_t)ev->sequence);
            char subject[256];
            snprintf(subject, sizeof(subject), "sp.slot-status.v1.%s.%s.%s.%s", ev->client_id,
                     ev->establishment_id, ev->lot_id, ev->slot_code);
            char *hex = change_hex(it, now);
            oom = oom || hex == NULL;
            prj_arr_str(&x[X_E], ev->event_id);
            prj_arr_str(&x[X_S], subject);
            prj_arr_str(&x[X_P], hex != NULL ? hex : "");
            free(hex);
            nh++;
        }
    }
    const char *pe[E_N], *pu[U_N], *ph[H_N], *px[X_N];
    for (int i = 0; i < E_N; i++)
        oom = oom || (pe[i] = prj_arr_end(&e[i])) == NULL;
    for (int i = 0; i < U_N; i++)
        oom = oom || (pu[i] = prj_arr_end(&u[i])) == NULL;
    for (int i = 0; i < H_N; i++)
        oom = oom || (ph[i] = prj_arr_end(&h[i])) == NULL;
    for (int i = 0; i < X_N; i++)
        oom = oom || (px[i] = prj_arr_end(&x[i])) == NULL;
    sp_status s = oom ? SP_ERR_INTERNAL : spdb_exec(db, sql_events, E_N, pe);
    if (s == SP_OK && nu > 0) s = spdb_exec(db, sql_status, U_N, pu);
    if (s == SP_OK && nh > 0) s = spdb_exec(db, sql_history, H_N, ph);
    if (s == SP_OK && nh > 0) s = spdb_exec(db, sql_outbox, X_N, px);
    for (int i = 0; i < E_N; i++)
        prj_arr_free(&e[i]);
    for (int i = 0; i < U_N; i++)
        prj_arr_free(&u[i]);
    for (int i = 0; i < H_N; i++)
        prj_arr_free(&h[i]);
    for (int i = 0; i < X_N; i++)
        prj_arr_free(&x[i]);
    return s;
}

static sp_status write_heartbeat(spdb *db, const Sp__Ingest__V1__CameraHeartbeat *hb)
{
    char at[24], up[24], fps[40], temp[40];
    snprintf(at, sizeof(at), "%lld", (long long)hb->received_at);
    snprintf(up, sizeof(up), "%lld", (long long)hb->uptime_s);
    snprintf(fps, sizeof(fps), "%.6g", hb->fps);
    snprintf(temp, sizeof(temp), "%.6g", hb->temperature_c);
    const char *p[] = {hb->camera_id,
                       hb->client_id,
                       hb->lot_id,
                       at,
                       hb->has_uptime_s ? up : NULL,
                       hb->has_fps ? fps : NULL,
                       hb->has_temperature_c ? temp : NULL,
                       hb->firmware};
    return spdb_exec(db, sql_heartbeat, 8, p);
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
    }
    for (size_t i = 0; s == SP_OK && i < nh; i++)
        s = write_heartbeat(p->db, hbs[i]);
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
out:
    free(items);
    free(hbs);
    sp_arena_destroy(a);
}

sp_status prj_apply_start(prj_svc *p)
{
    spbus_consumer_opts o = {.stream = "SP_EVENTS",
                             .durable = "projection",
                             .filter_subject = "sp.events.>",
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
