-- SQLite flavour; keep it in step with ../../postgres.

-- The user's share of the operator's rate limits, in hundredths: 100 is the limits as the
-- operator wrote them, 250 two and a half times them (admin users limits).
ALTER TABLE users ADD COLUMN limit_multiplier BIGINT NOT NULL DEFAULT 100;
