DROP TABLE pool_opens;
DROP INDEX sessions_pool_idx;
DROP INDEX sessions_one_active_per_key_model;
-- Pooled sessions of one key would clash in the old index: retire all but one per key and model.
UPDATE sessions SET state = 'retired'
    WHERE pooled AND state = 'active' AND id NOT IN (
        SELECT MAX(id) FROM sessions WHERE pooled AND state = 'active'
        GROUP BY api_key_id, model_id);
CREATE UNIQUE INDEX sessions_one_active_per_key_model ON sessions (api_key_id, model_id)
    WHERE state = 'active';
ALTER TABLE sessions DROP COLUMN lease_expires_at;
ALTER TABLE sessions DROP COLUMN leased_by;
ALTER TABLE sessions DROP COLUMN pooled;
