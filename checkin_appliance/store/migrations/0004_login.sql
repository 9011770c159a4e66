-- Refresh tokens rotate on use. The ones a session has used are kept (as hashes, like the
-- live ones) until the session's refresh end, so presenting one again is seen as theft and
-- ends that session.
CREATE TABLE retired_refresh_tokens (
    refresh_hash TEXT    PRIMARY KEY,
    session_id   INTEGER NOT NULL REFERENCES sessions (id),
    expires      TEXT    NOT NULL  -- the session's refresh_expires: no use looking after it
) WITHOUT ROWID;
CREATE INDEX retired_refresh_tokens_expires ON retired_refresh_tokens (expires);
