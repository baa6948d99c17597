-- SSH certificates issued per session, for the KRL: when a session ends before its
-- certificates expire, they are marked revoked and served at GET /v1/ssh/krl until expiry.
CREATE TABLE ssh_certificates (
    serial       TEXT PRIMARY KEY,           -- u64 as decimal text
    session_id   TEXT NOT NULL,
    ca_key_id    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    valid_before BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX ssh_certificates_session ON ssh_certificates (session_id);
CREATE INDEX ssh_certificates_revoked ON ssh_certificates (revoked_at, valid_before);
