//! The ledger commands of the `ordo` binary: `party`, `package`, `submit`, `acs`,
//! `updates` and `demo`. Each reads the network from `--network FILE` (default
//! `ordo-data/network.json`, or `ORDO_NETWORK`) and prints text, or JSON with `--json`.
//!
//! The binary mounts them either one by one (`Party(PartyArgs)` → `run_party`, …) or all
//! at once with `#[command(flatten)] Ledger(LedgerCommand)` → `run`.

mod acs;
mod demo;
mod output;
mod package;
mod party;
mod submit;
mod updates;

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

use crate::network::{DEFAULT_PATH, Network};

pub use acs::{AcsArgs, run_acs};
pub use demo::{DemoArgs, IOU_PACKAGE, run_demo};
pub use package::{PackageArgs, PackageCommand, PackageListArgs, PackageUploadArgs, run_package};
pub use party::{PartyAllocateArgs, PartyArgs, PartyCommand, PartyListArgs, run_party};
pub use submit::{
    SubmitArgs, SubmitCommand, SubmitCreateAndExerciseArgs, SubmitCreateArgs, SubmitExerciseArgs,
    Submitter, run_submit,
};
pub use updates::{UpdatesArgs, run_updates};

/// The options every ledger command takes.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct CommonArgs {
    /// The network file written by `ordo up`.
    #[arg(long, value_name = "FILE", env = "ORDO_NETWORK", default_value = DEFAULT_PATH)]
    pub network: PathBuf,
    /// Print JSON (one document, or one per line for lists and streams) for scripts.
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    pub fn load(&self) -> anyhow::Result<Network> {
        Ok(Network::load(&self.network)?)
    }
}

/// Every ledger command, for a binary that mounts them all with `#[command(flatten)]`.
#[derive(clap::Subcommand, Clone, Debug)]
pub enum LedgerCommand {
    /// Allocate and list parties.
    Party(PartyArgs),
    /// Upload and list template packages.
    Package(PackageArgs),
    /// Submit a command (create, exercise, create-and-exercise) and print its events.
    Submit(SubmitArgs),
    /// Print a party's active contracts.
    Acs(AcsArgs),
    /// Print a party's transactions from an offset, optionally following live.
    Updates(UpdatesArgs),
    /// Run the IOU story (issue, transfer across shards, split, swap) on a running network.
    Demo(DemoArgs),
}

/// Runs one ledger command.
pub async fn run(command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Party(a) => run_party(a).await,
        LedgerCommand::Package(a) => run_package(a).await,
        LedgerCommand::Submit(a) => run_submit(a).await,
        LedgerCommand::Acs(a) => run_acs(a).await,
        LedgerCommand::Updates(a) => run_updates(a).await,
        LedgerCommand::Demo(a) => run_demo(a).await,
    }
}

/// A JSON argument: inline text, or `@FILE` for a file's content.
pub(crate) fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {what} from {path}"))?
        }
        None => text.to_owned(),
    };
    serde_json::from_str(&text).with_context(|| format!("{what} is not valid JSON: {text}"))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser, Debug)]
    struct Ordo {
        #[command(subcommand)]
        command: LedgerCommand,
    }

    #[test]
    fn the_commands_are_well_formed() {
        Ordo::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_command_lines() {
        let parse = |line: &str| Ordo::try_parse_from(line.split_whitespace()).map(|o| o.command);
        let LedgerCommand::Party(PartyArgs {
            command: PartyCommand::Allocate(a),
        }) = parse("ordo party allocate alice --shard shard-2 --network n.json").unwrap()
        else {
            panic!("not party allocate");
        };
        assert_eq!(a.name, "alice");
        assert_eq!(a.shard.as_deref(), Some("shard-2"));
        assert_eq!(a.common.network, PathBuf::from("n.json"));

        let LedgerCommand::Submit(SubmitArgs {
            command: SubmitCommand::Exercise(x),
        }) = parse(
            "ordo submit exercise --act-as alice --template iou:Iou --contract-id c1 \
             --choice Split --argument {\"splitAmount\":\"1.0\"} --json",
        )
        .unwrap()
        else {
            panic!("not submit exercise");
        };
        assert_eq!(
            (x.submitter.act_as.as_str(), x.choice.as_str()),
            ("alice", "Split")
        );
        assert!(x.common.json);
        assert_eq!(x.common.network, PathBuf::from(DEFAULT_PATH));
        assert_eq!(x.contract_id.as_deref(), Some("c1"));
        // By key instead of contract id; one of the two, not both.
        let LedgerCommand::Submit(SubmitArgs {
            command: SubmitCommand::Exercise(x),
        }) = parse(
            "ordo submit exercise --act-as alice --template registry:Name \
             --key {\"authority\":\"reg\",\"name\":\"ann\"} --choice Release",
        )
        .unwrap()
        else {
            panic!("not submit exercise by key");
        };
        assert_eq!((x.contract_id, x.key.is_some()), (None, true));
        assert!(parse("ordo submit exercise --act-as a --template t --choice C").is_err());
        assert!(
            parse(
                "ordo submit exercise --act-as a --template t --contract-id c --key {} --choice C"
            )
            .is_err()
        );

        let LedgerCommand::Updates(u) =
            parse("ordo updates --party bob --from 5 --follow").unwrap()
        else {
            panic!("not updates");
        };
        assert_eq!((u.from, u.follow), (5, true));
        assert!(parse("ordo acs").is_err(), "--party is required");
    }

    #[test]
    fn json_arguments_inline_or_from_a_file() {
        assert_eq!(parse_json("payload", r#"{"a":1}"#).unwrap()["a"], 1);
        let e = parse_json("payload", "{a").unwrap_err();
        assert!(format!("{e:#}").contains("payload is not valid JSON"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, "[1]").unwrap();
        let arg = format!("@{}", file.display());
        assert_eq!(parse_json("payload", &arg).unwrap(), serde_json::json!([1]));
    }
}
