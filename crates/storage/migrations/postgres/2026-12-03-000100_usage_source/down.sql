ALTER TABLE usage_records DROP COLUMN usage_source;
