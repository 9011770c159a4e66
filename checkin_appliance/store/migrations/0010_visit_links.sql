-- The patient's phone (issue 17): one status link per visit, an unguessable capability made
-- at check-in. Only the SHA-256 of its token is kept, so a copy of the database (a backup on
-- a USB stick) opens no visit's page; the token itself exists only in the kiosk's answer.
CREATE TABLE visit_links (
    entry_id   INTEGER PRIMARY KEY REFERENCES queue_entries (id),
    token_hash BLOB    NOT NULL UNIQUE,
    created_at TEXT    NOT NULL
);
