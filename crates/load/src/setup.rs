//! Setup, not measured: the Iou package, the run's parties (named by the run's prefix, so
//! runs on one network never collide), the clients and their connections, and the Ious
//! each client starts with. Everything goes through the run's route (`--via`); waiting for
//! every shard to know the package and the parties asks the shards' Ledger API.
//!
//! Parties: one issuer, `{prefix}-issuer`, on the first shard; one party per client,
//! `{prefix}-c{i}`. In a pure `issue` run the clients' parties are the holders, spread
//! over the other shards; otherwise they are spread over every shard in turn.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ordo_ledger_client::cli::IOU_PACKAGE;
use ordo_ledger_client::{LedgerClient, Network};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::Code;

use crate::client::{Client, Peer, Shared};
use crate::error::LoadError;
use crate::options::{LoadOptions, Mix, Via};
use crate::progress::Bar;
use crate::route::grpc::GrpcConn;
use crate::route::http::{Body, HttpApi, HttpConn};
use crate::route::{Conn, Failure};
use crate::stats::Recorder;

/// How long setup waits for the shards to agree on packages and parties, and for the
/// clients' first Ious to show.
const SETUP_WAIT: Duration = Duration::from_secs(120);
/// Setup calls in flight at once.
const SETUP_CONCURRENCY: usize = 8;

/// Where the route reaches the ledger.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Grpc,
    /// The gateway's base URL.
    Http(String),
}

impl Target {
    /// The target of `via` on `network`: `--via http` needs a gateway in the file.
    pub(crate) fn of(network: &Network, via: Via) -> Result<Self, LoadError> {
        match via {
            Via::Grpc => Ok(Target::Grpc),
            Via::Http => network
                .gateways
                .iter()
                .find(|g| !g.http.is_empty())
                .map(|g| Target::Http(g.http.clone()))
                .ok_or_else(|| LoadError::Network {
                    path: network.path.clone(),
                    reason: "--via http needs a JSON API gateway, and the file lists none \
                             under `gateways` (`ordo up` lists gateway-1 once it is ready; \
                             or use --via grpc)"
                        .into(),
                }),
        }
    }

    /// A connection of its own acting as `party` (hosted on `shard`).
    fn connect(&self, network: &Network, shard: &str, party: &str) -> Result<Conn, LoadError> {
        let failed = |f: Failure| LoadError::Gateway {
            what: format!("a client for {party}"),
            reason: f.message,
        };
        match self {
            Target::Grpc => GrpcConn::new(network, shard, party)
                .map(|c| Conn::Grpc(Box::new(c)))
                .map_err(LoadError::ledger(format!(
                    "a client of {shard} for {party}"
                ))),
            Target::Http(base) => {
                let token = network
                    .party_token(&[party])
                    .map_err(LoadError::ledger(format!("a token for {party}")))?;
                HttpConn::new(base, party, token)
                    .map(Conn::Http)
                    .map_err(failed)
            }
        }
    }
}

/// The shard of each client's party.
pub(crate) fn homes(shards: &[String], clients: usize, mix: &Mix) -> Vec<String> {
    let spread: &[String] = if mix.holds_ious() || shards.len() < 2 {
        shards
    } else {
        &shards[1..]
    };
    (0..clients)
        .map(|i| spread[i % spread.len()].clone())
        .collect()
}

