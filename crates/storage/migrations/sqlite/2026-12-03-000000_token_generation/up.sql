-- SQLite flavour; keep it in step with ../../postgres.

-- Raised whenever the user's sign-ins end (logout, a password change, signing out everywhere,
-- a disabled account, a replayed refresh token). Access tokens carry the generation they were
-- issued under and are refused once it has moved on; replicas read it through a cache of a few
-- seconds (MORPHEUS_USER_CACHE_SECONDS).
ALTER TABLE users ADD COLUMN token_generation BIGINT NOT NULL DEFAULT 0;
