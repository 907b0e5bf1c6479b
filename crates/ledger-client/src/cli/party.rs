//! `ordo party allocate NAME [--shard S]`, `ordo party list`.

use crate::error::LedgerError;
use crate::network::Network;
use crate::types::PartyDetails;

use super::CommonArgs;
use super::output::json_line;

#[derive(clap::Args, Clone, Debug)]
pub struct PartyArgs {
    #[command(subcommand)]
    pub command: PartyCommand,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum PartyCommand {
    /// Allocate a party on a shard (default: the shard hosting the fewest parties).
    Allocate(PartyAllocateArgs),
    /// List every party with its shard.
    List(PartyListArgs),
}

#[derive(clap::Args, Clone, Debug)]
pub struct PartyAllocateArgs {
    /// The party's name: 1 to 64 of [A-Za-z0-9_-].
    pub name: String,
    /// The shard to host it.
    #[arg(long)]
    pub shard: Option<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Args, Clone, Debug)]
pub struct PartyListArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run_party(args: PartyArgs) -> anyhow::Result<()> {
    match args.command {
        PartyCommand::Allocate(a) => {
            let network = a.common.load()?;
            let details = allocate(&network, &a.name, a.shard.as_deref()).await?;
            if a.common.json {
                json_line(&details)?;
            } else {
                println!("allocated party {} on {}", details.party, details.shard);
            }
        }
        PartyCommand::List(a) => {
            let network = a.common.load()?;
            let mut parties = network.parties().await?;
            parties.sort_by(|x, y| x.party.cmp(&y.party));
            if a.common.json {
                for p in &parties {
                    json_line(p)?;
                }
            } else {
                println!("{:<32} SHARD", "PARTY");
                for p in &parties {
                    println!("{:<32} {}", p.party, p.shard);
                }
            }
        }
    }
    Ok(())
}

/// Allocates `party` through the participant of `shard` (default: the least loaded), which
/// places it on its own shard.
pub async fn allocate(
    network: &Network,
    party: &str,
    shard: Option<&str>,
) -> Result<PartyDetails, LedgerError> {
    let shard = match shard {
        Some(s) => s.to_owned(),
        None => network.least_loaded_shard().await?,
    };
    network
        .client_for_shard(&shard)
        .await?
        .allocate_party(party)
        .await
}
