-- Agents over MCP: what an API token may do, a limit on how fast a token sends, and the log of
-- every tool call an agent makes.

-- Comma-separated scopes of `read`, `send` and `manage`. Tokens made before scopes existed could
-- do everything, so they keep all three.
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT 'read,send,manage';

-- Fixed-window counters for rate limits shared by every API replica, keyed by what is limited
-- (e.g. `mcp-send:<token id>`); one statement increments and reads a key, so the limit holds
-- under concurrency.
CREATE TABLE rate_windows (
    key          TEXT   PRIMARY KEY,
    window_start BIGINT NOT NULL,
    used         BIGINT NOT NULL
);

-- Every tool call made over MCP, newest first per user: which token, which tool, the arguments
-- (images elided) and whether it succeeded, with the text answered or the error.
CREATE TABLE mcp_calls (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_id   INTEGER NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    token_name TEXT    NOT NULL,                    -- as it was when it called
    tool       TEXT    NOT NULL,
    arguments  TEXT    NOT NULL,                    -- JSON
    ok         BOOLEAN NOT NULL,
    result     TEXT    NOT NULL,                    -- clipped
    created_at BIGINT  NOT NULL
);
CREATE INDEX mcp_calls_user ON mcp_calls (user_id, id);
