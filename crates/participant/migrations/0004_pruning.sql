-- Pruning (docs/operations.md "Pruning"): how far the update log and the completion log
-- were pruned. Reads from before these offsets fail with PARTICIPANT_PRUNED_DATA_ACCESSED.
-- Written before the rows are deleted, so that a reader never takes a gap for the end.
ALTER TABLE p_state
    ADD COLUMN pruned_up_to bigint NOT NULL DEFAULT 0,
    ADD COLUMN completions_pruned_up_to bigint NOT NULL DEFAULT 0;
