//! The same command id, sequentially and concurrently: one transaction, and one definite
//! answer for every submission.

use anyhow::Result;
use tonic::Code;

use crate::common::*;

fn with_id(net: &LedgerNet, command_id: &str, amount: &str) -> ordo_proto::ledger::v1::Commands {
    let mut c = net.commands_for("bank", create_iou("bank", "alice", "EUR", amount));
    c.command_id = command_id.into();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_id_yields_one_transaction() -> Result<()> {
    let net = LedgerNet::with_parties("t06", &[("bank", 0), ("alice", 0)]).await?;
    let bank = token(&["bank"]);

    // Sequentially.
    let first = net
        .submit_raw(0, &bank, with_id(&net, "seq-1", "1.00"))
        .await?;
    let again = net
        .submit_raw(0, &bank, with_id(&net, "seq-1", "1.00"))
        .await;
    assert_status(again, Code::AlreadyExists, &["seq-1"]);
    // Even with another payload: the command id decides.
    let other = net
        .submit_raw(0, &bank, with_id(&net, "seq-1", "2.00"))
        .await;
    assert_status(other, Code::AlreadyExists, &["seq-1"]);
    assert_eq!(net.ledger_end(0).await?, 1);

    // Concurrently: SubmitAndWait twice, and Submit + SubmitAndWait.
    let (a, b) = tokio::join!(
        net.submit_raw(0, &bank, with_id(&net, "conc-1", "3.00")),
        net.submit_raw(0, &bank, with_id(&net, "conc-1", "3.00")),
    );
    let (ok, dup) = match (a, b) {
        (Ok(tx), Err(e)) | (Err(e), Ok(tx)) => (tx, e),
        (a, b) => panic!("exactly one submission must win: {a:?} / {b:?}"),
    };
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");
    assert!(dup.message().contains("conc-1"), "{dup:?}");
    assert_eq!(ok.command_id, "conc-1");

    let mut submission = net.submission(0);
    let (a, b) = tokio::join!(
        submission.submit(with_token(
            ordo_proto::ledger::v1::SubmitRequest {
                commands: Some(with_id(&net, "conc-2", "4.00")),
            },
            &bank,
        )),
        net.submit_raw(0, &bank, with_id(&net, "conc-2", "4.00")),
    );
    match (&a, &b) {
        // The async submission won: SubmitAndWait is refused.
        (Ok(_), Err(e)) => assert_eq!(e.code(), Code::AlreadyExists, "{e:?}"),
        // SubmitAndWait won: the async one is refused.
        (Err(e), Ok(_)) => assert_eq!(e.code(), Code::AlreadyExists, "{e:?}"),
        _ => panic!("exactly one submission must be accepted: {a:?} / {b:?}"),
    }
    // Wait until the accepted conc-2 committed (the async path has no answer to wait on).
    ordo_testkit::wait_for("conc-2 committed", PATIENCE, || async {
        (net.ledger_end(0).await.ok()? == 3).then_some(())
    })
    .await?;

    // One transaction per command id in the update log, and nothing else.
    let updates = net.updates("bank").await?;
    let mut ids: Vec<&str> = updates.iter().map(|t| t.command_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["conc-1", "conc-2", "seq-1"]);
    assert_eq!(updates[0].update_id, first.update_id);
    assert_eq!(net.ious("alice").await?.len(), 3);
    // And still one after everything settled.
    let late = net
        .submit_raw(0, &bank, with_id(&net, "conc-2", "4.00"))
        .await;
    assert_status(late, Code::AlreadyExists, &["conc-2"]);
    assert_eq!(net.ledger_end(0).await?, 3);

    // A retried transfer meets its input archived by its first attempt: still
    // ALREADY_EXISTS (what a retrying client decides on), not NOT_FOUND.
    let iou = created(&first)[0].contract_id.clone();
    let mut transfer = net.commands_for(
        "alice",
        exercise(
            "iou:Iou",
            &iou,
            "Transfer",
            serde_json::json!({ "newOwner": "bank" }),
        ),
    );
    transfer.command_id = "transfer-1".into();
    let alice = token(&["alice"]);
    net.submit_raw(0, &alice, transfer.clone()).await?;
    let retried = net.submit_raw(0, &alice, transfer.clone()).await;
    assert_status(retried, Code::AlreadyExists, &["transfer-1"]);
    // Under another command id the archived input is what fails.
    transfer.command_id = "transfer-2".into();
    let other = net.submit_raw(0, &alice, transfer).await;
    assert_eq!(other.unwrap_err().code(), Code::NotFound);
    Ok(())
}
