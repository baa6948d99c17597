-- The audit log as a hash chain (docs/audit.md). Keep in step with
-- ../postgres/0003_audit_chain.sql.
--
-- `audit_head` is the single row every audited transaction locks and advances: the sequence
-- and hash of the newest event. Events written before this migration keep their numbers and
-- have no hash; the chain starts after them with the all-zero hash as its predecessor.

ALTER TABLE audit_events ADD COLUMN username TEXT;
ALTER TABLE audit_events ADD COLUMN decision TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE INDEX audit_events_session ON audit_events (session_id);
CREATE INDEX audit_events_time ON audit_events (time);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
SELECT 1, COALESCE(MAX(seq), 0), '0000000000000000000000000000000000000000000000000000000000000000'
FROM audit_events;

-- One row per external sink: the last event shipped (committed after sending) and the last
-- checkpoint, shared by every controller so that any of them can take the shipper over.
CREATE TABLE audit_sinks (
    name           TEXT PRIMARY KEY,
    cursor         INTEGER NOT NULL,
    checkpoint_seq INTEGER NOT NULL,
    checkpoint_at  INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
