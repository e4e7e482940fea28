DROP INDEX api_keys_user_id_created_at_idx;
ALTER TABLE api_keys DROP COLUMN budgets;
ALTER TABLE api_keys DROP COLUMN tpm;
ALTER TABLE api_keys DROP COLUMN rpm;
ALTER TABLE api_keys DROP COLUMN allowed_models;
ALTER TABLE api_keys DROP COLUMN expires_at;
