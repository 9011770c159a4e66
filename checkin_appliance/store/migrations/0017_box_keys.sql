-- What makes this box "the same box" to its devices, for a standby that takes over from the
-- replica (box_keys.py, README "When the box dies"): its CA, the audit chain's key, the photo
-- links' key and the nightly backup schedule, sealed in one age file with the passphrase of
-- replica_passphrase_file; and its hostname, in the clear. One row, written only with a
-- replica set, again only when the files or the passphrase change: `digest` is
-- SHA-256(the plain files || the passphrase), so a start that finds it equal needs no scrypt.
CREATE TABLE box_keys (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    hostname  TEXT    NOT NULL,
    sealed    BLOB    NOT NULL,
    digest    TEXT    NOT NULL,
    sealed_at TEXT    NOT NULL
);
