-- SQLite flavour; keep it in step with ../../postgres.

-- The marketplace contract refuses sessions under 300 s, so durations below it are no longer
-- accepted; stored settings from before are raised to the minimum rather than left unreadable.
UPDATE automation_settings SET session_duration = 300 WHERE session_duration < 300;
