//! What `ordo up` keeps in the data directory across runs: secrets (`DIR/admin-token`,
//! `DIR/topology-admin-token`, `DIR/replica-admin-token`, `DIR/control-token`, the Ledger
//! API token signing key `DIR/token-signing-key.pem`; owner-only files; the public half
//! `DIR/token-public-key.pem`), keys (`DIR/keys/<member>.key`), and each node's
//! config (`DIR/config/<name>.toml`, one per replica, and `gateway.toml`). A config from an
//! earlier run is reused — an edit the operator made to it stays — and only what `ordo up`
//! owns is refreshed: the database URL (the private Postgres may get another port), the
//! listen addresses (kept when still free), the sequencer and topology endpoints, tokens,
//! ids, the replica's name, and the gateway's network and cache files.
//!
//! The replicas of one service (`topology-a`, `topology-b`) share its database, its key
//! and its `node_name` (they are one member); they differ in `[replica] name` and ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use ordo_core::MemberId;
use ordo_gateway::GatewayConfig;
use ordo_lease::ReplicaConfig;
use ordo_mediator::MediatorConfig;
use ordo_node::tls::TlsConfig;
use ordo_participant::auth::{LedgerClaims, TokenSigner};
use ordo_participant::{AuthConfig, ParticipantConfig};
use ordo_sequencer::SequencerConfig;
use ordo_topology::TopologyConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::shards::Shard;
use super::write_private;
use crate::node::{Role, Step};
use crate::roles::{Mediator, Participant, Sequencer, Topology};

/// Tokens and the Ledger API token key, made once per data directory.
pub struct Secrets {
    pub sequencer_admin: String,
    pub topology_admin: String,
    /// The Ed25519 key (PKCS#8 PEM, owner-only) the operator's tools sign Ledger API
    /// tokens with; no node holds it.
    pub token_signing_key: PathBuf,
    /// Its public half (PEM), which participants and gateways verify tokens with.
    pub token_public_key: PathBuf,
    /// The bearer token of every replica's `POST /admin/step-down`, and its file (the
    /// replicas read it from there: `[replica] admin_token_file`).
    pub replica_admin: String,
    pub replica_admin_file: PathBuf,
    /// The password of the private Postgres's `ordo` role.
    pub postgres: String,
    /// The bearer token of `ordo up`'s own control API (`ordo admin shard add` reads it
    /// from [`CONTROL_TOKEN`] next to network.json).
    pub control: String,
}

const REPLICA_ADMIN_TOKEN: &str = "replica-admin-token";
const TOKEN_SIGNING_KEY: &str = "token-signing-key.pem";
const TOKEN_PUBLIC_KEY: &str = "token-public-key.pem";
/// How long the token a gateway's cache reads with is valid; `ordo up` writes a fresh one
/// every quarter of it and the gateway picks the file up when it changes.
pub const FEED_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// The control API's token file, in the data directory (next to network.json).
pub const CONTROL_TOKEN: &str = "control-token";

impl Secrets {
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let (token_signing_key, token_public_key) = token_keys(dir)?;
        Ok(Self {
            sequencer_admin: secret(dir, "admin-token")?,
            topology_admin: secret(dir, "topology-admin-token")?,
            token_signing_key,
            token_public_key,
            replica_admin: secret(dir, REPLICA_ADMIN_TOKEN)?,
            replica_admin_file: dir.join(REPLICA_ADMIN_TOKEN),
            control: secret(dir, CONTROL_TOKEN)?,
            postgres: secret(dir, "postgres-password")?,
        })
    }

    /// What signs Ledger API tokens.
    pub fn token_signer(&self) -> anyhow::Result<TokenSigner> {
        TokenSigner::from_file(&self.token_signing_key, "EdDSA").map_err(anyhow::Error::msg)
    }
}

/// The token signing key and its public half: the ones in `dir`, or new ones.
fn token_keys(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let signing = dir.join(TOKEN_SIGNING_KEY);
    let public = dir.join(TOKEN_PUBLIC_KEY);
    if signing.exists() && public.exists() {
        // A key the operator made readable to others is refused, not replaced.
        TokenSigner::from_file(&signing, "EdDSA").map_err(anyhow::Error::msg)?;
        return Ok((signing, public));
    }
    let key = ordo_core::KeyPair::generate();
    write_private(&signing, key.to_pkcs8_pem()?.as_bytes())?;
    std::fs::write(&public, key.public().to_pem()?)
        .with_context(|| format!("writing {}", public.display()))?;
    Ok((signing, public))
}

