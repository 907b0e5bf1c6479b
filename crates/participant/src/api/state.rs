//! StateService: the active contracts of the reader's parties, the ledger end and how far
//! the logs were pruned.

use std::sync::Arc;

use ordo_proto::ledger::v1 as pb;

use super::{ApiResult, ApiStream, convert};
use crate::error::ParticipantError;
use crate::events::{Parties, StoredContract};
use crate::node::Shared;
use crate::store;

/// Contracts per response message.
const PAGE: usize = 200;

pub struct StateApi(pub Arc<Shared>);

#[tonic::async_trait]
impl pb::state_service_server::StateService for StateApi {
    type GetActiveContractsStream = ApiStream<pb::GetActiveContractsResponse>;

    async fn get_active_contracts(
        &self,
        request: tonic::Request<pb::GetActiveContractsRequest>,
    ) -> ApiResult<Self::GetActiveContractsStream> {
        let rights = self.0.authorize(request.metadata()).await?;
        let reader = super::reader(&rights, request.get_ref().filter.as_ref())?;
        let parties: Option<Vec<String>> = match &reader.parties {
            Parties::Only(parties) => Some(parties.iter().cloned().collect()),
            Parties::Any => None,
        };
        let templates: Vec<String> = reader.templates.iter().cloned().collect();
        let (offset, rows) =
            store::active_contracts(&self.0.pool, parties.as_deref(), &templates).await?;
        let contracts = rows
            .iter()
            .map(|r| store::from_json::<StoredContract>(r, "contract"))
            .collect::<Result<Vec<_>, ParticipantError>>()?;
        let mut pages: Vec<Result<pb::GetActiveContractsResponse, tonic::Status>> = contracts
            .chunks(PAGE)
            .map(|chunk| {
                Ok(pb::GetActiveContractsResponse {
                    offset,
                    active_contracts: chunk
                        .iter()
                        .map(|c| convert::active_contract(c, &reader))
                        .collect(),
                })
            })
            .collect();
        if pages.is_empty() {
            // Always at least one message, carrying the offset.
            pages.push(Ok(pb::GetActiveContractsResponse {
                offset,
                active_contracts: Vec::new(),
            }));
        }
        Ok(tonic::Response::new(Box::pin(futures::stream::iter(pages))))
    }

    async fn get_ledger_end(
        &self,
        request: tonic::Request<pb::GetLedgerEndRequest>,
    ) -> ApiResult<pb::GetLedgerEndResponse> {
        self.0.authorize(request.metadata()).await?;
        // The serving replica's watched ends are its committed ends (set from the database
        // when it took over, then by each commit); any other replica reads the database.
        let (offset, completion_offset) = match self.0.serving_term() {
            Some(_) => (*self.0.ledger_end.borrow(), *self.0.completion_end.borrow()),
            None => store::ends(&self.0.pool).await?,
        };
        Ok(tonic::Response::new(pb::GetLedgerEndResponse {
            offset,
            completion_offset,
        }))
    }

    async fn get_latest_pruned_offsets(
        &self,
        request: tonic::Request<pb::GetLatestPrunedOffsetsRequest>,
    ) -> ApiResult<pb::GetLatestPrunedOffsetsResponse> {
        self.0.authorize(request.metadata()).await?;
        let pruned = match self.0.serving_term() {
            Some(_) => *self.0.pruned.borrow(),
            None => store::prune::pruned(&self.0.pool).await?,
        };
        Ok(tonic::Response::new(pb::GetLatestPrunedOffsetsResponse {
            participant_pruned_up_to_inclusive: pruned.updates,
            completions_pruned_up_to_inclusive: pruned.completions,
        }))
    }
}
