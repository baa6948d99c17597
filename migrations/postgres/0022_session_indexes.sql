-- Fewer index entries per new session (issue 27: authorize-session's cost in the store).
-- sessions_user (user_id) is a prefix of sessions_user_created (user_id, created_at, id),
-- which serves every lookup by user. A session has a parent (a gateway forward) or an
-- access request only now and then: their indexes hold only the sessions that have one
-- (a lookup by either, `= $1`, implies IS NOT NULL, so it still uses them).
DROP INDEX sessions_user;
DROP INDEX sessions_parent;
CREATE INDEX sessions_parent ON sessions (parent_session_id) WHERE parent_session_id IS NOT NULL;
DROP INDEX sessions_access_request;
CREATE INDEX sessions_access_request ON sessions (access_request_id) WHERE access_request_id IS NOT NULL;
