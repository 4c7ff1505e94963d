-- The wa-rs client's own state for each device: the device's keys and identity, its Signal
-- sessions and keys, WhatsApp app-state sync data and the protocol caches wa-rs persists.
-- Every table is keyed by `device_id` first, so one device's state is invisible to another and a
-- session can be picked up by any worker, after any restart. Deleting the device deletes it all.
--
-- Binary values are opaque records serialised by wa-rs (protobuf or its own format); we never
-- look inside them. Times in these tables are wa-rs's own: Unix *seconds*, not our milliseconds.
-- Numeric ids wa-rs hands us as u32 are kept in BIGINT so that every u32 fits.

-- The device itself: one row once wa-rs has created it; `data` is the wa-rs `Device` (its keys,
-- account and push name) as one format byte followed by its postcard encoding, and stays NULL
-- until the first save (wa-rs creates the row, then saves it).
CREATE TABLE wa_devices (
    device_id  BIGINT  PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    data       BYTEA,
    updated_at BIGINT NOT NULL     -- our milliseconds
);

-- Signal identity keys of remote addresses (`user.device` style addresses, as wa-rs names them).
CREATE TABLE wa_identities (
    device_id BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    address   TEXT    NOT NULL,
    key       BYTEA   NOT NULL,
    PRIMARY KEY (device_id, address)
);

-- Signal sessions (serialised session records).
CREATE TABLE wa_sessions (
    device_id BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    address   TEXT    NOT NULL,
    record    BYTEA   NOT NULL,
    PRIMARY KEY (device_id, address)
);

-- One-time pre-keys; `uploaded` says whether the server already has it.
CREATE TABLE wa_prekeys (
    device_id BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key_id    BIGINT  NOT NULL,
    record    BYTEA   NOT NULL,
    uploaded  BOOLEAN NOT NULL,
    PRIMARY KEY (device_id, key_id)
);

CREATE TABLE wa_signed_prekeys (
    device_id BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key_id    BIGINT  NOT NULL,
    record    BYTEA   NOT NULL,
    PRIMARY KEY (device_id, key_id)
);

-- Group sender keys; the address combines group and sender.
CREATE TABLE wa_sender_keys (
    device_id BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    address   TEXT    NOT NULL,
    record    BYTEA   NOT NULL,
    PRIMARY KEY (device_id, address)
);

-- App-state sync keys, by their binary key id.
CREATE TABLE wa_app_state_keys (
    device_id   BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    key_id      BYTEA   NOT NULL,
    key_data    BYTEA   NOT NULL,
    fingerprint BYTEA   NOT NULL,
    timestamp   BIGINT  NOT NULL,
    PRIMARY KEY (device_id, key_id)
);

-- App-state version (LT-hash state) per collection, as JSON.
CREATE TABLE wa_app_state_versions (
    device_id BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name      TEXT    NOT NULL,
    state     BYTEA   NOT NULL,
    PRIMARY KEY (device_id, name)
);

-- Value MACs of app-state mutations, by collection and index MAC; `version` is the collection
-- version that wrote it.
CREATE TABLE wa_app_state_mutation_macs (
    device_id BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name      TEXT    NOT NULL,
    index_mac BYTEA   NOT NULL,
    version   BIGINT  NOT NULL,
    value_mac BYTEA   NOT NULL,
    PRIMARY KEY (device_id, name, index_mac)
);

-- Which devices already hold our sender key for a group (sender-key distribution messages).
CREATE TABLE wa_skdm_recipients (
    device_id  BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    group_jid  TEXT    NOT NULL,
    device_jid TEXT    NOT NULL,
    PRIMARY KEY (device_id, group_jid, device_jid)
);

-- Linked-identity (LID) to phone-number mappings learned by the client.
CREATE TABLE wa_lid_mappings (
    device_id       BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    lid             TEXT    NOT NULL,
    phone_number    TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    learning_source TEXT    NOT NULL,
    PRIMARY KEY (device_id, lid)
);
-- Lookups by phone want the most recently updated LID.
CREATE INDEX wa_lid_mappings_phone ON wa_lid_mappings (device_id, phone_number, updated_at);

-- Base keys remembered while retrying a message, to detect session collisions.
CREATE TABLE wa_base_keys (
    device_id  BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    address    TEXT    NOT NULL,
    message_id TEXT    NOT NULL,
    base_key   BYTEA   NOT NULL,
    PRIMARY KEY (device_id, address, message_id)
);

-- Known devices of each user (from usync); `devices` is a JSON array of {device_id, key_index}.
CREATE TABLE wa_device_lists (
    device_id BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    user_jid  TEXT    NOT NULL,
    devices   TEXT    NOT NULL,
    timestamp BIGINT  NOT NULL,
    phash     TEXT,
    PRIMARY KEY (device_id, user_jid)
);

-- Group participants whose sender key must be sent again; read once, then deleted.
CREATE TABLE wa_sender_key_forget (
    device_id   BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    group_jid   TEXT    NOT NULL,
    participant TEXT    NOT NULL,
    PRIMARY KEY (device_id, group_jid, participant)
);

-- Trusted-contact privacy tokens, by JID.
CREATE TABLE wa_tc_tokens (
    device_id        BIGINT  NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    jid              TEXT    NOT NULL,
    token            BYTEA   NOT NULL,
    token_timestamp  BIGINT  NOT NULL,
    sender_timestamp BIGINT,
    PRIMARY KEY (device_id, jid)
);
-- Expiry sweeps select by age.
CREATE INDEX wa_tc_tokens_age ON wa_tc_tokens (device_id, token_timestamp);
