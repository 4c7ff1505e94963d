-- Sends may carry any file WhatsApp sends, not only pictures: `kind` names it (`video`, `audio`,
-- `document`, `sticker` beside `text` and `image`), `image` holds the file of any media send (the
-- column kept its first name), `media_mime` its MIME type as WhatsApp is told (NULL for the
-- pictures recorded before: JPEG) and `file_name` the name a document is shown with.
-- The wider check is added NOT VALID and validated apart, so existing rows are checked without
-- holding the table's write lock for the scan.
ALTER TABLE outbound_messages DROP CONSTRAINT outbound_messages_kind_check;
ALTER TABLE outbound_messages ADD CONSTRAINT outbound_messages_kind_check
    CHECK (kind IN ('text', 'image', 'video', 'audio', 'document', 'sticker')) NOT VALID;
ALTER TABLE outbound_messages VALIDATE CONSTRAINT outbound_messages_kind_check;
ALTER TABLE outbound_messages ADD COLUMN media_mime TEXT;
ALTER TABLE outbound_messages ADD COLUMN file_name TEXT;
