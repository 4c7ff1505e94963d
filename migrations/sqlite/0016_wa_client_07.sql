-- The WhatsApp client's state as its current release (whatsapp-rust 0.7) keeps it; see 0003 for the
-- conventions (keyed by device first, wa times in Unix seconds).

-- Which devices of a group hold our sender key (`has_key`), replacing the previous client's
-- wa_skdm_recipients and wa_sender_key_forget. wafleet never sends to groups, so nothing is carried
-- over; those two tables stay (unused) so that binaries of the release before keep running against
-- this schema, and go in a later release.
CREATE TABLE wa_sender_key_devices (
    device_id  INTEGER  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    group_jid  TEXT    NOT NULL,
    device_jid TEXT    NOT NULL,
    has_key    BOOLEAN NOT NULL,
    PRIMARY KEY (device_id, group_jid, device_jid)
);
-- A device's rows are dropped across all groups when its identity changes.
CREATE INDEX wa_sender_key_devices_jid ON wa_sender_key_devices (device_id, device_jid);

-- Messages this device sent, kept for a few hours so a recipient's retry receipt can be answered
-- with the same message re-encrypted; taken (read and deleted) when used.
CREATE TABLE wa_sent_messages (
    device_id  INTEGER  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    chat_jid   TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    payload    BLOB   NOT NULL,
    created_at BIGINT  NOT NULL,
    PRIMARY KEY (device_id, chat_jid, message_id)
);
CREATE INDEX wa_sent_messages_age ON wa_sent_messages (device_id, created_at);

-- Per-message secrets that decrypt add-ons to a message (poll votes, reactions, edits). Sealed at
-- rest like the other keys. `expires_at` 0 means never.
CREATE TABLE wa_msg_secrets (
    device_id  INTEGER  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    chat_jid   TEXT    NOT NULL,
    sender_jid TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    secret     BLOB   NOT NULL,
    expires_at BIGINT  NOT NULL,
    message_ts BIGINT  NOT NULL,
    PRIMARY KEY (device_id, chat_jid, sender_jid, message_id)
);
CREATE INDEX wa_msg_secrets_expiry ON wa_msg_secrets (device_id, expires_at);

-- Decrypted incoming messages waiting for wafleet to store them: written before the client's
-- Signal state moves on, deleted once wafleet's batch holding the message has committed and
-- WhatsApp has been told. After a crash in between, WhatsApp delivers the message again and the
-- client replays it from here (its ratchet has already moved), from whichever worker holds the
-- device then.
CREATE TABLE wa_pending_inbound (
    device_id   INTEGER  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    chat_jid    TEXT    NOT NULL,
    sender_jid  TEXT    NOT NULL,
    message_id  TEXT    NOT NULL,
    message     BLOB   NOT NULL,
    inserted_at BIGINT  NOT NULL,
    PRIMARY KEY (device_id, chat_jid, sender_jid, message_id)
);
CREATE INDEX wa_pending_inbound_age ON wa_pending_inbound (device_id, inserted_at);

-- The ADV raw id of a user's device list: when it changes, the user's identity changed.
ALTER TABLE wa_device_lists ADD COLUMN raw_id BIGINT;