/// Writes `DIR/<gateway>-cache-token` (owner-only): a token with `readAsAnyParty` valid
/// for [`FEED_TOKEN_LIFETIME`], the one the gateway's cache reads every shard with.
pub fn write_feed_token(dir: &Path, gateway: &str, secrets: &Secrets) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{gateway}-cache-token"));
    let claims = LedgerClaims {
        read_as_any_party: true,
        ..Default::default()
    };
    let (token, _) = secrets
        .token_signer()?
        .mint_for(&claims, FEED_TOKEN_LIFETIME)
        .map_err(anyhow::Error::msg)?;
    write_private(&path, token.as_bytes())?;
    Ok(path)
}

impl Secrets {
    /// The verification side of the token keys, for participants and gateways.
    pub fn token_auth(&self) -> AuthConfig {
        AuthConfig {
            algorithm: "EdDSA".into(),
            key_file: Some(self.token_public_key.clone()),
            ..Default::default()
        }
    }
}

fn secret(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Ok(t) = std::fs::read_to_string(&path)
        && !t.trim().is_empty()
    {
        return Ok(t.trim().to_owned());
    }
    let token = hex::encode(rand::random::<[u8; 24]>());
    write_private(&path, token.as_bytes())?;
    Ok(token)
}

/// Every node's database URL. A shard's database is made when the shard is (see
/// [`Databases::shard`]).
pub struct Databases {
    /// A URL of the server that new databases are created through.
    server: String,
    pub sequencer: String,
    pub topology: String,
    pub mediator: String,
}

impl Databases {
    /// Creates the missing databases on the server of `server_url` (a URL of any database
    /// there the user may create databases from). `sequencer` is used as given.
    pub async fn ensure(server_url: &str, sequencer: String) -> anyhow::Result<Self> {
        let mut dbs = Self {
            server: server_url.to_owned(),
            sequencer,
            topology: String::new(),
            mediator: String::new(),
        };
        dbs.topology = dbs.database("ordo_topology").await?;
        dbs.mediator = dbs.database("ordo_mediator").await?;
        Ok(dbs)
    }

    /// The database of shard `number` (`ordo_shard_<number>`), created when missing.
    pub async fn shard(&self, number: u32) -> anyhow::Result<String> {
        self.database(&format!("ordo_shard_{number}")).await
    }

    /// The URL of database `name` on the server, created when missing.
    async fn database(&self, name: &str) -> anyhow::Result<String> {
        let mut conn = connect(&self.server).await?;
        ensure_database(&mut conn, name).await.with_context(|| {
            format!(
                "cannot create database {name} on {} (create it, or let the user CREATEDB)",
                ordo_sequencer::redact_url(&self.server)
            )
        })?;
        Ok(with_database(&self.server, name))
    }
}

async fn connect(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.with_context(|| {
        format!(
            "cannot connect to Postgres at {}",
            ordo_sequencer::redact_url(url)
        )
    })
}

async fn ensure_database(conn: &mut sqlx::PgConnection, name: &str) -> anyhow::Result<()> {
    let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        // `name` is one of ours ([a-z0-9_]), never user input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// `url` with its database (the path) replaced by `db`, keeping the query.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The config of `name` from an earlier run (and whether there was one), or the default.
fn previous<C: DeserializeOwned + Default>(dir: &Path, name: &str) -> anyhow::Result<(C, bool)> {
    let path = config_path(dir, name);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let config = toml::from_str(&text).with_context(|| {
                format!(
                    "cannot reuse {}; fix it, or delete it to have a fresh one written",
                    path.display()
                )
            })?;
            Ok((config, true))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((C::default(), false)),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `name`'s config, owner-only: configs hold admin tokens and the token secret.
fn save<C: Serialize>(dir: &Path, name: &str, config: &C) -> anyhow::Result<PathBuf> {
    let path = config_path(dir, name);
    write_private(&path, toml::to_string(config)?.as_bytes())?;
    Ok(path)
}

pub fn config_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("config").join(format!("{name}.toml"))
}

fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("keys").join(format!("{name}.key"))
}

