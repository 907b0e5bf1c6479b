//! `init` is idempotent and binds the database to the key; `run` refuses an unprovisioned
//! database and a foreign key file.

use anyhow::Result;
use ordo_topology::{Listeners, TopologyError};

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_idempotent_and_run_checks_provisioning() -> Result<()> {
    let net = Net::start(1).await?;
    let cfg = net.topology_config();

    let listeners = Listeners::bind(&cfg).await?;
    let err = ordo_topology::run(cfg.clone(), listeners, std::future::pending())
        .await
        .expect_err("must refuse an unprovisioned database");
    assert!(
        matches!(err, TopologyError::NotProvisioned { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ordo topology init"), "{err}");

    // Two inits at once: one provisions, both agree on the member.
    let (a, b) = tokio::join!(ordo_topology::init(&cfg), ordo_topology::init(&cfg));
    let (a, b) = (a?, b?);
    assert_eq!(a.member, b.member);
    let mut created = [a.created, b.created];
    created.sort();
    assert_eq!(created, [false, true]);
    assert!(cfg.key_file.exists());
    assert!(a.member.is_bound_to(&a.public_key));
    assert_eq!(a.member.name(), "topology");

    // Another key against this database.
    let mut foreign = cfg.clone();
    foreign.key_file = net.dir.path().join("other.key");
    let err = ordo_topology::init(&foreign)
        .await
        .expect_err("foreign key");
    assert!(matches!(err, TopologyError::KeyMismatch { .. }), "{err:?}");
    let listeners = Listeners::bind(&foreign).await?;
    let err = ordo_topology::run(foreign, listeners, std::future::pending())
        .await
        .expect_err("foreign key");
    assert!(err.to_string().contains(a.member.as_str()), "{err}");
    Ok(())
}
