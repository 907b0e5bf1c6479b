-- The stakeholders' index takes each new contract at once instead of into GIN's pending
-- list: every active-contracts query scanned the whole pending list, which the steady
-- stream of created contracts kept full between vacuums (1.3 ms of the query's 1.4 ms at
-- 64 clients; docs/performance.md).
ALTER INDEX p_contracts_stakeholders SET (fastupdate = off);
SELECT gin_clean_pending_list('p_contracts_stakeholders'::regclass);
