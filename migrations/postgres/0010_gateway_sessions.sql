-- SSH gateway mode (docs/ssh.md): how a session's SSH runs (NULL: certificate mode, the only
-- mode before), and, for a forward a gateway session asked for (`ssh -L`), the gateway
-- session it runs under: it ends when that session ends.
ALTER TABLE sessions ADD COLUMN ssh_mode TEXT;
ALTER TABLE sessions ADD COLUMN parent_session_id TEXT;
CREATE INDEX sessions_parent ON sessions (parent_session_id);
