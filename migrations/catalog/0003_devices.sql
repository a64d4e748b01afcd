-- 0003_devices.sql -- API keys and cameras (domain.md). A key's secret is never stored:
-- its SHA-256 checks X-API-Key, and a copy sealed with AES-256-GCM under SP_MASTER_KEY
-- (authenticated with the key_id, so that a sealed copy cannot be moved to another row)
-- lets ingest verify HMAC signatures; the tables alone never yield a usable secret.
CREATE TABLE catalog.api_keys (
    id             bigserial PRIMARY KEY,
    public_id      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    key_id         text NOT NULL UNIQUE CHECK (key_id ~ '^[A-Za-z0-9_-]{16,64}$'),
    client_id      uuid NOT NULL,
    name           text NOT NULL,
    secret_sha256  bytea NOT NULL CHECK (length(secret_sha256) = 32),
    secret_sealed  bytea NOT NULL,
    revoked_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_client ON catalog.api_keys (client_id, created_at, id);

-- state: UNASSIGNED without a lot, ASSIGNED with one; ONLINE / OFFLINE and last_seen_at
-- come from the heartbeats the projection keeps (issue: ingest and projection)
CREATE TABLE catalog.cameras (
    id            bigserial PRIMARY KEY,
    public_id     uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    client_id     uuid NOT NULL,
    camera_code   text NOT NULL CHECK (camera_code ~ '^[A-Za-z0-9_-]{1,40}$'),
    api_key_id    bigint NOT NULL REFERENCES catalog.api_keys (id),
    lot_id        bigint REFERENCES catalog.lots (id),
    enabled       boolean NOT NULL DEFAULT true,
    create_key    text UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE UNIQUE INDEX cameras_code ON catalog.cameras (client_id, camera_code)
    WHERE deleted_at IS NULL;
CREATE INDEX cameras_client ON catalog.cameras (client_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX cameras_lot ON catalog.cameras (lot_id) WHERE deleted_at IS NULL;
