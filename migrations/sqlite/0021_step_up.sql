-- Step-up MFA (issue 26; docs/auth.md, "Step-up MFA"): a challenge from authorize-session
-- when a role's MFA constraint is not met by the caller's token, answered by a fresh login
-- bound to it, and used once by the one session request it was made for.
--   client_key_hash  SHA-256 of the challenged request's client_public_key (base64url text).
--   amr / acr        JSON arrays: what the step-up login must show (one amr, or an acr).
--   nonce            the OIDC nonce the step-up login's ID token must carry.
--   login_id         the OIDC step-up login answering it, once started.
--   proof_hash       SHA-256 of the single-use proof handed to the client.
--   proven_*         what the step-up login showed (method oidc or totp).
--   used_at / session_id  when and by which session the proof was spent.
CREATE TABLE step_up_challenges (
    id               TEXT PRIMARY KEY,
    user_id          TEXT NOT NULL REFERENCES users(id),
    target_id        TEXT NOT NULL,
    target_name      TEXT NOT NULL,
    client_key_hash  BLOB NOT NULL,
    role             TEXT NOT NULL,
    amr              TEXT NOT NULL,
    acr              TEXT NOT NULL,
    nonce            TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    login_id         TEXT,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    proof_hash       BLOB,
    proven_at        INTEGER,
    proven_method    TEXT,
    proven_amr       TEXT,
    proven_acr       TEXT,
    proven_auth_time INTEGER,
    used_at          INTEGER,
    session_id       TEXT
);
CREATE INDEX step_up_challenges_login ON step_up_challenges (login_id);
CREATE INDEX step_up_challenges_expiry ON step_up_challenges (expires_at);
