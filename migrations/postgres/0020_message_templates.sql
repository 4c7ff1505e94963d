-- Message templates: texts a user keeps to start campaigns from (and, later, sequences and
-- broadcasts). The text follows the syntax of variations (choices such as `{Hi|Hello}` and
-- variables such as `{first_name}`); it is checked when saved, as a campaign's message is.
-- A name is unique per user so that a template can be picked by name on the dashboard.
CREATE TABLE message_templates (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT  NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    message    TEXT    NOT NULL,                    -- text, or the image's caption
    image      BYTEA,                               -- JPEG, already compressed
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL,
    UNIQUE (user_id, name)
);