/// The addresses handed out by this process, with the node each went to. A port is only
/// checked free, not held, until its node binds it, so two nodes must never be handed the
/// same one.
static ASSIGNED: Mutex<BTreeMap<SocketAddr, String>> = Mutex::new(BTreeMap::new());

/// For node `name`: the previous address when the earlier run had one and it is still
/// free, else a fresh free port on 127.0.0.1 (so endpoints stay the same across runs where
/// they can); never one handed to another node.
fn address(name: &str, previous: Option<SocketAddr>) -> SocketAddr {
    let mut assigned = ASSIGNED.lock().unwrap_or_else(PoisonError::into_inner);
    let available = |a: &SocketAddr, assigned: &BTreeMap<SocketAddr, String>| {
        assigned.get(a).is_none_or(|owner| owner == name)
    };
    let addr = previous
        .filter(|a| {
            a.ip().is_loopback()
                && available(a, &assigned)
                && std::net::TcpListener::bind(a).is_ok()
        })
        .unwrap_or_else(|| {
            loop {
                let fresh = ordo_testkit::free_addr();
                if !assigned.contains_key(&fresh) {
                    break fresh;
                }
            }
        });
    assigned.insert(addr, name.to_owned());
    addr
}

/// Loads `name`'s config (or the default), gives it listen addresses, lets `set` refresh
/// what `ordo up` owns, validates it as a start would and writes it.
fn refresh<R: Role>(
    dir: &Path,
    name: &str,
    set: impl FnOnce(&mut R::Config),
) -> anyhow::Result<(R::Config, PathBuf)> {
    let (mut config, existed) = previous::<R::Config>(dir, name)?;
    let (grpc, http) = R::listen_mut(&mut config);
    *grpc = address(name, existed.then_some(*grpc));
    *http = address(name, existed.then_some(*http));
    set(&mut config);
    R::validate(&config, Step::Run).with_context(|| format!("the config of {name}"))?;
    let path = save(dir, name, &config)?;
    Ok((config, path))
}

pub fn sequencer(
    dir: &Path,
    i: usize,
    url: &str,
    secrets: &Secrets,
    tls: Option<TlsConfig>,
) -> anyhow::Result<(SequencerConfig, PathBuf)> {
    let name = format!("sequencer-{i}");
    refresh::<Sequencer>(dir, &name, |c| {
        c.tls = tls;
        c.node_name = name.clone();
        c.database_url = url.to_owned();
        c.admin_token = secrets.sequencer_admin.clone();
    })
}

/// The `[replica]` section `ordo up` owns: the replica's name and the admin token file.
/// The timing (ttl, renew period, safety margin) stays as the file has it.
fn replica(c: &mut ReplicaConfig, name: &str, secrets: &Secrets) {
    c.name = name.to_owned();
    c.admin_token_file = Some(secrets.replica_admin_file.clone());
}

/// The config of topology manager replica `name` (`topology-a`, …).
pub fn topology(
    dir: &Path,
    name: &str,
    url: &str,
    sequencers: &[String],
    secrets: &Secrets,
    tls: Option<TlsConfig>,
) -> anyhow::Result<(TopologyConfig, PathBuf)> {
    refresh::<Topology>(dir, name, |c| {
        c.tls = tls;
        c.node_name = "topology".into();
        c.database_url = url.to_owned();
        c.key_file = key_path(dir, "topology");
        c.sequencers = sequencers.to_vec();
        c.sequencer_admin_token = secrets.sequencer_admin.clone();
        c.admin_token = secrets.topology_admin.clone();
        replica(&mut c.replica, name, secrets);
    })
}

/// The config of mediator replica `name` (`mediator-a`, …).
pub fn mediator(
    dir: &Path,
    name: &str,
    url: &str,
    sequencers: &[String],
    topology_manager: &MemberId,
    secrets: &Secrets,
    tls: Option<TlsConfig>,
) -> anyhow::Result<(MediatorConfig, PathBuf)> {
    refresh::<Mediator>(dir, name, |c| {
        c.tls = tls;
        c.node_name = "mediator".into();
        c.database_url = url.to_owned();
        c.key_file = key_path(dir, "mediator");
        c.sequencers = sequencers.to_vec();
        c.topology_manager = Some(topology_manager.clone());
        replica(&mut c.replica, name, secrets);
    })
}

