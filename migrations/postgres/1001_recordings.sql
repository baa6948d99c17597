-- Session recordings (docs/recordings.md), kept apart from the hot tables: on SQLite in a
-- database file of their own (`<name>-recordings.db` beside the main one, or
-- `[recordings] store_url`), on PostgreSQL in these tables with a connection pool of their
-- own. The recordings store's migrations number from 1001 so that they never meet the main
-- store's in a shared PostgreSQL database.

-- One row per recording (one gateway connection): where its chain stands.
CREATE TABLE recordings (
    id             TEXT PRIMARY KEY,        -- the recording id (the connection's id)
    session_id     TEXT NOT NULL,
    connection_id  TEXT NOT NULL,
    worker_id      TEXT NOT NULL,
    chunks         BIGINT NOT NULL,         -- chunks stored: the next seq expected
    bytes          BIGINT NOT NULL,         -- body bytes of those chunks
    head_hash      TEXT NOT NULL,           -- hex SHA-256 of chunk chunks - 1
    final          BIGINT NOT NULL,         -- 1 once the final chunk is stored
    first_at       BIGINT NOT NULL,         -- unix seconds of the first and newest chunk
    last_at        BIGINT NOT NULL,
    sealed_chunks  BIGINT NOT NULL,         -- chunks covered by the newest sealed head
    sealed_at      BIGINT                   -- when it was sealed (NULL: never)
);
CREATE INDEX recordings_session ON recordings (session_id);
CREATE INDEX recordings_first_at ON recordings (first_at);

-- One row per chunk, sealed (AES-256-GCM) under a `recording` key of the keyset.
CREATE TABLE recording_chunks (
    recording_id  TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    seq           BIGINT NOT NULL,
    channel       BIGINT NOT NULL,
    kind          TEXT NOT NULL,            -- asciicast | events
    final         BIGINT NOT NULL,
    body_len      BIGINT NOT NULL,
    chunk_hash    TEXT NOT NULL,            -- hex SHA-256 of the canonical bytes (redelivery)
    ciphertext    BYTEA NOT NULL,            -- nonce, sealed canonical bytes, tag
    key_id        TEXT NOT NULL,            -- the recording key that sealed it
    stored_at     BIGINT NOT NULL,
    PRIMARY KEY (recording_id, seq)
);
