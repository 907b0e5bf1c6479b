//! `ordo admin`: operator commands over the network a network.json describes.
//!
//! - `ordo admin status`: every node's service, role, health, lease and lag ([`status`]);
//! - `ordo admin failover --service NAME`: a graceful hand-over from a service's active
//!   replica to another one ([`failover`]);
//! - `ordo admin shard add --name shard-3`: a new participant shard in the running network,
//!   provisioned and started by `ordo up` ([`shard`]);
//! - `ordo admin prune --service shard-1 --up-to OFFSET`: prunes a shard's logs
//!   ([`prune`]).

mod failover;
mod prune;
mod shard;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use ordo_ledger_client::network::DEFAULT_PATH;
use ordo_ledger_client::{Network, PruneTarget};

use crate::Failure;

#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Every node: service, role (active/passive), health, pid, lease holder and fencing
    /// token, sequencer lag, cursor and last error.
    Status(StatusArgs),
    /// Hand a service over gracefully: its active replica steps down and another one
    /// takes over; prints who took over and how long it took.
    Failover(FailoverArgs),
    /// Participant shards of the running network.
    Shard(ShardArgs),
    /// Prune a shard's update and completion logs up to an offset, or the updates older
    /// than a duration; active contracts and in-flight commands stay.
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["up_to", "older_than"])))]
pub struct PruneArgs {
    /// The shard to prune (`shard-1`).
    #[arg(long, value_name = "SHARD")]
    pub service: String,
    /// Prune up to this update offset, inclusive (at most the shard's ledger end).
    #[arg(long, value_name = "OFFSET", value_parser = clap::value_parser!(i64).range(1..))]
    pub up_to: Option<i64>,
    /// Prune the updates older than this: `30d`, `12h`, `90min`.
    #[arg(long, value_name = "DURATION", value_parser = prune::parse_age)]
    pub older_than: Option<Duration>,
    /// The network file written by `ordo up`.
    #[arg(long, value_name = "FILE", env = "ORDO_NETWORK", default_value = DEFAULT_PATH)]
    pub network: PathBuf,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShardArgs {
    #[command(subcommand)]
    pub command: ShardCommand,
}

#[derive(Debug, Subcommand)]
pub enum ShardCommand {
    /// Add a participant shard while the network runs: `ordo up` makes its database, key
    /// and configs, registers it with the topology manager, starts its replicas and lists
    /// them in network.json, which the gateways follow.
    Add(ShardAddArgs),
}

#[derive(Debug, Args)]
pub struct ShardAddArgs {
    /// The new shard: `shard-<n>` (served by `participant-<n>`), e.g. `shard-3`.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Its replicas (one active, the others passive), 1 to 3.
    #[arg(long, value_name = "N", default_value_t = crate::up::DEFAULT_REPLICAS)]
    pub replicas: usize,
    /// The network file written by `ordo up` (its control-token file is read next to it).
    #[arg(long, value_name = "FILE", env = "ORDO_NETWORK", default_value = DEFAULT_PATH)]
    pub network: PathBuf,
    /// Print `ordo up`'s answer as one JSON object (`shard`, `participant`, `replicas`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The network file written by `ordo up`.
    #[arg(long, value_name = "FILE", env = "ORDO_NETWORK", default_value = DEFAULT_PATH)]
    pub network: PathBuf,
    /// Print a JSON array, one object per node, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// The service to fail over: `topology`, `mediator` or a shard (`shard-1`).
    #[arg(long, value_name = "NAME")]
    pub service: String,
    /// The network file written by `ordo up`.
    #[arg(long, value_name = "FILE", env = "ORDO_NETWORK", default_value = DEFAULT_PATH)]
    pub network: PathBuf,
    /// How long another replica may take to serve, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub timeout: u64,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn main(args: AdminArgs) -> Result<(), Failure> {
    let rt = crate::runtime()?;
    match args.command {
        AdminCommand::Status(a) => {
            let network = load(&a.network)?;
            let nodes = rt.block_on(status::probe_all(&network));
            if a.json {
                let text =
                    serde_json::to_string_pretty(&nodes).map_err(|e| Failure::Runtime(e.into()))?;
                println!("{text}");
            } else {
                print!("{}", status::table(&nodes));
            }
            Ok(())
        }
        AdminCommand::Failover(a) => {
            let network = load(&a.network)?;
            let timeout = Duration::from_secs(a.timeout);
            let outcome = rt.block_on(failover::run(&network, &a.service, timeout))?;
            if a.json {
                let text =
                    serde_json::to_string(&outcome).map_err(|e| Failure::Runtime(e.into()))?;
                println!("{text}");
            } else {
                println!("{outcome}");
            }
            Ok(())
        }
        AdminCommand::Shard(ShardArgs {
            command: ShardCommand::Add(a),
        }) => {
            let network = load(&a.network)?;
            let added = rt.block_on(shard::add(&network, &a.name, a.replicas))?;
            if a.json {
                println!("{}", added.0);
            } else {
                println!("{}", added.message());
            }
            Ok(())
        }
        AdminCommand::Prune(a) => {
            let network = load(&a.network)?;
            let target = match (a.up_to, a.older_than) {
                (Some(offset), _) => PruneTarget::Offset(offset),
                (None, Some(age)) => PruneTarget::OlderThan(age),
                (None, None) => unreachable!("clap requires --up-to or --older-than"),
            };
            let outcome = rt.block_on(prune::run(&network, &a.service, target))?;
            if a.json {
                let text =
                    serde_json::to_string(&outcome).map_err(|e| Failure::Runtime(e.into()))?;
                println!("{text}");
            } else {
                println!("{}", prune::describe(&a.service, &outcome));
            }
            Ok(())
        }
    }
}

fn load(path: &std::path::Path) -> Result<Network, Failure> {
    Network::load(path).map_err(|e| Failure::Usage(e.into()))
}
