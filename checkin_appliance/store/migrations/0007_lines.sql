-- Lines (services), daily tickets, priorities and the lines a doctor serves (issue 15).

-- A line: its ticket prefix (one or two capital letters), its name in each language (JSON
-- {"en": .., "es": ..}), a colour and an icon for the kiosk and the display, optional opening
-- hours (JSON [["08:00", "12:00"], ...] in the clinic's time zone; NULL: always open) and its
-- call rule (JSON, ordering.Rule; NULL: the default). A line that has had entries is
-- deactivated, never deleted.
CREATE TABLE lines (
    id         INTEGER PRIMARY KEY,
    prefix     TEXT    NOT NULL UNIQUE
                       CHECK (prefix GLOB '[A-Z]' OR prefix GLOB '[A-Z][A-Z]'),
    name       TEXT    NOT NULL,
    colour     TEXT    NOT NULL CHECK (colour GLOB '#[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]'),
    icon       TEXT,
    active     INTEGER NOT NULL DEFAULT 1,
    hours      TEXT,
    call_rule  TEXT,
    position   INTEGER NOT NULL,
    created_at TEXT    NOT NULL
);
-- Every box had one queue: it becomes line 1, "A".
INSERT INTO lines (id, prefix, name, colour, icon, active, hours, call_rule, position, created_at)
VALUES (1, 'A', '{"en": "Doctor", "es": "Médico"}', '#1f6feb', 'doctor', 1, NULL, NULL, 1,
        strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));

-- Existing entries join line 1 and keep no ticket (NULL): they were never given one.
-- ticket holds the text shown ("A-012"); ticket_day is the clinic's local day (YYYY-MM-DD)
-- of the check-in and ticket_number its number in that line and day.
ALTER TABLE queue_entries ADD COLUMN line_id INTEGER NOT NULL DEFAULT 1 REFERENCES lines (id);
ALTER TABLE queue_entries ADD COLUMN ticket_day TEXT;
ALTER TABLE queue_entries ADD COLUMN ticket_number INTEGER;
ALTER TABLE queue_entries ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal'
    CHECK (priority IN ('normal', 'priority', 'urgent'));
-- The class a call took the patient as (normal, priority, urgent, or aged: waited past the
-- line's max_wait_minutes) and the seq of the call's event: a line's calls in the order they
-- were made (timestamps can tie) give its interleave streak (ordering.py).
ALTER TABLE queue_entries ADD COLUMN call_class TEXT;
ALTER TABLE queue_entries ADD COLUMN call_seq INTEGER;
-- Partial: a check-in (no call yet) does not touch it, only a call does.
CREATE INDEX queue_entries_line_calls ON queue_entries (line_id, call_seq)
    WHERE call_seq IS NOT NULL;
CREATE UNIQUE INDEX queue_entries_ticket ON queue_entries (line_id, ticket_day, ticket_number);
-- The call: the oldest waiting entry of each class in a line (a seek each, not a scan of
-- everyone waiting), and a check-in's count of those ahead by class.
-- Partial: only who waits is in it, so it stays as small as the queue.
CREATE INDEX queue_entries_line_waiting
    ON queue_entries (status, line_id, priority, check_in_time, id) WHERE status = 'waiting';
-- It serves every read of who waits (the queue, the snapshot, today's figures) too: the
-- index of 0001 on (status, id) held every visit ever, and each check-in and call paid for it.
DROP INDEX queue_entries_waiting;

-- The last ticket number given per line and local day, raised in the same transaction as the
-- check-in: a number is never given twice in a day (restarts, crashes and undo included), and
-- a check-in that rolls back takes its number with it (no gap).
CREATE TABLE ticket_counters (
    line_id INTEGER NOT NULL REFERENCES lines (id),
    day     TEXT    NOT NULL,
    last    INTEGER NOT NULL,
    PRIMARY KEY (line_id, day)
) WITHOUT ROWID;

-- The lines a doctor's credential serves; none listed: every line.
CREATE TABLE credential_lines (
    credential_id INTEGER NOT NULL REFERENCES credentials (id),
    line_id       INTEGER NOT NULL REFERENCES lines (id),
    PRIMARY KEY (credential_id, line_id)
) WITHOUT ROWID;
CREATE INDEX credential_lines_line ON credential_lines (line_id);
