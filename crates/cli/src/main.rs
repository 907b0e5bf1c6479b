//! `ordo`: one binary for every node role and the operator tools.
//!
//! Exit codes: 0 clean exit, 1 runtime failure, 2 bad configuration or usage.

mod admin;
mod cli;
mod config;
mod config_command;
mod config_docs;
mod gateway;
mod network;
mod node;
mod roles;
mod token;
mod up;
mod user;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command, LogFormat};

// Sequencing and delivery allocate many small buffers per event; mimalloc keeps the
// allocator off the profile (glibc malloc/free took a quarter of the CPU).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Why the binary stopped, which decides its exit code.
pub(crate) enum Failure {
    /// The command line or the configuration is wrong: fix it and run again (exit 2).
    Usage(anyhow::Error),
    /// Something failed while running (exit 1).
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    // clap prints its own usage errors and exits 2 (0 for --help/--version).
    let cli = Cli::parse();
    let log_format = cli.log_format;
    init_logging(log_format);
    let result = match cli.command {
        Command::Sequencer(cmd) => node::main::<roles::Sequencer>(*cmd),
        Command::Topology(cmd) => node::main::<roles::Topology>(*cmd),
        Command::Mediator(cmd) => node::main::<roles::Mediator>(*cmd),
        Command::Participant(cmd) => node::main::<roles::Participant>(*cmd),
        Command::Gateway(args) => gateway::main(*args),
        Command::Config(args) => config_command::main(args),
        Command::Up(args) => up::main(args),
        Command::Token(args) => token::main(&args),
        Command::Admin(args) => admin::main(args),
        Command::User(args) => user::main(args),
        Command::Load(args) => runtime().and_then(|rt| {
            rt.block_on(ordo_load::cli(*args)).map_err(|e| {
                if e.is_usage() {
                    Failure::Usage(e.into())
                } else {
                    Failure::Runtime(e.into())
                }
            })
        }),
        Command::Ledger(cmd) => runtime().and_then(|rt| {
            rt.block_on(ordo_ledger_client::cli::run(cmd))
                .map_err(Failure::Runtime)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("ordo: error: {}", describe(&e));
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            if log_format == LogFormat::Json {
                // Log collectors parse only the JSON lines.
                tracing::error!(error = %describe(&e), "ordo stopped");
            }
            eprintln!("ordo: error: {}", describe(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text an outer message
/// already includes (thiserror's `#[error("…: {0}")] X(#[from] E)` repeats its source).
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot start the tokio runtime: {e}")))
}

/// A future that resolves on SIGTERM or Ctrl-C (SIGINT); the node then stops serving and
/// drains. The handlers are installed now, not at first poll, so a signal that arrives
/// while the node is still starting is not lost (nor kills the process uncleanly).
pub(crate) fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[derive(Debug, thiserror::Error)]
    #[error("sequencer database: {0}")]
    struct Wrapper(#[from] std::io::Error);

    #[test]
    fn describe_drops_repeated_causes_and_keeps_new_ones() {
        let io = std::io::Error::other("pool timed out");
        let e = anyhow::Error::from(Wrapper(io));
        assert_eq!(describe(&e), "sequencer database: pool timed out");
        let e = anyhow::anyhow!("disk full").context("cannot write x.toml");
        assert_eq!(describe(&e), "cannot write x.toml: disk full");
    }
}
