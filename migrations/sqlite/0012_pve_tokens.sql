-- Per-session Proxmox API tokens (issue 20, docs/proxmox.md).
--   targets.proxmox_cluster  the [[catalog.proxmox]] whose sessions table mints a token for
--                            each session to this target; NULL: a plain tunnel.
ALTER TABLE targets ADD COLUMN proxmox_cluster TEXT;

-- One row per session's token, written with the session (state 'intent') before Proxmox is
-- called, so that a crash at any point leaves a record any controller can finish or delete:
-- the token's name is derived from the session id, so it can be deleted without knowing
-- whether creation happened.
--   state   intent (committed, Proxmox not yet asked) | live (created, ACLs granted, the
--           secret sealed) | revoking (the session ended: delete the token, check its ACL
--           entries gone) | gone (confirmed).
--   secret  the token's secret sealed (AES-256-GCM under the master key, the session id as
--           associated data); wiped when the session ends.
CREATE TABLE pve_tokens (
    session_id      TEXT PRIMARY KEY,
    cluster         TEXT NOT NULL,
    userid          TEXT NOT NULL,
    token_name      TEXT NOT NULL,
    state           TEXT NOT NULL,
    secret          BLOB,
    roles           TEXT NOT NULL,      -- JSON array
    paths           TEXT NOT NULL,      -- JSON array
    expires_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX pve_tokens_state ON pve_tokens (state, next_attempt_at);
