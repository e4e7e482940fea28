ALTER TABLE api_keys DROP COLUMN stream_continuation;
