-- 0002_requests.sql -- what a client asks the platform to do (domain.md, "Request"):
-- OPEN -> APPROVED | REJECTED, by an admin, once. The payload is the body of the catalog
-- creation it asks for, checked by catalog when the request is made; the result is the
-- resource catalog made on approval (catalog is called with the request's id as
-- idempotency key, so a retry finds it instead of making a second one).
CREATE TABLE tenancy.requests (
    id           bigserial PRIMARY KEY,
    public_id    uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    client_id    bigint NOT NULL REFERENCES tenancy.clients (id),
    type         text NOT NULL CHECK (type IN ('NEW_ESTABLISHMENT', 'NEW_LOT', 'NEW_HARDWARE')),
    payload      jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'OPEN' CHECK (status IN ('OPEN', 'APPROVED', 'REJECTED')),
    created_by   uuid NOT NULL,          -- auth's public id of the client_admin who asked
    decided_by   uuid,
    decided_at   timestamptz,
    reason       text,
    result       jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX requests_at ON tenancy.requests (created_at, id);
CREATE INDEX requests_client ON tenancy.requests (client_id, created_at, id);
