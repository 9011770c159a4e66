-- Patients' photos live in the database (issue 20): one file holds everything, so backups,
-- restore, the retention purge and replication cover photos with the rows that name them.
-- Each photo is its re-encoded JPEG under its stored name, the random <32 hex>.jpg that
-- patients.image holds (its URL, /media/patient_images/<name>, does not change). It is
-- written in the transaction that writes the row naming it (store: put_photo), and the
-- triggers below delete it in the transaction that drops or deletes that name: a photo never
-- outlives its patient's row, whichever statement does it.
--   id          an explicit rowid: the server streams `data` by it (incremental blob I/O),
--               and VACUUM keeps it
--   created_at  when it was stored (a moved file: its modification time); Last-Modified
--   data        last in the row: its overflow pages are read only when a photo is served
-- The photo files of an older box are moved in at its first start (photo_files.py), not
-- here: a migration is SQL only.
CREATE TABLE photos (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    created_at TEXT    NOT NULL,
    data       BLOB    NOT NULL
);
CREATE TRIGGER photo_unnamed AFTER UPDATE OF image ON patients
    WHEN old.image IS NOT NULL AND old.image IS NOT new.image
BEGIN
    DELETE FROM photos WHERE name = old.image;
END;
CREATE TRIGGER photo_of_deleted_patient AFTER DELETE ON patients
    WHEN old.image IS NOT NULL
BEGIN
    DELETE FROM photos WHERE name = old.image;
END;
