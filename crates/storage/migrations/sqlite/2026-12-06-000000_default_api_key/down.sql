DROP INDEX api_keys_one_default_per_user;
ALTER TABLE api_keys DROP COLUMN is_default;
