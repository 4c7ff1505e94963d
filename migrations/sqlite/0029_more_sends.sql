-- no-transaction
-- Sends may carry any file WhatsApp sends, not only pictures, and messages with a structure of
-- their own: `kind` names it (`video`, `audio`, `document`, `sticker`; `contact`, `location`,
-- `link`, `poll`; beside `text` and `image`), `image` holds the file of any media send (the column
-- kept its first name), `media_mime` its MIME type as WhatsApp is told (NULL for the pictures
-- recorded before: JPEG), `file_name` the name a document is shown with, and `payload` the
-- structure of a contact card, location, link or poll as JSON (`body` keeps its readable text);
-- `forwarded` sends go out marked "Forwarded", as WhatsApp marks a message passed on.
--
-- SQLite cannot change a CHECK in place, so the table is rebuilt with the wider one: the same
-- columns, rows, ids, indexes and id sequence. Other tables point at it (campaign and broadcast
-- recipients), and dropping a table they point at would run their ON DELETE actions, so this is
-- SQLite's documented rebuild: foreign keys off (only possible outside a transaction, hence
-- `no-transaction` above), the rebuild in one transaction of its own, foreign keys on again. Run a
-- second time (a crash after the commit, before the migration was recorded) it rebuilds the table
-- again, to the same result.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE outbound_messages_0029 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id       BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    idempotency_key TEXT   NOT NULL,
    recipient       TEXT   NOT NULL,
    kind            TEXT   NOT NULL CHECK (kind IN ('text', 'image', 'video', 'audio', 'document', 'sticker', 'contact', 'location', 'link', 'poll')),
    body            TEXT,
    image           BLOB,
    status          TEXT   NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed')),
    reason          TEXT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    send_token      BIGINT,
    wa_message_id   TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    sent_at         BIGINT,
    replied_at      BIGINT,
    not_before      BIGINT,
    waiting_reason  TEXT,
    next_attempt_at BIGINT,
    media_mime      TEXT,
    file_name       TEXT,
    payload         TEXT,
    forwarded       BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (user_id, idempotency_key)
);
INSERT INTO outbound_messages_0029 (id, user_id, device_id, idempotency_key, recipient, kind, body, image, status,
        reason, attempts, send_token, wa_message_id, created_at, updated_at, sent_at, replied_at, not_before,
        waiting_reason, next_attempt_at)
    SELECT id, user_id, device_id, idempotency_key, recipient, kind, body, image, status, reason, attempts,
        send_token, wa_message_id, created_at, updated_at, sent_at, replied_at, not_before, waiting_reason,
        next_attempt_at FROM outbound_messages;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'outbound_messages_0029', seq FROM sqlite_sequence WHERE name = 'outbound_messages'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbound_messages_0029');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'outbound_messages'))
    WHERE name = 'outbound_messages_0029' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbound_messages');
DROP TABLE outbound_messages;
ALTER TABLE outbound_messages_0029 RENAME TO outbound_messages;
CREATE INDEX outbound_messages_queued ON outbound_messages (device_id, id) WHERE status = 'queued';
CREATE INDEX outbound_messages_sending ON outbound_messages (device_id) WHERE status = 'sending';
CREATE INDEX outbound_messages_wa_id ON outbound_messages (device_id, wa_message_id);
CREATE INDEX outbound_messages_updated ON outbound_messages (updated_at);
CREATE INDEX outbound_messages_chat ON outbound_messages (device_id, recipient, sent_at);
CREATE INDEX outbound_messages_day ON outbound_messages (device_id, (COALESCE(sent_at, created_at)));

-- Questions the API leaves for a device's holder now include `push_name`, the account's new
-- display name (`POST /user/pushname`), and `presence`, the account shown online or offline
-- (`POST /send/presence`): `device_requests` is rebuilt with the wider check as in 0027, its ids,
-- rows, index and sequence carried over.
CREATE TABLE device_requests_0029 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  INTEGER    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL CHECK (kind IN ('check_numbers', 'mark_read', 'chat_presence', 'react', 'revoke', 'edit', 'user_info', 'privacy', 'profile_picture', 'set_profile_picture', 'business_profile', 'push_name', 'presence')),
    payload    TEXT   NOT NULL,
    state      TEXT   NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    result     TEXT,
    created_at BIGINT NOT NULL,
    done_at    BIGINT
);
INSERT INTO device_requests_0029 (id, device_id, kind, payload, state, result, created_at, done_at)
    SELECT id, device_id, kind, payload, state, result, created_at, done_at FROM device_requests;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'device_requests_0029', seq FROM sqlite_sequence WHERE name = 'device_requests'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'device_requests_0029');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'device_requests'))
    WHERE name = 'device_requests_0029' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'device_requests');
DROP TABLE device_requests;
ALTER TABLE device_requests_0029 RENAME TO device_requests;
CREATE INDEX device_requests_pending ON device_requests (id) WHERE state = 'pending';
COMMIT;
PRAGMA foreign_keys = ON;
