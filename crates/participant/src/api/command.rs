//! CommandService (submit and wait) and CommandSubmissionService (submit).

use std::sync::Arc;

use ordo_proto::ledger::v1 as pb;

use super::{ApiResult, convert};
use crate::error::ParticipantError;
use crate::events::{Parties, Reader, StoredTx};
use crate::node::{Completed, Shared};
use crate::store::{self, CompletionRow};
use crate::submission;

pub struct CommandApi(pub Arc<Shared>);

/// The error a failed completion answers SubmitAndWait with.
fn rejected(c: &CompletionRow) -> tonic::Status {
    use ordo_proto::errors;
    // A completion written before codes were stored has only its gRPC code.
    let code = errors::by_id(&c.outcome.error_code)
        .unwrap_or_else(|| errors::generic(tonic::Code::from_i32(c.outcome.code)));
    errors::status(code, c.outcome.message.clone(), None)
}

impl CommandApi {
    async fn submit_and_wait_inner(
        &self,
        request: tonic::Request<pb::SubmitAndWaitRequest>,
    ) -> Result<(submission::Accepted, Completed), tonic::Status> {
        let rights = self.0.authorize(request.metadata()).await?;
        let term = self.0.require_serving().await?;
        let started = std::time::Instant::now();
        let waited = async {
            let mut accepted = submission::submit(
                &self.0,
                &rights,
                request.into_inner().commands,
                submission::Wait::ForCompletion,
            )
            .await?;
            let completion = submission::wait_completion(
                &self.0,
                &mut accepted,
                self.0.config.submit_and_wait_timeout,
                &term,
            )
            .await?;
            Ok::<_, crate::error::ParticipantError>((accepted, completion))
        }
        .await;
        let outcome = match &waited {
            Ok((_, c)) if c.row.outcome.code == 0 => "committed",
            Ok(_) => "rejected",
            Err(_) => "failed",
        };
        crate::metrics::command(started.elapsed(), outcome);
        let (accepted, completion) = waited?;
        if completion.row.outcome.code != 0 {
            return Err(rejected(&completion.row));
        }
        Ok((accepted, completion))
    }
}

#[tonic::async_trait]
impl pb::command_service_server::CommandService for CommandApi {
    async fn submit_and_wait(
        &self,
        request: tonic::Request<pb::SubmitAndWaitRequest>,
    ) -> ApiResult<pb::SubmitAndWaitResponse> {
        let (_, completion) = self.submit_and_wait_inner(request).await?;
        Ok(tonic::Response::new(pb::SubmitAndWaitResponse {
            update_id: completion.row.outcome.update_id,
            offset: completion.row.outcome.ledger_offset,
        }))
    }

    async fn submit_and_wait_for_transaction(
        &self,
        request: tonic::Request<pb::SubmitAndWaitRequest>,
    ) -> ApiResult<pb::SubmitAndWaitForTransactionResponse> {
        let (accepted, completion) = self.submit_and_wait_inner(request).await?;
        // The commit that completed the command handed its transaction over with it.
        let update_id = &completion.row.outcome.update_id;
        let row = match completion.update {
            Some(row) => row,
            None => Arc::new(
                store::update_by_id(&self.0.pool, update_id)
                    .await?
                    .ok_or_else(|| {
                        ParticipantError::Internal(format!(
                            "update {update_id} of a completed command is missing"
                        ))
                    })?,
            ),
        };
        let tx: StoredTx = store::from_json(&row, "update")?;
        let reader = Reader {
            parties: Parties::Only(accepted.act_as.iter().map(ToString::to_string).collect()),
            templates: Default::default(),
        };
        Ok(tonic::Response::new(
            pb::SubmitAndWaitForTransactionResponse {
                transaction: Some(convert::flat_transaction(&tx, &reader)),
                transaction_tree: Some(convert::transaction_tree(&tx, &reader)),
            },
        ))
    }
}

pub struct SubmissionApi(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::command_submission_service_server::CommandSubmissionService for SubmissionApi {
    async fn submit(
        &self,
        request: tonic::Request<pb::SubmitRequest>,
    ) -> ApiResult<pb::SubmitResponse> {
        let rights = self.0.authorize(request.metadata()).await?;
        submission::submit(
            &self.0,
            &rights,
            request.into_inner().commands,
            submission::Wait::No,
        )
        .await?;
        Ok(tonic::Response::new(pb::SubmitResponse {}))
    }
}
