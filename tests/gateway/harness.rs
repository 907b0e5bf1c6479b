//! `ordo up` in a temporary directory, the gateway in-process, and an HTTP client whose
//! calls check the answer's shape (`{"status": N, "result"|"errors"}`).

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

pub struct Env {
    /// The network; stopped when the environment is dropped.
    net: Net,
    pub network: Network,
    pub base: String,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    gateway: Option<JoinHandle<Result<(), ordo_gateway::GatewayError>>>,
}

/// An answer: the HTTP status and the body's `result` (or its `errors`, joined).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub result: Value,
    pub errors: String,
}

impl Env {
    pub async fn start(ordo: &Path) -> Result<Self> {
        let net = Net::start(ordo).await?;
        let file: PathBuf = net.dir.path().join("net/network.json");
        let network = net.network.clone();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let config = GatewayConfig {
            network_file: file,
            ..Default::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let gateway = tokio::spawn(ordo_gateway::run(config, listener, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let readyz = format!("{base}/readyz");
        wait_for("the gateway's /readyz", Duration::from_secs(60), || async {
            let r = http.get(&readyz).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await?;
        Ok(Self {
            net,
            network,
            base,
            http,
            stop: Some(stop),
            gateway: Some(gateway),
        })
    }

    /// Stops the gateway; ordo up's output (the network stops when `self` is dropped).
    pub async fn stop(&mut self) -> String {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(g) = self.gateway.take() {
            let _ = g.await;
        }
        self.net.up_log()
    }

    pub fn admin(&self) -> Result<String> {
        Ok(self.network.admin_token()?)
    }

    pub fn party(&self, party: &str) -> Result<String> {
        Ok(self.network.party_token(&[party])?)
    }

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
        ensure!(a.status == 200, "POST {path} {body}: {a:?}");
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
    })
}
