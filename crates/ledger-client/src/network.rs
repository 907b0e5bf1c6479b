//! `Network`: a running network as described by the `network.json` that `ordo up` writes,
//! with Ledger API tokens minted with the key its `auth` names and parties routed to their shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ordo_participant::auth::{LedgerClaims, TokenSigner, expiry_in};
use ordo_proto::admin::v1 as admin;
use serde::{Deserialize, Serialize};

use crate::client::{CONNECT_TIMEOUT, LedgerClient};
use crate::error::LedgerError;
use crate::failover::ShardClient;
use crate::types::{PartyDetails, Submission, TransactionResult};

/// Where `ordo up` writes the network file by default.
pub const DEFAULT_PATH: &str = "ordo-data/network.json";
/// The `role` of the replica that serves (`passive` for the others).
pub const ACTIVE: &str = "active";
/// The lifetime of the tokens minted here. A stream's token is checked once, when it
/// starts, so `--follow` outlives it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A node of the network. Every field is optional in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeEntry {
    pub name: String,
    /// The logical service the node is a replica of: `sequencer`, `topology`, `mediator`
    /// (empty in files of older versions).
    pub service: String,
    /// `active` or `passive` as `ordo up` last saw it (sequencers are all `active`).
    pub role: String,
    pub pid: Option<u32>,
    pub grpc: String,
    pub http: String,
    pub metrics: String,
    pub log: Option<PathBuf>,
}

/// A participant replica and the shard it serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParticipantEntry {
    pub name: String,
    pub shard: String,
    /// The logical service: the shard's name (empty in files of older versions).
    pub service: String,
    /// `active` or `passive` as `ordo up` last saw it.
    pub role: String,
    pub pid: Option<u32>,
    pub grpc: String,
    pub http: String,
    pub metrics: String,
    pub log: Option<PathBuf>,
}

/// `ordo up`'s control API (`ordo admin shard add` calls it); empty when the file names
/// none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlEntry {
    /// `http://127.0.0.1:port`.
    pub http: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostgresEntry {
    pub url: String,
    pub managed: bool,
}

/// How Ledger API tokens are made, and the admin tokens of the other APIs.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthEntry {
    /// How Ledger API tokens are signed: `EdDSA` or `RS256` with `signing_key_file`
    /// (verified with `public_key_file`), or `HS256` with `secret`; empty is taken as
    /// HS256.
    pub algorithm: String,
    pub secret: String,
    /// PEM: the private key the operator's tools sign tokens with (mode 0600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_file: Option<PathBuf>,
    /// PEM or JWKS: the public keys participants and gateways verify tokens with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<PathBuf>,
    pub sequencer_admin_token: String,
    pub topology_admin_token: String,
    /// Bearer token of the replicas' `POST /admin/step-down` (`ordo admin failover`).
    pub replica_admin_token: String,
}

impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthEntry")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A running network. Unknown fields in the file are ignored, missing ones are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Network {
    /// The file it was read from (not part of the file).
    #[serde(skip)]
    pub path: PathBuf,
    pub postgres: PostgresEntry,
    pub sequencers: Vec<NodeEntry>,
    pub topology: Vec<NodeEntry>,
    pub mediators: Vec<NodeEntry>,
    pub participants: Vec<ParticipantEntry>,
    /// The JSON API gateways (`http` each; no `grpc`).
    pub gateways: Vec<NodeEntry>,
    pub control: ControlEntry,
    pub auth: AuthEntry,
    /// The network's CA and the operator's certificate: every node serves TLS
    /// (`https://` endpoints). Absent when the network runs in plain text
    /// (`ordo up --insecure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsEntry>,
}

