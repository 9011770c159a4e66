-- The whole call cycle (issue 16): a visit's states and the transitions between them.

-- States: waiting -> called -> in_service -> done; called -> no_show; waiting -> cancelled;
-- anything open -> not_seen at the end of the day. In the seed's model "completed" meant
-- "called" (the call ended the visit): those rows become called, keeping called_at and room.
UPDATE queue_entries SET status = 'called' WHERE status = 'completed';
-- Unknown states are refused on the way in (ALTER TABLE cannot add a CHECK to the column).
CREATE TRIGGER queue_entries_status_insert BEFORE INSERT ON queue_entries
WHEN NEW.status NOT IN ('waiting', 'called', 'in_service', 'done', 'no_show', 'cancelled',
                        'not_seen')
BEGIN
    SELECT RAISE(ABORT, 'queue_entries.status: unknown state');
END;
CREATE TRIGGER queue_entries_status_update BEFORE UPDATE OF status ON queue_entries
WHEN NEW.status NOT IN ('waiting', 'called', 'in_service', 'done', 'no_show', 'cancelled',
                        'not_seen')
BEGIN
    SELECT RAISE(ABORT, 'queue_entries.status: unknown state');
END;

-- How many times the visit was called (the first call and each recall).
ALTER TABLE queue_entries ADD COLUMN call_count INTEGER NOT NULL DEFAULT 0;
UPDATE queue_entries SET call_count = 1 WHERE called_at IS NOT NULL AND status != 'waiting';
-- The last transition's time (NULL: none since check-in).
ALTER TABLE queue_entries ADD COLUMN updated_at TEXT;
-- The time the visit counts as queued since: the call order's key within a class and the
-- start of its ageing (docs/call-order.md). The check-in time until the visit is put back
-- (front: just before everyone waiting in its line; back: the time it was put back) or
-- transferred (the time it joined the other line). The ticket never changes.
ALTER TABLE queue_entries ADD COLUMN queue_time TEXT;
UPDATE queue_entries SET queue_time = check_in_time;

-- The waiting index orders by queue_time now; still partial, still the only index every
-- read of who waits needs.
DROP INDEX queue_entries_line_waiting;
CREATE INDEX queue_entries_line_waiting
    ON queue_entries (status, line_id, priority, queue_time, id) WHERE status = 'waiting';

-- Every transition of a visit, newest last: who (credential), when, what, from and to
-- (status and line), the room, and the row as it was before (JSON) so an undo restores it
-- exactly. undone_by: the undo that reverted it.
CREATE TABLE visit_transitions (
    id            INTEGER PRIMARY KEY,
    entry_id      INTEGER NOT NULL REFERENCES queue_entries (id),
    at            TEXT    NOT NULL,
    credential_id INTEGER REFERENCES credentials (id),
    action        TEXT    NOT NULL,
    from_status   TEXT    NOT NULL,
    to_status     TEXT    NOT NULL,
    from_line     INTEGER NOT NULL REFERENCES lines (id),
    to_line       INTEGER NOT NULL REFERENCES lines (id),
    room          TEXT,
    previous      TEXT    NOT NULL,
    undone_by     INTEGER REFERENCES visit_transitions (id)
);
CREATE INDEX visit_transitions_entry ON visit_transitions (entry_id, id);
CREATE INDEX visit_transitions_credential ON visit_transitions (credential_id, id);

-- An event's own facts beyond the entry (JSON: status, from, room, call_count, line_id), so
-- a replay gives the state the event left, not the entry's state now. NULL: the entry's.
ALTER TABLE events ADD COLUMN detail TEXT;

-- Idempotency of a doctor's action: the first answer, kept beside the key (entry_id: the
-- visit it acted on). NULL for check-ins.
ALTER TABLE idempotency_keys ADD COLUMN answer TEXT;
