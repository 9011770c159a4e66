-- The intake form's answers, and what the original CheckIn's database brings over (issue 14).

-- A patient's answers to the clinic's intake form beyond the name: a JSON object of field
-- name -> stored value (text or null), only the fields the form had enabled (intake.py).
-- NULL for a name-only check-in.
ALTER TABLE patients ADD COLUMN intake TEXT;

-- Credentials: the original's tokens are any text up to 100 characters (ours are 8 digits),
-- and its plain-text passwords may be too weak to keep. SQLite cannot drop a CHECK, so the
-- table is rebuilt (foreign keys are off while a migration runs; schema.migrate checks them
-- before it commits).
CREATE TABLE credentials_new (
    id             INTEGER PRIMARY KEY,
    token          TEXT    NOT NULL UNIQUE CHECK (length(token) BETWEEN 1 AND 100),
    role           TEXT    NOT NULL CHECK (role IN ('form', 'doctor', 'queue', 'admin')),
    label          TEXT    NOT NULL,
    room           TEXT,
    password_hash  TEXT    NOT NULL,
    active         INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT    NOT NULL,
    deactivated_at TEXT,
    imported       INTEGER NOT NULL DEFAULT 0,  -- brought over by `import-original`
    -- Refused at login until the admin sets a new password (an imported weak one).
    password_reset_required INTEGER NOT NULL DEFAULT 0
);
INSERT INTO credentials_new (id, token, role, label, room, password_hash, active, created_at,
                             deactivated_at)
SELECT id, token, role, label, room, password_hash, active, created_at, deactivated_at
FROM credentials;
DROP TABLE credentials;
ALTER TABLE credentials_new RENAME TO credentials;

-- What `import-original` already brought, so a second run adds nothing: a credential by its
-- token, a patient by its original id and creation time (unique within one original database).
CREATE TABLE original_imports (
    kind         TEXT    NOT NULL CHECK (kind IN ('credential', 'patient')),
    original_key TEXT    NOT NULL,
    local_id     INTEGER NOT NULL,
    imported_at  TEXT    NOT NULL,
    PRIMARY KEY (kind, original_key)
) WITHOUT ROWID;
