-- SQLite flavour; keep it in step with ../../postgres.

-- Where a usage record's token counts were read: the provider's `usage`, or the node's
-- `usage_from_provider` / `usage_from_consumer` when the provider sent none. NULL when the
-- record has no counts (and for records written before this column).
ALTER TABLE usage_records ADD COLUMN usage_source TEXT;
