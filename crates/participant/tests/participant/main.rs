//! One participant in process against a real Postgres and an in-process sequencer; the
//! test plays the topology manager (signing topology transactions) and the mediator
//! (answering every approving response with an Approve verdict, any rejection with Reject).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use ordo_core::{Envelope, KeyPair, MemberId, PartyId, Recipients, Submission, Timestamp};
use ordo_participant::ParticipantConfig;
use ordo_participant::auth::{LedgerClaims, mint_hs256};
use ordo_proto::ledger::v1 as pb;
use ordo_protocol::topology::encode_key;
use ordo_protocol::{
    MemberRole, Message, ResponseOutcome, SignedMessage, TopologyChange, TopologyTransaction,
    Verdict, VerdictOutcome,
};
use ordo_sequencer_client::{ClientConfig, SequencerClient};
use ordo_testkit::{PgCluster, PgOptions, wait_for};
use tonic::transport::Channel;

const ADMIN: &str = "admin-secret";
const JWT_SECRET: &str = "participant-test-secret-0123";

struct Member {
    id: MemberId,
    key: Arc<KeyPair>,
}

fn member(name: &str) -> Member {
    let key = Arc::new(KeyPair::generate());
    Member {
        id: MemberId::new(name, &key.public()).unwrap(),
        key,
    }
}

async fn client(endpoint: &str, m: &Member) -> Result<SequencerClient> {
    Ok(SequencerClient::connect(ClientConfig::new(
        vec![endpoint.to_owned()],
        m.id.clone(),
        m.key.clone(),
    ))
    .await?)
}

fn far() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now()).plus(Duration::from_secs(60))
}

