//! `ordo config check|docs|schema`: a node's configuration without the node. `check`
//! loads a file with the node's own loader (file, then the role's `ORDO_<ROLE>_…`
//! environment) and runs the node's own validation; it connects to nothing, starts
//! nothing and creates no file, so CI can check the configs it ships.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::Failure;
use crate::cli::{NodeArgs, NodeOverrides};
use crate::config::ReadableSecrets;
use crate::node::{Role, Step};
use crate::roles;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file as the node would load it at start: the file, the role's
    /// `ORDO_<ROLE>_…` environment variables, then the node's own validation. Connects to
    /// nothing and reads no file the configuration names (keys, certificates, tokens), so
    /// a config can be checked where its secrets are not mounted. A file holding secrets
    /// that others may read is a warning here (a node refuses it). Exit code 0: valid;
    /// 1: invalid, with the key named; 2: usage.
    Check(CheckArgs),
    /// Print the generated reference of every role's keys (docs/configuration.md's
    /// generated part), or rewrite that part of a file with `--write`.
    Docs(DocsArgs),
    /// Print the JSON schema of a role's configuration.
    Schema(SchemaArgs),
}

/// The roles that read a configuration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConfigRole {
    Sequencer,
    Topology,
    Mediator,
    Participant,
    Gateway,
}

impl ConfigRole {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sequencer => roles::Sequencer::NAME,
            Self::Topology => roles::Topology::NAME,
            Self::Mediator => roles::Mediator::NAME,
            Self::Participant => roles::Participant::NAME,
            Self::Gateway => "gateway",
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Whose configuration the file is.
    #[arg(long, value_enum)]
    pub role: ConfigRole,
    /// The TOML configuration file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the outcome as one JSON object on stdout (`ok`, `role`, `file`, and `summary`
    /// or `error`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DocsArgs {
    /// Replace everything after the generated-part marker of this file (e.g.
    /// docs/configuration.md) instead of printing.
    #[arg(long, value_name = "FILE")]
    pub write: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Whose configuration.
    #[arg(long, value_enum)]
    pub role: ConfigRole,
}

pub fn main(args: ConfigArgs) -> Result<(), Failure> {
    match args.command {
        ConfigCommand::Check(a) => check(&a),
        ConfigCommand::Docs(a) => docs(&a),
        ConfigCommand::Schema(a) => {
            let schema = crate::config_docs::schema(a.role);
            let text = serde_json::to_string_pretty(&schema)
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("encoding the schema: {e}")))?;
            println!("{text}");
            Ok(())
        }
    }
}

/// What `--json` prints.
#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    role: &'static str,
    file: &'a Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn check(args: &CheckArgs) -> Result<(), Failure> {
    let file = &args.file;
    let outcome = match args.role {
        ConfigRole::Sequencer => check_node::<roles::Sequencer>(file, |_| None),
        ConfigRole::Topology => check_node::<roles::Topology>(file, |_| None),
        ConfigRole::Mediator => check_node::<roles::Mediator>(file, |_| None),
        ConfigRole::Participant => {
            check_node::<roles::Participant>(file, |c| Some(format!("shard {}", c.shard)))
        }
        ConfigRole::Gateway => crate::gateway::load_with(
            file,
            &crate::gateway::GatewayOverrides::default(),
            ReadableSecrets::Warn,
        )
        .map(|c| {
            format!(
                "http_listen {}, network_file {}",
                c.http_listen,
                c.network_file.display()
            )
        }),
    };
    // A configuration that does not load or validate is what this command finds, not a
    // usage error: exit 1.
    let outcome = outcome.map_err(|f| match f {
        Failure::Usage(e) | Failure::Runtime(e) => e,
    });
    let role = args.role.name();
    if args.json {
        let report = Report {
            ok: outcome.is_ok(),
            role,
            file,
            summary: outcome.as_deref().ok(),
            error: outcome.as_ref().err().map(crate::describe),
        };
        let line = serde_json::to_string(&report)
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("encoding the report: {e}")))?;
        println!("{line}");
    }
    match outcome {
        Ok(summary) => {
            if !args.json {
                println!("ok: {role} config {} ({summary})", file.display());
            }
            Ok(())
        }
        Err(e) => Err(Failure::Runtime(e)),
    }
}

/// Loads and validates `file` as `ordo <role>` (run, not init) does; the summary names the
/// node and what `extra` adds.
fn check_node<R: Role>(
    file: &Path,
    extra: impl Fn(&R::Config) -> Option<String>,
) -> Result<String, Failure> {
    let args = NodeArgs {
        config: Some(file.to_owned()),
        overrides: NodeOverrides::default(),
    };
    let config = crate::node::load_with::<R>(&args, Step::Run, ReadableSecrets::Warn)?;
    let mut summary = format!("node {}", R::basics(&config).node_name);
    if let Some(more) = extra(&config) {
        summary.push_str(", ");
        summary.push_str(&more);
    }
    Ok(summary)
}

fn docs(args: &DocsArgs) -> Result<(), Failure> {
    let generated = crate::config_docs::render();
    let Some(path) = &args.write else {
        print!("{generated}");
        return Ok(());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Usage(anyhow::anyhow!("cannot read {}: {e}", path.display())))?;
    let updated = crate::config_docs::replace_generated(&text, &generated).ok_or_else(|| {
        Failure::Usage(anyhow::anyhow!(
            "{} has no line {:?}: add it where the generated reference starts",
            path.display(),
            crate::config_docs::MARKER
        ))
    })?;
    std::fs::write(path, updated)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
    eprintln!("wrote the generated reference into {}", path.display());
    Ok(())
}
