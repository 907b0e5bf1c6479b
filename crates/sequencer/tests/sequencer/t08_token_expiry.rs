//! A subscription lives as long as the token it was opened with: when the token expires the
//! node ends the stream with UNAUTHENTICATED (within a second), and the member subscribes
//! again with a fresh token after the last event it received. A member disabled meanwhile
//! has its subscription ended at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use ordo_proto::sequencer::v1 as pb;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_token_expires() -> Result<()> {
    let net = start_net("token_expiry", 1).await?;
    let node = &net.nodes[0];
    let alice = member(node, "alice").await?;

    // A token that expires in 1.5 s: minted with the domain's token secret, as
    // `Authenticate` mints them (its lifetime, `token_ttl`, is at least 10 s).
    let pool = sqlx::PgPool::connect(&net.url).await?;
    let secret: Vec<u8> = sqlx::query_scalar("SELECT hmac_secret FROM seq_meta WHERE id = 1")
        .fetch_one(&pool)
        .await?;
    pool.close().await;
    let in_a_while = SystemTime::now() + Duration::from_millis(1500);
    let expires_at = i64::try_from(in_a_while.duration_since(UNIX_EPOCH)?.as_micros())?;
    let expiry = UNIX_EPOCH + Duration::from_micros(u64::try_from(expires_at)?);
    let token = ordo_sequencer::auth::Authenticator::new(secret).token(&alice.id, expires_at);

    let mut stream = subscribe(node, &alice.id, &token).await??.into_inner();
    let status = ended(&mut stream, Duration::from_secs(10))
        .await
        .context("the subscription outlived its token by 8 s")?;
    let ended = SystemTime::now();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
    let late = ended.duration_since(expiry).unwrap_or_default();
    assert!(
        ended >= expiry && late <= Duration::from_secs(1),
        "ended {late:?} after the expiry (or before it)"
    );

    // The expired token opens nothing more.
    let refused = subscribe(node, &alice.id, &token)
        .await?
        .expect_err("an expired token opened a subscription");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_member_is_disabled() -> Result<()> {
    let net = start_net("disabled_member", 1).await?;
    let node = &net.nodes[0];
    let bob = member(node, "bob").await?;
    let mut stream = subscribe(node, &bob.id, &bob.token).await??.into_inner();
    // The stream is open: a first heartbeat.
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .context("no heartbeat")??;
    node.admin()
        .await?
        .disable_member(with_token(
            pb::DisableMemberRequest {
                member: bob.id.clone(),
            },
            ADMIN,
        ))
        .await?;
    let disabled = std::time::Instant::now();
    let status = ended(&mut stream, Duration::from_secs(10))
        .await
        .context("the subscription of a disabled member went on for 10 s")?;
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("disabled"), "{status:?}");
    assert!(
        disabled.elapsed() <= Duration::from_secs(1),
        "ended {:?} after the member was disabled",
        disabled.elapsed()
    );
    Ok(())
}

/// Subscribes `member` from the start with `token`, heartbeats every 500 ms: the node's
/// answer.
async fn subscribe(
    node: &Node,
    member: &str,
    token: &str,
) -> Result<Result<tonic::Response<tonic::Streaming<pb::SequencedEvent>>, tonic::Status>> {
    Ok(node
        .seq()
        .await?
        .subscribe(with_token(
            pb::SubscribeRequest {
                member: member.to_owned(),
                after_timestamp: 0,
                heartbeat_interval_ms: 500,
            },
            token,
        ))
        .await)
}

/// The status `stream` ends with (heartbeats skipped), unless it goes on for `within`.
async fn ended(
    stream: &mut tonic::Streaming<pb::SequencedEvent>,
    within: Duration,
) -> Result<tonic::Status, tokio::time::error::Elapsed> {
    tokio::time::timeout(within, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return tonic::Status::ok("ended without a status"),
                Err(status) => return status,
            }
        }
    })
    .await
}
