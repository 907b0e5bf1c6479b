//! `ordo submit create|exercise|create-and-exercise`: one command, as the acting party, on
//! the shard hosting it; prints the resulting events. A failover of the shard's
//! participant during the command is ridden through (see [`crate::failover`]).

use ordo_participant::auth::LedgerClaims;

use crate::network::Network;
use crate::types::{Command, DisclosedContract, Submission};

use super::output::{json_line, print_lines, result_lines};
use super::{CommonArgs, parse_json};

#[derive(clap::Args, Clone, Debug)]
pub struct SubmitArgs {
    #[command(subcommand)]
    pub command: SubmitCommand,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum SubmitCommand {
    /// Create a contract.
    Create(SubmitCreateArgs),
    /// Exercise a choice on an active contract.
    Exercise(SubmitExerciseArgs),
    /// Create a contract and exercise a choice on it in one transaction.
    CreateAndExercise(SubmitCreateAndExerciseArgs),
}

/// Who submits, shared by the submit commands.
#[derive(clap::Args, Clone, Debug)]
pub struct Submitter {
    /// The party the command runs as (its shard's participant receives it).
    #[arg(long)]
    pub act_as: String,
    /// Extra parties whose contracts the command may read (hosted on the same shard).
    #[arg(long)]
    pub read_as: Vec<String>,
    /// The command id (deduplication key); default: a fresh random one.
    #[arg(long)]
    pub command_id: Option<String>,
    /// A contract the submitting parties do not see, disclosed to the command (explicit
    /// disclosure): a contract as `ordo acs --json` prints it, or @FILE. Repeatable.
    #[arg(long, value_name = "JSON")]
    pub disclose: Vec<String>,
}

#[derive(clap::Args, Clone, Debug)]
pub struct SubmitCreateArgs {
    #[command(flatten)]
    pub submitter: Submitter,
    /// The template, e.g. iou:Iou.
    #[arg(long)]
    pub template: String,
    /// The payload as a JSON object, or @FILE.
    #[arg(long)]
    pub payload: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Args, Clone, Debug)]
pub struct SubmitExerciseArgs {
    #[command(flatten)]
    pub submitter: Submitter,
    #[arg(long)]
    pub template: String,
    /// The contract to exercise.
    #[arg(long, required_unless_present = "key", conflicts_with = "key")]
    pub contract_id: Option<String>,
    /// Instead of --contract-id: the contract key (JSON, or @FILE) of the active contract
    /// to exercise (the template must declare a key).
    #[arg(long)]
    pub key: Option<String>,
    #[arg(long)]
    pub choice: String,
    /// The choice argument as a JSON object, or @FILE.
    #[arg(long, default_value = "{}")]
    pub argument: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(clap::Args, Clone, Debug)]
pub struct SubmitCreateAndExerciseArgs {
    #[command(flatten)]
    pub submitter: Submitter,
    #[arg(long)]
    pub template: String,
    #[arg(long)]
    pub payload: String,
    #[arg(long)]
    pub choice: String,
    #[arg(long, default_value = "{}")]
    pub argument: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub async fn run_submit(args: SubmitArgs) -> anyhow::Result<()> {
    let (submitter, common, command) = match args.command {
        SubmitCommand::Create(a) => (
            a.submitter,
            a.common,
            Command::Create {
                template_id: a.template,
                payload: parse_json("payload", &a.payload)?,
            },
        ),
        SubmitCommand::Exercise(a) => {
            let argument = parse_json("argument", &a.argument)?;
            let command = match (a.contract_id, a.key) {
                (Some(contract_id), _) => Command::Exercise {
                    template_id: a.template,
                    contract_id,
                    choice: a.choice,
                    argument,
                },
                (None, key) => Command::ExerciseByKey {
                    template_id: a.template,
                    key: parse_json("key", key.as_deref().unwrap_or_default())?,
                    choice: a.choice,
                    argument,
                },
            };
            (a.submitter, a.common, command)
        }
        SubmitCommand::CreateAndExercise(a) => (
            a.submitter,
            a.common,
            Command::CreateAndExercise {
                template_id: a.template,
                payload: parse_json("payload", &a.payload)?,
                choice: a.choice,
                argument: parse_json("argument", &a.argument)?,
            },
        ),
    };
    let network = common.load()?;
    let result = submit(&network, submitter, command).await?;
    if common.json {
        json_line(&result)?;
    } else {
        print_lines(&result_lines(&result));
    }
    Ok(())
}

async fn submit(
    network: &Network,
    submitter: Submitter,
    command: Command,
) -> anyhow::Result<crate::types::TransactionResult> {
    let shard = network.shard_of(&submitter.act_as).await?;
    let token = network.mint_token(&LedgerClaims {
        act_as: vec![submitter.act_as.clone()],
        read_as: submitter.read_as.clone(),
        ..Default::default()
    })?;
    // Rides through a failover of the shard's participant: retried with the same
    // command id, and a retry that finds the command already submitted reads its outcome.
    let client = network.shard_client(&shard, &token)?;
    let mut submission = Submission::new(submitter.act_as, command);
    submission.read_as = submitter.read_as;
    submission.command_id = submitter.command_id;
    submission.disclosed_contracts = submitter
        .disclose
        .iter()
        .map(|d| {
            let value = parse_json("disclosed contract", d)?;
            serde_json::from_value::<DisclosedContract>(value).map_err(|e| {
                anyhow::anyhow!(
                    "--disclose {d}: not a contract (needs contract_id, template_id, payload, \
                     signatories, observers): {e}"
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(client.submit(submission).await?)
}
