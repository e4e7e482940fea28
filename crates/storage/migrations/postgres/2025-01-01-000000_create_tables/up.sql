-- PostgreSQL flavour of the schema; keep it in step with ../../sqlite.
-- Ids are drawn at random by the application, so no sequences. Timestamps are UTC in
-- TIMESTAMP (without time zone) columns, matching diesel's NaiveDateTime on both backends.

CREATE TABLE users (
    id            BIGINT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT,
    password_hash TEXT NOT NULL,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);

CREATE TABLE api_keys (
    id           BIGINT PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key_prefix   TEXT NOT NULL UNIQUE,
    key_digest   BYTEA NOT NULL UNIQUE,
    name         TEXT,
    is_active    BOOLEAN NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);
CREATE INDEX api_keys_user_id_idx ON api_keys (user_id);

CREATE TABLE refresh_tokens (
    token_id   TEXT PRIMARY KEY,
    family_id  TEXT NOT NULL,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    issued_at  TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at    TIMESTAMP,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_id_idx ON refresh_tokens (user_id);
-- The hourly purge deletes by expiry.
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);

CREATE TABLE wallet_keys (
    user_id    BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    sealed_key BYTEA NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE delegations (
    id                     BIGINT PRIMARY KEY,
    user_id                BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    delegate_address       TEXT NOT NULL,
    signed_delegation_data TEXT NOT NULL,
    expiry                 TIMESTAMP,
    is_active              BOOLEAN NOT NULL,
    created_at             TIMESTAMP NOT NULL
);
CREATE INDEX delegations_user_id_created_at_idx ON delegations (user_id, created_at);
-- The database, not only the code, guarantees at most one active delegation per user.
CREATE UNIQUE INDEX delegations_one_active_per_user ON delegations (user_id) WHERE is_active;

CREATE TABLE automation_settings (
    user_id          BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    is_enabled       BOOLEAN NOT NULL,
    session_duration INTEGER NOT NULL,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL
);
