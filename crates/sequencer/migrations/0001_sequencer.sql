-- The sequencer's schema. Every node of a domain shares it.

-- Members of the domain. `idx` is the compact id used in events.recipients.
CREATE TABLE members (
    idx           serial PRIMARY KEY,
    member_id     text NOT NULL UNIQUE,
    public_key    bytea NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    registered_at bigint NOT NULL,
    acknowledged  bigint NOT NULL DEFAULT 0
);

-- The total order. `ts` is the sequencing timestamp (microseconds), assigned while holding
-- the seq_head row lock so that commit order equals timestamp order.
CREATE TABLE events (
    ts                  bigint PRIMARY KEY,
    sender              int NOT NULL,
    message_id          text NOT NULL,
    recipients          int[] NOT NULL,
    broadcast           boolean NOT NULL,
    payload             bytea NOT NULL,
    max_sequencing_time bigint NOT NULL,
    UNIQUE (sender, message_id)
);
CREATE INDEX events_recipients ON events USING gin (recipients);

-- The single serialisation point of the domain: the last assigned timestamp.
CREATE TABLE seq_head (
    id int PRIMARY KEY CHECK (id = 1),
    ts bigint NOT NULL
);
INSERT INTO seq_head (id, ts) VALUES (1, 0);

-- Provisioning state, written by `init`: schema version, token secret, pruning bound.
CREATE TABLE seq_meta (
    id             int PRIMARY KEY CHECK (id = 1),
    schema_version int NOT NULL,
    hmac_secret    bytea NOT NULL,
    lower_bound    bigint NOT NULL DEFAULT 0
);
