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

    // Deduplication from a completion offset, and the period echoed in completions.
    net.submit_raw(0, &bank, with_id(&net, "off-1", "5.00"))
        .await?;
    let done = completion_of(&net, "off-1", 1).await?;
    assert_eq!(
        (done.deduplication_duration_ms, done.deduplication_offset),
        (24 * 3600 * 1000, 0),
        "the domain's period, echoed: {done:?}"
    );
    let k = done.completion_offset;
    let from = |offset: i64| {
        let mut c = with_id(&net, "off-1", "5.00");
        c.deduplication_offset = offset;
        c
    };
    // Completed after offset k - 1: a duplicate. After k: not any more.
    assert_status(
        net.submit_raw(0, &bank, from(k - 1)).await,
        Code::AlreadyExists,
        &["off-1"],
    );
    net.submit_raw(0, &bank, from(k)).await?;
    let again = completion_of(&net, "off-1", 2).await?;
    assert_eq!(
        (again.deduplication_duration_ms, again.deduplication_offset),
        (0, k),
        "{again:?}"
    );
    // Beyond the completion end, or with a duration too: refused, naming the field.
    let beyond = net
        .submit_raw(0, &bank, from(again.completion_offset + 100))
        .await;
    assert_status(beyond, Code::InvalidArgument, &["deduplication_offset"]);
    let mut both = from(k);
    both.deduplication_duration_ms = 1000;
    assert_status(
        net.submit_raw(0, &bank, both).await,
        Code::InvalidArgument,
        &["not both"],
    );
    Ok(())
}

/// The `nth` successful completion of `command_id` for bank (from the start of the log).
async fn completion_of(
    net: &LedgerNet,
    command_id: &str,
    nth: usize,
) -> Result<ordo_proto::ledger::v1::Completion> {
    use ordo_proto::ledger::v1 as pb;
    let mut stream = net
        .completions(0)
        .completion_stream(with_token(
            pb::CompletionStreamRequest {
                application_id: APP.into(),
                parties: vec!["bank".into()],
                begin_exclusive: 0,
            },
            &token(&["bank"]),
        ))
        .await?
        .into_inner();
    let mut seen = 0;
    loop {
        let next = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .map_err(|_| anyhow::anyhow!("no completion {nth} of {command_id} in time"))??
            .ok_or_else(|| anyhow::anyhow!("the completion stream ended"))?;
        if let Some(c) = next.completion
            && c.command_id == command_id
            && c.status.as_ref().is_some_and(|s| s.code == 0)
        {
            seen += 1;
            if seen == nth {
                return Ok(c);
            }
        }
    }
}
