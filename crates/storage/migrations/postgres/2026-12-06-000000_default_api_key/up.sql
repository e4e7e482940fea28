-- PostgreSQL flavour; keep it in step with ../../sqlite.

-- The key a user's web app uses by default (PUT /auth/keys/{key_id}/default); at most one
-- per user, and only an active key is one (revoking it clears the mark).
ALTER TABLE api_keys ADD COLUMN is_default BOOLEAN NOT NULL DEFAULT FALSE;
CREATE UNIQUE INDEX api_keys_one_default_per_user ON api_keys (user_id) WHERE is_default;
