-- The web console's verification watermark (issue 24; docs/console.md, docs/audit.md): the
-- last audit event its incremental check verified, so each check walks only the events
-- after it. At most one row (id = 1); no row: the next check starts at the chain's first
-- event ("verify from the start" deletes it). A convenience, not a trust anchor: offline
-- `portcullis audit verify --public-key` is.
--   seq          the sequence number of the last event verified.
--   hash         that event's hash (the next event must link to it).
--   verified_at  when the check reached it (unix seconds).
CREATE TABLE audit_verified (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    seq          INTEGER NOT NULL,
    hash         TEXT NOT NULL,
    verified_at  INTEGER NOT NULL
);
