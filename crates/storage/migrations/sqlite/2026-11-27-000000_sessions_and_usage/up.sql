-- SQLite flavour; keep it in step with ../../postgres.

-- Marketplace sessions, one row per session the gateway opened. The id is the chain's session
-- id (0x + 64 lowercase hex digits); a session goes with the API key that opened it.
-- No foreign keys on purpose: a session is paid for on chain and must be closed after its end
-- even when its key or its user is gone (closing returns the stake), so a record outlives
-- them; account deletion retires the user's sessions instead of deleting them.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    api_key_id BIGINT NOT NULL,
    user_id    BIGINT NOT NULL,
    model_id   TEXT NOT NULL,
    bid_id     TEXT,
    origin     TEXT NOT NULL CHECK (origin IN ('automated', 'model', 'bid')),
    state      TEXT NOT NULL CHECK (state IN ('active', 'retired', 'closed')),
    opened_at  TIMESTAMP NOT NULL,
    ends_at    TIMESTAMP NOT NULL,
    closed_at  TIMESTAMP
);
-- At most one active session per key and model, guaranteed by the database: two replicas
-- opening one at the same time cannot both store theirs.
CREATE UNIQUE INDEX sessions_one_active_per_key_model ON sessions (api_key_id, model_id)
    WHERE state = 'active';
-- The close sweep looks for open sessions by end.
CREATE INDEX sessions_state_ends_at_idx ON sessions (state, ends_at);
-- Lookups by key (SQLite only uses the partial index for a literal 'active', and diesel binds
-- values) and by user (account deletion).
CREATE INDEX sessions_api_key_id_idx ON sessions (api_key_id);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- One row per chat request. No foreign keys on purpose: a batch written in the background must
-- not fail because a user or key went between the request and the write, and billing history
-- outlives revoked keys. Account deletion removes a user's rows explicitly.
-- INTEGER PRIMARY KEY (exactly that spelling) is the rowid; AUTOINCREMENT keeps ids rising even
-- after the newest rows are deleted, like Postgres's sequence.
CREATE TABLE usage_records (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           BIGINT NOT NULL,
    api_key_id        BIGINT NOT NULL,
    model_id          TEXT,
    session_id        TEXT,
    -- Both or neither: the provider reported a usage or it did not.
    prompt_tokens     INTEGER,
    completion_tokens INTEGER,
    outcome           TEXT NOT NULL
        CHECK (outcome IN ('completed', 'failed', 'incomplete', 'client_closed')),
    status            INTEGER NOT NULL,
    stream            BOOLEAN NOT NULL,
    latency_ms        INTEGER NOT NULL,
    created_at        TIMESTAMP NOT NULL,
    CHECK ((prompt_tokens IS NULL) = (completion_tokens IS NULL))
);
CREATE INDEX usage_records_user_id_created_at_idx ON usage_records (user_id, created_at);
