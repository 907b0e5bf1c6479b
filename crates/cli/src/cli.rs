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
    /// Run a sequencer node (`ordo sequencer init` provisions the shared database first).
    Sequencer(Box<NodeCommand>),
    /// Run the topology manager (`ordo topology init` provisions its database and key).
    Topology(Box<NodeCommand>),
    /// Run the mediator (`ordo mediator init` provisions its database and key).
    Mediator(Box<NodeCommand>),
    /// Run a participant shard (`ordo participant init` provisions its database and key).
    Participant(Box<NodeCommand>),
    /// Run the JSON API gateway: HTTP/JSON in front of the shards (docs/gateway.md).
    Gateway(Box<crate::gateway::GatewayArgs>),
    /// Configuration files without a node: check one as the node would load it, print
    /// the reference of every key (docs/configuration.md) or a role's JSON schema.
    Config(crate::config_command::ConfigArgs),
    /// Run a whole local network: a private Postgres and every node, until Ctrl-C.
    Up(UpArgs),
    /// Print a Ledger API bearer token (HS256 JWT) for the network `ordo up` runs.
    Token(TokenArgs),
    /// Operator commands: every node's status, a graceful failover of a service.
    Admin(crate::admin::AdminArgs),
    /// Users and their rights, domain-wide, through the topology manager: create, grant,
    /// revoke, delete, list.
    User(crate::user::UserArgs),
    /// Load a network with simulated clients and report throughput, latency and errors
    /// (docs/load.md).
    Load(Box<ordo_load::LoadArgs>),
    /// Ledger API commands for operators and scripts (party, package, submit, acs,
    /// updates, demo), on the network a network.json describes.
    #[command(flatten)]
    Ledger(ordo_ledger_client::cli::LedgerCommand),
}

/// `ordo up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the network keeps its Postgres data, node configs, keys, logs and network.json.
    #[arg(long, value_name = "DIR", default_value = "ordo-data")]
    pub data_dir: PathBuf,
    /// Use this (existing, reachable) sequencer database instead of a private Postgres; the
    /// other nodes' databases (ordo_topology, ordo_mediator, ordo_shard_N) are created on
    /// the same server when missing.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Sequencer nodes to run.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub sequencers: usize,
    /// Run every node in plain text, without TLS (tokens and ledger data then cross the
    /// network in clear; a warning says so at every start).
    #[arg(long)]
    pub insecure: bool,
}

/// `ordo token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// A party the bearer may submit commands as (and read as). Repeatable.
    #[arg(long = "act-as", value_name = "PARTY")]
    pub act_as: Vec<String>,
    /// A party the bearer may read as. Repeatable.
    #[arg(long = "read-as", value_name = "PARTY")]
    pub read_as: Vec<String>,
    /// Grant party and package management (Ledger API admin calls).
    #[arg(long)]
    pub admin: bool,
    /// The only application id the bearer may submit and read completions as.
    #[arg(long, value_name = "ID")]
    pub application_id: Option<String>,
    /// Instead of party claims: a user token for this user (`sub`, with `scope`
    /// `daml_ledger_api`), which stands for the user's rights as they are at each request.
    #[arg(long, value_name = "USER_ID", conflicts_with_all = ["act_as", "read_as", "admin", "application_id"])]
    pub user: Option<String>,
    /// Lifetime of the token in seconds (every token expires).
    #[arg(long, value_name = "SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=31_622_400))]
    pub expires_in: u64,
    /// The network file `ordo up` wrote; the token is signed with the key it names
    /// (`auth.signing_key_file`, or an HS256 network's `auth.secret`).
    #[arg(long, value_name = "FILE", default_value = "ordo-data/network.json")]
    pub network: PathBuf,
}

/// `ordo <role> [init] --config FILE`: the same shape for every node role.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct NodeCommand {
    #[command(subcommand)]
    pub action: Option<NodeAction>,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Debug, Subcommand)]
pub enum NodeAction {
    /// Provision the node, then exit: create or migrate its database schema and, for a
    /// member (topology manager, mediator, participant), create its key file when missing
    /// and print its member id and public key. Safe to run again and from several replicas
    /// at once.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Also print the outcome as one JSON object on stdout (`role`, `node_name`,
    /// `created`, and for members `member` and `public_key` in hex), for scripts.
    #[arg(long)]
    pub json: bool,
    /// After provisioning, register the member (mediator, participant) with the topology
    /// manager at this admin endpoint (repeatable: every replica's), with the admin token
    /// in ORDO_TOPOLOGY_ADMIN_TOKEN. Idempotent: a member already registered with the same
    /// key is left as it is.
    #[arg(long, value_name = "URL")]
    pub register_with: Vec<String>,
}

/// Where a node's configuration comes from. Flags override the file and the
/// `ORDO_<ROLE>_…` environment.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// The node's TOML configuration file (see docs/configuration.md and examples/).
    #[arg(long, short = 'c', value_name = "FILE", required = true)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: NodeOverrides,
}

/// Flag overrides, serialised as the highest configuration layer; unset flags are absent.
/// Every role has these four keys.
#[derive(Debug, Default, Args, Serialize)]
pub struct NodeOverrides {
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
        let Some(NodeAction::Init(args)) = cmd.action else {
            panic!("expected init, got {cmd:?}");
        };
        assert_eq!(args.node.config, Some(PathBuf::from("s.toml")));
        assert_eq!(args.node.overrides.node_name.as_deref(), Some("seq-2"));
        assert!(!args.json);

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

