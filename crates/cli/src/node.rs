//! `ordo <role> [init] --config FILE`: one path for every node role. It loads the layered
//! configuration, validates it (a usage error, naming the file), then provisions (`init`)
//! or runs the node until SIGTERM/Ctrl-C. What differs per role is the [`Role`] impl in
//! `roles.rs`.

use std::net::SocketAddr;
use std::path::Path;

use ordo_core::{MemberId, PublicKey};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Failure;
use crate::cli::{InitArgs, NodeAction, NodeArgs, NodeCommand};
use crate::config::ReadableSecrets;

/// Which check a configuration must pass: `init` needs less than an operational start
/// (e.g. a member can be provisioned before the topology manager's id is known).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Init,
    Run,
}

/// How the binary reports a library error.
pub enum ErrorKind {
    /// The configuration is wrong (exit 2).
    Config,
    /// The database could not be reached or failed: the message gets a hint.
    Database,
    Other,
}

/// Who a node is after `init`; members have an id and a key, the sequencer has neither.
#[derive(Clone, Debug)]
pub struct Identity {
    pub created: bool,
    pub member: Option<MemberId>,
    pub public_key: Option<PublicKey>,
}

/// What `ordo <role> init --json` prints (one object on one line); `ordo up` reads it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct InitReport {
    pub role: String,
    pub node_name: String,
    pub created: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The ed25519 public key, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// The settings every role has, for log lines and hints.
pub struct Basics<'a> {
    pub node_name: &'a str,
    pub database_url: &'a str,
    pub grpc_listen: SocketAddr,
    pub http_listen: SocketAddr,
}

/// A node role: its configuration type and its library's `init`/`Listeners`/`run`.
pub trait Role {
    /// The subcommand: `sequencer`, `topology`, `mediator`, `participant`.
    const NAME: &'static str;
    /// Environment variables are this prefix + the upper-cased key, e.g.
    /// `ORDO_PARTICIPANT_DATABASE_URL` (nested keys with `__`: `…_AUTH__SECRET`).
    const ENV_PREFIX: &'static str;
    type Config: DeserializeOwned + Serialize + Default + Clone + Send + 'static;
    type Error: std::error::Error + Send + Sync + 'static;
    type Listeners;

    fn basics(config: &Self::Config) -> Basics<'_>;
    /// The shard a participant serves (what `init --register-with` registers it for);
    /// `None` for the other roles.
    fn shard(config: &Self::Config) -> Option<&str>;
    /// The node's `[tls]`: its client certificate for calls to `https://` endpoints.
    fn tls(config: &Self::Config) -> Option<&ordo_node::tls::TlsConfig>;
    /// `grpc_listen` and `http_listen`, for `ordo up` to assign.
    fn listen_mut(config: &mut Self::Config) -> (&mut SocketAddr, &mut SocketAddr);
    fn validate(config: &Self::Config, step: Step) -> anyhow::Result<()>;
    fn kind(e: &Self::Error) -> ErrorKind;
    async fn init(config: &Self::Config) -> Result<Identity, Self::Error>;
    async fn bind(config: &Self::Config) -> std::io::Result<Self::Listeners>;
    async fn run(
        config: Self::Config,
        listeners: Self::Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Self::Error>;
}

pub fn main<R: Role>(cmd: NodeCommand) -> Result<(), Failure> {
    match cmd.action {
        Some(NodeAction::Init(args)) => {
            let config = load::<R>(&args.node, Step::Init)?;
            crate::runtime()?.block_on(init::<R>(config, &args))
        }
        None => {
            let config = load::<R>(&cmd.node, Step::Run)?;
            crate::runtime()?.block_on(run::<R>(config))
        }
    }
}

/// The layered, validated configuration; any problem with it is a usage error.
pub fn load<R: Role>(args: &NodeArgs, step: Step) -> Result<R::Config, Failure> {
    load_with::<R>(args, step, ReadableSecrets::Refuse)
}

/// [`load`], with the choice of what a file with readable secrets is (`ordo config check`
/// warns).
pub fn load_with<R: Role>(
    args: &NodeArgs,
    step: Step,
    secrets: ReadableSecrets,
) -> Result<R::Config, Failure> {
    let file = args
        .config
        .as_deref()
        .ok_or_else(|| Failure::Usage(anyhow::anyhow!("--config FILE is required")))?;
    let config: R::Config = crate::config::load_with(file, R::ENV_PREFIX, &args.overrides, secrets)
        .map_err(Failure::Usage)?;
    R::validate(&config, step).map_err(|e| Failure::Usage(named(e, file, R::ENV_PREFIX)))?;
    Ok(config)
}

fn named(e: anyhow::Error, file: &Path, prefix: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{e} (from {}, {prefix}* environment or flags)",
        file.display()
    )
}

