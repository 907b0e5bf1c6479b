//! ordo's benchmarks. Each starts its own Postgres (durable: fsync and synchronous_commit
//! on) and its own nodes, drives load, checks what was delivered independently of the code
//! under test, and prints one JSON object.

mod baseline;
mod failover;
mod gateway;
mod ledger;
mod query;
mod sequencer;
mod stats;

// The network harness of the HA tests: `ordo up`, its replicas, and a checked load.
#[path = "../../tests/ha/harness.rs"]
#[allow(dead_code)]
mod harness;

use clap::{Parser, Subcommand};

// Sequencing and delivery allocate many small buffers per event; mimalloc keeps the
// allocator off the profile (glibc malloc/free took a quarter of the CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ordo-bench", about = "ordo's benchmarks")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Throughput and send-to-delivery latency of the sequencer, against raw Postgres
    /// COPY and INSERT into the same database in the same run.
    Sequencer(sequencer::Args),
    /// Failover time of the active-passive services: SIGKILL of the active replica to the
    /// first commit through its successor, on a network started by `ordo up`.
    Failover(failover::Args),
    /// Throughput and latency of the JSON API gateway (creates, same-shard and
    /// cross-shard transfers over HTTP), against the same commands sent straight to the
    /// shards' Ledger API in the same run.
    Gateway(gateway::Args),
    /// Committed transactions per second and latency of the whole ledger under `ordo
    /// load` (transfers or issues), against the same outcome's rows written raw and the
    /// sequencer's own events per second, measured in the same run on the same Postgres.
    Ledger(ledger::Args),
    /// `/v1/query` over one party's 100,000 Ious in the gateway's cache: latency and peak
    /// gateway memory of `%gte`/`%lt` range queries, against an equality query and a full
    /// `GET /v1/query` in the same run.
    Query(query::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.bench {
        Bench::Sequencer(args) => {
            let json = args.json;
            print(&runtime.block_on(sequencer::run(args))?, json)?;
        }
        Bench::Failover(args) => {
            let json = args.json;
            print(&runtime.block_on(failover::run(args))?, json)?;
        }
        Bench::Gateway(args) => {
            let json = args.json;
            print(&runtime.block_on(gateway::run(args))?, json)?;
        }
        Bench::Ledger(args) => {
            let json = args.json;
            print(&runtime.block_on(ledger::run(args))?, json)?;
        }
        Bench::Query(args) => {
            let json = args.json;
            print(&runtime.block_on(query::run(args))?, json)?;
        }
    }
    Ok(())
}

/// The `ordo` binary the network benchmarks run `ordo up` with: `arg`, or the one next to
/// this binary.
fn ordo_binary(arg: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let ordo = match arg {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("ordo"),
    };
    anyhow::ensure!(
        ordo.exists(),
        "{} not found: build it first (cargo build --release -p ordo-cli) or pass --ordo",
        ordo.display()
    );
    Ok(ordo)
}

fn print(report: &impl serde::Serialize, one_line: bool) -> anyhow::Result<()> {
    if one_line {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", serde_json::to_string_pretty(report)?);
    }
    Ok(())
}
