//! UpdateService: the update log, projected to the reader's parties, streamed live once
//! caught up.

use std::sync::Arc;

use ordo_proto::ledger::v1 as pb;

use super::{ApiResult, ApiStream, convert};
use crate::error::ParticipantError;
use crate::events::StoredTx;
use crate::node::{Log, Shared};
use crate::store;

const BATCH: i64 = 200;

pub struct UpdateApi(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::update_service_server::UpdateService for UpdateApi {
    type GetUpdatesStream = ApiStream<pb::GetUpdatesResponse>;

    async fn get_updates(
        &self,
        request: tonic::Request<pb::GetUpdatesRequest>,
    ) -> ApiResult<Self::GetUpdatesStream> {
        let rights = self.0.authorize(request.metadata()).await?;
        let req = request.into_inner();
        let reader = super::reader(&rights, req.filter.as_ref())?;
        let shape = pb::UpdateShape::try_from(req.shape).map_err(|_| {
            ParticipantError::InvalidArgument(format!("invalid shape {}", req.shape))
        })?;
        if req.begin_exclusive < 0
            || (req.end_inclusive != 0 && req.end_inclusive < req.begin_exclusive)
        {
            return Err(ParticipantError::InvalidArgument(format!(
                "invalid offsets: begin_exclusive {} and end_inclusive {}",
                req.begin_exclusive, req.end_inclusive
            ))
            .into());
        }
        let ledger_end = *self.0.ledger_end.borrow();
        if req.begin_exclusive > ledger_end {
            return Err(ParticipantError::InvalidArgument(format!(
                "begin_exclusive {} is beyond the ledger end {ledger_end}",
                req.begin_exclusive
            ))
            .into());
        }
        let term = self.0.require_serving().await?;
        self.0.unpruned(Log::Updates, req.begin_exclusive)?;
        let shared = self.0.clone();
        let end = (req.end_inclusive != 0).then_some(req.end_inclusive);
        let stream = async_stream::try_stream! {
            let mut after = req.begin_exclusive;
            let mut ends = shared.ledger_end.subscribe();
            loop {
                if end.is_some_and(|e| after >= e) {
                    break;
                }
                if term.is_cancelled() {
                    Err::<(), ParticipantError>(shared.term_ended(&format!(
                        "resume the update stream after offset {after} on the active replica"
                    )))?;
                }
                let known = *ends.borrow_and_update();
                let until = end.map_or(known, |e| e.min(known));
                if after < until {
                    let rows = store::updates(&shared.pool, after, until, BATCH).await?;
                    // A pruning that overtook this stream may have deleted rows it needs.
                    shared.unpruned(Log::Updates, after)?;
                    for row in rows {
                        let tx: StoredTx = store::from_json(&row, "update")?;
                        after = tx.offset;
                        if tx.visible_to(&reader) {
                            yield convert::update(&tx, &reader, shape);
                        }
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

    async fn get_transaction_by_id(
        &self,
        request: tonic::Request<pb::GetTransactionByIdRequest>,
    ) -> ApiResult<pb::GetUpdatesResponse> {
        let rights = self.0.authorize(request.metadata()).await?;
        let req = request.into_inner();
        let reader = super::reader(&rights, req.filter.as_ref())?;
        let shape = pb::UpdateShape::try_from(req.shape).map_err(|_| {
            ParticipantError::InvalidArgument(format!("invalid shape {}", req.shape))
        })?;
        let not_found = || {
            ParticipantError::NotFound(format!(
                "update {} not found (unknown, or not visible to the requesting parties)",
                req.update_id
            ))
        };
        let row = store::update_by_id(&self.0.pool, &req.update_id)
            .await?
            .ok_or_else(not_found)?;
        let tx: StoredTx = store::from_json(&row, "update")?;
        if !tx.visible_to(&reader) {
            return Err(not_found().into());
        }
        Ok(tonic::Response::new(convert::update(&tx, &reader, shape)))
    }
}