/// Where a network's TLS files are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsEntry {
    /// PEM: the CA that signed every node's certificate.
    pub ca: PathBuf,
    /// PEM: the operator's client certificate (node-to-node services require one), and
    /// its key (mode 0600).
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Network {
    /// Reads a network file (a missing one means the network is not running), and trusts
    /// its CA for the process's calls ([`Network::trust_tls`]).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| LedgerError::NetworkFile {
            path: path.to_owned(),
            reason: if e.kind() == std::io::ErrorKind::NotFound {
                "not found: is the network running? `ordo up --data-dir DIR` starts one and \
                 writes DIR/network.json once every node is ready"
                    .into()
            } else {
                e.to_string()
            },
        })?;
        let network = Self::parse(&text, path)?;
        network.trust_tls()?;
        Ok(network)
    }

    /// Parses the text of a network file read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LedgerError> {
        let mut network: Network =
            serde_json::from_str(text).map_err(|e| LedgerError::NetworkFile {
                path: path.to_owned(),
                reason: format!("not a network file: {e}"),
            })?;
        network.path = path.to_owned();
        Ok(network)
    }

    /// A TLS client certificate for the member `name`, minted by the network's local CA
    /// (`ordo up` keeps its key next to the CA certificate): what a tool needs to act as a
    /// member it registered itself. `None` for a plain-text network.
    pub fn member_tls(&self, name: &str) -> Result<Option<ordo_tls::ClientTls>, LedgerError> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        let failed = |e: ordo_tls::TlsError| LedgerError::NetworkFile {
            path: self.path.clone(),
            reason: format!("minting a certificate for member {name}: {e}"),
        };
        let ca =
            ordo_tls::LocalCa::load(&tls.ca, &tls.ca.with_file_name("ca.key")).map_err(failed)?;
        let issued = ca
            .issue(&ordo_tls::Subject::loopback(name, Some(name)))
            .map_err(failed)?;
        ordo_tls::ClientTls::from_pem(ca.cert_pem(), Some((&issued.cert_pem, &issued.key_pem)))
            .map(Some)
            .map_err(failed)
    }

    /// Loads the network's CA and the operator's certificate (if it has them) as the TLS
    /// of this process's calls ([`ordo_tls::trust`]): a tool works against one network.
    pub fn trust_tls(&self) -> Result<(), LedgerError> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let client =
            ordo_tls::ClientTls::load(&tls.ca, Some((&tls.cert, &tls.key))).map_err(|e| {
                LedgerError::NetworkFile {
                    path: self.path.clone(),
                    reason: format!("its TLS files: {e}"),
                }
            })?;
        ordo_tls::trust(client);
        Ok(())
    }

    /// The shards, in the order the file lists their participants.
    pub fn shards(&self) -> Vec<String> {
        let mut shards: Vec<String> = Vec::new();
        for p in &self.participants {
            if !p.shard.is_empty() && !shards.contains(&p.shard) {
                shards.push(p.shard.clone());
            }
        }
        shards
    }

    /// The participant replicas serving `shard`, the one the file lists as active first
    /// (otherwise in file order).
    pub fn replicas(&self, shard: &str) -> Vec<&ParticipantEntry> {
        let mut replicas: Vec<&ParticipantEntry> = self
            .participants
            .iter()
            .filter(|p| p.shard == shard && !p.grpc.is_empty())
            .collect();
        replicas.sort_by_key(|p| p.role != ACTIVE);
        replicas
    }

    /// The topology manager's replicas, the active one first.
    pub fn topology_replicas(&self) -> Vec<&NodeEntry> {
        let mut replicas: Vec<&NodeEntry> = self
            .topology
            .iter()
            .filter(|n| !n.grpc.is_empty())
            .collect();
        replicas.sort_by_key(|n| n.role != ACTIVE);
        replicas
    }

    // --- tokens ------------------------------------------------------------------------

    /// A Ledger API token with `claims`, valid for `TOKEN_LIFETIME`.
    pub fn mint_token(&self, claims: &LedgerClaims) -> Result<String, LedgerError> {
        let exp = expiry_in(TOKEN_LIFETIME);
        self.token_signer()?
            .mint(claims, exp)
            .map_err(LedgerError::Auth)
    }

    /// What signs the network's Ledger API tokens: the key in `auth.signing_key_file`, or
    /// for an HS256 network its secret.
    pub fn token_signer(&self) -> Result<TokenSigner, LedgerError> {
        let auth = &self.auth;
        let algorithm = if auth.algorithm.is_empty() {
            "HS256"
        } else {
            auth.algorithm.as_str()
        };
        match (algorithm, &auth.signing_key_file) {
            ("HS256", _) if auth.secret.is_empty() => Err(LedgerError::Auth(format!(
                "{} has no auth.secret",
                self.path.display()
            ))),
            ("HS256", _) => Ok(TokenSigner::hs256(&auth.secret)),
            (_, Some(file)) => {
                TokenSigner::from_file(&self.path_of(file), algorithm).map_err(LedgerError::Auth)
            }
            (_, None) => Err(LedgerError::Auth(format!(
                "the network signs {algorithm} tokens and {} names no auth.signing_key_file: \
                 tokens come from its issuer",
                self.path.display()
            ))),
        }
    }

    /// `file` as named in the network file: relative to the file's directory.
    fn path_of(&self, file: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if file.is_relative() => dir.join(file),
            _ => file.to_owned(),
        }
    }

    /// An admin token (party and package management), acting as no party.
    pub fn admin_token(&self) -> Result<String, LedgerError> {
        self.mint_token(&LedgerClaims {
            admin: true,
            ..Default::default()
        })
    }

    /// A user token (Daml's form: `sub` = the user, `scope` = `daml_ledger_api`): each
    /// participant resolves it to the user's current rights.
    pub fn user_token(&self, user: &str) -> Result<String, LedgerError> {
        #[derive(serde::Serialize)]
        struct UserClaims<'a> {
            sub: &'a str,
            scope: &'a str,
            exp: u64,
        }
        self.token_signer()?
            .sign(&UserClaims {
                sub: user,
                scope: ordo_participant::auth::USER_SCOPE,
                exp: expiry_in(TOKEN_LIFETIME),
            })
            .map_err(LedgerError::Auth)
    }

    /// A token acting (and so reading) as `parties`.
    pub fn party_token(&self, parties: &[&str]) -> Result<String, LedgerError> {
        self.mint_token(&LedgerClaims {
            act_as: parties.iter().map(|p| (*p).to_owned()).collect(),
            ..Default::default()
        })
    }

    // --- clients -----------------------------------------------------------------------

    /// A client of `shard`'s active participant replica with an admin token.
    pub async fn client_for_shard(&self, shard: &str) -> Result<LedgerClient, LedgerError> {
        let token = self.admin_token()?;
        self.client_for_shard_with_token(shard, &token).await
    }

    /// A client of the participant hosting `party`, acting as that party.
    pub async fn client_for_party(&self, party: &str) -> Result<LedgerClient, LedgerError> {
        let shard = self.shard_of(party).await?;
        let token = self.party_token(&[party])?;
        self.client_for_shard_with_token(&shard, &token).await
    }

    /// A client of `shard`'s replicas that rides through failovers (see [`ShardClient`]).
    pub fn shard_client(&self, shard: &str, token: &str) -> Result<ShardClient, LedgerError> {
        let replicas = self.replicas(shard);
        if replicas.is_empty() {
            return Err(self.unknown_shard(shard));
        }
        let endpoints = replicas.iter().map(|r| r.grpc.clone()).collect();
        Ok(ShardClient::new(shard, endpoints, token))
    }

    /// Submits through `shard`'s active replica with `token`, retrying across a failover
    /// with the same command id (see [`ShardClient::submit`]).
    pub async fn submit_with_failover(
        &self,
        shard: &str,
        token: &str,
        submission: Submission,
    ) -> Result<TransactionResult, LedgerError> {
        self.shard_client(shard, token)?.submit(submission).await
    }

    fn unknown_shard(&self, shard: &str) -> LedgerError {
        LedgerError::NotFound(format!(
            "no participant serves shard {shard:?} in {} (shards: {})",
            self.path.display(),
            list_or_none(&self.shards())
        ))
    }

    /// A client of `shard`'s active replica with the given token. Replicas are tried in
    /// turn, the one the file lists as active first; a passive or unreachable one is
    /// skipped.
    pub async fn client_for_shard_with_token(
        &self,
        shard: &str,
        token: &str,
    ) -> Result<LedgerClient, LedgerError> {
        let replicas = self.replicas(shard);
        if replicas.is_empty() {
            return Err(self.unknown_shard(shard));
        }
        let mut last = None;
        for replica in replicas {
            let attempt = async {
                let client = LedgerClient::connect(&replica.grpc, token).await?;
                client.participant_id().await?;
                Ok::<_, LedgerError>(client)
            };
            match attempt.await {
                Ok(client) => return Ok(client),
                Err(e) if e.code() == tonic::Code::Unavailable => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LedgerError::NotFound(format!("shard {shard}"))))
    }

    // --- parties and shards ------------------------------------------------------------

    /// Every party with its shard: from the topology manager's admin API, or, when it is
    /// not reachable, from the first participant that answers.
    pub async fn parties(&self) -> Result<Vec<PartyDetails>, LedgerError> {
        match self.topology_parties().await {
            Ok(Some(parties)) => return Ok(parties),
            Ok(None) => {}
            Err(e) if e.code() != tonic::Code::Unavailable => return Err(e),
            Err(_) => {}
        }
        let mut last = None;
        for shard in self.shards() {
            match self.client_for_shard(&shard).await {
                Ok(client) => return client.list_parties().await,
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            LedgerError::NotFound(format!(
                "{} lists no participant to ask for parties",
                self.path.display()
            ))
        }))
    }

    /// The shard hosting `party`.
    pub async fn shard_of(&self, party: &str) -> Result<String, LedgerError> {
        self.parties()
            .await?
            .into_iter()
            .find(|p| p.party == party)
            .map(|p| p.shard)
            .ok_or_else(|| {
                LedgerError::NotFound(format!(
                    "party {party} is not allocated on this network (`ordo party list` shows \
                     the parties, `ordo party allocate {party}` allocates it)"
                ))
            })
    }

    /// The shard of the network file hosting the fewest parties (ties: the first listed).
    pub async fn least_loaded_shard(&self) -> Result<String, LedgerError> {
        let shards = self.shards();
        let Some(first) = shards.first() else {
            return Err(LedgerError::NotFound(format!(
                "{} lists no participant shard",
                self.path.display()
            )));
        };
        let mut load: BTreeMap<&str, usize> = shards.iter().map(|s| (s.as_str(), 0)).collect();
        for p in self.parties().await? {
            if let Some(n) = load.get_mut(p.shard.as_str()) {
                *n += 1;
            }
        }
        Ok(shards
            .iter()
            .min_by_key(|s| load.get(s.as_str()).copied().unwrap_or(0))
            .unwrap_or(first)
            .clone())
    }

    /// Every shard the topology manager knows, with the number of parties it hosts
    /// (`ListShards`); `Ok(None)` when the file names no topology manager.
    pub async fn shard_loads(&self) -> Result<Option<BTreeMap<String, u64>>, LedgerError> {
        self.on_topology(|mut client| async move {
            let shards = client
                .list_shards(admin::ListShardsRequest {})
                .await?
                .into_inner()
                .shards;
            Ok(shards.into_iter().map(|s| (s.shard, s.parties)).collect())
        })
        .await
    }

    /// Parties from the topology manager (`Ok(None)` when the file names none).
    async fn topology_parties(&self) -> Result<Option<Vec<PartyDetails>>, LedgerError> {
        self.on_topology(|mut client| async move {
            let r = client
                .list_parties(admin::ListPartiesRequest {
                    shard: String::new(),
                })
                .await?
                .into_inner();
            Ok(r.parties
                .into_iter()
                .map(|p| PartyDetails {
                    party: p.party,
                    shard: p.shard,
                    is_local: false,
                })
                .collect())
        })
        .await
    }

    /// Runs `call` on the topology manager's admin API (`Ok(None)` when the file names no
    /// topology manager or no token for it): each replica in turn, skipping a passive
    /// (UNAVAILABLE) or unreachable one.
    async fn on_topology<T, F, Fut>(&self, call: F) -> Result<Option<T>, LedgerError>
    where
        F: Fn(TopologyClient) -> Fut,
        Fut: Future<Output = Result<T, LedgerError>>,
    {
        let nodes = self.topology_replicas();
        let token = &self.auth.topology_admin_token;
        if nodes.is_empty() || token.is_empty() {
            return Ok(None);
        }
        let mut last = None;
        for node in nodes {
            let attempt = async { call(topology_client(&node.grpc, token).await?).await };
            match attempt.await {
                Ok(value) => return Ok(Some(value)),
                Err(e) if e.code() == tonic::Code::Unavailable => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| LedgerError::NotFound("topology manager".into())))
    }
}

