//! The baseline: the sequencer's rows written raw into a scratch table of the same shape in
//! the same database, with COPY and with multi-row INSERTs from several clients.

use std::time::{Duration, Instant};

use sqlx::PgPool;

const SCRATCH: &str = "CREATE TABLE bench_scratch (
    ts bigint PRIMARY KEY, sender int NOT NULL, message_id text NOT NULL,
    recipients int[] NOT NULL, broadcast bool NOT NULL, payload bytea NOT NULL,
    max_sequencing_time bigint NOT NULL)";

async fn reset(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("DROP TABLE IF EXISTS bench_scratch")
        .execute(pool)
        .await?;
    sqlx::query(SCRATCH).execute(pool).await?;
    Ok(())
}

/// Rows per second written with `COPY … FROM STDIN`, in chunks of 10 000 rows per COPY
/// (one transaction each), for about `duration`.
pub async fn copy_rows_per_sec(
    pool: &PgPool,
    payload: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    reset(pool).await?;
    let hex_payload: String = "ab".repeat(payload);
    let mut conn = pool.acquire().await?;
    let (start, mut rows, mut ts) = (Instant::now(), 0u64, 1i64);
    while start.elapsed() < duration {
        let mut chunk = String::with_capacity(10_000 * (payload * 2 + 64));
        for _ in 0..10_000 {
            chunk.push_str(&format!(
                "{ts}\t{}\tm-{ts}\t{{1,2}}\tf\t\\\\x{hex_payload}\t{}\n",
                ts % 8,
                i64::MAX
            ));
            ts += 1;
        }
        let mut copy = conn
            .copy_in_raw("COPY bench_scratch FROM STDIN (FORMAT text)")
            .await?;
        copy.send(chunk.into_bytes()).await?;
        rows += copy.finish().await?;
    }
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// Rows per second written by `clients` concurrent connections, each committing
/// `rows_per_insert` rows per multi-row INSERT, for about `duration`.
pub async fn insert_rows_per_sec(
    pool: &PgPool,
    payload: usize,
    clients: usize,
    rows_per_insert: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    reset(pool).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut rows = 0u64;
            let mut next = (c as i64) << 40;
            while start.elapsed() < duration {
                let ts: Vec<i64> = (0..rows_per_insert as i64).map(|i| next + i).collect();
                next += rows_per_insert as i64;
                let ids: Vec<String> = ts.iter().map(|t| format!("m-{t}")).collect();
                let recipients = vec!["{1,2}".to_owned(); rows_per_insert];
                let payloads = vec![vec![0xabu8; payload]; rows_per_insert];
                sqlx::query(
                    "INSERT INTO bench_scratch
                     SELECT t, $2, m, r::int[], false, p, $6
                     FROM UNNEST($1::bigint[], $3::text[], $4::text[], $5::bytea[]) AS u(t, m, r, p)",
                )
                .bind(&ts)
                .bind(c as i32)
                .bind(&ids)
                .bind(&recipients)
                .bind(&payloads)
                .bind(i64::MAX)
                .execute(&pool)
                .await?;
                rows += rows_per_insert as u64;
            }
            Ok::<_, anyhow::Error>(rows)
        }));
    }
    let mut rows = 0;
    for t in tasks {
        rows += t.await??;
    }
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}
