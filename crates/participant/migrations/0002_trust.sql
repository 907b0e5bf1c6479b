-- What a participant needs to trust no other member (DESIGN §4, Trust).

-- The outcome of this participant's own checks of a pending request: NULL when they
-- passed (and the inputs it consumes are locked), else the rejection reason. A request
-- that failed them is never applied here, whatever verdict arrives.
ALTER TABLE p_pending ADD COLUMN rejection text;

-- Contracts this shard stored and that were archived since: a request creating one of
-- these ids again (a replay) is rejected, so that an archived contract never comes back.
CREATE TABLE p_archived (
    contract_id text PRIMARY KEY,
    archived_at bigint NOT NULL
);
