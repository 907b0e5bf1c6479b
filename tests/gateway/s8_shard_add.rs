//! A third shard added to the running network while a load of transfers runs through the
//! gateway. Four clients each move an Iou back and forth between a party on shard-1 and
//! one on shard-2 (`/v1/exercise`, then `/v1/fetch` as the new owner until its shard shows
//! it) while `ordo admin shard add --name shard-3 --replicas 2` (the real binary) runs, and
//! a little longer. Every load request answers 200. Then a party allocated with
//! `"shard": "shard-3"` and one allocated with no shard both land on shard-3 (the new shard
//! hosts the fewest parties), and an Iou travels from the issuer on shard-1 to a shard-3
//! party, on to shard-2, back to shard-3, to shard-1 and back to shard-3, every party's
//! query showing where it is.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ordo_testkit::wait_for;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::harness::{CROSS_SHARD, Env, IOU};

/// Load clients, each with its own Iou and two holders.
const CLIENTS: usize = 4;
/// The issuer of every Iou here (shard-1).
const ISSUER: &str = "s8-bank";
/// How long `ordo admin shard add` may take.
const ADD_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the load may take, after the add, to complete another transfer per client.
const AFTER_ADD: Duration = Duration::from_secs(60);
/// How long the gateway may take to route to a shard network.json lists.
const FOLLOW: Duration = Duration::from_secs(15);

/// The load's requests: how many were sent, the transfers committed, and every client's
/// failure (a client stops at its first one: a request answered other than 200).
#[derive(Default)]
struct Load {
    requests: AtomicUsize,
    transfers: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Load {
    /// `POST path` as `token`, counted; the result of a 200, anything else an error.
    async fn post(&self, env: &Env, path: &str, token: &str, body: &Value) -> Result<Value> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        match env.post(path, Some(token), body).await {
            Ok(a) if a.status == 200 => Ok(a.result),
            Ok(a) => anyhow::bail!("POST {path} {body}: HTTP {}: {}", a.status, a.errors),
            Err(e) => Err(e.context(format!("POST {path} {body}"))),
        }
    }

    /// Client `c`'s transfers until `stop`; its failure, if any, recorded.
    async fn client(&self, env: &Env, c: usize, cid: String, stop: &AtomicBool) {
        if let Err(e) = self.transfers(env, c, cid, stop).await {
            self.failures.lock().push(format!("client {c}: {e:#}"));
        }
    }

