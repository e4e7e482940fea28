-- PostgreSQL flavour; keep it in step with ../../sqlite.

-- The revocation log: one row per API key deactivated or deleted with its account, written in
-- the same transaction. Every replica caches keys in memory and reads this log several times
-- a second to forget revoked ones. Rows are purged after a day. No foreign key: the key row
-- may be gone (account deletion) while the entry must stay.
CREATE TABLE api_key_revocations (
    seq        BIGSERIAL PRIMARY KEY,
    key_prefix TEXT NOT NULL,
    revoked_at TIMESTAMP NOT NULL
);
CREATE INDEX api_key_revocations_revoked_at_idx ON api_key_revocations (revoked_at);
