-- Messages WhatsApp pushes when a device is linked (history sync): the recent personal chats
-- from before wafleet held the device. They are stored like any message, marked so that they
-- count as neither unread nor replies to sends.
ALTER TABLE messages ADD COLUMN history BOOLEAN NOT NULL DEFAULT FALSE;
