-- The decision that allowed a session (issue 24; the console's sessions page shows it and
-- filters by zone): the matrix cell, source zone -> target zone, and the roles that granted
-- it (a JSON array of names), from the policy's decision as session_authorized records it.
-- NULL for sessions authorised before this migration (their session_authorized event holds
-- the zones).
ALTER TABLE sessions ADD COLUMN source_zone TEXT;
ALTER TABLE sessions ADD COLUMN target_zone TEXT;
ALTER TABLE sessions ADD COLUMN roles TEXT;
-- Keyset pagination of the session list, newest first: (created_at, id) seeks to a page
-- whatever its depth, alone, among live sessions (the few that have not ended), or after the
-- console's user or target filter; the user filter finds the user by name.
CREATE INDEX sessions_created ON sessions (created_at DESC, id);
CREATE INDEX sessions_live ON sessions (created_at DESC, id) WHERE state <> 'terminated';
CREATE INDEX sessions_user_created ON sessions (user_id, created_at DESC, id);
CREATE INDEX sessions_target_created ON sessions (target_id, created_at DESC, id);
CREATE INDEX users_username ON users (username);