/// The mediator, by hand: approve every request whose responses approve, reject the others.
async fn mediator(seq: SequencerClient, me: Arc<Member>) {
    let mut sub = seq.subscribe(Timestamp::MIN);
    while let Ok(event) = sub.next().await {
        for env in &event.envelopes {
            let Ok(signed) = SignedMessage::decode(&env.content) else {
                continue;
            };
            let Message::Response(r) = signed.message else {
                continue;
            };
            let outcome = match r.outcome {
                ResponseOutcome::Approve => VerdictOutcome::Approve,
                ResponseOutcome::Reject { reason, code } => VerdictOutcome::Reject {
                    reasons: vec![reason],
                    code,
                },
            };
            let verdict = Message::Verdict(Verdict {
                request: r.request,
                root_hash: r.root_hash,
                outcome,
            });
            let submission = Submission {
                message_id: format!("verdict-{}", r.request.micros()),
                max_sequencing_time: far(),
                envelopes: vec![Envelope {
                    recipients: Recipients::members([event.sender.clone()]),
                    content: SignedMessage::encode(&me.id, &me.key, &verdict),
                }],
            };
            if let Err(e) = seq.send(submission).await {
                tracing::warn!(error = %e, "mediator send failed");
            }
        }
    }
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

fn token(act_as: &[&str], admin: bool) -> String {
    mint_hs256(
        JWT_SECRET,
        &LedgerClaims {
            act_as: act_as.iter().map(|s| (*s).to_owned()).collect(),
            admin,
            ..Default::default()
        },
        ordo_participant::auth::expiry_in(std::time::Duration::from_secs(3600)),
    )
}

fn create_iou(
    command_id: &str,
    issuer: &str,
    owner: &str,
    amount: &str,
) -> pb::SubmitAndWaitRequest {
    pb::SubmitAndWaitRequest {
        commands: Some(pb::Commands {
            application_id: "test-app".into(),
            command_id: command_id.into(),
            act_as: vec![issuer.into()],
            command: Some(pb::Command {
                command: Some(pb::command::Command::Create(pb::CreateCommand {
                    template_id: "iou:Iou".into(),
                    create_arguments_json: serde_json::json!({
                        "issuer": issuer, "owner": owner, "currency": "EUR", "amount": amount
                    })
                    .to_string(),
                })),
            }),
            ..Default::default()
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_create_and_read_it_back() -> Result<()> {
    ordo_testkit::init_tracing();
    let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
    let seq_url = pg.create_database("seq").await?;
    let p_url = pg.create_database("p1").await?;

    // The sequencer.
    let seq_config = ordo_sequencer::SequencerConfig {
        node_name: "seq-1".into(),
        database_url: seq_url,
        grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: ADMIN.into(),
        pool_size: 6,
        tail_buffer_events: 1000,
        ..Default::default()
    };
    ordo_sequencer::init(&seq_config).await?;
    let listeners = ordo_sequencer::Listeners::bind(&seq_config).await?;
    let endpoint = format!("http://{}", listeners.grpc.local_addr()?);
    let (seq_stop, seq_stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(ordo_sequencer::run(seq_config, listeners, async move {
        let _ = seq_stopped.await;
    }));

    // The participant's provisioning.
    let dir = tempfile::tempdir()?;
    let mut config = ParticipantConfig {
        node_name: "participant-1".into(),
        shard: "shard-1".into(),
        database_url: p_url,
        grpc_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        http_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        key_file: dir.path().join("p1.key"),
        sequencers: vec![endpoint.clone()],
        ..Default::default()
    };
    config.auth.algorithm = "HS256".into();
    config.auth.secret = JWT_SECRET.into();
    let init = ordo_participant::init(&config).await?;
    assert!(init.created);
    assert!(
        !ordo_participant::init(&config).await?.created,
        "init is idempotent"
    );

    // Members registered with the sequencer.
    let tm = Arc::new(member("topology"));
    let med = Arc::new(member("mediator"));
    let admin = ordo_sequencer_client::admin::AdminClient::connect(&endpoint, ADMIN).await?;
    admin.register_member("topology", &tm.key.public()).await?;
    admin.register_member("mediator", &med.key.public()).await?;
    admin
        .register_member("participant-1", &init.public_key)
        .await?;
    config.topology_manager = tm.id.to_string();

    // Topology, signed by the test's topology manager.
    let tm_seq = client(&endpoint, &tm).await?;
    let iou = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/packages/iou.toml"
    ))
    .context("examples/packages/iou.toml")?;
    let iou_id = ordo_ledger::Package::parse(iou.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .id
        .to_string();
    let changes = vec![
        TopologyChange::AddMember {
            member: tm.id.clone(),
            public_key: encode_key(&tm.key.public()),
            role: MemberRole::TopologyManager,
        },
        TopologyChange::AddMember {
            member: med.id.clone(),
            public_key: encode_key(&med.key.public()),
            role: MemberRole::Mediator,
        },
        TopologyChange::AddMember {
            member: init.member.clone(),
            public_key: encode_key(&init.public_key),
            role: MemberRole::Participant {
                shard: "shard-1".into(),
            },
        },
        TopologyChange::AllocateParty {
            party: PartyId::new("alice")?,
            shard: "shard-1".into(),
        },
        TopologyChange::AllocateParty {
            party: PartyId::new("bank")?,
            shard: "shard-1".into(),
        },
        TopologyChange::VetPackage {
            package_id: iou_id.clone(),
            source: iou,
        },
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let tx = Message::Topology(TopologyTransaction {
            serial: i as u64 + 1,
            change,
        });
        tm_seq
            .send(Submission {
                message_id: format!("topology-{}", i + 1),
                max_sequencing_time: far(),
                envelopes: vec![Envelope {
                    recipients: Recipients::broadcast(),
                    content: SignedMessage::encode(&tm.id, &tm.key, &tx),
                }],
            })
            .await?;
    }
    tokio::spawn(mediator(client(&endpoint, &med).await?, med.clone()));

    // The participant.
    let listeners = ordo_participant::Listeners::bind(&config).await?;
    let grpc = listeners.grpc.local_addr()?;
    let (p_stop, p_stopped) = tokio::sync::oneshot::channel::<()>();
    let participant = tokio::spawn(ordo_participant::run(config, listeners, async move {
        let _ = p_stopped.await;
    }));
    let channel = wait_for("participant gRPC", Duration::from_secs(20), || async {
        Channel::from_shared(format!("http://{grpc}"))
            .ok()?
            .connect()
            .await
            .ok()
    })
    .await?;
    let mut packages = pb::package_service_client::PackageServiceClient::new(channel.clone());
    let reader = token(&["alice"], false);
    wait_for(
        "the package vetted on the participant",
        Duration::from_secs(20),
        || {
            let mut packages = packages.clone();
            let reader = reader.clone();
            async move {
                let list = packages
                    .list_packages(with_token(pb::ListPackagesRequest {}, &reader))
                    .await
                    .ok()?
                    .into_inner();
                (!list.packages.is_empty()).then_some(())
            }
        },
    )
    .await?;
    let listed = packages
        .list_packages(with_token(pb::ListPackagesRequest {}, &reader))
        .await?
        .into_inner();
    assert_eq!(listed.packages[0].package_id, iou_id);

    let mut commands = pb::command_service_client::CommandServiceClient::new(channel.clone());
    // Without a token: UNAUTHENTICATED; acting as someone else: PERMISSION_DENIED.
    let e = commands
        .submit_and_wait(create_iou("c0", "bank", "alice", "10.00"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    let e = commands
        .submit_and_wait(with_token(
            create_iou("c0", "bank", "alice", "10.00"),
            &token(&["alice"], false),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("bank"), "{e:?}");

    let bank = token(&["bank"], false);
    let done = commands
        .submit_and_wait(with_token(
            create_iou("c1", "bank", "alice", "10.00"),
            &bank,
        ))
        .await?
        .into_inner();
    assert_eq!(done.offset, 1);
    assert!(!done.update_id.is_empty());

    // The same command id again: ALREADY_EXISTS, and no second transaction.
    let e = commands
        .submit_and_wait(with_token(
            create_iou("c1", "bank", "alice", "10.00"),
            &bank,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("c1"), "{e:?}");

    // alice sees the Iou in her active contracts, at offset 1.
    let mut state = pb::state_service_client::StateServiceClient::new(channel.clone());
    let mut acs = state
        .get_active_contracts(with_token(
            pb::GetActiveContractsRequest {
                filter: Some(pb::TransactionFilter {
                    parties: vec!["alice".into()],
                    template_ids: vec!["iou:Iou".into()],
                }),
            },
            &reader,
        ))
        .await?
        .into_inner();
    let page = acs.message().await?.context("an ACS page")?;
    assert_eq!(page.offset, 1);
    assert_eq!(page.active_contracts.len(), 1);
    let iou = &page.active_contracts[0];
    let payload: serde_json::Value = serde_json::from_str(&iou.create_arguments_json)?;
    assert_eq!(payload["owner"], "alice");
    assert_eq!(iou.signatories, vec!["bank".to_owned()]);
    assert_eq!(iou.witness_parties, vec!["alice".to_owned()]);

    // Reading as a party the token does not name: PERMISSION_DENIED.
    let e = state
        .get_active_contracts(with_token(
            pb::GetActiveContractsRequest {
                filter: Some(pb::TransactionFilter {
                    parties: vec!["bank".into()],
                    template_ids: vec![],
                }),
            },
            &reader,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);

    // alice transfers it to the bank; the update stream shows the create and the archive.
    let transfer = pb::SubmitAndWaitRequest {
        commands: Some(pb::Commands {
            application_id: "test-app".into(),
            command_id: "c2".into(),
            act_as: vec!["alice".into()],
            command: Some(pb::Command {
                command: Some(pb::command::Command::Exercise(pb::ExerciseCommand {
                    template_id: "iou:Iou".into(),
                    contract_id: iou.contract_id.clone(),
                    choice: "Transfer".into(),
                    choice_argument_json: r#"{"newOwner":"bank"}"#.into(),
                })),
            }),
            ..Default::default()
        }),
    };
    let tx = commands
        .submit_and_wait_for_transaction(with_token(transfer, &reader))
        .await?
        .into_inner();
    let flat = tx.transaction.context("flat transaction")?;
    assert_eq!(flat.offset, 2);
    assert_eq!(flat.command_id, "c2");
    assert!(matches!(
        flat.events.first().and_then(|e| e.event.as_ref()),
        Some(pb::event::Event::Archived(a)) if a.contract_id == iou.contract_id
    ));

    let mut updates = pb::update_service_client::UpdateServiceClient::new(channel.clone());
    let mut stream = updates
        .get_updates(with_token(
            pb::GetUpdatesRequest {
                begin_exclusive: 0,
                end_inclusive: 2,
                filter: Some(pb::TransactionFilter {
                    parties: vec!["alice".into()],
                    template_ids: vec![],
                }),
                shape: pb::UpdateShape::Flat as i32,
            },
            &reader,
        ))
        .await?
        .into_inner();
    let mut offsets = Vec::new();
    while let Some(u) = stream.message().await? {
        if let Some(pb::get_updates_response::Update::Transaction(t)) = u.update {
            offsets.push(t.offset);
        }
    }
    assert_eq!(offsets, vec![1, 2]);

    read_as_any_party(&channel, &flat.update_id).await?;

    // Exercising the archived Iou again is refused, naming the contract.
    let again = pb::SubmitAndWaitRequest {
        commands: Some(pb::Commands {
            application_id: "test-app".into(),
            command_id: "c3".into(),
            act_as: vec!["alice".into()],
            command: Some(pb::Command {
                command: Some(pb::command::Command::Exercise(pb::ExerciseCommand {
                    template_id: "iou:Iou".into(),
                    contract_id: iou.contract_id.clone(),
                    choice: "Transfer".into(),
                    choice_argument_json: r#"{"newOwner":"bank"}"#.into(),
                })),
            }),
            ..Default::default()
        }),
    };
    let e = commands
        .submit_and_wait(with_token(again, &reader))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
    assert!(e.message().contains(&iou.contract_id), "{e:?}");

    let _ = p_stop.send(());
    participant.await??;
    let _ = seq_stop.send(());
    drop(pg);
    Ok(())
}

/// A filter naming no party: INVALID_ARGUMENT for a token without `readAsAnyParty`; with
/// it, every party's projection (here: the bank's Iou issued to alice at offset 1,
/// transferred by alice to the bank at offset 2, whose update id is `transfer`).
async fn read_as_any_party(channel: &Channel, transfer: &str) -> Result<()> {
    let any = mint_hs256(
        JWT_SECRET,
        &LedgerClaims {
            read_as_any_party: true,
            ..Default::default()
        },
        ordo_participant::auth::expiry_in(std::time::Duration::from_secs(3600)),
    );
    let named = token(&["alice", "bank"], false);
    let everyone = || {
        Some(pb::TransactionFilter {
            parties: vec![],
            template_ids: vec![],
        })
    };
    let mut state = pb::state_service_client::StateServiceClient::new(channel.clone());
    let mut updates = pb::update_service_client::UpdateServiceClient::new(channel.clone());
    let acs_request = || pb::GetActiveContractsRequest { filter: everyone() };
    let updates_request = || pb::GetUpdatesRequest {
        begin_exclusive: 0,
        end_inclusive: 2,
        filter: everyone(),
        shape: pb::UpdateShape::Flat as i32,
    };
    let by_id_request = || pb::GetTransactionByIdRequest {
        update_id: transfer.to_owned(),
        filter: everyone(),
        shape: pb::UpdateShape::Tree as i32,
    };

    let refused = [
        state
            .get_active_contracts(with_token(acs_request(), &named))
            .await
            .err(),
        updates
            .get_updates(with_token(updates_request(), &named))
            .await
            .err(),
        updates
            .get_transaction_by_id(with_token(by_id_request(), &named))
            .await
            .err(),
    ];
    for e in refused {
        let e = e.context("a filter naming no party without readAsAnyParty was accepted")?;
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains("filter.parties"), "{e:?}");
    }

    let page = state
        .get_active_contracts(with_token(acs_request(), &any))
        .await?
        .into_inner()
        .message()
        .await?
        .context("an ACS page")?;
    assert_eq!(page.offset, 2);
    let owners: Vec<(Vec<String>, Vec<String>)> = page
        .active_contracts
        .iter()
        .map(|c| (c.signatories.clone(), c.witness_parties.clone()))
        .collect();
    assert_eq!(owners, vec![(vec!["bank".into()], vec!["bank".into()])]);

    let mut stream = updates
        .get_updates(with_token(updates_request(), &any))
        .await?
        .into_inner();
    let mut seen = Vec::new();
    while let Some(u) = stream.message().await? {
        let Some(pb::get_updates_response::Update::Transaction(t)) = u.update else {
            continue;
        };
        for e in t.events.iter().filter_map(|e| e.event.as_ref()) {
            seen.push(match e {
                pb::event::Event::Created(c) => (t.offset, "created", c.witness_parties.clone()),
                pb::event::Event::Archived(a) => (t.offset, "archived", a.witness_parties.clone()),
            });
        }
    }
    let both = vec!["alice".to_owned(), "bank".to_owned()];
    assert_eq!(
        seen,
        vec![
            (1, "created", both.clone()),
            (2, "archived", both.clone()),
            (2, "created", vec!["bank".to_owned()]),
        ]
    );

    let tree = updates
        .get_transaction_by_id(with_token(by_id_request(), &any))
        .await?
        .into_inner();
    let Some(pb::get_updates_response::Update::TransactionTree(tree)) = tree.update else {
        anyhow::bail!("GetTransactionById answered no tree: {tree:?}");
    };
    assert_eq!(tree.offset, 2);
    assert_eq!(tree.command_id, "c2");
    assert!(!tree.root_node_ids.is_empty());
    Ok(())
}

/// What the event processor skips as a poison event (DESIGN §4): Postgres refusing the data
/// itself, which every retry meets again; never a failure a retry can get past.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_data_errors_are_poison() -> Result<()> {
    use ordo_participant::ParticipantError;
    let pg = tokio::task::spawn_blocking(|| PgCluster::start(PgOptions::default())).await??;
    let pool = sqlx::PgPool::connect(&pg.create_database("poison").await?).await?;
    let poison = |e: sqlx::Error| ParticipantError::from(e).is_poison();
    // Data exceptions (class 22) and integrity violations (class 23).
    let division = sqlx::query("SELECT 1 / 0")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(poison(division));
    let nul = sqlx::query("SELECT $1::text")
        .bind("a\0b")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(poison(nul));
    sqlx::query("CREATE TABLE t (id int PRIMARY KEY)")
        .execute(&pool)
        .await?;
    sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&pool)
        .await?;
    let duplicate = sqlx::query("INSERT INTO t VALUES (1)")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(poison(duplicate));
    // A missing table (a deployment fault: retried until fixed) and a lost connection.
    let missing = sqlx::query("SELECT * FROM no_such_table")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(!poison(missing));
    pool.close().await;
    let closed = sqlx::query("SELECT 1").execute(&pool).await.unwrap_err();
    assert!(!poison(closed));
    Ok(())
}
