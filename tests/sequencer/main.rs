//! End-to-end tests with real `ordo` processes on loopback and one throwaway Postgres: the
//! sequencer under crashes and failover, `ordo up`, ledger nodes killed and restarted, and a
//! sequencer frozen under load.

mod common;
mod failover;
#[allow(dead_code)] // shared with the HA suite, which uses other parts
#[path = "../ha/harness.rs"]
mod harness;
mod ledger_kill;
mod order_under_crash;
mod paused;
mod tls;
mod up;

/// One `ordo up` network at a time: each is about fifteen processes on a small machine, and
/// the frozen-sequencer test measures stalls that a second network would distort.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