/// What a participant's config refers to outside itself.
#[derive(Clone)]
pub struct ParticipantLinks {
    pub sequencers: Vec<String>,
    pub topology_manager: MemberId,
    /// Every topology manager replica's admin endpoint, `https://host:port` (`http://`
    /// with `--insecure`).
    pub topology_admin: Vec<String>,
}

/// The config of replica `name` (`participant-1-a`, …) of `shard`'s participant.
pub fn participant(
    dir: &Path,
    shard: &Shard,
    name: &str,
    url: &str,
    links: &ParticipantLinks,
    secrets: &Secrets,
    tls: Option<TlsConfig>,
) -> anyhow::Result<(ParticipantConfig, PathBuf)> {
    let member = shard.member();
    refresh::<Participant>(dir, name, |c| {
        c.tls = tls;
        c.node_name = member.clone();
        c.shard = shard.name();
        c.database_url = url.to_owned();
        c.key_file = key_path(dir, &member);
        c.sequencers = links.sequencers.clone();
        c.topology_manager = links.topology_manager.to_string();
        c.topology_admin = links.topology_admin.clone();
        // With TLS the participant calls the topology manager as itself (its certificate
        // names it), so it holds no token that could change the domain.
        c.topology_admin_token = if c.tls.is_some() {
            String::new()
        } else {
            secrets.topology_admin.clone()
        };
        c.auth = AuthConfig {
            audience: std::mem::take(&mut c.auth.audience),
            issuer: std::mem::take(&mut c.auth.issuer),
            ..secrets.token_auth()
        };
        replica(&mut c.replica, name, secrets);
    })
}

