-- PostgreSQL flavour; keep it in step with ../../sqlite.

-- An API key's policy; NULL everywhere is a key without limits (as every key made before).
-- expires_at: from then on the key is refused like a revoked one.
-- allowed_models: a JSON array of model names or ids, the only models the key may use.
-- rpm, tpm: requests and tokens per minute.
-- budgets: a JSON array of {"window_seconds": n, "limit_units": n}, the limit in 10^-8 USD
-- (the Usd unit); NULL when the key has none.
ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMP;
ALTER TABLE api_keys ADD COLUMN allowed_models TEXT;
ALTER TABLE api_keys ADD COLUMN rpm BIGINT;
ALTER TABLE api_keys ADD COLUMN tpm BIGINT;
ALTER TABLE api_keys ADD COLUMN budgets TEXT;

-- Key creations per user in the last 24 hours are counted (MORPHEUS_KEY_CREATIONS_PER_DAY).
CREATE INDEX api_keys_user_id_created_at_idx ON api_keys (user_id, created_at);
