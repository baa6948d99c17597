-- Service accounts (issue 21, docs/auth.md "Service accounts"): automation identities (a CI
-- job running Terraform or Ansible) that prove possession of an Ed25519 key instead of
-- logging in. Each is a row of `users` (issuer `service:`, subject = its name, its groups)
-- plus one row here with its public key.
--   public_key       the OpenSSH one-line public key as registered (`ssh-ed25519 AAAA...`).
--   key_fingerprint  portcullis_proto::keys::ed25519_fingerprint of the key: the `kid` of
--                    its assertions; one key belongs to one account.
--   key_revoked_at   set: the key obtains no more tokens, and the tokens it obtained are
--                    refused even if one of them was not marked revoked.
CREATE TABLE service_accounts (
    user_id         TEXT PRIMARY KEY REFERENCES users (id),
    public_key      TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL UNIQUE,
    key_revoked_at  BIGINT,
    created_at      BIGINT NOT NULL
);

-- The replay store: the jti of every accepted assertion, kept until the assertion could no
-- longer be accepted anyway (expires_at, Unix seconds), then pruned.
CREATE TABLE service_assertions (
    jti        TEXT PRIMARY KEY,
    account    TEXT NOT NULL REFERENCES service_accounts (user_id),
    expires_at BIGINT NOT NULL
);
CREATE INDEX service_assertions_expiry ON service_assertions (expires_at);

-- Which key obtained each token of a service account: `users revoke-key` revokes exactly
-- these, and token authentication refuses a token whose key is revoked.
CREATE TABLE service_tokens (
    token_id        TEXT PRIMARY KEY REFERENCES api_tokens (id),
    account         TEXT NOT NULL REFERENCES service_accounts (user_id),
    key_fingerprint TEXT NOT NULL
);
CREATE INDEX service_tokens_key ON service_tokens (key_fingerprint);
