//! Abuse resistance at the edges. A token making requests as fast as it can is answered
//! 429 with `Retry-After` while another token's p99 latency stays within twice its
//! unloaded value. A 100 MiB gRPC message to a sequencer and to a participant, and a
//! 100 MiB request body to the JSON API, are refused before they are read: the peak memory
//! of the process that got them does not grow by anything like their size.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use ordo_gateway::GatewayConfig;
use ordo_node::limits::Rate;
use serde_json::json;

use crate::harness::{Env, Gateway, IOU};

/// The flooding token's allowance per second (and its burst).
const RATE: u32 = 50;
const FLOODERS: usize = 8;
const SAMPLES: usize = 200;
const PACE: Duration = Duration::from_millis(20);
const ROUNDS: usize = 3;
const HUNDRED_MIB: usize = 100 * 1024 * 1024;
/// How much a refused 100 MiB message may raise the receiver's peak memory.
const GROWTH_LIMIT_KIB: u64 = 32 * 1024;

pub async fn run(env: &Env) -> Result<()> {
    refused_tokens(env).await?;
    flooding_token(env).await?;
    oversized_messages(env).await
}

/// Every kind of bad token is refused with its reason: on the JSON API of a gateway that
/// requires an audience and an issuer (401, or 403 for a party the token does not cover),
/// and on a participant's Ledger API (UNAUTHENTICATED).
async fn refused_tokens(env: &Env) -> Result<()> {
    const AUD: &str = "ordo-json-api";
    const ISS: &str = "https://issuer.s10.test";
    let admin = env.admin()?;
    for party in ["s10-flood", "s10-quiet"] {
        env.ok(
            "/v1/parties/allocate",
            &admin,
            &json!({ "identifierHint": party }),
        )
        .await?;
    }
    let mut config = GatewayConfig {
        network_file: env.network.path.clone(),
        ..Default::default()
    };
    config.cache.file = env.dir().join("gateway-s10-auth-cache.sqlite");
    config.auth.audience = AUD.into();
    config.auth.issuer = ISS.into();
    // Its cache's token must satisfy the gateway too.
    let signer = env.network.token_signer()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let cache_token = signer
        .sign(&json!({ "readAsAnyParty": true, "aud": AUD, "iss": ISS, "exp": now + 600 }))
        .map_err(anyhow::Error::msg)?;
    let token_file = env.dir().join("gateway-s10-auth.token");
    ordo_testkit::write_secret(&token_file, &cache_token)?;
    config.cache.token_file = Some(token_file);
    let mut gateway = Gateway::start_with(config, &env.http).await?;
    let outcome = async {
        let api = gateway.api(&env.http);
        let good = json!({ "actAs": ["s10-quiet"], "aud": AUD, "iss": ISS, "exp": now + 600 });
        let sign = |claims: &serde_json::Value| signer.sign(claims).map_err(anyhow::Error::msg);
        let query = json!({ "templateIds": [IOU] });
        let a = api.post("/v1/query", Some(&sign(&good)?), &query).await?;
        ensure!(a.status == 200, "a good token: {a:?}");
        let mut bad = bad_tokens(&signer, &good, now)?;
        bad.push((
            sign(&with(&good, "aud", json!("another-api")))?,
            "wrong audience",
        ));
        bad.push((
            sign(&with(&good, "iss", json!("https://elsewhere.test")))?,
            "wrong issuer",
        ));
        for (token, reason) in bad {
            let a = api.post("/v1/query", Some(&token), &query).await?;
            ensure!(
                a.status == 401 && a.errors.contains(reason),
                "expected 401 naming {reason:?}: {a:?}"
            );
        }
        // A good token for one party, creating a contract another party must sign.
        let a = api
            .post(
                "/v1/create",
                Some(&sign(&good)?),
                &json!({ "templateId": IOU, "payload": {
                    "issuer": "s10-flood", "owner": "s10-quiet", "currency": "EUR", "amount": "1.00"
                }}),
            )
            .await?;
        ensure!(
            a.status == 403,
            "creating as a party the token does not cover: {a:?}"
        );
        anyhow::Ok(())
    }
    .await;
    gateway.stop().await?;
    outcome?;

    // The Ledger API of a participant (no audience or issuer configured there).
    use ordo_proto::ledger::v1 as ledger;
    let network = ordo_ledger_client::Network::load(&env.network.path)?;
    let replica = network.replicas("shard-1")[0];
    let channel =
        ordo_node::tls::channel(&replica.grpc, ordo_node::tls::trusted().as_ref(), |e| e).await?;
    let claims = json!({ "actAs": ["s10-quiet"], "exp": now + 600 });
    for (token, reason) in bad_tokens(&signer, &claims, now)? {
        let mut req = tonic::Request::new(ledger::GetLedgerEndRequest {});
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        let refused = ledger::state_service_client::StateServiceClient::new(channel.clone())
            .get_ledger_end(req)
            .await
            .expect_err("a bad token was accepted");
        ensure!(
            refused.code() == tonic::Code::Unauthenticated && refused.message().contains(reason),
            "expected UNAUTHENTICATED naming {reason:?}: {refused:?}"
        );
    }
    Ok(())
}

