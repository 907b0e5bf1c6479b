-- Contract keys (docs/ledger.md "Contract keys"): each stored contract's key hash, by
-- which a submission looks a key up and the key's maintainers' shard checks that at most
-- one active contract has it; and the keys in-flight requests are assigning (locked from
-- the request's check until its verdict, like `p_contracts.locked_by`).
ALTER TABLE p_contracts ADD COLUMN key_hash text;
CREATE INDEX p_contracts_key ON p_contracts (key_hash) WHERE key_hash IS NOT NULL;
CREATE TABLE p_key_locks (
    key_hash   text PRIMARY KEY,
    request_ts bigint NOT NULL
);
CREATE INDEX p_key_locks_request ON p_key_locks (request_ts);
