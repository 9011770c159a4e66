-- Calibration of the wait estimates (issue 17): every range a patient was shown (the kiosk's
-- thank-you screen, the phone's status page and each change on it), kept so the admin can see
-- how often the actual wait fell inside it. The actual wait is read from the visit's first
-- call after `given_at` (visit_transitions), so an undone call never counts. No name, no
-- photo: a visit's id, its line, its place then and the range in minutes.
CREATE TABLE wait_estimates (
    id           INTEGER PRIMARY KEY,
    entry_id     INTEGER NOT NULL REFERENCES queue_entries (id),
    line_id      INTEGER NOT NULL REFERENCES lines (id),
    given_at     TEXT    NOT NULL,
    place        INTEGER NOT NULL,
    low_minutes  INTEGER NOT NULL,
    high_minutes INTEGER NOT NULL
);
CREATE INDEX wait_estimates_given ON wait_estimates (given_at);
CREATE INDEX wait_estimates_entry ON wait_estimates (entry_id, id);