/// `claims` with `key` set to `value`.
fn with(claims: &serde_json::Value, key: &str, value: serde_json::Value) -> serde_json::Value {
    let mut claims = claims.clone();
    claims[key] = value;
    claims
}

/// Tokens spoilt in each way every verifier refuses (expired, not yet valid, without `exp`,
/// signed by another key), each with the words its refusal must contain; `good` holds the
/// claims of a token `signer` makes that is accepted.
fn bad_tokens(
    signer: &ordo_participant::auth::TokenSigner,
    good: &serde_json::Value,
    now: u64,
) -> Result<Vec<(String, &'static str)>> {
    let mut without_exp = good.clone();
    without_exp.as_object_mut().context("claims")?.remove("exp");
    let other_key = ordo_core::KeyPair::generate();
    let stranger = ordo_participant::auth::TokenSigner::ed25519_pem(&other_key.to_pkcs8_pem()?)
        .map_err(anyhow::Error::msg)?;
    [
        (
            signer.sign(&with(good, "exp", json!(now - 3600))),
            "has expired",
        ),
        (
            signer.sign(&with(good, "nbf", json!(now + 3600))),
            "not valid yet",
        ),
        (signer.sign(&without_exp), "required claim `exp`"),
        (stranger.sign(good), "signature"),
    ]
    .into_iter()
    .map(|(token, reason)| Ok((token.map_err(anyhow::Error::msg)?, reason)))
    .collect()
}

async fn flooding_token(env: &Env) -> Result<()> {
    let mut config = GatewayConfig {
        network_file: env.network.path.clone(),
        ..Default::default()
    };
    config.cache.file = env.dir().join("gateway-s10-cache.sqlite");
    config.limits.token_requests = Rate::new(RATE, RATE);
    let mut gateway = Gateway::start_with(config, &env.http).await?;
    let outcome = measure(env, &gateway).await;
    gateway.stop().await?;
    outcome
}

async fn measure(env: &Env, gateway: &Gateway) -> Result<()> {
    let flood_token = env.party("s10-flood")?;
    let quiet_token = env.party("s10-quiet")?;
    let url = format!("{}/v1/query", gateway.base);
    let body = json!({ "templateIds": [IOU] });
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let unloaded = p99(env, &url, &quiet_token, &body).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, refused, hinted) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let mut flooders = Vec::new();
        for _ in 0..FLOODERS {
            let (http, url, token, body) = (
                env.http.clone(),
                url.clone(),
                flood_token.clone(),
                body.clone(),
            );
            let (stop, ok, refused, hinted) =
                (stop.clone(), ok.clone(), refused.clone(), hinted.clone());
            flooders.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await?;
                    match r.status().as_u16() {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => {
                            if r.headers().get("retry-after").is_some() {
                                hinted.fetch_add(1, Ordering::Relaxed);
                            }
                            refused.fetch_add(1, Ordering::Relaxed)
                        }
                        other => anyhow::bail!("flooder: HTTP {other}: {}", r.text().await?),
                    };
                }
                anyhow::Ok(())
            }));
        }
        let started = Instant::now();
        let loaded = p99(env, &url, &quiet_token, &body).await?;
        stop.store(true, Ordering::Relaxed);
        for f in flooders {
            f.await??;
        }
        let elapsed = started.elapsed();
        let (ok, refused, hinted) = (
            ok.load(Ordering::Relaxed),
            refused.load(Ordering::Relaxed),
            hinted.load(Ordering::Relaxed),
        );
        let ratio = loaded.as_secs_f64() / unloaded.as_secs_f64();
        println!(
            "s10 round {round}: quiet token p99 {unloaded:?} unloaded, {loaded:?} loaded (×{ratio:.2}); \
             flooding token {ok} served, {refused} refused in {elapsed:?}"
        );
        ensure!(
            refused > 0 && hinted == refused,
            "{refused} refused, {hinted} with Retry-After"
        );
        let allowed = (elapsed.as_secs_f64() * f64::from(RATE)) as u64 + u64::from(RATE) + 5;
        ensure!(
            ok <= allowed,
            "the flooding token was served {ok} times in {elapsed:?}"
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ROUNDS / 2];
    ensure!(
        median <= 2.0,
        "the quiet token's p99 under the flood is ×{median:.2} its unloaded value ({ratios:?})"
    );
    Ok(())
}

