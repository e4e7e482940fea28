-- PostgreSQL flavour; keep it in step with ../../sqlite.

-- Each address's confusable skeleton (Unicode TS #39, computed by the gateway): addresses that
-- look alike have the same one, and are one account. Existing rows are filled in by the
-- gateway right after the migrations (SQL cannot compute a skeleton); a row whose skeleton an
-- older account already has keeps NULL (a unique index allows several), and still logs in by
-- its exact address.
ALTER TABLE users ADD COLUMN email_skeleton TEXT;
CREATE UNIQUE INDEX users_email_skeleton_key ON users (email_skeleton);
