-- Targets' pinned SSH host keys (OpenSSH public key lines, JSON array): the CLI writes them
-- into a private known_hosts file for `connect ssh`.
ALTER TABLE targets ADD COLUMN ssh_host_keys TEXT NOT NULL DEFAULT '[]';
