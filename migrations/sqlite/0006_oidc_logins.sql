-- OIDC login: logins waiting for their callback and redemption, the identity each API token
-- was issued for, and the token each session was authorised with (so logout ends them).
-- Keep in step with ../postgres/0006_oidc_logins.sql.

CREATE TABLE oidc_logins (
    id              TEXT PRIMARY KEY,
    mode            TEXT NOT NULL,           -- loopback | code | device
    state_hash      BLOB UNIQUE,             -- SHA-256 of the OAuth state (browser modes)
    sealed          BLOB NOT NULL,           -- nonce + PKCE verifier, or the device code, sealed
    cli_secret_hash BLOB NOT NULL,           -- SHA-256 of the secret only the starting CLI knows
    redirect_port   INTEGER,                 -- loopback mode: the CLI's 127.0.0.1 port
    source          TEXT NOT NULL,           -- the starting CLI's address
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    callback_at     INTEGER,                 -- the state was used (it is single-use)
    identity        TEXT,                    -- JSON of the verified identity, until redeemed
    code_hash       BLOB,                    -- SHA-256 of the one-time redemption code
    failed_attempts INTEGER NOT NULL DEFAULT 0,
    error           TEXT,                    -- why the login failed, for the CLI
    redeemed_at     INTEGER
);
CREATE INDEX oidc_logins_expiry ON oidc_logins (expires_at);

-- The identity attributes of the login that issued each token (NULL: use the user's).
ALTER TABLE api_tokens ADD COLUMN groups TEXT;
ALTER TABLE api_tokens ADD COLUMN amr TEXT;
ALTER TABLE api_tokens ADD COLUMN acr TEXT;
ALTER TABLE api_tokens ADD COLUMN auth_time INTEGER;
CREATE INDEX api_tokens_user ON api_tokens (user_id);

ALTER TABLE sessions ADD COLUMN token_id TEXT;
CREATE INDEX sessions_token ON sessions (token_id);
