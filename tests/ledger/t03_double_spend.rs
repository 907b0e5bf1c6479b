//! Two concurrent transfers of one Iou: exactly one commits, the other is rejected naming
//! the contract, and every shard agrees on the outcome.

use anyhow::{Context, Result};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_of_one_iou_commit_exactly_once() -> Result<()> {
    let net = LedgerNet::with_parties(
        "t03",
        &[("bank", 0), ("alice", 0), ("bob", 1), ("carol", 1)],
    )
    .await?;

    const ROUNDS: usize = 3;
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let iou = net
            .issue("bank", "alice", "EUR", &format!("{}.00", round + 1))
            .await?;
        let ends = net.ledger_ends().await?;
        let (to_bob, to_carol) = tokio::join!(
            net.transfer("alice", &iou, "bob"),
            net.transfer("alice", &iou, "carol"),
        );
        let (winner, tx, loser) = match (to_bob, to_carol) {
            (Ok(tx), Err(e)) => ("bob", tx, e),
            (Err(e), Ok(tx)) => ("carol", tx, e),
            (a, b) => panic!("round {round}: exactly one transfer must commit: {a:?} / {b:?}"),
        };
        // Rejected at submission (the Iou is gone: CONTRACT_NOT_FOUND), or by the
        // confirming participants (locked by the other request: LOCKED_CONTRACTS; no
        // longer active: CONTRACT_NOT_ACTIVE), with the code's gRPC status — always naming
        // the contract.
        use ordo_proto::errors;
        let code = errors::code_of(&loser).and_then(|id| errors::by_id(&id));
        assert!(
            code.is_some_and(|c| {
                [
                    errors::CONTRACT_NOT_FOUND,
                    errors::LOCKED_CONTRACTS,
                    errors::CONTRACT_NOT_ACTIVE,
                ]
                .contains(&c)
                    && c.grpc == loser.code()
            }),
            "round {round}: {loser:?}"
        );
        assert!(loser.message().contains(&iou), "round {round}: {loser:?}");
        assert_eq!(archived(&tx), vec![iou.as_str()]);
        // One transaction on each shard, none for the loser.
        net.wait_ledger_ends(&[ends[0] + 1, ends[1] + 1])
            .await
            .with_context(|| format!("round {round}"))?;
        winners.push((winner, iou));
    }

    // Every shard agrees: each Iou was moved exactly once, to its winner.
    assert!(net.ious("alice").await?.is_empty());
    let bank = net.ious("bank").await?;
    let bob = net.ious("bob").await?;
    let carol = net.ious("carol").await?;
    assert_eq!(bank.len(), ROUNDS, "{bank:?}");
    assert_eq!(bob.len() + carol.len(), ROUNDS);
    for (round, (winner, _)) in winners.iter().enumerate() {
        let amount = format!("{}", round + 1);
        let owned = |cs: &[Contract]| {
            cs.iter()
                .filter(|c| {
                    c.field("amount").trim_end_matches(".00") == amount
                        && c.field("owner") == *winner
                })
                .count()
        };
        let (theirs, others) = if *winner == "bob" {
            (&bob, &carol)
        } else {
            (&carol, &bob)
        };
        assert_eq!(
            owned(&bank),
            1,
            "round {round}: the bank sees the winner's Iou once"
        );
        assert_eq!(owned(theirs), 1, "round {round}: {winner} has it once");
        assert!(
            others
                .iter()
                .all(|c| c.field("amount").trim_end_matches(".00") != amount),
            "round {round}: the loser's target has nothing"
        );
    }
    let mut shard1: Vec<String> = bank.iter().map(|c| c.contract_id.clone()).collect();
    let mut shard2: Vec<String> = bob
        .iter()
        .chain(&carol)
        .map(|c| c.contract_id.clone())
        .collect();
    shard1.sort();
    shard2.sort();
    assert_eq!(shard1, shard2, "both shards hold the same Ious");
    Ok(())
}
