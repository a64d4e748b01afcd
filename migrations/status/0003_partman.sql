-- 0003_partman.sql -- the history and the event log in day partitions managed by
-- pg_partman (domain.md rule 9): a week made ahead, more made by the projection's hourly
-- run_maintenance; what falls outside lands in partman's default partition. The default
-- partitions of 0001 are taken out first and their rows put back through the parent.
CREATE SCHEMA IF NOT EXISTS partman;
CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;

ALTER TABLE status.slot_status_history DETACH PARTITION status.slot_status_history_default;
ALTER TABLE status.slot_status_history_default RENAME TO slot_status_history_0001;
SELECT partman.create_parent(p_parent_table => 'status.slot_status_history',
                             p_control => 'occurred_at', p_type => 'native',
                             p_interval => 'daily', p_premake => 7, p_jobmon => false);
INSERT INTO status.slot_status_history SELECT * FROM status.slot_status_history_0001;
DROP TABLE status.slot_status_history_0001;

ALTER TABLE status.slot_status_events DETACH PARTITION status.slot_status_events_default;
ALTER TABLE status.slot_status_events_default RENAME TO slot_status_events_0001;
SELECT partman.create_parent(p_parent_table => 'status.slot_status_events',
                             p_control => 'occurred_at', p_type => 'native',
                             p_interval => 'daily', p_premake => 7, p_jobmon => false);
INSERT INTO status.slot_status_events SELECT * FROM status.slot_status_events_0001;
DROP TABLE status.slot_status_events_0001;