async fn p99(env: &Env, url: &str, token: &str, body: &serde_json::Value) -> Result<Duration> {
    let mut latencies = Vec::with_capacity(SAMPLES);
    let mut ticker = tokio::time::interval(PACE);
    for _ in 0..SAMPLES {
        ticker.tick().await;
        let sent = Instant::now();
        let r = env
            .http
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await?;
        ensure!(r.status() == 200, "the quiet token got {}", r.status());
        r.bytes().await?;
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    Ok(latencies[SAMPLES * 99 / 100])
}

/// Resets the peak resident memory of process `pid` to its current size (Linux: `5` to
/// `clear_refs`), and returns it, in KiB.
fn reset_peak(pid: u32) -> Result<u64> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
        .with_context(|| format!("resetting the peak memory of {pid}"))?;
    peak_kib(pid)
}

/// Peak resident memory of process `pid` (`VmHWM`), in KiB.
fn peak_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM")
}

async fn oversized_messages(env: &Env) -> Result<()> {
    use ordo_proto::ledger::v1 as ledger;
    use ordo_proto::sequencer::v1 as seq;
    let tls = ordo_node::tls::trusted();

    // The JSON API (in this process): a 100 MiB body sent in chunks, without a length.
    let before = reset_peak(std::process::id())?;
    let chunk = bytes::Bytes::from(vec![b' '; 1024 * 1024]);
    let chunks =
        futures::stream::iter((0..100).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = env
        .http
        .post(format!("{}/v1/create", env.base))
        .bearer_auth(env.party("s10-quiet")?)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    // The gateway answers 413 as soon as the limit is passed; it may close the connection
    // before the client finished sending, which the client reports as an error.
    if let Ok(r) = r {
        ensure!(r.status() == 413, "a 100 MiB body got {}", r.status());
    }
    let grew = peak_kib(std::process::id())?.saturating_sub(before);
    println!("s10: gateway process peak memory +{grew} KiB after a refused 100 MiB body");
    ensure!(
        grew < GROWTH_LIMIT_KIB,
        "the gateway's process peak memory grew {grew} KiB"
    );
    // A sequencer: a 100 MiB Send, refused from its length prefix, before authentication.
    let sequencer = &env.network.sequencers[0];
    let pid = sequencer.pid.context("the sequencer's pid")?;
    let before = reset_peak(pid)?;
    let channel = ordo_node::tls::channel(&sequencer.grpc, tls.as_ref(), |e| e).await?;
    let mut client = seq::sequencer_service_client::SequencerServiceClient::new(channel)
        .max_encoding_message_size(usize::MAX);
    let huge = seq::SubmissionRequest {
        message_id: "s10-huge".into(),
        envelopes: vec![seq::Envelope {
            recipients: None,
            content: vec![7; HUNDRED_MIB],
        }],
        ..Default::default()
    };
    let refused = client
        .send(huge)
        .await
        .expect_err("a 100 MiB send was taken");
    ensure!(refused.code() == tonic::Code::OutOfRange, "{refused:?}");
    let grew = peak_kib(pid)?.saturating_sub(before);
    println!(
        "s10: sequencer peak memory +{grew} KiB after a refused 100 MiB message ({refused:?})"
    );
    ensure!(
        grew < GROWTH_LIMIT_KIB,
        "the sequencer's peak memory grew {grew} KiB"
    );

    // A participant: a 100 MiB command.
    // The active replica (roles have moved since the suite started).
    let network = ordo_ledger_client::Network::load(&env.network.path)?;
    let replica = network.replicas("shard-1")[0];
    let pid = replica.pid.context("the participant's pid")?;
    let before = reset_peak(pid)?;
    let channel = ordo_node::tls::channel(&replica.grpc, tls.as_ref(), |e| e).await?;
    let mut client = ledger::command_service_client::CommandServiceClient::new(channel)
        .max_encoding_message_size(usize::MAX);
    let huge = ledger::SubmitAndWaitRequest {
        commands: Some(ledger::Commands {
            command_id: "x".repeat(HUNDRED_MIB),
            ..Default::default()
        }),
    };
    let refused = client
        .submit_and_wait(huge)
        .await
        .expect_err("a 100 MiB command was taken");
    ensure!(refused.code() == tonic::Code::OutOfRange, "{refused:?}");
    let grew = peak_kib(pid)?.saturating_sub(before);
    println!("s10: participant peak memory +{grew} KiB after a refused 100 MiB message");
    ensure!(
        grew < GROWTH_LIMIT_KIB,
        "the participant's peak memory grew {grew} KiB"
    );

    Ok(())
}
