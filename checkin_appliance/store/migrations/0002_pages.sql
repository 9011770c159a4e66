-- Idempotent kiosk submissions, and what the pages need to show today's figures.

-- A kiosk retries a check-in with the same Idempotency-Key; the first answer is replayed.
CREATE TABLE idempotency_keys (
    credential_id INTEGER NOT NULL REFERENCES credentials (id),
    key           TEXT    NOT NULL,
    entry_id      INTEGER NOT NULL REFERENCES queue_entries (id),
    position      INTEGER NOT NULL,
    created_at    TEXT    NOT NULL,
    PRIMARY KEY (credential_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE INDEX queue_entries_check_in_time ON queue_entries (check_in_time);
CREATE INDEX queue_entries_completed_at ON queue_entries (completed_at);
