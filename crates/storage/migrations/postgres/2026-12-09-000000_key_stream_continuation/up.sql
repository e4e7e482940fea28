-- PostgreSQL flavour; keep it in step with ../../sqlite.

-- The key's holder asks for mid-stream continuation (a broken stream continued by another
-- upstream); it happens only when the operator allows it too (MORPHEUS_STREAM_CONTINUATION).
ALTER TABLE api_keys ADD COLUMN stream_continuation BOOLEAN NOT NULL DEFAULT FALSE;
