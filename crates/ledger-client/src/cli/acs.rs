//! `ordo acs --party P [--template T]`: a party's active contracts.

use crate::types::Filter;

use super::CommonArgs;
use super::output::{contract_line, json_line};

#[derive(clap::Args, Clone, Debug)]
pub struct AcsArgs {
    /// The party whose active contracts are printed.
    #[arg(long)]
    pub party: String,
    /// Only contracts of these templates (repeatable), e.g. iou:Iou.
    #[arg(long)]
    pub template: Vec<String>,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run_acs(args: AcsArgs) -> anyhow::Result<()> {
    let network = args.common.load()?;
    let client = network.client_for_party(&args.party).await?;
    let filter = Filter {
        parties: vec![args.party.clone()],
        templates: args.template,
    };
    let acs = client.active_contracts(&filter).await?;
    if args.common.json {
        for c in &acs.contracts {
            json_line(c)?;
        }
    } else {
        println!(
            "{} active contracts of {} at offset {}",
            acs.contracts.len(),
            args.party,
            acs.offset
        );
        for c in &acs.contracts {
            println!("  {}", contract_line(c));
        }
    }
    Ok(())
}
