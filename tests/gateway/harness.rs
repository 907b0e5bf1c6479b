//! `ordo up` in a temporary directory, the gateway in-process (with its cache in that
//! directory; it can be stopped and started again on the same file, and a second one with
//! its own cache started beside it), and an HTTP client whose calls check the answer's
//! shape (`{"status": N, "result"|"errors"}`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ordo_gateway::GatewayConfig;
use ordo_ledger_client::Network;
use ordo_testkit::wait_for;

use crate::net::Net;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const IOU: &str = "iou:Iou";
pub const PACKAGE: &[u8] = include_bytes!("../../examples/packages/iou.toml");
/// How long a transaction committed on one shard may take to show on another.
pub const CROSS_SHARD: Duration = Duration::from_secs(20);
/// How long a gateway may take to become ready (its cache filled from the shards).
const READY: Duration = Duration::from_secs(60);

pub struct Env {
    /// The network; stopped when the environment is dropped.
    net: Net,
    pub network: Network,
    /// The gateway's base URL (it changes when the gateway is restarted).
    pub base: String,
    pub http: reqwest::Client,
    /// The gateway's cache file.
    pub cache_file: PathBuf,
    gateway: Option<Gateway>,
}

/// A gateway running in-process on 127.0.0.1:0.
pub struct Gateway {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ordo_gateway::GatewayError>>>,
}

impl Gateway {
    /// Starts a gateway routing by `network_file` with its cache in `cache_file`, and waits
    /// until it is ready.
    pub async fn start(
        network_file: &Path,
        cache_file: &Path,
        http: &reqwest::Client,
    ) -> Result<Self> {
        let mut config = GatewayConfig {
            network_file: network_file.to_owned(),
            // Streams skip heartbeats but for the one check that waits for one.
            websocket_heartbeat: Duration::from_secs(1),
            ..Default::default()
        };
        config.cache.file = cache_file.to_owned();
        Self::start_with(config, http).await
    }

