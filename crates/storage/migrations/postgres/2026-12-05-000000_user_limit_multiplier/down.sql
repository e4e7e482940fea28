ALTER TABLE users DROP COLUMN limit_multiplier;
