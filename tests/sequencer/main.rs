//! End-to-end tests with real `ordo` processes on loopback and one throwaway Postgres: the
//! sequencer under crashes and failover, `ordo up`, and ledger nodes killed and restarted.

mod common;
mod failover;
mod ledger_kill;
mod order_under_crash;
mod up;
