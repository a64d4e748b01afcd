-- 0002_members.sql -- members created by tenancy in two steps (pending, then activated or
-- discarded) and the suspension of a client's memberships (docs/decisions.md, "Members
-- across two services").

-- the idempotency key of CreateMember; NULL for users not created by tenancy
ALTER TABLE auth.users ADD COLUMN create_key text UNIQUE;
-- created by CreateMember and not yet activated: cannot log in (active is false too)
ALTER TABLE auth.users ADD COLUMN pending boolean NOT NULL DEFAULT false;
-- what the pending cleaner scans
CREATE INDEX users_pending ON auth.users (created_at) WHERE pending;

-- the client is suspended: login and refresh answer 403 client_suspended
ALTER TABLE auth.memberships ADD COLUMN suspended boolean NOT NULL DEFAULT false;
-- SetClientSuspended finds a client's members
CREATE INDEX memberships_client ON auth.memberships (client_id);
