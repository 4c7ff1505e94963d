-- Outbound sends and the queue's dead letters.

-- The embedded queue (apalis-sqlite) keeps its own consumers in a table named `Workers`, and SQLite
-- names are case-insensitive: the connection workers' table takes a distinct name.
ALTER TABLE workers RENAME TO fleet_workers;

-- Every send a user asked for, recorded before it is queued. The idempotency key makes a repeated
-- request return the same row instead of sending twice; the worker holding the device moves the
-- row queued → sending → sent under its fencing token, so two workers can never both send it.
CREATE TABLE outbound_messages (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id       BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    idempotency_key TEXT   NOT NULL,  -- the client's Idempotency-Key, or one generated for it
    recipient       TEXT   NOT NULL,  -- the JID sent to
    kind            TEXT   NOT NULL CHECK (kind IN ('text', 'image')),
    body            TEXT,             -- text, or the image's caption
    image           BYTEA,            -- JPEG, already compressed
    status          TEXT   NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed')),
    reason          TEXT,             -- why it failed, for people
    attempts        BIGINT NOT NULL DEFAULT 0,
    send_token      BIGINT,           -- fencing token of the holder that began sending it
    wa_message_id   TEXT,             -- WhatsApp's id once sent
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    sent_at         BIGINT,
    UNIQUE (user_id, idempotency_key)
);
-- Holders look for work of their devices; only queued rows are in this index.
CREATE INDEX outbound_messages_queued ON outbound_messages (device_id, id) WHERE status = 'queued';
CREATE INDEX outbound_messages_sending ON outbound_messages (device_id) WHERE status = 'sending';
-- Receipts name WhatsApp's id.
CREATE INDEX outbound_messages_wa_id ON outbound_messages (device_id, wa_message_id);

-- Jobs that failed for good (retries exhausted or a permanent error), kept to be listed and replayed.
CREATE TABLE dead_letters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       TEXT   NOT NULL,
    job         TEXT   NOT NULL,  -- the job as JSON, to replay it
    error       TEXT   NOT NULL,
    attempts    BIGINT NOT NULL,
    failed_at   BIGINT NOT NULL,
    replayed_at BIGINT
);
CREATE INDEX dead_letters_recent ON dead_letters (failed_at DESC);
