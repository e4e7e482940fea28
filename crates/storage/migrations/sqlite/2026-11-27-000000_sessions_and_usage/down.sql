DROP TABLE usage_records;
DROP TABLE sessions;