    fn role_command(cli: Cli) -> (&'static str, NodeCommand) {
        match cli.command {
            Command::Sequencer(c) => ("sequencer", *c),
            Command::Topology(c) => ("topology", *c),
            Command::Mediator(c) => ("mediator", *c),
            Command::Participant(c) => ("participant", *c),
            other => panic!("not a role: {other:?}"),
        }
    }

    #[test]
    fn every_role_has_init_and_run_with_the_same_flags() {
        for role in ["sequencer", "topology", "mediator", "participant"] {
            let cli = Cli::try_parse_from([
                "ordo",
                role,
                "init",
                "--json",
                "-c",
                "n.toml",
                "--grpc-listen",
                "127.0.0.1:9",
            ])
            .unwrap_or_else(|e| panic!("{role}: {e}"));
            let (parsed, cmd) = role_command(cli);
            assert_eq!(parsed, role);
            let Some(NodeAction::Init(args)) = cmd.action else {
                panic!("{role}: expected init");
            };
            assert!(args.json);
            assert_eq!(args.node.config, Some(PathBuf::from("n.toml")));
            assert_eq!(
                args.node.overrides.grpc_listen,
                Some(SocketAddr::from(([127, 0, 0, 1], 9)))
            );

            let cli = Cli::try_parse_from(["ordo", role, "--config", "n.toml", "--node-name", "x"])
                .unwrap_or_else(|e| panic!("{role}: {e}"));
            let (_, cmd) = role_command(cli);
            assert!(cmd.action.is_none());
            assert_eq!(cmd.node.overrides.node_name.as_deref(), Some("x"));

            let err = Cli::try_parse_from(["ordo", role]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{role}"
            );
            // --json belongs to init only.
            let err = Cli::try_parse_from(["ordo", role, "-c", "n.toml", "--json"]).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{role}"
            );
        }
    }

    #[test]
    fn admin_commands_take_a_network_file() {
        use crate::admin::{AdminArgs, AdminCommand};
        let cli = Cli::try_parse_from(["ordo", "admin", "status", "--json"]).unwrap();
        let Command::Admin(AdminArgs {
            command: AdminCommand::Status(s),
        }) = cli.command
        else {
            panic!("expected admin status");
        };
        assert!(s.json);
        assert_eq!(s.network, PathBuf::from("ordo-data/network.json"));
        let cli = Cli::try_parse_from([
            "ordo",
            "admin",
            "failover",
            "--service",
            "shard-1",
            "--network",
            "n.json",
        ])
        .unwrap();
        let Command::Admin(AdminArgs {
            command: AdminCommand::Failover(f),
        }) = cli.command
        else {
            panic!("expected admin failover");
        };
        assert_eq!(
            (f.service.as_str(), f.network.as_path(), f.timeout, f.json),
            ("shard-1", std::path::Path::new("n.json"), 15, false)
        );
        let err = Cli::try_parse_from(["ordo", "admin", "failover"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);

        use crate::admin::{ShardArgs, ShardCommand};
        let cli =
            Cli::try_parse_from(["ordo", "admin", "shard", "add", "--name", "shard-3"]).unwrap();
        let Command::Admin(AdminArgs {
            command:
                AdminCommand::Shard(ShardArgs {
                    command: ShardCommand::Add(a),
                }),
        }) = cli.command
        else {
            panic!("expected admin shard add");
        };
        assert_eq!(
            (a.name.as_str(), a.replicas, a.network.as_path(), a.json),
            (
                "shard-3",
                2,
                std::path::Path::new("ordo-data/network.json"),
                false
            )
        );
        let err = Cli::try_parse_from(["ordo", "admin", "shard", "add"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let err = Cli::try_parse_from([
            "ordo",
            "admin",
            "shard",
            "add",
            "--name",
            "shard-3",
            "--replicas",
            "-1",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn token_takes_repeated_parties_and_defaults() {
        let cli = Cli::try_parse_from([
            "ordo",
            "token",
            "--act-as",
            "alice",
            "--act-as",
            "bob",
            "--read-as",
            "carol",
            "--admin",
            "--application-id",
            "app",
            "--expires-in",
            "30",
        ])
        .unwrap();
        let Command::Token(t) = cli.command else {
            panic!("expected token");
        };
        assert_eq!(t.act_as, ["alice", "bob"]);
        assert_eq!(t.read_as, ["carol"]);
        assert!(t.admin);
        assert_eq!(t.application_id.as_deref(), Some("app"));
        assert_eq!(t.expires_in, 30);
        assert_eq!(t.network, PathBuf::from("ordo-data/network.json"));

        let cli = Cli::try_parse_from(["ordo", "token", "--read-as", "p", "--network", "n.json"])
            .unwrap();
        let Command::Token(t) = cli.command else {
            panic!("expected token");
        };
        assert!(t.act_as.is_empty() && !t.admin);
        assert_eq!(t.expires_in, 86_400);
        assert_eq!(t.network, PathBuf::from("n.json"));
        let err = Cli::try_parse_from(["ordo", "token", "--expires-in", "soon"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }
}
