-- Web console sessions (issue 24; docs/console.md). The browser holds a random id in the
-- __Host-portcullis-console cookie; only its SHA-256 is stored, like API tokens. Each row
-- is bound to the API token its login issued (never sent to the browser): revoking the
-- token (logout, users revoke) ends the console session too.
--   csrf_token       the per-session CSRF token every console POST must carry.
--   idle_timeout     seconds without a request after which the session is over.
--   expires_at       the absolute end, whatever the activity.
CREATE TABLE console_sessions (
    id_hash        BYTEA PRIMARY KEY,
    token_id       TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    csrf_token     TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    last_seen_at   BIGINT NOT NULL,
    idle_timeout   BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
