-- 0002_sites.sql -- what a parking operator describes (domain.md, api.md "Catalog"):
-- establishments, their lots and the lots' slots, and the outbox of catalog's audit
-- events. Clients are tenancy's: a row names its client by public id (services never read
-- each other's tables). Soft-deleted rows (deleted_at) are invisible to the API and free
-- their unique names and codes (partial unique indexes).
CREATE TABLE catalog.establishments (
    id          bigserial PRIMARY KEY,
    public_id   uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    client_id   uuid NOT NULL,
    name        text NOT NULL,
    store_type  smallint REFERENCES catalog.store_types (id),
    address     text,
    city        text,
    state       text,
    lat         double precision CHECK (lat BETWEEN -90 AND 90),
    lng         double precision CHECK (lng BETWEEN -180 AND 180),
    status      text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE')),
    -- the idempotency key of the creation (an approved request's id): a retry finds it
    create_key  text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX establishments_name ON catalog.establishments (client_id, name)
    WHERE deleted_at IS NULL;
CREATE INDEX establishments_client ON catalog.establishments (client_id, created_at, id)
    WHERE deleted_at IS NULL;

CREATE TABLE catalog.lots (
    id                bigserial PRIMARY KEY,
    public_id         uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    establishment_id  bigint NOT NULL REFERENCES catalog.establishments (id),
    client_id         uuid NOT NULL,
    lot_code          text NOT NULL CHECK (lot_code ~ '^[A-Za-z0-9_-]{1,20}$'),
    name              text,
    debounce_ms       integer NOT NULL DEFAULT 0 CHECK (debounce_ms BETWEEN 0 AND 60000),
    unknown_after_s   integer NOT NULL DEFAULT 120 CHECK (unknown_after_s BETWEEN 0 AND 86400),
    create_key        text UNIQUE,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
CREATE UNIQUE INDEX lots_code ON catalog.lots (client_id, lot_code) WHERE deleted_at IS NULL;
CREATE INDEX lots_establishment ON catalog.lots (establishment_id, created_at, id)
    WHERE deleted_at IS NULL;

CREATE TABLE catalog.slots (
    id          bigserial PRIMARY KEY,
    public_id   uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    lot_id      bigint NOT NULL REFERENCES catalog.lots (id),
    slot_code   text NOT NULL CHECK (slot_code ~ '^[A-Za-z0-9_-]{1,10}$'),
    slot_type   smallint NOT NULL REFERENCES catalog.slot_types (id),
    polygon     jsonb,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX slots_code ON catalog.slots (lot_id, slot_code) WHERE deleted_at IS NULL;
CREATE INDEX slots_lot ON catalog.slots (lot_id, created_at, id) WHERE deleted_at IS NULL;

-- catalog's audit events for SP_AUDIT, written in the same transaction as the change
CREATE TABLE catalog.outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
