//! The command line: one binary, one subcommand per node role.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "ordo",
    version,
    about = "ordo: a sharded, highly available ledger-node stack"
)]
pub struct Cli {
    /// Log line format. The level comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a sequencer node (`ordo sequencer init` provisions its database first).
    Sequencer(Box<SequencerCommand>),
    /// Run a whole local network: a private Postgres and every node, until Ctrl-C.
    Up(UpArgs),
}

/// `ordo up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the network keeps its Postgres data, node configs, logs and network.json.
    #[arg(long, value_name = "DIR", default_value = "ordo-data")]
    pub data_dir: PathBuf,
    /// Use this (existing, reachable) sequencer database instead of a private Postgres.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Sequencer nodes to run.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub sequencers: usize,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SequencerCommand {
    #[command(subcommand)]
    pub action: Option<SequencerAction>,
    #[command(flatten)]
    pub node: SequencerArgs,
}

#[derive(Debug, Subcommand)]
pub enum SequencerAction {
    /// Create or migrate the shared sequencer database's schema, then exit. Safe to run
    /// again and from several nodes at once.
    Init(SequencerArgs),
}

/// Where a sequencer node's configuration comes from. Flags override the file and the
/// `ORDO_SEQUENCER_…` environment.
#[derive(Debug, Args)]
pub struct SequencerArgs {
    /// The node's TOML configuration file (see docs/configuration.md).
    #[arg(long, short = 'c', value_name = "FILE", required = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: SequencerOverrides,
}

/// Flag overrides, serialised as the highest configuration layer; unset flags are absent.
#[derive(Debug, Default, Args, Serialize)]
pub struct SequencerOverrides {
    /// Overrides `node_name`.
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Overrides `database_url`.
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Overrides `grpc_listen`.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<SocketAddr>,
    /// Overrides `http_listen`.
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_and_run_take_the_same_flags() {
        let cli = Cli::try_parse_from([
            "ordo",
            "sequencer",
            "init",
            "--config",
            "s.toml",
            "--node-name",
            "seq-2",
        ])
        .unwrap();
        let Command::Sequencer(cmd) = cli.command else {
            panic!("expected the sequencer command");
        };
        let Some(SequencerAction::Init(args)) = cmd.action else {
            panic!("expected init, got {cmd:?}");
        };
        assert_eq!(args.config, Some(PathBuf::from("s.toml")));
        assert_eq!(args.overrides.node_name.as_deref(), Some("seq-2"));

        let cli =
            Cli::try_parse_from(["ordo", "sequencer", "-c", "s.toml", "--log-format", "json"])
                .unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
        let Command::Sequencer(cmd) = cli.command else {
            panic!("expected the sequencer command");
        };
        assert!(cmd.action.is_none());
        assert_eq!(cmd.node.config, Some(PathBuf::from("s.toml")));
    }

    #[test]
    fn config_is_required_and_bad_addresses_are_usage_errors() {
        let err = Cli::try_parse_from(["ordo", "sequencer"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(err.exit_code(), 2);
        let err = Cli::try_parse_from(["ordo", "sequencer", "init"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err =
            Cli::try_parse_from(["ordo", "sequencer", "-c", "s.toml", "--grpc-listen", "nope"])
                .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(err.exit_code(), 2);
    }
}