type TopologyClient = admin::topology_admin_service_client::TopologyAdminServiceClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        crate::client::BearerToken,
    >,
>;

async fn topology_client(endpoint: &str, token: &str) -> Result<TopologyClient, LedgerError> {
    let tls = ordo_tls::trusted();
    let channel = ordo_tls::channel(endpoint, tls.as_ref(), |e| {
        e.connect_timeout(CONNECT_TIMEOUT)
    })
    .await
    .map_err(|e| crate::client::tls_error(endpoint, e))?;
    let bearer = crate::client::BearerToken::new(token)?;
    Ok(
        admin::topology_admin_service_client::TopologyAdminServiceClient::with_interceptor(
            channel, bearer,
        ),
    )
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use ordo_participant::AuthConfig;
    use ordo_participant::auth::Authenticator;

    use super::*;

    const FILE: &str = r#"{
      "postgres": {"url": "postgres://ordo@127.0.0.1:5432/ordo", "managed": true, "extra": 1},
      "sequencers": [{"name": "sequencer-1", "pid": 10, "grpc": "http://127.0.0.1:4001",
                      "http": "http://127.0.0.1:4002", "metrics": "http://127.0.0.1:4002/metrics",
                      "log": "/tmp/logs/sequencer-1.log"}],
      "topology": [{"name": "topology", "pid": 11, "grpc": "http://127.0.0.1:4101", "http": "", "metrics": "", "log": "x"}],
      "mediators": [],
      "participants": [
        {"name": "participant-1a", "shard": "shard-1", "pid": 12, "grpc": "http://127.0.0.1:4201", "http": "h", "metrics": "m", "log": "l", "active": true},
        {"name": "participant-2", "shard": "shard-2", "pid": null, "grpc": "http://127.0.0.1:4301"},
        {"name": "participant-1b", "shard": "shard-1", "grpc": "http://127.0.0.1:4202"}
      ],
      "gateways": [{"name": "gateway-1", "service": "gateway", "role": "active", "pid": 13,
                    "http": "http://127.0.0.1:4401", "metrics": "http://127.0.0.1:4401/metrics",
                    "log": "/tmp/logs/gateway-1.log"}],
      "control": {"http": "http://127.0.0.1:4501"},
      "auth": {"algorithm": "HS256", "secret": "s3cret-0123456789abcdef", "sequencer_admin_token": "st",
               "topology_admin_token": "tt", "issuer": "ignored"},
      "version": 2
    }"#;

    fn network() -> Network {
        Network::parse(FILE, Path::new("net/network.json")).unwrap()
    }

    #[test]
    fn parses_a_network_file_ignoring_unknown_fields() {
        let n = network();
        assert_eq!(n.path, Path::new("net/network.json"));
        assert_eq!(n.postgres.url, "postgres://ordo@127.0.0.1:5432/ordo");
        assert_eq!(n.sequencers[0].pid, Some(10));
        assert_eq!(n.topology[0].grpc, "http://127.0.0.1:4101");
        assert_eq!(n.participants.len(), 3);
        assert_eq!(n.participants[1].pid, None);
        assert_eq!(n.gateways[0].grpc, "");
        assert_eq!(
            (n.gateways[0].http.as_str(), n.gateways[0].pid),
            ("http://127.0.0.1:4401", Some(13))
        );
        assert_eq!(n.control.http, "http://127.0.0.1:4501");
        assert_eq!(n.auth.topology_admin_token, "tt");
        // Shards in file order, each once; replicas of a shard in file order.
        assert_eq!(n.shards(), vec!["shard-1", "shard-2"]);
        let names: Vec<&str> = n
            .replicas("shard-1")
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, vec!["participant-1a", "participant-1b"]);
        assert!(n.replicas("shard-9").is_empty());
    }

    #[test]
    fn replicas_are_tried_active_first() {
        let n = Network::parse(
            r#"{"topology": [{"name": "topology-a", "service": "topology", "role": "passive", "grpc": "a"},
                             {"name": "topology-b", "service": "topology", "role": "active", "grpc": "b"}],
                "participants": [
                  {"name": "participant-1-a", "shard": "shard-1", "service": "shard-1", "role": "passive", "grpc": "1a"},
                  {"name": "participant-1-b", "shard": "shard-1", "service": "shard-1", "role": "active", "grpc": "1b"},
                  {"name": "participant-2-a", "shard": "shard-2", "service": "shard-2", "role": "passive", "grpc": "2a"},
                  {"name": "participant-2-b", "shard": "shard-2", "service": "shard-2", "role": "passive", "grpc": "2b"}],
                "auth": {"replica_admin_token": "rt"}}"#,
            Path::new("n.json"),
        )
        .unwrap();
        assert_eq!(n.participants[1].service, "shard-1");
        assert_eq!(n.auth.replica_admin_token, "rt");
        let names = |v: Vec<&ParticipantEntry>| -> Vec<String> {
            v.into_iter().map(|p| p.name.clone()).collect()
        };
        assert_eq!(
            names(n.replicas("shard-1")),
            ["participant-1-b", "participant-1-a"]
        );
        // No active one known (a failover in progress): file order.
        assert_eq!(
            names(n.replicas("shard-2")),
            ["participant-2-a", "participant-2-b"]
        );
        let topology: Vec<&str> = n
            .topology_replicas()
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(topology, ["topology-b", "topology-a"]);
        let client = n.shard_client("shard-1", "t").unwrap();
        assert_eq!(client.endpoints(), ["1b", "1a"]);
        assert_eq!(
            n.shard_client("shard-9", "t").unwrap_err().code(),
            tonic::Code::NotFound
        );
    }

    #[test]
    fn a_sparse_file_parses_with_empty_sections() {
        // What `ordo up` writes while only the sequencers run.
        let n = Network::parse(
            r#"{"postgres":{"url":"u"},"sequencers":[{"name":"s","grpc":"g"}],"auth":{"sequencer_admin_token":"t"}}"#,
            Path::new("n.json"),
        )
        .unwrap();
        assert!(n.participants.is_empty() && n.shards().is_empty());
        assert!(n.gateways.is_empty() && n.control.http.is_empty());
        let e = n.admin_token().unwrap_err();
        assert!(
            matches!(&e, LedgerError::Auth(m) if m.contains("auth.secret")),
            "{e}"
        );
    }

    #[test]
    fn missing_and_malformed_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("network.json");
        let e = Network::load(&missing).unwrap_err();
        assert!(e.to_string().contains("ordo up"), "{e}");
        assert!(e.to_string().contains("network.json"), "{e}");
        std::fs::write(&missing, "[1, 2]").unwrap();
        let e = Network::load(&missing).unwrap_err();
        assert!(e.to_string().contains("not a network file"), "{e}");
        std::fs::write(&missing, FILE).unwrap();
        assert_eq!(Network::load(&missing).unwrap().shards().len(), 2);
    }

    fn authenticator(secret: &str) -> Authenticator {
        Authenticator::new(&AuthConfig {
            algorithm: "HS256".into(),
            secret: secret.into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn minted_tokens_carry_the_claims_and_verify_with_the_secret() {
        let n = network();
        let auth = authenticator(&n.auth.secret);
        let admin = auth.verify(&n.admin_token().unwrap()).unwrap();
        assert!(admin.admin);
        assert!(admin.act_as.is_empty());
        let alice = auth
            .verify(&n.party_token(&["alice", "bank"]).unwrap())
            .unwrap();
        assert!(!alice.admin);
        let names: Vec<&str> = alice.act_as.iter().map(|p| p.as_str()).collect();
        assert_eq!(names, vec!["alice", "bank"]);
        // Another network's secret does not verify them.
        assert!(
            authenticator("another-secret-0123456")
                .verify(&n.admin_token().unwrap())
                .is_err()
        );
    }

    #[test]
    fn mints_eddsa_tokens_with_the_signing_key_file() {
        let mut n = network();
        n.auth.algorithm = "EdDSA".into();
        let e = n.admin_token().unwrap_err();
        assert!(e.to_string().contains("signing_key_file"), "{e}");
        assert_eq!(e.code(), tonic::Code::Unauthenticated);

        let dir = tempfile::tempdir().unwrap();
        n.path = dir.path().join("network.json");
        let key = ordo_core::KeyPair::generate();
        let file = dir.path().join("token-signing-key.pem");
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(&file, key.to_pkcs8_pem().unwrap()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        n.auth.signing_key_file = Some("token-signing-key.pem".into());
        let token = n.party_token(&["alice"]).unwrap();
        let verifier = Authenticator::new(&AuthConfig {
            public_key_pem: key.public().to_pem().unwrap(),
            ..Default::default()
        })
        .unwrap();
        let rights = verifier.verify(&token).unwrap();
        assert_eq!(rights.act_as.len(), 1);
        assert!(rights.expires_at.is_some());
        // A signing key others may read is refused.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = n.admin_token().unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[tokio::test]
    async fn a_shard_not_in_the_file_is_not_found() {
        let e = network().client_for_shard("shard-9").await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.to_string().contains("shard-1, shard-2"), "{e}");
    }
}
