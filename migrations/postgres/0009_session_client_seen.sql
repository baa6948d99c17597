-- When a session's client last asked about it (GET /v1/sessions/{id} by its own user);
-- with its connections' times, what tells an idle session from a used one (sessions.idle_timeout).
ALTER TABLE sessions ADD COLUMN client_seen_at BIGINT;
