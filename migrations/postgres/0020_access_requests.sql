-- Just-in-time access (issue 25; docs/access.md): requests for a requestable role of the
-- policy, limited to a list of targets or to one target zone, for a duration.
--   targets   JSON array of the target names or ids asked for ('[]' when zone is set).
--   state     pending, approved, denied, revoked, expired.
--   expires_at  while pending: the deadline for approvals ([access] pending_ttl); once
--             approved: the end of the window (approved_at + duration_secs).
--   approvals_needed  approvals still missing while pending (0 once approved).
--   decided_by / decision_reason  who denied or revoked it, and why.
--   run_*     a `portcullis run`: the command (JSON argv), the run key (base64url SPKI,
--             public only), its keepalive promise and progress, and how it ended.
CREATE TABLE access_requests (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users(id),
    role                TEXT NOT NULL,
    targets             TEXT NOT NULL,
    zone                TEXT,
    state               TEXT NOT NULL,
    reason              TEXT,
    break_glass         BIGINT NOT NULL DEFAULT 0,
    duration_secs       BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    approved_at         BIGINT,
    expires_at          BIGINT NOT NULL,
    approvals_needed    BIGINT NOT NULL,
    decided_by          TEXT,
    decision_reason     TEXT,
    run_command         TEXT,
    run_public_key      TEXT,
    run_keepalive_secs  BIGINT,
    run_started_at      BIGINT,
    run_last_seen_at    BIGINT,
    run_finished_at     BIGINT,
    run_exit_status     BIGINT,
    run_outcome         TEXT
);
CREATE INDEX access_requests_user ON access_requests (user_id, created_at DESC);
CREATE INDEX access_requests_open ON access_requests (state, expires_at);
-- One row per approval: N distinct approvers, never twice the same.
CREATE TABLE access_approvals (
    request_id  TEXT NOT NULL REFERENCES access_requests(id),
    user_id     TEXT NOT NULL,
    at          BIGINT NOT NULL,
    reason      TEXT,
    UNIQUE (request_id, user_id)
);
-- The approved request a session was authorised under (NULL: standing roles).
ALTER TABLE sessions ADD COLUMN access_request_id TEXT;
CREATE INDEX sessions_access_request ON sessions (access_request_id)
    WHERE access_request_id IS NOT NULL;
