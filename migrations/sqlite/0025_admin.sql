-- What administrators do to accounts. A disabled account (`disabled_at` set) cannot log in, its
-- sessions end and its API tokens stop working, and nothing more is sent from its devices; it
-- is kept, with everything stored for it, until enabled again or deleted. A temporary password
-- set by an administrator must be changed at the next login (`must_change_password`).
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
ALTER TABLE users ADD COLUMN must_change_password BOOLEAN NOT NULL DEFAULT FALSE;

-- Every administrator action, kept when the administrator or the account acted on is deleted
-- (so no foreign keys): who, what, to which account, and when.
CREATE TABLE admin_actions (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           BIGINT NOT NULL,
    actor_id     BIGINT NOT NULL,
    actor_email  TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    target_id    BIGINT,
    target_email TEXT,
    detail       TEXT   NOT NULL DEFAULT ''
);
