//! The Ledger API (gRPC package `ordo.ledger.v1`): one file per service, protobuf ⇄
//! domain conversions in `convert`.

pub mod active_only;
pub mod command;
pub mod completion;
pub mod convert;
pub mod observe;
pub mod package;
pub mod party;
pub mod pruning;
pub mod state;
pub mod update;
pub mod user;
pub mod version;

use std::collections::BTreeSet;
use std::sync::Arc;

use ordo_core::PartyId;
use ordo_proto::ledger::v1 as pb;

use self::active_only::ActiveOnly;
use self::observe::Observed;
use crate::auth::Rights;
use crate::error::ParticipantError;
use crate::events::{Parties, Reader};
use crate::node::Shared;

/// The gRPC server's services: the Ledger API (only while this replica serves, see
/// [`active_only`]; every call with its request id and metrics, see [`observe`]), health,
/// reflection and the version.
pub fn router(
    shared: Arc<Shared>,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> tonic::transport::server::Router {
    use pb::command_completion_service_server::CommandCompletionServiceServer;
    use pb::command_service_server::CommandServiceServer;
    use pb::command_submission_service_server::CommandSubmissionServiceServer;
    use pb::package_service_server::PackageServiceServer;
    use pb::participant_pruning_service_server::ParticipantPruningServiceServer;
    use pb::party_management_service_server::PartyManagementServiceServer;
    use pb::state_service_server::StateServiceServer;
    use pb::update_service_server::UpdateServiceServer;
    use pb::user_management_service_server::UserManagementServiceServer;
    use pb::version_service_server::VersionServiceServer;
    // Far above the command limit, so that our own check answers oversized commands
    // with a precise RESOURCE_EXHAUSTED.
    let limit = (shared.config.limits.max_command_bytes * 4).max(16 * 1024 * 1024);
    let mut builder = ordo_node::grpc_server();
    let mut router = builder
        .add_service(health)
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            CommandServiceServer::new(command::CommandApi(shared.clone()))
                .max_decoding_message_size(limit),
        )))
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            CommandSubmissionServiceServer::new(command::SubmissionApi(shared.clone()))
                .max_decoding_message_size(limit),
        )))
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            CommandCompletionServiceServer::new(completion::CompletionApi(shared.clone())),
        )))
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            UpdateServiceServer::new(update::UpdateApi(shared.clone())),
        )))
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            StateServiceServer::new(state::StateApi(shared.clone())),
        )))
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            PartyManagementServiceServer::new(party::PartyApi(shared.clone())),
        )))
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            ParticipantPruningServiceServer::new(pruning::PruningApi(shared.clone())),
        )))
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            UserManagementServiceServer::new(user::UserApi(shared.clone())),
        )))
        .add_service(Observed::new(ActiveOnly::new(
            shared.clone(),
            PackageServiceServer::new(package::PackageApi(shared.clone()))
                .max_decoding_message_size(limit),
        )))
        .add_service(Observed::new(VersionServiceServer::new(
            version::VersionApi,
        )));
    router = ordo_node::with_reflection(
        router,
        &[
            "ordo.ledger.v1.CommandService",
            "ordo.ledger.v1.CommandSubmissionService",
            "ordo.ledger.v1.CommandCompletionService",
            "ordo.ledger.v1.UpdateService",
            "ordo.ledger.v1.StateService",
            "ordo.ledger.v1.PartyManagementService",
            "ordo.ledger.v1.ParticipantPruningService",
            "ordo.ledger.v1.UserManagementService",
            "ordo.ledger.v1.PackageService",
            "ordo.ledger.v1.VersionService",
        ],
    );
    router
}

/// Parses party names, naming the field and the offending value.
pub fn parse_parties(field: &str, names: &[String]) -> Result<BTreeSet<PartyId>, ParticipantError> {
    names
        .iter()
        .map(|n| {
            PartyId::new(n).map_err(|_| {
                ParticipantError::InvalidArgument(format!(
                    "invalid {field}: {n:?} is not a party id (use 1 to 64 of [A-Za-z0-9_-])"
                ))
            })
        })
        .collect()
}

