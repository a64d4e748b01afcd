-- 0001_init.sql -- the tenancy schema: clients, their members (tenancy's side of the
-- memberships that auth copies), the readable audit log and the outbox of tenancy's own
-- audit events.
CREATE SCHEMA IF NOT EXISTS tenancy;

CREATE TABLE tenancy.clients (
    id           bigserial PRIMARY KEY,
    public_id    uuid NOT NULL UNIQUE,
    name         text NOT NULL,
    document     text,
    status       text NOT NULL DEFAULT 'PENDING'
                 CHECK (status IN ('PENDING', 'ACTIVE', 'SUSPENDED')),
    -- the status auth has acknowledged (SetClientSuspended); differs while a suspension
    -- or reactivation is on its way to auth (the sync task retries it)
    auth_status  text NOT NULL DEFAULT 'PENDING',
    create_key   text UNIQUE,            -- idempotency key of the creating request
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz
);
CREATE INDEX clients_created ON tenancy.clients (created_at, id) WHERE deleted_at IS NULL;

CREATE TABLE tenancy.client_members (
    id           bigserial PRIMARY KEY,
    client_id    bigint NOT NULL REFERENCES tenancy.clients (id),
    user_id      uuid NOT NULL,          -- auth's public id of the user
    name         text NOT NULL,          -- as given at creation
    email        text NOT NULL,
    client_role  text NOT NULL CHECK (client_role IN ('client_manager', 'client_operator')),
    create_key   text NOT NULL UNIQUE,   -- the key auth knows the member by (CreateMember)
    -- 'activate': auth has the member pending; 'synced': auth agrees; 'remove': removed
    -- here, auth's membership still to be removed (the sync task retries both)
    auth_state   text NOT NULL DEFAULT 'activate'
                 CHECK (auth_state IN ('activate', 'synced', 'remove')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    removed_at   timestamptz
);
-- one live membership per user (auth keeps one per user too)
CREATE UNIQUE INDEX client_members_user_live ON tenancy.client_members (user_id)
    WHERE removed_at IS NULL;
CREATE INDEX client_members_client ON tenancy.client_members (client_id, created_at, id);
CREATE INDEX client_members_unsynced ON tenancy.client_members (updated_at)
    WHERE auth_state <> 'synced';

-- every service's audit events, from SP_AUDIT (domain.md rule 8); event_id makes a
-- redelivered event a no-op
CREATE TABLE tenancy.audit_log (
    id             bigserial PRIMARY KEY,
    event_id       uuid NOT NULL UNIQUE,
    at             timestamptz NOT NULL,
    actor_user_id  uuid,
    actor_role     text,
    client_id      uuid,                 -- NULL: a platform event
    action         text NOT NULL,
    target_kind    text,
    target_id      text,
    request_id     text,
    ip             text,
    details        jsonb,
    service        text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_at ON tenancy.audit_log (at DESC, id DESC);
CREATE INDEX audit_log_client_at ON tenancy.audit_log (client_id, at DESC, id DESC);

-- tenancy's own audit events for SP_AUDIT, written in the same transaction as the change
CREATE TABLE tenancy.outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
