//! Many concurrent writers on two nodes (group commits of several sends), while a live
//! reader on each node watches: both see the same gap-free, duplicate-free order.

use anyhow::Result;
use ordo_proto::sequencer::v1 as pb;

use crate::harness::*;

const TASKS_PER_NODE: usize = 4;
const BATCHES: usize = 10;
const PER_BATCH: usize = 5;
const TOTAL: usize = 2 * TASKS_PER_NODE * BATCHES * PER_BATCH;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_two_nodes_give_one_gap_free_order() -> Result<()> {
    let net = start_net("burst", 2).await?;
    let alice = member(&net.nodes[0], "alice").await?;
    let bob = member(&net.nodes[1], "bob").await?;

    let mut live = Vec::new();
    for n in &net.nodes {
        let (grpc, id, token) = (n.grpc, bob.id.clone(), bob.token.clone());
        live.push(tokio::spawn(async move {
            let m = Member {
                id,
                key: ordo_core::KeyPair::generate(),
                token,
            };
            collect(&Node::detached(grpc), &m, 0, TOTAL).await
        }));
    }

    let mut writers = Vec::new();
    for (ni, n) in net.nodes.iter().enumerate() {
        for t in 0..TASKS_PER_NODE {
            let (grpc, token, to) = (n.grpc, alice.token.clone(), bob.id.clone());
            writers.push(tokio::spawn(async move {
                let mut c = Node::detached(grpc).seq().await?;
                let mut ts = Vec::new();
                for b in 0..BATCHES {
                    let requests = (0..PER_BATCH)
                        .map(|i| submission(&format!("n{ni}-t{t}-b{b}-{i}"), &[&to], b"x"))
                        .collect();
                    let resp = c
                        .send_batch(with_token(pb::SendBatchRequest { requests }, &token))
                        .await?;
                    for r in resp.into_inner().results {
                        match r.outcome {
                            Some(pb::send_result::Outcome::Sequenced(s)) if !s.duplicate => {
                                ts.push(s.timestamp)
                            }
                            other => anyhow::bail!("unexpected {other:?}"),
                        }
                    }
                }
                anyhow::Ok(ts)
            }));
        }
    }
    let mut sent = Vec::new();
    for w in writers {
        sent.extend(w.await??);
    }
    sent.sort_unstable();
    sent.dedup();
    assert_eq!(sent.len(), TOTAL, "timestamps must be unique");

    let mut seen = Vec::new();
    for l in live {
        seen.push(l.await??);
    }
    assert_eq!(seen[0], seen[1]);
    assert_chain(&seen[0], 0);
    assert_eq!(
        seen[0].iter().map(|e| e.timestamp).collect::<Vec<_>>(),
        sent
    );
    assert_eq!(status(&net.nodes[0]).await?.events, TOTAL as i64);
    for n in net.nodes {
        n.stop().await?;
    }
    Ok(())
}
