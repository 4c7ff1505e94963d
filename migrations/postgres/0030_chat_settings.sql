-- The account's own settings of a personal chat, as WhatsApp keeps them for all its devices:
-- `archived` (hidden from the main chat list, `POST /chat/{chat_jid}/archive`), `pinned` (kept at
-- the top, `POST /chat/{chat_jid}/pin`), and `disappearing_secs`, the chat's disappearing-messages
-- timer (0: off, `POST /chat/{chat_jid}/disappearing`). Each is recorded once WhatsApp took it.
ALTER TABLE chats ADD COLUMN archived BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE chats ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE chats ADD COLUMN disappearing_secs BIGINT NOT NULL DEFAULT 0;

-- Questions the API leaves for a device's holder now include `chat_setting` (archive, pin, star
-- or delete for me: the account's synced app state), `disappearing` (a chat's timer) and
-- `reject_call` (declining a call that rings, `POST /call/reject`).
ALTER TABLE device_requests DROP CONSTRAINT device_requests_kind_check;
ALTER TABLE device_requests ADD CONSTRAINT device_requests_kind_check
    CHECK (kind IN ('check_numbers', 'mark_read', 'chat_presence', 'react', 'revoke', 'edit', 'user_info', 'privacy', 'profile_picture', 'set_profile_picture', 'business_profile', 'push_name', 'presence', 'chat_setting', 'disappearing', 'reject_call')) NOT VALID;
ALTER TABLE device_requests VALIDATE CONSTRAINT device_requests_kind_check;
