-- PostgreSQL flavour; keep it in step with ../../sqlite.

-- Which upstream served a request: `marketplace`, or the name of one of the operator's
-- providers (the providers file); NULL for requests that never reached one.
ALTER TABLE usage_records ADD COLUMN upstream TEXT;