    /// Client `c`'s Iou back and forth between its holders until `stop`.
    async fn transfers(
        &self,
        env: &Env,
        c: usize,
        mut cid: String,
        stop: &AtomicBool,
    ) -> Result<()> {
        let (mut owner, mut other) = holders(c);
        while !stop.load(Ordering::SeqCst) {
            let moved = self
                .post(
                    env,
                    "/v1/exercise",
                    &env.party(&owner)?,
                    &transfer(&cid, &other),
                )
                .await?;
            cid = moved["exerciseResult"]
                .as_str()
                .with_context(|| format!("no new Iou id in {moved}"))?
                .to_owned();
            std::mem::swap(&mut owner, &mut other);
            // The new owner's shard commits moments after the submitter's.
            let token = env.party(&owner)?;
            let deadline = Instant::now() + CROSS_SHARD;
            loop {
                let fetched = self
                    .post(env, "/v1/fetch", &token, &json!({ "contractId": cid }))
                    .await?;
                if !fetched.is_null() {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "{owner}'s shard does not show {cid}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            self.transfers.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// Client `c`'s holders: one on shard-1, one on shard-2.
fn holders(c: usize) -> (String, String) {
    (format!("s8-a{c}"), format!("s8-b{c}"))
}

fn transfer(cid: &str, to: &str) -> Value {
    json!({"templateId": IOU, "contractId": cid, "choice": "Transfer",
           "argument": {"newOwner": to}})
}

async fn allocate(env: &Env, hint: &str, shard: Option<&str>) -> Result<String> {
    let mut body = json!({ "identifierHint": hint });
    if let Some(s) = shard {
        body["shard"] = s.into();
    }
    let allocated = env.ok("/v1/parties/allocate", &env.admin()?, &body).await?;
    Ok(allocated["shard"].as_str().unwrap_or_default().to_owned())
}

/// `party` holds `cid` as its shard shows it: the party's query lists it.
async fn holds(env: &Env, party: &str, cid: &str) -> Result<()> {
    let token = env.party(party)?;
    wait_for(&format!("{party} to hold {cid}"), CROSS_SHARD, || async {
        let ious = env.ious(&token).await.ok()?;
        ious.iter()
            .any(|(c, o)| c == cid && o == party)
            .then_some(())
    })
    .await
}

/// `owner` transfers `cid` to `to`; the new Iou, once `to`'s shard shows it.
async fn hand_over(env: &Env, cid: &str, owner: &str, to: &str) -> Result<String> {
    let moved = env
        .ok("/v1/exercise", &env.party(owner)?, &transfer(cid, to))
        .await?;
    let new = moved["exerciseResult"]
        .as_str()
        .with_context(|| format!("no new Iou id in {moved}"))?
        .to_owned();
    holds(env, to, &new).await?;
    ensure!(
        env.ious(&env.party(owner)?).await?.is_empty(),
        "{owner} still holds an Iou after handing {cid} to {to}"
    );
    Ok(new)
}

/// `ordo admin shard add --name NAME --replicas 2 --json` on the suite's network file.
async fn shard_add(network_file: &Path, name: &str) -> Result<Value> {
    let out = tokio::time::timeout(
        ADD_TIMEOUT,
        tokio::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(["admin", "shard", "add", "--name", name, "--replicas", "2"])
            .arg("--json")
            .arg("--network")
            .arg(network_file)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("ordo admin shard add did not finish")??;
    ensure!(
        out.status.success(),
        "ordo admin shard add: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

pub async fn run(env: &Env) -> Result<()> {
    let started = Instant::now();
    ensure!(allocate(env, ISSUER, Some("shard-1")).await? == "shard-1");
    let bank = env.party(ISSUER)?;
    let mut ious = Vec::new();
    for c in 0..CLIENTS {
        let (a, b) = holders(c);
        allocate(env, &a, Some("shard-1")).await?;
        allocate(env, &b, Some("shard-2")).await?;
        let iou = env
            .ok(
                "/v1/create",
                &bank,
                &json!({"templateId": IOU, "payload":
                    {"issuer": ISSUER, "owner": a, "currency": "CHF", "amount": "10"}}),
            )
            .await?;
        let cid = iou["contractId"].as_str().context("contractId")?.to_owned();
        holds(env, &a, &cid).await?;
        ious.push(cid);
    }

    // The load, the shard added meanwhile, and a little more load.
    let load = Arc::new(Load::default());
    let stop = Arc::new(AtomicBool::new(false));
    let clients = ious.into_iter().enumerate().map(|(c, cid)| {
        let (load, stop) = (load.clone(), stop.clone());
        async move { load.client(env, c, cid, &stop).await }
    });
    let loaded = futures::future::join_all(clients);
    let adding = async {
        let before = load.transfers.load(Ordering::SeqCst);
        let add_started = Instant::now();
        let added = shard_add(&env.network.path, "shard-3").await;
        let took = add_started.elapsed();
        let during = load.transfers.load(Ordering::SeqCst) - before;
        let after = wait_for(
            "every load client to transfer again after the add",
            AFTER_ADD,
            || async {
                let n = load.transfers.load(Ordering::SeqCst);
                let failed = !load.failures.lock().is_empty();
                (failed || n >= before + during + 2 * CLIENTS).then_some(n)
            },
        )
        .await;
        stop.store(true, Ordering::SeqCst);
        (added, took, during, after)
    };
    let (_, (added, took, during, after)) = tokio::join!(loaded, adding);
    let failures = load.failures.lock().clone();
    ensure!(
        failures.is_empty(),
        "load requests failed ({} sent): {failures:#?}",
        load.requests.load(Ordering::SeqCst)
    );
    let added = added?;
    after?;
    println!(
        "s8: shard-3 added in {took:.1?} while {during} transfers committed; {} load \
         requests, {} transfers, all 200",
        load.requests.load(Ordering::SeqCst),
        load.transfers.load(Ordering::SeqCst)
    );
    ensure!(added["shard"] == "shard-3", "{added}");
    let replicas: Vec<(&str, &str)> = added["replicas"]
        .as_array()
        .context("replicas")?
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or(""),
                r["role"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let mut names: Vec<&str> = replicas.iter().map(|r| r.0).collect();
    names.sort_unstable();
    ensure!(names == ["participant-3-a", "participant-3-b"], "{added}");
    ensure!(
        replicas.iter().filter(|r| r.1 == "active").count() == 1,
        "{added}"
    );

    // Placement on the new shard, explicit (once the gateway follows network.json) and by
    // the least-loaded policy.
    let admin = env.admin()?;
    let carol = wait_for("the gateway to route to shard-3", FOLLOW, || async {
        let a = env
            .post(
                "/v1/parties/allocate",
                Some(&admin),
                &json!({"identifierHint": "s8-carol", "shard": "shard-3"}),
            )
            .await
            .ok()?;
        (a.status == 200).then_some(a.result)
    })
    .await?;
    ensure!(carol["shard"] == "shard-3", "{carol}");
    let dave = allocate(env, "s8-dave", None).await?;
    ensure!(
        dave == "shard-3",
        "s8-dave went to {dave}, not the new shard"
    );
    allocate(env, "s8-erin", Some("shard-2")).await?;
    allocate(env, "s8-frank", Some("shard-1")).await?;

    // An Iou across the old and new shards: 1 → 3 → 2 → 3 → 1 → 3.
    let iou = env
        .ok(
            "/v1/create",
            &bank,
            &json!({"templateId": IOU, "payload":
                {"issuer": ISSUER, "owner": "s8-carol", "currency": "JPY", "amount": "500"}}),
        )
        .await?;
    let mut cid = iou["contractId"].as_str().context("contractId")?.to_owned();
    holds(env, "s8-carol", &cid).await?;
    for (owner, to) in [
        ("s8-carol", "s8-erin"),
        ("s8-erin", "s8-dave"),
        ("s8-dave", "s8-frank"),
        ("s8-frank", "s8-carol"),
    ] {
        cid = hand_over(env, &cid, owner, to).await?;
    }
    for party in ["s8-dave", "s8-erin", "s8-frank"] {
        ensure!(
            env.ious(&env.party(party)?).await?.is_empty(),
            "{party} still holds an Iou"
        );
    }
    // The issuer sees the one JPY Iou, held by carol.
    let jpy = json!({"templateIds": [IOU], "query": {"currency": "JPY"}});
    let held = env.ok("/v1/query", &bank, &jpy).await?;
    let owners: Vec<&str> = held
        .as_array()
        .context("query result")?
        .iter()
        .map(|c| c["payload"]["owner"].as_str().unwrap_or(""))
        .collect();
    ensure!(owners == ["s8-carol"], "{held}");
    println!("s8: done in {:.1?}", started.elapsed());
    Ok(())
}
