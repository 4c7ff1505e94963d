-- Names the account's phone has saved for its contacts (its address book, synced by WhatsApp to
-- linked devices as app state). Kept apart from chats: the address book names people who have
-- no chat yet, and a chat shows the saved name when there is one, else the contact's push name.
CREATE TABLE contact_names (
    device_id  BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    jid        TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, jid)
);
