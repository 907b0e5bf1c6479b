//! `ShardClient::submit` against an in-process stand-in of a shard with two replicas over
//! one shared "database": the passive replica answers UNAVAILABLE; the active one can be
//! made to lose its term while a command is in flight, so that the retry on the other
//! replica is refused as a duplicate and the outcome must come from the completion stream.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use ordo_ledger_client::{Command, RetryPolicy, ShardClient, Submission};
use ordo_proto::ledger::v1 as pb;
use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// What the active replica does with a new command.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// Commits it and answers with the transaction.
    Commit,
    /// Accepts it, loses its term (the other replica becomes active) and answers
    /// UNAVAILABLE; the command completes shortly after, with this code (0: committed).
    LoseTermWithOutcome(i32),
    /// Accepts it and loses its term; no replica takes over.
    LoseTermForGood,
}

/// The shard's shared state: which replica is active, the completion log, the commands.
struct Db {
    active: usize,
    mode: Mode,
    completions: Vec<pb::Completion>,
    known: BTreeSet<String>,
    /// (replica, call) in order, to check where calls went.
    calls: Vec<(usize, &'static str)>,
    /// The `begin_exclusive` of every completion stream opened.
    streams_from: Vec<i64>,
}

#[derive(Clone)]
struct Shard {
    db: Arc<Mutex<Db>>,
    ends: watch::Sender<usize>,
}

impl Shard {
    fn new(active: usize, mode: Mode) -> Self {
        let db = Db {
            active,
            mode,
            completions: Vec::new(),
            known: BTreeSet::new(),
            calls: Vec::new(),
            streams_from: Vec::new(),
        };
        Self {
            db: Arc::new(Mutex::new(db)),
            ends: watch::channel(0).0,
        }
    }

    fn complete(&self, command_id: &str, code: i32) {
        let mut db = self.db.lock().unwrap();
        let completion_offset = db.completions.len() as i64 + 1;
        db.completions.push(pb::Completion {
            command_id: command_id.into(),
            application_id: "ordo-cli".into(),
            act_as: vec!["alice".into()],
            status: Some(pb::Status {
                code,
                message: if code == 0 {
                    String::new()
                } else {
                    format!("contract c1 is not active (command {command_id})")
                },
                error_code: if code == 0 {
                    String::new()
                } else {
                    "CONTRACT_NOT_ACTIVE".into()
                },
            }),
            update_id: if code == 0 {
                format!("u-{command_id}")
            } else {
                String::new()
            },
            offset: completion_offset,
            completion_offset,
            ..Default::default()
        });
        let n = db.completions.len();
        drop(db);
        self.ends.send_replace(n);
    }

    fn calls(&self) -> Vec<(usize, &'static str)> {
        self.db.lock().unwrap().calls.clone()
    }
}

/// One replica of the shard.
#[derive(Clone)]
struct Replica {
    index: usize,
    shard: Shard,
}

impl Replica {
    /// Records the call; PASSIVE_REPLICA (UNAVAILABLE) unless this replica is the
    /// active one, as a participant answers.
    fn enter(&self, call: &'static str) -> Result<(), Status> {
        let mut db = self.shard.db.lock().unwrap();
        db.calls.push((self.index, call));
        if db.active != self.index {
            return Err(ordo_proto::errors::status(
                ordo_proto::errors::PASSIVE_REPLICA,
                format!(
                    "replica participant-1-{} of shard-1 is passive; the active replica is \
                     participant-1-{}",
                    self.index, db.active
                ),
                None,
            ));
        }
        Ok(())
    }
}

fn flat(command_id: &str) -> pb::Transaction {
    pb::Transaction {
        update_id: format!("u-{command_id}"),
        command_id: command_id.into(),
        offset: 1,
        events: vec![pb::Event {
            event: Some(pb::event::Event::Created(pb::CreatedEvent {
                contract_id: "new".into(),
                template_id: "iou:Iou".into(),
                create_arguments_json: r#"{"owner":"bob"}"#.into(),
                ..Default::default()
            })),
        }],
        ..Default::default()
    }
}

fn tree(command_id: &str) -> pb::TransactionTree {
    let exercised = pb::ExercisedEvent {
        node_id: 0,
        contract_id: "c1".into(),
        template_id: "iou:Iou".into(),
        choice: "Transfer".into(),
        choice_argument_json: r#"{"newOwner":"bob"}"#.into(),
        exercise_result_json: r#""new""#.into(),
        consuming: true,
        ..Default::default()
    };
    pb::TransactionTree {
        update_id: format!("u-{command_id}"),
        command_id: command_id.into(),
        offset: 1,
        events_by_id: [(
            0,
            pb::TreeEvent {
                kind: Some(pb::tree_event::Kind::Exercised(exercised)),
            },
        )]
        .into_iter()
        .collect(),
        root_node_ids: vec![0],
        ..Default::default()
    }
}

#[tonic::async_trait]
impl pb::command_service_server::CommandService for Replica {
    async fn submit_and_wait(
        &self,
        _: Request<pb::SubmitAndWaitRequest>,
    ) -> Result<Response<pb::SubmitAndWaitResponse>, Status> {
        Err(Status::unimplemented("not in this stand-in"))
    }

