//! Every write of the store is fenced: once another replica holds the lease, a write with
//! this replica's fence fails (UNAVAILABLE) and commits nothing.

use std::time::Duration;

use anyhow::Result;
use ordo_core::Timestamp;
use ordo_lease::Replica;
use ordo_protocol::{DomainParameters, TopologyChange, TopologyState, TopologyTransaction};
use ordo_testkit::wait_for;
use ordo_topology::TopologyError;
use ordo_topology::store::{self, Effect};
use tokio::sync::watch;

use crate::harness::*;

fn set_parameters(serial: u64) -> TopologyTransaction {
    TopologyTransaction {
        serial,
        change: TopologyChange::SetParameters {
            parameters: DomainParameters::default(),
        },
    }
}

/// Rows, pending rows, the stored serial and the cursor.
async fn snapshot(db: &sqlx::PgPool) -> Result<(i64, i64, i64, i64)> {
    let (total, pending) = db_counts(db).await?;
    let (serial, cursor): (i64, i64) =
        sqlx::query_as("SELECT serial, cursor FROM topology_state WHERE id = 1")
            .fetch_one(db)
            .await?;
    Ok((total, pending, serial, cursor))
}

fn assert_fenced<T: std::fmt::Debug>(r: Result<T, TopologyError>) {
    let err = r.expect_err("a replica without the lease must not write");
    assert!(matches!(err, TopologyError::Fenced(_)), "{err:?}");
    assert_eq!(err.code(), tonic::Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_the_lease_commit_nothing() -> Result<()> {
    let net = Net::start(1).await?;
    let cfg = net.topology_config();
    ordo_topology::init(&cfg).await?;
    let db = net.topology_db().await?;
    let (health, _service) = ordo_node::Health::new(vec![]).await;
    let (ready, _ready_rx) = watch::channel(false);
    let (replica, lease) = Replica::start(
        db.clone(),
        ordo_topology::LEASE_SERVICE,
        &short_lease("topology-a", None),
        "topology",
        health,
        ready,
    )
    .await?;
    wait_for("the lease", Duration::from_secs(10), || async {
        replica.is_active().then_some(())
    })
    .await?;

    // While active, writes commit.
    let ids = store::insert_proposals(&db, &replica, &[set_parameters(1)], Timestamp(1)).await?;
    assert_eq!(ids, vec!["topology-1".to_owned()]);
    store::record(&db, &replica, Timestamp(5), Effect::None).await?;
    let before = snapshot(&db).await?;
    assert_eq!(before, (1, 1, 0, 5));

    // Another replica takes the lease over (as a failover does while this one is paused).
    sqlx::query(
        "UPDATE ordo_lease SET holder = 'topology-b#00000001', fencing_token = fencing_token + 1,
                expires_at = clock_timestamp() + interval '1 hour'
         WHERE service = $1",
    )
    .bind(ordo_topology::LEASE_SERVICE)
    .execute(&db)
    .await?;

    assert_fenced(store::insert_proposals(&db, &replica, &[set_parameters(2)], Timestamp(2)).await);
    assert_fenced(store::delete_pending(&db, &replica, 1).await);
    assert_fenced(store::record(&db, &replica, Timestamp(9), Effect::None).await);
    let tx = set_parameters(1);
    let mut state = TopologyState::default();
    state.apply(&tx, Timestamp(9))?;
    assert_fenced(
        store::record(
            &db,
            &replica,
            Timestamp(9),
            Effect::Applied {
                tx: &tx,
                state: &state,
            },
        )
        .await,
    );
    assert_fenced(
        store::record(
            &db,
            &replica,
            Timestamp(9),
            Effect::Refused {
                serial: 1,
                reason: "test",
            },
        )
        .await,
    );

    // Nothing changed.
    assert_eq!(snapshot(&db).await?, before);
    let refused: i64 = sqlx::query_scalar("SELECT count(*) FROM topology_refused")
        .fetch_one(&db)
        .await?;
    assert_eq!(refused, 0);
    lease.abort();
    Ok(())
}
