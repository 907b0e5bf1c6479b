//! `init` is idempotent, never replaces the key, and refuses a database provisioned for
//! another key; `run` refuses an unprovisioned database.

use std::net::SocketAddr;

use anyhow::Result;
use ordo_core::{KeyPair, MemberId};
use ordo_mediator::{Listeners, MediatorConfig, MediatorError};
use ordo_testkit::{PgCluster, PgOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_is_idempotent_and_run_refuses_unprovisioned() -> Result<()> {
    ordo_testkit::init_tracing();
    let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
    let url = pg.create_database("mediator").await?;
    let dir = tempfile::tempdir()?;
    let tm = KeyPair::generate();
    let config = MediatorConfig {
        database_url: url.clone(),
        grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_file: dir.path().join("mediator.key"),
        sequencers: vec!["http://127.0.0.1:1".into()],
        topology_manager: Some(MemberId::new("topology", &tm.public())?),
        ..Default::default()
    };

    // An existing key but no schema yet: run refuses with a clear message.
    KeyPair::generate().write_file(&config.key_file)?;
    let listeners = Listeners::bind(&config).await?;
    let err = ordo_mediator::run(config.clone(), listeners, std::future::pending())
        .await
        .expect_err("must refuse");
    assert!(
        matches!(err, MediatorError::NotProvisioned { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("ordo mediator init"), "{err}");
    std::fs::remove_file(&config.key_file)?;

    let first = ordo_mediator::init(&config).await?;
    assert!(first.created && first.key_created);
    assert_eq!(first.member.name(), "mediator");
    assert!(first.member.is_bound_to(&first.public_key));
    let again = ordo_mediator::init(&config).await?;
    assert!(!again.created && !again.key_created);
    assert_eq!(again.member, first.member);
    assert_eq!(
        KeyPair::read_file(&config.key_file)?.public(),
        first.public_key
    );

    // The same database with another key: refused, naming both members.
    let other = MediatorConfig {
        key_file: dir.path().join("other.key"),
        ..config.clone()
    };
    let err = ordo_mediator::init(&other).await.expect_err("must refuse");
    match &err {
        MediatorError::WrongKey { provisioned, .. } => {
            assert_eq!(provisioned, first.member.as_str());
        }
        other => panic!("expected WrongKey, got {other:?}"),
    }
    let listeners = Listeners::bind(&other).await?;
    let err = ordo_mediator::run(other, listeners, std::future::pending())
        .await
        .expect_err("must refuse");
    assert!(matches!(err, MediatorError::WrongKey { .. }), "{err:?}");
    drop(pg);
    Ok(())
}
