-- Each completion's error code (docs/errors.md), which clients decide on: the rejecting
-- participant's (`CONTRACT_NOT_ACTIVE`, `LOCKED_CONTRACTS`, …), passed on by the mediator.
-- Empty for a success, and for completions written before this version.
ALTER TABLE p_completions ADD COLUMN error_code text NOT NULL DEFAULT '';
