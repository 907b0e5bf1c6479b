//! `ordo updates --party P [--from OFFSET] [--follow]`: a party's transactions.

use futures::StreamExt;

use crate::types::Filter;

use super::CommonArgs;
use super::output::{json_line, print_lines, transaction_lines};

#[derive(clap::Args, Clone, Debug)]
pub struct UpdatesArgs {
    /// The party whose projection is read.
    #[arg(long)]
    pub party: String,
    /// Only events of these templates (repeatable).
    #[arg(long)]
    pub template: Vec<String>,
    /// Start after this offset of the party's shard (0: from the beginning).
    #[arg(long, default_value_t = 0)]
    pub from: i64,
    /// Keep streaming new transactions (until interrupted).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run_updates(args: UpdatesArgs) -> anyhow::Result<()> {
    let network = args.common.load()?;
    let client = network.client_for_party(&args.party).await?;
    let filter = Filter {
        parties: vec![args.party.clone()],
        templates: args.template,
    };
    let mut stream = client.updates(&filter, args.from, args.follow).await?;
    while let Some(tx) = stream.next().await {
        let tx = tx?;
        if args.common.json {
            json_line(&tx)?;
        } else {
            print_lines(&transaction_lines(&tx));
        }
    }
    Ok(())
}