    /// Starts a gateway with `config` (its `http_listen` is ignored: 127.0.0.1:0), and
    /// waits until it is ready. Without a `cache.token_file`, one is written next to the
    /// cache file with a `readAsAnyParty` token minted by the network's operator key.
    pub async fn start_with(mut config: GatewayConfig, http: &reqwest::Client) -> Result<Self> {
        if config.cache.token_file.is_none() {
            let network = ordo_ledger_client::Network::load(&config.network_file)?;
            let token = network.mint_token(&ordo_participant::auth::LedgerClaims {
                read_as_any_party: true,
                ..Default::default()
            })?;
            let file = config.cache.file.with_extension("token");
            ordo_testkit::write_secret(&file, token)?;
            config.cache.token_file = Some(file);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ordo_gateway::run(config, listener, async {
            let _ = stopped.await;
        }));
        let readyz = format!("{base}/readyz");
        wait_for("the gateway's /readyz", READY, || async {
            let r = http.get(&readyz).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await?;
        Ok(Self {
            base,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops the gateway and waits until it has (its cache closed and unlocked).
    pub async fn stop(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }

    /// The HTTP calls to this gateway.
    pub fn api<'a>(&'a self, http: &'a reqwest::Client) -> Api<'a> {
        Api {
            base: &self.base,
            http,
        }
    }
}

/// An answer: the HTTP status and the body's `result` (or its `errors`, joined).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub result: Value,
    pub errors: String,
    /// The failure's error code (docs/errors.md); empty on success.
    pub code: String,
}

impl Env {
    pub async fn start(ordo: &Path) -> Result<Self> {
        let net = Net::start(ordo).await?;
        let network = net.network.clone();
        let cache_file = net.dir.path().join("gateway-cache.sqlite");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let gateway = Gateway::start(&network.path, &cache_file, &http).await?;
        Ok(Self {
            net,
            network,
            base: gateway.base.clone(),
            http,
            cache_file,
            gateway: Some(gateway),
        })
    }

    /// The network `ordo up` runs (its replicas, signals to them, restarts).
    pub fn net(&mut self) -> &mut Net {
        &mut self.net
    }

    /// The temporary directory the network and the cache live in.
    pub fn dir(&self) -> &Path {
        self.net.dir.path()
    }

    /// Stops the gateway (it must stop cleanly).
    pub async fn stop_gateway(&mut self) -> Result<()> {
        match self.gateway.take() {
            Some(mut g) => g.stop().await,
            None => Ok(()),
        }
    }

    /// Starts the gateway again, on the same cache file (stopping it first if it runs).
    pub async fn restart_gateway(&mut self) -> Result<()> {
        self.stop_gateway().await?;
        let gateway = Gateway::start(&self.network.path, &self.cache_file, &self.http).await?;
        self.base = gateway.base.clone();
        self.gateway = Some(gateway);
        Ok(())
    }

    /// Stops the gateway and the network; ordo up's output.
    pub async fn stop(&mut self) -> String {
        let stopped = self.stop_gateway().await;
        self.net.stop(Duration::from_secs(60));
        match stopped {
            Err(e) => format!("the gateway failed: {e:#}\n{}", self.net.up_log()),
            Ok(()) => self.net.up_log(),
        }
    }

    pub fn admin(&self) -> Result<String> {
        Ok(self.network.admin_token()?)
    }

    pub fn party(&self, party: &str) -> Result<String> {
        Ok(self.network.party_token(&[party])?)
    }

    /// The HTTP calls to the gateway.
    pub fn api(&self) -> Api<'_> {
        Api {
            base: &self.base,
            http: &self.http,
        }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Answer> {
        self.api().post(path, token, body).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Result<Answer> {
        self.api().post_raw(path, token, body).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Answer> {
        self.api().get(path, token).await
    }

    /// `POST` that must succeed; its result.
    pub async fn ok(&self, path: &str, token: &str, body: &Value) -> Result<Value> {
        self.api().ok(path, token, body).await
    }

    /// The active Ious `token` sees, as (contract id, owner) pairs, sorted.
    pub async fn ious(&self, token: &str) -> Result<Vec<(String, String)>> {
        self.api().ious(token).await
    }

    /// Every allocated party's identifier, as `GET /v1/parties` lists them.
    pub async fn parties(&self) -> Result<Vec<String>> {
        let listed = self.get("/v1/parties", Some(&self.admin()?)).await?;
        Ok(listed
            .result
            .as_array()
            .context("party list")?
            .iter()
            .filter_map(|p| p["identifier"].as_str().map(str::to_owned))
            .collect())
    }
}

/// The calls to one gateway.
pub struct Api<'a> {
    pub base: &'a str,
    http: &'a reqwest::Client,
}

impl Api<'_> {
    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Answer> {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await?).await
    }

    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Result<Answer> {
        let mut req = self.http.post(format!("{}{path}", self.base)).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await?).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Answer> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        answer(req.send().await?).await
    }

    /// `POST` that must succeed; its result.
    pub async fn ok(&self, path: &str, token: &str, body: &Value) -> Result<Value> {
        let a = self.post(path, Some(token), body).await?;
        ensure!(a.status == 200, "POST {}{path} {body}: {a:?}", self.base);
        Ok(a.result)
    }

    /// The active Ious `token` sees, as (contract id, owner) pairs, sorted.
    pub async fn ious(&self, token: &str) -> Result<Vec<(String, String)>> {
        let result = self
            .ok(
                "/v1/query",
                token,
                &serde_json::json!({ "templateIds": [IOU] }),
            )
            .await?;
        let mut ious: Vec<(String, String)> = result
            .as_array()
            .context("query result is not a list")?
            .iter()
            .map(|c| {
                (
                    c["contractId"].as_str().unwrap_or_default().to_owned(),
                    c["payload"]["owner"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        ious.sort();
        Ok(ious)
    }

    /// The gateway's Prometheus text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }
}

async fn answer(r: reqwest::Response) -> Result<Answer> {
    let status = r.status().as_u16();
    let body: Value = r.json().await.context("the answer is not JSON")?;
    ensure!(
        body["status"] == status,
        "the body's status is not the HTTP status {status}: {body}"
    );
    let errors = match body.get("errors") {
        Some(Value::Array(errors)) => {
            ensure!(
                status >= 400 && !errors.is_empty(),
                "errors on {status}: {body}"
            );
            errors
                .iter()
                .map(|e| e.as_str().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("; ")
        }
        _ => {
            ensure!(
                status == 200 && body.get("result").is_some(),
                "no result: {body}"
            );
            String::new()
        }
    };
    Ok(Answer {
        status,
        result: body.get("result").cloned().unwrap_or(Value::Null),
        errors,
        code: body["code"].as_str().unwrap_or_default().to_owned(),
    })
}

/// The contract ids of a `/v1/query` result.
pub fn contract_ids(answer: &Value) -> BTreeSet<String> {
    answer
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["contractId"].as_str().map(str::to_owned))
        .collect()
}
