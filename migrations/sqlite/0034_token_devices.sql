-- An API token may be limited to some of its owner's devices: their ids, comma-separated.
-- Empty: every device. A device deleted later matches nothing; the token never widens.
ALTER TABLE api_tokens ADD COLUMN devices TEXT NOT NULL DEFAULT '';
