-- The audit trail, and an absolute end for sessions.

-- Who (credential), what, which patient (id only, never a name), when, from which address.
-- Each row's hash covers its fields and the previous row's hash (checkin_appliance/audit.py).
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,
    at         TEXT    NOT NULL,
    actor      INTEGER,
    action     TEXT    NOT NULL,
    patient_id INTEGER,
    address    TEXT    NOT NULL,
    detail     TEXT,
    prev_hash  TEXT    NOT NULL,
    hash       TEXT    NOT NULL
);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

-- A session ends at ends_at however much it is used (NULL: only when idle or revoked).
ALTER TABLE sessions ADD COLUMN ends_at TEXT;
