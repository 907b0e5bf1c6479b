-- The mediator's schema: everything it needs to resume after a restart or failover.

-- Provisioning marker: which member this database belongs to.
CREATE TABLE mediator_meta (
    id             int PRIMARY KEY CHECK (id = 1),
    schema_version int NOT NULL,
    member_id      text NOT NULL
);

-- The last sequencing timestamp processed; the subscription resumes after it.
CREATE TABLE mediator_cursor (
    id int PRIMARY KEY CHECK (id = 1),
    ts bigint NOT NULL
);
INSERT INTO mediator_cursor (id, ts) VALUES (1, 0);

-- The folded topology (ordo_protocol::TopologyState as JSON).
CREATE TABLE topology_state (
    id     int PRIMARY KEY CHECK (id = 1),
    serial bigint NOT NULL,
    state  text NOT NULL
);

-- Confirmation requests waiting for responses. request_id is the request's sequencing
-- timestamp.
CREATE TABLE pending_requests (
    request_id            bigint PRIMARY KEY,
    root_hash             text NOT NULL,
    submitter             text NOT NULL,
    informee_participants text[] NOT NULL,
    decision_time         bigint NOT NULL
);

-- One row per confirming party of a pending request: who hosts it, whether it approved.
CREATE TABLE pending_answers (
    request_id bigint NOT NULL REFERENCES pending_requests ON DELETE CASCADE,
    party      text NOT NULL,
    host       text NOT NULL,
    answered   boolean NOT NULL DEFAULT false,
    PRIMARY KEY (request_id, party)
);

-- Every decision, once. decided_at is the sequencing timestamp of the deciding event.
CREATE TABLE verdicts (
    request_id bigint PRIMARY KEY,
    root_hash  text NOT NULL,
    outcome    text NOT NULL CHECK (outcome IN ('approve', 'reject', 'timeout')),
    reasons    text[] NOT NULL DEFAULT '{}',
    decided_at bigint NOT NULL
);

-- Signed messages to send, written in the transaction that decided them and deleted once
-- sequenced. message_id is deterministic, so a resend after a crash is deduplicated by the
-- sequencer.
CREATE TABLE outbox (
    message_id text PRIMARY KEY,
    recipients text[] NOT NULL,
    payload    bytea NOT NULL,
    created_at bigint NOT NULL,
    attempts   int NOT NULL DEFAULT 0,
    last_error text,
    -- A sequencer refused it definitively; it is kept for the operator, not retried.
    refused    boolean NOT NULL DEFAULT false
);
