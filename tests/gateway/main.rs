//! The JSON API gateway over HTTP against a real network: `ordo up` (real node processes),
//! the gateway in-process on 127.0.0.1:0, driven with a real HTTP client (reqwest) and a
//! real WebSocket client (tokio-tungstenite).
//!
//! One network serves the whole suite (it is about fifteen processes); the numbered
//! modules run in order on it, each on its own parties.

mod harness;
#[allow(dead_code)] // the HA suite's network harness; this suite uses `Net::start`
#[path = "../ha/harness.rs"]
mod net;

mod s10_limits;
mod s11_python_reflection;
mod s12_prune;
mod s13_meta;
mod s14_range;
mod s15_keys;
mod s16_users;
mod s17_metrics;
mod s18_deploy;
mod s1_story;
mod s2_statuses;
mod s3_double_spend;
mod s4_cache;
mod s5_two_gateways;
mod s6_stream;
mod s7_openapi;
mod s8_shard_add;
mod s9_unavailable;

use std::path::Path;

use harness::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_over_http() -> anyhow::Result<()> {
    let mut env = Env::start(Path::new(env!("CARGO_BIN_EXE_ordo"))).await?;
    let outcome = async {
        s1_story::run(&env).await?;
        s2_statuses::run(&env).await?;
        s3_double_spend::run(&env).await?;
        s4_cache::run(&mut env).await?;
        s5_two_gateways::run(&env).await?;
        s6_stream::run(&env).await?;
        s7_openapi::run(&env).await?;
        s8_shard_add::run(&env).await?;
        // Before s9, which takes shard-3 down for a while.
        s10_limits::run(&env).await?;
        s11_python_reflection::run(&env).await?;
        s12_prune::run(&env).await?;
        s13_meta::run(&env).await?;
        s14_range::run(&env).await?;
        s15_keys::run(&env).await?;
        s16_users::run(&env).await?;
        // After the others' traffic, before s9 takes a shard down.
        s17_metrics::run(&env).await?;
        s18_deploy::run(&env).await?;
        s9_unavailable::run(&mut env).await?;
        anyhow::Ok(())
    }
    .await;
    let logs = env.stop().await;
    outcome.map_err(|e| anyhow::anyhow!("{e:#}\n--- ordo up's output:\n{logs}"))
}
