-- WhatsApp hides many numbers behind linked identities (`…@lid`). wafleet keeps one chat per
-- person, under the number: a LID's number, once WhatsApp tells a device, is kept here, messages
-- from the LID are stored under the number from then on, and the LID's earlier chat is merged in.

-- What each device learned: LID → the phone-number JID of the same person. Per device, since
-- that is where WhatsApp said so (and every query filters by the owner).
CREATE TABLE lid_mappings (
    device_id  BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    lid        TEXT   NOT NULL,              -- `123456789@lid`
    phone_jid  TEXT   NOT NULL,              -- `60123456789@s.whatsapp.net`
    learned_at BIGINT NOT NULL,
    PRIMARY KEY (device_id, lid)
);

-- The LID of a chat kept under the number, when known (shown beside the number, and sent in
-- webhooks as `chat_lid`).
ALTER TABLE chats ADD COLUMN lid TEXT;
