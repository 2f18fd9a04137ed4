-- 0002: named agents and a webhook signing secret per channel; the hand-off state and the agent in charge
-- per conversation; tokens for agents (async push) and for human agents (live chat).
ALTER TABLE channels ADD COLUMN agents TEXT NOT NULL DEFAULT '{}';
ALTER TABLE channels ADD COLUMN webhook_secret TEXT;
ALTER TABLE conversations ADD COLUMN handoff TEXT NOT NULL DEFAULT 'ai';
ALTER TABLE conversations ADD COLUMN human_agent TEXT;
ALTER TABLE conversations ADD COLUMN agent TEXT;
ALTER TABLE conversations ADD COLUMN has_livechat BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX conversations_by_handoff ON conversations (channel_id, handoff) WHERE handoff <> 'ai';
CREATE TABLE agent_tokens (
    id          TEXT PRIMARY KEY,
    channel_id  TEXT NOT NULL REFERENCES channels(id),
    token_hash  TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    role        TEXT NOT NULL,
    label       TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
