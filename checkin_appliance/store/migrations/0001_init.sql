-- Credentials, sessions, patients, queue entries, the durable event log and settings.

CREATE TABLE credentials (
    id            INTEGER PRIMARY KEY,
    token         TEXT    NOT NULL UNIQUE CHECK (length(token) = 8),
    role          TEXT    NOT NULL CHECK (role IN ('form', 'doctor', 'queue', 'admin')),
    label         TEXT    NOT NULL,
    room          TEXT,
    password_hash TEXT    NOT NULL,
    active        INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT    NOT NULL,
    deactivated_at TEXT
);

-- Session secrets are stored only as SHA-256 hashes; the clear values live with the client.
CREATE TABLE sessions (
    id              INTEGER PRIMARY KEY,
    credential_id   INTEGER NOT NULL REFERENCES credentials (id),
    access_hash     TEXT    NOT NULL UNIQUE,
    access_expires  TEXT    NOT NULL,
    refresh_hash    TEXT    NOT NULL UNIQUE,
    refresh_expires TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    revoked_at      TEXT
);
CREATE INDEX sessions_credential ON sessions (credential_id);

CREATE TABLE patients (
    id         INTEGER PRIMARY KEY,
    fname      TEXT NOT NULL,
    image      TEXT,            -- stored file name under media/patient_images/, never the patient's name
    created_at TEXT NOT NULL
);

-- One row per visit. Statuses beyond waiting/completed, rooms and daily tickets come later.
CREATE TABLE queue_entries (
    id            INTEGER PRIMARY KEY,
    patient_id    INTEGER NOT NULL REFERENCES patients (id),
    status        TEXT    NOT NULL DEFAULT 'waiting',
    check_in_time TEXT    NOT NULL,
    called_at     TEXT,
    completed_at  TEXT,
    called_by     INTEGER REFERENCES credentials (id),
    checked_in_by INTEGER REFERENCES credentials (id),
    room          TEXT,
    ticket        TEXT
);
CREATE INDEX queue_entries_waiting ON queue_entries (status, id);
CREATE INDEX queue_entries_patient ON queue_entries (patient_id);

-- Durable event log: seq is written in the same transaction as the change it records.
CREATE TABLE events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event    TEXT    NOT NULL,
    entry_id INTEGER NOT NULL REFERENCES queue_entries (id),
    at       TEXT    NOT NULL
);

CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL           -- JSON
);

CREATE TABLE health (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
