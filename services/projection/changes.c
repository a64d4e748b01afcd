/* changes.c -- what every change of a slot's status writes, whoever makes it (an event,
 * a debounced change that held, a silent camera): a history row and an outbox row with
 * the SlotStatusChanged the kit's publisher sends to SP_SLOT_STATUS. */
#include <stdio.h>
#include <stdlib.h>

#include "projection.h"
#include "spcrypto.h"

#define TS(x) "timestamptz 'epoch' + " x " * interval '1 microsecond'"
static const char *sql_history =
    "INSERT INTO status.slot_status_history (slot_id, lot_id, previous, status, vehicle,"
    " confidence, event_id, occurred_at, sequence, camera_id)"
    " SELECT t.s, t.l, t.p, t.st, t.v, t.cf, t.e, " TS(
        "t.o") ", t.q, t.c"
               " FROM unnest($1::uuid[], $2::uuid[], $3::smallint[], $4::smallint[], "
               "$5::smallint[],"
               "  $6::real[], $7::uuid[], $8::bigint[], $9::bigint[], $10::uuid[])"
               "  AS t(s, l, p, st, v, cf, e, o, q, c)";
static const char *sql_outbox =
    "INSERT INTO status.outbox (event_id, subject, payload)"
    " SELECT t.e, t.s, decode(t.p, 'hex') FROM unnest($1::uuid[], $2::text[], $3::text[])"
    "  AS t(e, s, p) ON CONFLICT (event_id) DO NOTHING";

/* The SlotStatusChanged of a change, as hex (malloc'd; NULL on OOM). */
static char *change_hex(const prj_change *ch, int64_t now)
{
    Sp__Status__V1__SlotStatusChanged c = SP__STATUS__V1__SLOT_STATUS_CHANGED__INIT;
    c.client_id = (char *)ch->client_id;
    c.establishment_id = (char *)ch->establishment_id;
    c.lot_id = (char *)ch->lot_id;
    c.slot_id = (char *)ch->slot_id;
    c.slot_code = (char *)ch->slot_code;
    c.previous_status = (char *)prj_status_name(ch->previous);
    c.status = (char *)prj_status_name(ch->status);
    c.vehicle = ch->status == 0 ? NULL : (char *)prj_vehicle_name(ch->vehicle);
    c.has_confidence = ch->has_confidence;
    c.confidence = ch->confidence;
    c.has_occurred_at = c.has_recorded_at = c.has_sequence = 1;
    c.occurred_at = ch->occurred_at;
    c.recorded_at = now;
    c.event_id = (char *)ch->event_id;
    c.sequence = ch->sequence;
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

sp_status prj_write_changes(spdb *db, const prj_change *c, size_t n)
{
    if (n == 0) return SP_OK;
    enum { H_S, H_L, H_P, H_ST, H_V, H_CF, H_E, H_O, H_Q, H_C, H_N };
    enum { X_E, X_S, X_P, X_N };
    prj_arr h[H_N], x[X_N];
    for (int i = 0; i < H_N; i++)
        prj_arr_start(&h[i]);
    for (int i = 0; i < X_N; i++)
        prj_arr_start(&x[i]);
    int64_t now = sp_now_us();
    bool oom = false;
    for (size_t i = 0; i < n; i++) {
        prj_arr_str(&h[H_S], c[i].slot_id);
        prj_arr_str(&h[H_L], c[i].lot_id);
        prj_arr_i64(&h[H_P], c[i].previous);
        prj_arr_i64(&h[H_ST], c[i].status);
        if (c[i].status == 0)
            prj_arr_str(&h[H_V], NULL);
        else
            prj_arr_i64(&h[H_V], c[i].vehicle);
        prj_arr_f64(&h[H_CF], c[i].confidence, c[i].has_confidence);
        prj_arr_str(&h[H_E], c[i].event_id);
        prj_arr_i64(&h[H_O], c[i].occurred_at);
        prj_arr_i64(&h[H_Q], (int64_t)c[i].sequence);
        prj_arr_str(&h[H_C], c[i].camera_id);
        char subject[256];
        snprintf(subject, sizeof(subject), "sp.slot-status.v1.%s.%s.%s.%s", c[i].client_id,
                 c[i].establishment_id, c[i].lot_id, c[i].slot_code);
        char *hex = change_hex(&c[i], now);
        oom = oom || hex == NULL;
        prj_arr_str(&x[X_E], c[i].event_id);
        prj_arr_str(&x[X_S], subject);
        prj_arr_str(&x[X_P], hex != NULL ? hex : "");
        free(hex);
    }
    const char *ph[H_N], *px[X_N];
    for (int i = 0; i < H_N; i++)
        oom = (ph[i] = prj_arr_end(&h[i])) == NULL || oom;
    for (int i = 0; i < X_N; i++)
        oom = (px[i] = prj_arr_end(&x[i])) == NULL || oom;
    sp_status s =
        oom ? SP_ERR_INTERNAL : spdb_prepared(NULL, db, "prj_history", sql_history, H_N, ph, false);
    if (s == SP_OK) s = spdb_prepared(NULL, db, "prj_outbox", sql_outbox, X_N, px, false);
    for (int i = 0; i < H_N; i++)
        prj_arr_free(&h[i]);
    for (int i = 0; i < X_N; i++)
        prj_arr_free(&x[i]);
    return s;
}
