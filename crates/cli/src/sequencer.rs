//! `ordo sequencer` and `ordo sequencer init`.

use ordo_sequencer::{SequencerConfig, SequencerError};

use crate::Failure;
use crate::cli::{SequencerAction, SequencerArgs, SequencerCommand};

const ENV_PREFIX: &str = "ORDO_SEQUENCER_";

pub fn main(cmd: SequencerCommand) -> Result<(), Failure> {
    match cmd.action {
        Some(SequencerAction::Init(args)) => {
            let config = load(&args)?;
            crate::runtime()?.block_on(init(config))
        }
        None => {
            let config = load(&cmd.node)?;
            crate::runtime()?.block_on(run(config))
        }
    }
}

/// The layered, validated configuration; any problem with it is a usage error.
fn load(args: &SequencerArgs) -> Result<SequencerConfig, Failure> {
    let file = args
        .config
        .as_deref()
        .ok_or_else(|| Failure::Usage(anyhow::anyhow!("--config FILE is required")))?;
    let config: SequencerConfig =
        crate::config::load(file, ENV_PREFIX, &args.overrides).map_err(Failure::Usage)?;
    config.validate().map_err(|e| {
        Failure::Usage(anyhow::anyhow!(
            "{e} (from {}, ORDO_SEQUENCER_* environment or flags)",
            file.display()
        ))
    })?;
    Ok(config)
}

async fn init(config: SequencerConfig) -> Result<(), Failure> {
    let db = ordo_sequencer::redact_url(&config.database_url);
    tracing::info!(node = %config.node_name, database = %db, "provisioning the sequencer database");
    let outcome = ordo_sequencer::init(&config)
        .await
        .map_err(|e| failure(e, &config))?;
    if outcome.created {
        tracing::info!(database = %db, "sequencer database provisioned: start the nodes with `ordo sequencer --config FILE`");
    } else {
        tracing::info!(database = %db, "sequencer database was already provisioned; nothing to do");
    }
    Ok(())
}

async fn run(config: SequencerConfig) -> Result<(), Failure> {
    // Bind before anything else so that a taken port fails fast, naming the address.
    let listeners = ordo_sequencer::Listeners::bind(&config)
        .await
        .map_err(|e| {
            Failure::Runtime(anyhow::anyhow!(
                "cannot listen on grpc_listen {} / http_listen {}: {e}; choose free addresses \
             (--grpc-listen, --http-listen)",
                config.grpc_listen,
                config.http_listen
            ))
        })?;
    tracing::info!(
        node = %config.node_name,
        grpc = %config.grpc_listen,
        http = %config.http_listen,
        database = %ordo_sequencer::redact_url(&config.database_url),
        "starting sequencer node"
    );
    let shutdown = crate::shutdown_signal()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let hint_config = config.clone();
    ordo_sequencer::run(config, listeners, shutdown)
        .await
        .map_err(|e| failure(e, &hint_config))?;
    tracing::info!("sequencer node stopped");
    Ok(())
}

/// The library's errors already say what to do, except a database that cannot be reached,
/// where only the operator's side knows which setting to look at.
fn failure(e: SequencerError, config: &SequencerConfig) -> Failure {
    match e {
        SequencerError::Database(_) => Failure::Runtime(anyhow::anyhow!(
            "{e}; check that Postgres is up and reachable at {} (database_url, \
             ORDO_SEQUENCER_DATABASE_URL or --database-url)",
            ordo_sequencer::redact_url(&config.database_url)
        )),
        SequencerError::Config(_) => Failure::Usage(e.into()),
        e => Failure::Runtime(e.into()),
    }
}
