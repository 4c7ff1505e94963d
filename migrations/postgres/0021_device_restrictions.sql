-- What WhatsApp lets each device's account do with new chats (people who have not written to
-- it), as last read from WhatsApp by the device's holder: a reach-out timelock until a time, and
-- the monthly new-chat cap when WhatsApp applies one. While either blocks, sends to new chats
-- wait (with the reason on each) and sends to existing chats go on.
CREATE TABLE device_restrictions (
    device_id         BIGINT PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    timelocked_until  BIGINT,            -- NULL: no timelock
    cap_used          BIGINT,            -- NULL: no cap applies
    cap_total         BIGINT,
    cap_resets_at     BIGINT,
    checked_at        BIGINT NOT NULL
);
