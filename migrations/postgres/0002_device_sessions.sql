-- The session side of a device: what its owner asked for, what the worker holding it reports, and
-- the credentials a link needs to reconnect from any worker.

-- One row per device that has ever been asked to link. The API writes `desired` (and
-- `pair_phone`); the worker holding the device reconciles the live session toward it and writes
-- the pairing material and errors back, so the API stays stateless.
CREATE TABLE device_sessions (
    device_id     BIGINT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    desired       TEXT   NOT NULL DEFAULT 'unlinked'
                  CHECK (desired IN ('unlinked', 'pair_qr', 'pair_code', 'connected')),
    pair_phone    TEXT,            -- E.164, for pairing by code
    qr_code       TEXT,            -- the QR payload to show while pairing by QR
    qr_expires_at BIGINT,
    pair_code     TEXT,            -- the code to type on the phone while pairing by code
    last_error    TEXT,            -- why the last attempt failed, for people
    generation    BIGINT NOT NULL DEFAULT 0, -- bumped on every request, so workers see repeats
    updated_at    BIGINT NOT NULL
);

-- Credentials of links that keep them as one opaque value (the simulator's client). The wa-rs
-- adapter keeps its Signal and app state in tables of its own.
CREATE TABLE link_credentials (
    device_id  BIGINT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    link       TEXT   NOT NULL,    -- which link wrote it, e.g. 'sim'
    data       TEXT  NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Questions for the worker that holds a device's session (e.g. "which of these numbers are on
-- WhatsApp?"): the API inserts a row and waits for the answer; the holder answers it.
CREATE TABLE device_requests (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id  BIGINT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL CHECK (kind IN ('check_numbers')),
    payload    TEXT   NOT NULL,  -- JSON
    state      TEXT   NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    result     TEXT,             -- JSON answer, or the reason it failed
    created_at BIGINT NOT NULL,
    done_at    BIGINT
);
CREATE INDEX device_requests_pending ON device_requests (id) WHERE state = 'pending';

-- Personal chats of a device (never groups, broadcasts, status or newsletters).
CREATE TABLE chats (
    device_id            BIGINT    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    jid                  TEXT   NOT NULL,
    name                 TEXT,            -- the contact's push name, when known
    last_message_at      BIGINT NOT NULL,
    last_message_preview TEXT,
    unread_count         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, jid)
);
CREATE INDEX chats_recent ON chats (device_id, last_message_at DESC);

-- Messages of personal chats. The key deduplicates replays of the same message.
CREATE TABLE messages (
    device_id   BIGINT     NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    id          TEXT    NOT NULL,         -- WhatsApp's message id
    chat_jid    TEXT    NOT NULL,
    sender_jid  TEXT    NOT NULL,
    from_me     BOOLEAN NOT NULL,
    kind        TEXT    NOT NULL,         -- text | image | video | audio | document | sticker | other
    body        TEXT,                     -- text or caption
    sent_at     BIGINT  NOT NULL,
    status      TEXT,                     -- for our own messages: sent | delivered | read
    received_at BIGINT  NOT NULL,
    PRIMARY KEY (device_id, id)
);
CREATE INDEX messages_chat_time ON messages (device_id, chat_jid, sent_at DESC);
