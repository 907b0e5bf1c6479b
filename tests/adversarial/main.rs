//! Adversarial: a rogue member registered like any other, with its own key, builds and
//! signs raw protocol messages and sends them through the real sequencer to real nodes
//! (`ordo up`: node processes over a real Postgres). Each attack is checked from outside:
//! the honest nodes' alarm counters on their `/metrics`, the verdicts the mediator sends
//! the rogue, and what honest parties see through the Ledger API; and after each one an
//! honest cross-shard transfer must commit.
//!
//! One network serves the whole suite (about fifteen processes); the numbered modules run
//! in order on it. New attacks go into a new module, written against `rogue::Rogue`.

#[allow(dead_code)] // the HA suite's network harness; this suite uses part of it
#[path = "../ha/harness.rs"]
mod net;
mod rogue;
mod world;

mod a01_narrowed_tree;
mod a02_poison_views;
mod a03_mediator;
mod a04_takeover;

use std::path::Path;

use world::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rogue_member_forges_nothing_and_halts_nothing() -> anyhow::Result<()> {
    let mut w = World::start(Path::new(env!("CARGO_BIN_EXE_ordo"))).await?;
    let outcome = async {
        a01_narrowed_tree::run(&w).await?;
        a02_poison_views::run(&w).await?;
        a03_mediator::run(&w).await?;
        a04_takeover::run(&mut w).await?;
        anyhow::Ok(())
    }
    .await;
    let logs = w.stop();
    outcome.map_err(|e| anyhow::anyhow!("{e:#}\n--- ordo up's output:\n{logs}"))
}
