-- SQLite flavour; keep it in step with ../../postgres.

-- The session pool. Sessions that automation opens are the gateway's, shared by every key, one
-- request at a time each; an explicit session a key gives up joins them. `pooled` marks them.
-- A pooled session is leased to one replica at a time (`leased_by`, until `lease_expires_at`),
-- which claims it in memory: no database round trip on the chat path, and no session claimed by
-- two replicas. A replica that dies stops renewing, and its sessions can be leased by another.
ALTER TABLE sessions ADD COLUMN pooled BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN leased_by TEXT;
ALTER TABLE sessions ADD COLUMN lease_expires_at TIMESTAMP;
UPDATE sessions SET pooled = 1 WHERE origin = 'automated';

-- A key still has at most one explicit session per model; pooled ones are not a key's.
DROP INDEX sessions_one_active_per_key_model;
CREATE UNIQUE INDEX sessions_one_active_per_key_model ON sessions (api_key_id, model_id)
    WHERE state = 'active' AND NOT pooled;
CREATE INDEX sessions_pool_idx ON sessions (model_id, state) WHERE pooled;

-- Opens in progress, one row each, so the per-model cap counts them on every replica: a replica
-- reserves a row (under a per-model lock) before it asks the node, and removes it when the open
-- ended either way. Rows of a replica that died mid-open go stale and stop counting.
CREATE TABLE pool_opens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    model_id   TEXT NOT NULL,
    replica    TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL
);
CREATE INDEX pool_opens_model_id_idx ON pool_opens (model_id);