    async fn submit_and_wait_for_transaction(
        &self,
        request: Request<pb::SubmitAndWaitRequest>,
    ) -> Result<Response<pb::SubmitAndWaitForTransactionResponse>, Status> {
        self.enter("submit")?;
        let command_id = request.into_inner().commands.unwrap_or_default().command_id;
        let mode = {
            let mut db = self.shard.db.lock().unwrap();
            if !db.known.insert(command_id.clone()) {
                return Err(ordo_proto::errors::status(
                    ordo_proto::errors::DUPLICATE_COMMAND,
                    format!("command {command_id} of application ordo-cli was already submitted"),
                    None,
                ));
            }
            db.mode
        };
        match mode {
            Mode::Commit => {
                self.shard.complete(&command_id, 0);
                Ok(Response::new(pb::SubmitAndWaitForTransactionResponse {
                    transaction: Some(flat(&command_id)),
                    transaction_tree: Some(tree(&command_id)),
                }))
            }
            Mode::LoseTermWithOutcome(code) => {
                {
                    let mut db = self.shard.db.lock().unwrap();
                    db.active = 1 - self.index;
                    db.mode = Mode::Commit;
                }
                // The new active replica resumes the command and completes it.
                let shard = self.shard.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    shard.complete(&command_id, code);
                });
                Err(Status::unavailable(
                    "the term ended while the command was in flight",
                ))
            }
            Mode::LoseTermForGood => {
                self.shard.db.lock().unwrap().active = usize::MAX;
                Err(Status::unavailable(
                    "the term ended while the command was in flight",
                ))
            }
        }
    }
}

#[tonic::async_trait]
impl pb::state_service_server::StateService for Replica {
    type GetActiveContractsStream = BoxStream<pb::GetActiveContractsResponse>;

    async fn get_active_contracts(
        &self,
        _: Request<pb::GetActiveContractsRequest>,
    ) -> Result<Response<Self::GetActiveContractsStream>, Status> {
        Err(Status::unimplemented("not in this stand-in"))
    }

    async fn get_ledger_end(
        &self,
        _: Request<pb::GetLedgerEndRequest>,
    ) -> Result<Response<pb::GetLedgerEndResponse>, Status> {
        self.enter("ledger_end")?;
        let n = self.shard.db.lock().unwrap().completions.len() as i64;
        Ok(Response::new(pb::GetLedgerEndResponse {
            offset: n,
            completion_offset: n,
        }))
    }

    async fn get_latest_pruned_offsets(
        &self,
        _: Request<pb::GetLatestPrunedOffsetsRequest>,
    ) -> Result<Response<pb::GetLatestPrunedOffsetsResponse>, Status> {
        Err(Status::unimplemented("not in this stand-in"))
    }
}

