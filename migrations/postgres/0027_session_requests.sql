-- Questions the API leaves for a device's holder now include `mark_read`, a read receipt for
-- messages the device received (`POST /message/{message_id}/read`), `chat_presence`, a typing
-- indicator (`POST /send/chat-presence`), `react`, `revoke` and `edit`, a reaction, a deletion for
-- everyone and an edit (`POST /message/{message_id}/reaction`, `…/revoke`, `…/update`), `user_info`,
-- `profile_picture` and `business_profile`, a number's profile, picture and business profile
-- (`GET /user/info`, `GET /user/avatar`, `GET /user/business-profile`),
-- `set_profile_picture`, the account's new picture (`POST /user/avatar`), and `privacy`, the
-- account's privacy settings (`GET /user/my/privacy`). Only widens what is accepted: processes of
-- the previous release never write the new kinds.
ALTER TABLE device_requests DROP CONSTRAINT device_requests_kind_check;
ALTER TABLE device_requests ADD CONSTRAINT device_requests_kind_check
    CHECK (kind IN ('check_numbers', 'mark_read', 'chat_presence', 'react', 'revoke', 'edit', 'user_info', 'privacy', 'profile_picture', 'set_profile_picture', 'business_profile'));
