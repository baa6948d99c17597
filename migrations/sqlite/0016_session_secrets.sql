-- Leased secrets of live sessions (issue 23; docs/secrets.md): the data Vault returned for a
-- session's target's vault_secrets, kept only while the session lives and served, audited,
-- by GET /v1/sessions/{id}/secrets to the session's own user.
--   paths   JSON array of the Vault paths, in the target's order (what events may name).
--   sealed  JSON of the secrets with their data, sealed (AES-256-GCM under the master key,
--           'session_secrets:' || session_id as associated data). Never stored in the clear.
-- Written in the transaction that makes the session pending with credential_minted; the
-- row is deleted in the transaction that ends the session.
CREATE TABLE session_secrets (
    session_id  TEXT PRIMARY KEY,
    paths       TEXT NOT NULL,
    sealed      BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
