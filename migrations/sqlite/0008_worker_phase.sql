-- What a worker told the controllers it is doing: draining (its SIGTERM drain: no new session
-- goes to it) since when, and stopped (it drained and exited: its sessions ended with reason
-- 'shutdown') when. A hello of a serving worker clears both. Connections a lost worker left
-- open are closed in the new connection state 'lost' (reason 'worker_lost', byte counts the
-- last the store had); the column holds text, so that state needs no change here.
ALTER TABLE workers ADD COLUMN draining_since INTEGER;
ALTER TABLE workers ADD COLUMN stopped_at INTEGER;
