-- Accounts, login sessions, API tokens, login rate limiting and devices.
-- Times are UTC milliseconds since the Unix epoch (BIGINT) in both dialects, so that ordering and
-- range queries behave identically on SQLite and PostgreSQL. In psql: to_timestamp(created_at / 1000.0).

CREATE TABLE users (
    id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,          -- lower-cased by the application
    password_hash TEXT    NOT NULL,                 -- argon2id PHC string
    is_admin      BOOLEAN NOT NULL DEFAULT FALSE,
    time_zone     TEXT    NOT NULL DEFAULT 'UTC',   -- IANA name; campaigns default to it
    created_at    BIGINT  NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT   PRIMARY KEY,                  -- SHA-256 of the cookie secret
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE INDEX sessions_user_id ON sessions (user_id);

CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,            -- SHA-256 of the token
    hint         TEXT   NOT NULL,                   -- last four characters, for telling tokens apart
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
-- Names are unique among a user's live tokens only, so a revoked name can be reused.
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (user_id, name) WHERE revoked_at IS NULL;

-- Fixed-window counters of failed logins, keyed by `email:<address>` or `ip:<address>`.
CREATE TABLE login_failures (
    key          TEXT   PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures     BIGINT NOT NULL
);

CREATE TABLE devices (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT   NOT NULL,
    phone        TEXT,                              -- E.164, as the owner entered it
    jid          TEXT,                              -- WhatsApp JID once paired
    status       TEXT   NOT NULL DEFAULT 'offline'
                 CHECK (status IN ('offline', 'pairing', 'connecting', 'online', 'logged_out', 'banned')),
    last_seen_at BIGINT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    UNIQUE (user_id, name)
);
CREATE UNIQUE INDEX devices_user_phone ON devices (user_id, phone) WHERE phone IS NOT NULL;
