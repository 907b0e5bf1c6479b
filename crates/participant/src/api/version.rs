//! VersionService: no token needed.

use ordo_proto::ledger::v1 as pb;

use super::ApiResult;

pub struct VersionApi;

#[tonic::async_trait]
impl pb::version_service_server::VersionService for VersionApi {
    async fn get_ledger_api_version(
        &self,
        _request: tonic::Request<pb::GetLedgerApiVersionRequest>,
    ) -> ApiResult<pb::GetLedgerApiVersionResponse> {
        Ok(tonic::Response::new(pb::GetLedgerApiVersionResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            api: "ordo.ledger.v1".to_owned(),
        }))
    }
}
