-- Files uploaded through /api/file-to-text: one record per stored object (the object is in the file storage).
CREATE TABLE files (
    file_key TEXT PRIMARY KEY,
    channel_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    filename TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    ttl_days INTEGER,
    expires_at DOUBLE PRECISION,
    created_at TEXT NOT NULL
);
CREATE INDEX files_conversation ON files (conversation_id);
CREATE INDEX files_channel ON files (channel_id);
CREATE INDEX files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;

-- Per-deployment secrets (e.g. the key that signs local file URLs), made once and shared by every process.
CREATE TABLE deployment_secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL
);
