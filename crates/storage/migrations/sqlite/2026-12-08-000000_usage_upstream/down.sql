ALTER TABLE usage_records DROP COLUMN upstream;