#[tonic::async_trait]
impl pb::command_completion_service_server::CommandCompletionService for Replica {
    type CompletionStreamStream = BoxStream<pb::CompletionStreamResponse>;

    async fn completion_stream(
        &self,
        request: Request<pb::CompletionStreamRequest>,
    ) -> Result<Response<Self::CompletionStreamStream>, Status> {
        self.enter("completions")?;
        let r = request.into_inner();
        assert_eq!(r.parties, ["alice"]);
        assert_eq!(r.application_id, "ordo-cli");
        self.shard
            .db
            .lock()
            .unwrap()
            .streams_from
            .push(r.begin_exclusive);
        let (db, ends) = (self.shard.db.clone(), self.shard.ends.subscribe());
        let stream =
            futures::stream::unfold((r.begin_exclusive, ends), move |(after, mut ends)| {
                let db = db.clone();
                async move {
                    loop {
                        let next = db.lock().unwrap().completions.get(after as usize).cloned();
                        if let Some(c) = next {
                            let response = pb::CompletionStreamResponse {
                                completion: Some(c),
                            };
                            return Some((Ok(response), (after + 1, ends)));
                        }
                        ends.changed().await.ok()?;
                    }
                }
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[tonic::async_trait]
impl pb::update_service_server::UpdateService for Replica {
    type GetUpdatesStream = BoxStream<pb::GetUpdatesResponse>;

    async fn get_updates(
        &self,
        _: Request<pb::GetUpdatesRequest>,
    ) -> Result<Response<Self::GetUpdatesStream>, Status> {
        Err(Status::unimplemented("not in this stand-in"))
    }

    async fn get_transaction_by_id(
        &self,
        request: Request<pb::GetTransactionByIdRequest>,
    ) -> Result<Response<pb::GetUpdatesResponse>, Status> {
        self.enter("transaction_by_id")?;
        let r = request.into_inner();
        assert_eq!(r.filter.unwrap_or_default().parties, ["alice"]);
        let command_id = r
            .update_id
            .strip_prefix("u-")
            .ok_or_else(|| Status::not_found(r.update_id.clone()))?;
        let update = if r.shape == pb::UpdateShape::Tree as i32 {
            pb::get_updates_response::Update::TransactionTree(tree(command_id))
        } else {
            pb::get_updates_response::Update::Transaction(flat(command_id))
        };
        Ok(Response::new(pb::GetUpdatesResponse {
            update: Some(update),
        }))
    }
}

/// Serves both replicas of `shard`; their endpoints.
async fn serve(shard: &Shard) -> Vec<String> {
    use pb::command_completion_service_server::CommandCompletionServiceServer;
    use pb::command_service_server::CommandServiceServer;
    use pb::state_service_server::StateServiceServer;
    use pb::update_service_server::UpdateServiceServer;
    let mut endpoints = Vec::new();
    for index in 0..2 {
        let replica = Replica {
            index,
            shard: shard.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        endpoints.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CommandServiceServer::new(replica.clone()))
                .add_service(StateServiceServer::new(replica.clone()))
                .add_service(CommandCompletionServiceServer::new(replica.clone()))
                .add_service(UpdateServiceServer::new(replica))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
    }
    endpoints
}

fn transfer(command_id: &str) -> Submission {
    let mut s = Submission::new(
        "alice",
        Command::Exercise {
            template_id: "iou:Iou".into(),
            contract_id: "c1".into(),
            choice: "Transfer".into(),
            argument: serde_json::json!({"newOwner": "bob"}),
        },
    );
    s.command_id = Some(command_id.into());
    s
}

fn client(endpoints: Vec<String>) -> ShardClient {
    ShardClient::new("shard-1", endpoints, "token").with_policy(RetryPolicy {
        deadline: Duration::from_secs(5),
        outcome_timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    })
}

#[test]
fn a_shared_client_submits_from_spawned_tasks() {
    fn spawnable<T: Send + 'static>(_: &T) {}
    let client = Arc::new(client(vec!["http://127.0.0.1:1".into()]));
    let submit = async move { client.submit(transfer("cmd-0")).await };
    spawnable(&submit);
}

#[tokio::test]
async fn a_passive_replica_is_skipped() {
    let shard = Shard::new(1, Mode::Commit);
    let client = client(serve(&shard).await);
    let r = client.submit(transfer("cmd-1")).await.unwrap();
    assert_eq!(r.update_id, "u-cmd-1");
    assert_eq!(r.exercise_result, Some(serde_json::json!("new")));
    assert_eq!(
        shard.calls(),
        [(0, "ledger_end"), (1, "ledger_end"), (1, "submit")],
        "the passive replica is tried once, then the active one is kept"
    );
}

#[tokio::test]
async fn a_command_caught_in_a_failover_gets_its_committed_outcome() {
    let shard = Shard::new(0, Mode::LoseTermWithOutcome(0));
    // An earlier, rejected attempt of the same command id sits before the recorded end:
    // it is not this submission's outcome.
    shard.complete("cmd-2", Code::FailedPrecondition as i32);
    let client = client(serve(&shard).await);
    let r = client.submit(transfer("cmd-2")).await.unwrap();
    assert_eq!(r.update_id, "u-cmd-2");
    assert_eq!(r.command_id, "cmd-2");
    assert_eq!(r.created_of("iou:Iou"), ["new"]);
    assert_eq!(r.exercise_result, Some(serde_json::json!("new")));
    let calls = shard.calls();
    assert_eq!(
        calls[..3],
        [(0, "ledger_end"), (0, "submit"), (1, "submit")],
        "{calls:?}"
    );
    assert!(
        calls[3..].iter().all(|(replica, _)| *replica == 1),
        "{calls:?}"
    );
    // The completions were read from the end recorded before the first attempt.
    assert_eq!(shard.db.lock().unwrap().streams_from, [1]);
}

#[tokio::test]
async fn a_command_caught_in_a_failover_keeps_its_rejection() {
    let shard = Shard::new(
        0,
        Mode::LoseTermWithOutcome(Code::FailedPrecondition as i32),
    );
    let client = client(serve(&shard).await);
    let e = client.submit(transfer("cmd-3")).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "contract c1 is not active (command cmd-3)");
}

#[tokio::test]
async fn a_command_stranded_without_an_active_replica_is_reported_unknown() {
    let shard = Shard::new(0, Mode::LoseTermForGood);
    let client =
        ShardClient::new("shard-1", serve(&shard).await, "token").with_policy(RetryPolicy {
            deadline: Duration::from_millis(300),
            ..RetryPolicy::default()
        });
    let e = client.submit(transfer("cmd-5")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    let message = e.message();
    assert!(
        message.contains("no replica of shard shard-1 served"),
        "{message}"
    );
    assert!(
        message.contains("command cmd-5 may have been accepted") && message.contains("offset 0"),
        "{message}"
    );
}

#[tokio::test]
async fn a_reused_command_id_is_a_plain_duplicate() {
    let shard = Shard::new(0, Mode::Commit);
    let client = client(serve(&shard).await);
    client.submit(transfer("cmd-4")).await.unwrap();
    let e = client.submit(transfer("cmd-4")).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(
        !shard.calls().contains(&(0, "completions")),
        "no completion is awaited for a first-attempt duplicate"
    );
}

#[tokio::test]
async fn every_attempt_uses_the_same_fresh_command_id() {
    let shard = Shard::new(0, Mode::LoseTermWithOutcome(0));
    let client = client(serve(&shard).await);
    let mut submission = transfer("x");
    submission.command_id = None;
    let r = client.submit(submission).await.unwrap();
    assert!(r.command_id.starts_with("cmd-"), "{r:?}");
    let known = shard.db.lock().unwrap().known.clone();
    assert_eq!(
        known.len(),
        1,
        "one command id for every attempt: {known:?}"
    );
}
