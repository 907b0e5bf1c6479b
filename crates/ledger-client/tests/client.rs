//! The client against an in-process stand-in of a participant's StateService and
//! UpdateService: the bearer token travels, server errors keep their code and message,
//! pages and streams are reassembled.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use ordo_ledger_client::{Filter, LedgerClient};
use ordo_proto::ledger::v1 as pb;
use tonic::{Request, Response, Status};

const TOKEN: &str = "test-token";

fn check(metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
    match metadata.get("authorization").and_then(|v| v.to_str().ok()) {
        Some(v) if v == format!("Bearer {TOKEN}") => Ok(()),
        Some(_) => Err(Status::unauthenticated("invalid token: wrong one")),
        None => Err(Status::unauthenticated(
            "missing `authorization: Bearer <token>`",
        )),
    }
}

fn created(cid: &str) -> pb::CreatedEvent {
    pb::CreatedEvent {
        contract_id: cid.into(),
        template_id: "iou:Iou".into(),
        create_arguments_json: format!(r#"{{"owner":"alice","n":"{cid}"}}"#),
        ..Default::default()
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

struct State;

#[tonic::async_trait]
impl pb::state_service_server::StateService for State {
    type GetActiveContractsStream = BoxStream<pb::GetActiveContractsResponse>;

    async fn get_active_contracts(
        &self,
        request: Request<pb::GetActiveContractsRequest>,
    ) -> Result<Response<Self::GetActiveContractsStream>, Status> {
        check(request.metadata())?;
        let filter = request.into_inner().filter.unwrap_or_default();
        if filter.parties != ["alice"] {
            return Err(Status::permission_denied(format!(
                "the token does not allow reading as party {}",
                filter.parties.join(",")
            )));
        }
        let pages = vec![
            Ok(pb::GetActiveContractsResponse {
                offset: 9,
                active_contracts: vec![created("c1"), created("c2")],
            }),
            Ok(pb::GetActiveContractsResponse {
                offset: 9,
                active_contracts: vec![created("c3")],
            }),
        ];
        Ok(Response::new(Box::pin(futures::stream::iter(pages))))
    }

    async fn get_ledger_end(
        &self,
        request: Request<pb::GetLedgerEndRequest>,
    ) -> Result<Response<pb::GetLedgerEndResponse>, Status> {
        check(request.metadata())?;
        Ok(Response::new(pb::GetLedgerEndResponse {
            offset: 3,
            completion_offset: 0,
        }))
    }

    async fn get_latest_pruned_offsets(
        &self,
        request: Request<pb::GetLatestPrunedOffsetsRequest>,
    ) -> Result<Response<pb::GetLatestPrunedOffsetsResponse>, Status> {
        check(request.metadata())?;
        Err(Status::unimplemented("not in this stand-in"))
    }
}

struct Updates;

#[tonic::async_trait]
impl pb::update_service_server::UpdateService for Updates {
    type GetUpdatesStream = BoxStream<pb::GetUpdatesResponse>;

    async fn get_updates(
        &self,
        request: Request<pb::GetUpdatesRequest>,
    ) -> Result<Response<Self::GetUpdatesStream>, Status> {
        check(request.metadata())?;
        let r = request.into_inner();
        // Bounded reads must name the ledger end (3) as their end.
        assert_eq!(r.end_inclusive, 3);
        let txs = (r.begin_exclusive + 1..=r.end_inclusive).map(|offset| {
            Ok(pb::GetUpdatesResponse {
                update: Some(pb::get_updates_response::Update::Transaction(
                    pb::Transaction {
                        update_id: format!("u{offset}"),
                        offset,
                        events: vec![pb::Event {
                            event: Some(pb::event::Event::Created(created(&format!("c{offset}")))),
                        }],
                        ..Default::default()
                    },
                )),
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(
            txs.collect::<Vec<_>>(),
        ))))
    }

    async fn get_transaction_by_id(
        &self,
        _: Request<pb::GetTransactionByIdRequest>,
    ) -> Result<Response<pb::GetUpdatesResponse>, Status> {
        Err(Status::unimplemented("not in this stand-in"))
    }
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(pb::state_service_server::StateServiceServer::new(State))
            .add_service(pb::update_service_server::UpdateServiceServer::new(Updates))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    format!("http://{addr}")
}

#[tokio::test]
async fn sends_the_bearer_token_and_keeps_server_errors() {
    let endpoint = serve().await;
    let client = LedgerClient::connect(&endpoint, TOKEN).await.unwrap();
    assert_eq!(client.ledger_end().await.unwrap(), 3);

    let acs = client
        .active_contracts(&Filter::party("alice"))
        .await
        .unwrap();
    assert_eq!(acs.offset, 9);
    let ids: Vec<&str> = acs
        .contracts
        .iter()
        .map(|c| c.contract_id.as_str())
        .collect();
    assert_eq!(ids, vec!["c1", "c2", "c3"]);
    assert_eq!(acs.contracts[2].payload["n"], "c3");

    let e = client
        .active_contracts(&Filter::party("bob"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    assert_eq!(e.message(), "the token does not allow reading as party bob");

    let wrong = LedgerClient::connect(&endpoint, "other").await.unwrap();
    let e = wrong.ledger_end().await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
}

#[tokio::test]
async fn bounded_updates_end_at_the_ledger_end() {
    let endpoint = serve().await;
    let client = LedgerClient::connect(&endpoint, TOKEN).await.unwrap();
    let txs: Vec<_> = client
        .updates(&Filter::party("alice"), 1, false)
        .await
        .unwrap()
        .collect()
        .await;
    let offsets: Vec<i64> = txs.iter().map(|t| t.as_ref().unwrap().offset).collect();
    assert_eq!(offsets, vec![2, 3]);
    // Nothing after the end: an empty stream, no call that the server would refuse.
    let none: Vec<_> = client
        .updates(&Filter::party("alice"), 3, false)
        .await
        .unwrap()
        .collect()
        .await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn connecting_to_nothing_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = LedgerClient::connect(&format!("http://127.0.0.1:{port}"), TOKEN)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.to_string().contains("ordo up"), "{e}");
}
