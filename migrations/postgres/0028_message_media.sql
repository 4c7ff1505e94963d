-- The file a received message carries (a picture, video, voice note, document or sticker): what
-- the message said of it, kept until a worker fetched it through the device's session (`locator`
-- is the link's own description: addresses, keys, hashes), then where wafleet keeps the file. One
-- row per message with a file, removed with its message.
--   pending: to fetch (again at next_attempt_at); stored: kept under stored_key;
--   failed: not kept (error says why: gone from WhatsApp, too large, ...);
--   expired: removed by the owner's media retention (the message stays).
CREATE TABLE message_media (
    device_id       BIGINT  NOT NULL,
    message_id      TEXT    NOT NULL,
    mime            TEXT    NOT NULL,
    size            BIGINT  NOT NULL,
    file_name       TEXT,
    locator         TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'stored', 'failed', 'expired')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    error           TEXT,
    stored_key      TEXT,
    created_at      BIGINT  NOT NULL,
    stored_at       BIGINT,
    PRIMARY KEY (device_id, message_id),
    FOREIGN KEY (device_id, message_id) REFERENCES messages (device_id, id) ON DELETE CASCADE
);
-- Workers look for files due to be fetched; nearly always none, so the index stays tiny.
CREATE INDEX message_media_due ON message_media (next_attempt_at) WHERE state = 'pending';

-- How many days the user's received files are kept (NULL: as long as their messages).
ALTER TABLE users ADD COLUMN keep_media_days BIGINT;
