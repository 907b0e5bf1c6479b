//! Deduplication by the insert itself (`insert_commands`) against a real Postgres.

use anyhow::Result;
use ordo_core::KeyPair;
use ordo_testkit::{PgCluster, PgOptions};

use super::*;

fn command(id: &str, message_id: &str) -> NewCommand {
    NewCommand {
        key: CommandKey {
            application_id: "app".into(),
            command_id: id.into(),
            act_as: vec!["alice".into(), "bob, \"the\" second".into()],
        },
        submission_id: format!("sub-{message_id}"),
        nonce: vec![1, 2, 3],
        message_id: message_id.into(),
        root_hash: format!("root-{message_id}"),
        max_sequencing_time: Timestamp(1_000),
        submitted_at: Timestamp(500),
        dedup: DedupPeriod {
            duration_us: 60_000_000,
            offset: 0,
        },
    }
}

fn request(message_id: &str) -> Submission {
    Submission {
        message_id: message_id.into(),
        max_sequencing_time: Timestamp(1_000),
        envelopes: Vec::new(),
    }
}

async fn insert(pool: &PgPool, group: &[(&NewCommand, i64)]) -> Result<Vec<bool>> {
    let subs: Vec<NewSubmission> = group
        .iter()
        .map(|(c, cutoff)| NewSubmission {
            command: (*c).clone(),
            dedup_cutoff: *cutoff,
            request: request(&c.message_id),
        })
        .collect();
    let mut conn = pool.acquire().await?;
    Ok(insert_commands(&mut conn, &subs).await?)
}

async fn outboxed(pool: &PgPool) -> Result<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT message_id FROM p_outbox ORDER BY message_id")
            .fetch_all(pool)
            .await?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_insert_decides_deduplication() -> Result<()> {
    let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
    let config = ParticipantConfig {
        database_url: pg.create_database("shard").await?,
        ..Default::default()
    };
    let key = KeyPair::generate().public();
    init(&config, &MemberId::new("p1", &key)?, &key).await?;
    let pool = connect(&config).await?;

    // A new command, and the same key again in the same group: the second is a duplicate.
    let a1 = command("a", "m-a1");
    let a2 = command("a", "m-a2");
    let b1 = command("b", "m-b1");
    assert_eq!(
        insert(&pool, &[(&a1, 0), (&a2, 0), (&b1, 0)]).await?,
        [true, false, true]
    );
    assert_eq!(outboxed(&pool).await?, ["m-a1", "m-b1"]);
    let act_as: Vec<String> =
        sqlx::query_scalar("SELECT act_as FROM p_commands WHERE message_id = 'm-a1'")
            .fetch_one(&pool)
            .await?;
    assert_eq!(act_as, a1.key.act_as);

    // In flight: a duplicate in a later group too.
    assert_eq!(insert(&pool, &[(&a2, 0)]).await?, [false]);

    // Rejected: replaced. Succeeded at 700: a duplicate while the cutoff is at or before
    // 700, replaced once it is after.
    sqlx::query("UPDATE p_commands SET state = 'rejected' WHERE message_id = 'm-a1'")
        .execute(&pool)
        .await?;
    sqlx::query(
        "UPDATE p_commands SET state = 'succeeded', completed_at = 700 WHERE message_id = 'm-b1'",
    )
    .execute(&pool)
    .await?;
    let b2 = command("b", "m-b2");
    let b3 = command("b", "m-b3");
    assert_eq!(insert(&pool, &[(&a2, 0), (&b2, 700)]).await?, [true, false]);
    assert_eq!(insert(&pool, &[(&b3, 701)]).await?, [true]);
    assert_eq!(outboxed(&pool).await?, ["m-a1", "m-a2", "m-b1", "m-b3"]);
    let states: Vec<(String, String)> = sqlx::query_as(
        "SELECT command_id, message_id FROM p_commands WHERE state = 'in_flight' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        states,
        [("a".into(), "m-a2".into()), ("b".into(), "m-b3".into())]
    );

    // Deduplication from a completion offset: a success completed at offset 5 is a
    // duplicate for a submission giving offset 4 (whatever the time cutoff allows), not
    // for one giving 5; the period given is kept with the command.
    sqlx::query(
        "UPDATE p_commands SET state = 'succeeded', completed_at = 700, completion_offset = 5
         WHERE message_id = 'm-b3'",
    )
    .execute(&pool)
    .await?;
    let from = |message_id: &str, offset: i64| NewCommand {
        dedup: DedupPeriod {
            duration_us: 0,
            offset,
        },
        ..command("b", message_id)
    };
    let (b4, b5) = (from("m-b4", 4), from("m-b5", 5));
    assert_eq!(insert(&pool, &[(&b4, 0)]).await?, [false]);
    assert!(is_duplicate(&pool, &b4.key, 0, 4).await?);
    assert!(!is_duplicate(&pool, &b5.key, 0, 5).await?);
    assert_eq!(insert(&pool, &[(&b5, 0)]).await?, [true]);
    let kept: (i64, i64) = sqlx::query_as(
        "SELECT dedup_duration_us, dedup_offset FROM p_commands WHERE message_id = 'm-b5'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(kept, (0, 5));
    Ok(())
}
