//! gRPC reflection answers in both versions tools use: `grpc.reflection.v1` (grpcurl) and
//! `grpc.reflection.v1alpha` (Python's grpcio-reflection and other older clients), each
//! advertising the node's own services only.

use anyhow::{Context, Result};

use crate::harness::*;

#[tokio::test]
async fn reflection_lists_the_services_in_v1_and_v1alpha() -> Result<()> {
    let net = start_net("reflection", 1).await?;
    let node = &net.nodes[0];
    let wanted = [
        "ordo.sequencer.v1.SequencerService",
        "ordo.sequencer.v1.SequencerAuthService",
        "grpc.health.v1.Health",
    ];

    use tonic_reflection::pb::v1;
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers =
        v1::server_reflection_client::ServerReflectionClient::new(node.channel().await?)
            .server_reflection_info(tokio_stream::once(request))
            .await?
            .into_inner();
    let answer = answers.message().await?.context("no v1 answer")?;
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        anyhow::bail!("v1: not a service list: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for w in wanted {
        assert!(names.iter().any(|n| n == w), "v1 lacks {w}: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.starts_with("ordo.ledger")),
        "a sequencer advertises services it does not serve: {names:?}"
    );

    use tonic_reflection::pb::v1alpha;
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers =
        v1alpha::server_reflection_client::ServerReflectionClient::new(node.channel().await?)
            .server_reflection_info(tokio_stream::once(request))
            .await?
            .into_inner();
    let answer = answers.message().await?.context("no v1alpha answer")?;
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        anyhow::bail!("v1alpha: not a service list: {answer:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for w in wanted {
        assert!(names.iter().any(|n| n == w), "v1alpha lacks {w}: {names:?}");
    }
    Ok(())
}
