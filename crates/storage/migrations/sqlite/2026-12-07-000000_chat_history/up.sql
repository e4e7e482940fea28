-- SQLite flavour; keep it in step with ../../postgres.

-- Chat history (/api/v1/chat-history): chats a client stores per user, and their messages.
-- Ids are UUIDs in their canonical text form, as the 2026 gateway's. Deleting a user deletes
-- their chats, and deleting a chat its messages (SQLite: foreign_keys is on for every
-- connection).
CREATE TABLE chats (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    is_archived BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL
);
-- Listings: a user's chats, most recently updated first.
CREATE INDEX chats_user_id_updated_at_idx ON chats (user_id, updated_at);

CREATE TABLE messages (
    id         TEXT PRIMARY KEY NOT NULL,
    chat_id    TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content    TEXT NOT NULL,
    sequence   BIGINT NOT NULL,
    tokens     INTEGER,
    created_at TIMESTAMP NOT NULL
);
-- The database, not only the code, guarantees that two messages of a chat never share a
-- place; it also serves listings in order and the next sequence (max + 1).
CREATE UNIQUE INDEX messages_chat_id_sequence_idx ON messages (chat_id, sequence);
