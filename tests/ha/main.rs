//! High availability under load, with real processes started by `ordo up` (two replicas
//! of each participant shard, of the mediator and of the topology manager): the active
//! replica SIGKILLed, frozen (SIGSTOP) until it is replaced, cut off from its database
//! (`pg_terminate_backend`), and handed over gracefully (`ordo admin failover`), each
//! while clients run cross-shard transfers. After each, every command has one definite
//! outcome and the shards' logs and contracts agree with the clients (see
//! `harness::Ledger::check`).

#[allow(dead_code)] // shared with the failover benchmark, which uses other parts
mod harness;

mod db_terminate;
mod graceful;
mod kill;
mod zombie;

use std::path::Path;
use std::time::Duration;

/// One network at a time: each is about fifteen processes on a small machine.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Concurrent clients, each moving one Iou back and forth between shard-1 and shard-2.
const WORKERS: usize = 4;
/// How long a new active replica may take to serve (ttl 3 s + renew period 1 s + resume).
const TAKEOVER: Duration = Duration::from_secs(20);
/// Commits required before a fault and again after the takeover.
const COMMITS: usize = 15;

fn ordo() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ordo"))
}
