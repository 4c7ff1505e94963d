-- Questions the API leaves for a device's holder now include `mark_read`, a read receipt for
-- messages the device received (`POST /message/{message_id}/read`), `chat_presence`, a typing
-- indicator (`POST /send/chat-presence`), `react`, `revoke` and `edit`, a reaction, a deletion for
-- everyone and an edit (`POST /message/{message_id}/reaction`, `…/revoke`, `…/update`), `user_info`,
-- `profile_picture` and `business_profile`, a number's profile, picture and business profile
-- (`GET /user/info`, `GET /user/avatar`, `GET /user/business-profile`),
-- `set_profile_picture`, the account's new picture (`POST /user/avatar`), and `privacy`, the
-- account's privacy settings (`GET /user/my/privacy`). SQLite cannot change a CHECK in place, so
-- the table is rebuilt with the wider one: the same columns, rows, ids, index, and its id sequence
-- carried over so that no id is ever used twice.
CREATE TABLE device_requests_0027 (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id  INTEGER    NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL CHECK (kind IN ('check_numbers', 'mark_read', 'chat_presence', 'react', 'revoke', 'edit', 'user_info', 'privacy', 'profile_picture', 'set_profile_picture', 'business_profile')),
    payload    TEXT   NOT NULL,  -- JSON
    state      TEXT   NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    result     TEXT,             -- JSON answer, or the reason it failed
    created_at BIGINT NOT NULL,
    done_at    BIGINT
);
INSERT INTO device_requests_0027 (id, device_id, kind, payload, state, result, created_at, done_at)
    SELECT id, device_id, kind, payload, state, result, created_at, done_at FROM device_requests;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'device_requests_0027', seq FROM sqlite_sequence WHERE name = 'device_requests'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'device_requests_0027');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'device_requests'))
    WHERE name = 'device_requests_0027' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'device_requests');
DROP TABLE device_requests;
ALTER TABLE device_requests_0027 RENAME TO device_requests;
CREATE INDEX device_requests_pending ON device_requests (id) WHERE state = 'pending';