/// The config of gateway `name` (`gateway-1`): it routes by `network_file` (network.json,
/// which it follows as shards are added), keeps its cache in `DIR/<name>-cache.sqlite`,
/// verifies tokens with the public key and reads with the token `ordo up` keeps fresh in
/// `DIR/<name>-cache-token`: it holds nothing that could mint a token.
pub fn gateway(
    dir: &Path,
    name: &str,
    network_file: &Path,
    secrets: &Secrets,
    tls: Option<TlsConfig>,
) -> anyhow::Result<(GatewayConfig, PathBuf)> {
    let (mut c, existed) = previous::<GatewayConfig>(dir, name)?;
    c.tls = tls;
    c.auth = AuthConfig {
        audience: std::mem::take(&mut c.auth.audience),
        issuer: std::mem::take(&mut c.auth.issuer),
        ..secrets.token_auth()
    };
    c.cache.token_file = Some(write_feed_token(dir, name, secrets)?);
    c.http_listen = address(name, existed.then_some(c.http_listen));
    c.network_file = network_file.to_owned();
    c.cache.file = dir.join(format!("{name}-cache.sqlite"));
    c.validate()
        .with_context(|| format!("the config of {name}"))?;
    let path = save(dir, name, &c)?;
    Ok((c, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_swapped_in_the_url() {
        assert_eq!(
            with_database(
                "postgres://ordo@127.0.0.1:5432/ordo_sequencer",
                "ordo_topology"
            ),
            "postgres://ordo@127.0.0.1:5432/ordo_topology"
        );
        assert_eq!(
            with_database("postgres://u:p@db:1/seq?sslmode=require", "ordo_shard_1"),
            "postgres://u:p@db:1/ordo_shard_1?sslmode=require"
        );
        assert_eq!(
            with_database("postgresql://db", "ordo_mediator"),
            "postgresql://db/ordo_mediator"
        );
    }

    #[test]
    fn secrets_are_the_owners_only_and_the_gateway_keeps_its_port() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        let secrets = Secrets::load_or_create(dir.path()).unwrap();
        let token = dir.path().join(CONTROL_TOKEN);
        assert_eq!(std::fs::read_to_string(&token).unwrap(), secrets.control);
        for name in [
            "admin-token",
            TOKEN_SIGNING_KEY,
            REPLICA_ADMIN_TOKEN,
            CONTROL_TOKEN,
        ] {
            let mode = std::fs::metadata(dir.path().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }

        let network = dir.path().join("network.json");
        let (first, path) = gateway(dir.path(), "gateway-1", &network, &secrets, None).unwrap();
        assert_eq!(path, dir.path().join("config/gateway-1.toml"));
        assert_eq!(first.network_file, network);
        assert_eq!(first.cache.file, dir.path().join("gateway-1-cache.sqlite"));
        assert!(first.http_listen.ip().is_loopback());
        let (again, _) = gateway(dir.path(), "gateway-1", &network, &secrets, None).unwrap();
        assert_eq!(again.http_listen, first.http_listen, "a free port is kept");
        // The gateway verifies with the public key and reads with a token made for it:
        // nothing in its config can mint a token.
        assert_eq!(first.auth.algorithm, "EdDSA");
        assert!(first.auth.secret.is_empty());
        let config = std::fs::read_to_string(&path).unwrap();
        let signing = std::fs::read_to_string(&secrets.token_signing_key).unwrap();
        assert!(!config.contains("PRIVATE KEY"), "{config}");
        assert!(!config.contains(signing.lines().nth(1).unwrap()));
        let verifier = ordo_participant::auth::Authenticator::new(&first.auth).unwrap();
        let token_file = first.cache.token_file.unwrap();
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the cache token is the owner's only");
        let token = std::fs::read_to_string(token_file).unwrap();
        let rights = verifier.verify(&token).unwrap();
        assert!(rights.read_as_any_party && !rights.admin && rights.act_as.is_empty());
    }

    #[test]
    fn a_config_is_reused_with_its_edits_and_refreshed_addresses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        let secrets = Secrets::load_or_create(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(
                Secrets::load_or_create(dir.path())
                    .unwrap()
                    .token_signing_key
            )
            .unwrap(),
            std::fs::read(&secrets.token_signing_key).unwrap(),
            "secrets are made once"
        );
        let seqs = vec!["http://127.0.0.1:1".to_owned()];
        let (first, path) = topology(
            dir.path(),
            "topology-a",
            "postgres://o@h:1/ordo_topology",
            &seqs,
            &secrets,
            None,
        )
        .unwrap();
        assert_ne!(first.grpc_listen, first.http_listen);
        assert_eq!(first.admin_token, secrets.topology_admin);
        assert_eq!(first.node_name, "topology");
        assert_eq!(first.replica.name, "topology-a");
        assert_eq!(
            first.replica.admin_token_file.as_deref(),
            Some(dir.path().join("replica-admin-token").as_path())
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("replica-admin-token")).unwrap(),
            secrets.replica_admin
        );
        // The other replica: same member, key and database; its own name, file and ports.
        let (other, other_path) = topology(
            dir.path(),
            "topology-b",
            "postgres://o@h:1/ordo_topology",
            &seqs,
            &secrets,
            None,
        )
        .unwrap();
        assert_ne!(other_path, path);
        assert_eq!(
            (
                other.node_name.as_str(),
                &other.key_file,
                &other.database_url
            ),
            (
                first.node_name.as_str(),
                &first.key_file,
                &first.database_url
            )
        );
        assert_eq!(other.replica.name, "topology-b");
        assert_ne!(other.grpc_listen, first.grpc_listen);
        // An operator's edit survives; the database URL is refreshed.
        let edited = std::fs::read_to_string(&path)
            .unwrap()
            .replace("pool_size = 4", "pool_size = 7");
        std::fs::write(&path, edited).unwrap();
        let (second, _) = topology(
            dir.path(),
            "topology-a",
            "postgres://o@h:2/ordo_topology",
            &seqs,
            &secrets,
            None,
        )
        .unwrap();
        assert_eq!(second.pool_size, 7);
        assert_eq!(second.database_url, "postgres://o@h:2/ordo_topology");
        assert_eq!(second.key_file, first.key_file);
        // Free addresses are kept.
        assert_eq!(second.grpc_listen, first.grpc_listen);
        // A broken file is named, not overwritten.
        std::fs::write(&path, "pool_size = \"many\"").unwrap();
        let err = topology(
            dir.path(),
            "topology-a",
            "postgres://o@h:2/x",
            &seqs,
            &secrets,
            None,
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("topology-a.toml"), "{err:#}");
    }
}