/// The clients, ready to run, and what they share.
pub(crate) async fn prepare(
    network: &Network,
    opts: &LoadOptions,
    target: &Target,
    recorder: Arc<Recorder>,
    bar: &Bar,
) -> Result<Vec<Client>, LoadError> {
    let shards = network.shards();
    if shards.len() < 2 {
        return Err(LoadError::Network {
            path: network.path.clone(),
            reason: format!(
                "every scenario moves Ious across shards, and the file lists {} shard(s) \
                 ({}); `ordo admin shard add` adds one",
                shards.len(),
                shards.join(", ")
            ),
        });
    }
    let prefix = opts.prefix();
    let issuer = format!("{prefix}-issuer");
    let homes = homes(&shards, opts.clients, &opts.mix);
    let peers: Vec<Peer> = homes
        .iter()
        .enumerate()
        .map(|(i, shard)| Peer {
            party: format!("{prefix}-c{i}"),
            shard: shard.clone(),
        })
        .collect();
    let mut parties = vec![(issuer.clone(), shards[0].clone())];
    parties.extend(peers.iter().map(|p| (p.party.clone(), p.shard.clone())));

    bar.status(&format!(
        "setup: the iou package and {} parties",
        parties.len()
    ));
    let admin = Admin::new(network, target).await?;
    admin.upload().await?;
    futures::stream::iter(&parties)
        .map(|(party, shard)| admin.allocate(party, shard))
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    agree(network, &shards, &parties).await?;

    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..opts.clients).map(|_| mpsc::unbounded_channel()).unzip();
    let shared = Arc::new(Shared {
        holders: (0..opts.clients)
            .filter(|i| peers[*i].shard != shards[0])
            .collect(),
        peers,
        inboxes: senders,
        issuer: issuer.clone(),
        mix: opts.mix,
        prefix: format!("{prefix}-m"),
        timeout: opts.timeout,
        open_loop: opts.rate.is_some(),
        recorder,
        running: AtomicUsize::new(opts.clients),
        offers: AtomicUsize::new(0),
    });
    let mut clients = Vec::with_capacity(opts.clients);
    for (i, inbox) in receivers.into_iter().enumerate() {
        let peer = &shared.peers[i];
        clients.push(Client::new(
            i,
            target.connect(network, &peer.shard, &peer.party)?,
            target.connect(network, &shards[0], &issuer)?,
            inbox,
            StdRng::seed_from_u64(rand::random()),
            shared.clone(),
        ));
    }
    if opts.mix.holds_ious() {
        let k = opts.ious_per_client;
        bar.status(&format!(
            "setup: {k} Ious for each of {} clients",
            opts.clients
        ));
        let setup_issuer = target.connect(network, &shards[0], &issuer)?;
        let owners: Vec<(String, String)> = (0..opts.clients * k)
            .map(|n| {
                let owner = shared.peers[n % opts.clients].party.clone();
                (owner, format!("{prefix}-setup-{n}"))
            })
            .collect();
        futures::stream::iter(&owners)
            .map(|(owner, command_id)| issue(&setup_issuer, owner, command_id))
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        let fills = clients.iter_mut().map(|c| fill(c, k));
        futures::future::try_join_all(fills).await?;
    }
    Ok(clients)
}