async fn init<R: Role>(config: R::Config, args: &InitArgs) -> Result<(), Failure> {
    let b = R::basics(&config);
    let db = ordo_sequencer::redact_url(b.database_url);
    tracing::info!(role = R::NAME, node = %b.node_name, database = %db, "provisioning");
    let identity = R::init(&config)
        .await
        .map_err(|e| failure::<R>(e, &config))?;
    let report = InitReport {
        role: R::NAME.to_owned(),
        node_name: b.node_name.to_owned(),
        created: identity.created,
        member: identity.member.as_ref().map(ToString::to_string),
        public_key: identity.public_key.map(|k| hex::encode(k.as_bytes())),
    };
    let what = if report.created {
        "provisioned"
    } else {
        "already provisioned"
    };
    match (&report.member, &report.public_key) {
        (Some(member), Some(key)) => tracing::info!(
            role = R::NAME, %member, public_key = %key, database = %db,
            "{what}: register the member with these, then start it with `ordo {} --config FILE`",
            R::NAME
        ),
        _ => tracing::info!(
            role = R::NAME, database = %db,
            "{what}: start the nodes with `ordo {} --config FILE`",
            R::NAME
        ),
    }
    if !args.register_with.is_empty() {
        register::<R>(&config, &report, &args.register_with).await?;
    }
    if args.json {
        let line = serde_json::to_string(&report)
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("encoding the init report: {e}")))?;
        println!("{line}");
    }
    Ok(())
}

/// `init --register-with URL…`: adds the member to topology through the topology
/// manager's admin API, with the token in [`REGISTER_TOKEN_ENV`] and the node's own
/// `[tls]` client certificate for `https://` endpoints. Idempotent, like `init`: a member
/// already registered with the same key is left as it is.
async fn register<R: Role>(
    config: &R::Config,
    report: &InitReport,
    endpoints: &[String],
) -> Result<(), Failure> {
    if report.member.is_none() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--register-with: the {} is not a member of the domain; only the mediator and \
             participants register",
            R::NAME
        )));
    }
    if R::NAME == "topology" {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--register-with: the topology manager does not register with itself; register \
             the mediator and the participants with it"
        )));
    }
    let token = std::env::var(REGISTER_TOKEN_ENV).map_err(|_| {
        Failure::Usage(anyhow::anyhow!(
            "--register-with needs the topology manager's admin token in {REGISTER_TOKEN_ENV}"
        ))
    })?;
    let tls = match R::tls(config) {
        Some(t) => Some(
            ordo_node::tls::ClientTls::of_node(t)
                .map_err(|e| Failure::Usage(anyhow::anyhow!("[tls] of the {}: {e}", R::NAME)))?,
        ),
        None => None,
    };
    let member = crate::up::register::Member::from_report(report).map_err(Failure::Runtime)?;
    let mut registrar =
        crate::up::register::Registrar::connect_with(endpoints, &token, tls.as_ref())
            .map_err(Failure::Usage)?;
    registrar
        .register(&member, R::shard(config))
        .await
        .map_err(Failure::Runtime)?;
    tracing::info!(
        role = R::NAME,
        member = %member.member,
        shard = R::shard(config).unwrap_or(""),
        "registered with the topology manager"
    );
    Ok(())
}

/// Where `init --register-with` takes the topology manager's admin token from.
pub const REGISTER_TOKEN_ENV: &str = "ORDO_TOPOLOGY_ADMIN_TOKEN";

async fn run<R: Role>(config: R::Config) -> Result<(), Failure> {
    let b = R::basics(&config);
    let (name, grpc, http) = (b.node_name.to_owned(), b.grpc_listen, b.http_listen);
    // Bind before anything else so that a taken port fails fast, naming the address.
    let listeners = R::bind(&config).await.map_err(|e| {
        Failure::Runtime(anyhow::anyhow!(
            "cannot listen on grpc_listen {grpc} / http_listen {http}: {e}; choose free \
             addresses (--grpc-listen, --http-listen)"
        ))
    })?;
    tracing::info!(
        role = R::NAME,
        node = %name,
        %grpc,
        %http,
        database = %ordo_sequencer::redact_url(b.database_url),
        "starting"
    );
    let shutdown = crate::shutdown_signal()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("cannot install signal handlers: {e}")))?;
    let hint_config = config.clone();
    R::run(config, listeners, shutdown)
        .await
        .map_err(|e| failure::<R>(e, &hint_config))?;
    tracing::info!(role = R::NAME, node = %name, "stopped");
    Ok(())
}

/// The libraries' errors already say what to do, except a database that cannot be reached,
/// where only the operator's side knows which setting to look at.
fn failure<R: Role>(e: R::Error, config: &R::Config) -> Failure {
    match R::kind(&e) {
        ErrorKind::Config => Failure::Usage(e.into()),
        ErrorKind::Database => Failure::Runtime(anyhow::anyhow!(
            "{e}; check that Postgres is up and reachable at {} (database_url, \
             {}DATABASE_URL or --database-url)",
            ordo_sequencer::redact_url(R::basics(config).database_url),
            R::ENV_PREFIX
        )),
        ErrorKind::Other => Failure::Runtime(e.into()),
    }
}
