-- Live chat views ask "what did this device store since T?" once a second per open view. Messages
-- are keyed by (device_id, id), so without this index that question reads every message the
-- device ever stored.
CREATE INDEX messages_received ON messages (device_id, received_at);
