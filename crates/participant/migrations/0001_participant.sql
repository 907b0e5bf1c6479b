-- The schema of one participant shard. Everything that matters is here, never only in
-- memory: the sequencer cursor, topology, the active contracts and their locks, pending
-- requests, in-flight commands, the update and completion logs and the outbox.

-- Who this database belongs to.
CREATE TABLE p_meta (
    id             int PRIMARY KEY CHECK (id = 1),
    schema_version int NOT NULL,
    member_id      text NOT NULL,
    public_key     bytea NOT NULL
);

-- The processing position, written in the same transaction as every effect of an event:
-- the last processed sequencing timestamp, the ledger end (last update offset), the last
-- completion offset, and the topology as of the cursor (JSON of TopologyState).
CREATE TABLE p_state (
    id             int PRIMARY KEY CHECK (id = 1),
    cursor_ts      bigint NOT NULL DEFAULT 0,
    ledger_end     bigint NOT NULL DEFAULT 0,
    completion_end bigint NOT NULL DEFAULT 0,
    topology       bytea NOT NULL
);

-- The active contracts whose stakeholders include a party hosted here. `locked_by` is the
-- request (sequencing timestamp) that will archive it if approved.
CREATE TABLE p_contracts (
    contract_id    text PRIMARY KEY,
    template_id    text NOT NULL,
    stakeholders   text[] NOT NULL,
    contract       bytea NOT NULL,
    created_offset bigint NOT NULL,
    locked_by      bigint
);
CREATE INDEX p_contracts_stakeholders ON p_contracts USING gin (stakeholders);
CREATE INDEX p_contracts_locked_by ON p_contracts (locked_by) WHERE locked_by IS NOT NULL;

-- Confirmation requests this shard saw and awaits the verdict of.
CREATE TABLE p_pending (
    request_ts bigint PRIMARY KEY,
    root_hash  text NOT NULL,
    submitter  text NOT NULL,
    view       bytea NOT NULL,
    -- After this sequencing time the request is given up (Timeout) without a verdict.
    deadline   bigint NOT NULL
);
CREATE INDEX p_pending_deadline ON p_pending (deadline);

-- The update log: committed transactions projected to the parties hosted here.
CREATE TABLE p_updates (
    ledger_offset bigint PRIMARY KEY,
    update_id     text NOT NULL UNIQUE,
    tx            bytea NOT NULL
);

-- Commands submitted here, for deduplication and completion. `act_as` is sorted.
CREATE TABLE p_commands (
    application_id      text NOT NULL,
    command_id          text NOT NULL,
    act_as              text[] NOT NULL,
    submission_id       text NOT NULL,
    state               text NOT NULL CHECK (state IN ('in_flight', 'succeeded', 'rejected')),
    nonce               bytea NOT NULL,
    message_id          text NOT NULL UNIQUE,
    root_hash           text NOT NULL,
    max_sequencing_time bigint NOT NULL,
    request_ts          bigint,
    submitted_at        bigint NOT NULL,
    completed_at        bigint,
    completion_offset   bigint,
    PRIMARY KEY (application_id, command_id, act_as)
);
CREATE INDEX p_commands_in_flight ON p_commands (max_sequencing_time) WHERE state = 'in_flight';
CREATE INDEX p_commands_request ON p_commands (request_ts) WHERE request_ts IS NOT NULL;

-- The completion log (gapless offsets from 1).
CREATE TABLE p_completions (
    completion_offset bigint PRIMARY KEY,
    application_id    text NOT NULL,
    command_id        text NOT NULL,
    submission_id     text NOT NULL,
    act_as            text[] NOT NULL,
    status_code       int NOT NULL,
    status_message    text NOT NULL,
    update_id         text NOT NULL,
    ledger_offset     bigint NOT NULL
);
CREATE INDEX p_completions_app ON p_completions (application_id, completion_offset);

-- Messages to send through the sequencer, written with the state change that caused them
-- and sent with their deterministic message id (idempotent) until sequenced.
CREATE TABLE p_outbox (
    message_id          text PRIMARY KEY,
    submission          bytea NOT NULL,
    max_sequencing_time bigint NOT NULL,
    -- Set for a command's confirmation request: on a definite refusal the command is
    -- completed as rejected.
    is_command          boolean NOT NULL
);
