use ordo_core::{KeyPair, Timestamp};
use ordo_sequencer_client::ClientError;
use ordo_sequencer_client::admin::AdminClient;
use tonic::Code;

use crate::Setup;
use crate::fake::{ADMIN_TOKEN, FakeNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_client_registers_lists_prunes_and_reports() {
    let s = Setup::new();
    let a = FakeNode::start(&s.ledger).await;
    let admin = AdminClient::connect(a.url.clone(), ADMIN_TOKEN)
        .await
        .unwrap();

    let bob_key = KeyPair::generate();
    let (bob, created) = admin
        .register_member("bob", &bob_key.public())
        .await
        .unwrap();
    assert!(created);
    assert!(bob.is_bound_to(&bob_key.public()));
    let (again, created) = admin
        .register_member("bob", &bob_key.public())
        .await
        .unwrap();
    assert_eq!((again, created), (bob.clone(), false));

    let members = admin.list_members().await.unwrap();
    let names: Vec<_> = members.iter().map(|m| m.member.clone()).collect();
    assert!(
        names.contains(&s.alice) && names.contains(&bob),
        "{names:?}"
    );
    let info = members.iter().find(|m| m.member == bob).unwrap();
    assert_eq!(info.public_key, bob_key.public());

    let pruned = admin.prune(Some(Timestamp(7))).await.unwrap();
    assert_eq!(pruned.lower_bound, Timestamp(7));
    assert_eq!(pruned.lagging_members.len(), 2);
    let status = admin.status().await.unwrap();
    assert_eq!((status.node.as_str(), status.members.len()), ("fake", 2));

    let intruder = AdminClient::connect(a.url.clone(), "wrong").await.unwrap();
    match intruder.list_members().await {
        Err(ClientError::Rejected(status)) => assert_eq!(status.code(), Code::Unauthenticated),
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
}
