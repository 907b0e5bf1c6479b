//! PackageService: packages are vetted topology; an upload is validated here, vetted
//! through the topology manager and answered once in effect on this participant.

use std::sync::Arc;

use ordo_ledger::{Package, PackageId};
use ordo_proto::ledger::v1 as pb;

use super::ApiResult;
use crate::error::ParticipantError;
use crate::node::Shared;
use crate::topology_admin;

pub struct PackageApi(pub Arc<Shared>);

fn details(p: &Package) -> pb::PackageDetails {
    pb::PackageDetails {
        package_id: p.id.to_string(),
        name: p.name.clone(),
        template_ids: p
            .templates
            .keys()
            .map(|t| format!("{}:{t}", p.name))
            .collect(),
    }
}

#[tonic::async_trait]
impl pb::package_service_server::PackageService for PackageApi {
    async fn upload_package(
        &self,
        request: tonic::Request<pb::UploadPackageRequest>,
    ) -> ApiResult<pb::UploadPackageResponse> {
        self.0
            .authorize(request.metadata())
            .await?
            .require_admin()?;
        let bytes = request.into_inner().package;
        let source = String::from_utf8(bytes.clone()).map_err(|_| {
            ParticipantError::InvalidArgument("invalid package: not UTF-8 text".into())
        })?;
        let package = tokio::task::spawn_blocking(move || Package::parse(&bytes).map_err(Box::new))
            .await
            .map_err(|e| ParticipantError::Internal(e.to_string()))?
            .map_err(|e| ParticipantError::from_ledger(&e))?;
        let id = package.id.to_string();
        // A name bound to another package is refused before it reaches topology.
        if let Some(existing) = self.0.snapshot().packages.by_name(&package.name)
            && existing.id != package.id
        {
            return Err(ParticipantError::AlreadyExists(format!(
                "package name {} is already bound to package {}; upload it under a new name",
                package.name, existing.id
            ))
            .into());
        }
        if !self.0.snapshot().topology.packages.contains_key(&id) {
            topology_admin::vet_package(&self.0, &id, &source).await?;
            topology_admin::wait_applied(&self.0, &format!("package {id}"), |t| {
                t.packages.contains_key(&id)
            })
            .await?;
        }
        Ok(tonic::Response::new(pb::UploadPackageResponse {
            package_id: id,
            name: package.name,
        }))
    }

    async fn list_packages(
        &self,
        request: tonic::Request<pb::ListPackagesRequest>,
    ) -> ApiResult<pb::ListPackagesResponse> {
        self.0.authorize(request.metadata()).await?;
        let snapshot = self.0.snapshot();
        let packages = snapshot.packages.packages().map(|p| details(p)).collect();
        Ok(tonic::Response::new(pb::ListPackagesResponse { packages }))
    }

    async fn get_package(
        &self,
        request: tonic::Request<pb::GetPackageRequest>,
    ) -> ApiResult<pb::GetPackageResponse> {
        self.0.authorize(request.metadata()).await?;
        let id_text = &request.get_ref().package_id;
        let not_found =
            || ParticipantError::NotFound(format!("package {id_text} is not vetted here"));
        let id: PackageId = id_text.parse().map_err(|_| not_found())?;
        let snapshot = self.0.snapshot();
        let package = snapshot.packages.by_id(&id).ok_or_else(not_found)?;
        let source = snapshot
            .topology
            .packages
            .get(id_text)
            .ok_or_else(not_found)?;
        Ok(tonic::Response::new(pb::GetPackageResponse {
            details: Some(details(package)),
            package: source.as_bytes().to_vec(),
        }))
    }
}
