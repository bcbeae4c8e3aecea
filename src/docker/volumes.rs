//! Named volumes: created explicitly and labelled, never deleted.

use std::collections::{BTreeMap, HashMap};

use bollard::models::VolumeCreateRequest;

use super::Engine;
use crate::errors::CoreResult;

impl Engine {
    /// Creates each named volume that does not exist yet, with `labels`. Creating an existing
    /// volume is a no-op in the engine (its labels are left as they are), so this is idempotent
    /// and adopts volumes made by DockerSpawner or by hand without touching their data.
    pub async fn ensure_volumes(
        &self,
        names: &[String],
        labels: &BTreeMap<String, String>,
    ) -> CoreResult<()> {
        let labels: HashMap<String, String> =
            labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let creates = names.iter().map(|name| {
            let request = VolumeCreateRequest {
                name: Some(name.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            async move {
                self.docker()
                    .create_volume(request)
                    .await
                    .map(|_| ())
                    .map_err(|e| self.err(format!("create volume '{name}'"), e))
            }
        });
        futures_util::future::try_join_all(creates).await?;
        Ok(())
    }
}
