-- A pending request's answers are deleted with it by the batch that decides it, in one
-- set-based statement (store::write). The foreign key's triggers ran one query per
-- inserted answer and one cascade delete per decided request, under a plan that scanned
-- the table: 13 statements per cross-shard transfer, more than the mediator's own.
ALTER TABLE pending_answers DROP CONSTRAINT pending_answers_request_id_fkey;
