-- PostgreSQL flavour; keep it in step with ../../sqlite.

-- Credits. The ledger is the source of truth; a user's balance row is updated in the same
-- transaction as each of their entries: `posted` is the sum of their posted entries, `held`
-- what their pending holds set aside. Money is a whole number of 10^-8 USD (BIGINT): exact,
-- and the same in both databases.
CREATE TABLE credit_balances (
    user_id    BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    posted     BIGINT NOT NULL DEFAULT 0,
    held       BIGINT NOT NULL DEFAULT 0 CHECK (held >= 0),
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- `amount` is signed (credit positive, spending negative). A hold's `amount` is what it sets
-- aside (negative) while pending; settled, the row becomes the charge and `amount` what was
-- charged, `held_amount` still telling what was set aside.
CREATE TABLE credit_ledger (
    id                TEXT PRIMARY KEY,
    user_id           BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    entry_type        TEXT NOT NULL,
    status            TEXT NOT NULL,
    amount            BIGINT NOT NULL,
    held_amount       BIGINT NOT NULL DEFAULT 0,
    idempotency_key   TEXT UNIQUE,
    api_key_id        BIGINT,
    model             TEXT,
    request_id        TEXT,
    prompt_tokens     BIGINT,
    completion_tokens BIGINT,
    input_price       BIGINT,
    output_price      BIGINT,
    estimated         BOOLEAN NOT NULL DEFAULT FALSE,
    description       TEXT,
    created_at        TIMESTAMP NOT NULL,
    updated_at        TIMESTAMP NOT NULL
);
CREATE INDEX credit_ledger_user_created_idx ON credit_ledger (user_id, created_at);
CREATE INDEX credit_ledger_pending_idx ON credit_ledger (created_at) WHERE status = 'pending';
