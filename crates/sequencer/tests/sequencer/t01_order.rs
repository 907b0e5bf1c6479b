//! Concurrent writers on two nodes; every reader on every node sees the same order.

use anyhow::Result;
use ordo_node::http_client;
use ordo_proto::sequencer::v1 as pb;

use crate::harness::*;

const PER_SENDER: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_deliver_one_order() -> Result<()> {
    let net = start_net("order", 2).await?;
    let (n0, n1) = (&net.nodes[0], &net.nodes[1]);
    let alice = member(n0, "alice").await?;
    let bob = member(n1, "bob").await?;
    let carol = member(n0, "carol").await?;

    // A live subscription on node 1, started before anything is sent (tail buffer path).
    let live = {
        let carol = Member {
            id: carol.id.clone(),
            key: ordo_core::KeyPair::generate(),
            token: carol.token.clone(),
        };
        let ch = n1.grpc;
        tokio::spawn(async move {
            let node = crate::harness::Node::detached(ch);
            collect(&node, &carol, 0, 2 * PER_SENDER).await
        })
    };

    let send_all = |node: &'static str, m: &Member, n: &crate::harness::Node| {
        let reqs: Vec<pb::SubmissionRequest> = (0..PER_SENDER)
            .map(|i| {
                let mut s = submission(&format!("{node}-{i}"), &[&carol.id], b"c");
                if i.is_multiple_of(5) {
                    s.envelopes = vec![pb::Envelope {
                        recipients: Some(pb::Recipients {
                            members: vec![],
                            broadcast: true,
                        }),
                        content: b"all".to_vec(),
                    }];
                }
                if i.is_multiple_of(7) {
                    s.envelopes.push(pb::Envelope {
                        recipients: Some(pb::Recipients {
                            members: vec![alice.id.clone()],
                            broadcast: false,
                        }),
                        content: b"for-alice".to_vec(),
                    });
                }
                s
            })
            .collect();
        let (token, grpc) = (m.token.clone(), n.grpc);
        async move {
            let node = crate::harness::Node::detached(grpc);
            let mut c = node.seq().await?;
            let mut out = Vec::new();
            for (i, r) in reqs.into_iter().enumerate() {
                if i.is_multiple_of(2) {
                    out.push(c.send(with_token(r, &token)).await?.into_inner().timestamp);
                } else {
                    let b = c
                        .send_batch(with_token(
                            pb::SendBatchRequest { requests: vec![r] },
                            &token,
                        ))
                        .await?;
                    match b.into_inner().results.pop().and_then(|r| r.outcome) {
                        Some(pb::send_result::Outcome::Sequenced(s)) => out.push(s.timestamp),
                        other => anyhow::bail!("unexpected {other:?}"),
                    }
                }
            }
            anyhow::Ok(out)
        }
    };
    let (a, b) = tokio::join!(send_all("a", &alice, n0), send_all("b", &bob, n1));
    let (a, b) = (a?, b?);
    assert!(a.windows(2).all(|w| w[0] < w[1]) && b.windows(2).all(|w| w[0] < w[1]));

    let on0 = collect(n0, &carol, 0, 2 * PER_SENDER).await?;
    let on1 = collect(n1, &carol, 0, 2 * PER_SENDER).await?;
    let live = live.await??;
    assert_eq!(on0, on1);
    assert_eq!(on0, live);
    assert_chain(&on0, 0);
    let mut all: Vec<i64> = a.iter().chain(&b).copied().collect();
    all.sort_unstable();
    assert_eq!(on0.iter().map(|e| e.timestamp).collect::<Vec<_>>(), all);

    // A node started later catches up from the table; a late start point chains from it.
    let n2 = start_node(&net.url, "seq-late").await?;
    let mid = on0[PER_SENDER - 1].timestamp;
    let late = collect(&n2, &carol, mid, PER_SENDER).await?;
    assert_eq!(late[..], on0[PER_SENDER..]);
    assert_eq!(late[0].previous_timestamp, mid);

    // Alice sees broadcasts and her own envelopes only.
    let expected_alice = on0
        .iter()
        .filter(|e| {
            let i: usize = e
                .message_id
                .split('-')
                .nth(1)
                .and_then(|x| x.parse().ok())
                .unwrap_or(1);
            i.is_multiple_of(5) || i.is_multiple_of(7)
        })
        .count();
    let seen = collect(&n2, &alice, 0, expected_alice).await?;
    assert_chain(&seen, 0);
    for e in &seen {
        assert!(!e.envelopes.is_empty());
        assert!(
            e.envelopes
                .iter()
                .all(|env| env.content == b"all" || env.content == b"for-alice"),
            "{e:?}"
        );
    }

    // Status and HTTP endpoints.
    let st = status(n1).await?;
    assert_eq!(st.events, (2 * PER_SENDER) as i64);
    assert_eq!(st.head_timestamp, *all.last().unwrap_or(&0));
    let metrics = http_client::get_ok(&format!("http://{}/metrics", n0.http)).await?;
    assert!(metrics.contains("ordo_sequencer_sends_total"), "{metrics}");
    let readyz = http_client::get(&format!("http://{}/readyz", n0.http)).await?;
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    let livez = http_client::get_ok(&format!("http://{}/livez", n0.http)).await?;
    assert_eq!(livez, "ok");

    n2.stop().await?;
    for n in net.nodes {
        n.stop().await?;
    }
    Ok(())
}
