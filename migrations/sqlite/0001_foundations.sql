-- Portcullis store schema, SQLite dialect. Times are unix seconds; ids are prefixed random
-- strings; lists are JSON text. Keep in step with ../postgres/0001_foundations.sql.

CREATE TABLE keys (
    id             TEXT PRIMARY KEY,
    purpose        TEXT NOT NULL,            -- grant | tls-ca | ssh-ca | audit
    algorithm      TEXT NOT NULL,            -- ed25519
    state          TEXT NOT NULL,            -- active | previous | retired
    created_at     INTEGER NOT NULL,
    retired_at     INTEGER,
    public_key     BLOB NOT NULL,            -- raw public key (ed25519: 32 bytes)
    sealed_private BLOB NOT NULL,            -- AES-256-GCM under the master key
    certificate    TEXT                      -- PEM, for the TLS CA
);
CREATE INDEX keys_purpose_state ON keys (purpose, state);

CREATE TABLE users (
    id         TEXT PRIMARY KEY,
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    username   TEXT NOT NULL,
    email      TEXT,
    name       TEXT,
    groups     TEXT NOT NULL,                -- JSON array
    amr        TEXT NOT NULL,                -- JSON array
    acr        TEXT,
    auth_time  INTEGER,
    updated_at INTEGER NOT NULL,
    UNIQUE (issuer, subject)
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id),
    token_hash BLOB NOT NULL UNIQUE,         -- SHA-256 of the bearer secret
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE targets (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    address          TEXT NOT NULL,
    zone             TEXT,
    service          TEXT,
    vmid             INTEGER,
    tags             TEXT NOT NULL,          -- JSON array
    pool             TEXT,
    max_session_secs INTEGER NOT NULL,
    connection_limit INTEGER NOT NULL,       -- 0 = unlimited
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE workers (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    proxy_addr       TEXT NOT NULL,
    key_fingerprint  TEXT NOT NULL,          -- hex SHA-256 of the worker's SPKI
    state            TEXT NOT NULL,          -- active | deleted
    created_at       INTEGER NOT NULL,
    last_seen_at     INTEGER,
    cert_expires_at  INTEGER NOT NULL
);

CREATE TABLE join_tokens (
    id         TEXT PRIMARY KEY,
    token_hash BLOB NOT NULL UNIQUE,
    created_by TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    worker_id  TEXT
);

CREATE TABLE sessions (
    id                 TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL REFERENCES users (id),
    target_id          TEXT NOT NULL,
    worker_id          TEXT NOT NULL,
    state              TEXT NOT NULL,        -- pending | active | terminated
    termination_reason TEXT,
    client_addr        TEXT NOT NULL,
    client_key_hash    TEXT NOT NULL,
    endpoint           TEXT NOT NULL,
    connection_limit   INTEGER NOT NULL,
    connections_count  INTEGER NOT NULL,
    policy_hash        TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    activated_at       INTEGER,
    terminated_at      INTEGER
);
CREATE INDEX sessions_state_expiry ON sessions (state, expires_at);
CREATE INDEX sessions_worker ON sessions (worker_id, state);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE connections (
    id           TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES sessions (id),
    worker_id    TEXT NOT NULL,
    client_addr  TEXT NOT NULL,
    state        TEXT NOT NULL,              -- open | closed
    bytes_up     INTEGER NOT NULL,
    bytes_down   INTEGER NOT NULL,
    opened_at    INTEGER NOT NULL,
    closed_at    INTEGER,
    close_reason TEXT
);
CREATE INDEX connections_session ON connections (session_id);

CREATE TABLE rate_limits (
    bucket       TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    count        INTEGER NOT NULL
);

CREATE TABLE audit_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    time       INTEGER NOT NULL,
    type       TEXT NOT NULL,
    actor      TEXT,
    session_id TEXT,
    target_id  TEXT,
    body       TEXT NOT NULL                 -- the whole event as JSON
);
CREATE INDEX audit_events_type ON audit_events (type);
