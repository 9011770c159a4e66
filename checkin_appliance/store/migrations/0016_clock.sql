-- Jumps of the box's clock seen while it ran (clock.py, store/clock.py): when the jump was
-- seen (on the new clock), by how much, and how many live sessions and open visits had their
-- stored times restated by it in the same transaction. Statistics and support read it to
-- know which times were taken on a wrong clock.
CREATE TABLE clock_jumps (
    id          INTEGER PRIMARY KEY,
    detected_at TEXT    NOT NULL,
    seconds     REAL    NOT NULL,  -- new clock minus old
    sessions    INTEGER NOT NULL,
    visits      INTEGER NOT NULL
);
