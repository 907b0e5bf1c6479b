//! gRPC reflection answers in both versions tools use: `grpc.reflection.v1` (grpcurl) and
//! `grpc.reflection.v1alpha` (Python's grpcio-reflection and other older clients), each
//! advertising the node's own services only.

use anyhow::{Context, Result};

use crate::harness::*;

/// The service names a node lists through reflection version `$v` (the two versions have
/// the same messages in different modules).
macro_rules! list_services {
    ($v:ident, $channel:expr) => {{
        use tonic_reflection::pb::$v;
        let request = $v::ServerReflectionRequest {
            host: String::new(),
            message_request: Some($v::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut answers = $v::server_reflection_client::ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::once(request))
            .await?
            .into_inner();
        let answer = answers
            .message()
            .await?
            .context(concat!("no ", stringify!($v), " answer"))?;
        let Some($v::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            answer.message_response
        else {
            anyhow::bail!("{}: not a service list: {answer:?}", stringify!($v));
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<String>>()
    }};
}

#[tokio::test]
async fn reflection_lists_the_services_in_v1_and_v1alpha() -> Result<()> {
    let net = start_net("reflection", 1).await?;
    let node = &net.nodes[0];
    let wanted = [
        "ordo.sequencer.v1.SequencerService",
        "ordo.sequencer.v1.SequencerAuthService",
        "grpc.health.v1.Health",
    ];
    let lists = [
        ("v1", list_services!(v1, node.channel().await?)),
        ("v1alpha", list_services!(v1alpha, node.channel().await?)),
    ];
    for (version, names) in lists {
        for w in wanted {
            assert!(
                names.iter().any(|n| n == w),
                "{version} lacks {w}: {names:?}"
            );
        }
        assert!(
            !names.iter().any(|n| n.starts_with("ordo.ledger")),
            "{version}: a sequencer advertises services it does not serve: {names:?}"
        );
    }
    Ok(())
}
