-- 0001_init.sql -- the projection's schema (bus.md): its copy of each lot's slots with
-- their current status, the history of applied changes, the log of every accepted event,
-- the cameras' last heartbeat and the outbox of slot-status changes. Statuses: 0 UNKNOWN,
-- 1 FREE, 2 OCCUPIED; vehicles: 0 none, 1 car, 2 moto, 3 truck.
CREATE SCHEMA IF NOT EXISTS status;

-- a lot as catalog described it when last loaded
CREATE TABLE status.lots (
    lot_id            uuid PRIMARY KEY,
    client_id         uuid NOT NULL,
    establishment_id  uuid NOT NULL,
    debounce_ms       integer NOT NULL DEFAULT 0,
    unknown_after_s   integer NOT NULL DEFAULT 120,
    deleted           boolean NOT NULL DEFAULT false,
    loaded_at         timestamptz NOT NULL DEFAULT now()
);

-- one row per slot of a loaded lot; the event that set the status is (occurred_at,
-- sequence, event_id), the order of domain.md rule 4
CREATE TABLE status.slot_status (
    slot_id           uuid PRIMARY KEY,
    lot_id            uuid NOT NULL REFERENCES status.lots (lot_id),
    slot_code         text NOT NULL,
    slot_type         text NOT NULL,
    active            boolean NOT NULL DEFAULT true,
    deleted           boolean NOT NULL DEFAULT false,
    status            smallint NOT NULL DEFAULT 0 CHECK (status BETWEEN 0 AND 2),
    vehicle           smallint CHECK (vehicle BETWEEN 0 AND 3),
    confidence        real,
    camera_id         uuid,
    changed_at        timestamptz,
    occurred_at       timestamptz,
    sequence          bigint,
    event_id          uuid,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slot_status_lot ON status.slot_status (lot_id, slot_code);

-- every applied change, partitioned by the day of the event (domain.md rule 9)
CREATE TABLE status.slot_status_history (
    slot_id      uuid NOT NULL,
    lot_id       uuid NOT NULL,
    previous     smallint NOT NULL,
    status       smallint NOT NULL,
    vehicle      smallint,
    confidence   real,
    event_id     uuid NOT NULL,
    occurred_at  timestamptz NOT NULL,
    sequence     bigint NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (occurred_at);
CREATE TABLE status.slot_status_history_default PARTITION OF status.slot_status_history DEFAULT;
CREATE INDEX slot_status_history_slot ON status.slot_status_history (slot_id, occurred_at DESC);

-- every accepted event, once: an event is (occurred_at, event_id), the partition key
-- first, so a redelivered event is a conflict and the inserts stay in time order
CREATE TABLE status.slot_status_events (
    occurred_at    timestamptz NOT NULL,
    event_id       uuid NOT NULL,
    slot_id        uuid NOT NULL,
    lot_id         uuid NOT NULL,
    camera_id      uuid,
    sequence       bigint NOT NULL,
    previous       smallint,
    status         smallint NOT NULL,
    vehicle        smallint,
    confidence     real,
    applied        boolean NOT NULL,
    model_name     text,
    model_version  text,
    received_at    timestamptz NOT NULL,
    PRIMARY KEY (occurred_at, event_id)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE status.slot_status_events_default PARTITION OF status.slot_status_events DEFAULT;

-- the last heartbeat of each camera
CREATE TABLE status.camera_heartbeats (
    camera_id      uuid PRIMARY KEY,
    client_id      uuid NOT NULL,
    lot_id         uuid,
    last_seen_at   timestamptz NOT NULL,
    uptime_s       bigint,
    fps            real,
    temperature_c  real,
    firmware       text
);

-- slot-status changes on their way to SP_SLOT_STATUS (domain.md rule 6)
CREATE TABLE status.outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
