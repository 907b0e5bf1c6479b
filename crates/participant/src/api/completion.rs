//! CommandCompletionService: an application's command outcomes, streamed live.

use std::sync::Arc;

use ordo_proto::ledger::v1 as pb;

use super::{ApiResult, ApiStream, convert};
use crate::error::ParticipantError;
use crate::node::{Log, Shared};
use crate::store;

const BATCH: i64 = 200;

pub struct CompletionApi(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::command_completion_service_server::CommandCompletionService for CompletionApi {
    type CompletionStreamStream = ApiStream<pb::CompletionStreamResponse>;

    async fn completion_stream(
        &self,
        request: tonic::Request<pb::CompletionStreamRequest>,
    ) -> ApiResult<Self::CompletionStreamStream> {
        let rights = self.0.authorize(request.metadata()).await?;
        let req = request.into_inner();
        if req.application_id.is_empty() {
            return Err(ParticipantError::InvalidArgument("missing application_id".into()).into());
        }
        rights.require_application(&req.application_id)?;
        let parties = super::parse_parties("parties", &req.parties)?;
        if parties.is_empty() {
            return Err(ParticipantError::InvalidArgument(
                "invalid parties: name at least one".into(),
            )
            .into());
        }
        rights.require_act_as(&parties)?;
        let parties: Vec<String> = parties.iter().map(ToString::to_string).collect();
        let term = self.0.require_serving().await?;
        self.0
            .unpruned(Log::Completions, req.begin_exclusive.max(0))?;
        let shared = self.0.clone();
        let stream = async_stream::try_stream! {
            let mut after = req.begin_exclusive.max(0);
            let mut ends = shared.completion_end.subscribe();
            loop {
                if term.is_cancelled() {
                    Err::<(), ParticipantError>(shared.term_ended(&format!(
                        "resume the completion stream after completion offset {after} on the active replica"
                    )))?;
                }
                let known = *ends.borrow_and_update();
                if after < known {
                    let rows = store::completions(&shared.pool, &req.application_id, &parties, after, BATCH).await?;
                    shared.unpruned(Log::Completions, after)?;
                    if rows.is_empty() {
                        after = known;
                    }
                    for row in rows {
                        after = row.completion_offset;
                        yield pb::CompletionStreamResponse { completion: Some(convert::completion(&row)) };
                    }
                    continue;
                }
                tokio::select! {
                    changed = ends.changed() => if changed.is_err() { break },
                    () = term.cancelled() => {}
                }
            }
        };
        let stream = futures::StreamExt::map(stream, |r: Result<_, ParticipantError>| {
            r.map_err(tonic::Status::from)
        });
        Ok(tonic::Response::new(super::until_expiry(
            Box::pin(stream),
            &rights,
        )))
    }
}