/// The reader of a transaction filter: its parties, each readable with the token. A filter
/// naming no party reads every party's projection, with a token that may read as any
/// party (`readAsAnyParty`); without one it is invalid.
pub fn reader(
    rights: &Rights,
    filter: Option<&pb::TransactionFilter>,
) -> Result<Reader, ParticipantError> {
    let filter = filter.ok_or_else(|| {
        ParticipantError::InvalidArgument("missing filter: name the parties to read as".into())
    })?;
    let parties = parse_parties("filter.parties", &filter.parties)?;
    let parties = if parties.is_empty() {
        if !rights.read_as_any_party {
            return Err(ParticipantError::InvalidArgument(
                "invalid filter.parties: name at least one party".into(),
            ));
        }
        Parties::Any
    } else {
        rights.require_read_as(&parties)?;
        Parties::Only(parties.iter().map(ToString::to_string).collect())
    };
    for t in &filter.template_ids {
        t.parse::<ordo_ledger::TemplateId>().map_err(|e| {
            ParticipantError::InvalidArgument(format!("invalid filter.template_ids: {e}"))
        })?;
    }
    Ok(Reader {
        parties,
        templates: filter.template_ids.iter().cloned().collect(),
    })
}

pub type ApiResult<T> = Result<tonic::Response<T>, tonic::Status>;
pub type ApiStream<T> =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send>>;

/// `stream`, ended when the token of `rights` expires: its last item is then
/// UNAUTHENTICATED saying so, and the client opens it again with a fresh token (resuming
/// after the last offset it received).
pub fn until_expiry<T: Send + 'static>(stream: ApiStream<T>, rights: &Rights) -> ApiStream<T> {
    let Some(expires_at) = rights.expires_at else {
        return stream;
    };
    let left = expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let deadline = tokio::time::Instant::now() + left;
    let mut stream = stream;
    Box::pin(async_stream::stream! {
        let expired = tokio::time::sleep_until(deadline);
        tokio::pin!(expired);
        loop {
            tokio::select! {
                biased;
                () = &mut expired => {
                    yield Err(tonic::Status::from(ParticipantError::Unauthenticated(
                        "the token expired: the stream ends; open it again with a fresh token \
                         after the last offset received"
                            .into(),
                    )));
                    break;
                }
                item = futures::StreamExt::next(&mut stream) => match item {
                    Some(item) => yield item,
                    None => break,
                },
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(parties: &[&str]) -> pb::TransactionFilter {
        pb::TransactionFilter {
            parties: parties.iter().map(|p| (*p).to_owned()).collect(),
            template_ids: vec!["iou:Iou".into()],
        }
    }

    fn rights(read_as: &[&str], any: bool) -> Rights {
        Rights {
            read_as: read_as.iter().map(|p| PartyId::new(p).unwrap()).collect(),
            read_as_any_party: any,
            ..Default::default()
        }
    }

    #[test]
    fn a_filter_naming_no_party_needs_read_as_any_party() {
        let e = reader(&rights(&["alice"], false), Some(&filter(&[]))).unwrap_err();
        assert!(
            matches!(&e, ParticipantError::InvalidArgument(m) if m.contains("filter.parties")),
            "{e:?}"
        );
        let any = reader(&rights(&[], true), Some(&filter(&[]))).unwrap();
        assert_eq!(any.parties, Parties::Any);
        assert!(any.templates.contains("iou:Iou"));
        // Named parties stay named, and any of them may be named with the right.
        let named = reader(&rights(&[], true), Some(&filter(&["bob"]))).unwrap();
        assert_eq!(named.parties, Parties::Only(["bob".to_owned()].into()));
        let e = reader(&rights(&["alice"], false), Some(&filter(&["bob"]))).unwrap_err();
        assert!(matches!(e, ParticipantError::PermissionDenied(_)), "{e:?}");
        assert!(reader(&rights(&[], true), None).is_err());
    }
}
