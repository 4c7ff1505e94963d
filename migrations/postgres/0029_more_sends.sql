-- Sends may carry any file WhatsApp sends, not only pictures, and messages with a structure of
-- their own: `kind` names it (`video`, `audio`, `document`, `sticker`; `contact`, `location`,
-- `link`, `poll`; beside `text` and `image`), `image` holds the file of any media send (the column
-- kept its first name), `media_mime` its MIME type as WhatsApp is told (NULL for the pictures
-- recorded before: JPEG), `file_name` the name a document is shown with, and `payload` the
-- structure of a contact card, location, link or poll as JSON (`body` keeps its readable text);
-- `forwarded` sends go out marked "Forwarded", as WhatsApp marks a message passed on.
-- The wider check is added NOT VALID and validated apart, so existing rows are checked without
-- holding the table's write lock for the scan.
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_kind_check;
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_kind_check
    CHECK (kind IN ('text', 'image', 'video', 'audio', 'document', 'sticker', 'contact', 'location', 'link', 'poll')) NOT VALID;
ALTER TABLE outbound_messages VALIDATE CONSTRAINT outbound_messages_kind_check;
ALTER TABLE outbound_messages ADD COLUMN media_mime TEXT;
ALTER TABLE outbound_messages ADD COLUMN file_name TEXT;
ALTER TABLE outbound_messages ADD COLUMN payload TEXT;
ALTER TABLE outbound_messages ADD COLUMN forwarded BOOLEAN NOT NULL DEFAULT FALSE;

-- Questions the API leaves for a device's holder now include `push_name`, the account's new
-- display name (`POST /user/pushname`), and `presence`, the account shown online or offline
-- (`POST /send/presence`).
ALTER TABLE device_requests DROP CONSTRAINT device_requests_kind_check;
ALTER TABLE device_requests ADD CONSTRAINT device_requests_kind_check
    CHECK (kind IN ('check_numbers', 'mark_read', 'chat_presence', 'react', 'revoke', 'edit', 'user_info', 'privacy', 'profile_picture', 'set_profile_picture', 'business_profile', 'push_name', 'presence')) NOT VALID;
ALTER TABLE device_requests VALIDATE CONSTRAINT device_requests_kind_check;
