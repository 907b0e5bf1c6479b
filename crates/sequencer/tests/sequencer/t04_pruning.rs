//! Pruning deletes exactly what every enabled member acknowledged.

use anyhow::Result;
use ordo_proto::sequencer::v1 as pb;
use tonic::Code;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn prune_removes_exactly_the_acknowledged_events() -> Result<()> {
    let net = start_net("prune", 2).await?;
    let (n0, n1) = (&net.nodes[0], &net.nodes[1]);
    let alice = member(n0, "alice").await?;
    let bob = member(n0, "bob").await?;
    let mut ts = Vec::new();
    for i in 0..10 {
        ts.push(
            send(n0, &alice, submission(&format!("m-{i}"), &[&bob.id], b"x"))
                .await?
                .timestamp,
        );
    }
    let prune = |up_to: i64| async move {
        let mut admin = n1.admin().await?;
        anyhow::Ok(
            admin
                .prune(with_token(pb::PruneRequest { up_to }, ADMIN))
                .await?
                .into_inner(),
        )
    };
    // Nobody acknowledged: nothing goes, both members lag.
    let p = prune(0).await?;
    assert_eq!((p.pruned_events, p.lower_bound), (0, 0));
    assert_eq!(p.lagging_members, vec![alice.id.clone(), bob.id.clone()]);

    acknowledge(n1, &alice, signed_ack(&alice, ts[9])).await?;
    acknowledge(n1, &bob, signed_ack(&bob, ts[5])).await?;
    acknowledge(n1, &bob, signed_ack(&bob, ts[2])).await?; // acknowledgements never go back
    let p = prune(ts[3]).await?;
    assert_eq!((p.pruned_events, p.lower_bound), (4, ts[3]));
    let p = prune(0).await?;
    assert_eq!((p.pruned_events, p.lower_bound), (2, ts[5]));
    assert_eq!(p.lagging_members, vec![bob.id.clone()]);
    let st = status(n0).await?;
    assert_eq!((st.events, st.lower_bound), (4, ts[5]));

    // Subscribing below the bound is refused; at the bound it chains from the bound.
    let mut c = n0.seq().await?;
    let req = pb::SubscribeRequest {
        member: bob.id.clone(),
        after_timestamp: ts[4],
        heartbeat_interval_ms: 0,
    };
    match c.subscribe(with_token(req, &bob.token)).await {
        Ok(_) => panic!("subscribing into the pruned range must fail"),
        Err(s) => {
            assert_eq!(s.code(), Code::FailedPrecondition);
            assert!(
                s.message()
                    .contains(&format!("events up to {} were pruned", ts[5])),
                "{}",
                s.message()
            );
        }
    }
    let rest = collect(n1, &bob, ts[5], 4).await?;
    assert_eq!(
        rest.iter().map(|e| e.timestamp).collect::<Vec<_>>(),
        ts[6..].to_vec()
    );
    assert_eq!(rest[0].previous_timestamp, ts[5]);
    assert_chain(&rest, ts[5]);
    for n in net.nodes {
        n.stop().await?;
    }
    Ok(())
}
