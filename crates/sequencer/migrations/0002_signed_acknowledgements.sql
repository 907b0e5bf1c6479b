-- Acknowledgements are signed by the member's registered key. The signature of the latest
-- one is kept with it, so that an operator can prove which member authorized the pruning
-- bound: it signs "ordo-sequencer-ack-v1" || member_id || acknowledged (i64 big endian).
-- NULL until the member's first signed acknowledgement (schema 1 stored none).
ALTER TABLE members ADD COLUMN acknowledged_signature bytea;
