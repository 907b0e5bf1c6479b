//! The payload field types of the network's templates, which a query's conditions are
//! typed by (`filter`): read from the vetted packages (`ListPackages`, `GetPackage`) with
//! the cache's token, and kept, since a package name is bound to one package for good.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::http::StatusCode;
use ordo_ledger::{Package, Type};
use parking_lot::Mutex;

use crate::error::ApiError;
use crate::filter::Fields;
use crate::state::Gateway;

#[derive(Default)]
pub struct Templates {
    /// `package:Template` → its payload's fields.
    known: Mutex<BTreeMap<String, Arc<Fields>>>,
    /// `package:Template` → its key's type, for the templates that declare one.
    keys: Mutex<BTreeMap<String, Type>>,
    /// Packages read already.
    read: Mutex<HashSet<String>>,
}

impl Templates {
    /// The fields of `wanted` (empty: of every template on the network); an unknown one
    /// is a 404.
    pub async fn fields(
        &self,
        gw: &Gateway,
        wanted: &[String],
    ) -> Result<BTreeMap<String, Arc<Fields>>, ApiError> {
        let missing = {
            let known = self.known.lock();
            wanted.is_empty() || wanted.iter().any(|t| !known.contains_key(t))
        };
        if missing {
            self.refresh(gw).await?;
        }
        let known = self.known.lock();
        if wanted.is_empty() {
            return Ok(known.clone());
        }
        wanted
            .iter()
            .map(|t| match known.get(t) {
                Some(fields) => Ok((t.clone(), fields.clone())),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("unknown template {t:?}: no vetted package defines it"),
                )),
            })
            .collect()
    }

    /// `key` (JSON) as the canonical JSON text of a key of `template`, as the cache
    /// indexes it: an unknown template is a 404; one without a key, or a key not of its
    /// type, a 400 naming it.
    pub async fn canonical_key(
        &self,
        gw: &Gateway,
        template: &str,
        key: &serde_json::Value,
    ) -> Result<String, ApiError> {
        self.fields(gw, &[template.to_owned()]).await?;
        let ty = self.keys.lock().get(template).cloned().ok_or_else(|| {
            ApiError::bad_request(format!("template {template} has no contract key"))
        })?;
        let value = ordo_ledger::Value::from_json_at(&ty, key, "key")
            .map_err(|e| ApiError::bad_request(format!("invalid field `key`: {e}")))?;
        Ok(value.to_json().to_string())
    }

    /// Reads the packages not read yet.
    async fn refresh(&self, gw: &Gateway) -> Result<(), ApiError> {
        let Some(shard) = gw.network().shards().into_iter().next() else {
            return Ok(());
        };
        let client = gw.shard_client(&shard, &gw.cache.token())?;
        let listed = client
            .read(|c| async move { c.list_packages().await })
            .await?;
        for listed in listed {
            if self.read.lock().contains(&listed.package_id) {
                continue;
            }
            let id = listed.package_id.as_str();
            let bytes = client
                .read(|c| async move { c.get_package(id).await })
                .await?;
            let package = Package::parse(&bytes).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("package {id} does not parse: {e}"),
                )
            })?;
            let mut known = self.known.lock();
            let mut keys = self.keys.lock();
            for (name, template) in &package.templates {
                let id = format!("{}:{name}", package.name);
                if let Some(key) = &template.key {
                    keys.insert(id.clone(), key.ty.clone());
                }
                if let Type::Record(fields) = &template.payload_type {
                    known.insert(id, Arc::new(fields.clone()));
                }
            }
            self.read.lock().insert(listed.package_id.clone());
        }
        Ok(())
    }
}
