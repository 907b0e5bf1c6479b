//! Pruning a shard (`ParticipantPruningService`): admin only, never beyond the ledger
//! end, idempotent, remembered across a restart; reads from before the pruned offset fail
//! PARTICIPANT_PRUNED_DATA_ACCESSED while the active contracts and later reads are
//! untouched; with a `[pruning] retention` the active replica prunes by itself, and the
//! mediator prunes its decided requests after its `verdict_retention`.

use std::time::Duration;

use anyhow::Result;
use ordo_participant::config::PruningConfig;
use ordo_proto::errors::{self, PARTICIPANT_PRUNED_DATA_ACCESSED};
use ordo_proto::ledger::v1 as pb;
use tonic::Code;
use tonic::transport::Channel;

use crate::common::*;

fn pruning(
    net: &LedgerNet,
    shard: usize,
) -> pb::participant_pruning_service_client::ParticipantPruningServiceClient<Channel> {
    pb::participant_pruning_service_client::ParticipantPruningServiceClient::new(net.channel(shard))
}

async fn prune(
    net: &LedgerNet,
    shard: usize,
    up_to: i64,
    token: &str,
) -> Result<pb::PruneResponse, tonic::Status> {
    pruning(net, shard)
        .prune(with_token(
            pb::PruneRequest {
                prune_up_to: up_to,
                submission_id: "t12".into(),
                older_than_ms: 0,
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn pruned_offsets(
    net: &LedgerNet,
    shard: usize,
) -> Result<pb::GetLatestPrunedOffsetsResponse> {
    Ok(net
        .state(shard)
        .get_latest_pruned_offsets(with_token(
            pb::GetLatestPrunedOffsetsRequest {},
            &admin_token(),
        ))
        .await?
        .into_inner())
}

/// The first of `party`'s updates after `from` (up to the ledger end), or the refusal.
async fn first_update(
    net: &LedgerNet,
    party: &str,
    from: i64,
) -> Result<Option<i64>, tonic::Status> {
    let shard = net.shard_of(party);
    let end = net
        .ledger_end(shard)
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))?;
    let mut stream = net
        .update_stream(shard, &[party], from, end, pb::UpdateShape::Flat)
        .await?;
    Ok(stream.message().await?.and_then(|u| match u.update {
        Some(pb::get_updates_response::Update::Transaction(t)) => Some(t.offset),
        _ => None,
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_is_admin_only_bounded_idempotent_and_survives_a_restart() -> Result<()> {
    let mut net = LedgerNet::with_parties("t12", &[("bank", 0), ("alice", 0), ("bob", 1)]).await?;
    let iou = net.issue("bank", "alice", "EUR", "1.00").await?;
    net.transfer("alice", &iou, "bob")
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    net.issue("bank", "alice", "EUR", "3.00").await?;
    net.issue("bank", "bank", "EUR", "2.00").await?;
    let end = net.ledger_end(0).await?;
    let acs = net.acs("alice").await?;

    // Refusals change nothing.
    let refused = assert_status(
        prune(&net, 0, end, &token(&["alice"])).await,
        Code::PermissionDenied,
        &["admin"],
    );
    assert!(
        errors::is(&refused, errors::PERMISSION_DENIED),
        "{refused:?}"
    );
    assert_status(
        prune(&net, 0, end + 1, &admin_token()).await,
        Code::InvalidArgument,
        &["beyond the ledger end", &end.to_string()],
    );
    assert_status(
        prune(&net, 0, 0, &admin_token()).await,
        Code::InvalidArgument,
        &["prune_up_to"],
    );
    let both = pruning(&net, 0)
        .prune(with_token(
            pb::PruneRequest {
                prune_up_to: 1,
                submission_id: String::new(),
                older_than_ms: 1000,
            },
            &admin_token(),
        ))
        .await;
    assert_status(both, Code::InvalidArgument, &["not both"]);
    assert_eq!(
        pruned_offsets(&net, 0)
            .await?
            .participant_pruned_up_to_inclusive,
        0
    );
    assert_eq!(first_update(&net, "alice", 0).await?, Some(1));

    // Pruning up to the end before the last update.
    let up_to = end - 1;
    let pruned = prune(&net, 0, up_to, &admin_token()).await?;
    assert_eq!(pruned.participant_pruned_up_to_inclusive, up_to);
    assert_eq!(pruned.updates_deleted, up_to);
    assert!(pruned.completions_pruned_up_to_inclusive > 0, "{pruned:?}");
    assert_eq!(
        net.acs("alice").await?,
        acs,
        "pruning changed alice's contracts"
    );
    let refused = first_update(&net, "alice", up_to - 1)
        .await
        .expect_err("a pruned read");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        errors::is(&refused, PARTICIPANT_PRUNED_DATA_ACCESSED),
        "{refused:?}"
    );
    assert!(
        refused.message().contains(&format!("up to offset {up_to}")),
        "{refused:?}"
    );
    // From the pruned offset on, the log is whole (bank's update is the last one).
    assert_eq!(first_update(&net, "bank", up_to).await?, Some(end));

    // Again at or below the pruned offset: nothing more goes.
    let again = prune(&net, 0, up_to, &admin_token()).await?;
    assert_eq!(
        (
            again.participant_pruned_up_to_inclusive,
            again.updates_deleted
        ),
        (up_to, 0)
    );
    let lower = prune(&net, 0, 1, &admin_token()).await?;
    assert_eq!(
        (
            lower.participant_pruned_up_to_inclusive,
            lower.updates_deleted
        ),
        (up_to, 0)
    );

    // The pruned offsets are in the database: a restarted replica refuses the same reads.
    net.stop(Role::Participant(0)).await?;
    net.restart(Role::Participant(0)).await?;
    let offsets = pruned_offsets(&net, 0).await?;
    assert_eq!(offsets.participant_pruned_up_to_inclusive, up_to);
    assert_eq!(
        offsets.completions_pruned_up_to_inclusive,
        pruned.completions_pruned_up_to_inclusive
    );
    let refused = first_update(&net, "alice", 0)
        .await
        .expect_err("a pruned read after the restart");
    assert!(
        errors::is(&refused, PARTICIPANT_PRUNED_DATA_ACCESSED),
        "{refused:?}"
    );
    // And the shard goes on: bob's Iou comes back to alice.
    let back = net.ious("bob").await?;
    net.transfer("bob", &back[0].contract_id, "alice")
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;
    // Shard-1 commits on the same verdict, a moment after bob's shard answered.
    ordo_testkit::wait_for("alice's Iou back on the pruned shard", PATIENCE, || async {
        (net.ious("alice").await.ok()?.len() == 2).then_some(())
    })
    .await?;
    assert!(net.ledger_end(0).await? > end);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_prunes_old_updates_automatically() -> Result<()> {
    let options = NetOptions {
        pruning: PruningConfig {
            retention: Duration::from_secs(1),
            interval: Duration::from_secs(1),
        },
        // Long enough for the last verdict to be seen before it goes.
        mediator_retention: Some((Duration::from_secs(3), Duration::from_secs(1))),
        ..Default::default()
    };
    let net = LedgerNet::with_parties_opts("t12r", options, &[("bank", 0), ("alice", 1)]).await?;
    let first = net.issue("bank", "alice", "EUR", "1.00").await?;
    net.issue("bank", "alice", "EUR", "2.00").await?;
    let end = net.ledger_end(0).await?;
    // Both updates are older than the retention within a few intervals.
    let offsets = ordo_testkit::wait_for("the retention's pruning", PATIENCE, || async {
        let o = pruned_offsets(&net, 0).await.ok()?;
        (o.participant_pruned_up_to_inclusive >= end).then_some(o)
    })
    .await?;
    assert_eq!(offsets.participant_pruned_up_to_inclusive, end);
    let refused = first_update(&net, "bank", 0)
        .await
        .expect_err("a pruned read");
    assert!(
        errors::is(&refused, PARTICIPANT_PRUNED_DATA_ACCESSED),
        "{refused:?}"
    );
    // The contracts stay, and stay usable.
    let ious = net.ious("bank").await?;
    assert_eq!(ious.len(), 2, "{ious:?}");
    net.transfer("alice", &first, "bank")
        .await
        .map_err(|s| anyhow::anyhow!("{s:?}"))?;

    // The mediator's decided requests go after its retention too.
    let mediator = sqlx::PgPool::connect(&net.mediator_config.database_url).await?;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM verdicts")
            .fetch_one(&mediator)
            .await
            .ok()
    };
    assert!(
        count().await.unwrap_or(0) > 0,
        "no verdict of the transfer just decided"
    );
    ordo_testkit::wait_for("the mediator's retention", PATIENCE, || async {
        (count().await? == 0).then_some(())
    })
    .await?;
    Ok(())
}
