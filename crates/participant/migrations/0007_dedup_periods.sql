-- Each command's deduplication period (a duration in µs, or the completion offset it
-- gave), kept with the command and echoed in its completion. 0/0: written before this.
ALTER TABLE p_commands
    ADD COLUMN dedup_duration_us bigint NOT NULL DEFAULT 0,
    ADD COLUMN dedup_offset bigint NOT NULL DEFAULT 0;
ALTER TABLE p_completions
    ADD COLUMN dedup_duration_us bigint NOT NULL DEFAULT 0,
    ADD COLUMN dedup_offset bigint NOT NULL DEFAULT 0;
