-- 0001: channels (tenants), API keys (hashed), conversations, and the per-conversation event log.
CREATE TABLE channels (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    agent       TEXT NOT NULL DEFAULT 'demo',
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    channel_id       TEXT NOT NULL REFERENCES channels(id),
    user_id          TEXT NOT NULL,
    user_basic_info  TEXT NOT NULL DEFAULT '{}',
    metadata         TEXT NOT NULL DEFAULT '{}',
    private_metadata TEXT NOT NULL DEFAULT '{}',
    last_seq         BIGINT NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    deleted_at       TEXT
);
CREATE INDEX conversations_by_user ON conversations (channel_id, user_id, updated_at);

CREATE TABLE events (
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    sender          TEXT,
    message_id      TEXT,
    client_msg_id   TEXT,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    edited_at       TEXT,
    PRIMARY KEY (conversation_id, seq)
);
CREATE INDEX events_by_client_msg_id ON events (conversation_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX events_by_message_id ON events (conversation_id, message_id) WHERE message_id IS NOT NULL;
