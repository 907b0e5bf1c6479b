//! `init` is idempotent and race-free; `run` refuses an unprovisioned database.

use anyhow::Result;
use ordo_sequencer::{Listeners, SequencerError};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_unprovisioned_and_init_is_idempotent() -> Result<()> {
    let (pg, url) = start_pg("fresh").await?;
    let cfg = config(&url, "seq-0");
    let listeners = Listeners::bind(&cfg).await?;
    let err = ordo_sequencer::run(cfg.clone(), listeners, std::future::pending())
        .await
        .expect_err("must refuse");
    assert!(
        matches!(err, SequencerError::NotProvisioned { .. }),
        "{err:?}"
    );
    let expected = format!(
        "database {url} is not provisioned for the sequencer: run `ordo sequencer init --config FILE` first"
    );
    assert_eq!(err.to_string(), expected);

    // Two nodes initialising at once: one creates, the other finds it done.
    let cfg1 = config(&url, "seq-1");
    let (a, b) = tokio::join!(ordo_sequencer::init(&cfg), ordo_sequencer::init(&cfg1));
    let mut created = [a?.created, b?.created];
    created.sort();
    assert_eq!(created, [false, true]);
    assert!(!ordo_sequencer::init(&cfg).await?.created);

    let node = start_node(&url, "seq-0").await?;
    node.stop().await?;
    drop(pg);
    Ok(())
}
