-- 0001_init.sql -- the auth schema: people, users, roles, sessions, refresh tokens,
-- memberships (a copy written by tenancy) and the outbox of audit events.
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.people (
    id          bigserial PRIMARY KEY,
    public_id   uuid NOT NULL UNIQUE,
    name        text NOT NULL,
    email       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
-- one live person per email, compared lower-cased; a soft-deleted person frees it
CREATE UNIQUE INDEX people_email_live ON auth.people (lower(email)) WHERE deleted_at IS NULL;

CREATE TABLE auth.users (
    id             bigserial PRIMARY KEY,
    public_id      uuid NOT NULL UNIQUE,          -- the token's sub, /me's id
    person_id      bigint NOT NULL UNIQUE REFERENCES auth.people (id),
    password_hash  text NOT NULL,                 -- argon2id, PHC string
    active         boolean NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);

CREATE TABLE auth.roles (
    id    smallint PRIMARY KEY,
    code  text NOT NULL UNIQUE
);
INSERT INTO auth.roles (id, code) VALUES (1, 'admin'), (2, 'client_admin'), (3, 'app_user');

CREATE TABLE auth.user_roles (
    user_id  bigint NOT NULL REFERENCES auth.users (id),
    role_id  smallint NOT NULL REFERENCES auth.roles (id),
    PRIMARY KEY (user_id, role_id)
);

CREATE TABLE auth.sessions (
    id              bigserial PRIMARY KEY,
    public_id       uuid NOT NULL UNIQUE,         -- the token's sid
    user_id         bigint NOT NULL REFERENCES auth.users (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    ip              text,
    user_agent      text,
    revoked_at      timestamptz,
    revoked_reason  text
);
CREATE INDEX sessions_user ON auth.sessions (user_id);
CREATE INDEX sessions_revoked ON auth.sessions (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE auth.refresh_tokens (
    id             bigserial PRIMARY KEY,
    token_id       text NOT NULL UNIQUE,          -- the part before the dot
    session_id     bigint NOT NULL REFERENCES auth.sessions (id),
    secret_sha256  bytea NOT NULL,                -- SHA-256 of the 32-byte secret
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX refresh_tokens_session ON auth.refresh_tokens (session_id);

-- written only by tenancy through sp.auth.v1.SetMembership / RemoveMembership
CREATE TABLE auth.memberships (
    user_id      bigint PRIMARY KEY REFERENCES auth.users (id),
    client_id    uuid NOT NULL,
    client_role  text NOT NULL CHECK (client_role IN ('client_manager', 'client_operator')),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- audit events for the SP_AUDIT stream, written in the same transaction as the change
CREATE TABLE auth.outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    subject     text NOT NULL,
    payload     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
