-- The verdicts a batch decides are sent together, as the envelopes of one submission per
-- group (at most 64 KiB): `submission` is that submission's message id, the same for
-- every row of the group; NULL for a row sent alone under its own message_id (rows
-- written before this version).
ALTER TABLE outbox ADD COLUMN submission text;
CREATE INDEX outbox_submission ON outbox ((coalesce(submission, message_id)));
