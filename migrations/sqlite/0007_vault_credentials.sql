-- Credentials minted from Vault per session, and their revocation. A row is written in the
-- same transaction as the session (state 'minting') before Vault is called, so a crash at any
-- point leaves a record any controller can finish or revoke. Only identifiers are kept: the
-- per-session token's accessor and lease ids, never a token or a secret.
CREATE TABLE vault_credentials (
    id                  TEXT PRIMARY KEY,
    session_id          TEXT NOT NULL,
    state               TEXT NOT NULL,       -- minting | minted | revoking | revoked
    token_accessor      TEXT,
    lease_ids           TEXT NOT NULL,       -- JSON array
    created_at          INTEGER NOT NULL,
    revoke_requested_at INTEGER,
    attempts            INTEGER NOT NULL,
    next_attempt_at     INTEGER,
    last_error          TEXT,
    revoked_at          INTEGER,
    outcome             TEXT
);
CREATE INDEX vault_credentials_session ON vault_credentials (session_id);
CREATE INDEX vault_credentials_state ON vault_credentials (state, next_attempt_at);

-- Targets: SSH host CAs (trusted instead of, or besides, pinned host keys), and what to mint
-- from Vault for sessions to them.
ALTER TABLE targets ADD COLUMN ssh_host_cas TEXT NOT NULL DEFAULT '[]';
ALTER TABLE targets ADD COLUMN vault_ssh_mount TEXT;
ALTER TABLE targets ADD COLUMN vault_ssh_role TEXT;
ALTER TABLE targets ADD COLUMN vault_secrets TEXT NOT NULL DEFAULT '[]';
