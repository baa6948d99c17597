-- The Proxmox host catalog (docs/proxmox.md): targets discovered from a cluster live beside
-- hand-made ones in `targets`.
--   source      NULL for a hand-made target; the `[[catalog.proxmox]]` name for a discovered one.
--   source_key  the guest or node in that cluster: `qemu/100`, `lxc/101`, `node/pve1`, plus
--               `#SERVICE` for a guest's further services (`qemu/100#rdp`).
--   available   0 for a template or a stopped guest: listed, never connectable.
--   discovered  JSON: what the last sync saw (the fields it owns, the node, the address's
--               origin, the guest's status). A field whose stored value differs from the
--               last-seen one was set by an admin: an override the next sync keeps.
ALTER TABLE targets ADD COLUMN source TEXT;
ALTER TABLE targets ADD COLUMN source_key TEXT;
ALTER TABLE targets ADD COLUMN available BIGINT NOT NULL DEFAULT 1;
ALTER TABLE targets ADD COLUMN discovered TEXT;
CREATE UNIQUE INDEX targets_source_key ON targets (source, source_key);

-- One row per configured cluster: where its sync stands. A failed sync changes only this
-- row (and audits why); the discovered targets stay as the last good sync left them.
CREATE TABLE catalog_clusters (
    cluster          TEXT PRIMARY KEY,
    last_attempt_at  BIGINT,
    last_success_at  BIGINT,
    last_error       TEXT,              -- the last failure's words; NULL after a success
    last_url         TEXT,              -- the API URL that answered last
    guests           BIGINT NOT NULL DEFAULT 0,
    nodes            BIGINT NOT NULL DEFAULT 0,
    refused          TEXT NOT NULL DEFAULT '{}'   -- JSON: source_key -> reason, audited once
);
