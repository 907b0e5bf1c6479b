//! The same (sender, message_id) sent to both nodes at once is sequenced once.

use anyhow::Result;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_sends_to_both_nodes_sequence_once() -> Result<()> {
    let net = start_net("dedup", 2).await?;
    let (n0, n1) = (&net.nodes[0], &net.nodes[1]);
    let alice = member(n0, "alice").await?;
    let bob = member(n0, "bob").await?;
    for round in 0..10 {
        let req = submission(&format!("m-{round}"), &[&bob.id], b"x");
        let (r0, r1) = tokio::join!(send(n0, &alice, req.clone()), send(n1, &alice, req));
        let (r0, r1) = (r0?, r1?);
        assert_eq!(r0.timestamp, r1.timestamp, "round {round}");
        assert!(
            r0.duplicate != r1.duplicate,
            "exactly one is the original: {r0:?} {r1:?}"
        );
    }
    // A retry much later is still a duplicate, with the original timestamp.
    let again = send(n1, &alice, submission("m-3", &[&bob.id], b"x")).await?;
    assert!(again.duplicate);
    assert_eq!(status(n0).await?.events, 10);
    let events = collect(n1, &bob, 0, 10).await?;
    assert_chain(&events, 0);
    assert_eq!(events[3].timestamp, again.timestamp);
    for n in net.nodes {
        n.stop().await?;
    }
    Ok(())
}
