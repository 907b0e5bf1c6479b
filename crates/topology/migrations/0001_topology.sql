-- The topology manager's schema.

-- Provisioning state, written by `init`: the schema version and the manager's own member id
-- (bound to its key file's key).
CREATE TABLE topology_meta (
    id             int PRIMARY KEY CHECK (id = 1),
    schema_version int NOT NULL,
    member_id      text NOT NULL,
    public_key     bytea NOT NULL
);

-- The topology as of the last applied transaction (the JSON of ordo-protocol's
-- TopologyState) and the subscription cursor: the last sequencing timestamp processed.
-- Both change in the same transaction as the topology_transactions row they reflect.
CREATE TABLE topology_state (
    id     int PRIMARY KEY CHECK (id = 1),
    serial bigint NOT NULL,
    state  jsonb NOT NULL,
    cursor bigint NOT NULL
);

-- Every topology transaction, from the moment it is proposed. A row with
-- sequenced_at NULL is a proposal not yet seen in the manager's own subscription: it is
-- (re)sent, in serial order, with its message_id (idempotent at the sequencer).
CREATE TABLE topology_transactions (
    serial       bigint PRIMARY KEY CHECK (serial > 0),
    kind         text NOT NULL,
    change       jsonb NOT NULL,
    message_id   text NOT NULL UNIQUE,
    proposed_at  bigint NOT NULL,
    sequenced_at bigint
);
CREATE INDEX topology_transactions_pending ON topology_transactions (serial)
    WHERE sequenced_at IS NULL;

-- Our transactions that were sequenced but refused by the fold (every member skipped them).
-- Their serial is proposed again with a fresh message id (`topology-<serial>-<n>`), since
-- the sequencer would take the old one for a resend.
CREATE TABLE topology_refused (
    serial       bigint NOT NULL,
    message_id   text PRIMARY KEY,
    sequenced_at bigint NOT NULL,
    reason       text NOT NULL
);