/// Issues one Iou to `owner`, trying again (with a new command id) while a shard may
/// still be learning about the parties.
async fn issue(issuer: &Conn, owner: &str, command_id: &str) -> Result<(), LoadError> {
    let mut last = None;
    for attempt in 0..5 {
        match issuer
            .create_iou(owner, &format!("{command_id}-{attempt}"))
            .await
        {
            Ok(_) => return Ok(()),
            Err(f) => last = Some(f),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let f = last.map(|f| format!("{}: {}", f.kind, f.message));
    Err(LoadError::Setup(format!(
        "issuing an Iou to {owner} failed: {}",
        f.unwrap_or_default()
    )))
}

/// Waits until the client's shard shows its first `k` Ious.
async fn fill(client: &mut Client, k: usize) -> Result<(), LoadError> {
    let deadline = Instant::now() + SETUP_WAIT;
    loop {
        let _ = client.refresh().await;
        if client.pool.len() >= k {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LoadError::Setup(format!(
                "client {}'s shard shows {} of its {k} Ious after {SETUP_WAIT:?}",
                client.index,
                client.pool.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every shard has the Iou package and knows every party of the run.
async fn agree(
    network: &Network,
    shards: &[String],
    parties: &[(String, String)],
) -> Result<(), LoadError> {
    let deadline = Instant::now() + SETUP_WAIT;
    for shard in shards {
        let client = network
            .client_for_shard(shard)
            .await
            .map_err(LoadError::ledger(format!("connecting to {shard}")))?;
        loop {
            if knows_all(&client, parties).await {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LoadError::Setup(format!(
                    "{shard} does not know the iou package and the run's {} parties after \
                     {SETUP_WAIT:?}",
                    parties.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn knows_all(client: &LedgerClient, parties: &[(String, String)]) -> bool {
    let (Ok(packages), Ok(known)) = (client.list_packages().await, client.list_parties().await)
    else {
        return false;
    };
    packages.iter().any(|p| p.name == "iou")
        && parties
            .iter()
            .all(|(party, shard)| known.iter().any(|k| &k.party == party && &k.shard == shard))
}

/// Package upload and party allocation through the run's route, with an admin token.
enum Admin {
    /// A client of each shard, in the file's order.
    Grpc(BTreeMap<String, LedgerClient>),
    Http {
        api: HttpApi,
        token: String,
    },
}

impl Admin {
    async fn new(network: &Network, target: &Target) -> Result<Self, LoadError> {
        Ok(match target {
            Target::Grpc => {
                let mut clients = BTreeMap::new();
                for shard in network.shards() {
                    let client = network
                        .client_for_shard(&shard)
                        .await
                        .map_err(LoadError::ledger(format!("connecting to {shard}")))?;
                    clients.insert(shard, client);
                }
                Admin::Grpc(clients)
            }
            Target::Http(base) => Admin::Http {
                api: HttpApi::new(base).map_err(|f| LoadError::Gateway {
                    what: "an HTTP client".into(),
                    reason: f.message,
                })?,
                token: network
                    .admin_token()
                    .map_err(LoadError::ledger("minting an admin token"))?,
            },
        })
    }

    /// Uploads the Iou package; a package named iou already there is fine (the same one
    /// is taken as it is; another one under that name is refused and used as it is).
    async fn upload(&self) -> Result<(), LoadError> {
        match self {
            Admin::Grpc(clients) => {
                let Some(client) = clients.values().next() else {
                    return Ok(());
                };
                match client.upload_package(IOU_PACKAGE.as_bytes().to_vec()).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.code() == Code::AlreadyExists => Ok(()),
                    Err(e) => Err(LoadError::ledger("uploading the iou package")(e)),
                }
            }
            Admin::Http { api, token } => {
                let body = Body::Raw(IOU_PACKAGE.as_bytes());
                match api.post("/v1/packages", token, body).await {
                    Ok(_) => Ok(()),
                    Err(f) if f.kind == "HTTP_409" => Ok(()),
                    Err(f) => Err(LoadError::Gateway {
                        what: "uploading the iou package".into(),
                        reason: format!("{}: {}", f.kind, f.message),
                    }),
                }
            }
        }
    }

    async fn allocate(&self, party: &str, shard: &str) -> Result<(), LoadError> {
        let what = || format!("allocating {party} on {shard}");
        match self {
            Admin::Grpc(clients) => {
                let client = clients.get(shard).ok_or_else(|| {
                    LoadError::Setup(format!("{} is not a shard of the network", shard))
                })?;
                client
                    .allocate_party(party)
                    .await
                    .map(|_| ())
                    .map_err(LoadError::ledger(what()))
            }
            Admin::Http { api, token } => {
                let body = json!({"identifierHint": party, "shard": shard});
                api.post("/v1/parties/allocate", token, Body::Json(&body))
                    .await
                    .map(|_| ())
                    .map_err(|f| LoadError::Gateway {
                        what: what(),
                        reason: format!("{}: {}", f.kind, f.message),
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Scenario;

    #[test]
    fn holders_of_an_issue_run_live_off_the_issuers_shard() {
        let shards: Vec<String> = ["shard-1", "shard-2", "shard-3"].map(String::from).to_vec();
        let issue = Mix::of(Scenario::Issue, Mix::default());
        assert_eq!(homes(&shards, 3, &issue), ["shard-2", "shard-3", "shard-2"]);
        let transfer = Mix::of(Scenario::Transfer, Mix::default());
        assert_eq!(
            homes(&shards, 4, &transfer),
            ["shard-1", "shard-2", "shard-3", "shard-1"]
        );
    }
}
