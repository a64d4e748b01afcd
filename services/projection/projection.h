/* projection.h -- the projection service (bus.md): consumes SP_EVENTS and applies each
 * batch in one transaction to the current slot status, its history and the event log,
 * writing each change to its outbox, which the kit publishes to SP_SLOT_STATUS; answers
 * sp.status.v1.*. Internal to services/projection/. Prefix: prj_. */
#ifndef SP_PROJECTION_H
#define SP_PROJECTION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "sp/ingest/v1/events.pb-c.h"
#include "sp/status/v1/status.pb-c.h"
#include "spsvc.h"

#define PRJ_BATCH 256         /* events per fetch, per transaction */
#define PRJ_ACK_WAIT_MS 30000 /* redelivery of what a crashed replica held */
#define PRJ_MAX_ACK_PENDING 4096
#define PRJ_CALL_MS 2000                 /* a call to catalog */
#define PRJ_LOT_TTL_US INT64_C(60000000) /* a lot's copy is reloaded after this (bus.md) */
#define PRJ_MAX_IDS 1000                 /* slots in one GetSlotStatuses */
#define PRJ_REDIS_MS 500                 /* a Redis command of the snapshots */

/* Statuses and vehicles as stored (migrations/status/0001_init.sql). */
const char *prj_status_name(int status);   /* 0 UNKNOWN, 1 FREE, 2 OCCUPIED */
const char *prj_vehicle_name(int vehicle); /* 0 none, 1 car, 2 moto, 3 truck */

/* A growing text buffer for PostgreSQL array literals ("{a,b,NULL}"). */
typedef struct {
    char *s;
    size_t n, cap;
    bool oom;
} prj_arr;
void prj_arr_start(prj_arr *a);
void prj_arr_str(prj_arr *a, const char *v); /* quoted; NULL: NULL */
void prj_arr_i64(prj_arr *a, int64_t v);
void prj_arr_f64(prj_arr *a, double v, bool present);
void prj_arr_bool(prj_arr *a, bool v);
const char *prj_arr_end(prj_arr *a); /* the literal, or NULL on OOM */
void prj_arr_free(prj_arr *a);

/* A change of a slot's status: a history row and an outbox row (SlotStatusChanged on
 * sp.slot-status.v1.<clientId>.<establishmentId>.<lotId>.<slotCode>, Nats-Msg-Id =
 * event_id), written by changes.c inside the caller's transaction. */
typedef struct {
    const char *slot_id, *lot_id, *client_id, *establishment_id, *slot_code, *event_id;
    const char *camera_id; /* NULL: a change of the platform's own (UNKNOWN) */
    int previous, status, vehicle;
    bool has_confidence;
    double confidence;
    int64_t occurred_at; /* us */
    uint64_t sequence;
} prj_change;
sp_status prj_write_changes(spdb *db, const prj_change *c, size_t n);

typedef struct prj_svc prj_svc;

/* lots.c: the copies of the lots' slots in status.slot_status, loaded from catalog. */
typedef enum { PRJ_LOT_OK, PRJ_LOT_GONE, PRJ_LOT_UNAVAILABLE } prj_lot_state;
/* Makes sure lot 'lot_id' is loaded and fresh ('force': reload now); on db, outside any
 * transaction. */
prj_lot_state prj_lot_ensure(prj_svc *p, spdb *db, const char *lot_id, bool force);
/* Makes sure every live lot of establishment 'est_id' is loaded (catalog's ListLots, at
 * most PRJ_EST_PAGES pages of 500), and that its lots catalog no longer lists are gone. */
#define PRJ_EST_PAGES 20
prj_lot_state prj_establishment_ensure(prj_svc *p, spdb *db, const char *est_id);
sp_status prj_lots_start(prj_svc *p);
void prj_lots_free(prj_svc *p);

/* apply.c: the consumer of SP_EVENTS. */
sp_status prj_apply_start(prj_svc *p);
void prj_apply_stop(prj_svc *p);
bool prj_apply_ready(prj_svc *p);

/* timers.c: pending changes applied once they held (debounce) and the slots of silent
 * cameras turned UNKNOWN, in every replica (rows taken with SKIP LOCKED). */
#define PRJ_TIMER_MS 200
#define PRJ_MAINTENANCE_MS 3600000
sp_status prj_timers_start(prj_svc *p);
void prj_timers_stop(prj_svc *p);

/* reads.c: the status of a lot and of an establishment (sp.status.v1.GetLotStatus,
 * GetEstablishmentStatus) from status.*, and their snapshots in Redis. */
#define PRJ_SNAPSHOT_TTL_S "86400" /* a quiet lot's snapshot heals from a read after that */
#define PRJ_LOT_KEY "sp:status:lot:"
#define PRJ_ESTABLISHMENT_KEY "sp:status:establishment:"
/* The status of lot 'lot_id' as the database holds it now, in arena a, and written to its
 * snapshot in Redis when r is not NULL (deleted there when the lot is gone):
 * SP_ERR_NOT_FOUND when the projection holds no live lot of that id. The document is
 * read and written under a transaction-scoped advisory lock of its own on db (outside any
 * transaction), so that of two replicas writing one snapshot, the one that read last
 * writes last. */
sp_status prj_lot_snapshot(Sp__Status__V1__LotStatusReply **out, sp_arena *a, spdb *db, spredis *r,
                           const char *lot_id);
/* The same for an establishment, over the lots the projection holds (call
 * prj_establishment_ensure first); with none, an empty document. */
sp_status prj_establishment_snapshot(Sp__Status__V1__EstablishmentStatusReply **out, sp_arena *a,
                                     spdb *db, spredis *r, const char *est_id);
/* Rewrites the snapshots of lots 'lot_ids' (any order, repeats allowed) and of their
 * establishments, after a commit that changed them; failures are logged at warn (the
 * snapshots expire, and a read through the bus rewrites them). */
void prj_snapshots(prj_svc *p, spdb *db, spredis *r, const char *const *lot_ids, size_t n);
/* After a commit that changed lots 'lot_ids': their snapshots are rewritten by the
 * snapshot task in its next round, each lot once however many batches changed it. */
#define PRJ_SNAPSHOT_MS 200
void prj_snapshot_later(prj_svc *p, const char *const *lot_ids, size_t n);
sp_status prj_snapshots_start(prj_svc *p);
void prj_snapshots_stop(prj_svc *p);

/* status.c: sp.status.v1.* */
void status_register(spsvc *kit);

struct prj_svc {
    spsvc *kit;
    const char *db_url;
    spdb *db; /* the consumer's own connection */
    spbus_consumer *consumer;
    pthread_mutex_t lots_mu;
    sp_map *lots; /* lot id -> loaded time (monotonic us), or gone */
    sp_map *ests; /* establishment id -> when its lots were listed, or gone */
    pthread_mutex_t dirty_mu;
    char **dirty; /* lots whose snapshots wait for the snapshot task */
    size_t ndirty, capdirty;
    sp_task *snap_task;
    spdb *snap_db; /* the snapshot task's own connections */
    spredis *snap_redis;
    spdb *timer_db; /* the timers' own connection */
    sp_task *timer;
};

#endif
