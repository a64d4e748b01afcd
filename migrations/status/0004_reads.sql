-- 0004_reads.sql -- what sp.status.v1's reads need (bus.md): each lot's code and name for
-- the establishment status, the camera of each change and a row id for the history's
-- keyset (occurred_at, id), and the lot's changes in time order for the occupancy series.
ALTER TABLE status.lots ADD COLUMN lot_code text NOT NULL DEFAULT '',
                        ADD COLUMN name text;
CREATE INDEX lots_establishment ON status.lots (establishment_id) WHERE NOT deleted;

ALTER TABLE status.slot_status_history ADD COLUMN id bigserial,
                                       ADD COLUMN camera_id uuid;
CREATE INDEX slot_status_history_lot ON status.slot_status_history (lot_id, occurred_at);
