-- 0002_debounce.sql -- debounce (domain.md rule 5): a change of a lot with debounceMs > 0
-- waits here, with the event that started it, until it has held; a contrary report
-- deletes it first. Slot ids in order, as every writer of slot_status takes them.
CREATE TABLE status.pending (
    slot_id           uuid PRIMARY KEY REFERENCES status.slot_status (slot_id),
    status            smallint NOT NULL CHECK (status BETWEEN 1 AND 2),
    vehicle           smallint,
    confidence        real,
    camera_id         uuid,
    event_id          uuid NOT NULL,
    occurred_at       timestamptz NOT NULL,
    sequence          bigint NOT NULL,
    client_id         uuid NOT NULL,
    establishment_id  uuid NOT NULL,
    lot_id            uuid NOT NULL,
    slot_code         text NOT NULL,
    due_at            timestamptz NOT NULL
);
CREATE INDEX pending_due ON status.pending (due_at);
-- the silent cameras' slots (rule: UNKNOWN after the lot's unknownAfterS)
CREATE INDEX slot_status_camera ON status.slot_status (camera_id) WHERE status <> 0;
