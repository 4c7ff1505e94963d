-- The account's own settings of a personal chat, as WhatsApp keeps them for all its devices:
-- `archived` (hidden from the main chat list, `POST /chat/{chat_jid}/archive`), `pinned` (kept at
-- the top, `POST /chat/{chat_jid}/pin`), and `disappearing_secs`, the chat's disappearing-messages
-- timer (0: off, `POST /chat/{chat_jid}/disappearing`). Each is recorded once WhatsApp took it.
ALTER TABLE chats ADD COLUMN archived BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE chats ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE chats ADD COLUMN disappearing_secs BIGINT NOT NULL DEFAULT 0;

-- Questions the API leaves for a device's holder now include `chat_setting` (archive, pin, star
-- or delete for me: the account's synced app state), `disappearing` (a chat's timer) and
-- `reject_call` (declining a call that rings, `POST /call/reject`):
-- `device_requests` is rebuilt with the wider check as in 0027, its ids, rows, index and sequence
-- carried over.
CREATE TABLE device_requests_0030 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  INTEGER    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL CHECK (kind IN ('check_numbers', 'mark_read', 'chat_presence', 'react', 'revoke', 'edit', 'user_info', 'privacy', 'profile_picture', 'set_profile_picture', 'business_profile', 'push_name', 'presence', 'chat_setting', 'disappearing', 'reject_call')),
    payload    TEXT   NOT NULL,
    state      TEXT   NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    result     TEXT,
    created_at BIGINT NOT NULL,
    done_at    BIGINT
);
INSERT INTO device_requests_0030 (id, device_id, kind, payload, state, result, created_at, done_at)
    SELECT id, device_id, kind, payload, state, result, created_at, done_at FROM device_requests;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'device_requests_0030', seq FROM sqlite_sequence WHERE name = 'device_requests'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'device_requests_0030');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'device_requests'))
    WHERE name = 'device_requests_0030' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'device_requests');
DROP TABLE device_requests;
ALTER TABLE device_requests_0030 RENAME TO device_requests;
CREATE INDEX device_requests_pending ON device_requests (id) WHERE state = 'pending';
