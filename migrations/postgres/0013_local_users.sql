-- Local users (issue 21, docs/auth.md "Local users"): identities of issuer `local:` that log in
-- with a password and TOTP instead of an OpenID provider. Each is a row of `users` (its
-- name, groups) plus one row here with its credentials.
--   password_hash         argon2id PHC string.
--   must_change_password  1: the password was set by an administrator (`controller users
--                         add` or `reset` printed it once); the first login must replace it.
--   totp_secret           the TOTP secret sealed (AES-256-GCM under the master key, the user
--                         id as associated data); NULL: not enrolled.
--   totp_last_step        the last time step whose code was accepted: a code is single-use
--                         per step, and no code of an earlier step is accepted after it.
--   disabled_at           set: the user cannot log in (its row and audit trail remain).
CREATE TABLE local_users (
    user_id              TEXT PRIMARY KEY REFERENCES users (id),
    password_hash        TEXT NOT NULL,
    must_change_password BIGINT NOT NULL DEFAULT 0,
    totp_secret          BYTEA,
    totp_last_step       BIGINT,
    disabled_at          BIGINT,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- Single-use recovery codes, made at TOTP enrolment: only their SHA-256 digests are stored.
CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES local_users (user_id),
    code_hash TEXT NOT NULL,
    used_at   BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
